//! One cluster node: its Raft instance, how a fresh cluster forms, and the
//! handle the server uses for writes and linearizable reads.
//!
//! # Threads
//!
//! [`ClusterNode::start`] runs inside the server's actix system. The engine
//! stays on the caller's arbiter (as in a single-node server); openraft's
//! core task, its replication tasks, the log store's fsyncs and the peer
//! listener run on an arbiter of their own, so a log fsync never stalls a
//! client session. The [`ClusterNode`] handle is a cloneable `Raft` handle
//! plus the published live engine: no lock anywhere.
//!
//! # Forming a cluster
//!
//! Every node is started with the same member list. The node with the
//! lowest id, while it has no Raft state, asks the others whether they have
//! any; once a majority (itself included) answers and none has state, it
//! calls openraft's `initialize` with the whole list. A node that restarts
//! with its directory has state and never initializes again; neither does a
//! node that learns another member already has state (it is caught up by
//! the leader instead). `initialize` on a node with state is refused by
//! openraft (`NotAllowed`), which is treated as success.
//!
//! A node that starts with no Raft state abstains
//! ([`super::abstention`]): the other founders vote only for the lowest
//! id's formation candidate and do not campaign until its leadership has
//! caught them up; the lowest id ends its abstention when it initializes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::{Arbiter, ArbiterHandle};
use arc_swap::{ArcSwap, ArcSwapOption};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Config, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use tokio::sync::{Semaphore, oneshot};

use super::abstention::{Abstention, end_when_caught_up};
use super::faults::NetworkFaults;
use super::network::{
    CallError, ClientAddrs, LeaderReads, PeerNetwork, PeerReply, PeerRequest, PeerService,
    serve_peers,
};
use super::peer_auth::ClusterSecret;
use super::read_index::{ReadIndex, ReadIndexBatcher, run_rounds};
use super::state_machine::EngineHost;
use super::write_batch::{WriteBatcher, mergeable, run_batches};
use super::{ClusterRequest, ClusterResponse, LogStore, NodeId, StateMachine, TypeConfig};
use crate::{Db, Error, Options};

/// How a node takes part in a cluster (`run_server --node-id --peer-port
/// --cluster`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's id; must be a key of `members`.
    pub node_id: NodeId,
    /// Where this node accepts peer connections (`HOST:PORT`).
    pub peer_listen: String,
    /// Every member's id and peer address (`HOST:PORT`).
    pub members: BTreeMap<NodeId, String>,
    /// Leader heartbeat interval; default 250 ms.
    pub heartbeat: Duration,
    /// A follower that hears no leader for a random time in
    /// `[election_timeout, 2 * election_timeout)` starts an election;
    /// default 1 s (loaded machines miss shorter heartbeats).
    pub election_timeout: Duration,
    /// How long a request waits for a leader before it is answered
    /// [`ClusterError::Unavailable`]; default 5 s.
    pub request_timeout: Duration,
    /// A snapshot is built every this many applied entries and the log is
    /// purged up to it (less `logs_kept_after_snapshot`); default 5000.
    pub snapshot_every: u64,
    /// How many entries before the last snapshot stay in the log, so a
    /// follower slightly behind catches up from the log instead of a
    /// snapshot; default 1000.
    pub logs_kept_after_snapshot: u64,
    /// Test faults for this node's outgoing peer messages (see
    /// [`super::faults`]); default none.
    pub faults: Option<Arc<NetworkFaults>>,
    /// The shared secret every peer connection proves
    /// ([`super::peer_auth`]); default none, which serves peers that prove
    /// nothing (`run_server` refuses that without `--insecure-peers`).
    pub secret: Option<ClusterSecret>,
    /// Whether reads wait for a read index; default
    /// [`ReadConsistency::Linearizable`].
    pub read_consistency: ReadConsistency,
    /// The native address clients reach this node on, named in the
    /// UNAVAILABLE answers of other nodes while it leads; default none
    /// (see also [`ClusterNode::advertise_client_addr`]).
    pub client_addr: Option<SocketAddr>,
}

