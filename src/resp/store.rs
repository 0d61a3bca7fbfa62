//! [`Store`]: the one routing decision of the RESP server, where reads and
//! writes go: one engine (`run_server` without `--cluster`), or a cluster
//! node (`--cluster`).
//!
//! On a cluster node:
//! - Writes are [`ClusterRequest`]s committed through the leader (a
//!   follower forwards them), with the expiries computed here, by this
//!   node's clock. A read-modify-write (the [`super::counter`]) writes
//!   conditionally: each key it read must still hold the value and expiry
//!   it saw when the entry is applied, decided alike on every node
//!   ([`crate::cluster::request`]); otherwise the entry writes nothing and
//!   the counter reads again.
//! - A connection's SETs and MSETs go through its [`ConnectionWrites`]:
//!   proposed without waiting for the previous write's commit, one entry
//!   per burst, in the order sent.
//! - Reads first pass the node's read barrier ([`Store::barrier`]:
//!   linearizable, or nothing with `--read-consistency local`), then read
//!   the local engine, loaded per request (a snapshot install replaces it).
//! - No leader in time: `-CLUSTERDOWN <why>` ([`StoreError::reply`]), as
//!   Redis Cluster answers while it cannot serve.

use std::borrow::Cow;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;

use super::cluster_writes::ConnectionWrites;
use super::commands::engine_error;
use super::reply::Reply;
use crate::cluster::{ClusterError, ClusterNode, ClusterRequest, Condition, backoff};
use crate::{Db, Error, WriteBatch};

/// A key's value and its expiry (Unix milliseconds, 0: never), `None` if
/// absent, as a read-modify-write read it.
pub type Current = Option<(Bytes, u64)>;

/// Where the RESP server's requests go (cheap to clone).
#[derive(Clone)]
pub enum Store {
    /// One engine, this process's.
    Single(Db),
    /// A cluster node's replicated engine.
    Cluster(ClusterNode),
}

/// Why a request to the [`Store`] failed.
#[derive(Debug, Clone)]
pub enum StoreError {
    /// The engine refused it (`Conflict`: a condition did not hold).
    Engine(Error),
    /// The cluster could not serve it (no leader in time).
    Cluster(ClusterError),
}

impl From<Error> for StoreError {
    fn from(error: Error) -> Self {
        StoreError::Engine(error)
    }
}

impl StoreError {
    /// The reply a client gets: the engine's `-ERR ...`, or for the
    /// cluster `-CLUSTERDOWN <why>` (Redis Cluster's code for "cannot
    /// serve now, retry later").
    pub fn reply(&self) -> Reply {
        match self {
            StoreError::Engine(e) => engine_error(e),
            StoreError::Cluster(e) => Reply::Error(clusterdown(e)),
        }
    }

    /// Whether this is a conflict (a read-modify-write retries).
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Engine(Error::Conflict))
    }
}

/// `CLUSTERDOWN` and the cluster's explanation, e.g. `CLUSTERDOWN no
/// cluster leader available (last known leader at 10.0.0.2:7002)`.
pub fn clusterdown(error: &ClusterError) -> String {
    format!("CLUSTERDOWN {error}")
}

/// How long a read-modify-write on one engine keeps retrying, with pauses,
/// once its immediate retries are used up: as long as a cluster node's
/// request timeout.
const ENGINE_RETRY_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// See [`Store::conflict_retries`].
pub enum ConflictRetries {
    /// Immediate retries left, then timed ones.
    Count(usize),
    Timed(backoff::ConflictRetries),
}

impl ConflictRetries {
    /// After a conflict: whether to try again (at once, or after a pause).
    pub async fn again(&mut self) -> bool {
        match self {
            ConflictRetries::Count(left) => {
                *left = left.saturating_sub(1);
                if *left > 0 {
                    return true;
                }
                // A client writing the key back to back can win every
                // immediate retry, its commits falling into each window
                // between this one's read and its write (seen on a busy CI
                // machine): from now on, random growing pauses, for a
                // bounded time.
                let mut timed = backoff::ConflictRetries::new(ENGINE_RETRY_TIME);
                let again = timed.again().await;
                *self = ConflictRetries::Timed(timed);
                again
            }
            ConflictRetries::Timed(retries) => retries.again().await,
        }
    }
}

impl Store {
    /// The engine to read (a cluster's live one, loaded now).
    pub fn db(&self) -> Db {
        match self {
            Store::Single(db) => db.clone(),
            Store::Cluster(node) => Db::clone(&node.engine()),
        }
    }

    /// Whether a write made from reads is conditional on the values read
    /// (a cluster's, see [`Store::write_read_as`]), not only on their
    /// versions: such reads must keep their values until the write.
    pub fn conditions_on_values(&self) -> bool {
        matches!(self, Store::Cluster(_))
    }

