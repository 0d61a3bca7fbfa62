//! The messages the memtable actor handles, and what it answers with.

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::engine::batch::Requirement;
use crate::engine::range_delete::RangeDelete;
use crate::engine::version::SegmentSet;
use crate::{Error, Result};

pub use crate::engine::batch::Mutation;

/// Applies mutations atomically. Answered once durable. Not an actix
/// message: it goes through the actor's submission queue
/// (`submissions.rs`).
pub struct Write {
    pub mutations: Vec<Mutation>,
    /// Conditions checked before sequence numbers are given (see
    /// `WriteBatch::require_unchanged`); empty for a plain write.
    pub requirements: Vec<Requirement>,
    /// Range deletes, applied after `mutations` (see `range_delete.rs`).
    pub range_deletes: Vec<RangeDelete>,
    pub reply: oneshot::Sender<Result<()>>,
    /// Sent from another thread than the actor's: the actor keeps polling
    /// for the next one for a while.
    pub remote: bool,
}

/// Freezes the memtable and answers once everything written before is in
/// segments.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush {
    pub reply: oneshot::Sender<Result<()>>,
}

/// From the segment manager: a frozen memtable is now in `segments`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushDone {
    pub wal_number: u64,
    pub segments: Arc<SegmentSet>,
}

/// From the segment manager: flushing failed (it will retry).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushFailed {
    pub error: Error,
}

/// From the segment manager: the segment set changed (a compaction landed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SegmentsChanged(pub Arc<SegmentSet>);

/// Gauges only this actor knows, for `Db::stats`.
#[derive(Debug)]
pub struct MemtableGauges {
    pub memtable_bytes: u64,
    pub frozen_memtables: u64,
    pub segments: Arc<SegmentSet>,
    pub last_seq: u64,
    /// Bytes in the active WAL.
    pub wal_bytes: u64,
}

/// Asks for [`MemtableGauges`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Gauges {
    pub reply: oneshot::Sender<MemtableGauges>,
}

/// Finishes accepted writes, syncs the WAL and stops the actor. Answers
/// the sequence number every acknowledged write is at or below, all of them
/// in the WAL and synced; `None` if a WAL write had failed (the database
/// was poisoned: no clean close to record).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close {
    pub reply: oneshot::Sender<Result<Option<u64>>>,
}
