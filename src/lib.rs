//! NaiveKV: a log-structured key-value storage engine and server, built on
//! actix actors.
//!
//! Module map:
//! - [`engine`]: the database. [`Db`] is the embedding handle; behind it the
//!   memtable actor (memtable + WAL), the segment manager (segment set and
//!   manifest) and the compactor.
//! - [`format`](mod@format): the on-disk formats, each documented at its top: WAL,
//!   SSTable, manifest.
//! - [`fs`]: the file-system layer every file access goes through.
//! - [`server`]: the TCP server (listener, one session actor per connection,
//!   frame codec) speaking the protocol of `docs/PROTOCOL.md`.
//! - [`resp`]: the Redis-protocol (RESP2/RESP3) listener on the same
//!   database, for Redis clients (`run_server --resp-port`).
//! - [`cluster`]: replication on openraft: the Raft log, the engine as the
//!   state machine, snapshots, the peer network and a node's wiring.
//! - [`client`]: the async client library and the shell's command parser.
//! - [`proto`]: the protobuf messages generated from `protos/`.
//! - [`keyspace`]: which keys are NaiveKV's own (reserved prefixes).
//! - [`options`], [`error`]: engine options and the engine error type.

// Unit tests may unwrap: a panic there is a failed test, not a crash.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod client;
pub mod cluster;
pub mod engine;
pub mod error;
pub mod format;
pub mod fs;
pub mod keyspace;
pub mod options;
pub mod proto;
pub mod resp;
pub mod server;
#[cfg(test)]
mod test_random;

pub use engine::{Db, ReadVersion, ScanPage, ScanRequest, Stats, Ttl, Versioned, WriteBatch};
pub use error::{Error, Result};
pub use options::{Clock, ManualClock, Options, SyncPolicy, SystemClock};
