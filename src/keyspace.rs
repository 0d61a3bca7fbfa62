//! How the one key space of a database is shared between users and
//! NaiveKV's own records.
//!
//! Keys that start with [`INTERNAL_PREFIX`] (`0xFF 0x00 "naivekv/"`) are
//! NaiveKV's: the Redis databases other than 0, and the replication state of
//! a cluster node, live under sub-prefixes of it, each named by a constant
//! here so that two features never pick the same bytes. Everything else is
//! the user's. The native protocol and the embedding API see keys as they
//! are; the Redis port's database 0 is the same key space minus this prefix.

/// The first bytes of every key NaiveKV keeps for itself.
pub const INTERNAL_PREFIX: &[u8] = b"\xff\x00naivekv/";

/// Where the Redis databases other than 0 keep their keys (see
/// `resp/database.rs`): `DB_PREFIX + n + "/" + key`.
pub const DB_PREFIX: &[u8] = b"\xff\x00naivekv/db/";
/// The prefix of a cluster node's replication state in its engine (the last
/// applied log id and membership, see `cluster::state_machine`):
/// [`INTERNAL_PREFIX`] + `"raft/"`.
pub const RAFT_PREFIX: &[u8] = b"\xff\x00naivekv/raft/";

/// Whether `key` is one of NaiveKV's own (under [`INTERNAL_PREFIX`]).
pub fn is_internal(key: &[u8]) -> bool {
    key.starts_with(INTERNAL_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_keys_are_those_under_the_prefix() {
        assert!(is_internal(b"\xff\x00naivekv/db/1/k"));
        assert!(!is_internal(b"\xff\x00naivekv"));
        assert!(!is_internal(b"user-key"));
        assert!(!is_internal(b"\xff\x01naivekv/x"));
        assert!(DB_PREFIX.starts_with(INTERNAL_PREFIX));
        assert!(is_internal(RAFT_PREFIX));
        assert!(RAFT_PREFIX.starts_with(INTERNAL_PREFIX));
    }
}
