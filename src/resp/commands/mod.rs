//! Commands: an argument list to a [`Parsed`] request, and an engine
//! request to a future of its reply. Parsing is pure; only [`execute`]
//! touches the database.
//!
//! - [`table`]: the command table (arity, flags) behind arity checks and
//!   `COMMAND`.
//! - [`strings`]: GET, SET, MGET, MSET, SETNX, INCR family, APPEND, STRLEN,
//!   and the read-modify-write operations the [`Counter`] applies.
//! - [`keys`]: DEL, EXISTS, DBSIZE, SCAN, KEYS, FLUSHDB, FLUSHALL, MOVE.
//! - [`expire`]: EXPIRE family, PERSIST, GETEX, SETEX, PSETEX, TTL family,
//!   and SET's expiry options.
//! - [`persistence`]: SAVE, BGSAVE, LASTSAVE (checkpoints).
//! - [`role`]: ROLE, from the cluster's figures.
//! - [`server`]: PING, ECHO, SELECT, QUIT, HELLO, CLIENT, COMMAND, CONFIG,
//!   INFO.
//! - [`transaction`]: MULTI, EXEC, DISCARD, WATCH, UNWATCH; [`watched`]:
//!   the keys a connection watches, deduplicated and bounded.

pub mod bits;
pub mod expire;
pub mod info;
pub mod keyop;
pub mod keys;
pub mod lcs;
pub mod persistence;
pub mod rmw;
pub mod role;
pub mod server;
pub mod strings;
pub mod table;
pub mod transaction;
pub mod watched;

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;

use super::command_stats::CommandStats;
use super::counter::Counter;
use super::cursors::Cursors;
use super::database::Database;
use super::reply::{Protocol, Reply};
use super::store::Store;
use crate::Db;
use crate::server::log_limit::{LogLimiter, held_back_suffix};
use crate::server::request_stats::RequestStats;
use watched::WatchedKeys;

/// What a connection remembers between commands.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// `CLIENT ID` and `HELLO`'s `id`.
    pub id: u64,
    /// Set by `HELLO`.
    pub protocol: Protocol,
    /// Set by `CLIENT SETNAME` or `HELLO ... SETNAME`.
    pub name: Option<Bytes>,
    /// Keys watched (WATCH) until EXEC, DISCARD or UNWATCH, each with the
    /// point its WATCH recorded (see [`Op::WatchPoint`]).
    pub watched: WatchedKeys,
    /// Set by `SELECT`; keys are mapped into it when parsed.
    pub database: Database,
}

/// What a connection may hold between its requests (docs/PROTOCOL.md,
/// "Limits"); one per server.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Bytes of commands MULTI may queue (see `transaction.rs`): the
    /// largest request, `--max-frame-bytes`.
    pub max_queued_bytes: usize,
    /// The engine's key limit: WATCH refuses a longer key.
    pub max_key_bytes: usize,
}

/// Where a WATCH ran: set when the WATCH request runs (after every earlier
/// write of the connection is acknowledged), read when EXEC runs. Requests
/// of one connection run on its thread in arrival order, so EXEC reads it
/// after it is set.
pub type WatchPoint = std::rc::Rc<std::cell::Cell<WatchMark>>;

/// What a WATCH records for one key: the sequence number the database had
/// applied, and when the key's value expired as WATCH read it (0: never,
/// or no value). A watched key changed if it has a newer version, or if
/// that expiry has passed (as in Redis, a key that expires while watched
/// counts as changed; one already expired when watched does not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchMark {
    pub seq: u64,
    pub expire_at_ms: u64,
}

/// What the server knows about itself, for `INFO`.
#[derive(Debug)]
pub struct ServerInfo {
    pub started: Instant,
    pub port: u16,
}

/// What engine requests run against; one per server, cloned per session.
#[derive(Clone)]
pub struct Engine {
    /// Where reads and writes go (one engine, or a cluster node).
    pub store: Store,
    /// Owns every read-modify-write, one at a time.
    pub counter: Addr<Counter>,
    pub info: Arc<ServerInfo>,
    /// SCAN's cursor table, shared by all connections.
    pub cursors: Cursors,
    /// `INFO commandstats` and `errorstats`.
    pub commands: Arc<CommandStats>,
    /// The listener's request statistics (open connections).
    pub requests: Arc<RequestStats>,
    /// Where SAVE and BGSAVE write checkpoints.
    pub checkpoints: Arc<crate::server::checkpoints::CheckpointRoot>,
    /// How many databases `SELECT` can pick.
    pub databases: u32,
    /// The largest reply MGET, KEYS and EXEC may build (the largest value
    /// or the connection's byte budget, whichever is larger); past it they
    /// answer [`reply_too_large`] (docs/PROTOCOL.md, "Limits").
    pub largest_reply: usize,
    /// What a connection may hold between requests.
    pub connection_limits: ConnectionLimits,
}

