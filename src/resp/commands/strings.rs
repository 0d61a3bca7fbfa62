//! String commands: GET, SET, SETNX, GETSET, GETDEL, MGET, MSET, MSETNX,
//! INCR, DECR, INCRBY, DECRBY, INCRBYFLOAT, APPEND, STRLEN, GETRANGE (SUBSTR),
//! SETRANGE, GETBIT, SETBIT, BITCOUNT, BITPOS, BITOP (`bits.rs`). The read-modify-writes are in [`super::rmw`].
//!
//! Every command here is a [`KeyOp`] (see `keyop.rs`). A read-modify-write
//! (SET with NX, XX or GET; SETNX; the INCR family; APPEND ...) is an
//! [`Rmw`]: [`Rmw::apply`] is the pure step from the old value to the new
//! one and the reply (and [`Rmw::expiry_of_write`] the expiry its put
//! carries), and the [`Counter`] actor runs it as a read and a
//! conditional write, so no update is lost, not even to a plain SET of the
//! same key from another connection: the write is refused and redone if
//! the key changed in between.
//!
//! [`Counter`]: crate::resp::counter::Counter

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{LocalBoxFuture, ready};

use super::bits::{BitOperation, BitRead, parse_bitpos};
use super::expire::{SetTtl, TtlOption, TtlOptions, expiry_option};
use super::keyop::{self, KeyOp};
pub use super::rmw::{Condition, Rmw, SetReply, float_arg};
use super::{Engine, Op, Parsed, engine_error, int_arg, not_an_integer};
use crate::resp::counter::{Apply, Unit};
use crate::resp::reply::Reply;

/// Parses a string command; `None` if `name` is not one.
pub fn parse(name: &str, args: &[Bytes]) -> Option<Parsed> {
    let key = || args.first().cloned().unwrap_or_default();
    let second = || args.get(1).cloned().unwrap_or_default();
    let rest = || args.get(1..).unwrap_or_default();
    let op = match name {
        "get" => Op::Get(key()),
        "strlen" => Op::Strlen(key()),
        "mget" => Op::MGet(args.to_vec()),
        "lcs" => match super::lcs::parse_options(args.get(2..).unwrap_or_default()) {
            Ok(options) => Op::Lcs(key(), second(), options),
            Err(reply) => return Some(Parsed::Reply(reply)),
        },
        "set" => return Some(parse_set(args)),
        "setnx" => Op::Rmw(Rmw::Set {
            key: key(),
            value: second(),
            condition: Some(Condition::Nx),
            get: false,
            reply: SetReply::Flag,
            ttl: SetTtl::Clear,
        }),
        // As in Redis, the table's arity passes and the command itself
        // refuses an odd count: inside MULTI it is queued, and fails alone.
        "mset" | "msetnx" if !args.len().is_multiple_of(2) => Op::Ready(super::wrong_arity(name)),
        "mset" => Op::MSet(
            args.chunks_exact(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect(),
        ),
        "incr" => incr(key(), 1),
        "decr" => incr(key(), -1),
        "decrby" if int_arg(&second()) == Some(i64::MIN) => {
            return Some(Parsed::Reply(Reply::err("decrement would overflow")));
        }
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
        "getset" => Op::Rmw(Rmw::Set {
            key: key(),
            value: second(),
            condition: None,
            get: true,
            reply: SetReply::Status,
            ttl: SetTtl::Clear,
        }),
        "getdel" => Op::Rmw(Rmw::GetDel { key: key() }),
        "incrbyfloat" => match float_arg(&second()) {
            Some(by) => Op::Rmw(Rmw::IncrByFloat { key: key(), by }),
            None => return Some(Parsed::Reply(Reply::err("value is not a valid float"))),
        },
        "setrange" => match int_arg(&second()).map(usize::try_from) {
            Some(Ok(offset)) => Op::Rmw(Rmw::SetRange {
                key: key(),
                offset,
                value: args.get(2).cloned().unwrap_or_default(),
            }),
            Some(Err(_)) => return Some(Parsed::Reply(Reply::err("offset is out of range"))),
            None => return Some(Parsed::Reply(not_an_integer())),
        },
        "setbit" => return Some(parse_setbit(args)),
        "getbit" => match bit_offset_arg(&second()) {
            Some(offset) => Op::Bits(key(), BitRead::Get(offset)),
            None => return Some(Parsed::Reply(bit_offset_error())),
        },
        "bitcount" => Op::Bits(key(), BitRead::Count(rest().to_vec())),
        "bitop" => return Some(parse_bitop(args)),
        "bitpos" => match parse_bitpos(rest()) {
            Ok(read) => Op::Bits(key(), read),
            Err(reply) => return Some(Parsed::Reply(reply)),
        },
        "getrange" | "substr" => match (
            int_arg(&second()),
            int_arg(&args.get(2).cloned().unwrap_or_default()),
        ) {
            (Some(start), Some(end)) => Op::GetRange(key(), start, end),
            _ => return Some(Parsed::Reply(not_an_integer())),
        },
        "msetnx" => Op::Rmw(Rmw::MSetNx(
            args.chunks_exact(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect(),
        )),
        _ => return None,
    };
    Some(Parsed::Engine(op))
}

/// A bit offset argument: non-negative and, as in Redis (whose strings
/// end at 512 MiB), below 2^32.
fn bit_offset_arg(arg: &[u8]) -> Option<usize> {
    int_arg(arg)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n < 1 << 32)
}

fn bit_offset_error() -> Reply {
    Reply::err("bit offset is not an integer or out of range")
}

/// `BITOP AND|OR|XOR|NOT destkey srckey [srckey ...]`.
fn parse_bitop(args: &[Bytes]) -> Parsed {
    let (Some(operation), Some(dest), Some(sources)) = (
        args.first().and_then(|name| BitOperation::parse(name)),
        args.get(1),
        args.get(2..).filter(|s| !s.is_empty()),
    ) else {
        return Parsed::Reply(super::syntax_error());
    };
    if operation == BitOperation::Not && sources.len() != 1 {
        return Parsed::Reply(Reply::err(
            "BITOP NOT must be called with a single source key.",
        ));
    }
    Parsed::Engine(Op::Rmw(Rmw::BitOp {
        operation,
        dest: dest.clone(),
        sources: sources.to_vec(),
    }))
}

/// `SETBIT key offset 0|1`.
fn parse_setbit(args: &[Bytes]) -> Parsed {
    let Some(offset) = args.get(1).and_then(|a| bit_offset_arg(a)) else {
        return Parsed::Reply(bit_offset_error());
    };
    let bit = match args.get(2).map(|a| a.as_ref()) {
        Some(b"0") => false,
        Some(b"1") => true,
        _ => return Parsed::Reply(Reply::err("bit is not an integer or out of range")),
    };
    Parsed::Engine(Op::Rmw(Rmw::SetBit {
        key: args.first().cloned().unwrap_or_default(),
        offset,
        bit,
    }))
}

/// GETRANGE's slice of `value`: negative indexes count from the end, both
/// ends inclusive and clamped, as Redis does.
pub fn range_of(value: &[u8], start: i64, end: i64) -> &[u8] {
    if start < 0 && end < 0 && start > end {
        return &[];
    }
    let len = value.len() as i64;
    let clamp = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, end) = (clamp(start), clamp(end).min(len - 1));
    if len == 0 || start > end {
        return &[];
    }
    value.get(start as usize..=end as usize).unwrap_or_default()
}