/// How a node serves reads (`--read-consistency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadConsistency {
    /// After a read index confirmed by the leader: a read sees every write
    /// acknowledged before it began, on any node.
    #[default]
    Linearizable,
    /// From the node's own engine at once: possibly stale on a follower
    /// (by however far it is behind, without bound while it is cut off),
    /// but served with no leader at all.
    Local,
}

impl ClusterConfig {
    /// A configuration with the documented defaults.
    pub fn new(node_id: NodeId, peer_listen: String, members: BTreeMap<NodeId, String>) -> Self {
        ClusterConfig {
            node_id,
            peer_listen,
            members,
            heartbeat: Duration::from_millis(250),
            election_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            snapshot_every: 5000,
            logs_kept_after_snapshot: 1000,
            faults: None,
            secret: None,
            read_consistency: ReadConsistency::Linearizable,
            client_addr: None,
        }
    }

    fn raft_config(&self) -> Result<Config, String> {
        let millis = |d: Duration| d.as_millis() as u64;
        Config {
            cluster_name: "naivekv".into(),
            heartbeat_interval: millis(self.heartbeat),
            election_timeout_min: millis(self.election_timeout),
            election_timeout_max: 2 * millis(self.election_timeout),
            max_payload_entries: 64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            ..Config::default()
        }
        .validate()
        .map_err(|e| e.to_string())
    }
}

/// Parses `1=HOST:P1,2=HOST:P2,...` (the `--cluster` flag).
///
/// # Errors
///
/// A message naming the malformed member.
pub fn parse_members(text: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut members = BTreeMap::new();
    for member in text.split(',').filter(|m| !m.trim().is_empty()) {
        let (id, addr) = member
            .split_once('=')
            .ok_or_else(|| format!("cluster member {member:?} is not ID=HOST:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|e| format!("cluster member {member:?}: bad id: {e}"))?;
        if !addr.contains(':') {
            return Err(format!("cluster member {member:?} has no port"));
        }
        if members.insert(id, addr.trim().to_string()).is_some() {
            return Err(format!("cluster member {id} is listed twice"));
        }
    }
    if members.is_empty() {
        return Err("the cluster has no members".into());
    }
    Ok(members)
}

/// Why the cluster could not serve a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// No leader answered within the request timeout.
    #[error("no cluster leader available{}", leader_hint(.leader))]
    Unavailable {
        /// The last known leader: `node ID, client address HOST:PORT`
        /// when its native address is known ([`CLIENT_ADDRESS_HINT`]),
        /// else `node ID, peer address HOST:PORT`.
        leader: Option<String>,
    },
    /// The node's Raft instance stopped (a storage failure); see the log.
    #[error("the cluster node has stopped: {0}")]
    Stopped(String),
    /// The leader refused a membership change (say, removing a node that
    /// is not a member).
    #[error("membership change refused: {0}")]
    Refused(String),
}

/// What precedes the leader's native address in an UNAVAILABLE message;
/// [`crate::client::leader_hint`] reads the address after it.
pub const CLIENT_ADDRESS_HINT: &str = "client address ";

fn leader_hint(leader: &Option<String>) -> String {
    match leader {
        Some(leader) => format!(" (last known leader: {leader})"),
        None => String::new(),
    }
}

/// One node's view of the cluster, for `cluster status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub role: String,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    /// Every member (voters and learners) in id order.
    pub members: Vec<MemberStatus>,
}

/// One member in a [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub id: NodeId,
    /// Its peer address.
    pub addr: String,
    /// A voter (else a learner, which replicates but does not vote).
    pub voter: bool,
    /// On the leader: the last log index this member is known to hold
    /// (`None` if it holds none or the answering node does not lead).
    pub matched_index: Option<u64>,
    /// On the leader: how many entries it is behind the leader's log.
    pub lag: Option<u64>,
    /// The address it serves the native protocol on, once known (it
    /// answers `PeerRequest::ClientAddresses`; `None` with an unspecified
    /// `--ip`, or before it answered).
    pub client_addr: Option<SocketAddr>,
    /// The address it serves RESP on, once known (`None` without
    /// `--resp-port`).
    pub resp_addr: Option<SocketAddr>,
}

