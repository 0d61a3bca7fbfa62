//! The native protocol's commands on a cluster node: the one routing point
//! the server calls instead of [`crate::server::dispatch::execute`] when it
//! runs with `--cluster`.
//!
//! - Writes (`Put`, `Delete`, `Batch`) are checked against the engine's
//!   limits, then committed through the leader ([`ClusterNode::write`]); a
//!   follower forwards them. No leader in time: `Error{UNAVAILABLE}`
//!   naming the last known leader.
//! - Reads (`Get`, `Scan`, `Ttl`) first pass a read barrier
//!   ([`ClusterNode::read_barrier`]), then read the local engine:
//!   linearizable on every node, or with `--read-consistency local` served
//!   at once from the local engine (possibly stale on a follower).
//! - `Stats`, `Ping` and `Checkpoint` are answered locally, as on a single
//!   node; `Stats` adds the cluster's figures ([`admin::status_counters`]).
//! - `ClusterAdmin` (status, add, remove) is answered by [`admin::execute`].
//! - Expiry is not replicated yet: a `Put` or batch `Put` with an expiry,
//!   `Expire` and `Persist` are refused (`INVALID_REQUEST`), never applied
//!   to one node's engine alone.

use std::sync::Arc;

use futures_util::future::{FutureExt, LocalBoxFuture, ready};

use super::{ClusterError, ClusterNode, ClusterRequest, Mutations, admin};
use crate::proto::{self, ErrorCode, request::Command, response::Reply};
use crate::server::checkpoints::CheckpointRoot;
use crate::server::dispatch;

/// Why expiring writes are refused on a cluster node.
const NO_REPLICATED_EXPIRY: &str =
    "expiry is not replicated yet: a cluster node refuses Put with an expiry, Expire and Persist";

/// Runs `command` on the cluster (see the module doc).
pub fn execute(
    cluster: &ClusterNode,
    checkpoints: &Arc<CheckpointRoot>,
    command: Command,
) -> LocalBoxFuture<'static, Reply> {
    match command {
        Command::Put(put) if put.expire_at_ms != 0 || put.ttl_ms != 0 => {
            ready(dispatch::invalid_request(NO_REPLICATED_EXPIRY)).boxed_local()
        }
        Command::Expire(_) | Command::Persist(_) => {
            ready(dispatch::invalid_request(NO_REPLICATED_EXPIRY)).boxed_local()
        }
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
        Command::Put(put) => write(cluster, vec![(put.key.to_vec(), Some(put.value.to_vec()))]),
        Command::Delete(delete) => write(cluster, vec![(delete.key.to_vec(), None)]),
        Command::Batch(batch) => match mutations(batch) {
            Ok(mutations) => write(cluster, mutations),
            Err(message) => ready(dispatch::invalid_request(message)).boxed_local(),
        },
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

fn write(cluster: &ClusterNode, mutations: Mutations) -> LocalBoxFuture<'static, Reply> {
    let request = ClusterRequest { mutations };
    if let Err(e) = cluster.check(&request) {
        return ready(dispatch::error_reply(&e)).boxed_local();
    }
    let cluster = cluster.clone();
    async move {
        match cluster.write(request).await {
            Ok(()) => Reply::Done(proto::Done {}),
            Err(e) => cluster_error(&e),
        }
    }
    .boxed_local()
}

/// The mutations of a wire `Batch`.
fn mutations(batch: proto::Batch) -> Result<Mutations, String> {
    use proto::mutation::Op;
    let mut out = Vec::with_capacity(batch.mutations.len());
    for (i, mutation) in batch.mutations.into_iter().enumerate() {
        match mutation.op {
            Some(Op::Put(put)) if put.expire_at_ms != 0 || put.ttl_ms != 0 => {
                return Err(NO_REPLICATED_EXPIRY.into());
            }
            Some(Op::Put(put)) => out.push((put.key.to_vec(), Some(put.value.to_vec()))),
            Some(Op::Delete(delete)) => out.push((delete.key.to_vec(), None)),
            None => return Err(format!("batch mutation {i} has no operation")),
        }
    }
    Ok(out)
}

/// `Error{UNAVAILABLE}` with the cluster's explanation.
pub fn cluster_error(error: &ClusterError) -> Reply {
    dispatch::error(ErrorCode::Unavailable, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiring_put_in_a_batch_is_refused_not_replicated_without_its_expiry() {
        use proto::mutation::Op;
        let batch = proto::Batch {
            mutations: vec![proto::Mutation {
                op: Some(Op::Put(proto::Put {
                    key: "a".into(),
                    value: "1".into(),
                    ttl_ms: 1000,
                    ..Default::default()
                })),
            }],
        };
        assert_eq!(mutations(batch), Err(NO_REPLICATED_EXPIRY.to_string()));
    }

    #[test]
    fn batch_mutations_map_in_order_and_refuse_empty_ops() {
        use proto::mutation::Op;
        let batch = proto::Batch {
            mutations: vec![
                proto::Mutation {
                    op: Some(Op::Put(proto::Put {
                        key: "a".into(),
                        value: "1".into(),
                        ..Default::default()
                    })),
                },
                proto::Mutation {
                    op: Some(Op::Delete(proto::Delete { key: "b".into() })),
                },
            ],
        };
        assert_eq!(
            mutations(batch).unwrap(),
            vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), None)]
        );
        let empty = proto::Batch {
            mutations: vec![proto::Mutation { op: None }],
        };
        assert!(mutations(empty).is_err());
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
