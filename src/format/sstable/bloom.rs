//! The bloom filter block: built from 64-bit key hashes. Two layouts (see
//! the module doc for the exact bit positions): the classic one, whose
//! probes land anywhere in the filter, read from older files; and the
//! cache-local one written now, whose probes all land in one 64-byte line
//! per key. The cache-local probe positions are also the memtables' key
//! filter's (`engine/memtable/filter.rs`): one definition for both.

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

use super::Malformed;

/// Most probes a classic filter may ask for; more would be a corrupt block.
const MAX_PROBES: u8 = 30;
/// The last byte of a cache-local filter (a classic filter's is its probe
/// count, at most [`MAX_PROBES`]).
const CACHE_LOCAL_MARK: u8 = 0x80 | CACHE_LOCAL_PROBES as u8;
/// Bits set and tested per key in a cache-local filter, all in one line.
pub const CACHE_LOCAL_PROBES: usize = 6;
/// 64-bit words in a cache-local filter's line (64 bytes).
pub const WORDS_PER_LINE: usize = 8;
/// Bits of the mixed hash that pick one bit of a 512-bit line.
const BITS_PER_PROBE: u32 = 9;

/// The hash a filter is built from and probed with; stable on disk. The
/// memtables' key filter and point index use the same hash, so that a get
/// hashes its key once for every filter it checks.
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// Where a key hashed `hash` lives in a cache-local filter of `lines`
/// lines: its line, and for each probe the word within the line and the
/// bit within the word. The line comes from the hash's high half
/// (multiply-shift: uniform, no division), the bits from a remix of the
/// whole hash, nine bits each. This is the on-disk definition.
pub fn cache_local_probes(hash: u64, lines: u64) -> (u64, [(usize, u64); CACHE_LOCAL_PROBES]) {
    let line = ((hash >> 32) * lines) >> 32;
    let mut mixed = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (hash >> 29);
    let mut bits = [(0, 0); CACHE_LOCAL_PROBES];
    for probe in &mut bits {
        let bit = (mixed & ((1 << BITS_PER_PROBE) - 1)) as usize;
        *probe = (bit / 64, 1u64 << (bit % 64));
        mixed >>= BITS_PER_PROBE;
    }
    (line, bits)
}

/// Encodes the (cache-local) filter block for keys with `hashes`.
pub(super) fn build_filter(hashes: &[u64], bits_per_key: usize) -> Vec<u8> {
    if bits_per_key == 0 {
        return vec![0];
    }
    let bits = hashes.len().max(1).saturating_mul(bits_per_key);
    let lines = bits.div_ceil(WORDS_PER_LINE * 64).max(1);
    let mut words = vec![0u64; lines * WORDS_PER_LINE];
    for &hash in hashes {
        let (line, probes) = cache_local_probes(hash, lines as u64);
        let first = line as usize * WORDS_PER_LINE;
        for (word, mask) in probes {
            if let Some(word) = words.get_mut(first + word) {
                *word |= mask;
            }
        }
    }
    let mut block: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    block.push(CACHE_LOCAL_MARK);
    block
}

/// The values a classic filter reduces modulo its bit count: `hash + j *
/// delta` for `j` in `0..probes` (wrapping), `delta` = `hash` rotated right
/// by 32, with its low bit set. This is the on-disk definition.
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

/// One 64-byte line of a cache-local filter, aligned so that a probe
/// touches one cache line.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct Line([u64; WORDS_PER_LINE]);

/// A decoded filter block.
#[derive(Debug, Clone)]
pub(super) struct BloomFilter {
    layout: Layout,
}

#[derive(Debug, Clone)]
enum Layout {
    /// Lets every key through (written with 0 bits per key).
    Empty,
    /// The layout of older files.
    Classic {
        bits: Bytes,
        probes: u8,
        /// Reduces a probe to a bit of `bits`.
        bit_of: Remainder,
    },
    /// The layout written now, copied into aligned lines.
    CacheLocal { lines: Box<[Line]> },
}

impl BloomFilter {
    /// Decodes a filter block whose crc was checked.
    pub(super) fn decode(block: &Bytes) -> Result<BloomFilter, Malformed> {
        let Some((&mark, _)) = block.split_last() else {
            return Err(Malformed::new(0, "empty filter block"));
        };
        let bits = block.slice(..block.len() - 1);
        if mark == CACHE_LOCAL_MARK {
            return Self::decode_cache_local(&bits);
        }
        let valid = if bits.is_empty() {
            mark == 0
        } else {
            (1..=MAX_PROBES).contains(&mark)
        };
        if !valid {
            return Err(Malformed::new(bits.len(), "bad bloom probe count"));
        }
        let layout = if bits.is_empty() {
            Layout::Empty
        } else {
            Layout::Classic {
                bit_of: Remainder::new(bits.len() as u64 * 8),
                bits,
                probes: mark,
            }
        };
        Ok(BloomFilter { layout })
    }