/// The server's handle on this node (cheap to clone).
#[derive(Clone)]
pub struct ClusterNode {
    id: NodeId,
    raft: Raft<TypeConfig>,
    engine: Arc<ArcSwap<Db>>,
    members: Arc<BTreeMap<NodeId, String>>,
    request_timeout: Duration,
    read_consistency: ReadConsistency,
    /// The engine's key and value limits, checked before a write is
    /// proposed (an entry the engine refuses would stop every node).
    limits: (usize, usize),
    /// The arbiter running openraft's tasks and the peer listener.
    arbiter: ArbiterHandle,
    /// Makes the links of this node's own requests to peers (forwarded
    /// writes, read indexes), with the test faults if any.
    network: PeerNetwork,
    /// Read-index rounds while this node leads (its own reads and its
    /// followers' `ReadIndex` requests join them).
    leader_reads: LeaderReads,
    /// Read-index rounds while another node leads: one forwarded
    /// `ReadIndex` request per round.
    follower_reads: ReadIndexBatcher<RoundFailed>,
    /// Merges the plain writes waiting while one proposal commits
    /// ([`super::write_batch`]).
    writes: WriteBatcher<ClusterError>,
    /// Bounds this node's requests in flight to peers, so each uses a
    /// pooled stream instead of a new connection ([`FORWARDS_IN_FLIGHT`]).
    forward_slots: Arc<Semaphore>,
    /// This node's native address, once known (answered to peers).
    client_addr: Arc<ArcSwapOption<SocketAddr>>,
    /// This node's RESP address, once its RESP listener advertises it.
    resp_addr: Arc<ArcSwapOption<SocketAddr>>,
    /// The other members' client addresses, learned by asking each
    /// (and each new leader again, [`learn_client_addresses`]).
    member_addrs: Arc<ArcSwap<BTreeMap<NodeId, ClientAddrs>>>,
    /// The last leader this node knew of: kept while an election runs
    /// (openraft's metrics then name none), so UNAVAILABLE still names it.
    last_leader: Arc<ArcSwapOption<NodeId>>,
}

/// A forwarded read-index round found no leader or got no answer; the
/// reads in it try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundFailed;

/// How many requests a node has in flight to its peers at once (forwarded
/// writes, read indexes, membership changes): at most the pool's idle
/// streams per peer, so under load every request reuses one.
const FORWARDS_IN_FLIGHT: usize = super::network::POOLED_PER_PEER;

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode").field("id", &self.id).finish()
    }
}

