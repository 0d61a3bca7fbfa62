//! The native protocol's commands on a cluster node: the one routing point
//! the server calls instead of [`crate::server::dispatch::execute`] when it
//! runs with `--cluster`.
//!
//! - Writes (`Put`, `Delete`, `Batch`) are checked against the engine's
//!   limits, then committed through the leader ([`ClusterNode::write`]); a
//!   follower forwards them. No leader in time: `Error{UNAVAILABLE}`
//!   naming the last known leader. A `ttl_ms` becomes an absolute expiry
//!   here, by the clock of the node that accepted the request, so every
//!   node applies the same time.
//! - `Expire` and `Persist` are read-modify-writes: after the read barrier
//!   the key is read locally and its value written back with the new
//!   expiry as a conditional request (the value and expiry read must still
//!   be the key's at apply, see [`super::request`]); a conflict reads again.
//! - Reads (`Get`, `Scan`, `Ttl`) first pass a read barrier
//!   ([`ClusterNode::read_barrier`]), then read the local engine:
//!   linearizable on every node, or with `--read-consistency local` served
//!   at once from the local engine (possibly stale on a follower).
//! - `Stats`, `Ping` and `Checkpoint` are answered locally, as on a single
//!   node; `Stats` adds the cluster's figures ([`admin::status_counters`]).
//! - `ClusterAdmin` (status, add, remove) is answered by [`admin::execute`].

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::{FutureExt, LocalBoxFuture, ready};

use super::backoff::ConflictRetries;
use super::{ClusterError, ClusterNode, ClusterRequest, Condition, admin};
use crate::proto::{self, ErrorCode, request::Command, response::Reply};
use crate::server::checkpoints::CheckpointRoot;
use crate::server::dispatch;
use crate::{Error, WriteBatch};

/// Runs `command` on the cluster (see the module doc).
pub fn execute(
    cluster: &ClusterNode,
    checkpoints: &Arc<CheckpointRoot>,
    command: Command,
) -> LocalBoxFuture<'static, Reply> {
    match command {
        Command::Cluster(request) => admin::execute(cluster, request),
        Command::Stats(request) => {
            let status = cluster.status();
            let stats = dispatch::execute(&cluster.engine(), checkpoints, Command::Stats(request));
            async move {
                match stats.await {
                    Reply::Stats(mut stats) => {
                        stats.counters.extend(admin::status_counters(&status));
                        Reply::Stats(stats)
                    }
                    other => other,
                }
            }
            .boxed_local()
        }
        Command::Put(put) => {
            let now_ms = cluster.engine().now_ms();
            let mut batch = WriteBatch::new();
            let at = expire_at(now_ms, put.expire_at_ms, put.ttl_ms);
            batch.put_with_expiry(put.key, put.value, at);
            write(cluster, ClusterRequest::from_batch(&batch, now_ms))
        }
        Command::Delete(delete) => {
            let mut batch = WriteBatch::new();
            batch.delete(delete.key);
            write(cluster, ClusterRequest::from_batch(&batch, 0))
        }
        Command::Batch(batch) => match dispatch::write_batch(batch) {
            Ok(batch) => {
                let now_ms = cluster.engine().now_ms();
                write(cluster, ClusterRequest::from_batch(&batch, now_ms))
            }
            Err(message) => ready(dispatch::invalid_request(message)).boxed_local(),
        },
        Command::Expire(expire) => {
            let cluster = cluster.clone();
            async move {
                let at = expire_at(
                    cluster.engine().now_ms(),
                    expire.expire_at_ms,
                    expire.ttl_ms,
                );
                if at == 0 {
                    return dispatch::invalid_request("Expire needs expire_at_ms or ttl_ms");
                }
                flag(update_expiry(&cluster, expire.key, |_| Some(at)).await)
            }
            .boxed_local()
        }
        Command::Persist(persist) => {
            let cluster = cluster.clone();
            async move {
                let decide = |now: u64| (now != 0).then_some(0);
                flag(update_expiry(&cluster, persist.key, decide).await)
            }
            .boxed_local()
        }
        read @ (Command::Get(_) | Command::Scan(_) | Command::Ttl(_)) => {
            let (cluster, checkpoints) = (cluster.clone(), checkpoints.clone());
            async move {
                match cluster.read_barrier().await {
                    Ok(()) => dispatch::execute(&cluster.engine(), &checkpoints, read).await,
                    Err(e) => cluster_error(&e),
                }
            }
            .boxed_local()
        }
        other => dispatch::execute(&cluster.engine(), checkpoints, other),
    }
}

