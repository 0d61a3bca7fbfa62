//! The native protocol on a connection: protobuf `Request`s in
//! length-prefixed frames, answered by `Response`s with the request's id.
//!
//! [`Session`] is the protocol's side of a [`pipeline::Connection`], which
//! keeps the promises every protocol shares (order, byte budget, timeouts;
//! see [`super::pipeline`]). The session keeps only what is native:
//! - the frame codec, with frames over [`PRE_AUTH_MAX_FRAME_BYTES`] refused
//!   until the client has authenticated;
//! - with a token configured, nothing but `Auth` is served until the client
//!   has sent the right token (see [`super::auth`]);
//! - `Ping` is answered at once; the other commands go to the engine
//!   ([`super::dispatch`]).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::LocalBoxFuture;
use tokio::net::TcpStream;
use tokio_util::codec::Encoder;

use super::auth::{AuthGate, AuthOutcome, AuthToken};
use super::checkpoints::CheckpointRoot;
use super::codec::{Frame, ProtoCodec, is_frame_too_large};
use super::dispatch;
use super::pipeline::{self, Accepted, Access, Footprint, PipelineConfig, Protocol};
use crate::cluster::ClusterNode;
use crate::engine::Mutation;
use crate::proto::mutation::Op as MutationOp;
use crate::proto::{ErrorCode, Request, Response, request::Command, response::Reply};
use crate::server::connections::ConnectionGuard;
use crate::{Db, WriteBatch};

/// The native requests counted in `/metrics` (see `command_index`).
pub const COMMANDS: &[&str] = &["get", "put", "delete", "scan", "batch", "stats", "other"];

type Codec = ProtoCodec<Request, Response>;

/// Longest frame read from a connection that has not yet authenticated: an
/// `Auth` is small, and an unknown client should not make the server buffer
/// 64 MiB.
pub const PRE_AUTH_MAX_FRAME_BYTES: usize = pipeline::PRE_AUTH_MAX_BYTES;

/// How a session is set up; one per server, cloned into each session.
#[derive(Clone)]
pub(crate) struct SessionParams {
    pub db: Db,
    pub max_frame_bytes: usize,
    /// The token clients must send first, if any.
    pub auth_token: Option<AuthToken>,
    pub pipeline: PipelineConfig,
    /// Where `Checkpoint` requests may write.
    pub checkpoints: Arc<CheckpointRoot>,
    /// This node's cluster, when the server runs with `--cluster`.
    pub cluster: Option<ClusterNode>,
}

/// The native protocol's state on one connection.
pub struct Session {
    db: Db,
    /// Where `Checkpoint` requests may write.
    checkpoints: Arc<CheckpointRoot>,
    /// Whether this connection has authenticated.
    gate: AuthGate,
    max_frame_bytes: usize,
    /// Encodes replies (its decoding half is unused).
    encoder: Codec,
    /// With `--cluster`, commands go through the cluster instead.
    cluster: Option<ClusterNode>,
}

impl Session {
    /// Starts serving `stream` on the current arbiter.
    pub(crate) fn start(stream: TcpStream, params: SessionParams, guard: ConnectionGuard) {
        let gate = AuthGate::new(params.auth_token.clone());
        let first_limit = if gate.is_open() {
            params.max_frame_bytes
        } else {
            params.max_frame_bytes.min(PRE_AUTH_MAX_FRAME_BYTES)
        };
        let session = Session {
            db: params.db,
            checkpoints: params.checkpoints,
            gate,
            max_frame_bytes: params.max_frame_bytes,
            encoder: Codec::new(0),
            cluster: params.cluster,
        };
        pipeline::start(
            stream,
            session,
            Codec::new(first_limit),
            &params.pipeline,
            guard,
        );
    }

    /// Checks an `Auth` token and gives its reply; after too many wrong
    /// tokens the connection closes once the reply is written.
    fn authenticate(&mut self, id: u64, token: &[u8]) -> Accepted<Self> {
        match self.gate.attempt(token) {
            AuthOutcome::Accepted => Accepted::Answer(id, Reply::Done(crate::proto::Done {})),
            AuthOutcome::Refused => Accepted::Answer(
                id,
                dispatch::error(ErrorCode::Unauthenticated, "wrong token"),
            ),
            AuthOutcome::TooManyFailures => {
                log::warn!("closing a connection after repeated wrong tokens");
                Accepted::AnswerAndClose(
                    id,
                    dispatch::error(ErrorCode::Unauthenticated, "wrong token; closing"),
                )
            }
        }
    }
}

