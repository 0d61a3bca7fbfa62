//! A full disk under the WAL: fail, then resume by itself.
//!
//! When appending to or syncing the WAL fails because the disk is full
//! (`StorageFull`), or the next WAL cannot be created for that reason, the
//! writes of that group fail and so does every write until the WAL is back;
//! reads go on. Nothing acknowledged is lost: a write is acknowledged only
//! once its record is written (and synced, as the policy says).
//!
//! The old WAL's tail is unknown after a failed append (part of the group may
//! be in it), so the actor does not write to it again. It retries, with
//! backoff, to create a new WAL whose first record is a *resume marker*: an
//! empty batch whose `first_seq` is the first sequence number of the failed
//! group. The numbers of the failed group are never used again; the next
//! write gets the number after them. At open, the marker tells the sequence
//! check in `engine/replay.rs` that the jump after it is these burned
//! numbers, not a lost WAL. A failed group's records that did reach the old
//! WAL whole may reappear after a restart: a write that failed has an
//! unknown outcome, as in every database.
//!
//! Under `SyncPolicy::None` or `Interval` the WAL given up may hold
//! acknowledged writes no sync has covered: it is synced before the new WAL
//! is created (a close while the disk is still full syncs it too), so a
//! power loss after the pause loses no more than the policy allows.
//!
//! The WALs before the pause are removed once nothing in them is live: when
//! the first flush after it had no next WAL to move the manifest's
//! `oldest_live_wal` to, the new WAL is reported to the segment manager
//! (`WalResumed`), so a flushed WAL does not keep the space writes need.
//!
//! Any other WAL error still poisons the actor until the database is
//! reopened (after a failed fsync the kernel may have dropped the data; the
//! PostgreSQL lesson).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::{MemtableActor, create_wal, thread_error};
use crate::engine::batch::encode_wal_batch;
use crate::engine::segments::WalResumed;
use crate::engine::wal_identity::WalIdentity;
use crate::format::wal::WalWriter;
use crate::{Error, Result, SyncPolicy};

/// The first wait before trying to create a new WAL again.
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// The longest wait between tries.
const LONGEST_RETRY: Duration = Duration::from_secs(10);

/// The actor's state while the disk is full under the WAL.
pub(super) struct WalFull {
    /// What writes are refused with meanwhile.
    error: Error,
    /// The first sequence number not acknowledged: the marker's `first_seq`.
    resume_from: u64,
    /// The wait before the next try.
    next_retry: Duration,
    /// The WAL given up, when acknowledged writes in it may not be synced
    /// yet (`SyncPolicy::None` or `Interval`): synced before the next WAL
    /// is created, or at close. (Under `Always` every acknowledged write
    /// in it is synced already; the tail is the failed group's.)
    abandoned: Option<Arc<WalWriter>>,
}

/// True for an error that a full disk caused.
pub(super) fn is_disk_full(error: &Error) -> bool {
    matches!(error, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull)
}

impl MemtableActor {
    /// Stops writing to the current WAL after `error` (a full disk) and
    /// schedules the first try at a new one. `resume_from` is the first
    /// sequence number no acknowledged write has.
    pub(super) fn enter_wal_full(
        &mut self,
        error: Error,
        resume_from: u64,
        ctx: &mut Context<Self>,
    ) {
        log::error!(
            "the disk is full under the WAL, refusing writes until a new WAL can be written \
             (retrying): {error}"
        );
        let abandoned = self.wal.take();
        let abandoned = abandoned.filter(|_| self.options.sync != SyncPolicy::Always);
        let refusal = Error::io(
            "the disk is full; writes resume by themselves once space is freed",
            std::io::Error::new(std::io::ErrorKind::StorageFull, error.to_string()),
        );
        self.wal_full = Some(WalFull {
            error: refusal,
            resume_from,
            next_retry: FIRST_RETRY,
            abandoned,
        });
        ctx.run_later(FIRST_RETRY, |act, ctx| act.retry_wal(ctx));
    }

    /// The last write a clean close can vouch for: the published bound,
    /// unless that ends in numbers a failed group burned and no write came
    /// after them (the WALs then end at the resume marker: a later open
    /// finds writes up to the number before it).
    /// During a second pause the first one's burned numbers may still end
    /// the published bound (no write made it between the two), so both
    /// ranges are looked at, newest first.
    pub(super) fn clean_close_seq(&self) -> u64 {
        let mut published = self.direct.published();
        if let Some(full) = &self.wal_full
            && published >= full.resume_from
        {
            published = full.resume_from.saturating_sub(1);
        }
        if let Some((first, last)) = self.burned
            && (first..=last).contains(&published)
        {
            published = first.saturating_sub(1);
        }
        published
    }

