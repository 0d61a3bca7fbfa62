//! MULTI, EXEC, DISCARD, WATCH and UNWATCH.
//!
//! After MULTI a connection's commands are checked and queued, each
//! answered `+QUEUED`. As in Redis, only an unknown command or subcommand,
//! a wrong number of arguments, or a command not allowed in a transaction
//! (SAVE, SHUTDOWN) is refused at once and makes EXEC answer
//! `-EXECABORT`; any other error (a syntax error, a bad `CONFIG SET`) is
//! queued and is that command's reply in EXEC's array. DISCARD drops the
//! queue.
//!
//! Commands that change the connection (SELECT, CLIENT SETNAME, HELLO) are
//! queued against a copy of it, so later commands of the transaction see
//! their effect (a key after `SELECT 1` is in database 1); the copy becomes
//! the connection's state when EXEC runs, and is dropped by DISCARD, an
//! aborted EXEC, or an EXEC that answers nil because a watched key changed.
//! Since the requests after an EXEC are parsed against the connection's
//! state, an EXEC that both watches keys and changes the state holds the
//! connection's reading until it has answered ([`Step::Exec`]'s pending
//! state, applied by the session when the reply comes).
//!
//! QUIT inside MULTI is not queued: as in Redis 7.0, it answers `+OK` and
//! closes the connection. MULTI, EXEC, DISCARD and UNWATCH take no
//! arguments; with some, inside MULTI, they are refused and abort the
//! transaction (EXEC then answers `-EXECABORT` at once).
//!
//! EXEC of key commands (GET, SET, DEL, INCR ... every
//! [`KeyOp`]) goes to the counter as one unit: the
//! commands run in order, each seeing the ones before, no other
//! connection's write lands between them, and their writes are one atomic
//! batch (see `counter.rs`). WATCH records, per key, the sequence number the
//! database had applied; EXEC answers a null array and runs nothing if a
//! watched key has a newer version (any write, even of the same value, or
//! a write of this connection after WATCH). EXEC, DISCARD and UNWATCH
//! forget the watched keys.
//!
//! A connection queues at most [`ConnectionLimits::max_queued_bytes`] of
//! commands (each counted as its arguments' bytes plus
//! [`QUEUED_ARGUMENT_OVERHEAD_BYTES`] per argument): a command past it is
//! refused and aborts the transaction, as Redis does when it cannot queue
//! a command (out of memory). The watched keys and their limit are in
//! `watched.rs`.
//!
//! What differs from Redis: a transaction that also holds a command over
//! the whole key space (KEYS, SCAN, DBSIZE, FLUSHALL, RANDOMKEY, INFO) runs
//! its commands one after the other, each atomic on its own, not as one
//! isolated unit; its watched keys are checked before it starts.

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;

use super::keyop::{self, KeyOp};
use super::watched::WatchedKeys;
use super::{
    Connection, ConnectionLimits, Engine, Op, Parsed, WatchMark, WatchPoint, engine_error, execute,
};
use crate::resp::counter::{Apply, Unit};
use crate::resp::reply::{HEADER_BYTES, Reply};

/// A connection's open transaction.
#[derive(Debug)]
pub struct Transaction {
    queued: Vec<Op>,
    /// The queued commands' bytes as counted against
    /// [`ConnectionLimits::max_queued_bytes`].
    queued_bytes: usize,
    /// A queued command failed its check: EXEC aborts.
    failed: bool,
    /// The connection as the queued commands leave it (SELECT ...): what
    /// later commands are parsed against, and the connection after EXEC.
    connection: Connection,
}

impl Transaction {
    /// A transaction opened on `connection`.
    fn open(connection: &Connection) -> Self {
        Transaction {
            queued: Vec::new(),
            queued_bytes: 0,
            failed: false,
            connection: Connection {
                watched: WatchedKeys::default(),
                ..connection.clone()
            },
        }
    }
}

/// What each queued argument is counted for beyond its bytes (its handle
/// and its share of the parsed command).
pub const QUEUED_ARGUMENT_OVERHEAD_BYTES: usize = 32;

/// Commands Redis refuses inside MULTI (its `no-multi` flag) that NaiveKV
/// knows or that the harness tries: a checkpoint or a shutdown is not a
/// transaction's business.
const NOT_IN_MULTI: &[&str] = &["save", "shutdown"];

/// The commands [`step`] handles itself (lower case).
const TRANSACTION_COMMANDS: &[&str] = &[
    "multi", "exec", "discard", "watch", "reset", "unwatch", "quit",
];