impl Protocol for Session {
    type Decoder = Codec;
    /// The request's id, echoed in the reply.
    type Tag = u64;
    type Op = Command;
    type Reply = Reply;

    fn accept(&mut self, frame: Frame<Request>) -> Accepted<Self> {
        let request = match frame {
            Frame::Message(request) => request,
            Frame::Undecodable(e) => {
                log::debug!("undecodable frame: {e}");
                let reply = dispatch::invalid_request(format!("not a valid Request: {e}"));
                return Accepted::Answer(0, reply);
            }
            Frame::Refused { id, reason } => {
                return Accepted::Answer(id, dispatch::invalid_request(reason));
            }
        };
        let id = request.id;
        match request.command {
            None => Accepted::Answer(id, dispatch::invalid_request("request has no command")),
            Some(Command::Auth(auth)) => self.authenticate(id, auth.token.as_bytes()),
            Some(_) if !self.gate.is_open() => Accepted::Answer(
                id,
                dispatch::error(ErrorCode::Unauthenticated, "send Auth first"),
            ),
            Some(Command::Ping(_)) => Accepted::Answer(id, Reply::Pong(crate::proto::Pong {})),
            Some(command) => Accepted::Engine(id, command),
        }
    }

    fn access(command: &Command) -> Access {
        dispatch::access(command)
    }

    fn footprint(command: &Command) -> Footprint {
        footprint_of(command)
    }

    fn command_index(command: &Command) -> usize {
        match command {
            Command::Get(_) => 0,
            Command::Put(_) => 1,
            Command::Delete(_) => 2,
            Command::Scan(_) => 3,
            Command::Batch(_) => 4,
            Command::Stats(_) => 5,
            Command::Ping(_)
            | Command::Auth(_)
            | Command::Expire(_)
            | Command::Persist(_)
            | Command::Ttl(_)
            | Command::Checkpoint(_)
            | Command::Cluster(_) => 6,
        }
    }

