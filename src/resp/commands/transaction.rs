//! MULTI, EXEC, DISCARD, WATCH and UNWATCH.
//!
//! After MULTI a connection's commands are checked (name, arity, syntax)
//! and queued, each answered `+QUEUED`; one that fails the check is
//! answered with its error and makes EXEC answer `-EXECABORT`. EXEC runs the
//! queue one command after the other, each seeing the ones before, and
//! answers an array of their replies; DISCARD drops it.
//!
//! What differs from Redis: commands of other connections may run between
//! two commands of an EXEC (the engine has no multi-key isolation; each
//! command keeps its own atomicity, and a read-modify-write still runs
//! alone), and WATCH is refused, since no key can be watched; UNWATCH is
//! accepted (nothing is watched).

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;

use super::{Connection, Engine, Op, Parsed, execute};
use crate::resp::reply::Reply;

/// A connection's open transaction.
#[derive(Debug, Default)]
pub struct Transaction {
    queued: Vec<Op>,
    /// A queued command failed its check: EXEC aborts.
    failed: bool,
}

/// What a request means to the transaction state.
#[derive(Debug)]
pub enum Step {
    /// Not a transaction command and no transaction open: go on as usual.
    Pass(Parsed),
    /// Answer this.
    Answer(Reply),
    /// EXEC: run these.
    Exec(Vec<Op>),
}

/// Routes one request through the transaction state `open`.
pub fn step(args: Vec<Bytes>, open: &mut Option<Transaction>, connection: &mut Connection) -> Step {
    let name = args
        .first()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .unwrap_or_default();
    match (name.as_str(), open.as_mut()) {
        ("multi", Some(_)) => Step::Answer(Reply::err("MULTI calls can not be nested")),
        ("multi", None) if args.len() == 1 => {
            *open = Some(Transaction::default());
            Step::Answer(Reply::ok())
        }
        ("exec" | "discard", None) => Step::Answer(Reply::err(format!(
            "{} without MULTI",
            name.to_ascii_uppercase()
        ))),
        ("exec", Some(_)) => match open.take() {
            Some(t) if t.failed => Step::Answer(Reply::Error(
                "EXECABORT Transaction discarded because of previous errors.".into(),
            )),
            Some(t) => Step::Exec(t.queued),
            None => Step::Answer(Reply::err("EXEC without MULTI")),
        },
        ("discard", Some(_)) => {
            *open = None;
            Step::Answer(Reply::ok())
        }
        ("watch", Some(_)) => Step::Answer(Reply::err("WATCH inside MULTI is not allowed")),
        ("watch", None) => Step::Answer(Reply::err(
            "WATCH is not supported by NaiveKV: keys cannot be watched",
        )),
        ("unwatch", _) => Step::Answer(Reply::ok()),
        ("reset", _) => {
            *open = None;
            Step::Pass(super::parse(args, connection))
        }
        (_, Some(transaction)) => Step::Answer(queue(transaction, args, connection)),
        (_, None) => Step::Pass(super::parse(args, connection)),
    }
}

/// Checks and queues one command inside MULTI.
fn queue(transaction: &mut Transaction, args: Vec<Bytes>, connection: &mut Connection) -> Reply {
    match super::parse(args, connection) {
        Parsed::Reply(Reply::Error(error)) => {
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

/// Runs `ops` in order, each once the one before has answered.
pub fn exec(ops: Vec<Op>, engine: Engine) -> LocalBoxFuture<'static, Reply> {
    async move {
        let mut replies = Vec::with_capacity(ops.len());
        for op in ops {
            replies.push(execute(op, &engine).await);
        }
        Reply::Array(replies)
    }
    .boxed_local()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    fn run(open: &mut Option<Transaction>, list: &[&str]) -> Step {
        step(args(list), open, &mut Connection::default())
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
            Step::Exec(ops) => assert_eq!(ops.len(), 2),
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
        assert!(matches!(
            run(&mut open, &["WATCH", "k"]),
            Step::Answer(Reply::Error(_))
        ));
    }
}
