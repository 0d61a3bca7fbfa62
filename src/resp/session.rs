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

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;
use tokio::net::TcpStream;

use super::auth::{self, Gated};
use super::cluster_writes::ConnectionWrites;
use super::codec::{Limits, RespCodec, protocol_error};
use super::command_stats::CommandStats;
use super::commands::transaction::{self, Step, Transaction};
use super::commands::watched::WatchedKeys;
use super::commands::{self, Connection, Engine, Op, Parsed, engine_error};
use super::database::{Database, prefix_end};
use super::reply::{Protocol, Reply};
use super::store::StoreError;
use crate::engine::Mutation;
use crate::server::auth::{AuthGate, AuthToken};
use crate::server::connections::ConnectionGuard;
use crate::server::pipeline::{self, Accepted, Access, Footprint, PipelineConfig};
use crate::{Db, WriteBatch};

/// Most keys one prefetch asks for (an MGET may name thousands: the
/// first ones' lines would be evicted before their gets ran).
const MOST_PREFETCHED_KEYS: usize = 64;

/// A request for the engine.
#[derive(Debug)]
pub struct Request {
    op: Op,
    /// Served by a cluster node: SET and MSET go through the connection's
    /// [`ConnectionWrites`]; other writes wait for every earlier write (see
    /// [`Session`]'s `footprint`).
    cluster: bool,
}

/// What a reply needs from its request: the protocol the connection spoke
/// when it arrived, and the command it was (its index in the command
/// table, for `INFO commandstats`).
#[derive(Debug, Clone, Copy)]
pub struct Tag {
    protocol: Protocol,
    command: Option<usize>,
    /// An EXEC whose reply settles `Session::pending_state`.
    settles_state: bool,
}

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
    /// The state an EXEC in flight leaves the connection in if it runs
    /// (not if a watched key changed); reading waits until it answers.
    pending_state: Option<Connection>,
    /// On a cluster node: the writer of this connection's SETs and MSETs.
    writes: Option<ConnectionWrites>,
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
        let writes = params.engine.store.connection_writes();
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
            pending_state: None,
            writes,
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

impl Session {
    /// Routes one request: an answer now, or a request for the engine.
    fn route(&mut self, args: Vec<Bytes>) -> Routed {
        let protocol = self.connection.protocol;
        match auth::check(&args, &mut self.gate, self.auth_configured) {
            Gated::Pass => {}
            Gated::Answer(reply) => return Routed::Answer(protocol, reply),
            Gated::AnswerAndClose(reply) => return Routed::AnswerAndClose(protocol, reply),
        }
        let parsed = match transaction::step(
            args,
            &mut self.transaction,
            &mut self.connection,
            &self.engine.connection_limits,
        ) {
            Step::Pass(parsed) => parsed,
            Step::Answer(reply) => return Routed::Answer(protocol, reply),
            Step::Exec(ops, watched, pending) => {
                self.pending_state = pending;
                Parsed::Engine(Op::Exec(ops, watched))
            }
        };
        // HELLO answers in the protocol it switches to.
        let protocol = self.connection.protocol;
        match parsed {
            Parsed::Reply(reply) => Routed::Answer(protocol, reply),
            Parsed::Quit => Routed::AnswerAndClose(protocol, Reply::ok()),
            Parsed::Engine(op) => Routed::Engine(protocol, op),
        }
    }

    /// Counts a request answered without the engine.
    fn count_answer(&self, command: Option<usize>, reply: &Reply) {
        let stats = &self.engine.commands;
        match (command, reply) {
            (Some(i), Reply::Error(e)) if e.starts_with("ERR wrong number of arguments") => {
                stats.record_rejected(i, e);
            }
            (Some(i), reply) => stats.record(i, Duration::ZERO, error_text(reply)),
            (None, Reply::Error(e)) => stats.record_error(e),
            (None, _) => {}
        }
    }
}

/// Where a request goes: [`Accepted`] before the command is attached.
enum Routed {
    Answer(Protocol, Reply),
    AnswerAndClose(Protocol, Reply),
    Engine(Protocol, Op),
}

