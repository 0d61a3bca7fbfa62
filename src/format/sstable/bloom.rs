//! The bloom filter block: built from 64-bit key hashes, probed by double
//! hashing (see the module doc for the exact bit positions).

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

use super::Malformed;

/// Most probes a filter may ask for; more would be a corrupt block.
const MAX_PROBES: u8 = 30;
/// Fewest bits in a non-empty filter, so tiny tables still filter.
const MIN_BITS: usize = 64;

/// The hash a filter is built from and probed with; stable on disk. The
/// memtables' key filter and point index use the same hash, so that a get
/// hashes its key once for every filter it checks.
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// Encodes the filter block for keys with `hashes`.
pub(super) fn build_filter(hashes: &[u64], bits_per_key: usize) -> Vec<u8> {
    if bits_per_key == 0 {
        return vec![0];
    }
    let nbits = hashes.len().saturating_mul(bits_per_key).max(MIN_BITS);
    let mut bits = vec![0u8; nbits.div_ceil(8)];
    let probes = probes_for(bits_per_key);
    let nbits = bits.len() as u64 * 8;
    for &hash in hashes {
        for bit in bit_positions(hash, probes, nbits) {
            if let Some(byte) = bits.get_mut((bit / 8) as usize) {
                *byte |= 1 << (bit % 8);
            }
        }
    }
    bits.push(probes);
    bits
}

/// k = bits_per_key * ln 2, rounded, within 1..=MAX_PROBES.
fn probes_for(bits_per_key: usize) -> u8 {
    let k = (bits_per_key as f64 * std::f64::consts::LN_2).round();
    k.clamp(1.0, f64::from(MAX_PROBES)) as u8
}

/// The bits a key sets: `(hash + j * delta) % nbits` for `j` in
/// `0..probes` (wrapping arithmetic on u64), `delta` = `hash` rotated right
/// by 32, with its low bit set. This is the on-disk definition.
fn bit_positions(hash: u64, probes: u8, nbits: u64) -> impl Iterator<Item = u64> {
    probe_values(hash, probes).map(move |x| x % nbits)
}

/// The values [`bit_positions`] reduces modulo the filter's bit count.
fn probe_values(hash: u64, probes: u8) -> impl Iterator<Item = u64> {
    let delta = hash.rotate_right(32) | 1;
    (0..u64::from(probes)).map(move |j| hash.wrapping_add(j.wrapping_mul(delta)))
}

/// `x % d` for a fixed `d` without a division (Lemire, Kaser and Kurz,
/// "Faster remainder by direct computation", 2019): three multiplications
/// instead of a 64-bit `div`, exact for every `x` and every `d` >= 1. A get
/// probes a filter per level-0 segment, two probes each on average, and the
/// divisions were a tenth of that loop's time.
#[derive(Debug, Clone, Copy)]
struct Remainder {
    divisor: u64,
    /// `ceil(2^128 / divisor)`, wrapped to 0 for a divisor of 1.
    magic: u128,
}

impl Remainder {
    fn new(divisor: u64) -> Remainder {
        let divisor = divisor.max(1);
        Remainder {
            divisor,
            magic: (u128::MAX / u128::from(divisor)).wrapping_add(1),
        }
    }

    /// `x % divisor`: the high 64 bits of `(magic * x mod 2^128) * divisor`.
    fn of(self, x: u64) -> u64 {
        let fraction = self.magic.wrapping_mul(u128::from(x));
        let d = u128::from(self.divisor);
        let low = ((fraction as u64 as u128) * d) >> 64;
        let high = (fraction >> 64) * d;
        ((high + low) >> 64) as u64
    }
}

/// A decoded filter block.
#[derive(Debug, Clone)]
pub(super) struct BloomFilter {
    bits: Bytes,
    probes: u8,
    /// Reduces a probe to a bit of `bits`.
    bit_of: Remainder,
}

impl BloomFilter {
    /// Decodes a filter block whose crc was checked.
    pub(super) fn decode(block: &Bytes) -> Result<BloomFilter, Malformed> {
        let Some((&probes, _)) = block.split_last() else {
            return Err(Malformed::new(0, "empty filter block"));
        };
        let bits = block.slice(..block.len() - 1);
        let valid = if bits.is_empty() {
            probes == 0
        } else {
            (1..=MAX_PROBES).contains(&probes)
        };
        if !valid {
            return Err(Malformed::new(bits.len(), "bad bloom probe count"));
        }
        let bit_of = Remainder::new(bits.len() as u64 * 8);
        Ok(BloomFilter {
            bits,
            probes,
            bit_of,
        })
    }