/// Transaction commands that take no arguments.
const NO_ARGUMENTS: &[&str] = &["multi", "exec", "discard", "unwatch"];

/// Whether a parse error is one Redis gives when queueing (the command is
/// not known, or has the wrong number of arguments), which aborts the
/// transaction, rather than when running it.
fn refused_when_queued(error: &str) -> bool {
    [
        "ERR unknown command",
        "ERR unknown subcommand",
        "ERR wrong number of arguments",
    ]
    .iter()
    .any(|prefix| error.starts_with(prefix))
}

/// What a request means to the transaction state.
#[derive(Debug)]
pub enum Step {
    /// Not a transaction command and no transaction open: go on as usual.
    Pass(Parsed),
    /// Answer this.
    Answer(Reply),
    /// EXEC: run these, unless a watched key changed. With a state, the
    /// connection becomes it only if they run (see the module doc).
    Exec(Vec<Op>, Vec<(Bytes, WatchPoint)>, Option<Connection>),
}

/// Routes one request through the transaction state `open`, within
/// `limits`.
pub fn step(
    args: Vec<Bytes>,
    open: &mut Option<Transaction>,
    connection: &mut Connection,
    limits: &ConnectionLimits,
) -> Step {
    // Compared in place, not lowercased into a new string: every request
    // passes here.
    let name = args
        .first()
        .and_then(|first| {
            TRANSACTION_COMMANDS
                .iter()
                .find(|name| name.as_bytes().eq_ignore_ascii_case(first))
        })
        .copied()
        .unwrap_or_default();
    if NO_ARGUMENTS.contains(&name) && args.len() != 1 {
        let arity = super::wrong_arity(name);
        return match open.as_mut() {
            Some(_) if name == "exec" => {
                *open = None;
                connection.watched.clear();
                let Reply::Error(error) = arity else {
                    return Step::Answer(arity);
                };
                let because = error.strip_prefix("ERR ").unwrap_or(&error);
                Step::Answer(Reply::Error(format!(
                    "EXECABORT Transaction discarded because of: {because}"
                )))
            }
            Some(transaction) => {
                transaction.failed = true;
                Step::Answer(arity)
            }
            None => Step::Answer(arity),
        };
    }
    match (name, open.as_mut()) {
        ("multi", Some(_)) => Step::Answer(Reply::err("MULTI calls can not be nested")),
        ("multi", None) => {
            *open = Some(Transaction::open(connection));
            Step::Answer(Reply::ok())
        }
        ("exec" | "discard", None) => Step::Answer(Reply::err(format!(
            "{} without MULTI",
            name.to_ascii_uppercase()
        ))),
        ("exec", Some(_)) => {
            let watched = connection.watched.take();
            match open.take() {
                Some(t) if t.failed => Step::Answer(Reply::Error(
                    "EXECABORT Transaction discarded because of previous errors.".into(),
                )),
                Some(t) if watched.is_empty() || same_state(connection, &t.connection) => {
                    *connection = t.connection;
                    Step::Exec(t.queued, watched, None)
                }
                Some(t) => Step::Exec(t.queued, watched, Some(t.connection)),
                None => Step::Answer(Reply::err("EXEC without MULTI")),
            }
        }
        ("discard", Some(_)) => {
            *open = None;
            connection.watched.clear();
            Step::Answer(Reply::ok())
        }
        ("watch", Some(_)) => Step::Answer(Reply::err("WATCH inside MULTI is not allowed")),
        ("watch", None) if args.len() < 2 => Step::Answer(super::wrong_arity("watch")),
        ("watch", None) => {
            let keys = args.iter().skip(1).map(|key| connection.database.key(key));
            match connection.watched.watch(keys, limits.max_key_bytes) {
                Ok(added) => Step::Pass(Parsed::Engine(Op::WatchPoint(added))),
                Err(refused) => Step::Answer(refused),
            }
        }
        ("reset", _) => {
            *open = None;
            connection.watched.clear();
            Step::Pass(super::parse(args, connection))
        }
        ("unwatch", Some(transaction)) => {
            transaction.queued.push(Op::Ready(Reply::ok()));
            Step::Answer(queued())
        }
        ("unwatch", None) => {
            connection.watched.clear();
            Step::Answer(Reply::ok())
        }
        ("quit", Some(_)) => {
            *open = None;
            Step::Pass(Parsed::Quit)
        }
        (_, Some(transaction)) => Step::Answer(queue(transaction, args, limits)),
        (_, None) => Step::Pass(super::parse(args, connection)),
    }
}

