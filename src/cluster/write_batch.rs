//! Grouped proposals: the plain writes that arrive while one proposal is
//! being committed are proposed together, as one log entry.
//!
//! openraft handles every client write as its own entry: the leader's core
//! task appends it, replicates it and applies it one entry at a time, about
//! 60 us of that task's CPU per entry on this machine, so many small writes
//! are bound by the core task, not by the disks or the network. A
//! [`WriteBatcher`] is a task owning a channel's receiving end (no lock):
//! it takes every write waiting when it is free, merges them into one
//! [`ClusterRequest`] (their mutations in arrival order), proposes it
//! through [`super::node::ClusterNode`]'s forwarding path, and answers each
//! with the result. Writes that arrive meanwhile wait for the next
//! proposal. On a follower the proposal is one forwarded request.
//!
//! Only plain writes are merged: no conditions (a conditional request is
//! decided as a whole, so merging would make one write's conflict
//! another's) and no range deletes (which apply after the mutations of
//! their own request). Those go straight to the proposal path. Merging is
//! safe for the rest: a plain request never conflicts, its `now_ms` is
//! only read by conditions, and one entry is applied as one atomic engine
//! batch, so the merged writes become visible together, in arrival order
//! (a later write to the same key wins, as it would have as a later
//! entry). A merged entry stays under [`MERGED_BYTES`]; a larger write is
//! proposed alone.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use super::request::{ClusterRequest, ClusterResponse};

/// The largest merged entry (keys, values and 16 bytes a mutation); far
/// below the engine's batch limit, so a merge of acceptable writes is
/// acceptable.
pub const MERGED_BYTES: usize = 1 << 20;
/// The most writes one entry takes.
pub const MERGED_WRITES: usize = 1024;
/// How many writes may wait to be handed to the batcher before senders wait.
const QUEUED_WRITES: usize = 8192;

/// One waiting write and where its answer goes.
struct Waiting<E> {
    request: ClusterRequest,
    answer: oneshot::Sender<Result<ClusterResponse, E>>,
}

/// The handle on a batcher task: cheap to clone.
pub struct WriteBatcher<E> {
    waiting: mpsc::Sender<Waiting<E>>,
}

impl<E> Clone for WriteBatcher<E> {
    fn clone(&self) -> Self {
        WriteBatcher {
            waiting: self.waiting.clone(),
        }
    }
}

impl<E> std::fmt::Debug for WriteBatcher<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatcher").finish()
    }
}

/// The batcher's end of the channel, handed to [`run_batches`].
pub struct WriteQueue<E> {
    waiting: mpsc::Receiver<Waiting<E>>,
}

/// Whether `request` may share an entry with others (see the module doc).
pub fn mergeable(request: &ClusterRequest) -> bool {
    request.conditions.is_empty()
        && request.range_deletes.is_empty()
        && size(request) <= MERGED_BYTES
}

/// What `request` counts towards [`MERGED_BYTES`].
fn size(request: &ClusterRequest) -> usize {
    request
        .mutations
        .iter()
        .map(|m| m.key.len() + m.value.as_ref().map_or(0, Vec::len) + 16)
        .sum()
}

impl<E: Clone> WriteBatcher<E> {
    /// A batcher handle and the queue its task will serve; start the task
    /// with [`run_batches`].
    pub fn channel() -> (Self, WriteQueue<E>) {
        let (waiting, queue) = mpsc::channel(QUEUED_WRITES);
        (WriteBatcher { waiting }, WriteQueue { waiting: queue })
    }

    /// Proposes `request` (a [`mergeable`] one) with the writes waiting
    /// beside it; `None` if the batcher task has stopped.
    pub async fn write(&self, request: ClusterRequest) -> Option<Result<ClusterResponse, E>> {
        let (answer, answered) = oneshot::channel();
        self.waiting.send(Waiting { request, answer }).await.ok()?;
        answered.await.ok()
    }
}

/// Serves `queue` until every handle is dropped: takes the writes waiting
/// (up to [`MERGED_WRITES`] and [`MERGED_BYTES`]), proposes them as one
/// request with `propose`, answers them all with its result, and again.
pub async fn run_batches<E, F, R>(mut queue: WriteQueue<E>, mut propose: F)
where
    E: Clone,
    F: FnMut(ClusterRequest) -> R,
    R: Future<Output = Result<ClusterResponse, E>>,
{
    let mut next: Option<Waiting<E>> = None;
    loop {
        let first = match next.take() {
            Some(waiting) => waiting,
            None => match queue.waiting.recv().await {
                Some(waiting) => waiting,
                None => return,
            },
        };
        let mut bytes = size(&first.request);
        let mut group = vec![first];
        while group.len() < MERGED_WRITES {
            let Ok(waiting) = queue.waiting.try_recv() else {
                break;
            };
            let more = size(&waiting.request);
            if bytes + more > MERGED_BYTES {
                next = Some(waiting);
                break;
            }
            bytes += more;
            group.push(waiting);
        }
        let merged = merge(group.iter_mut().map(|w| std::mem::take(&mut w.request)));
        let result = propose(merged).await;
        for waiting in group {
            let _ = waiting.answer.send(result.clone());
        }
    }
}

