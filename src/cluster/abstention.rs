//! Abstention: a node that starts with no Raft state neither votes nor
//! campaigns until a leader has caught it up.
//!
//! # Why
//!
//! Raft's safety rests on a voter remembering its log and its vote. A node
//! restarted empty under its old `--node-id` (its directory lost) has
//! forgotten both, and an empty log passes Raft's up-to-date check for any
//! candidate: a stale node could win an election with its vote and
//! overwrite writes the cluster had acknowledged (an outside probe did
//! exactly that, `docs/CLUSTER.md`). openraft cannot tell such a node from
//! a fresh one, so neither can we: every node that starts empty (no vote,
//! no log, no snapshot) abstains.
//!
//! # While abstaining
//!
//! - A vote request is answered by openraft only if it is a formation vote:
//!   the candidate's last log id is the membership entry openraft's
//!   `initialize` writes ([`LogId::default`]: index 0, term 0) and the
//!   candidate is the lowest id of this node's `--cluster` list, the only
//!   node that initializes ([`super::node`]). Such a candidate holds
//!   nothing past the cluster's first entry, and a fresh cluster forms
//!   with these votes. Any other request is refused here: a
//!   [`VoteResponse`] that does not grant, carrying the node's current
//!   vote, which openraft's candidate treats like any refusal (it retries
//!   in a later term).
//! - The node does not campaign (openraft's `elect` switch is off): its
//!   own vote for itself would count just as blindly.
//!
//! # The end of abstention
//!
//! A task watches the node's Raft metrics and ends the abstention once
//! the node knows a leader and has applied an entry of that leader's term
//! (every leader commits one as it starts). The node's log is then a
//! prefix of that leader's log reaching into the leader's term, so it
//! holds every entry committed before that term, and Raft's own
//! up-to-date check protects its vote from then on. The node that
//! initializes the cluster ends its abstention at once. The end is
//! final: a node's state only grows after it.
//!
//! What abstention does not cover (the node cannot know what it forgot)
//! is written down in `docs/CLUSTER.md`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use openraft::raft::{VoteRequest, VoteResponse};
use openraft::{BasicNode, LogId, Raft, RaftMetrics};

use super::{NodeId, TypeConfig};

/// Whether this node abstains from votes (module doc), shared by the peer
/// listener that answers vote requests and the task that ends it.
#[derive(Debug)]
pub struct Abstention {
    /// This node's id, for the log.
    id: NodeId,
    /// The only candidate a formation vote may go to: the lowest id of
    /// this node's `--cluster` list.
    founder: Option<NodeId>,
    /// Set while the node abstains; cleared once, never set again.
    abstaining: AtomicBool,
    /// The highest candidate term a refusal was logged for, so a
    /// candidate retrying is logged once per term.
    warned_term: AtomicU64,
}

impl Abstention {
    /// The abstention of node `id`, abstaining if `empty` (it started with
    /// no Raft state); `founder` is the lowest id of its `--cluster` list.
    pub fn new(id: NodeId, founder: Option<NodeId>, empty: bool) -> Arc<Self> {
        if empty {
            log::info!(
                "cluster node {id}: started with no Raft state; it abstains from votes and \
                 elections until a leader has caught it up"
            );
        }
        Arc::new(Abstention {
            id,
            founder,
            abstaining: AtomicBool::new(empty),
            warned_term: AtomicU64::new(0),
        })
    }

    /// Whether the node abstains now.
    pub fn is_abstaining(&self) -> bool {
        self.abstaining.load(Ordering::Acquire)
    }

    /// Whether `request` may be answered by openraft: always once the
    /// abstention ended, else only a formation vote.
    pub fn admits(&self, request: &VoteRequest<NodeId>) -> bool {
        !self.is_abstaining() || is_formation_vote(request, self.founder)
    }

    /// The refusal of `request` by a node whose current vote is in
    /// `metrics`, logged at WARN once per candidate term.
    ///
    /// The refusal names no last log id: openraft's candidate reads it
    /// only to delay its next election when the voter's log is longer,
    /// and an abstaining node's log is empty or a prefix of a leader's.
    pub fn refuse(
        &self,
        request: &VoteRequest<NodeId>,
        metrics: &RaftMetrics<NodeId, BasicNode>,
    ) -> VoteResponse<NodeId> {
        let term = request.vote.leader_id.term;
        if self.warned_term.fetch_max(term, Ordering::AcqRel) < term {
            log::warn!(
                "cluster node {}: refused its vote to node {} in term {} (candidate's last log \
                 {}): this node started empty and no leader has caught it up yet",
                self.id,
                request.vote.leader_id.node_id,
                term,
                request
                    .last_log_id
                    .map_or("none".to_string(), |l| l.to_string()),
            );
        }
        VoteResponse::new(metrics.vote, None, false)
    }