/// A wire expiry as Unix milliseconds: `expire_at_ms` if set, else
/// `ttl_ms` from `now_ms`, else 0 (never).
fn expire_at(now_ms: u64, expire_at_ms: u64, ttl_ms: u64) -> u64 {
    match (expire_at_ms, ttl_ms) {
        (0, 0) => 0,
        (0, ttl) => now_ms.saturating_add(ttl),
        (at, _) => at,
    }
}

fn write(cluster: &ClusterNode, request: ClusterRequest) -> LocalBoxFuture<'static, Reply> {
    if let Err(e) = cluster.check(&request) {
        return ready(dispatch::error_reply(&e)).boxed_local();
    }
    let cluster = cluster.clone();
    async move {
        match cluster.write(request).await {
            Ok(_) => Reply::Done(proto::Done {}),
            Err(e) => cluster_error(&e),
        }
    }
    .boxed_local()
}

/// Why a read-modify-write on the cluster failed.
#[derive(Debug)]
pub enum RmwError {
    /// The local engine refused the read or the request.
    Engine(Error),
    /// No leader in time, or Raft stopped.
    Cluster(ClusterError),
}

fn flag(result: Result<bool, RmwError>) -> Reply {
    match result {
        Ok(value) => Reply::Flag(proto::Flag { value }),
        Err(RmwError::Engine(e)) => dispatch::error_reply(&e),
        Err(RmwError::Cluster(e)) => cluster_error(&e),
    }
}

/// The cluster's [`crate::Db::update_expiry`]: reads `key` (after the read
/// barrier), asks `decide` for a new expiry given the current one (0: none;
/// `None` leaves it) and writes the value back with it, conditionally on
/// the value and expiry read; reads again after a conflict. True if the
/// expiry was changed; false if `decide` declined or the key is absent.
///
/// # Errors
/// [`RmwError::Cluster`] if no leader answered in time;
/// [`RmwError::Engine`] for a local read error, or `Conflict` after
/// conflicts for the node's request timeout ([`ConflictRetries`]).
pub async fn update_expiry(
    cluster: &ClusterNode,
    key: Bytes,
    mut decide: impl FnMut(u64) -> Option<u64>,
) -> Result<bool, RmwError> {
    let mut retries = ConflictRetries::new(cluster.request_timeout());
    loop {
        cluster.read_barrier().await.map_err(RmwError::Cluster)?;
        let db = cluster.engine();
        let now_ms = db.now_ms();
        let read = db
            .get_versioned_at(key.clone(), Some(now_ms))
            .await
            .map_err(RmwError::Engine)?;
        let Some(value) = read.value else {
            return Ok(false);
        };
        let Some(expire_at_ms) = decide(read.expire_at_ms) else {
            return Ok(false);
        };
        let mut batch = WriteBatch::new();
        if expire_at_ms != 0 && expire_at_ms <= now_ms {
            batch.delete(key.clone());
        } else {
            batch.put_with_expiry(key.clone(), value.clone(), expire_at_ms);
        }
        let mut request = ClusterRequest::from_batch(&batch, now_ms);
        request.conditions.push(Condition {
            key: key.to_vec(),
            expected: Some((value.to_vec(), read.expire_at_ms)),
        });
        cluster.check(&request).map_err(RmwError::Engine)?;
        let response = cluster.write(request).await.map_err(RmwError::Cluster)?;
        if !response.conflict {
            return Ok(true);
        }
        if !retries.again().await {
            return Err(RmwError::Engine(Error::Conflict));
        }
    }
}

/// `Error{UNAVAILABLE}` with the cluster's explanation.
pub fn cluster_error(error: &ClusterError) -> Reply {
    dispatch::error(ErrorCode::Unavailable, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_becomes_an_absolute_expiry_by_the_accepting_clock() {
        assert_eq!(expire_at(1_000, 0, 0), 0);
        assert_eq!(expire_at(1_000, 0, 500), 1_500);
        assert_eq!(expire_at(1_000, 7_000, 500), 7_000);
    }

    #[test]
    fn unavailable_names_the_leader() {
        let error = ClusterError::Unavailable {
            leader: Some("h:7002".into()),
        };
        let Reply::Error(e) = cluster_error(&error) else {
            panic!("not an error reply");
        };
        assert_eq!(e.code, ErrorCode::Unavailable as i32);
        assert!(e.message.contains("h:7002"), "{}", e.message);
    }
}
