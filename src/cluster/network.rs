//! Node-to-node RPC over TCP: openraft's AppendEntries, Vote and
//! InstallSnapshot, plus the cluster's own requests (a follower forwarding
//! a write or asking for a read index, a node probing another's state).
//!
//! # Wire format
//!
//! A connection carries frames in both directions: a 4-byte big-endian
//! length, then that many bytes of a postcard-encoded [`PeerRequest`]
//! (client to server) or [`PeerReply`] (server to client), one reply per
//! request, in order. Frames longer than [`MAX_FRAME_BYTES`] are refused
//! by both sides (the connection is closed). postcard, not protobuf: the
//! messages are openraft's own serde types, encoded compactly with no
//! hand-written mapping that could drift from them; peers must run the same
//! NaiveKV version.
//!
//! With a cluster secret, each connection starts with the handshake of
//! [`super::peer_auth`] (both sides prove the secret; frames are at most
//! 256 bytes until then) and the server reads no request before it
//! succeeds. Without one (`--insecure-peers`) there is no handshake. The
//! server closes a connection that sends no complete frame for
//! [`PEER_READ_TIMEOUT`].
//!
//! # Tasks
//!
//! The listener and one task per accepted connection run on the cluster's
//! arbiter (see [`super::node`]); each request is handed to the `Raft`
//! handle, whose core task owns the Raft state. The client side is a
//! [`PeerConnection`] per caller (openraft's `PeerClient` per replication
//! stream and per heartbeat round, a forwarded write or read index); a
//! failed call drops its stream and the next call reconnects.
//!
//! # Pooled streams
//!
//! Making a stream costs a TCP connect and, with a secret, the handshake's
//! two round trips and HMACs. A node's [`PeerNetwork`] therefore keeps a
//! [`PeerPool`]: up to [`POOLED_PER_PEER`] idle, authenticated streams per
//! peer address, in a lock-free queue. A `PeerConnection` takes an idle
//! stream before it connects, and gives its stream back when it is dropped,
//! unless a call on it failed or was abandoned mid-exchange (a reply may
//! still be on its way: such a stream is closed, never reused). A stream
//! idle longer than [`POOL_IDLE_LIMIT`] (well within the server's
//! [`PEER_READ_TIMEOUT`]) or already closed by the peer is dropped when
//! taken, so a forwarded write is not sent on a stream the peer has shut.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use futures_util::FutureExt;

use futures_util::{SinkExt, StreamExt};
use openraft::error::{
    CheckIsLeaderError, ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError,
    RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, LogId, Raft};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::abstention::Abstention;
use super::admin::{ChangeRefusal, MemberChange, change_on_leader};
use super::faults::{Fate, NetworkFaults};
use super::peer_auth::{ClusterSecret, client_handshake, server_handshake};
use super::read_index::ReadIndexBatcher;
use super::{ClusterRequest, ClusterResponse, NodeId, TypeConfig, codec_error};

/// The longest frame either side accepts: 256 MiB (openraft sends at most
/// `max_payload_entries` entries per AppendEntries, each within a WAL
/// record's 65 MiB).
pub const MAX_FRAME_BYTES: usize = 256 << 20;

/// How long a connection attempt may take before the peer counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the serving side waits for the next complete request frame
/// before it closes the connection (a leader's heartbeats arrive every
/// `--heartbeat` interval, far more often; the caller reconnects).
pub const PEER_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How many idle streams a node keeps per peer address.
pub const POOLED_PER_PEER: usize = 64;

/// How long a stream may sit idle in the pool and still be reused.
pub const POOL_IDLE_LIMIT: Duration = Duration::from_secs(20);

/// A request from one node to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower forwards a client's write to the leader.
    ClientWrite(ClusterRequest),
    /// A follower asks the leader for a read index (see
    /// [`super::node::ClusterNode::linearizable_barrier`]).
    ReadIndex,
    /// Whether the node has Raft state (used before forming a cluster).
    Initialized,
    /// A follower forwards a membership change to the leader.
    ChangeMembers(MemberChange),
    /// The native (client-facing) address the node serves clients on, so
    /// that an UNAVAILABLE answer can name the leader's.
    ClientAddress,
    /// The native and RESP addresses the node serves clients on (for
    /// `cluster status`, `INFO replication` and `ROLE`).
    ClientAddresses,
}

