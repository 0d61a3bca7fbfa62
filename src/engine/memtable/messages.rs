//! The messages the memtable actor handles, and what it answers with.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::engine::version::SegmentSet;
use crate::{Error, Result};

pub use crate::engine::batch::Mutation;

/// Applies mutations atomically. Answered once durable. Not an actix
/// message: it goes through the actor's submission queue
/// (`submissions.rs`).
pub struct Write {
    pub mutations: Vec<Mutation>,
    pub reply: oneshot::Sender<Result<()>>,
    /// Sent from another thread than the actor's: the actor keeps polling
    /// for the next one for a while.
    pub remote: bool,
    /// A condition the write depends on; `None` for a plain write.
    pub guard: Option<Guard>,
}

/// An optimistic condition on a write (a read-modify-write's write): the
/// newest version of each key read is still the one the caller read. The actor
/// checks it where writes are ordered, just before the write's group goes
/// to the WAL; if it no longer holds, the write is dropped, `applied`
/// stays false and the reply is still `Ok`, and the caller reads again.
pub struct Guard {
    /// Each key read and the sequence number of the version read (`None`
    /// if there was none).
    pub seen: Vec<(Bytes, Option<u64>)>,
    /// The segment set of the view the caller read from. A flush or a
    /// compaction since then may have moved a newer version out of the
    /// memtables, so a different set counts as a conflict (a retry, never
    /// a wrong answer).
    pub segments: Arc<SegmentSet>,
    /// Set by the actor when the write went to the WAL.
    pub applied: Arc<std::sync::atomic::AtomicBool>,
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

/// Finishes accepted writes, syncs the WAL and stops the actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close {
    pub reply: oneshot::Sender<Result<()>>,
}