    /// The last sequence number a WAL holds: `last_seq`, unless that ends
    /// in numbers a failed group burned and no write came after them (the
    /// WALs then end just before the resume marker).
    pub(super) fn last_written_seq(&self) -> u64 {
        match self.burned {
            Some((first, last)) if (first..=last).contains(&self.last_seq) => {
                first.saturating_sub(1)
            }
            _ => self.last_seq,
        }
    }

    /// The error writes get while the disk is full, if it is.
    pub(super) fn wal_full_error(&self) -> Option<Error> {
        self.wal_full.as_ref().map(|full| full.error.clone())
    }

    /// Syncs the WAL given up, if its acknowledged writes may not be synced
    /// (at close, while the disk is still full).
    pub(super) fn sync_abandoned_wal(&self) -> Result<()> {
        let abandoned = self.wal_full.as_ref().and_then(|f| f.abandoned.as_ref());
        abandoned.map_or(Ok(()), |wal| wal.sync())
    }

    /// Syncs the WAL given up (its acknowledged writes are durable once the
    /// writes go on in another), then tries to create a new WAL that starts
    /// with the resume marker.
    fn retry_wal(&mut self, ctx: &mut Context<Self>) {
        let Some(full) = self.wal_full.as_ref() else {
            return;
        };
        if self.closing.is_some() || self.poisoned.is_some() {
            return;
        }
        if self.rotating {
            // Its frozen memtable must reach the segment manager before
            // `WalResumed` does, and its new WAL must not replace this one.
            return self.retry_later(ctx);
        }
        let resume_from = full.resume_from;
        let abandoned = full.abandoned.clone();
        let number = self.file_numbers.allocate();
        let (options, lock) = (self.options.clone(), self.lock.clone());
        let identity = self.file_numbers.wal_identity();
        let job = actix_rt::task::spawn_blocking(move || {
            let _lock = lock;
            if let Some(wal) = abandoned {
                wal.sync()?;
            }
            start_wal_with_marker(&options, number, identity, resume_from)
        });
        ctx.spawn(job.into_actor(self).map(move |joined, act, ctx| {
            match joined.unwrap_or_else(|e| Err(thread_error("WAL retry", &e))) {
                Ok(wal) => act.resume(wal, number, resume_from),
                Err(error) if is_disk_full(&error) => act.retry_later(ctx),
                Err(error) => {
                    log::error!("cannot start a new WAL, refusing writes until reopen: {error}");
                    act.wal_full = None;
                    act.poison(error);
                }
            }
            act.make_progress(ctx);
        }));
    }

    fn retry_later(&mut self, ctx: &mut Context<Self>) {
        let Some(full) = self.wal_full.as_mut() else {
            return;
        };
        let wait = full.next_retry;
        full.next_retry = (wait * 2).min(LONGEST_RETRY);
        log::debug!("the disk is still full; next WAL try in {wait:?}");
        ctx.run_later(wait, |act, ctx| act.retry_wal(ctx));
    }

    fn resume(&mut self, wal: WalWriter, number: u64, resume_from: u64) {
        log::info!("writes resumed: new WAL {number} after the disk was full");
        // Its marker is synced; nothing after it yet.
        self.synced_bytes = wal.bytes_written();
        self.wal = Some(std::sync::Arc::new(wal));
        self.wal_number = number;
        // The failed group's numbers are passed over: the lane opens after
        // them, and publishes up to them before any new write.
        self.burned = Some((resume_from, self.last_seq));
        self.wal_full = None;
        // With the active memtable empty, every earlier write is in a frozen
        // one already sent for flushing; the older WALs go once those are
        // flushed. Otherwise they go with the active memtable's own flush.
        if self.active_is_empty() {
            self.segment_manager.do_send(WalResumed { number });
        }
    }
}

/// Creates WAL `number` (its identity record first), writes the resume
/// marker and syncs it. The marker, not the identity, says where the WALs
/// before end: every write before `resume_from` must be in them.
fn start_wal_with_marker(
    options: &crate::Options,
    number: u64,
    identity: WalIdentity,
    resume_from: u64,
) -> Result<WalWriter> {
    let wal = create_wal(options, number, identity, 0)?;
    let mut payload = Vec::new();
    encode_wal_batch(resume_from, &[], &mut payload);
    let mut framed = Vec::new();
    WalWriter::encode_record(&payload, &mut framed);
    let written = wal.append_encoded(&framed).and_then(|()| wal.sync());
    if let Err(error) = written {
        // Holds no write: a retry starts from a new file, with the space back.
        let path = wal.path().to_path_buf();
        drop(wal);
        let _ = options.fs.remove_file(&path);
        return Err(error);
    }
    Ok(wal)
}
