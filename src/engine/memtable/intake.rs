//! The memtable actor's side of the submission queue: [`Intake`], a future
//! that lives in the actor's context for as long as the actor does, takes
//! every queued write into `pending` in one go, and then polls the queue
//! (while writes from other threads keep coming) or parks.

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
        if act.take_submissions() || act.inserts_done() {
            act.make_progress(ctx);
            // Lets the mailbox and finished jobs run, then comes back.
            task.waker().wake_by_ref();
            return Poll::Pending;
        }
        if act.submissions.is_disconnected() && act.inserting.is_none() {
            return Poll::Ready(()); // no handle can submit any more
        }
        // While a group is being written, new writes wait for it anyway:
        // the job's completion takes them. While writers insert a group,
        // its last insert may come any moment: poll for it too.
        let inserting = act.inserting.clone();
        let inserts_done = || inserting.as_ref().is_some_and(|g| g.is_done());
        let keep_polling = !act.job_in_flight() && act.spin.wait(&act.submissions, inserts_done);
        if !keep_polling && let Some(group) = &inserting {
            // The writers had their turn, or one's future is not being
            // polled: the actor inserts what nobody has taken.
            group.help();
        }
        if keep_polling || !act.submissions.park(task.waker(), inserts_done) {
            task.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl MemtableActor {
    /// The group being inserted by its writers is done (the actor has not
    /// yet taken note).
    fn inserts_done(&self) -> bool {
        self.inserting.as_ref().is_some_and(|g| g.is_done())
    }

    /// Moves every queued write into `pending` (or answers it at once if
    /// writes are refused). True if there was any.
    pub(super) fn take_submissions(&mut self) -> bool {
        let (mut any, mut remote) = (false, false);
        while let Some(write) = self.submissions.pop() {
            any = true;
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
        if remote {
            self.spin.remote_arrived();
        }
        any
    }
}