fn incr(key: Bytes, by: i64) -> Op {
    Op::Rmw(Rmw::IncrBy { key, by })
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]`, with
/// Redis 7.0's errors. A SET with nothing but the key and value is a plain
/// put (which clears any expiry); the others go through the counter.
fn parse_set(args: &[Bytes]) -> Parsed {
    let (Some(key), Some(value)) = (args.first(), args.get(1)) else {
        return Parsed::Reply(super::wrong_arity("set"));
    };
    let options = match TtlOptions::parse(args.get(2..).unwrap_or_default(), true) {
        Ok(options) => options,
        Err(reply) => return Parsed::Reply(reply),
    };
    let condition = match (options.nx, options.xx) {
        (true, _) => Some(Condition::Nx),
        (_, true) => Some(Condition::Xx),
        _ => None,
    };
    let get = options.get;
    let ttl = match options.ttl {
        TtlOption::None | TtlOption::Persist => None,
        TtlOption::Keep => Some(SetTtl::Keep),
        TtlOption::Expire(unit, amount) => match expiry_option(&unit, &amount, "set") {
            Ok(ttl) => Some(ttl),
            Err(reply) => return Parsed::Reply(reply),
        },
    };
    if condition.is_none() && !get && ttl.is_none() {
        return Parsed::Engine(Op::Set(key.clone(), value.clone()));
    }
    Parsed::Engine(Op::Rmw(Rmw::Set {
        key: key.clone(),
        value: value.clone(),
        condition,
        get,
        reply: SetReply::Status,
        ttl: ttl.unwrap_or(SetTtl::Clear),
    }))
}

/// Runs a string request (GET, SET, MGET, MSET, STRLEN, or a
/// read-modify-write through the counter).
pub fn execute(op: Op, engine: &Engine) -> LocalBoxFuture<'static, Reply> {
    match KeyOp::from_op(op) {
        Ok(KeyOp::Rmw(rmw)) => {
            let answer = engine.counter.send(Apply(Unit::Rmw(rmw)));
            async move {
                answer
                    .await
                    .unwrap_or_else(|_| engine_error(&crate::Error::Closed))
            }
            .boxed_local()
        }
        Ok(op) => keyop::run(op, engine.store.clone()).boxed_local(),
        Err(_) => ready(Reply::err("internal error: not a string command")).boxed_local(),
    }
}

/// Bytes of framing counted per MGET element (`$<len>\r\n` and `\r\n`).
const MGET_FRAMING_BYTES: usize = 16;

/// MGET with its reply bounded: the request is answered `-ERR MGET reply
/// exceeds N bytes ...` as soon as the values found (and their framing)
/// pass `max_reply_bytes` (Redis has no such limit; see docs/PROTOCOL.md,
/// "Limits"). The keys are read [`keyop::KEYS_READ_TOGETHER`] at a time
/// ([`keyop::GroupReads`]: together from memory, then one by one from the
/// segments), each value counted before the next is read from the disk. So
/// the server holds at most `max_reply_bytes`, one value read from the
/// disk, and a group's short copies, however many keys the MGET names.
/// Between two groups it lets the thread's other tasks run. Every key is
/// read at the moment the MGET starts ([`crate::Db::point_in_time`]), so
/// the reply is one snapshot, as Redis's atomic MGET is.
pub async fn mget_within(keys: Vec<Bytes>, db: crate::Db, max_reply_bytes: usize) -> Reply {
    let moment = db.point_in_time();
    // No more elements than the reply can hold before it is refused.
    let most = keys.len().min(max_reply_bytes / MGET_FRAMING_BYTES + 1);
    let mut values = Vec::with_capacity(most);
    let mut bytes = 0usize;
    for (group, keys) in keys.chunks(keyop::KEYS_READ_TOGETHER).enumerate() {
        if group > 0 {
            tokio::task::yield_now().await;
        }
        let mut reads = keyop::GroupReads::new(&moment, keys);
        while let Some(read) = reads.next().await {
            let value = match super::absent_if_too_large(read) {
                Ok(value) => value,
                Err(e) => return engine_error(&e),
            };
            bytes += MGET_FRAMING_BYTES + value.as_ref().map_or(0, |v| v.len());
            if bytes > max_reply_bytes {
                return mget_too_large(max_reply_bytes);
            }
            values.push(Reply::value(value));
        }
    }
    Reply::Array(values)
}

