//! Reproducible pseudo-random numbers for unit tests (xorshift64), without
//! a dependency: shuffled orders, keys, noise.

/// The xorshift64 sequence after `seed` (not 0: 0 repeats forever).
pub(crate) fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
