//! String commands: GET, SET, SETNX, MGET, MSET, INCR, DECR, INCRBY,
//! DECRBY, APPEND, STRLEN.
//!
//! A read-modify-write (SET with NX, XX or GET; SETNX; the INCR family;
//! APPEND) is an [`Rmw`]: [`Rmw::apply`] is the pure step from the old
//! value to the new one and the reply, and the [`Counter`] actor runs each
//! one as get, apply, put, one at a time for the whole server, so no update
//! is lost between them. A plain SET, MSET or DEL does not go through the
//! counter: racing one against an INCR of the same key from another
//! connection is last-writer-wins, as in Redis without MULTI.
//!
//! [`Counter`]: crate::resp::counter::Counter

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::{LocalBoxFuture, join_all, ready};

use super::{Engine, Op, Parsed, engine_error, int_arg, not_an_integer, syntax_error};
use crate::WriteBatch;
use crate::resp::counter::Apply;
use crate::resp::reply::Reply;

/// SET's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Only if the key is absent.
    Nx,
    /// Only if the key is present.
    Xx,
}

/// How a conditional set answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetReply {
    /// SET: `+OK`, or a null if the condition failed.
    Status,
    /// SETNX: `:1` if set, `:0` if not.
    Flag,
}

/// A read-modify-write of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rmw {
    IncrBy {
        key: Bytes,
        by: i64,
    },
    Append {
        key: Bytes,
        value: Bytes,
    },
    Set {
        key: Bytes,
        value: Bytes,
        condition: Option<Condition>,
        /// SET ... GET: answer the old value.
        get: bool,
        reply: SetReply,
    },
}

impl Rmw {
    /// The key read and written.
    pub fn key(&self) -> &Bytes {
        match self {
            Rmw::IncrBy { key, .. } | Rmw::Append { key, .. } | Rmw::Set { key, .. } => key,
        }
    }

    /// From the key's current value: the value to write (`None`: write
    /// nothing) and the reply.
    pub fn apply(self, old: Option<Bytes>) -> (Option<Bytes>, Reply) {
        match self {
            Rmw::IncrBy { by, .. } => {
                let current = match old {
                    None => Some(0),
                    Some(bytes) => int_arg(&bytes),
                };
                let Some(current) = current else {
                    return (None, not_an_integer());
                };
                match current.checked_add(by) {
                    Some(n) => (Some(Bytes::from(n.to_string())), Reply::Integer(n)),
                    None => (None, Reply::err("increment or decrement would overflow")),
                }
            }
            Rmw::Append { value, .. } => {
                let mut joined = BytesMut::from(old.unwrap_or_default().as_ref());
                joined.extend_from_slice(&value);
                let len = joined.len() as i64;
                (Some(joined.freeze()), Reply::Integer(len))
            }
            Rmw::Set {
                value,
                condition,
                get,
                reply,
                ..
            } => {
                let allowed = match condition {
                    None => true,
                    Some(Condition::Nx) => old.is_none(),
                    Some(Condition::Xx) => old.is_some(),
                };
                let answer = match (get, reply, allowed) {
                    (true, _, _) => Reply::value(old),
                    (false, SetReply::Flag, set) => Reply::Integer(i64::from(set)),
                    (false, SetReply::Status, true) => Reply::ok(),
                    (false, SetReply::Status, false) => Reply::Null,
                };
                (allowed.then_some(value), answer)
            }
        }
    }
}

