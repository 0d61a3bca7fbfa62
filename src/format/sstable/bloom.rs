//! The bloom filter block: built from 64-bit key hashes, probed by double
//! hashing (see the module doc for the exact bit positions).

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

use super::Malformed;

/// Most probes a filter may ask for; more would be a corrupt block.
const MAX_PROBES: u8 = 30;
/// Fewest bits in a non-empty filter, so tiny tables still filter.
const MIN_BITS: usize = 64;

/// The hash a filter is built from and probed with; stable on disk.
pub(super) fn key_hash(key: &[u8]) -> u64 {
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

fn bit_positions(hash: u64, probes: u8, nbits: u64) -> impl Iterator<Item = u64> {
    let delta = hash.rotate_right(32) | 1;
    (0..u64::from(probes)).map(move |j| hash.wrapping_add(j.wrapping_mul(delta)) % nbits)
}

/// A decoded filter block.
#[derive(Debug, Clone)]
pub(super) struct BloomFilter {
    bits: Bytes,
    probes: u8,
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
        Ok(BloomFilter { bits, probes })
    }

    /// False only if the key was certainly not added.
    pub(super) fn may_contain(&self, key: &[u8]) -> bool {
        if self.bits.is_empty() {
            return true;
        }
        let nbits = self.bits.len() as u64 * 8;
        bit_positions(key_hash(key), self.probes, nbits).all(|bit| {
            self.bits
                .get((bit / 8) as usize)
                .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
        })
    }

    /// Prefetches the first bytes [`BloomFilter::may_contain`] reads for
    /// `key`: the first two probes', which are all it reads for most keys
    /// the filter rules out (half the bits are 0). All seven of every
    /// segment's filled the CPU's line-fill buffers: the prefetches then
    /// waited as long as the loads they were to hide.
    pub(super) fn prefetch(&self, key: &[u8]) {
        let nbits = self.bits.len() as u64 * 8;
        if nbits == 0 {
            return;
        }
        for bit in bit_positions(key_hash(key), self.probes.min(2), nbits) {
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
        assert!((0..1000).all(|i| filter.may_contain(format!("key{i}").as_bytes())));
    }

    #[test]
    fn false_positive_rate_is_about_one_percent() {
        let filter = filter_for((0..10_000).map(|i| format!("present{i}")), 10);
        let hits = (0..10_000)
            .filter(|i| filter.may_contain(format!("absent{i}").as_bytes()))
            .count();
        assert!(hits < 200, "{hits} false positives in 10000");
    }

    #[test]
    fn zero_bits_per_key_passes_everything() {
        let filter = filter_for(std::iter::once("a".to_string()), 0);
        assert!(filter.may_contain(b"anything"));
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
