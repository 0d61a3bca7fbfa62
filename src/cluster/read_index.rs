//! Batched read index: one read-index round serves every read waiting when
//! it starts.
//!
//! A linearizable read on a cluster node needs a *read index*: the leader
//! confirms it still leads (a heartbeat round answered by a majority) and
//! names its commit index; the serving node waits until it has applied that
//! far, then reads its own engine. One round per read costs a heartbeat
//! round trip (and, on a follower, a forwarded request) per read. A
//! [`ReadIndexBatcher`] is an actor (a task owning a channel's receiving
//! end; no lock) that runs rounds one at a time: when a round ends, every
//! read that arrived meanwhile is served by the *next* round, which starts
//! only after they all arrived.
//!
//! # Why batched reads stay linearizable
//!
//! A read R is handed to the batcher at time `t0`. The round that serves it
//! starts at `t1 > t0` (the batcher drains only requests already in its
//! channel when it starts a round; a read that arrives during a round waits
//! for the next one). The leader takes its commit index after `t1` and
//! confirms with a majority after that, so the index covers every write
//! acknowledged before `t0` (an acknowledged write was committed before its
//! acknowledgement), and no other leader can have committed anything newer
//! at that point. R then reads once the node has applied up to the index:
//! it sees every write acknowledged before it began, and nothing that was
//! not committed. This is the read index of the Raft thesis (section 6.4)
//! with its batching; a read never uses a round that began before it did.
//!
//! On a follower the round is one forwarded `ReadIndex` request to the
//! leader, which joins the leader's own batcher (a round starting after it
//! arrived): one request per follower round, not per read.
//!
//! # Why not a leader lease
//!
//! openraft 0.9 has no lease read: `ensure_linearizable` and
//! `get_read_log_id` always send a heartbeat round (its `leader_lease`
//! only delays votes). A lease would also make reads depend on bounded
//! clock drift and pause-free processes, which a loaded VM does not give.
//! Batching keeps the read index's guarantee and takes the cost of a round
//! once per batch.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use super::NodeId;

/// The log id a read must wait for (`None`: nothing was ever committed).
pub type ReadIndex = Option<openraft::LogId<NodeId>>;

/// How many reads may wait to be handed to the batcher before senders wait.
const QUEUED_READS: usize = 4096;

/// One waiting read: where its round's answer goes.
type Waiter<E> = oneshot::Sender<Result<ReadIndex, E>>;

/// The handle on a batcher task: cheap to clone.
pub struct ReadIndexBatcher<E> {
    waiters: mpsc::Sender<Waiter<E>>,
}

impl<E> Clone for ReadIndexBatcher<E> {
    fn clone(&self) -> Self {
        ReadIndexBatcher {
            waiters: self.waiters.clone(),
        }
    }
}

impl<E> std::fmt::Debug for ReadIndexBatcher<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadIndexBatcher").finish()
    }
}

/// The batcher's end of the channel, handed to [`run_rounds`].
pub struct ReadIndexQueue<E> {
    waiters: mpsc::Receiver<Waiter<E>>,
}

impl<E: Clone> ReadIndexBatcher<E> {
    /// A batcher handle and the queue its task will serve; start the task
    /// with [`run_rounds`] on a runtime that can run a round.
    pub fn channel() -> (Self, ReadIndexQueue<E>) {
        let (waiters, queue) = mpsc::channel(QUEUED_READS);
        (
            ReadIndexBatcher { waiters },
            ReadIndexQueue { waiters: queue },
        )
    }

    /// The read index of a round that starts after this call; `None` if the
    /// batcher task has stopped.
    pub async fn read_index(&self) -> Option<Result<ReadIndex, E>> {
        let (answer, answered) = oneshot::channel();
        self.waiters.send(answer).await.ok()?;
        answered.await.ok()
    }
}

/// Serves `queue` until every handle is dropped: takes every read waiting,
/// runs one `round`, answers them all with its result, and again.
pub async fn run_rounds<E, F, R>(mut queue: ReadIndexQueue<E>, mut round: F)
where
    E: Clone,
    F: FnMut() -> R,
    R: Future<Output = Result<ReadIndex, E>>,
{
    let mut batch = Vec::new();
    while let Some(first) = queue.waiters.recv().await {
        batch.push(first);
        while let Ok(next) = queue.waiters.try_recv() {
            batch.push(next);
        }
        // Readers that gave up (their deadline passed) need no round.
        batch.retain(|waiter| !waiter.is_closed());
        if batch.is_empty() {
            continue;
        }
        let result = round().await;
        for waiter in batch.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    fn log_id(index: u64) -> ReadIndex {
        Some(openraft::LogId::new(
            openraft::CommittedLeaderId::new(1, 1),
            index,
        ))
    }

    /// A round that counts itself and answers its own number as the index,
    /// after `gate` lets it finish.
    fn counting_round(
        rounds: Arc<AtomicU64>,
        gate: Arc<tokio::sync::Semaphore>,
    ) -> impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = Result<ReadIndex, ()>> + Send>> {
        move || {
            let (rounds, gate) = (rounds.clone(), gate.clone());
            Box::pin(async move {
                let number = rounds.fetch_add(1, Ordering::SeqCst) + 1;
                let _permit = gate.acquire().await.map_err(|_| ())?;
                Ok(log_id(number))
            })
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reads_waiting_together_share_one_round() {
        let (batcher, queue) = ReadIndexBatcher::<()>::channel();
        let rounds = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(1000));
        tokio::spawn(run_rounds(queue, counting_round(rounds.clone(), gate)));
        let reads: Vec<_> = (0..50).map(|_| batcher.read_index()).collect();
        let answers = futures_util::future::join_all(reads).await;
        assert!(answers.iter().all(|a| a == &Some(Ok(log_id(1)))));
        assert_eq!(rounds.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_read_arriving_during_a_round_waits_for_the_next_one() {
        let (batcher, queue) = ReadIndexBatcher::<()>::channel();
        let rounds = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        tokio::spawn(run_rounds(
            queue,
            counting_round(rounds.clone(), gate.clone()),
        ));
        let early = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.read_index().await }
        });
        // Poll until the first round has started (it waits at the gate).
        while rounds.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let late = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.read_index().await }
        });
        tokio::task::yield_now().await;
        gate.add_permits(2);
        assert_eq!(early.await.unwrap(), Some(Ok(log_id(1))));
        assert_eq!(late.await.unwrap(), Some(Ok(log_id(2))));
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_round_fails_every_read_in_it_and_the_next_round_runs() {
        let (batcher, queue) = ReadIndexBatcher::<String>::channel();
        let failing = Arc::new(AtomicU64::new(0));
        tokio::spawn(run_rounds(queue, move || {
            let n = failing.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Err("no leader".to_string()),
                    _ => Ok(log_id(7)),
                }
            }
        }));
        assert_eq!(
            batcher.read_index().await,
            Some(Err("no leader".to_string()))
        );
        assert_eq!(batcher.read_index().await, Some(Ok(log_id(7))));
    }
}
