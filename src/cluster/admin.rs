//! Cluster administration on the native protocol: `ClusterAdmin` requests
//! (status, add a node, remove a node) and the cluster's figures in
//! `Stats`.
//!
//! - **Status** is answered by the node asked, from its Raft metrics
//!   ([`ClusterNode::status`]); matched indexes and lag are known on the
//!   leader only.
//! - **Add** `ID HOST:PORT`: the leader adds the node as a learner and
//!   waits until it has caught up (its matched log index reaches the
//!   leader's last index as of the learner's addition, by log entries or a
//!   snapshot), then promotes it to a voter (a joint configuration, then
//!   the new one). Adding a voter again is a no-op. openraft's blocking
//!   `add_learner` alone is not enough: it counts a learner within
//!   `replication_lag_threshold` (5000) entries as caught up, so on a short
//!   log a node that was not even running became a voter at once (outside
//!   probe), and losing one more node then stopped the cluster.
//! - **Remove** `ID`: the leader removes the voter (or learner) from the
//!   membership; the removed node stops hearing from the leader. Removing
//!   the leader itself makes it step down once the change commits.
//!
//! A follower forwards a change to the leader (`PeerRequest::ChangeMembers`).
//! A change whose outcome is unknown (lost reply, timeout) is answered
//! `UNAVAILABLE`; asking again is safe (both changes are idempotent).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::future::{FutureExt, LocalBoxFuture, ready};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft};
use serde::{Deserialize, Serialize};

use super::network::{CallError, PeerReply, PeerRequest};
use super::{ClusterError, ClusterNode, ClusterStatus, NodeId, TypeConfig};
use crate::proto::{self, ErrorCode, cluster_admin::Op, response::Reply};
use crate::server::dispatch;

/// How long a membership change may take: a learner may need a snapshot.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A change of the cluster's members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberChange {
    /// Add `id` at peer address `addr` as a learner, then promote it.
    Add { id: NodeId, addr: String },
    /// Remove `id` (voter or learner).
    Remove { id: NodeId },
}

/// Why the leader did not make a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeRefusal {
    /// The node asked is not the leader (nothing was proposed).
    NotLeader,
    /// The change is not allowed (say, the node is not a member).
    Refused(String),
    /// It failed part way or timed out; its outcome is unknown.
    Failed(String),
    /// Another change is still being committed (as right after the
    /// cluster formed): nothing was proposed; asked again after a pause.
    Busy(String),
}

fn refusal(error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> ChangeRefusal {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ChangeRefusal::NotLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::InProgress(e),
        )) => ChangeRefusal::Busy(e.to_string()),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ChangeRefusal::Refused(e.to_string())
        }
        RaftError::Fatal(e) => ChangeRefusal::Failed(e.to_string()),
    }
}