/// The refusal of an MGET whose reply would pass `max_reply_bytes`.
pub fn mget_too_large(max_reply_bytes: usize) -> Reply {
    super::reply_too_large("MGET", max_reply_bytes, "ask for fewer keys")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn set_options() {
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
            Some(Parsed::Engine(Op::Rmw(Rmw::Set {
                ttl: SetTtl::InMs(10_000),
                ..
            })))
        ));
        assert!(matches!(
            parsed(&["k", "v", "keepttl", "nx", "get"]),
            Some(Parsed::Engine(Op::Rmw(Rmw::Set {
                ttl: SetTtl::Keep,
                get: true,
                ..
            })))
        ));
        for bad in [
            &["k", "v", "EX", "10", "PX", "5"][..],
            &["k", "v", "KEEPTTL", "EX", "1"],
        ] {
            assert!(matches!(
                parsed(bad),
                Some(Parsed::Reply(Reply::Error(e))) if e == "ERR syntax error"
            ));
        }
        assert!(matches!(
            parsed(&["k", "v", "PX", "0"]),
            Some(Parsed::Reply(Reply::Error(e))) if e == "ERR invalid expire time in 'set' command"
        ));
        assert!(matches!(
            parsed(&["k", "v", "EX"]),
            Some(Parsed::Reply(Reply::Error(e))) if e == "ERR syntax error"
        ));
    }
}

#[cfg(test)]
mod range_tests {
    use super::range_of;

    #[test]
    fn getrange_counts_like_redis() {
        let v = b"This is a string";
        assert_eq!(range_of(v, 0, 3), b"This");
        assert_eq!(range_of(v, -3, -1), b"ing");
        assert_eq!(range_of(v, 0, -1), v);
        assert_eq!(range_of(v, 10, 100), b"string");
        assert_eq!(range_of(v, 5, 3), b"");
        assert_eq!(range_of(b"", 0, -1), b"");
        assert_eq!(range_of(v, -100, 2), b"Thi");
    }
}