/// Where a node serves clients, each `None` until its server advertises
/// it (an unspecified `--ip`, or no `--resp-port`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientAddrs {
    /// The native protocol's address.
    pub native: Option<std::net::SocketAddr>,
    /// The RESP address.
    pub resp: Option<std::net::SocketAddr>,
}

/// Errors a forwarded write can meet on the leader.
pub type WriteError = RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>;
/// Errors a read-index request can meet on the leader.
pub type ReadIndexError = RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>;

/// The answer to a [`PeerRequest`] of the same kind.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerReply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    ClientWrite(Result<(LogId<NodeId>, ClusterResponse), WriteError>),
    ReadIndex(Result<Option<LogId<NodeId>>, ReadIndexError>),
    Initialized(bool),
    ChangeMembers(Result<(), ChangeRefusal>),
    ClientAddress(Option<std::net::SocketAddr>),
    ClientAddresses(ClientAddrs),
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

/// The sender's side of one link under test faults: what
/// [`NetworkFaults::fate`] is asked about each message.
#[derive(Debug, Clone)]
pub struct FaultyLink {
    pub faults: Arc<NetworkFaults>,
    pub from: NodeId,
    pub to: NodeId,
}

/// A framed peer stream.
type PeerStream = Framed<TcpStream, LengthDelimitedCodec>;

/// One idle stream in a [`PeerPool`] and since when it is idle.
struct IdleStream {
    stream: PeerStream,
    since: Instant,
}

/// Idle authenticated streams to each peer address (module doc): an
/// immutable map behind an `ArcSwap` (grown by copy when a new address is
/// first used) of lock-free queues.
#[derive(Clone, Default)]
pub struct PeerPool {
    idle: Arc<ArcSwap<BTreeMap<String, Arc<ArrayQueue<IdleStream>>>>>,
}

impl PeerPool {
    fn queue(&self, addr: &str) -> Arc<ArrayQueue<IdleStream>> {
        if let Some(queue) = self.idle.load().get(addr) {
            return queue.clone();
        }
        let fresh = Arc::new(ArrayQueue::new(POOLED_PER_PEER));
        self.idle.rcu(|map| {
            let mut map = BTreeMap::clone(map);
            map.entry(addr.to_string()).or_insert_with(|| fresh.clone());
            map
        });
        self.idle.load().get(addr).cloned().unwrap_or(fresh)
    }

    /// An idle stream to `addr` that is still open, if any.
    fn take(&self, addr: &str) -> Option<PeerStream> {
        let queue = self.queue(addr);
        while let Some(IdleStream { mut stream, since }) = queue.pop() {
            // Pending means open with nothing to read: the only good state.
            if since.elapsed() < POOL_IDLE_LIMIT && stream.next().now_or_never().is_none() {
                return Some(stream);
            }
        }
        None
    }

    /// Keeps `stream` for the next caller (dropped if the pool is full).
    fn give(&self, addr: &str, stream: PeerStream) {
        let idle = IdleStream {
            stream,
            since: Instant::now(),
        };
        let _ = self.queue(addr).push(idle);
    }

    /// How many idle streams to `addr` the pool holds.
    pub fn idle(&self, addr: &str) -> usize {
        self.idle.load().get(addr).map_or(0, |queue| queue.len())
    }
}

/// One connection to a peer, made (or taken from the pool) on first use.
pub struct PeerConnection {
    addr: String,
    framed: Option<PeerStream>,
    /// Test faults on this link (none in a server).
    link: Option<FaultyLink>,
    /// The cluster secret proven on connecting (none: `--insecure-peers`).
    secret: Option<ClusterSecret>,
    /// Where the stream comes from and goes back to (none: never pooled).
    pool: Option<PeerPool>,
    /// A request was sent and its reply not read yet: if the call is
    /// abandoned now, the stream must not be reused.
    mid_exchange: bool,
}

impl Drop for PeerConnection {
    fn drop(&mut self) {
        if let (Some(pool), Some(stream), false) =
            (&self.pool, self.framed.take(), self.mid_exchange)
        {
            pool.give(&self.addr, stream);
        }
    }
}

impl PeerConnection {
    /// A connection to `addr` (`HOST:PORT`), not yet made.
    pub fn new(addr: String) -> Self {
        PeerConnection {
            addr,
            framed: None,
            link: None,
            secret: None,
            pool: None,
            mid_exchange: false,
        }
    }

