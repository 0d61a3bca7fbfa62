//! Zipfian request distributions as YCSB draws them, written from the
//! formula of Gray et al., "Quickly Generating Billion-Record Synthetic
//! Databases" (SIGMOD 1994), which YCSB's `ZipfianGenerator` implements.
//!
//! - [`Zipfian`]: rank `0..n`, rank 0 the most popular, P(rank k) ∝
//!   1 / (k+1)^θ. The item count may grow (YCSB's "latest" distribution draws
//!   over the records inserted so far): ζ(n, θ) is then extended term by term.
//! - [`ScrambledZipfian`]: YCSB's default Zipfian request distribution. It
//!   draws a rank over a fixed, huge item count (10^10, as YCSB does) and
//!   hashes it (FNV-1a 64) modulo the record count, so that the popular
//!   records are spread over the key space instead of being the first keys.
//!
//! ζ(n, θ) = Σ_{i=1..n} 1/i^θ is summed exactly for the first
//! [`EXACT_TERMS`] terms and by Euler–Maclaurin beyond, so that ζ(10^10) costs
//! no more than ζ(10^4); the unit tests check it against the exact sum and
//! against the constant YCSB publishes for 10^10 items at θ = 0.99.

/// YCSB's Zipfian constant θ.
pub const THETA: f64 = 0.99;

/// The item count YCSB's scrambled Zipfian draws ranks from.
pub const SCRAMBLED_ITEMS: u64 = 10_000_000_000;

/// Terms of ζ summed one by one before the Euler–Maclaurin tail.
const EXACT_TERMS: u64 = 10_000;

/// ζ(n, θ) = Σ_{i=1..n} i^-θ.
pub fn zeta(n: u64, theta: f64) -> f64 {
    let exact: f64 = (1..=n.min(EXACT_TERMS)).map(|i| term(i, theta)).sum();
    if n <= EXACT_TERMS {
        return exact;
    }
    // Σ_{i=m+1..n} f(i) = ∫_m^n f + (f(n) - f(m))/2 + (f'(n) - f'(m))/12 - ...
    // with f(x) = x^-θ, f'(x) = -θ x^(-θ-1).
    let (m, n) = (EXACT_TERMS as f64, n as f64);
    let integral = (n.powf(1.0 - theta) - m.powf(1.0 - theta)) / (1.0 - theta);
    let ends = (n.powf(-theta) - m.powf(-theta)) / 2.0;
    let slopes = theta * (m.powf(-theta - 1.0) - n.powf(-theta - 1.0)) / 12.0;
    exact + integral + ends + slopes
}

fn term(i: u64, theta: f64) -> f64 {
    (i as f64).powf(-theta)
}

/// Ranks `0..items` with P(k) ∝ 1/(k+1)^θ (Gray et al.).
#[derive(Debug, Clone)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    /// ζ(items, θ).
    zeta_n: f64,
    /// ζ(2, θ).
    zeta_2: f64,
    /// 1 / (1 - θ).
    alpha: f64,
    /// (1 - (2/n)^(1-θ)) / (1 - ζ(2)/ζ(n)).
    eta: f64,
}

impl Zipfian {
    /// Over `items` (at least 1) ranks.
    pub fn new(items: u64, theta: f64) -> Zipfian {
        let items = items.max(1);
        let mut zipfian = Zipfian {
            items,
            theta,
            zeta_n: zeta(items, theta),
            zeta_2: zeta(2, theta),
            alpha: 1.0 / (1.0 - theta),
            eta: 0.0,
        };
        zipfian.eta = zipfian.eta();
        zipfian
    }

    /// Extends the distribution to `items` ranks (no-op if not more): ζ
    /// gains the new terms, as YCSB does when its record count grows.
    pub fn grow_to(&mut self, items: u64) {
        if items <= self.items {
            return;
        }
        if items - self.items > EXACT_TERMS {
            self.zeta_n = zeta(items, self.theta);
        } else {
            self.zeta_n += (self.items + 1..=items)
                .map(|i| term(i, self.theta))
                .sum::<f64>();
        }
        self.items = items;
        self.eta = self.eta();
    }

    fn eta(&self) -> f64 {
        let n = self.items as f64;
        (1.0 - (2.0 / n).powf(1.0 - self.theta)) / (1.0 - self.zeta_2 / self.zeta_n)
    }

    /// The rank for `u`, uniform in [0, 1).
    pub fn rank(&self, u: f64) -> u64 {
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let n = self.items as f64;
        let rank = (n * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.items - 1)
    }
}

/// YCSB's scrambled Zipfian: a rank over [`SCRAMBLED_ITEMS`], hashed onto
/// `0..records`.
#[derive(Debug, Clone)]
pub struct ScrambledZipfian {
    ranks: Zipfian,
    records: u64,
}