/// The keys `op` reads or writes (engine keys: mapped into the database
/// when parsed), for the connection's ordering rule.
fn footprint_of(op: &Op) -> Footprint {
    match op {
        Op::Get(key)
        | Op::Set(key, _)
        | Op::Strlen(key)
        | Op::GetRange(key, ..)
        | Op::Bits(key, _)
        | Op::Type(key)
        | Op::Ttl(key, _) => Footprint::Key(key.clone()),
        Op::MGet(keys) | Op::Exists(keys) | Op::Del(keys) => Footprint::Keys(keys.clone()),
        Op::MSet(pairs) => Footprint::Keys(pairs.iter().map(|(key, _)| key.clone()).collect()),
        Op::Lcs(a, b, _) => Footprint::Keys(vec![a.clone(), b.clone()]),
        Op::Rmw(rmw) => Footprint::Keys(rmw.keys()),
        Op::DbSize(database)
        | Op::RandomKey(database)
        | Op::Keys(database, _)
        | Op::Scan(database, _)
        | Op::Flush {
            all: false,
            database,
        } => database_range(*database),
        Op::Ready(_) | Op::ResetStats | Op::Role => Footprint::Nothing,
        // FLUSHALL, INFO's key counts, checkpoints, transactions, and the
        // point WATCH records: everything.
        Op::Flush { all: true, .. }
        | Op::Info(_)
        | Op::Persistence(_)
        | Op::Exec(..)
        | Op::WatchPoint(_) => Footprint::All,
    }
}

/// Every engine key of `database` (database 0's range is the whole key
/// space: a superset is safe).
fn database_range(database: Database) -> Footprint {
    let prefix = database.prefix();
    let end = prefix_end(&prefix);
    Footprint::Range(prefix, end)
}

/// Counts `reply` to `command` (its index in the command table, if it
/// has one), answered `elapsed` after it was called, for `INFO
/// commandstats` and `errorstats`.
fn record(stats: &CommandStats, command: Option<usize>, elapsed: Duration, reply: &Reply) {
    match command {
        Some(i) => stats.record(i, elapsed, error_text(reply)),
        None => {
            if let Reply::Error(e) = reply {
                stats.record_error(e);
            }
        }
    }
}

/// A GET's reply (a key too long to store is absent, as in Redis).
fn get_reply(read: crate::Result<Option<Bytes>>) -> Reply {
    commands::absent_if_too_large(read).map_or_else(|e| engine_error(&e), Reply::value)
}

/// The key of `GET key`.
fn plain_get(args: &[Bytes]) -> Option<&[u8]> {
    match args {
        [name, key] if name.eq_ignore_ascii_case(b"GET") => Some(key),
        _ => None,
    }
}

/// The text of an error reply.
fn error_text(reply: &Reply) -> Option<&str> {
    match reply {
        Reply::Error(e) => Some(e),
        _ => None,
    }
}

/// Runs `op` on a cluster node: SET and MSET go to the connection's
/// writer; a request that reads waits for the read barrier first (the
/// counter's read-modify-writes and EXEC pass it themselves, per round),
/// then runs as on one engine, its writes going through the
/// [`Store`](super::store::Store).
fn on_cluster(
    op: Op,
    engine: &Engine,
    writes: Option<&ConnectionWrites>,
) -> LocalBoxFuture<'static, Reply> {
    let op = match (op, writes) {
        (Op::Set(key, value), Some(writes)) => return written(writes.put(vec![(key, value)])),
        (Op::MSet(pairs), Some(writes)) => return written(writes.put(pairs)),
        (op, _) => op,
    };
    // ROLE reads only the node's Raft figures. INFO describes this node as
    // it is, as Redis's does on a replica: it must answer during an outage,
    // when an operator needs it most (it waited for a leader and answered
    // CLUSTERDOWN, an outside probe found).
    let unread = matches!(
        op,
        Op::Set(..) | Op::MSet(_) | Op::Rmw(_) | Op::Exec(..) | Op::Role | Op::Info(_)
    );
    let engine = engine.clone();
    async move {
        if !unread && let Err(e) = engine.store.barrier().await {
            return e.reply();
        }
        match op {
            Op::Get(key) => get_reply(engine.db().get(key).await),
            Op::MGet(keys) => {
                commands::strings::mget_within(keys, engine.db(), engine.largest_reply).await
            }
            op => commands::execute(op, &engine).await,
        }
    }
    .boxed_local()
}