    /// The same connection, taking its stream from `pool` and giving it
    /// back when dropped.
    pub fn with_pool(mut self, pool: PeerPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The same connection, authenticated with `secret` when it connects.
    pub fn with_secret(mut self, secret: Option<ClusterSecret>) -> Self {
        self.secret = secret;
        self
    }

    /// A connection to `addr` whose messages meet `link`'s faults, if any.
    pub fn with_faults(addr: String, link: Option<FaultyLink>) -> Self {
        let mut connection = PeerConnection::new(addr);
        connection.link = link;
        connection
    }

    /// Sends `request` and waits for its reply within `timeout`.
    ///
    /// # Errors
    ///
    /// `Unreachable` if no connection could be made (or a test fault kept
    /// the request from being sent); `Network` if the exchange failed or
    /// timed out (the connection is dropped; the request may have taken
    /// effect).
    pub async fn call(
        &mut self,
        request: &PeerRequest,
        timeout: Duration,
    ) -> Result<PeerReply, CallError> {
        let fate = self.link.as_ref().map(|link| {
            let duplicable = matches!(
                request,
                PeerRequest::AppendEntries(_) | PeerRequest::Vote(_)
            );
            link.faults.fate(link.from, link.to, duplicable)
        });
        match fate {
            None => self.call_once(request, timeout).await,
            Some(Fate::Lost) => Err(CallError::Unreachable(std::io::Error::other(
                "message lost by a test fault",
            ))),
            Some(Fate::Sent {
                delay,
                copies,
                lose_reply,
            }) => {
                tokio::time::sleep(delay).await;
                let mut reply = self.call_once(request, timeout).await;
                for _ in 1..copies {
                    reply = self.call_once(request, timeout).await;
                }
                match reply {
                    Ok(_) if lose_reply => {
                        self.framed = None;
                        Err(CallError::Network(std::io::Error::other(
                            "reply lost by a test fault",
                        )))
                    }
                    reply => reply,
                }
            }
        }
    }

    async fn call_once(
        &mut self,
        request: &PeerRequest,
        timeout: Duration,
    ) -> Result<PeerReply, CallError> {
        if self.mid_exchange {
            // An earlier call was abandoned: its reply may still come.
            self.framed = None;
            self.mid_exchange = false;
        }
        if self.framed.is_none() {
            self.framed = self.pool.as_ref().and_then(|pool| pool.take(&self.addr));
        }
        if self.framed.is_none() {
            let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr));
            let stream = match connect.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(CallError::Unreachable(e)),
                Err(_) => return Err(CallError::Unreachable(std::io::ErrorKind::TimedOut.into())),
            };
            let _ = stream.set_nodelay(true);
            let mut framed = Framed::new(stream, codec());
            if let Some(secret) = &self.secret {
                // Within the call's time: nothing is sent before it succeeds.
                let handshake =
                    tokio::time::timeout(timeout, client_handshake(&mut framed, secret));
                match handshake.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(CallError::Unreachable(e)),
                    Err(_) => {
                        return Err(CallError::Unreachable(std::io::ErrorKind::TimedOut.into()));
                    }
                }
            }
            self.framed = Some(framed);
        }
        self.mid_exchange = true;
        let result = match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        };
        self.mid_exchange = false;
        result.map_err(|e| {
            self.framed = None;
            CallError::Network(e)
        })
    }

    async fn exchange(&mut self, request: &PeerRequest) -> std::io::Result<PeerReply> {
        let framed = self
            .framed
            .as_mut()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))?;
        let payload = postcard::to_stdvec(request).map_err(codec_error)?;
        framed.send(bytes::Bytes::from(payload)).await?;
        let frame = framed
            .next()
            .await
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))??;
        postcard::from_bytes(&frame).map_err(codec_error)
    }
}

/// Why a call to a peer failed.
#[derive(Debug)]
pub enum CallError {
    /// No connection could be made: back off before retrying.
    Unreachable(std::io::Error),
    /// The exchange failed: retry.
    Network(std::io::Error),
}

