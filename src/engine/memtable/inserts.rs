//! A group's memtable inserts, done on the writers' own threads.
//!
//! The memtable actor orders every write (it gives the sequence numbers),
//! appends the group to the WAL and syncs it; until now it also inserted
//! every version into the skip list, one write after another on its one
//! thread, while fjall's writers insert in parallel on theirs (perf: the
//! insert was the actor's largest cost, docs/BENCHMARKS.md, issue 14). Now,
//! as with RocksDB's concurrent memtable writes, a group with writes from
//! other threads is answered with a [`GroupInserts`]: the group's writes as
//! insert jobs (mutations and their sequence numbers) in a lock-free queue,
//! and a handle that can only insert into the active memtable's skip list.
//! Each writer of the group, on its own thread, takes jobs from the queue
//! and inserts them (its own or another's: any thread may insert any job),
//! then waits until the group is done. The last insert publishes the
//! [`ReadView`] the actor built for the end of the group; only then is any
//! write of the group visible or acknowledged.
//!
//! What is ordered by whom:
//! - The actor alone orders writes: it gives sequence numbers in queue
//!   order, checks conditions, appends to the WAL and syncs, and it forms
//!   the next group only once every insert of the previous one is done
//!   ([`GroupInserts::is_done`]); it freezes, flushes and closes only then
//!   too, so a frozen memtable has no insert outstanding, and a condition
//!   is checked against every earlier write.
//! - A group is answered only after its WAL append (and sync under
//!   `SyncPolicy::Always`) succeeded: an inserted version is as durable as
//!   the sync policy promises, exactly as when the actor inserted it.
//! - Writers insert versions with sequence numbers above the bound of every
//!   published view, so no reader sees them (`table.rs`: a snapshot ignores
//!   versions above its bound) until the last insert of the group publishes
//!   the view whose bound is the group's last sequence number. So a reader
//!   sees all of a group or none of it: never half a batch, and never a
//!   write without the writes ordered before it.
//! - A writer is answered (its future completes) only once its group's view
//!   is published: read-your-writes holds.
//! - A writer whose future is dropped, or not polled, inserts nothing: the
//!   others of its group take its job, and the actor inserts whatever is
//!   left when its spin window ends ([`GroupInserts::help`]), so a group is
//!   never left waiting for a writer.
//! - While a group is inserting, the actor publishes nothing (a segment set
//!   or a flush that lands meanwhile is published when the group is done),
//!   so the view the last insert publishes is the newest state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::task::{Context, Poll, Waker};

use arc_swap::ArcSwap;
use crossbeam_queue::SegQueue;

use super::ReadView;
use super::messages::Mutation;
use super::submissions::Submissions;
use super::table::VersionInserter;

/// One write's versions: its mutations from sequence number `first_seq` on.
pub struct InsertJob {
    pub mutations: Vec<Mutation>,
    pub first_seq: u64,
}

/// Where a group's inserts publish when they are done.
pub struct Publish {
    /// What readers see once the group is inserted (built by the actor).
    pub view: Arc<ReadView>,
    pub published: Arc<ArcSwap<ReadView>>,
    /// To wake the actor, which waits for the group before the next one.
    pub submissions: Arc<Submissions>,
}

/// One group's inserts in flight. See the module doc.
pub struct GroupInserts {
    jobs: SegQueue<InsertJob>,
    /// Jobs not yet inserted (taken or not).
    remaining: AtomicUsize,
    /// Every job inserted and the view published.
    done: AtomicBool,
    versions: VersionInserter,
    publish: Publish,
    /// Writers of the group waiting for the others' inserts.
    waiters: SegQueue<Waker>,
}

impl std::fmt::Debug for GroupInserts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupInserts")
            .field("remaining", &self.remaining.load(Ordering::Relaxed))
            .field("done", &self.is_done())
            .finish_non_exhaustive()
    }
}

impl GroupInserts {
    /// A group that inserts `jobs` into `versions`, then publishes.
    pub fn new(jobs: Vec<InsertJob>, versions: VersionInserter, publish: Publish) -> Self {
        let remaining = jobs.len();
        let queue = SegQueue::new();
        jobs.into_iter().for_each(|job| queue.push(job));
        let group = GroupInserts {
            jobs: queue,
            remaining: AtomicUsize::new(remaining),
            done: AtomicBool::new(false),
            versions,
            publish,
            waiters: SegQueue::new(),
        };
        if remaining == 0 {
            group.finish();
        }
        group
    }

    /// Every insert of the group is done and its view is published.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Inserts jobs nobody has taken yet, until there are none.
    pub fn help(&self) {
        while self.insert_one() {}
    }

    /// Inserts one job nobody has taken yet; false if there was none.
    fn insert_one(&self) -> bool {
        let Some(job) = self.jobs.pop() else {
            return false;
        };
        for (offset, m) in job.mutations.into_iter().enumerate() {
            let seq = job.first_seq + offset as u64;
            self.versions.insert(m.key, seq, m.value, m.expire_at_ms);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish();
        }
        true
    }

    /// Ready once the group is done; registers the waker otherwise.
    pub fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_done() {
            return Poll::Ready(());
        }
        self.waiters.push(cx.waker().clone());
        // Pairs with the fence in `finish`: either it sees this waker, or
        // this sees `done`.
        fence(Ordering::SeqCst);
        if self.is_done() {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// The last insert is done: publishes the view and wakes whoever
    /// waits for the group.
    fn finish(&self) {
        let publish = &self.publish;
        publish.published.store(publish.view.clone());
        self.done.store(true, Ordering::Release);
        fence(Ordering::SeqCst);
        while let Some(waiter) = self.waiters.pop() {
            waiter.wake();
        }
        publish.submissions.notify();
    }
}

#[cfg(test)]
mod tests {
    use std::task::Wake;

    use bytes::Bytes;

    use super::*;
    use crate::engine::memtable::MemTable;

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn job(keys: &[&str], first_seq: u64) -> InsertJob {
        let mutations = keys
            .iter()
            .map(|k| Mutation::new(Bytes::copy_from_slice(k.as_bytes()), Some("v".into())))
            .collect();
        InsertJob {
            mutations,
            first_seq,
        }
    }

    #[test]
    fn the_view_is_published_only_after_the_last_insert() {
        let mut table = MemTable::default();
        for seq in 1..=3 {
            table.reserve(1, 1, seq);
        }
        let published = Arc::new(ArcSwap::from_pointee(ReadView::default()));
        let publish = Publish {
            view: Arc::new(ReadView {
                active: table.clone(),
                applied_seq: 3,
                ..ReadView::default()
            }),
            published: published.clone(),
            submissions: Arc::new(Submissions::on_this_thread()),
        };
        let jobs = vec![job(&["a", "b"], 1), job(&["c"], 3)];
        let group = GroupInserts::new(jobs, table.inserter(), publish);

        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        assert!(
            group
                .poll_done(&mut Context::from_waker(&waker))
                .is_pending()
        );
        assert!(group.insert_one(), "one writer inserts its job");
        assert_eq!(
            published.load().applied_seq,
            0,
            "half the group is not visible"
        );
        assert!(
            table.get(b"a").is_some(),
            "though its versions are in the map"
        );

        group.help(); // inserts what is left, as the actor does
        assert!(group.is_done());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "the waiter is woken");
        let view = published.load();
        assert_eq!(view.applied_seq, 3);
        assert!(view.active.get(b"c").is_some());
        assert!(group.poll_done(&mut Context::from_waker(&waker)).is_ready());
    }
}
