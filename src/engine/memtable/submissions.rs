//! How writes reach the memtable actor: a lock-free submission queue the
//! actor drains in batches, with poll-then-park on both sides.
//!
//! A put from another thread used to be an actix message: the actor's thread
//! was woken for it (a futex and a context switch, tens of microseconds on a
//! VM) and the writer's thread was woken for the answer. Now a writer pushes
//! its [`Write`] onto a [`SegQueue`] (a few atomic operations) and the actor,
//! while writes have arrived recently, polls that queue instead of sleeping;
//! the writer in turn polls its answer for a while before it parks
//! ([`Completion`]). A hop between two running threads is a cache-line
//! transfer, well under a microsecond. Between two looks each side yields
//! its core (`sched_yield`): on a busy machine the writer and the actor
//! often share one, and a side that spins without yielding holds up the
//! other (measured in `docs/BENCHMARKS.md`). When traffic stops both sides park
//! within [`ACTOR_SPIN`] and [`CALLER_SPIN`], so an idle database burns no
//! CPU.
//!
//! Ordering: the queue is FIFO, so one caller's writes reach the actor in
//! the order it made them. `Flush` and `Close`, which travel through the
//! actor's mailbox, first drain the queue, so a write made before such a
//! request is taken before it.
//!
//! Lost wake-ups: the actor sets `parked` and then looks at the queue once
//! more; a writer pushes and then looks at `parked`. A sequentially
//! consistent fence on both sides makes at least one of them see the other.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crossbeam_queue::SegQueue;
use futures_util::task::AtomicWaker;
use tokio::sync::oneshot;

use super::messages::Write;
use crate::{Error, Result};

/// How long the actor keeps polling the queue after the last write from
/// another thread arrived. Longer than the gap between one thread's
/// back-to-back puts (a few microseconds); short enough that an idle
/// database parks at once.
pub const ACTOR_SPIN: Duration = Duration::from_micros(50);

/// How long a writer on another thread polls its answer before it parks.
/// Covers a write that is not synced (a few microseconds); a synced write
/// takes an fdatasync (hundreds) and parks.
pub const CALLER_SPIN: Duration = Duration::from_micros(50);

/// The queue between every writer and the memtable actor.
pub struct Submissions {
    queue: SegQueue<Write>,
    /// The actor's waker, registered when it parks.
    waker: AtomicWaker,
    /// The actor is parked (or about to be): a writer must wake it.
    parked: AtomicBool,
    /// The actor has stopped: writes pushed now are dropped (their callers
    /// see `Closed`).
    closed: AtomicBool,
    /// Every `Db` handle is gone: once the queue is drained, the actor's
    /// intake ends (and with it the actor, when nothing else holds it).
    disconnected: AtomicBool,
    /// The thread the actor runs on: a write from it needs no spinning.
    actor_thread: ThreadId,
}

impl Submissions {
    /// A queue for an actor that runs on the calling thread.
    pub fn on_this_thread() -> Self {
        Submissions {
            queue: SegQueue::new(),
            waker: AtomicWaker::new(),
            parked: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            disconnected: AtomicBool::new(false),
            actor_thread: std::thread::current().id(),
        }
    }

    /// True when called on the actor's thread.
    pub fn is_local(&self) -> bool {
        std::thread::current().id() == self.actor_thread
    }

    /// Hands `write` to the actor, waking it if it is parked.
    pub fn submit(&self, write: Write) {
        self.queue.push(write);
        fence(Ordering::SeqCst);
        if self.closed.load(Ordering::Relaxed) {
            self.drop_queued();
        } else if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// How many writes are queued now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// The next queued write, if any.
    pub fn pop(&self) -> Option<Write> {
        self.queue.pop()
    }

    /// Registers the actor's waker and marks it parked, unless a write is
    /// already waiting (then `false`: keep working).
    pub fn park(&self, waker: &std::task::Waker) -> bool {
        self.waker.register(waker);
        self.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.queue.is_empty() && !self.is_disconnected() {
            return true;
        }
        self.parked.store(false, Ordering::Relaxed);
        false
    }

    /// No write will be taken any more: queued and later ones are dropped,
    /// and their callers see `Closed`. Wakes the actor so it can stop.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.drop_queued();
        self.waker.wake();
    }