impl Engine {
    /// The engine to read now (on a cluster, after [`Store::barrier`]).
    pub fn db(&self) -> Db {
        self.store.db()
    }

    /// As [`Engine::db`], borrowed when there is one engine (see
    /// [`Store::db_ref`]): the per-request path takes no handle.
    pub fn db_ref(&self) -> std::borrow::Cow<'_, Db> {
        self.store.db_ref()
    }
}

/// A parsed request.
#[derive(Debug)]
pub enum Parsed {
    /// Answered without the engine (errors, PING, HELLO, CLIENT ...).
    Reply(Reply),
    /// `QUIT`: answer `+OK` and close.
    Quit,
    /// Needs the database.
    Engine(Op),
}

/// A request for the database.
#[derive(Debug)]
pub enum Op {
    Get(Bytes),
    Set(Bytes, Bytes),
    MGet(Vec<Bytes>),
    MSet(Vec<(Bytes, Bytes)>),
    Exists(Vec<Bytes>),
    Strlen(Bytes),
    Del(Vec<Bytes>),
    GetRange(Bytes, i64, i64),
    /// GETBIT, BITCOUNT, BITPOS.
    Bits(Bytes, bits::BitRead),
    Lcs(Bytes, Bytes, lcs::LcsOptions),
    Rmw(strings::Rmw),
    DbSize(Database),
    /// FLUSHDB (`all` false) or FLUSHALL: range deletes.
    Flush {
        all: bool,
        database: Database,
    },
    Type(Bytes),
    RandomKey(Database),
    Scan(Database, keys::Scan),
    Keys(Database, Bytes),
    /// TTL, PTTL, EXPIRETIME, PEXPIRETIME.
    Ttl(Bytes, expire::TtlReply),
    Info(Vec<String>),
    /// SAVE, BGSAVE, LASTSAVE.
    Persistence(persistence::Persistence),
    /// A reply known when the request was queued (PING inside MULTI).
    Ready(Reply),
    /// EXEC: the queued requests, and the keys watched.
    Exec(Vec<Op>, Vec<(Bytes, WatchPoint)>),
    /// WATCH: record where each key is watched from.
    WatchPoint(Vec<(Bytes, WatchPoint)>),
    /// CONFIG RESETSTAT.
    ResetStats,
    /// ROLE: this node's replication role, from the cluster's figures.
    Role,
}

/// The engine requests counted in `/metrics`, as [`Op::stats_index`]
/// numbers them.
pub const STATS_NAMES: &[&str] = &[
    "get", "set", "mget", "mset", "exists", "strlen", "del", "rmw", "dbsize", "flushall", "scan",
    "keys", "info", "getrange", "bits", "exec", "other",
];

/// How a request relates to the others on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Observes: waits until every earlier write is acknowledged.
    Read,
    /// Changes: sent at once, in arrival order, unless an earlier request
    /// is held or an earlier read-modify-write is unanswered.
    Write,
    /// Both: waits for every earlier write, and later writes wait for it.
    ReadWrite,
}

impl Op {
    /// Which of [`STATS_NAMES`] this request is.
    pub fn stats_index(&self) -> usize {
        match self {
            Op::Get(_) => 0,
            Op::Set(..) => 1,
            Op::MGet(_) => 2,
            Op::MSet(_) => 3,
            Op::Exists(_) => 4,
            Op::Strlen(_) => 5,
            Op::Del(_) => 6,
            Op::Rmw(_) => 7,
            Op::DbSize(_) => 8,
            Op::Flush { .. } => 9,
            Op::Scan(..) => 10,
            Op::Keys(..) => 11,
            Op::Info(_) => 12,
            Op::GetRange(..) => 13,
            Op::Bits(..) => 14,
            Op::Exec(..) => 15,
            Op::Ready(_)
            | Op::Lcs(..)
            | Op::Type(_)
            | Op::RandomKey(_)
            | Op::WatchPoint(_)
            | Op::ResetStats
            | Op::Role
            | Op::Ttl(..)
            | Op::Persistence(_) => 16,
        }
    }