    /// The engine to read, borrowed when there is one engine: cloning a
    /// [`Db`] bumps a reference count shared by every connection's thread,
    /// a cache line bounced between cores on each request.
    pub fn db_ref(&self) -> Cow<'_, Db> {
        match self {
            Store::Single(db) => Cow::Borrowed(db),
            Store::Cluster(node) => Cow::Owned(Db::clone(&node.engine())),
        }
    }

    /// This node's cluster, if any.
    pub fn cluster(&self) -> Option<&ClusterNode> {
        match self {
            Store::Single(_) => None,
            Store::Cluster(node) => Some(node),
        }
    }

    /// A connection's writer for its plain writes on a cluster node
    /// (pipelined, in order: [`ConnectionWrites`]); `None` on one engine,
    /// where the engine itself applies writes in call order.
    pub fn connection_writes(&self) -> Option<ConnectionWrites> {
        match self {
            Store::Single(_) => None,
            Store::Cluster(node) => Some(ConnectionWrites::start(node.clone())),
        }
    }

    /// How a read-modify-write retries after conflicts: on one engine
    /// (where only plain writes contend with the counter) up to `attempts`
    /// times at once, then with random pauses for 5 s; on a cluster, where
    /// other nodes' counters contend, after a random pause and for the
    /// node's request timeout ([`crate::cluster::backoff`]).
    pub fn conflict_retries(&self, attempts: usize) -> ConflictRetries {
        match self {
            Store::Single(_) => ConflictRetries::Count(attempts),
            Store::Cluster(node) => {
                ConflictRetries::Timed(backoff::ConflictRetries::new(node.request_timeout()))
            }
        }
    }

    /// What a read waits for first: nothing on one engine, the node's read
    /// barrier on a cluster.
    ///
    /// # Errors
    /// [`StoreError::Cluster`] if no leader confirmed in time.
    pub fn barrier(&self) -> LocalBoxFuture<'static, Result<(), StoreError>> {
        match self {
            Store::Single(_) => futures_util::future::ready(Ok(())).boxed_local(),
            Store::Cluster(node) => {
                let node = node.clone();
                async move { node.read_barrier().await.map_err(StoreError::Cluster) }.boxed_local()
            }
        }
    }

    /// Writes `batch` (its engine conditions too, on one engine). On one
    /// engine the batch is enqueued before this returns; on a cluster it is
    /// proposed when the future is first polled.
    ///
    /// # Errors
    /// The engine's errors; [`StoreError::Cluster`] if no leader committed
    /// it in time.
    pub fn write(&self, batch: WriteBatch) -> LocalBoxFuture<'static, Result<(), StoreError>> {
        self.write_read_as(batch, Vec::new())
    }

    /// Writes `batch` only if every key in `read` still holds the value and
    /// expiry listed: on one engine by the batch's own conditions
    /// ([`WriteBatch::require_unchanged`], which the caller set from the
    /// same reads), on a cluster by value and expiry at apply.
    ///
    /// # Errors
    /// As [`Store::write`]; `Engine(Conflict)` if a key changed.
    pub fn write_read_as(
        &self,
        batch: WriteBatch,
        read: Vec<(Bytes, Current)>,
    ) -> LocalBoxFuture<'static, Result<(), StoreError>> {
        match self {
            Store::Single(db) => {
                let written = db.write(batch);
                async move { written.await.map_err(StoreError::Engine) }.boxed_local()
            }
            Store::Cluster(node) => {
                let request = cluster_request(&batch, read, node.engine().now_ms());
                let node = node.clone();
                async move {
                    node.check(&request)?;
                    match node.write(request).await {
                        Ok(response) if response.conflict => Err(Error::Conflict.into()),
                        Ok(_) => Ok(()),
                        Err(e) => Err(StoreError::Cluster(e)),
                    }
                }
                .boxed_local()
            }
        }
    }
}

/// `batch` as a cluster request accepted at `now_ms`, conditional on `read`.
fn cluster_request(batch: &WriteBatch, read: Vec<(Bytes, Current)>, now_ms: u64) -> ClusterRequest {
    let mut request = ClusterRequest::from_batch(batch, now_ms);
    request.conditions = read
        .into_iter()
        .map(|(key, current)| Condition {
            key: key.to_vec(),
            expected: current.map(|(value, at)| (value.to_vec(), at)),
        })
        .collect();
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusterdown_names_the_last_leader() {
        let error = ClusterError::Unavailable {
            leader: Some("h:7002".into()),
        };
        let Reply::Error(text) = StoreError::Cluster(error).reply() else {
            panic!("not an error");
        };
        assert!(text.starts_with("CLUSTERDOWN "), "{text}");
        assert!(text.contains("h:7002"), "{text}");
    }

    #[test]
    fn a_conditional_batch_carries_what_was_read() {
        let mut batch = WriteBatch::new();
        batch.put_with_expiry("k", "2", 9_000);
        let read = vec![
            (Bytes::from("k"), Some((Bytes::from("1"), 9_000))),
            (Bytes::from("w"), None),
        ];
        let request = cluster_request(&batch, read, 5_000);
        assert_eq!(request.now_ms, 5_000);
        assert_eq!(request.mutations[0].expire_at_ms, 9_000);
        assert_eq!(
            request.conditions,
            vec![
                Condition {
                    key: b"k".to_vec(),
                    expected: Some((b"1".to_vec(), 9_000)),
                },
                Condition {
                    key: b"w".to_vec(),
                    expected: None,
                },
            ]
        );
    }
}