/// Whether a transaction's queued commands left the connection as it is.
fn same_state(now: &Connection, after: &Connection) -> bool {
    now.database == after.database && now.protocol == after.protocol && now.name == after.name
}

/// Checks and queues one command inside MULTI.
fn queue(transaction: &mut Transaction, args: Vec<Bytes>, limits: &ConnectionLimits) -> Reply {
    let bytes: usize = args
        .iter()
        .map(|arg| arg.len() + QUEUED_ARGUMENT_OVERHEAD_BYTES)
        .sum();
    transaction.queued_bytes += bytes;
    if transaction.queued_bytes > limits.max_queued_bytes {
        transaction.failed = true;
        return Reply::err(format!(
            "MULTI queue exceeds {} bytes; the transaction will be discarded at EXEC",
            limits.max_queued_bytes
        ));
    }
    let refused = args.first().is_some_and(|first| {
        NOT_IN_MULTI
            .iter()
            .any(|name| name.as_bytes().eq_ignore_ascii_case(first))
    });
    if refused {
        transaction.failed = true;
        return Reply::err("Command not allowed inside a transaction");
    }
    match super::parse(args, &mut transaction.connection) {
        Parsed::Reply(Reply::Error(error)) if refused_when_queued(&error) => {
            transaction.failed = true;
            Reply::Error(error)
        }
        Parsed::Reply(reply) => {
            transaction.queued.push(Op::Ready(reply));
            queued()
        }
        Parsed::Quit => {
            transaction.queued.push(Op::Ready(Reply::ok()));
            queued()
        }
        Parsed::Engine(op) => {
            transaction.queued.push(op);
            queued()
        }
    }
}

fn queued() -> Reply {
    Reply::Status("QUEUED".into())
}

/// Runs a WATCH: records, for each key, the sequence number the database
/// has applied (every earlier write of the connection is acknowledged) and
/// the expiry of the key's value.
pub fn watch(keys: Vec<(Bytes, WatchPoint)>, db: &crate::Db) -> LocalBoxFuture<'static, Reply> {
    let seq = db.visible_seq();
    let reads = keyop::join_in_chunks(
        keys.iter()
            .map(|(key, _)| db.get_versioned(key.clone()))
            .collect::<Vec<_>>(),
    );
    async move {
        for ((_, point), read) in keys.iter().zip(reads.await) {
            match read {
                Ok(read) => point.set(WatchMark {
                    seq,
                    expire_at_ms: read.expire_at_ms,
                }),
                Err(e) => return engine_error(&e),
            }
        }
        Reply::ok()
    }
    .boxed_local()
}

/// Runs an EXEC: as one unit on the counter when every command is a key
/// command, else one command after the other (see the module doc).
pub fn exec(
    ops: Vec<Op>,
    watched: Vec<(Bytes, WatchPoint)>,
    engine: Engine,
) -> LocalBoxFuture<'static, Reply> {
    let watched: Vec<(Bytes, WatchMark)> = watched.into_iter().map(|(k, p)| (k, p.get())).collect();
    let ops: Vec<Result<KeyOp, Op>> = ops.into_iter().map(KeyOp::from_op).collect();
    if ops.iter().all(Result::is_ok) {
        let ops = ops.into_iter().flatten().collect();
        let max_reply_bytes = engine.largest_reply;
        return on_counter(
            &engine,
            Unit::Exec {
                ops,
                watched,
                max_reply_bytes,
            },
        );
    }
    async move {
        let check = on_counter(
            &engine,
            Unit::Exec {
                ops: Vec::new(),
                watched,
                max_reply_bytes: engine.largest_reply,
            },
        );
        if check.await == Reply::NullArray {
            return Reply::NullArray;
        }
        let mut replies = BoundedReplies::new(ops.len(), engine.largest_reply);
        for op in ops {
            let reply = match op {
                Ok(KeyOp::Rmw(rmw)) => on_counter(&engine, Unit::Rmw(rmw)).await,
                Ok(op) => keyop::run(op, engine.store.clone()).await,
                Err(op) => execute(op, &engine).await,
            };
            replies.push(reply);
        }
        replies.into_reply()
    }
    .boxed_local()
}

/// EXEC's replies, collected while they stay under the largest reply:
/// once they pass it they are dropped (the transaction still runs whole)
/// and the EXEC answers [`exec_too_large`].
pub struct BoundedReplies {
    replies: Vec<Reply>,
    bytes: usize,
    max_reply_bytes: usize,
}