/// Makes `change` on this node, which must be the leader (module doc).
///
/// # Errors
///
/// A [`ChangeRefusal`] saying whether anything may have changed.
pub async fn change_on_leader(
    raft: &Raft<TypeConfig>,
    change: MemberChange,
) -> Result<(), ChangeRefusal> {
    let run = async {
        match change {
            MemberChange::Add { id, addr } => {
                raft.add_learner(id, BasicNode::new(addr), true)
                    .await
                    .map_err(refusal)?;
                caught_up(raft, id).await?;
                let promote = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
                raft.change_membership(promote, false)
                    .await
                    .map_err(refusal)?;
            }
            MemberChange::Remove { id } => {
                let membership = raft.metrics().borrow().membership_config.clone();
                let membership = membership.membership();
                let remove = if membership.voter_ids().any(|v| v == id) {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else if membership.get_node(&id).is_some() {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                } else {
                    return Err(ChangeRefusal::Refused(format!("node {id} is not a member")));
                };
                raft.change_membership(remove, false)
                    .await
                    .map_err(refusal)?;
            }
        }
        Ok(())
    };
    match tokio::time::timeout(CHANGE_TIMEOUT, run).await {
        Ok(result) => result,
        Err(_) => Err(ChangeRefusal::Failed(format!(
            "not done within {CHANGE_TIMEOUT:?} (a learner may still be catching up; ask again)"
        ))),
    }
}

/// Waits until learner `id` holds the leader's log up to its last index
/// now (the outer timeout bounds the wait).
async fn caught_up(raft: &Raft<TypeConfig>, id: NodeId) -> Result<(), ChangeRefusal> {
    let Some(target) = raft.metrics().borrow().last_log_index else {
        return Ok(());
    };
    let holds_target = move |m: &openraft::RaftMetrics<NodeId, BasicNode>| {
        let replication = m.replication.as_ref();
        let matched = replication
            .and_then(|r| r.get(&id))
            .and_then(Option::as_ref);
        matched.is_some_and(|log_id| log_id.index >= target)
    };
    raft.wait(None)
        .metrics(holds_target, "learner caught up")
        .await
        .map(|_| ())
        .map_err(|e| ChangeRefusal::Failed(format!("node {id} did not catch up: {e}")))
}

impl ClusterNode {
    /// Makes `change` through the leader (this node, or forwarded to it).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Refused`] if the leader refused it;
    /// [`ClusterError::Unavailable`] if no leader made it in time or its
    /// outcome is unknown.
    pub async fn change_members(&self, change: MemberChange) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.request_timeout().max(CHANGE_TIMEOUT);
        loop {
            let leader = self.raft().metrics().borrow().current_leader;
            let outcome = match leader {
                None => Err(ChangeRefusal::NotLeader),
                Some(leader) if leader == self.id() => {
                    change_on_leader(self.raft(), change.clone()).await
                }
                Some(leader) => {
                    let forwarded = PeerRequest::ChangeMembers(change.clone());
                    match self.ask(leader, &forwarded, deadline).await {
                        Ok(PeerReply::ChangeMembers(outcome)) => outcome,
                        Err(CallError::Unreachable(_)) => Err(ChangeRefusal::NotLeader),
                        Ok(_) | Err(CallError::Network(_)) => {
                            Err(ChangeRefusal::Failed("no reply from the leader".into()))
                        }
                    }
                }
            };
            match outcome {
                Ok(()) => return Ok(()),
                Err(ChangeRefusal::NotLeader | ChangeRefusal::Busy(_)) => {}
                Err(ChangeRefusal::Refused(reason)) => return Err(ClusterError::Refused(reason)),
                Err(ChangeRefusal::Failed(reason)) => {
                    log::warn!("membership change {change:?}: {reason}");
                    return Err(self.unavailable());
                }
            }
            self.pause_or_give_up(deadline).await?;
        }
    }
}

/// Answers a `ClusterAdmin` request with the node's status (after the
/// change, for add and remove).
pub fn execute(
    cluster: &ClusterNode,
    admin: proto::ClusterAdmin,
) -> LocalBoxFuture<'static, Reply> {
    let change = match admin.op {
        None | Some(Op::Status(_)) => {
            return ready(Reply::Cluster(status_reply(&cluster.status()))).boxed_local();
        }
        Some(Op::Add(add)) => match parse_add(add) {
            Ok(change) => change,
            Err(message) => return ready(dispatch::invalid_request(message)).boxed_local(),
        },
        Some(Op::Remove(remove)) => MemberChange::Remove { id: remove.node_id },
    };
    let cluster = cluster.clone();
    async move {
        match cluster.change_members(change.clone()).await {
            Ok(()) => {
                shown(&cluster, &change).await;
                Reply::Cluster(status_reply(&cluster.status()))
            }
            Err(ClusterError::Refused(reason)) => dispatch::invalid_request(reason),
            Err(e) => dispatch::error(ErrorCode::Unavailable, e.to_string()),
        }
    }
    .boxed_local()
}

/// How long a node waits to see a change it made in its own membership
/// before answering with its status anyway.
const SHOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits until this node's membership shows `change`: on the leader it
/// does once the change is made; a follower that forwarded it learns it
/// from the leader's next append. Gives up after [`SHOWN_TIMEOUT`].
async fn shown(cluster: &ClusterNode, change: &MemberChange) {
    let deadline = Instant::now() + SHOWN_TIMEOUT;
    while !shows(&cluster.status(), change) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn shows(status: &ClusterStatus, change: &MemberChange) -> bool {
    match change {
        MemberChange::Add { id, .. } => status.members.iter().any(|m| m.id == *id && m.voter),
        MemberChange::Remove { id } => status.members.iter().all(|m| m.id != *id),
    }
}

fn parse_add(add: proto::ClusterAdd) -> Result<MemberChange, String> {
    if add.node_id == 0 {
        return Err("cluster add needs a node id above 0".into());
    }
    match add.addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(MemberChange::Add {
                id: add.node_id,
                addr: add.addr,
            })
        }
        _ => Err(format!("cluster add: {:?} is not HOST:PORT", add.addr)),
    }
}