impl CallError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<NodeId, BasicNode, E> {
        match self {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

fn unexpected<E: std::error::Error>(reply: &PeerReply) -> RPCError<NodeId, BasicNode, E> {
    let e = std::io::Error::other(format!("unexpected peer reply {reply:?}"));
    RPCError::Network(NetworkError::new(&e))
}

/// Makes a [`PeerClient`] per target for openraft.
#[derive(Clone, Default)]
pub struct PeerNetwork {
    /// This node's id and the test faults its messages meet, if any.
    faults: Option<(NodeId, Arc<NetworkFaults>)>,
    /// The cluster secret every connection proves (none: insecure).
    secret: Option<ClusterSecret>,
    /// Idle streams shared by every connection this network makes.
    pool: PeerPool,
}

impl PeerNetwork {
    /// The network of node `from`, under `faults` if given, proving
    /// `secret` on each connection if given.
    pub fn new(
        from: NodeId,
        faults: Option<Arc<NetworkFaults>>,
        secret: Option<ClusterSecret>,
    ) -> Self {
        PeerNetwork {
            faults: faults.map(|faults| (from, faults)),
            secret,
            pool: PeerPool::default(),
        }
    }

    /// A connection to node `to` at `addr`, on a pooled stream or one made
    /// on first use.
    pub fn connection(&self, to: NodeId, addr: String) -> PeerConnection {
        PeerConnection::with_faults(addr, self.link(to))
            .with_secret(self.secret.clone())
            .with_pool(self.pool.clone())
    }

    /// The pool of idle streams (for tests and figures).
    pub fn pool(&self) -> &PeerPool {
        &self.pool
    }

    /// The faults of the link from this node to `to`.
    pub fn link(&self, to: NodeId) -> Option<FaultyLink> {
        let (from, faults) = self.faults.as_ref()?;
        Some(FaultyLink {
            faults: faults.clone(),
            from: *from,
            to,
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            connection: self.connection(target, node.addr.clone()),
        }
    }
}

/// openraft's client of one peer.
pub struct PeerClient {
    target: NodeId,
    connection: PeerConnection,
}

impl PeerClient {
    async fn call<E: std::error::Error>(
        &mut self,
        request: PeerRequest,
        option: &RPCOption,
    ) -> Result<PeerReply, RPCError<NodeId, BasicNode, E>> {
        self.connection
            .call(&request, option.hard_ttl())
            .await
            .map_err(CallError::into_rpc)
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RPCError<NodeId, BasicNode, E> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(PeerRequest::AppendEntries(rpc), &option).await? {
            PeerReply::AppendEntries(reply) => reply.map_err(|e| self.remote(e)),
            other => Err(unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .call(PeerRequest::InstallSnapshot(rpc), &option)
            .await?
        {
            PeerReply::InstallSnapshot(reply) => reply.map_err(|e| self.remote(e)),
            other => Err(unexpected(&other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(PeerRequest::Vote(rpc), &option).await? {
            PeerReply::Vote(reply) => reply.map_err(|e| self.remote(e)),
            other => Err(unexpected(&other)),
        }
    }
}

/// The leader's read-index batcher, which peers' `ReadIndex` requests join.
pub type LeaderReads = ReadIndexBatcher<ReadIndexError>;

/// What the peer listener needs besides the `Raft` handle.
#[derive(Clone)]
pub struct PeerService {
    /// Where peers' `ReadIndex` requests go.
    pub reads: LeaderReads,
    /// This node's native address, once the server advertises it.
    pub client_addr: Arc<arc_swap::ArcSwapOption<std::net::SocketAddr>>,
    /// This node's RESP address, once its RESP listener advertises it.
    pub resp_addr: Arc<arc_swap::ArcSwapOption<std::net::SocketAddr>>,
    /// Whether vote requests are refused before openraft sees them
    /// ([`super::abstention`]).
    pub abstention: Arc<Abstention>,
}

/// Accepts peer connections on `listener` until the process stops, each
/// served by a task of its own on the current arbiter; with a `secret`,
/// only after the connection proved it.
pub async fn serve_peers(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    secret: Option<ClusterSecret>,
    service: PeerService,
) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                let _ = stream.set_nodelay(true);
                let (raft, secret, service) = (raft.clone(), secret.clone(), service.clone());
                tokio::spawn(async move {
                    let mut framed = Framed::new(stream, codec());
                    if let Some(secret) = &secret
                        && let Err(e) = server_handshake(&mut framed, secret).await
                    {
                        log::warn!("refused a peer connection from {from}: {e}");
                        return;
                    }
                    serve_connection(framed, raft, service).await;
                });
            }
            Err(e) => {
                log::warn!("accepting a peer connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers the requests of one peer connection, in order, until it
/// closes, fails or sends nothing for [`PEER_READ_TIMEOUT`].
async fn serve_connection(mut framed: PeerStream, raft: Raft<TypeConfig>, service: PeerService) {
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(PEER_READ_TIMEOUT, framed.next()).await {
        let request: PeerRequest = match postcard::from_bytes(&frame) {
            Ok(request) => request,
            Err(e) => {
                log::warn!("a peer sent an undecodable request: {e}");
                return;
            }
        };
        let reply = answer(&raft, &service, request).await;
        let encoded = match postcard::to_stdvec(&reply) {
            Ok(encoded) => encoded,
            Err(e) => {
                log::warn!("encoding a peer reply: {e}");
                return;
            }
        };
        if framed.send(bytes::Bytes::from(encoded)).await.is_err() {
            return;
        }
    }
}

async fn answer(raft: &Raft<TypeConfig>, service: &PeerService, request: PeerRequest) -> PeerReply {
    match request {
        PeerRequest::AppendEntries(rpc) => PeerReply::AppendEntries(raft.append_entries(rpc).await),
        PeerRequest::Vote(rpc) if !service.abstention.admits(&rpc) => {
            let refusal = service.abstention.refuse(&rpc, &raft.metrics().borrow());
            PeerReply::Vote(Ok(refusal))
        }
        PeerRequest::Vote(rpc) => PeerReply::Vote(raft.vote(rpc).await),
        PeerRequest::InstallSnapshot(rpc) => {
            PeerReply::InstallSnapshot(raft.install_snapshot(rpc).await)
        }
        PeerRequest::ClientWrite(request) => PeerReply::ClientWrite(
            raft.client_write(request)
                .await
                .map(|written| (written.log_id, written.data)),
        ),
        PeerRequest::ReadIndex => PeerReply::ReadIndex(
            service
                .reads
                .read_index()
                .await
                .unwrap_or(Err(RaftError::Fatal(openraft::error::Fatal::Stopped))),
        ),
        PeerRequest::Initialized => {
            PeerReply::Initialized(raft.is_initialized().await.unwrap_or(true))
        }
        PeerRequest::ChangeMembers(change) => {
            PeerReply::ChangeMembers(change_on_leader(raft, change).await)
        }
        PeerRequest::ClientAddress => {
            PeerReply::ClientAddress(service.client_addr.load_full().map(|addr| *addr))
        }
        PeerRequest::ClientAddresses => PeerReply::ClientAddresses(ClientAddrs {
            native: service.client_addr.load_full().map(|addr| *addr),
            resp: service.resp_addr.load_full().map(|addr| *addr),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A peer that answers `Initialized(true)` to every request, counting
    /// the connections it accepts; `close_after` requests closes each.
    async fn answering_peer(close_after: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut framed = Framed::new(stream, codec());
                    for _ in 0..close_after {
                        let Some(Ok(_)) = framed.next().await else {
                            return;
                        };
                        let reply = postcard::to_stdvec(&PeerReply::Initialized(true)).unwrap();
                        let _ = framed.send(bytes::Bytes::from(reply)).await;
                    }
                });
            }
        });
        (addr, accepted)
    }

    async fn ask(pool: &PeerPool, addr: &str) -> bool {
        let mut connection = PeerConnection::new(addr.to_string()).with_pool(pool.clone());
        let reply = connection
            .call(&PeerRequest::Initialized, Duration::from_secs(5))
            .await;
        matches!(reply, Ok(PeerReply::Initialized(true)))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn calls_one_after_another_reuse_one_pooled_stream() {
        let (addr, accepted) = answering_peer(usize::MAX).await;
        let pool = PeerPool::default();
        for _ in 0..5 {
            assert!(ask(&pool, &addr).await);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle(&addr), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stream_the_peer_closed_is_not_reused() {
        let (addr, accepted) = answering_peer(1).await;
        let pool = PeerPool::default();
        assert!(ask(&pool, &addr).await);
        // Poll until the peer's close has reached this side.
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(stream) = pool.take(&addr) {
            assert!(
                Instant::now() < deadline,
                "the closed stream still looks open"
            );
            pool.give(&addr, stream);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ask(&pool, &addr).await);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_abandoned_call_does_not_give_its_stream_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // A peer that reads requests and never answers.
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut framed = Framed::new(stream, codec());
            while let Some(Ok(_)) = framed.next().await {}
        });
        let pool = PeerPool::default();
        let mut connection = PeerConnection::new(addr.clone()).with_pool(pool.clone());
        let call = connection.call(&PeerRequest::Initialized, Duration::from_secs(30));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), call)
                .await
                .is_err()
        );
        drop(connection);
        assert_eq!(pool.idle(&addr), 0);
    }
}