impl BoundedReplies {
    /// Room for `count` replies within `max_reply_bytes` in all.
    pub fn new(count: usize, max_reply_bytes: usize) -> Self {
        BoundedReplies {
            replies: Vec::with_capacity(count),
            bytes: HEADER_BYTES,
            max_reply_bytes,
        }
    }

    /// Adds the next reply, or drops it and every earlier one past the bound.
    pub fn push(&mut self, reply: Reply) {
        self.bytes = self.bytes.saturating_add(reply.wire_bytes());
        if self.bytes > self.max_reply_bytes {
            self.replies = Vec::new();
        } else {
            self.replies.push(reply);
        }
    }

    /// Bytes the next reply may take before the EXEC is refused.
    pub fn room(&self) -> usize {
        self.max_reply_bytes.saturating_sub(self.bytes)
    }

    /// Drops every reply: one (an MGET's) would have passed the bound, and
    /// was not built whole.
    pub fn exceed(&mut self) {
        self.bytes = usize::MAX;
        self.replies = Vec::new();
    }

    /// The EXEC's answer: every reply, or the refusal.
    pub fn into_reply(self) -> Reply {
        if self.bytes > self.max_reply_bytes {
            return exec_too_large(self.max_reply_bytes);
        }
        Reply::Array(self.replies)
    }
}

/// `-ERR EXEC reply exceeds N bytes ...`: the transaction ran (its writes
/// are applied, atomically as always) but its replies were not kept.
pub fn exec_too_large(max_reply_bytes: usize) -> Reply {
    super::reply_too_large(
        "EXEC",
        max_reply_bytes,
        "the transaction was applied but its replies were dropped",
    )
}