impl ClusterNode {
    /// Opens the log and the engine under `directory/raft`, binds the peer
    /// port and starts Raft; the cluster forms by itself (module doc).
    ///
    /// # Errors
    ///
    /// The engine's and the log's open errors; `InvalidArgument` for a bad
    /// configuration; `Io` if the peer port cannot be bound.
    pub async fn start(
        config: ClusterConfig,
        directory: &Path,
        options: Options,
    ) -> crate::Result<Self> {
        if !config.members.contains_key(&config.node_id) {
            return Err(Error::InvalidArgument(format!(
                "node {} is not in the cluster list",
                config.node_id
            )));
        }
        let raft_config = Arc::new(config.raft_config().map_err(Error::InvalidArgument)?);
        let raft_dir = directory.join("raft");
        let limits = (options.max_key_bytes, options.max_value_bytes);
        let log = LogStore::open(&raft_dir)?;
        let host = EngineHost::new(Arbiter::current(), options);
        let state_machine = StateMachine::open(&raft_dir, host).await?;
        let engine = state_machine.engine();
        let listener = std::net::TcpListener::bind(&config.peer_listen)
            .map_err(|e| Error::io(format!("binding peer port {}", config.peer_listen), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("peer listener", e))?;
        let arbiter = Arbiter::new().handle();
        let (reply, rx) = oneshot::channel();
        let (id, members) = (config.node_id, config.members.clone());
        let network = PeerNetwork::new(id, config.faults.clone(), config.secret.clone());
        let secret = config.secret.clone();
        let raft_network = network.clone();
        let (leader_reads, leader_queue) = LeaderReads::channel();
        let (follower_reads, follower_queue) = ReadIndexBatcher::channel();
        let client_addr = Arc::new(ArcSwapOption::from_pointee(config.client_addr));
        let resp_addr = Arc::new(ArcSwapOption::empty());
        let (reads, client, resp) = (leader_reads.clone(), client_addr.clone(), resp_addr.clone());
        let started = arbiter.spawn(async move {
            let raft = Raft::new(id, raft_config, raft_network.clone(), log, state_machine).await;
            if let Ok(raft) = &raft
                && let Ok(listener) = tokio::net::TcpListener::from_std(listener)
            {
                // Asked before the listener runs: nothing has reached the
                // node yet, so no state means it started with none.
                let empty = !raft.is_initialized().await.unwrap_or(true);
                let founder = members.keys().next().copied();
                let abstention = Abstention::new(id, founder, empty);
                if empty {
                    raft.runtime_config().elect(false);
                }
                let service = PeerService {
                    reads,
                    client_addr: client,
                    resp_addr: resp,
                    abstention: abstention.clone(),
                };
                tokio::spawn(end_when_caught_up(abstention.clone(), raft.clone()));
                tokio::spawn(run_rounds(leader_queue, leader_round(raft.clone())));
                tokio::spawn(serve_peers(listener, raft.clone(), secret, service));
                let forming = form_cluster(raft.clone(), id, members, raft_network, abstention);
                tokio::spawn(forming);
                tokio::spawn(log_role_changes(raft.metrics(), id));
            }
            let _ = reply.send(raft.map_err(|e| e.to_string()));
        });
        let raft = match (started, rx.await) {
            (true, Ok(Ok(raft))) => raft,
            (_, Ok(Err(e))) => return Err(Error::InvalidArgument(format!("starting Raft: {e}"))),
            _ => return Err(Error::Closed),
        };
        let (writes, write_queue) = WriteBatcher::channel();
        let node = ClusterNode {
            id,
            raft,
            engine,
            members: Arc::new(config.members),
            request_timeout: config.request_timeout,
            read_consistency: config.read_consistency,
            limits,
            arbiter,
            network,
            leader_reads,
            follower_reads,
            writes,
            forward_slots: Arc::new(Semaphore::new(FORWARDS_IN_FLIGHT)),
            client_addr,
            resp_addr,
            member_addrs: Arc::default(),
            last_leader: Arc::default(),
        };
        let forwarder = node.clone();
        node.arbiter.spawn(run_rounds(follower_queue, move || {
            let node = forwarder.clone();
            async move { node.forwarded_read_index().await }
        }));
        let proposer = node.clone();
        node.arbiter.spawn(run_batches(write_queue, move |request| {
            let node = proposer.clone();
            async move { node.propose(request).await }
        }));
        node.arbiter.spawn(learn_client_addresses(node.clone()));
        Ok(node)
    }

    /// The live engine (changes when a snapshot is installed): load it per
    /// request.
    pub fn engine(&self) -> Arc<Db> {
        self.engine.load_full()
    }

    /// The openraft handle, for tests and metrics.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// How long a request waits for a leader.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Checks `request` against the engine's limits, as the engine would.
    ///
    /// # Errors
    ///
    /// The engine's error for the first mutation it would refuse.
    pub fn check(&self, request: &ClusterRequest) -> crate::Result<()> {
        let (max_key, max_value) = self.limits;
        let mut total = 0usize;
        let conditions = request.conditions.iter().map(|c| (&c.key, None));
        let mutations = request.mutations.iter().map(|m| (&m.key, m.value.as_ref()));
        for (key, value) in mutations.chain(conditions) {
            if key.is_empty() {
                return Err(Error::empty_key());
            }
            if key.len() > max_key {
                return Err(Error::KeyTooLarge {
                    len: key.len(),
                    limit: max_key,
                });
            }
            let len = value.map_or(0, Vec::len);
            if len > max_value {
                return Err(Error::ValueTooLarge {
                    len,
                    limit: max_value,
                });
            }
            total += key.len() + len + 16;
        }
        for (start, end) in &request.range_deletes {
            total += start.len() + end.len() + 16;
        }
        for condition in &request.conditions {
            total += condition.expected.as_ref().map_or(0, |(v, _)| v.len());
        }
        if total > MAX_BATCH_BYTES {
            return Err(Error::InvalidArgument(format!(
                "batch of {total} bytes is larger than one log entry may be ({MAX_BATCH_BYTES})"
            )));
        }
        Ok(())
    }

    /// Sets the native address this node serves clients on (when it is
    /// known only after the node started, as with port 0).
    pub fn advertise_client_addr(&self, addr: SocketAddr) {
        self.client_addr.store(Some(Arc::new(addr)));
    }

    /// Sets the address this node serves RESP on (its RESP listener does,
    /// once bound to a specified address).
    pub fn advertise_resp_addr(&self, addr: SocketAddr) {
        self.resp_addr.store(Some(Arc::new(addr)));
    }

    /// The last known leader's native address, if this node knows it.
    pub fn leader_client_addr(&self) -> Option<SocketAddr> {
        self.known_leader()
            .and_then(|leader| self.client_addr_of(leader))
    }

    /// The leader now, else the last one this node knew of.
    fn known_leader(&self) -> Option<NodeId> {
        let now = self.raft.metrics().borrow().current_leader;
        now.or_else(|| self.last_leader.load_full().map(|id| *id))
    }

    fn client_addr_of(&self, id: NodeId) -> Option<SocketAddr> {
        self.client_addrs_of(id).native
    }

    /// Where `id` serves clients, as far as this node knows.
    fn client_addrs_of(&self, id: NodeId) -> ClientAddrs {
        match id == self.id {
            true => ClientAddrs {
                native: self.client_addr.load_full().map(|addr| *addr),
                resp: self.resp_addr.load_full().map(|addr| *addr),
            },
            false => self
                .member_addrs
                .load()
                .get(&id)
                .copied()
                .unwrap_or_default(),
        }
    }

    /// `node ID, client address A` (or `peer address P`) of the leader
    /// this node knows of.
    fn leader_addr(&self) -> Option<String> {
        let leader = self.known_leader()?;
        let client = self.client_addr_of(leader);
        Some(match (client, self.addr_of(leader)) {
            (Some(client), _) => format!("node {leader}, {CLIENT_ADDRESS_HINT}{client}"),
            (None, Some(peer)) => format!("node {leader}, peer address {peer}"),
            (None, None) => format!("node {leader}"),
        })
    }

    /// `id`'s peer address: from the membership this node knows, else
    /// from the `--cluster` list.
    fn addr_of(&self, id: NodeId) -> Option<String> {
        let metrics = self.raft.metrics();
        let known = metrics
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|node| node.addr.clone());
        known.or_else(|| self.members.get(&id).cloned())
    }