    /// No handle will submit again (the last `Db` handle is gone): wakes
    /// the actor to take what is queued and end its intake.
    pub fn disconnect(&self) {
        self.disconnected.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// See [`disconnect`](Self::disconnect).
    pub fn is_disconnected(&self) -> bool {
        self.disconnected.load(Ordering::Acquire)
    }

    fn drop_queued(&self) {
        while self.queue.pop().is_some() {}
    }
}

/// The actor's side of the spin: polls while a write from another thread
/// arrived within [`ACTOR_SPIN`].
#[derive(Debug, Default)]
pub struct ActorSpin {
    last_remote: Option<Instant>,
}

impl ActorSpin {
    /// A write from another thread has just been taken.
    pub fn remote_arrived(&mut self) {
        self.last_remote = Some(Instant::now());
    }

    /// Waits briefly for a write; `true` if one may have come (poll again),
    /// `false` once the spin window has passed (park).
    pub fn wait(&mut self, submissions: &Submissions) -> bool {
        let Some(since) = self.last_remote else {
            return false;
        };
        while since.elapsed() < ACTOR_SPIN {
            if !submissions.queue.is_empty() {
                return true;
            }
            // Gives the core to a writer that shares it (on a busy machine
            // the two often do); spinning without yielding measured worse.
            std::thread::yield_now();
        }
        self.last_remote = None;
        false
    }
}

/// A writer's answer: polls it for up to [`CALLER_SPIN`] when the writer
/// runs on another thread than the actor, then waits like any future.
pub struct Completion {
    rx: oneshot::Receiver<Result<()>>,
    spin: bool,
}

impl Completion {
    /// Waits on `rx`; spins first if `spin`.
    pub fn new(rx: oneshot::Receiver<Result<()>>, spin: bool) -> Self {
        Completion { rx, spin }
    }

    fn spin_for_answer(&mut self) -> Option<Result<()>> {
        let start = Instant::now();
        while start.elapsed() < CALLER_SPIN {
            match self.rx.try_recv() {
                Ok(answer) => return Some(answer),
                Err(oneshot::error::TryRecvError::Closed) => return Some(Err(Error::Closed)),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            std::thread::yield_now();
        }
        None
    }
}

impl Future for Completion {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.spin)
            && let Some(answer) = this.spin_for_answer()
        {
            return Poll::Ready(answer);
        }
        Pin::new(&mut this.rx)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(Error::Closed)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    use super::*;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn write() -> (Write, oneshot::Receiver<Result<()>>) {
        let (reply, rx) = oneshot::channel();
        let mutations = vec![crate::engine::batch::Mutation::new(
            "k".into(),
            Some("v".into()),
        )];
        let write = Write {
            mutations,
            requirements: Vec::new(),
            range_deletes: Vec::new(),
            reply,
            remote: true,
        };
        (write, rx)
    }

    #[test]
    fn a_parked_actor_is_woken_once_and_a_busy_one_not_at_all() {
        let submissions = Submissions::on_this_thread();
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        submissions.submit(write().0); // not parked: no wake-up
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        assert!(!submissions.park(&waker), "a queued write keeps it working");
        while submissions.pop().is_some() {}
        assert!(submissions.park(&waker));
        submissions.submit(write().0);
        submissions.submit(write().0);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn writes_submitted_after_close_are_answered_closed() {
        let submissions = Submissions::on_this_thread();
        let (queued, queued_rx) = write();
        submissions.submit(queued);
        submissions.close();
        let (late, late_rx) = write();
        submissions.submit(late);
        assert!(submissions.pop().is_none());
        for rx in [queued_rx, late_rx] {
            let answer = futures_util::FutureExt::now_or_never(Completion::new(rx, false));
            assert!(matches!(answer, Some(Err(Error::Closed))), "{answer:?}");
        }
    }

    #[test]
    fn a_spinning_caller_sees_an_answer_or_a_dropped_reply() {
        let (reply, rx) = oneshot::channel();
        reply.send(Ok(())).unwrap();
        let answer = futures_util::FutureExt::now_or_never(Completion::new(rx, true));
        assert!(matches!(answer, Some(Ok(()))), "{answer:?}");
        let (reply, rx) = oneshot::channel::<Result<()>>();
        drop(reply);
        let answer = futures_util::FutureExt::now_or_never(Completion::new(rx, true));
        assert!(matches!(answer, Some(Err(Error::Closed))), "{answer:?}");
    }
}