    /// The bits `hash` ([`key_hash`]) probes, as [`bit_positions`] gives them.
    fn probed_bits(&self, hash: u64, probes: u8) -> impl Iterator<Item = u64> + '_ {
        probe_values(hash, probes).map(|x| self.bit_of.of(x))
    }

    /// False only if no key with this [`key_hash`] was added.
    pub(super) fn may_contain(&self, hash: u64) -> bool {
        if self.bits.is_empty() {
            return true;
        }
        self.probed_bits(hash, self.probes).all(|bit| {
            self.bits
                .get((bit / 8) as usize)
                .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
        })
    }

    /// Prefetches the first bytes [`BloomFilter::may_contain`] reads for
    /// `hash`: the first two probes', which are all it reads for most keys
    /// the filter rules out (half the bits are 0). All seven of every
    /// segment's filled the CPU's line-fill buffers: the prefetches then
    /// waited as long as the loads they were to hide.
    pub(super) fn prefetch(&self, hash: u64) {
        if self.bits.is_empty() {
            return;
        }
        for bit in self.probed_bits(hash, self.probes.min(2)) {
            if let Some(byte) = self.bits.get((bit / 8) as usize) {
                crate::format::prefetch(byte);
            }
        }
    }

    /// Bytes held in memory.
    pub(super) fn memory_bytes(&self) -> usize {
        self.bits.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter_for(keys: impl Iterator<Item = String>, bits_per_key: usize) -> BloomFilter {
        let hashes: Vec<u64> = keys.map(|k| key_hash(k.as_bytes())).collect();
        let block = Bytes::from(build_filter(&hashes, bits_per_key));
        BloomFilter::decode(&block).unwrap_or_else(|e| unreachable!("{e:?}"))
    }

    #[test]
    fn added_keys_always_pass() {
        let filter = filter_for((0..1000).map(|i| format!("key{i}")), 10);
        assert!((0..1000).all(|i| filter.may_contain(key_hash(format!("key{i}").as_bytes()))));
    }

    #[test]
    fn false_positive_rate_is_about_one_percent() {
        let filter = filter_for((0..10_000).map(|i| format!("present{i}")), 10);
        let hits = (0..10_000)
            .filter(|i| filter.may_contain(key_hash(format!("absent{i}").as_bytes())))
            .count();
        assert!(hits < 200, "{hits} false positives in 10000");
    }

    fn numbers(seed: u64) -> impl Iterator<Item = u64> {
        std::iter::repeat_with(crate::test_random::xorshift(seed))
    }

    #[test]
    fn remainder_without_division_is_the_remainder() {
        let edges = [0, 1, 2, 7, 63, 64, 65, u64::MAX - 1, u64::MAX, 1 << 63];
        let divisors = edges.iter().copied().chain(numbers(7).take(200));
        let divisors = divisors.chain(numbers(11).take(200).map(|d| d >> 40));
        for divisor in divisors.filter(|&d| d > 0) {
            let remainder = Remainder::new(divisor);
            let xs = edges.iter().copied().chain(numbers(divisor | 1).take(500));
            for x in xs {
                assert_eq!(remainder.of(x), x % divisor, "{x} % {divisor}");
            }
        }
    }

    #[test]
    fn probes_hit_the_bits_the_format_defines() {
        for bits_per_key in [1, 7, 10, 20] {
            for keys in [1, 3, 1000, 12_345] {
                let hashes: Vec<u64> = numbers(keys).take(keys as usize).collect();
                let block = Bytes::from(build_filter(&hashes, bits_per_key));
                let filter = BloomFilter::decode(&block).unwrap_or_else(|e| unreachable!("{e:?}"));
                let nbits = filter.bits.len() as u64 * 8;
                for hash in numbers(99).take(1000) {
                    let probed: Vec<u64> = filter.probed_bits(hash, filter.probes).collect();
                    let defined: Vec<u64> = bit_positions(hash, filter.probes, nbits).collect();
                    assert_eq!(probed, defined, "{nbits} bits");
                }
                assert!(hashes.iter().all(|&h| filter.may_contain(h)));
            }
        }
    }

    #[test]
    fn zero_bits_per_key_passes_everything() {
        let filter = filter_for(std::iter::once("a".to_string()), 0);
        assert!(filter.may_contain(key_hash(b"anything")));
    }

    #[test]
    fn bad_blocks_are_malformed() {
        assert!(BloomFilter::decode(&Bytes::new()).is_err());
        assert!(BloomFilter::decode(&Bytes::from_static(&[0xff, 0])).is_err());
        assert!(BloomFilter::decode(&Bytes::from_static(&[0xff, 31])).is_err());
        assert!(BloomFilter::decode(&Bytes::from_static(&[7])).is_err());
        assert!(BloomFilter::decode(&Bytes::from_static(&[0])).is_ok());
    }

    #[test]
    fn probes_follow_bits_per_key() {
        assert_eq!(probes_for(10), 7);
        assert_eq!(probes_for(1), 1);
        assert_eq!(probes_for(100), MAX_PROBES);
    }
}