/// The wire form of a [`ClusterStatus`].
pub fn status_reply(status: &ClusterStatus) -> proto::ClusterStatus {
    proto::ClusterStatus {
        node_id: status.node_id,
        has_leader: status.leader.is_some(),
        leader: status.leader.unwrap_or(0),
        term: status.term,
        role: status.role.clone(),
        last_log_index: status.last_log_index.unwrap_or(0),
        last_applied_index: status.last_applied_index.unwrap_or(0),
        members: status
            .members
            .iter()
            .map(|m| proto::ClusterMember {
                node_id: m.id,
                addr: m.addr.clone(),
                voter: m.voter,
                has_matched: m.matched_index.is_some(),
                matched_index: m.matched_index.unwrap_or(0),
                lag: m.lag.unwrap_or(0),
                client_addr: m.client_addr.map_or(String::new(), |a| a.to_string()),
                resp_addr: m.resp_addr.map_or(String::new(), |a| a.to_string()),
            })
            .collect(),
    }
}

/// The status as `Stats` counters, added to the engine's on a cluster
/// node: `cluster_node_id`, `cluster_leader` (0: none), `cluster_term`,
/// `cluster_is_leader`, `cluster_last_log_index`,
/// `cluster_last_applied_index`, `cluster_members`, and per member
/// `cluster_member_ID_voter` and, on the leader,
/// `cluster_member_ID_matched_index` and `cluster_member_ID_lag`.
pub fn status_counters(status: &ClusterStatus) -> Vec<(String, u64)> {
    let mut counters = vec![
        ("cluster_node_id".to_string(), status.node_id),
        ("cluster_leader".into(), status.leader.unwrap_or(0)),
        ("cluster_term".into(), status.term),
        (
            "cluster_is_leader".into(),
            u64::from(status.role == "leader"),
        ),
        (
            "cluster_last_log_index".into(),
            status.last_log_index.unwrap_or(0),
        ),
        (
            "cluster_last_applied_index".into(),
            status.last_applied_index.unwrap_or(0),
        ),
        ("cluster_members".into(), status.members.len() as u64),
    ];
    for member in &status.members {
        let name = |what: &str| format!("cluster_member_{}_{what}", member.id);
        counters.push((name("voter"), u64::from(member.voter)));
        if let Some(lag) = member.lag {
            counters.push((name("matched_index"), member.matched_index.unwrap_or(0)));
            counters.push((name("lag"), lag));
        }
    }
    counters
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::MemberStatus;

    fn status() -> ClusterStatus {
        ClusterStatus {
            node_id: 1,
            leader: Some(1),
            term: 3,
            role: "leader".into(),
            last_log_index: Some(10),
            last_applied_index: Some(10),
            members: vec![
                MemberStatus {
                    id: 1,
                    addr: "h:7001".into(),
                    voter: true,
                    matched_index: Some(10),
                    lag: Some(0),
                    client_addr: Some("127.0.0.1:1024".parse().unwrap()),
                    resp_addr: None,
                },
                MemberStatus {
                    id: 4,
                    addr: "h:7004".into(),
                    voter: false,
                    matched_index: None,
                    lag: Some(10),
                    client_addr: None,
                    resp_addr: Some("127.0.0.1:6380".parse().unwrap()),
                },
            ],
        }
    }

    #[test]
    fn status_maps_to_the_wire_and_to_counters() {
        let reply = status_reply(&status());
        assert!(reply.has_leader);
        assert_eq!(reply.members.len(), 2);
        assert!(!reply.members[1].voter && !reply.members[1].has_matched);
        assert_eq!(reply.members[1].lag, 10);
        assert_eq!(reply.members[0].client_addr, "127.0.0.1:1024");
        assert_eq!(reply.members[0].resp_addr, "");
        assert_eq!(reply.members[1].client_addr, "");
        assert_eq!(reply.members[1].resp_addr, "127.0.0.1:6380");
        let counters: std::collections::BTreeMap<_, _> =
            status_counters(&status()).into_iter().collect();
        assert_eq!(counters["cluster_term"], 3);
        assert_eq!(counters["cluster_is_leader"], 1);
        assert_eq!(counters["cluster_member_4_lag"], 10);
        assert_eq!(counters["cluster_member_4_voter"], 0);
    }

    #[test]
    fn add_needs_an_id_and_a_host_and_port() {
        let add = |id, addr: &str| {
            parse_add(proto::ClusterAdd {
                node_id: id,
                addr: addr.into(),
            })
        };
        assert!(add(4, "h:7004").is_ok());
        for (id, addr) in [(0, "h:7004"), (4, "h"), (4, ":7004"), (4, "h:port")] {
            assert!(add(id, addr).is_err(), "{id} {addr}");
        }
    }
}
