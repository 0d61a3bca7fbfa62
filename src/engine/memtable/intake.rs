//! The memtable actor's side of the submission queue: [`Intake`], a future
//! that lives in the actor's context for as long as the actor does, takes
//! every queued write into `pending` in one go, and then polls the queue
//! (while writes from other threads keep coming) or parks. After an inline
//! sync it may hold the next group for a while (`gather.rs`).

use std::pin::Pin;
use std::task::Poll;

use actix::prelude::*;

use super::{MemtableActor, PendingWrite};

/// Drains the submission queue into the actor. See the module doc.
pub struct Intake;

impl ActorFuture<MemtableActor> for Intake {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut MemtableActor,
        ctx: &mut Context<MemtableActor>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        let took = act.take_submissions();
        let pending = &act.pending;
        let remote = || pending.iter().filter(|w| w.remote).count();
        if let Some(nap) = act.gather.hold(remote) {
            // This thread blocks for each sync in this mode anyway.
            std::thread::sleep(nap);
            task.waker().wake_by_ref();
            return Poll::Pending;
        }
        if took || act.draining || act.gather.take_released() {
            // (While draining, direct writers are leaving the lane: a few
            // microseconds, polled.)
            act.make_progress(ctx);
            // Lets the mailbox and finished jobs run, then comes back.
            task.waker().wake_by_ref();
            return Poll::Pending;
        }
        if act.submissions.is_disconnected() {
            return Poll::Ready(()); // no handle can submit any more
        }
        // While a group is being written, new writes wait for it anyway:
        // the job's completion takes them.
        let keep_polling = !act.job_in_flight() && act.spin.wait(&act.submissions);
        if keep_polling || !act.submissions.park(task.waker()) {
            task.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl MemtableActor {
    /// Moves every queued write into `pending` (or answers it at once if
    /// writes are refused). True if there was any.
    pub(super) fn take_submissions(&mut self) -> bool {
        let (mut any, mut remote) = (false, false);
        let mut taken = 0;
        while let Some(write) = self.submissions.pop() {
            if !any {
                // Direct writes made after this one must come after it: the
                // lane closes before the write stops counting as queued.
                self.direct.close();
            }
            any = true;
            taken += 1;
            remote |= write.remote;
            if let Some(error) = self.refused() {
                let _ = write.reply.send(Err(error));
                continue;
            }
            self.pending.push(PendingWrite {
                mutations: write.mutations,
                requirements: write.requirements,
                range_deletes: write.range_deletes,
                reply: write.reply,
                first_seq: 0,
                remote: write.remote,
            });
        }
        self.direct.taken(taken);
        if remote {
            self.spin.remote_arrived();
        }
        any
    }
}