/// Parses a string command; `None` if `name` is not one.
pub fn parse(name: &str, args: &[Bytes]) -> Option<Parsed> {
    let key = || args.first().cloned().unwrap_or_default();
    let second = || args.get(1).cloned().unwrap_or_default();
    let op = match name {
        "get" => Op::Get(key()),
        "strlen" => Op::Strlen(key()),
        "mget" => Op::MGet(args.to_vec()),
        "set" => return Some(parse_set(args)),
        "setnx" => Op::Rmw(Rmw::Set {
            key: key(),
            value: second(),
            condition: Some(Condition::Nx),
            get: false,
            reply: SetReply::Flag,
        }),
        "mset" if !args.len().is_multiple_of(2) => {
            return Some(Parsed::Reply(super::wrong_arity("mset")));
        }
        "mset" => Op::MSet(
            args.chunks_exact(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect(),
        ),
        "incr" => incr(key(), 1),
        "decr" => incr(key(), -1),
        "incrby" | "decrby" => {
            let by = int_arg(&second());
            let by = if name == "decrby" {
                by.and_then(i64::checked_neg)
            } else {
                by
            };
            match by {
                Some(by) => incr(key(), by),
                None => return Some(Parsed::Reply(not_an_integer())),
            }
        }
        "append" => Op::Rmw(Rmw::Append {
            key: key(),
            value: second(),
        }),
        _ => return None,
    };
    Some(Parsed::Engine(op))
}

fn incr(key: Bytes, by: i64) -> Op {
    Op::Rmw(Rmw::IncrBy { key, by })
}

/// `SET key value [NX|XX] [GET] [KEEPTTL]`; EX, PX, EXAT and PXAT are
/// refused with a clear error: NaiveKV has no expiry.
fn parse_set(args: &[Bytes]) -> Parsed {
    let (Some(key), Some(value)) = (args.first(), args.get(1)) else {
        return Parsed::Reply(super::wrong_arity("set"));
    };
    let mut condition = None;
    let mut get = false;
    let mut expiry = false;
    let mut options = args[2..].iter();
    while let Some(option) = options.next() {
        match option.to_ascii_uppercase().as_slice() {
            b"NX" | b"XX" if condition.is_some() => return Parsed::Reply(syntax_error()),
            b"NX" => condition = Some(Condition::Nx),
            b"XX" => condition = Some(Condition::Xx),
            b"GET" => get = true,
            b"KEEPTTL" => {}
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if options.next().is_some() => expiry = true,
            _ => return Parsed::Reply(syntax_error()),
        }
    }
    if expiry {
        return Parsed::Reply(Reply::err(
            "expiry (EX, PX, EXAT, PXAT) is not supported by NaiveKV: keys do not expire",
        ));
    }
    if condition.is_none() && !get {
        return Parsed::Engine(Op::Set(key.clone(), value.clone()));
    }
    Parsed::Engine(Op::Rmw(Rmw::Set {
        key: key.clone(),
        value: value.clone(),
        condition,
        get,
        reply: SetReply::Status,
    }))
}

/// Runs a string request (GET, SET, MGET, MSET, STRLEN, or a
/// read-modify-write through the counter).
pub fn execute(op: Op, engine: &Engine) -> LocalBoxFuture<'static, Reply> {
    let db = &engine.db;
    match op {
        Op::Get(key) => {
            let value = db.get(key);
            async move { value.await.map_or_else(|e| engine_error(&e), Reply::value) }.boxed_local()
        }
        Op::Strlen(key) => {
            let value = db.get(key);
            async move {
                match value.await {
                    Ok(value) => Reply::Integer(value.map_or(0, |v| v.len() as i64)),
                    Err(e) => engine_error(&e),
                }
            }
            .boxed_local()
        }
        Op::Set(key, value) => done(db.put(key, value)),
        Op::MSet(pairs) => {
            let mut batch = WriteBatch::new();
            for (key, value) in pairs {
                batch.put(key, value);
            }
            done(db.write(batch))
        }
        Op::MGet(keys) => {
            let values = join_all(keys.into_iter().map(|key| db.get(key)));
            async move {
                let values = values.await.into_iter().map(|value| match value {
                    Ok(value) => Reply::value(value),
                    Err(e) => engine_error(&e),
                });
                Reply::Array(values.collect())
            }
            .boxed_local()
        }
        Op::Rmw(rmw) => {
            let answer = engine.counter.send(Apply(rmw));
            async move {
                answer
                    .await
                    .unwrap_or_else(|_| engine_error(&crate::Error::Closed))
            }
            .boxed_local()
        }
        _ => ready(Reply::err("internal error: not a string command")).boxed_local(),
    }
}

/// `+OK` once a write is acknowledged, or the engine's error.
fn done(
    write: impl Future<Output = crate::Result<()>> + 'static,
) -> LocalBoxFuture<'static, Reply> {
    async move {
        write
            .await
            .map_or_else(|e| engine_error(&e), |()| Reply::ok())
    }
    .boxed_local()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn incr(by: i64, old: Option<&str>) -> (Option<Bytes>, Reply) {
        Rmw::IncrBy { key: b("k"), by }.apply(old.map(b))
    }

    #[test]
    fn incr_counts_refuses_text_and_overflow() {
        assert_eq!(incr(1, None), (Some(b("1")), Reply::Integer(1)));
        assert_eq!(incr(-5, Some("3")), (Some(b("-2")), Reply::Integer(-2)));
        assert_eq!(incr(1, Some("x")).1, not_an_integer());
        let overflow = incr(1, Some(&i64::MAX.to_string()));
        assert_eq!(overflow.0, None);
        assert_eq!(
            overflow.1,
            Reply::Error("ERR increment or decrement would overflow".into())
        );
    }

    #[test]
    fn conditional_sets() {
        let set = |condition, get, reply| Rmw::Set {
            key: b("k"),
            value: b("v"),
            condition,
            get,
            reply,
        };
        let nx = set(Some(Condition::Nx), false, SetReply::Status);
        assert_eq!(nx.clone().apply(None), (Some(b("v")), Reply::ok()));
        assert_eq!(nx.apply(Some(b("old"))), (None, Reply::Null));
        let xx = set(Some(Condition::Xx), false, SetReply::Status);
        assert_eq!(xx.apply(None), (None, Reply::Null));
        let setnx = set(Some(Condition::Nx), false, SetReply::Flag);
        assert_eq!(setnx.apply(Some(b("o"))), (None, Reply::Integer(0)));
        let get = set(None, true, SetReply::Status);
        assert_eq!(get.apply(Some(b("o"))), (Some(b("v")), Reply::Bulk(b("o"))));
    }

    #[test]
    fn append_and_set_options() {
        let append = Rmw::Append {
            key: b("k"),
            value: b("de"),
        };
        assert_eq!(
            append.apply(Some(b("abc"))),
            (Some(b("abcde")), Reply::Integer(5))
        );
        let parsed = |list: &[&str]| parse("set", &list.iter().map(|s| b(s)).collect::<Vec<_>>());
        assert!(matches!(
            parsed(&["k", "v"]),
            Some(Parsed::Engine(Op::Set(..)))
        ));
        assert!(matches!(
            parsed(&["k", "v", "nx", "xx"]),
            Some(Parsed::Reply(Reply::Error(e))) if e == "ERR syntax error"
        ));
        assert!(matches!(
            parsed(&["k", "v", "EX", "10"]),
            Some(Parsed::Reply(Reply::Error(e))) if e.contains("not supported")
        ));
        assert!(matches!(
            parsed(&["k", "v", "EX"]),
            Some(Parsed::Reply(Reply::Error(e))) if e == "ERR syntax error"
        ));
    }
}
