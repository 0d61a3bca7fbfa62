//! Keys, values and random numbers, generated on the fly so that the harness
//! holds no key list: its own memory stays small next to the engine's.
//!
//! Key `i` of the loaded set is the 16-digit decimal of `2 * i`; missing keys
//! are the odd numbers, so they sort between existing keys and no engine can
//! reject them by key range alone.

use crate::values::ValueKind;

/// Key length in bytes.
pub const KEY_BYTES: usize = 16;

/// The key of loaded entry `id`.
pub fn present_key(id: u64) -> [u8; KEY_BYTES] {
    decimal(2 * id)
}

/// A key that sorts right after loaded entry `id` and is never written.
pub fn missing_key(id: u64) -> [u8; KEY_BYTES] {
    decimal(2 * id + 1)
}

fn decimal(mut n: u64) -> [u8; KEY_BYTES] {
    let mut key = [b'0'; KEY_BYTES];
    for byte in key.iter_mut().rev() {
        *byte = b'0' + (n % 10) as u8;
        n /= 10;
    }
    key
}

/// splitmix64: small, fast, good enough to pick keys.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random permutation of `0..n` computed per index (a Feistel network
/// with cycle walking): "every key once, in random order" with no table.
#[derive(Debug, Clone, Copy)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    seed: u64,
}

impl Permutation {
    pub fn new(n: u64, seed: u64) -> Self {
        let bits = 64 - n.max(2).saturating_sub(1).leading_zeros();
        Permutation {
            n,
            half_bits: bits.div_ceil(2).max(1),
            seed,
        }
    }

    /// The `i`-th element (i < n).
    pub fn at(&self, i: u64) -> u64 {
        let mut x = i;
        loop {
            x = self.feistel(x);
            if x < self.n {
                return x;
            }
        }
    }

    fn feistel(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for round in 0..4u64 {
            let f = mix(right ^ self.seed.wrapping_add(round)) & mask;
            (left, right) = (right, left ^ f);
        }
        (left << self.half_bits) | right
    }
}

/// Values: slices of one buffer at varying offsets, like db_bench's
/// RandomGenerator; the buffer is random (incompressible) bytes or
/// JSON-like text (see [`crate::values`]).
#[derive(Debug, Clone)]
pub struct Values {
    buffer: Vec<u8>,
    size: usize,
}

impl Values {
    pub fn new(size: usize, kind: ValueKind) -> Self {
        let len = size.max(1) + (1 << 20);
        let buffer = kind.buffer(len, 42);
        Values { buffer, size }
    }
    /// The value written by operation `i`.
    pub fn get(&self, i: u64) -> &[u8] {
        let span = (self.buffer.len() - self.size) as u64;
        let start = (i.wrapping_mul(7919) % span) as usize;
        &self.buffer[start..start + self.size]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sixteen_digits_and_interleave() {
        assert_eq!(&present_key(7), b"0000000000000014");
        assert_eq!(&missing_key(7), b"0000000000000015");
        assert!(present_key(7) < missing_key(7) && missing_key(7) < present_key(8));
    }

    #[test]
    fn permutation_visits_every_index_once() {
        for n in [1u64, 2, 3, 10, 1000, 4097] {
            let p = Permutation::new(n, 5);
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let x = p.at(i) as usize;
                assert!(!seen[x], "n={n}: {x} twice");
                seen[x] = true;
            }
        }
    }
}
