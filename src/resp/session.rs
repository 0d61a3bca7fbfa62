//! RESP on a connection: the protocol's side of a
//! [`crate::server::pipeline::Connection`], which keeps the promises both
//! protocols share (reply order, strict per-connection order, the byte
//! budget, timeouts, pre-authentication limits; see
//! [`crate::server::pipeline`]). The session keeps only what is RESP:
//! - the request decoder, held to [`Limits::pre_auth`] until the client
//!   has authenticated (a declared 32 MiB bulk is refused from its header,
//!   not reserved);
//! - AUTH and `-NOAUTH` ([`super::auth`]), then the command table
//!   ([`super::commands`]);
//! - each reply is written in the protocol the connection spoke when its
//!   request arrived (HELLO switches it);
//! - malformed input is answered `-ERR Protocol error: ...` and the
//!   connection closed; QUIT is answered `+OK` and the connection closed.

use bytes::{Bytes, BytesMut};
use futures_util::future::LocalBoxFuture;
use tokio::net::TcpStream;

use super::auth::{self, Gated};
use super::codec::{Limits, RespCodec, protocol_error};
use super::commands::transaction::{self, Step, Transaction};
use super::commands::{self, Connection, Engine, Op, Parsed};
use super::database::Database;
use super::reply::{Protocol, Reply};
use crate::server::auth::{AuthGate, AuthToken};
use crate::server::connections::ConnectionGuard;
use crate::server::pipeline::{self, Accepted, Access, PipelineConfig};

/// How a session is set up; one per server, cloned into each session.
#[derive(Clone)]
pub(crate) struct SessionParams {
    pub engine: Engine,
    pub limits: Limits,
    /// The token AUTH must present, if the server has one.
    pub auth_token: Option<AuthToken>,
    pub pipeline: PipelineConfig,
}

/// RESP's state on one connection.
pub struct Session {
    engine: Engine,
    connection: Connection,
    /// Whether this connection has authenticated (open if no token is set).
    gate: AuthGate,
    /// The server has a token: AUTH checks against it.
    auth_configured: bool,
    /// The decoder's limits once authenticated.
    limits: Limits,
    /// Open after MULTI, until EXEC or DISCARD.
    transaction: Option<Transaction>,
}

impl Session {
    /// Starts serving `stream` on the current arbiter.
    pub(crate) fn start(stream: TcpStream, id: u64, params: SessionParams, guard: ConnectionGuard) {
        let gate = AuthGate::new(params.auth_token.clone());
        let first_limits = if gate.is_open() {
            params.limits
        } else {
            params.limits.pre_auth()
        };
        let databases = params.engine.databases;
        let session = Session {
            engine: params.engine,
            connection: Connection {
                id,
                database: Database::first_of(databases),
                ..Connection::default()
            },
            auth_configured: params.auth_token.is_some(),
            gate,
            limits: params.limits,
            transaction: None,
        };
        pipeline::start(
            stream,
            session,
            RespCodec::new(first_limits),
            &params.pipeline,
            guard,
        );
    }
}

impl pipeline::Protocol for Session {
    type Decoder = RespCodec;
    /// The protocol the connection spoke when the request arrived.
    type Tag = Protocol;
    type Op = Op;
    type Reply = Reply;

    fn accept(&mut self, args: Vec<Bytes>) -> Accepted<Self> {
        let protocol = self.connection.protocol;
        match auth::check(&args, &mut self.gate, self.auth_configured) {
            Gated::Pass => {}
            Gated::Answer(reply) => return Accepted::Answer(protocol, reply),
            Gated::AnswerAndClose(reply) => return Accepted::AnswerAndClose(protocol, reply),
        }
        let parsed = match transaction::step(args, &mut self.transaction, &mut self.connection) {
            Step::Pass(parsed) => parsed,
            Step::Answer(reply) => return Accepted::Answer(protocol, reply),
            Step::Exec(ops) => Parsed::Engine(Op::Exec(ops)),
        };
        // HELLO answers in the protocol it switches to.
        let protocol = self.connection.protocol;
        match parsed {
            Parsed::Reply(reply) => Accepted::Answer(protocol, reply),
            Parsed::Quit => Accepted::AnswerAndClose(protocol, Reply::ok()),
            Parsed::Engine(op) => Accepted::Engine(protocol, op),
        }
    }

    fn access(op: &Op) -> Access {
        match op.access() {
            commands::Access::Read => Access::Read,
            commands::Access::Write => Access::Write,
            commands::Access::ReadWrite => Access::ReadWrite,
        }
    }

    fn command_index(op: &Op) -> usize {
        op.stats_index()
    }

    fn execute(&self, op: Op) -> LocalBoxFuture<'static, Reply> {
        commands::execute(op, &self.engine)
    }

    fn encode(
        &mut self,
        protocol: Protocol,
        reply: Reply,
        out: &mut BytesMut,
    ) -> std::io::Result<()> {
        reply.encode(protocol, out);
        Ok(())
    }

    fn read_error(&mut self, e: &std::io::Error) -> Option<(Protocol, Reply)> {
        if let Some(error) = protocol_error(e) {
            log::debug!("closing a RESP connection: {error}");
            return Some((self.connection.protocol, Reply::err(error)));
        }
        if e.kind() == std::io::ErrorKind::TimedOut {
            log::debug!("closing a RESP connection: {e}");
        } else {
            log::debug!("RESP connection read error: {e}");
        }
        None
    }

    fn authenticated(&self) -> bool {
        self.gate.is_open()
    }

    fn raise_limits(&self, decoder: &mut RespCodec) {
        decoder.set_limits(self.limits);
    }
}