    fn execute(&self, command: Command) -> LocalBoxFuture<'static, Reply> {
        if let Some(cluster) = &self.cluster {
            return crate::cluster::dispatch::execute(cluster, &self.checkpoints, command);
        }
        dispatch::execute(&self.db, &self.checkpoints, command)
    }

    /// Gets' keys.
    fn prefetch(&self, requests: &mut dyn Iterator<Item = &Frame<Request>>) {
        let keys: Vec<&[u8]> = requests
            .filter_map(|f| get_key(f).map(|k| &k[..]))
            .collect();
        if keys.len() > 1 {
            self.db.prefetch_gets(&keys);
        }
    }

    /// The leading gets, outside a cluster, read together
    /// ([`Db::get_many_now`]); the rest prefetched.
    fn answer_early(
        &self,
        requests: &mut dyn Iterator<Item = &Frame<Request>>,
        replies: &mut VecDeque<(Bytes, Reply)>,
    ) {
        let requests: Vec<&Frame<Request>> = requests.collect();
        let leading = match self.cluster {
            None => requests.iter().take_while(|f| get_key(f).is_some()).count(),
            Some(_) => 0,
        };
        let (gets, rest) = requests.split_at(leading);
        if rest.len() > 1 {
            self.prefetch(&mut rest.iter().copied());
        }
        let keys: Vec<&[u8]> = gets
            .iter()
            .filter_map(|f| get_key(f).map(|k| &k[..]))
            .collect();
        if keys.is_empty() {
            return;
        }
        self.db.get_many_now(&keys, |at, answer| {
            let Ok(value) = answer else { return };
            let small = value
                .as_ref()
                .is_none_or(|v| v.len() <= pipeline::EARLY_VALUE_BYTES);
            if let (true, Some(key)) = (small, gets.get(at).and_then(|frame| get_key(frame))) {
                replies.push_back((key.clone(), dispatch::get_reply(Ok(value))));
            }
        });
    }

    fn early_key(command: &Command) -> Option<&[u8]> {
        match command {
            Command::Get(get) => Some(&get.key),
            _ => None,
        }
    }

    fn gatherable_put(&self, command: Command) -> Result<Mutation, Command> {
        match command {
            Command::Put(put)
                if self.cluster.is_none() && self.db.check_put(&put.key, &put.value).is_ok() =>
            {
                Ok(Mutation {
                    expire_at_ms: dispatch::expire_at(&self.db, put.expire_at_ms, put.ttl_ms),
                    key: put.key,
                    value: Some(put.value),
                })
            }
            command => Err(command),
        }
    }

    fn write_puts(&self, batch: WriteBatch) -> LocalBoxFuture<'static, Reply> {
        dispatch::done(self.db.write(batch))
    }

    fn encode(&mut self, id: u64, reply: Reply, out: &mut BytesMut) -> std::io::Result<()> {
        let response = Response {
            id,
            reply: Some(reply),
        };
        self.encoder.encode(response, out)
    }

    fn read_error(&mut self, e: &std::io::Error) -> Option<(u64, Reply)> {
        if is_frame_too_large(e) {
            let message = if self.gate.is_open() {
                format!(
                    "{e}: a frame may be at most {} bytes (run_server --max-frame-bytes)",
                    self.max_frame_bytes
                )
            } else {
                format!(
                    "{e}: before Auth a frame may be at most {} bytes",
                    self.max_frame_bytes.min(PRE_AUTH_MAX_FRAME_BYTES)
                )
            };
            return Some((0, dispatch::error(ErrorCode::FrameTooLarge, message)));
        }
        if e.kind() == std::io::ErrorKind::TimedOut {
            log::debug!("closing a connection: {e}");
        } else {
            log::debug!("connection read error: {e}");
        }
        None
    }

    fn authenticated(&self) -> bool {
        self.gate.is_open()
    }

    fn raise_limits(&self, decoder: &mut Codec) {
        decoder.set_max_frame_bytes(self.max_frame_bytes);
    }

    fn lower_limits(&self, decoder: &mut Codec) {
        decoder.set_max_frame_bytes(self.max_frame_bytes.min(PRE_AUTH_MAX_FRAME_BYTES));
    }

    fn may_change_authentication(frame: &Frame<Request>) -> bool {
        matches!(
            frame,
            Frame::Message(Request {
                command: Some(Command::Auth(_)),
                ..
            })
        )
    }
}

/// The keys `command` reads or writes, for the connection's ordering rule.
fn footprint_of(command: &Command) -> Footprint {
    match command {
        Command::Get(get) => Footprint::Key(get.key.clone()),
        Command::Put(put) => Footprint::Key(put.key.clone()),
        Command::Delete(delete) => Footprint::Key(delete.key.clone()),
        Command::Expire(expire) => Footprint::Key(expire.key.clone()),
        Command::Persist(persist) => Footprint::Key(persist.key.clone()),
        Command::Ttl(ttl) => Footprint::Key(ttl.key.clone()),
        Command::Scan(scan) => {
            let end = (!scan.end.is_empty()).then(|| scan.end.clone());
            Footprint::Range(scan.start.clone(), end)
        }
        Command::Batch(batch) => Footprint::Keys(
            batch
                .mutations
                .iter()
                .map(|mutation| match &mutation.op {
                    Some(MutationOp::Put(put)) => put.key.clone(),
                    Some(MutationOp::Delete(delete)) => delete.key.clone(),
                    None => bytes::Bytes::new(),
                })
                .collect(),
        ),
        Command::Ping(_) | Command::Auth(_) => Footprint::Nothing,
        // Counters of the whole database; a checkpoint holds every write;
        // a membership change or status waits for the writes before it.
        Command::Stats(_) | Command::Checkpoint(_) | Command::Cluster(_) => Footprint::All,
    }
}

/// The key of a `Get` request.
fn get_key(frame: &Frame<Request>) -> Option<&Bytes> {
    match frame {
        Frame::Message(Request {
            command: Some(Command::Get(get)),
            ..
        }) => Some(&get.key),
        _ => None,
    }
}