/// Runs `unit` on the counter.
fn on_counter(engine: &Engine, unit: Unit) -> LocalBoxFuture<'static, Reply> {
    let answer = engine.counter.send(Apply(unit));
    async move {
        answer
            .await
            .unwrap_or_else(|_| engine_error(&crate::Error::Closed))
    }
    .boxed_local()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::database::Database;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        max_queued_bytes: 1 << 10,
        max_key_bytes: 64,
    };

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    fn run(open: &mut Option<Transaction>, list: &[&str]) -> Step {
        step(args(list), open, &mut Connection::default(), &LIMITS)
    }

    #[test]
    fn commands_queue_until_exec() {
        let mut open = None;
        assert!(matches!(run(&mut open, &["MULTI"]), Step::Answer(Reply::Status(s)) if s == "OK"));
        assert!(
            matches!(run(&mut open, &["SET", "k", "v"]), Step::Answer(Reply::Status(s)) if s == "QUEUED")
        );
        assert!(
            matches!(run(&mut open, &["PING"]), Step::Answer(Reply::Status(s)) if s == "QUEUED")
        );
        assert!(matches!(
            run(&mut open, &["MULTI"]),
            Step::Answer(Reply::Error(_))
        ));
        match run(&mut open, &["EXEC"]) {
            Step::Exec(ops, _, _) => assert_eq!(ops.len(), 2),
            other => panic!("{other:?}"),
        }
        assert!(open.is_none());
        assert!(
            matches!(run(&mut open, &["EXEC"]), Step::Answer(Reply::Error(e)) if e.contains("without MULTI"))
        );
        assert!(matches!(
            run(&mut open, &["GET", "k"]),
            Step::Pass(Parsed::Engine(_))
        ));
    }

    #[test]
    fn a_bad_command_aborts_exec_and_discard_drops_the_queue() {
        let mut open = None;
        run(&mut open, &["MULTI"]);
        assert!(matches!(
            run(&mut open, &["NOSUCH"]),
            Step::Answer(Reply::Error(_))
        ));
        assert!(
            matches!(run(&mut open, &["EXEC"]), Step::Answer(Reply::Error(e)) if e.starts_with("EXECABORT"))
        );
        run(&mut open, &["MULTI"]);
        run(&mut open, &["SET", "k", "v"]);
        assert!(
            matches!(run(&mut open, &["DISCARD"]), Step::Answer(Reply::Status(s)) if s == "OK")
        );
        assert!(open.is_none());
        run(&mut open, &["MULTI"]);
        assert!(matches!(
            run(&mut open, &["SAVE"]),
            Step::Answer(Reply::Error(e)) if e.contains("not allowed inside a transaction")
        ));
        assert!(
            matches!(run(&mut open, &["EXEC"]), Step::Answer(Reply::Error(e)) if e.starts_with("EXECABORT"))
        );
    }

    #[test]
    fn only_unknown_commands_and_bad_arity_abort_other_errors_are_queued() {
        let mut open = None;
        run(&mut open, &["MULTI"]);
        for queued_error in [
            &["SET", "k", "v", "NX", "XX"][..],
            &["SELECT", "99"],
            &["CONFIG", "SET", "maxmemory", "bla"],
        ] {
            assert!(
                matches!(run(&mut open, queued_error), Step::Answer(Reply::Status(s)) if s == "QUEUED"),
                "{queued_error:?}"
            );
        }
        match run(&mut open, &["EXEC"]) {
            Step::Exec(ops, _, _) => {
                assert_eq!(ops.len(), 3);
                assert!(
                    ops.iter()
                        .all(|op| matches!(op, Op::Ready(Reply::Error(_))))
                );
            }
            other => panic!("{other:?}"),
        }
        for aborts in [
            &["GET"][..],
            &["NOSUCH", "x"],
            &["CLIENT", "NOSUCH"],
            &["SHUTDOWN"],
        ] {
            run(&mut open, &["MULTI"]);
            assert!(
                matches!(run(&mut open, aborts), Step::Answer(Reply::Error(_))),
                "{aborts:?}"
            );
            assert!(
                matches!(run(&mut open, &["EXEC"]), Step::Answer(Reply::Error(e)) if e.starts_with("EXECABORT")),
                "{aborts:?}"
            );
        }
    }

    #[test]
    fn select_inside_multi_takes_effect_at_exec_in_order() {
        let (mut open, mut connection) = (None, Connection::default());
        let mut step =
            |list: &[&str], c: &mut Connection| super::step(args(list), &mut open, c, &LIMITS);
        step(&["MULTI"], &mut connection);
        step(&["SET", "k", "0"], &mut connection);
        step(&["SELECT", "1"], &mut connection);
        step(&["SET", "k", "1"], &mut connection);
        // Queued, not applied: the connection is still on database 0.
        assert_eq!(connection.database.index, 0);
        match step(&["EXEC"], &mut connection) {
            Step::Exec(ops, _, _) => match &ops[..] {
                [Op::Set(k0, _), Op::Ready(_), Op::Set(k1, _)] => {
                    assert_eq!(k0, &Database::default().key(b"k"));
                    assert_eq!(k1, &Database::default().select(Some(1)).unwrap().key(b"k"));
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        assert_eq!(connection.database.index, 1);
        // DISCARD and an aborted EXEC drop a queued SELECT.
        step(&["MULTI"], &mut connection);
        step(&["SELECT", "2"], &mut connection);
        step(&["DISCARD"], &mut connection);
        assert_eq!(connection.database.index, 1);
        step(&["MULTI"], &mut connection);
        step(&["SELECT", "2"], &mut connection);
        step(&["NOSUCH"], &mut connection);
        step(&["EXEC"], &mut connection);
        assert_eq!(connection.database.index, 1);
    }

    #[test]
    fn watch_records_its_keys_until_exec_or_unwatch() {
        let (mut open, mut connection) = (None, Connection::default());
        let step = |list: &[&str], open: &mut Option<Transaction>, c: &mut Connection| {
            super::step(args(list), open, c, &LIMITS)
        };
        assert!(matches!(
            step(&["WATCH", "a", "b"], &mut open, &mut connection),
            Step::Pass(Parsed::Engine(Op::WatchPoint(_)))
        ));
        assert_eq!(connection.watched.len(), 2);
        step(&["UNWATCH"], &mut open, &mut connection);
        assert!(connection.watched.is_empty());
        step(&["WATCH", "a"], &mut open, &mut connection);
        step(&["MULTI"], &mut open, &mut connection);
        assert!(matches!(
            step(&["EXEC"], &mut open, &mut connection),
            Step::Exec(ops, watched, _) if ops.is_empty() && watched.len() == 1
        ));
        assert!(connection.watched.is_empty());
    }

    #[test]
    fn a_command_past_the_queue_limit_is_refused_and_aborts_exec() {
        let mut open = None;
        run(&mut open, &["MULTI"]);
        let big = "v".repeat(600);
        assert!(matches!(
            run(&mut open, &["SET", "a", &big]),
            Step::Answer(Reply::Status(_))
        ));
        assert!(matches!(
            run(&mut open, &["SET", "b", &big]),
            Step::Answer(Reply::Error(e)) if e.starts_with("ERR MULTI queue exceeds 1024 bytes")
        ));
        assert_eq!(open.as_ref().map(|t| t.queued.len()), Some(1));
        assert!(matches!(
            run(&mut open, &["EXEC"]),
            Step::Answer(Reply::Error(e)) if e.starts_with("EXECABORT")
        ));
    }
}
