//! The engines under test. fjall and sled have blocking APIs and run on the
//! threaded driver; NaiveKV has its own in-flight driver in `naive`.

pub mod fjall;
pub mod naive;
pub mod sled;

/// Block or page cache given to the peers that have one: fjall's default.
/// NaiveKV has none and reads through the OS page cache.
pub const PEER_CACHE_BYTES: u64 = 32 << 20;