    /// The access kind of this request.
    pub fn access(&self) -> Access {
        match self {
            Op::Set(..) | Op::MSet(_) => Access::Write,
            Op::Del(_) | Op::Rmw(_) | Op::Flush { .. } => Access::ReadWrite,
            Op::Get(_)
            | Op::GetRange(..)
            | Op::Bits(..)
            | Op::Lcs(..)
            | Op::MGet(_)
            | Op::Exists(_)
            | Op::Strlen(_)
            | Op::DbSize(_)
            | Op::Scan(..)
            | Op::Keys(..)
            | Op::Info(_)
            | Op::Type(_)
            | Op::RandomKey(_)
            | Op::WatchPoint(_)
            | Op::ResetStats
            | Op::Role
            | Op::Ttl(..)
            | Op::Ready(_) => Access::Read,
            // A checkpoint holds the connection's earlier writes.
            Op::Persistence(_) => Access::Read,
            Op::Exec(..) => Access::ReadWrite,
        }
    }
}

/// Parses one request; connection commands (HELLO, CLIENT SETNAME) update
/// `connection`.
pub fn parse(args: Vec<Bytes>, connection: &mut Connection) -> Parsed {
    let Some(first) = args.first() else {
        return Parsed::Reply(Reply::ok());
    };
    let Some(spec) = table::find_ignoring_case(first) else {
        return Parsed::Reply(unknown_command(&args));
    };
    if !spec.arity_ok(args.len()) {
        return Parsed::Reply(wrong_arity(spec.name));
    }
    let mut args = match connection.database.map_args(spec, args) {
        Ok(args) => args,
        Err(reply) => return Parsed::Reply(reply),
    };
    // Most of the traffic: the key and value move out of the argument list
    // (no reference-count traffic for copies).
    match (spec.name, args.len()) {
        ("get", 2) => {
            if let Some(key) = args.pop() {
                return Parsed::Engine(Op::Get(key));
            }
        }
        ("set", 3) => {
            if let (Some(value), Some(key)) = (args.pop(), args.pop()) {
                return Parsed::Engine(Op::Set(key, value));
            }
        }
        _ => {}
    }
    let rest = &args[1..];
    match strings::parse(spec.name, rest).or_else(|| expire::parse(spec.name, rest)) {
        Some(parsed) => parsed,
        None => keys::parse(spec.name, rest, connection.database)
            .or_else(|| persistence::parse(spec.name, rest))
            .unwrap_or_else(|| server::parse(spec.name, rest, connection)),
    }
}

/// Runs an engine request; the reply future is `'static` and the request is
/// enqueued before this returns (writes keep their order).
pub fn execute(op: Op, engine: &Engine) -> LocalBoxFuture<'static, Reply> {
    match op {
        Op::Info(sections) => info::info(engine, sections),
        Op::Role => {
            let status = engine.store.cluster().map(|node| node.status());
            futures_util::future::ready(role::reply(status.as_ref())).boxed_local()
        }
        Op::Ready(reply) => futures_util::future::ready(reply).boxed_local(),
        Op::Exec(ops, watched) => transaction::exec(ops, watched, engine.clone()),
        Op::ResetStats => {
            engine.commands.reset();
            futures_util::future::ready(Reply::ok()).boxed_local()
        }
        Op::WatchPoint(keys) => transaction::watch(keys, &engine.db()),
        Op::Ttl(key, kind) => expire::execute_ttl(&engine.db(), key, kind),
        Op::Persistence(command) => persistence::execute(command, engine),
        Op::Del(_)
        | Op::Exists(_)
        | Op::DbSize(_)
        | Op::Flush { .. }
        | Op::Type(_)
        | Op::RandomKey(_)
        | Op::Scan(..)
        | Op::Keys(..) => keys::execute(op, &engine.store, &engine.cursors, engine.largest_reply),
        other => strings::execute(other, engine),
    }
}

/// `ERR unknown command 'foo', with args beginning with: 'a' 'b' `, as
/// Redis 7 words it (each argument cut to fit 128 bytes in all).
pub fn unknown_command(args: &[Bytes]) -> Reply {
    let name = clip(args.first().map_or(&b""[..], |a| a), 128);
    let mut listed = String::new();
    for arg in args.iter().skip(1) {
        if listed.len() >= 128 {
            break;
        }
        listed.push_str(&format!("'{}' ", clip(arg, 128 - listed.len())));
    }
    Reply::err(format!(
        "unknown command '{name}', with args beginning with: {listed}"
    ))
}

/// `ERR wrong number of arguments for 'get' command`.
pub fn wrong_arity(name: &str) -> Reply {
    Reply::err(format!("wrong number of arguments for '{name}' command"))
}