    /// Ends the abstention (once; later calls do nothing) and lets the
    /// node campaign again; `why` goes to the log.
    pub fn end(&self, raft: &Raft<TypeConfig>, why: &str) {
        if self.abstaining.swap(false, Ordering::AcqRel) {
            raft.runtime_config().elect(true);
            log::info!(
                "cluster node {}: no longer abstains from votes: {why}",
                self.id
            );
        }
    }
}

/// Whether `request` comes from the founder of a fresh cluster: its last
/// log id is the membership entry `initialize` writes, and it is `founder`.
pub fn is_formation_vote(request: &VoteRequest<NodeId>, founder: Option<NodeId>) -> bool {
    request.last_log_id == Some(LogId::default()) && Some(request.vote.leader_id.node_id) == founder
}

/// Whether a leader has caught this node up: it knows a leader and has
/// applied an entry of the current term (module doc).
pub fn caught_up(metrics: &RaftMetrics<NodeId, BasicNode>) -> bool {
    metrics.current_leader.is_some()
        && metrics
            .last_applied
            .is_some_and(|applied| applied.leader_id.term == metrics.current_term)
}

/// Ends the abstention once [`caught_up`] holds (returns when Raft stops,
/// or once the node no longer abstains). The node's starter turns
/// openraft's `elect` off while the node abstains; [`Abstention::end`]
/// turns it back on.
pub async fn end_when_caught_up(abstention: Arc<Abstention>, raft: Raft<TypeConfig>) {
    let mut metrics = raft.metrics();
    loop {
        if !abstention.is_abstaining() {
            return;
        }
        let leader = {
            let m = metrics.borrow_and_update();
            caught_up(&m).then_some(m.current_leader).flatten()
        };
        if let Some(leader) = leader {
            let why = format!("caught up by leader node {leader}");
            abstention.end(&raft, &why);
            return;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LeaderId, Vote};

    use super::*;

    fn request(candidate: NodeId, term: u64, last: Option<(u64, u64)>) -> VoteRequest<NodeId> {
        let last_log_id =
            last.map(|(term, index)| LogId::new(CommittedLeaderId::new(term, 0), index));
        VoteRequest::new(Vote::new(term, candidate), last_log_id)
    }

    fn metrics(
        leader: Option<NodeId>,
        term: u64,
        applied: Option<(u64, u64)>,
    ) -> RaftMetrics<NodeId, BasicNode> {
        let mut m = RaftMetrics::new_initial(2);
        m.current_leader = leader;
        m.current_term = term;
        m.vote = Vote::new_committed(term, leader.unwrap_or(0));
        m.last_applied = applied.map(|(term, index)| LogId::new(LeaderId::new(term, 1), index));
        m
    }

    #[test]
    fn only_the_founder_with_just_the_first_entry_gets_a_formation_vote() {
        assert!(is_formation_vote(&request(1, 1, Some((0, 0))), Some(1)));
        assert!(is_formation_vote(&request(1, 4, Some((0, 0))), Some(1)));
        assert!(!is_formation_vote(&request(3, 1, Some((0, 0))), Some(1)));
        assert!(!is_formation_vote(&request(1, 2, Some((1, 1))), Some(1)));
        assert!(!is_formation_vote(&request(1, 2, Some((1, 0))), Some(1)));
        assert!(!is_formation_vote(&request(1, 2, None), Some(1)));
        assert!(!is_formation_vote(&request(1, 1, Some((0, 0))), None));
    }

    #[test]
    fn an_abstaining_node_admits_only_formation_votes_until_it_ends() {
        let abstention = Abstention::new(2, Some(1), true);
        assert!(abstention.admits(&request(1, 1, Some((0, 0)))));
        let stale = request(3, 7, Some((3, 40)));
        assert!(!abstention.admits(&stale));
        let refusal = abstention.refuse(&stale, &metrics(None, 0, None));
        assert!(!refusal.vote_granted);
        abstention.abstaining.store(false, Ordering::Release);
        assert!(abstention.admits(&stale));
        assert!(Abstention::new(2, Some(1), false).admits(&stale));
    }

    #[test]
    fn caught_up_needs_a_leader_and_an_applied_entry_of_its_term() {
        assert!(!caught_up(&metrics(None, 0, None)));
        assert!(!caught_up(&metrics(Some(1), 5, None)));
        assert!(!caught_up(&metrics(Some(1), 5, Some((4, 90)))));
        assert!(!caught_up(&metrics(None, 5, Some((5, 91)))));
        assert!(caught_up(&metrics(Some(1), 5, Some((5, 91)))));
    }
}