/// One request holding `requests`' mutations in order.
fn merge(requests: impl Iterator<Item = ClusterRequest>) -> ClusterRequest {
    let mut merged = ClusterRequest::default();
    for request in requests {
        merged.now_ms = merged.now_ms.max(request.now_ms);
        merged.mutations.extend(request.mutations);
    }
    merged
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crossbeam_queue::SegQueue;

    use super::*;
    use crate::cluster::request::Condition;

    fn put(key: &str, value: &str) -> ClusterRequest {
        ClusterRequest::of(vec![(key.into(), Some(value.into()))])
    }

    #[test]
    fn only_plain_writes_of_bounded_size_merge() {
        assert!(mergeable(&put("k", "v")));
        let mut conditional = put("k", "v");
        conditional.conditions.push(Condition {
            key: b"k".to_vec(),
            expected: None,
        });
        assert!(!mergeable(&conditional));
        let mut ranged = put("k", "v");
        ranged.range_deletes.push((b"a".to_vec(), b"b".to_vec()));
        assert!(!mergeable(&ranged));
        assert!(!mergeable(&put("k", &"x".repeat(MERGED_BYTES))));
    }

    #[tokio::test]
    async fn writes_waiting_together_share_one_proposal_in_order() {
        let (batcher, queue) = WriteBatcher::<()>::channel();
        let proposals = Arc::new(SegQueue::new());
        // Queue three writes before the task runs: one proposal takes all.
        let writes: Vec<_> = ["a", "b", "a"]
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let batcher = batcher.clone();
                let request = put(key, &i.to_string());
                tokio::spawn(async move { batcher.write(request).await })
            })
            .collect();
        tokio::task::yield_now().await;
        let seen = proposals.clone();
        let task = tokio::spawn(run_batches(queue, move |request| {
            seen.push(request);
            async { Ok(ClusterResponse::default()) }
        }));
        for write in writes {
            assert_eq!(write.await.unwrap(), Some(Ok(ClusterResponse::default())));
        }
        drop(batcher);
        task.await.unwrap();
        let proposals: Vec<_> = std::iter::from_fn(|| proposals.pop()).collect();
        assert_eq!(proposals.len(), 1, "{proposals:?}");
        let keys: Vec<_> = proposals[0]
            .mutations
            .iter()
            .map(|m| (m.key.clone(), m.value.clone()))
            .collect();
        assert_eq!(
            keys,
            vec![
                (b"a".to_vec(), Some(b"0".to_vec())),
                (b"b".to_vec(), Some(b"1".to_vec())),
                (b"a".to_vec(), Some(b"2".to_vec())),
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_proposal_fails_every_write_in_it_and_the_next_proposal_starts_fresh() {
        let (batcher, queue) = WriteBatcher::<String>::channel();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        tokio::spawn(run_batches(queue, move |_request| {
            let call = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match call {
                    0 => Err("no leader".to_string()),
                    _ => Ok(ClusterResponse::default()),
                }
            }
        }));
        assert_eq!(
            batcher.write(put("k", "v")).await,
            Some(Err("no leader".to_string()))
        );
        assert_eq!(
            batcher.write(put("k", "w")).await,
            Some(Ok(ClusterResponse::default()))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_entry_stays_under_the_byte_bound() {
        let (batcher, queue) = WriteBatcher::<()>::channel();
        let sizes = Arc::new(SegQueue::new());
        let big = "x".repeat(MERGED_BYTES / 2);
        let writes: Vec<_> = (0..3)
            .map(|i| {
                let batcher = batcher.clone();
                let request = put(&format!("k{i}"), &big);
                tokio::spawn(async move { batcher.write(request).await })
            })
            .collect();
        tokio::task::yield_now().await;
        let seen = sizes.clone();
        tokio::spawn(run_batches(queue, move |request| {
            seen.push(request.mutations.len());
            async { Ok(ClusterResponse::default()) }
        }));
        for write in writes {
            assert!(matches!(write.await.unwrap(), Some(Ok(_))));
        }
        let sizes: Vec<usize> = std::iter::from_fn(|| sizes.pop()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 3);
        assert!(sizes.iter().all(|n| *n < 3), "{sizes:?}");
    }
}