/// `+OK` once `write` is committed, else its error.
fn written(
    write: LocalBoxFuture<'static, Result<(), StoreError>>,
) -> LocalBoxFuture<'static, Reply> {
    write
        .map(|outcome| outcome.map_or_else(|e| e.reply(), |()| Reply::ok()))
        .boxed_local()
}

impl pipeline::Protocol for Session {
    type Decoder = RespCodec;
    type Tag = Tag;
    type Op = Request;
    type Reply = Reply;

    fn accept(&mut self, args: Vec<Bytes>) -> Accepted<Self> {
        if args.is_empty() {
            return Accepted::Ignore;
        }
        let command = args
            .first()
            .and_then(|name| commands::table::position(name));
        let routed = self.route(args);
        if let Routed::Answer(_, reply) | Routed::AnswerAndClose(_, reply) = &routed {
            self.count_answer(command, reply);
        }
        let settles_state = self.pending_state.is_some();
        let tag = |protocol| Tag {
            protocol,
            command,
            settles_state,
        };
        match routed {
            Routed::Engine(protocol, op) => {
                let cluster = self.engine.store.cluster().is_some();
                Accepted::Engine(tag(protocol), Request { op, cluster })
            }
            Routed::Answer(protocol, reply) => Accepted::Answer(tag(protocol), reply),
            Routed::AnswerAndClose(protocol, reply) => {
                Accepted::AnswerAndClose(tag(protocol), reply)
            }
        }
    }

    fn access(request: &Request) -> Access {
        match request.op.access() {
            commands::Access::Read => Access::Read,
            // On a cluster node too: SET and MSET go to the connection's
            // writer, which proposes them in the order they are executed.
            commands::Access::Write => Access::Write,
            commands::Access::ReadWrite => Access::ReadWrite,
        }
    }

    fn footprint(request: &Request) -> Footprint {
        // On a cluster node a read-modify-write (DEL, FLUSHDB, INCR, EXEC)
        // proposes its own entry, not through the connection's writer: it
        // waits until every earlier write of the connection has committed,
        // whatever keys, so the connection's writes commit in the order
        // sent (later writes wait for its answer).
        if request.cluster && request.op.access() == commands::Access::ReadWrite {
            return Footprint::All;
        }
        footprint_of(&request.op)
    }

    fn command_index(request: &Request) -> usize {
        request.op.stats_index()
    }

