//! The engines under test. fjall and sled have blocking APIs and run on the
//! threaded driver; NaiveKV runs on it too (an actix system per thread) or
//! on its own database's system (see `naive`).

pub mod fjall;
pub mod naive;
pub mod sled;

/// Block or page cache given to the peers that have one: fjall's default,
/// and NaiveKV's default block cache.
pub const PEER_CACHE_BYTES: u64 = 32 << 20;