    fn decode_cache_local(bits: &[u8]) -> Result<BloomFilter, Malformed> {
        let line_bytes = WORDS_PER_LINE * 8;
        if bits.is_empty() || !bits.len().is_multiple_of(line_bytes) {
            return Err(Malformed::new(
                bits.len(),
                "cache-local filter not whole 64-byte lines",
            ));
        }
        let lines = bits
            .chunks_exact(line_bytes)
            .map(|chunk| {
                let mut line = Line::default();
                for (word, bytes) in line.0.iter_mut().zip(chunk.chunks_exact(8)) {
                    let mut le = [0u8; 8];
                    le.copy_from_slice(bytes);
                    *word = u64::from_le_bytes(le);
                }
                line
            })
            .collect();
        Ok(BloomFilter {
            layout: Layout::CacheLocal { lines },
        })
    }

    /// The bits `hash` ([`key_hash`]) probes in a classic filter.
    fn classic_bits(bit_of: Remainder, hash: u64, probes: u8) -> impl Iterator<Item = u64> {
        probe_values(hash, probes).map(move |x| bit_of.of(x))
    }

    /// False only if no key with this [`key_hash`] was added.
    pub(super) fn may_contain(&self, hash: u64) -> bool {
        match &self.layout {
            Layout::Empty => true,
            Layout::Classic {
                bits,
                probes,
                bit_of,
            } => Self::classic_bits(*bit_of, hash, *probes).all(|bit| {
                bits.get((bit / 8) as usize)
                    .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
            }),
            Layout::CacheLocal { lines } => {
                let (line, probes) = cache_local_probes(hash, lines.len() as u64);
                lines.get(line as usize).is_none_or(|line| {
                    probes
                        .iter()
                        .all(|&(word, mask)| line.0.get(word).is_some_and(|w| w & mask == mask))
                })
            }
        }
    }

    /// Prefetches what [`BloomFilter::may_contain`] reads first for
    /// `hash`: a cache-local filter's one line; a classic filter's first
    /// two probes, which are all it reads for most keys the filter rules out
    /// (half the bits are 0). All seven of every segment's filled the CPU's
    /// line-fill buffers: the prefetches then waited as long as the loads
    /// they were to hide.
    pub(super) fn prefetch(&self, hash: u64) {
        match &self.layout {
            Layout::Empty => {}
            Layout::Classic {
                bits,
                probes,
                bit_of,
            } => {
                for bit in Self::classic_bits(*bit_of, hash, (*probes).min(2)) {
                    if let Some(byte) = bits.get((bit / 8) as usize) {
                        crate::format::prefetch(byte);
                    }
                }
            }
            Layout::CacheLocal { lines } => {
                let (line, _) = cache_local_probes(hash, lines.len() as u64);
                if let Some(line) = lines.get(line as usize) {
                    crate::format::prefetch(line);
                }
            }
        }
    }