    fn execute(&self, request: Request) -> LocalBoxFuture<'static, Reply> {
        if request.cluster {
            return on_cluster(request.op, &self.engine, self.writes.as_ref());
        }
        let db = self.engine.db_ref();
        // GET and SET, most of the traffic, go straight to the engine: one
        // boxed future per request, no key or write vectors (the general
        // path, `commands::execute`, reads and writes through `KeyOp`s).
        match request.op {
            Op::Get(key) => db.get(key).map(get_reply).boxed_local(),
            Op::Set(key, value) => db
                .put(key, value)
                .map(|write| write.map_or_else(|e| engine_error(&e), |()| Reply::ok()))
                .boxed_local(),
            Op::MGet(keys) => {
                let largest = self.engine.largest_reply;
                commands::strings::mget_within(keys, Db::clone(&db), largest).boxed_local()
            }
            op => commands::execute(op, &self.engine),
        }
    }

    /// GETs' and MGETs' keys in database 0 (a hint: another database's
    /// keys would need a copy each).
    fn prefetch(&self, requests: &mut dyn Iterator<Item = &Vec<Bytes>>) {
        if !self.connection.database.prefix().is_empty() {
            return;
        }
        let mut keys: Vec<&[u8]> = Vec::new();
        for args in requests {
            match args.split_first() {
                Some((name, [key])) if name.eq_ignore_ascii_case(b"GET") => keys.push(key),
                Some((name, many)) if name.eq_ignore_ascii_case(b"MGET") => {
                    let room = MOST_PREFETCHED_KEYS.saturating_sub(keys.len());
                    keys.extend(many.iter().take(room).map(|key| &key[..]));
                }
                _ => {}
            }
        }
        if keys.len() > 1 {
            self.engine.store.db_ref().prefetch_gets(&keys);
        }
    }

    /// The leading plain GETs in database 0, outside a transaction and a
    /// cluster, read together ([`Db::get_many_now`]); the rest prefetched.
    fn answer_early(
        &self,
        requests: &mut dyn Iterator<Item = &Vec<Bytes>>,
        replies: &mut VecDeque<(Bytes, Reply)>,
    ) {
        let requests: Vec<&Vec<Bytes>> = requests.collect();
        let eligible = self.connection.database.prefix().is_empty()
            && self.transaction.is_none()
            && self.pending_state.is_none()
            && self.engine.store.cluster().is_none();
        let leading = match eligible {
            true => requests
                .iter()
                .take_while(|args| plain_get(args).is_some())
                .count(),
            false => 0,
        };
        let (gets, rest) = requests.split_at(leading);
        if rest.len() > 1 {
            self.prefetch(&mut rest.iter().copied());
        }
        let keys: Vec<&[u8]> = gets.iter().filter_map(|args| plain_get(args)).collect();
        if keys.is_empty() {
            return;
        }
        let db = self.engine.store.db_ref();
        db.get_many_now(&keys, |at, answer| {
            let Ok(value) = answer else { return };
            let small = value
                .as_ref()
                .is_none_or(|v| v.len() <= pipeline::EARLY_VALUE_BYTES);
            if let (true, Some(key)) = (small, gets.get(at).and_then(|args| args.get(1))) {
                replies.push_back((key.clone(), get_reply(Ok(value))));
            }
        });
    }

    fn early_key(request: &Request) -> Option<&[u8]> {
        match &request.op {
            Op::Get(key) if !request.cluster => Some(key),
            _ => None,
        }
    }

    fn gatherable_put(&self, request: Request) -> Result<Mutation, Request> {
        match request.op {
            Op::Set(key, value)
                if !request.cluster && self.engine.db_ref().check_put(&key, &value).is_ok() =>
            {
                Ok(Mutation::new(key, Some(value)))
            }
            op => Err(Request { op, ..request }),
        }
    }

    fn write_puts(&self, batch: WriteBatch) -> LocalBoxFuture<'static, Reply> {
        self.engine
            .db_ref()
            .write(batch)
            .map(|write| write.map_or_else(|e| engine_error(&e), |()| Reply::ok()))
            .boxed_local()
    }

    fn answered(&self, tag: Tag, reply: &Reply, elapsed: Duration) {
        record(&self.engine.commands, tag.command, elapsed, reply);
    }

    fn encode(&mut self, tag: Tag, reply: Reply, out: &mut BytesMut) -> std::io::Result<()> {
        if tag.settles_state
            && let Some(state) = self.pending_state.take()
            && matches!(reply, Reply::Array(_))
        {
            self.connection = Connection {
                watched: WatchedKeys::default(),
                ..state
            };
        }
        reply.encode(tag.protocol, out);
        Ok(())
    }

    fn holds_reading(&self) -> bool {
        self.pending_state.is_some()
    }

    fn read_error(&mut self, e: &std::io::Error) -> Option<(Tag, Reply)> {
        if let Some(error) = protocol_error(e) {
            log::debug!("closing a RESP connection: {error}");
            let tag = Tag {
                protocol: self.connection.protocol,
                command: None,
                settles_state: false,
            };
            return Some((tag, Reply::err(error)));
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

    fn lower_limits(&self, decoder: &mut RespCodec) {
        decoder.set_limits(self.limits.pre_auth());
    }

    /// AUTH, and HELLO (which may carry AUTH).
    fn may_change_authentication(args: &Vec<Bytes>) -> bool {
        args.first().is_some_and(|name| {
            name.eq_ignore_ascii_case(b"auth") || name.eq_ignore_ascii_case(b"hello")
        })
    }
}