    pub(super) fn unavailable(&self) -> ClusterError {
        ClusterError::Unavailable {
            leader: self.leader_addr(),
        }
    }

    /// Commits `request` through the leader (this node, or forwarded to
    /// it) and returns once it is applied on the leader, waiting up to the
    /// request timeout for a leader.
    ///
    /// A write is proposed again only when no earlier attempt can commit:
    /// openraft answered `ForwardToLeader` (it was not proposed, or its
    /// entry was truncated), or the forwarded request could not be sent.
    /// A forwarded write whose reply is lost is not resent (it may have
    /// committed; resending could apply it twice, after a later write).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] if no leader committed it in time (it
    /// may still commit later); [`ClusterError::Stopped`] if Raft stopped.
    /// A conditional request whose conditions did not hold is `Ok` with
    /// `conflict` set (nothing of it was written).
    ///
    /// Plain writes share an entry with the others waiting beside them
    /// ([`super::write_batch`]).
    pub async fn write(&self, request: ClusterRequest) -> Result<ClusterResponse, ClusterError> {
        if !mergeable(&request) {
            return self.propose(request).await;
        }
        match self.writes.write(request).await {
            Some(result) => result,
            None => Err(ClusterError::Stopped("the write batcher stopped".into())),
        }
    }

    /// Proposes `request` as one entry (see [`Self::write`]).
    async fn propose(&self, request: ClusterRequest) -> Result<ClusterResponse, ClusterError> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            // A leader that lost its majority keeps leading (openraft does
            // not step down) and its proposal never commits: without the
            // deadline the write waited until the majority came back (an
            // outside probe saw minutes), and every write queued behind it.
            let left = deadline.saturating_duration_since(Instant::now());
            let proposed = tokio::time::timeout(left, self.raft.client_write(request.clone()));
            let Ok(written) = proposed.await else {
                return Err(self.unavailable()); // it may still commit
            };
            let leader = match written {
                Ok(written) => return Ok(written.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => f.leader_id,
                Err(RaftError::APIError(e)) => return Err(ClusterError::Stopped(e.to_string())),
                Err(RaftError::Fatal(e)) => return Err(ClusterError::Stopped(e.to_string())),
            };
            if let Some(leader) = leader.filter(|l| *l != self.id) {
                let forwarded = PeerRequest::ClientWrite(request.clone());
                match self.ask(leader, &forwarded, deadline).await {
                    Ok(PeerReply::ClientWrite(Ok((_, response)))) => return Ok(response),
                    Ok(PeerReply::ClientWrite(Err(RaftError::APIError(
                        ClientWriteError::ForwardToLeader(_),
                    ))))
                    | Err(CallError::Unreachable(_)) => {}
                    Ok(_) | Err(CallError::Network(_)) => return Err(self.unavailable()),
                }
            }
            self.pause_or_give_up(deadline).await?;
        }
    }

    /// Returns once this node's engine reflects every write committed
    /// before the call (a read index: the leader confirms its leadership
    /// with a majority and names its commit index; this node waits until it
    /// has applied that far). A read after it is linearizable. Concurrent
    /// callers share rounds ([`super::read_index`]), never one that began
    /// before they called.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] if no leader confirmed in time.
    pub async fn linearizable_barrier(&self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            if let Some(index) = self.read_index(deadline).await {
                let Some(index) = index else { return Ok(()) };
                let left = deadline.saturating_duration_since(Instant::now());
                let waited = self.raft.wait(Some(left));
                return match waited
                    .applied_index_at_least(Some(index.index), "read")
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(_) => Err(self.unavailable()),
                };
            }
            self.pause_or_give_up(deadline).await?;
        }
    }

    /// A read index from a round that starts after this call (through the
    /// leader's batcher here, or the follower's to the leader); `None` if
    /// no leader is known or the round failed or outlived `deadline`.
    async fn read_index(&self, deadline: Instant) -> Option<ReadIndex> {
        let leader = self.raft.metrics().borrow().current_leader?;
        let left = deadline.saturating_duration_since(Instant::now());
        if leader == self.id {
            let round = tokio::time::timeout(left, self.leader_reads.read_index());
            round.await.ok().flatten()?.ok()
        } else {
            let round = tokio::time::timeout(left, self.follower_reads.read_index());
            round.await.ok().flatten()?.ok()
        }
    }

    /// One follower round: asks the leader for a read index.
    async fn forwarded_read_index(&self) -> Result<ReadIndex, RoundFailed> {
        let leader = self.raft.metrics().borrow().current_leader;
        let leader = leader.filter(|l| *l != self.id).ok_or(RoundFailed)?;
        let deadline = Instant::now() + self.request_timeout;
        match self.ask(leader, &PeerRequest::ReadIndex, deadline).await {
            Ok(PeerReply::ReadIndex(Ok(index))) => Ok(index),
            _ => Err(RoundFailed),
        }
    }

    /// What a read waits for first: the read index under
    /// [`ReadConsistency::Linearizable`], nothing under `Local`.
    ///
    /// # Errors
    ///
    /// As [`Self::linearizable_barrier`].
    pub async fn read_barrier(&self) -> Result<(), ClusterError> {
        match self.read_consistency {
            ReadConsistency::Linearizable => self.linearizable_barrier().await,
            ReadConsistency::Local => Ok(()),
        }
    }

    /// Sends `request` to node `target` on a pooled stream (or a new one),
    /// waiting for one of the [`FORWARDS_IN_FLIGHT`] slots first (except a
    /// read-index round or an address probe, which are one at a time).
    pub(super) async fn ask(
        &self,
        target: NodeId,
        request: &PeerRequest,
        deadline: Instant,
    ) -> Result<PeerReply, CallError> {
        let Some(addr) = self.addr_of(target) else {
            let unknown = std::io::Error::other(format!("node {target} has no known address"));
            return Err(CallError::Unreachable(unknown));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        // A read-index round or an address probe (at most one of each in
        // flight) must not queue behind forwarded writes.
        let bounded = !matches!(
            request,
            PeerRequest::ReadIndex | PeerRequest::ClientAddress | PeerRequest::ClientAddresses
        );
        let _slot = match bounded {
            true => match tokio::time::timeout(left, self.forward_slots.acquire()).await {
                Ok(Ok(slot)) => Some(slot),
                _ => {
                    let busy = std::io::Error::other("no free slot for a peer request in time");
                    return Err(CallError::Unreachable(busy));
                }
            },
            false => None,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let mut connection = self.network.connection(target, addr);
        connection.call(request, left).await
    }

    pub(super) async fn pause_or_give_up(&self, deadline: Instant) -> Result<(), ClusterError> {
        if Instant::now() >= deadline {
            return Err(self.unavailable());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    }

    /// This node's view of the cluster: the members of the membership it
    /// has (the `--cluster` list before it has one).
    pub fn status(&self) -> ClusterStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let leading = metrics.state == ServerState::Leader;
        let matched = metrics.replication.clone().unwrap_or_default();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut nodes: BTreeMap<NodeId, String> = membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        if nodes.is_empty() {
            nodes = (*self.members).clone();
        }
        let last = metrics.last_log_index.unwrap_or(0);
        let members = nodes
            .into_iter()
            .map(|(id, addr)| {
                let matched_index = matched.get(&id).copied().flatten().map(|l| l.index);
                let lag = leading.then(|| last.saturating_sub(matched_index.unwrap_or(0)));
                let clients = self.client_addrs_of(id);
                MemberStatus {
                    id,
                    addr,
                    voter: voters.is_empty() || voters.contains(&id),
                    matched_index,
                    lag,
                    client_addr: clients.native,
                    resp_addr: clients.resp,
                }
            })
            .collect();
        let role = match metrics.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        ClusterStatus {
            node_id: self.id,
            leader: metrics.current_leader,
            term: metrics.current_term,
            role: role.into(),
            last_log_index: metrics.last_log_index,
            last_applied_index: metrics.last_applied.map(|l| l.index),
            members,
        }
    }

    /// Stops Raft and the peer listener, then closes the engine.
    ///
    /// # Errors
    ///
    /// The engine's close error.
    pub async fn shutdown(&self) -> crate::Result<()> {
        let _ = self.raft.shutdown().await;
        self.arbiter.stop();
        self.engine().close().await
    }
}

/// The largest write one log entry carries (keys, values and 16 bytes of
/// framing each): the WAL's record limit less room for the entry's own
/// framing and the applied log id.
pub const MAX_BATCH_BYTES: usize = crate::format::wal::MAX_RECORD_BYTES - (64 << 10);

/// One leader round: openraft's read index (a heartbeat round to a
/// majority, then its commit index).
fn leader_round(
    raft: Raft<TypeConfig>,
) -> impl FnMut() -> futures_util::future::BoxFuture<
    'static,
    Result<ReadIndex, super::network::ReadIndexError>,
> {
    use futures_util::FutureExt;
    move || {
        let raft = raft.clone();
        async move { raft.get_read_log_id().await.map(|(index, _applied)| index) }.boxed()
    }
}

/// How often a node checks whether the leader changed, and asks members
/// whose client addresses it does not know yet.
const LEADER_CHECK: Duration = Duration::from_millis(500);

/// Learns where the other members serve clients: each new leader is asked
/// at once (it may have restarted on other ports), so that an UNAVAILABLE
/// answer can name it even once it is unreachable; every other member is
/// asked until it has named both addresses (a server may advertise them
/// after it started). The addresses are shown by [`ClusterNode::status`].
async fn learn_client_addresses(node: ClusterNode) {
    let mut asked_leader = None;
    loop {
        let leader = node.raft.metrics().borrow().current_leader;
        if let Some(leader) = leader {
            node.last_leader.store(Some(Arc::new(leader)));
        }
        let new_leader = leader.filter(|l| *l != node.id && asked_leader != Some(*l));
        let known = node.member_addrs.load_full();
        let incomplete = node
            .status()
            .members
            .into_iter()
            .map(|m| m.id)
            .filter(|id| {
                let addrs = known.get(id);
                *id != node.id
                    && Some(*id) != new_leader
                    && addrs.is_none_or(|a| a.native.is_none() || a.resp.is_none())
            });
        let targets: Vec<NodeId> = new_leader.into_iter().chain(incomplete).collect();
        for target in targets {
            let deadline = Instant::now() + LEADER_CHECK;
            let reply = node
                .ask(target, &PeerRequest::ClientAddresses, deadline)
                .await;
            if let Ok(PeerReply::ClientAddresses(addrs)) = reply {
                node.member_addrs.rcu(|known| {
                    let mut known = BTreeMap::clone(known);
                    known.insert(target, addrs);
                    known
                });
                if Some(target) == new_leader && addrs.native.is_some() {
                    asked_leader = new_leader;
                }
            }
        }
        tokio::time::sleep(LEADER_CHECK).await;
    }
}

/// How often the lowest node re-probes the others while forming.
const FORM_RETRY: Duration = Duration::from_millis(300);

/// Logs, at INFO, each change of this node's role, term, leader or
/// membership (elections, leader changes, members added or removed), until
/// Raft stops. An outside probe found none of these in the log.
async fn log_role_changes(
    mut metrics: tokio::sync::watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    id: NodeId,
) {
    // Compared by the membership's log id: the metrics change with every
    // append on a leader, and building the member lists each time would
    // allocate for nothing.
    let mut last = None;
    loop {
        {
            let m = metrics.borrow_and_update();
            let membership_id = *m.membership_config.log_id();
            let seen = (m.state, m.current_term, m.current_leader, membership_id);
            if last.as_ref() != Some(&seen) {
                let membership = m.membership_config.membership();
                let voters: Vec<NodeId> = membership.voter_ids().collect();
                let learners: Vec<NodeId> = membership.learner_ids().collect();
                let (state, term, leader, _) = &seen;
                let leader = leader.map_or("none".to_string(), |l| format!("node {l}"));
                log::info!(
                    "cluster node {id}: {state:?} in term {term}, leader {leader}, voters \
                     {voters:?}, learners {learners:?}"
                );
                last = Some(seen);
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// The lowest id initializes a fresh cluster once a majority is reachable
/// and fresh (module doc); other nodes wait for a leader.
async fn form_cluster(
    raft: Raft<TypeConfig>,
    id: NodeId,
    members: BTreeMap<NodeId, String>,
    network: PeerNetwork,
    abstention: Arc<Abstention>,
) {
    if members.keys().next() != Some(&id) {
        return;
    }
    loop {
        if raft.is_initialized().await.unwrap_or(true) {
            return;
        }
        let mut fresh = 1;
        for (peer, addr) in members.iter().filter(|(peer, _)| **peer != id) {
            let mut connection = network.connection(*peer, addr.clone());
            match connection.call(&PeerRequest::Initialized, FORM_RETRY).await {
                Ok(PeerReply::Initialized(true)) => {
                    log::info!("node {peer} already has Raft state: not initializing");
                    return;
                }
                Ok(PeerReply::Initialized(false)) => fresh += 1,
                _ => {}
            }
        }
        if fresh > members.len() / 2 {
            let nodes: BTreeMap<NodeId, BasicNode> = members
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            match raft.initialize(nodes).await {
                Ok(()) => return abstention.end(&raft, "it initialized the cluster"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => return,
                Err(e) => log::warn!("initializing the cluster: {e}"),
            }
        }
        tokio::time::sleep(FORM_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_and_refuse_bad_lists() {
        let members = parse_members("1=h:7001, 2=h:7002,3=h:7003").unwrap();
        assert_eq!(members.len(), 3);
        assert_eq!(members[&2], "h:7002");
        for bad in ["", "1", "x=h:1", "1=h", "1=h:1,1=h:2"] {
            assert!(parse_members(bad).is_err(), "{bad:?}");
        }
    }
}
