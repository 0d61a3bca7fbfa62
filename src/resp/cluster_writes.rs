//! [`ConnectionWrites`]: one RESP connection's plain writes (SET, MSET) on
//! a cluster node, pipelined and kept in the order the connection sent them.
//!
//! # How order is kept, and why this way
//!
//! Each connection on a cluster node has one writer task that owns a queue.
//! The session enqueues a write when the connection's pipeline releases it
//! (in arrival order, at once: it does not wait for the previous write's
//! commit). The writer takes every write waiting, combines them, in order,
//! into **one** [`ClusterRequest`] (one Raft log entry, applied as one
//! engine batch, so in order), commits it through the leader
//! ([`crate::cluster::ClusterNode::write`]), answers each write with the
//! entry's outcome, and takes the next batch. Writes arriving while an
//! entry is in flight wait for the next entry. A pipelining client's writes
//! (`redis-benchmark -P 16`) arrive in bursts: one Raft round per burst
//! instead of one per write.
//!
//! At most one entry per connection is in flight. We chose this over
//! proposing several entries of a connection at once because order then
//! holds by construction, on the leader and on a follower alike, through
//! retries and leader changes: an entry is committed or retried whole, and
//! the next is proposed only after it. Several entries in flight would have
//! to reach the leader's log in order over pooled peer connections (each
//! forwarded request may take a different stream, answered by a different
//! task on the leader), and a retry after a leader change could put an
//! earlier entry behind a later one that already committed.
//!
//! Other writes of a connection (DEL, FLUSHDB, the counter's
//! read-modify-writes, EXEC) do not go through the writer: they read
//! first, so the session has them wait for every earlier write of the
//! connection (footprint "everything", see [`super::session`]), and later
//! writes wait for their answer.
//!
//! A write answered `-CLUSTERDOWN` may still commit, as any cluster write.

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{LocalBoxFuture, ready};
use tokio::sync::{mpsc, oneshot};

use super::store::StoreError;
use crate::cluster::node::MAX_BATCH_BYTES;
use crate::cluster::{ClusterError, ClusterMutation, ClusterNode, ClusterRequest};

/// Bytes a put takes in an entry, as [`ClusterNode::check`] counts them.
const PUT_OVERHEAD: usize = 16;

/// The handle a session holds: enqueues its writes for its writer task,
/// which ends once the handle is dropped and the queue is empty.
pub struct ConnectionWrites {
    node: ClusterNode,
    queue: mpsc::UnboundedSender<QueuedWrite>,
}

/// One write waiting for the writer, and where its outcome goes.
struct QueuedWrite {
    pairs: Vec<(Bytes, Bytes)>,
    answer: oneshot::Sender<Result<(), StoreError>>,
}

impl ConnectionWrites {
    /// Starts the writer task of one connection on the current arbiter.
    pub fn start(node: ClusterNode) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        actix::spawn(run(node.clone(), waiting));
        ConnectionWrites { node, queue }
    }

    /// Enqueues the puts `pairs` now (behind every write enqueued before);
    /// the future answers once their entry is committed and applied on the
    /// leader.
    ///
    /// # Errors
    /// The engine's limits (checked before anything is enqueued);
    /// [`StoreError::Cluster`] if no leader committed the entry in time.
    pub fn put(
        &self,
        pairs: Vec<(Bytes, Bytes)>,
    ) -> LocalBoxFuture<'static, Result<(), StoreError>> {
        if let Err(e) = self.node.check(&request_of(&pairs, 0)) {
            return ready(Err(StoreError::Engine(e))).boxed_local();
        }
        let (answer, answered) = oneshot::channel();
        if self.queue.send(QueuedWrite { pairs, answer }).is_err() {
            return ready(Err(writer_stopped())).boxed_local();
        }
        async move { answered.await.unwrap_or_else(|_| Err(writer_stopped())) }.boxed_local()
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Cluster(ClusterError::Stopped(
        "the connection's cluster writer stopped".into(),
    ))
}

/// The writer task: one entry at a time, each holding every write waiting
/// when it starts (up to an entry's size).
async fn run(node: ClusterNode, mut waiting: mpsc::UnboundedReceiver<QueuedWrite>) {
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(write) => write,
            None => match waiting.recv().await {
                Some(write) => write,
                None => return,
            },
        };
        // Let the session enqueue the rest of the burst it is decoding.
        tokio::task::yield_now().await;
        let mut batch = vec![first];
        let mut bytes = bytes_of(&batch[0]);
        while let Ok(next) = waiting.try_recv() {
            let more = bytes_of(&next);
            if bytes + more > MAX_BATCH_BYTES {
                carried = Some(next);
                break;
            }
            bytes += more;
            batch.push(next);
        }
        commit(&node, batch).await;
    }
}

/// Bytes `write`'s puts take in an entry.
fn bytes_of(write: &QueuedWrite) -> usize {
    write
        .pairs
        .iter()
        .map(|(key, value)| key.len() + value.len() + PUT_OVERHEAD)
        .sum()
}

/// Commits `batch` as one entry and answers each of its writes.
async fn commit(node: &ClusterNode, batch: Vec<QueuedWrite>) {
    let mut pairs = Vec::new();
    let mut answers = Vec::with_capacity(batch.len());
    for write in batch {
        pairs.extend(write.pairs);
        answers.push(write.answer);
    }
    let request = request_of(&pairs, node.engine().now_ms());
    let outcome = match node.write(request).await {
        Ok(_) => Ok(()),
        Err(e) => Err(StoreError::Cluster(e)),
    };
    for answer in answers {
        let _ = answer.send(outcome.clone());
    }
}

/// The entry that puts `pairs` in order (never expiring), accepted at
/// `now_ms`.
fn request_of(pairs: &[(Bytes, Bytes)], now_ms: u64) -> ClusterRequest {
    ClusterRequest {
        now_ms,
        mutations: pairs
            .iter()
            .map(|(key, value)| ClusterMutation {
                key: key.to_vec(),
                value: Some(value.to_vec()),
                expire_at_ms: 0,
            })
            .collect(),
        ..ClusterRequest::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_puts_the_pairs_in_the_order_given() {
        let pairs = vec![
            (Bytes::from("k"), Bytes::from("1")),
            (Bytes::from("j"), Bytes::from("x")),
            (Bytes::from("k"), Bytes::from("2")),
        ];
        let request = request_of(&pairs, 7);
        assert_eq!(request.now_ms, 7);
        let keys: Vec<&[u8]> = request.mutations.iter().map(|m| &m.key[..]).collect();
        assert_eq!(keys, [&b"k"[..], b"j", b"k"]);
        assert_eq!(request.mutations[2].value.as_deref(), Some(&b"2"[..]));
        assert!(request.conditions.is_empty() && request.range_deletes.is_empty());
        // Applied as one batch, in order: the last put of `k` wins.
        let batch = request.to_batch();
        assert_eq!(batch.mutations().len(), 3);
    }

    #[test]
    fn a_write_counts_its_keys_values_and_framing() {
        let (answer, _) = oneshot::channel();
        let write = QueuedWrite {
            pairs: vec![(Bytes::from("ab"), Bytes::from("xyz"))],
            answer,
        };
        assert_eq!(bytes_of(&write), 2 + 3 + PUT_OVERHEAD);
    }
}
