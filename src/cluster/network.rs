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
//! handle, whose core task owns the Raft state. The client side is one
//! connection per target, owned by the `PeerClient` openraft keeps per
//! replication stream; a failed call drops the connection and the next call
//! reconnects.

use std::sync::Arc;
use std::time::Duration;

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

use super::admin::{ChangeRefusal, MemberChange, change_on_leader};
use super::faults::{Fate, NetworkFaults};
use super::peer_auth::{ClusterSecret, client_handshake, server_handshake};
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

/// One connection to a peer, made on first use.
pub struct PeerConnection {
    addr: String,
    framed: Option<Framed<TcpStream, LengthDelimitedCodec>>,
    /// Test faults on this link (none in a server).
    link: Option<FaultyLink>,
    /// The cluster secret proven on connecting (none: `--insecure-peers`).
    secret: Option<ClusterSecret>,
}

impl PeerConnection {
    /// A connection to `addr` (`HOST:PORT`), not yet made.
    pub fn new(addr: String) -> Self {
        PeerConnection {
            addr,
            framed: None,
            link: None,
            secret: None,
        }
    }

    /// The same connection, authenticated with `secret` when it connects.
    pub fn with_secret(self, secret: Option<ClusterSecret>) -> Self {
        PeerConnection { secret, ..self }
    }

    /// A connection to `addr` whose messages meet `link`'s faults, if any.
    pub fn with_faults(addr: String, link: Option<FaultyLink>) -> Self {
        PeerConnection {
            link,
            ..PeerConnection::new(addr)
        }
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
        let result = match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        };
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
        }
    }

    /// A connection (made on first use) to node `to` at `addr`.
    pub fn connection(&self, to: NodeId, addr: String) -> PeerConnection {
        PeerConnection::with_faults(addr, self.link(to)).with_secret(self.secret.clone())
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

/// Accepts peer connections on `listener` until the process stops, each
/// served by a task of its own on the current arbiter; with a `secret`,
/// only after the connection proved it.
pub async fn serve_peers(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    secret: Option<ClusterSecret>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                let _ = stream.set_nodelay(true);
                let (raft, secret) = (raft.clone(), secret.clone());
                tokio::spawn(async move {
                    let mut framed = Framed::new(stream, codec());
                    if let Some(secret) = &secret
                        && let Err(e) = server_handshake(&mut framed, secret).await
                    {
                        log::warn!("refused a peer connection from {from}: {e}");
                        return;
                    }
                    serve_connection(framed, raft).await;
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
async fn serve_connection(
    mut framed: Framed<TcpStream, LengthDelimitedCodec>,
    raft: Raft<TypeConfig>,
) {
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(PEER_READ_TIMEOUT, framed.next()).await {
        let request: PeerRequest = match postcard::from_bytes(&frame) {
            Ok(request) => request,
            Err(e) => {
                log::warn!("a peer sent an undecodable request: {e}");
                return;
            }
        };
        let reply = answer(&raft, request).await;
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

async fn answer(raft: &Raft<TypeConfig>, request: PeerRequest) -> PeerReply {
    match request {
        PeerRequest::AppendEntries(rpc) => PeerReply::AppendEntries(raft.append_entries(rpc).await),
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
            raft.get_read_log_id()
                .await
                .map(|(read_log_id, _applied)| read_log_id),
        ),
        PeerRequest::Initialized => {
            PeerReply::Initialized(raft.is_initialized().await.unwrap_or(true))
        }
        PeerRequest::ChangeMembers(change) => {
            PeerReply::ChangeMembers(change_on_leader(raft, change).await)
        }
    }
}