impl ScrambledZipfian {
    pub fn new(records: u64) -> ScrambledZipfian {
        ScrambledZipfian {
            ranks: Zipfian::new(SCRAMBLED_ITEMS, THETA),
            records: records.max(1),
        }
    }

    /// The record number for `u`, uniform in [0, 1).
    pub fn record(&self, u: f64) -> u64 {
        fnv1a_64(self.ranks.rank(u)) % self.records
    }
}

/// FNV-1a, 64 bits, over the 8 little-endian bytes of `value` (the hash YCSB
/// scrambles ranks with).
pub fn fnv1a_64(value: u64) -> u64 {
    fnv1a_64_bytes(&value.to_le_bytes())
}

fn fnv1a_64_bytes(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xCBF2_9CE4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01B3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Rng;

    fn uniform(rng: &mut Rng) -> f64 {
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn zeta_tail_matches_the_exact_sum() {
        for n in [1u64, 2, 10_000, 10_001, 123_457, 2_000_000] {
            let exact: f64 = (1..=n).map(|i| term(i, THETA)).sum();
            let fast = zeta(n, THETA);
            assert!(
                (exact - fast).abs() < 1e-9 * exact,
                "n={n}: {exact} vs {fast}"
            );
        }
    }

    #[test]
    fn zeta_of_ten_billion_is_ycsbs_constant() {
        // YCSB's ScrambledZipfianGenerator states ζ(10^10, 0.99) = 26.46902820178302.
        assert!((zeta(SCRAMBLED_ITEMS, THETA) - 26.469_028_201_783_02).abs() < 1e-6);
    }

    #[test]
    fn rank_frequencies_follow_the_zipf_law() {
        let zipfian = Zipfian::new(1000, THETA);
        let mut rng = Rng::new(7);
        let mut counts = vec![0u64; 1000];
        let draws = 400_000;
        for _ in 0..draws {
            counts[zipfian.rank(uniform(&mut rng)) as usize] += 1;
        }
        let zeta_n = zeta(1000, THETA);
        let expected = |k: usize| draws as f64 / ((k + 1) as f64).powf(THETA) / zeta_n;
        // Ranks 0 and 1 are exact in Gray et al.'s method...
        for k in [0usize, 1] {
            let got = counts[k] as f64;
            assert!(
                (got - expected(k)).abs() < 0.05 * expected(k),
                "rank {k}: {got}"
            );
        }
        // ...the rest follow a continuous approximation: check the mass of
        // the head and of a decade further out.
        for (from, to) in [(2usize, 100usize), (100, 1000)] {
            let got: u64 = counts[from..to].iter().sum();
            let want: f64 = (from..to).map(expected).sum();
            assert!(
                (got as f64 - want).abs() < 0.10 * want,
                "ranks {from}..{to}: {got} draws, expected about {want:.0}"
            );
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[2]);
    }

    #[test]
    fn growing_equals_building_at_the_larger_size() {
        let mut grown = Zipfian::new(1000, THETA);
        grown.grow_to(1500);
        grown.grow_to(1400);
        let built = Zipfian::new(1500, THETA);
        assert_eq!(grown.items, 1500);
        assert!((grown.zeta_n - built.zeta_n).abs() < 1e-9);
        assert!((grown.eta - built.eta).abs() < 1e-12);
    }

    #[test]
    fn scrambled_records_are_skewed_but_spread() {
        let records = 100_000u64;
        let scrambled = ScrambledZipfian::new(records);
        let mut rng = Rng::new(11);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..100_000 {
            let r = scrambled.record(uniform(&mut rng));
            assert!(r < records);
            *counts.entry(r).or_insert(0u64) += 1;
        }
        let mut by_count: Vec<(u64, u64)> = counts.into_iter().map(|(r, c)| (c, r)).collect();
        by_count.sort_unstable_by(|a, b| b.cmp(a));
        // The hottest record takes a few percent of all requests...
        assert!(by_count[0].0 > 2_000, "hottest: {:?}", by_count[0]);
        // ...and the ten hottest are not the first records of the key space.
        assert!(by_count.iter().take(10).any(|&(_, r)| r > records / 10));
    }

    #[test]
    fn fnv1a_matches_published_test_vectors() {
        assert_eq!(fnv1a_64_bytes(b""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a_64_bytes(b"a"), 0xAF63_DC4C_8601_EC8C);
        assert_eq!(fnv1a_64_bytes(b"foobar"), 0x8594_4171_F739_67E8);
        assert_eq!(fnv1a_64(0x0102), fnv1a_64_bytes(&[2, 1, 0, 0, 0, 0, 0, 0]));
    }
}