/// The refusal of a `command` whose reply would pass `max_reply_bytes`:
/// `-ERR KEYS reply exceeds N bytes (the server's largest reply); <advice>`.
pub fn reply_too_large(command: &str, max_reply_bytes: usize, advice: &str) -> Reply {
    Reply::err(format!(
        "{command} reply exceeds {max_reply_bytes} bytes (the server's largest reply); {advice}"
    ))
}

/// `ERR syntax error`.
pub fn syntax_error() -> Reply {
    Reply::err("syntax error")
}

/// `ERR value is not an integer or out of range`.
pub fn not_an_integer() -> Reply {
    Reply::err("value is not an integer or out of range")
}

/// Limits the lines of replied I/O errors: on a full disk every write gets one.
static IO_ERRORS_LOGGED: LogLimiter = LogLimiter::new();
/// The same for writes refused by a poisoned database (its own line).
static REFUSALS_LOGGED: LogLimiter = LogLimiter::new();

/// An engine error as a reply: `ERR ` and the engine's message.
pub fn engine_error(error: &crate::Error) -> Reply {
    match error {
        crate::Error::Corruption { .. } => {
            log::error!("a read hit corruption, replied an error to a RESP client: {error}");
        }
        crate::Error::Io { .. } => {
            if let Some(held_back) = IO_ERRORS_LOGGED.admit() {
                let more = held_back_suffix(held_back);
                log::warn!("replied an I/O error to a RESP client: {error}{more}");
            }
        }
        crate::Error::Poisoned { .. } => {
            if let Some(held_back) = REFUSALS_LOGGED.admit() {
                let more = held_back_suffix(held_back);
                log::warn!("refused a write to a RESP client: {error}{more}");
            }
            // Redis's answer when it cannot write its append-only file.
            return Reply::Error(format!("MISCONF {}", error.client_message()));
        }
        _ => {}
    }
    // The client learns which file, not where the server keeps its data.
    Reply::err(error.client_message())
}

/// A read's value, with a key the engine cannot store (empty, or longer
/// than the limit) read as absent: nothing can be stored under it, and
/// Redis (whose keys have no such limits) answers nil or 0 for it, not an
/// error. Writes of such a key are still refused.
pub fn absent_if_too_large(read: crate::Result<Option<Bytes>>) -> crate::Result<Option<Bytes>> {
    match read {
        Err(e) if e.is_unstorable_key() => Ok(None),
        other => other,
    }
}

/// A signed integer argument, as Redis's `string2ll` reads it: no `+`,
/// no leading zero, and no `-0` (which does not print back as itself).
pub fn int_arg(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg)
        .ok()
        .filter(|s| {
            let digits = s.strip_prefix('-').unwrap_or(s);
            !digits.starts_with('+') && (*s == "0" || !digits.starts_with('0'))
        })
        .and_then(|s| s.parse().ok())
}

/// The first `max` bytes of `arg`, lossily as text.
fn clip(arg: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&arg[..arg.len().min(max)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_database_answers_writes_as_redis_does_a_failed_append_only_file() {
        let cause = Box::new(crate::Error::io(
            "syncing x.wal",
            std::io::Error::other("EIO"),
        ));
        let reply = engine_error(&crate::Error::Poisoned { cause });
        match reply {
            Reply::Error(message) => assert!(message.starts_with("MISCONF "), "{message}"),
            other => panic!("{other:?}"),
        }
        match engine_error(&crate::Error::Closed) {
            Reply::Error(message) => assert!(message.starts_with("ERR "), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn error_of(list: &[&str]) -> String {
        match parse(args(list), &mut Connection::default()) {
            Parsed::Reply(Reply::Error(e)) => e,
            other => format!("not an error: {other:?}"),
        }
    }

    #[test]
    fn unknown_and_arity_errors_are_worded_as_redis() {
        assert_eq!(
            error_of(&["foo", "a"]),
            "ERR unknown command 'foo', with args beginning with: 'a' "
        );
        assert_eq!(
            error_of(&["foo"]),
            "ERR unknown command 'foo', with args beginning with: "
        );
        assert_eq!(
            error_of(&["GET"]),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            error_of(&["mset", "a"]),
            "ERR wrong number of arguments for 'mset' command"
        );
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(int_arg(b"-12"), Some(-12));
        assert_eq!(int_arg(b"0"), Some(0));
        assert_eq!(int_arg(b"012"), None);
        assert_eq!(int_arg(b"+1"), None);
        assert_eq!(int_arg(b"1.5"), None);
        assert_eq!(int_arg(b"-0"), None);
        assert_eq!(int_arg(b"-012"), None);
        assert_eq!(int_arg(b"-+1"), None);
        assert_eq!(int_arg(b"-"), None);
        assert_eq!(int_arg(b"-10"), Some(-10));
    }
}