    /// Bytes held in memory.
    pub(super) fn memory_bytes(&self) -> usize {
        match &self.layout {
            Layout::Empty => 0,
            Layout::Classic { bits, .. } => bits.len(),
            Layout::CacheLocal { lines } => lines.len() * std::mem::size_of::<Line>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(block: Vec<u8>) -> BloomFilter {
        BloomFilter::decode(&Bytes::from(block)).unwrap_or_else(|e| unreachable!("{e:?}"))
    }

    fn filter_for(keys: impl Iterator<Item = String>, bits_per_key: usize) -> BloomFilter {
        let hashes: Vec<u64> = keys.map(|k| key_hash(k.as_bytes())).collect();
        decode(build_filter(&hashes, bits_per_key))
    }

    /// A classic filter block, as writers before the cache-local layout
    /// made them: `max(64, keys * bits_per_key)` bits rounded to a byte,
    /// `round(bits_per_key * ln 2)` probes at `probe_values % nbits`.
    fn build_classic(hashes: &[u64], bits_per_key: usize) -> Vec<u8> {
        let nbits = hashes.len().saturating_mul(bits_per_key).max(64);
        let mut bits = vec![0u8; nbits.div_ceil(8)];
        let probes = probes_for(bits_per_key);
        let nbits = bits.len() as u64 * 8;
        for &hash in hashes {
            for x in probe_values(hash, probes) {
                let bit = x % nbits;
                bits[(bit / 8) as usize] |= 1 << (bit % 8);
            }
        }
        bits.push(probes);
        bits
    }

    fn probes_for(bits_per_key: usize) -> u8 {
        let k = (bits_per_key as f64 * std::f64::consts::LN_2).round();
        k.clamp(1.0, f64::from(MAX_PROBES)) as u8
    }

    fn numbers(seed: u64) -> impl Iterator<Item = u64> {
        std::iter::repeat_with(crate::test_random::xorshift(seed))
    }

    fn false_positives(filter: &BloomFilter) -> usize {
        (0..10_000)
            .filter(|i| filter.may_contain(key_hash(format!("absent{i}").as_bytes())))
            .count()
    }

    #[test]
    fn added_keys_always_pass() {
        let filter = filter_for((0..1000).map(|i| format!("key{i}")), 10);
        assert!(matches!(filter.layout, Layout::CacheLocal { .. }));
        assert!((0..1000).all(|i| filter.may_contain(key_hash(format!("key{i}").as_bytes()))));
    }

    #[test]
    fn false_positive_rate_is_about_one_percent() {
        let filter = filter_for((0..10_000).map(|i| format!("present{i}")), 10);
        let hits = false_positives(&filter);
        assert!(hits < 200, "{hits} false positives in 10000");
        assert!(
            hits > 0,
            "no false positive at 10 bits per key: is it probing?"
        );
    }

    /// The cache-local layout's bytes are what the module doc defines:
    /// each key's six bits, little-endian words, in the line its hash's
    /// high half picks; nothing else set.
    #[test]
    fn cache_local_bits_are_where_the_format_says() {
        for keys in [1u64, 3, 100, 5_000] {
            let hashes: Vec<u64> = numbers(keys).take(keys as usize).collect();
            let block = build_filter(&hashes, 10);
            let lines = ((keys as usize * 10).div_ceil(512)).max(1);
            assert_eq!(block.len(), lines * 64 + 1);
            assert_eq!(block.last(), Some(&0x86));
            let mut expected = vec![0u8; lines * 64];
            for &hash in &hashes {
                let line = (((hash >> 32) * lines as u64) >> 32) as usize;
                let mut mixed = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (hash >> 29);
                for _ in 0..6 {
                    let bit = line * 512 + (mixed & 511) as usize;
                    expected[bit / 8] |= 1 << (bit % 8);
                    mixed >>= 9;
                }
            }
            assert_eq!(block[..lines * 64], expected[..], "{keys} keys");
        }
    }

    /// Files written before the cache-local layout still read: their
    /// filters keep every key and rule out about as many others.
    #[test]
    fn classic_filters_still_read() {
        for bits_per_key in [1, 7, 10, 20] {
            for keys in [1, 3, 1000, 12_345] {
                let hashes: Vec<u64> = numbers(keys).take(keys as usize).collect();
                let filter = decode(build_classic(&hashes, bits_per_key));
                assert!(matches!(filter.layout, Layout::Classic { .. }));
                assert!(hashes.iter().all(|&h| filter.may_contain(h)));
                filter.prefetch(hashes[0]);
            }
        }
        let hashes: Vec<u64> = (0..10_000)
            .map(|i| key_hash(format!("present{i}").as_bytes()))
            .collect();
        let hits = false_positives(&decode(build_classic(&hashes, 10)));
        assert!((1..200).contains(&hits), "{hits} false positives in 10000");
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
        // A cache-local mark with no line, or a partial one.
        assert!(BloomFilter::decode(&Bytes::from_static(&[0x86])).is_err());
        assert!(BloomFilter::decode(&Bytes::from(vec![0u8; 65])).is_err());
        let mut short = vec![0u8; 63];
        short.push(0x86);
        assert!(BloomFilter::decode(&Bytes::from(short)).is_err());
        let mut whole = vec![0u8; 128];
        whole.push(0x86);
        assert!(BloomFilter::decode(&Bytes::from(whole)).is_ok());
        // Another mark with the high bit set is no layout.
        let mut other = vec![0u8; 64];
        other.push(0x87);
        assert!(BloomFilter::decode(&Bytes::from(other)).is_err());
    }
}
