//! Expiry commands: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (with NX, XX, GT,
//! LT), PERSIST, GETEX, SETEX, PSETEX, TTL, PTTL, EXPIRETIME, PEXPIRETIME,
//! and the expiry options SET takes (EX, PX, EXAT, PXAT, KEEPTTL).
//!
//! A key's expiry lives in the engine beside its value (see
//! `engine/expiry.rs`); changing it rewrites the value with the new
//! expiry. So every command here that changes an expiry is a
//! read-modify-write ([`ExpireOp`], run by the
//! [`Counter`](crate::resp::counter::Counter) like INCR); TTL and friends
//! are plain reads. Times are the database's clock (`Db::now_ms`), and the
//! replies and error texts are Redis 7.0's.

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;

use super::rmw::Rmw;
use super::{Op, Parsed, engine_error, int_arg, not_an_integer, syntax_error};
use crate::engine::Mutation;
use crate::resp::reply::Reply;
use crate::{Db, Ttl};

/// What a write does to the key's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTtl {
    /// The key no longer expires (a plain SET, PERSIST).
    Clear,
    /// The key keeps the expiry it had (KEEPTTL, INCR, APPEND ...).
    Keep,
    /// Expires at this Unix time in milliseconds (EXAT, PXAT; positive).
    AtMs(u64),
    /// Expires this many milliseconds from now (EX, PX; positive).
    InMs(u64),
}

impl SetTtl {
    /// The expiry to store (0: none), given the key's current one and now.
    pub fn resolve(self, current: u64, now_ms: u64) -> u64 {
        match self {
            SetTtl::Clear => 0,
            SetTtl::Keep => current,
            SetTtl::AtMs(at) => at,
            SetTtl::InMs(ms) => now_ms.saturating_add(ms),
        }
    }
}

/// EXPIRE's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireCondition {
    /// Only if the key has no expiry.
    Nx,
    /// Only if the key has an expiry.
    Xx,
    /// Only if the new expiry is later than the current one (none counts
    /// as infinitely late).
    Gt,
    /// Only if the new expiry is earlier than the current one (none counts
    /// as infinitely late).
    Lt,
    /// XX and LT together: only if the key has an expiry and the new one
    /// is earlier.
    XxLt,
}

/// An expiry-changing read-modify-write of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpireOp {
    /// EXPIRE family: `when` in milliseconds, from now if `relative`.
    Expire {
        key: Bytes,
        when: i64,
        relative: bool,
        condition: Option<ExpireCondition>,
        command: &'static str,
    },
    /// PERSIST.
    Persist { key: Bytes },
    /// GETEX: answer the value; `Keep` leaves the expiry alone. A time
    /// Redis refuses is answered only when the key exists: Redis looks the
    /// key up before it reads the time, so a missing key answers nil.
    GetEx {
        key: Bytes,
        ttl: Result<SetTtl, Reply>,
    },
}

/// What TTL-like command reads and how it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlReply {
    /// TTL: seconds left, rounded.
    Seconds,
    /// PTTL: milliseconds left.
    Millis,
    /// EXPIRETIME: the Unix time in seconds.
    AtSeconds,
    /// PEXPIRETIME: the Unix time in milliseconds.
    AtMillis,
}

/// `ERR invalid expire time in 'name' command`.
pub fn invalid_expire_time(command: &str) -> Reply {
    Reply::err(format!("invalid expire time in '{command}' command"))
}

/// Parses an expiry command; `None` if `name` is not one.
pub fn parse(name: &'static str, args: &[Bytes]) -> Option<Parsed> {
    let key = || args.first().cloned().unwrap_or_default();
    let op = match name {
        "ttl" => Op::Ttl(key(), TtlReply::Seconds),
        "pttl" => Op::Ttl(key(), TtlReply::Millis),
        "expiretime" => Op::Ttl(key(), TtlReply::AtSeconds),
        "pexpiretime" => Op::Ttl(key(), TtlReply::AtMillis),
        "persist" => Op::Rmw(Rmw::Expiry(ExpireOp::Persist { key: key() })),
        "expire" | "pexpire" | "expireat" | "pexpireat" => return Some(parse_expire(name, args)),
        "setex" | "psetex" => return Some(parse_setex(name, args)),
        "getex" => return Some(parse_getex(args)),
        _ => return None,
    };
    Some(Parsed::Engine(op))
}

/// `EXPIRE key n [NX|XX|GT|LT]` and the P/AT variants.
fn parse_expire(name: &'static str, args: &[Bytes]) -> Parsed {
    let options = args.get(2..).unwrap_or_default();
    // Every option is read before any pair is judged, as Redis does.
    if let Some(unknown) = options.iter().find(|o| {
        !matches!(
            o.to_ascii_uppercase().as_slice(),
            b"NX" | b"XX" | b"GT" | b"LT"
        )
    }) {
        // Redis prints the option as a C string: up to its first NUL.
        let shown = unknown.split(|b| *b == 0).next().unwrap_or_default();
        return Parsed::Reply(Reply::err(format!(
            "Unsupported option {}",
            String::from_utf8_lossy(shown)
        )));
    }
    let mut condition = None;
    for option in options {
        let wanted = match option.to_ascii_uppercase().as_slice() {
            b"NX" => ExpireCondition::Nx,
            b"XX" => ExpireCondition::Xx,
            b"GT" => ExpireCondition::Gt,
            _ => ExpireCondition::Lt,
        };
        condition = match combine(condition, wanted) {
            Ok(condition) => Some(condition),
            Err(reply) => return Parsed::Reply(reply),
        };
    }
    let Some(when) = args.get(1).and_then(|arg| int_arg(arg)) else {
        return Parsed::Reply(not_an_integer());
    };
    let seconds = matches!(name, "expire" | "expireat");
    let when = match seconds {
        true => match when.checked_mul(1000) {
            Some(ms) => ms,
            None => return Parsed::Reply(invalid_expire_time(name)),
        },
        false => when,
    };
    Parsed::Engine(Op::Rmw(Rmw::Expiry(ExpireOp::Expire {
        key: args.first().cloned().unwrap_or_default(),
        when,
        relative: matches!(name, "expire" | "pexpire"),
        condition,
        command: name,
    })))
}

/// Adds one condition flag to those seen, as Redis refuses combinations.
fn combine(
    seen: Option<ExpireCondition>,
    wanted: ExpireCondition,
) -> Result<ExpireCondition, Reply> {
    use ExpireCondition::*;
    let nx_error = || Reply::err("NX and XX, GT or LT options at the same time are not compatible");
    match (seen, wanted) {
        (None, wanted) => Ok(wanted),
        (Some(Nx), Nx) => Ok(Nx),
        (Some(Nx), _) | (Some(_), Nx) => Err(nx_error()),
        (Some(Gt), Lt) | (Some(Lt | XxLt), Gt) => Err(Reply::err(
            "GT and LT options at the same time are not compatible",
        )),
        // GT already needs an expiry, so XX adds nothing to it.
        (Some(Xx | Gt), Gt) | (Some(Gt), Xx) => Ok(Gt),
        (Some(Xx | Lt | XxLt), Lt) | (Some(Lt | XxLt), Xx) => {
            Ok(if seen == Some(Lt) && wanted == Lt {
                Lt
            } else {
                XxLt
            })
        }
        (Some(Xx), Xx) => Ok(Xx),
        (Some(XxLt), XxLt) => Ok(XxLt),
        (Some(_), XxLt) => Ok(XxLt),
    }
}

/// `SETEX key seconds value`, `PSETEX key milliseconds value`.
fn parse_setex(name: &'static str, args: &[Bytes]) -> Parsed {
    let (Some(key), Some(amount), Some(value)) = (args.first(), args.get(1), args.get(2)) else {
        return Parsed::Reply(super::wrong_arity(name));
    };
    let unit: &[u8] = if name == "setex" { b"EX" } else { b"PX" };
    let ttl = match expiry_option(unit, amount, name) {
        Ok(ttl) => ttl,
        Err(reply) => return Parsed::Reply(reply),
    };
    Parsed::Engine(Op::Rmw(Rmw::Set {
        key: key.clone(),
        value: value.clone(),
        condition: None,
        get: false,
        reply: super::rmw::SetReply::Status,
        ttl,
    }))
}

/// `GETEX key [EX s | PX ms | EXAT t | PXAT t | PERSIST]`.
fn parse_getex(args: &[Bytes]) -> Parsed {
    let key = args.first().cloned().unwrap_or_default();
    let options = match TtlOptions::parse(args.get(1..).unwrap_or_default(), false) {
        Ok(options) => options,
        Err(reply) => return Parsed::Reply(reply),
    };
    let ttl = match options.ttl {
        TtlOption::None => Ok(SetTtl::Keep),
        TtlOption::Persist => Ok(SetTtl::Clear),
        TtlOption::Keep => return Parsed::Reply(syntax_error()),
        TtlOption::Expire(unit, amount) => expiry_option(&unit, &amount, "getex"),
    };
    Parsed::Engine(Op::Rmw(Rmw::Expiry(ExpireOp::GetEx { key, ttl })))
}

/// The expiry option of a SET or GETEX, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtlOption {
    None,
    /// KEEPTTL (SET only).
    Keep,
    /// PERSIST (GETEX only).
    Persist,
    /// EX, PX, EXAT or PXAT (upper case) and its amount, not yet checked.
    Expire(Vec<u8>, Bytes),
}

/// The options of `SET key value [NX|XX] [GET] [expiry]` or `GETEX key
/// [expiry|PERSIST]`, read as Redis 7.0 reads them
/// (`parseExtendedStringArgumentsOrReply`): an option may repeat (the last
/// expiry's amount counts), options that exclude each other are a syntax
/// error, and an expiry's amount is checked only after every option is
/// read, so a syntax error is reported before a bad amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlOptions {
    pub nx: bool,
    pub xx: bool,
    pub get: bool,
    pub ttl: TtlOption,
}

impl TtlOptions {
    /// Reads `options` of SET (`set` true) or GETEX.
    pub fn parse(options: &[Bytes], set: bool) -> Result<TtlOptions, Reply> {
        let mut parsed = TtlOptions {
            nx: false,
            xx: false,
            get: false,
            ttl: TtlOption::None,
        };
        let mut i = 0;
        while let Some(option) = options.get(i) {
            let upper = option.to_ascii_uppercase();
            let next = options.get(i + 1);
            let ttl_kind = match &parsed.ttl {
                TtlOption::None => None,
                TtlOption::Keep => Some(&b"KEEPTTL"[..]),
                TtlOption::Persist => Some(&b"PERSIST"[..]),
                TtlOption::Expire(unit, _) => Some(unit.as_slice()),
            };
            let ttl_free_or = |same: &[u8]| ttl_kind.is_none_or(|kind| kind == same);
            match upper.as_slice() {
                b"NX" if set && !parsed.xx => parsed.nx = true,
                b"XX" if set && !parsed.nx => parsed.xx = true,
                b"GET" if set => parsed.get = true,
                b"KEEPTTL" if set && ttl_free_or(b"KEEPTTL") => parsed.ttl = TtlOption::Keep,
                b"PERSIST" if !set && ttl_free_or(b"PERSIST") => parsed.ttl = TtlOption::Persist,
                unit if is_expiry_unit(unit) && ttl_free_or(unit) && next.is_some() => {
                    let amount = next.cloned().unwrap_or_default();
                    parsed.ttl = TtlOption::Expire(unit.to_vec(), amount);
                    i += 1;
                }
                _ => return Err(syntax_error()),
            }
            i += 1;
        }
        Ok(parsed)
    }
}

/// True for EX, PX, EXAT and PXAT, any case.
pub fn is_expiry_unit(unit: &[u8]) -> bool {
    matches!(
        unit.to_ascii_uppercase().as_slice(),
        b"EX" | b"PX" | b"EXAT" | b"PXAT"
    )
}

/// The expiry an `EX`/`PX`/`EXAT`/`PXAT` option and its amount give, with
/// Redis's errors: not an integer, or not positive, or too large to be
/// milliseconds (`ERR invalid expire time in 'command' command`).
pub fn expiry_option(unit: &[u8], amount: &[u8], command: &str) -> Result<SetTtl, Reply> {
    let amount = int_arg(amount).ok_or_else(not_an_integer)?;
    let invalid = || invalid_expire_time(command);
    if amount <= 0 {
        return Err(invalid());
    }
    let upper = unit.to_ascii_uppercase();
    let ms = match upper.as_slice() {
        b"EX" | b"EXAT" => amount.checked_mul(1000).ok_or_else(invalid)?,
        _ => amount,
    };
    let ms = ms as u64;
    match upper.as_slice() {
        b"EX" | b"PX" => {
            // Redis refuses a relative time that overflows when added to now.
            let now = crate::Clock::now_ms(&crate::SystemClock);
            if now.saturating_add(ms) > i64::MAX as u64 {
                return Err(invalid());
            }
            Ok(SetTtl::InMs(ms))
        }
        _ => Ok(SetTtl::AtMs(ms)),
    }
}

impl ExpireOp {
    /// The key read and written.
    pub fn key(&self) -> &Bytes {
        match self {
            ExpireOp::Expire { key, .. }
            | ExpireOp::Persist { key }
            | ExpireOp::GetEx { key, .. } => key,
        }
    }

    /// From the key's value and expiry (0: none; `None` if absent) and the
    /// time: the writes and the reply.
    pub fn apply(self, current: Option<(Bytes, u64)>, now_ms: u64) -> (Vec<Mutation>, Reply) {
        match self {
            ExpireOp::Expire {
                key,
                when,
                relative,
                condition,
                command,
            } => expire(key, current, now_ms, (when, relative), condition, command),
            ExpireOp::Persist { key } => match current {
                Some((value, at)) if at != 0 => (vec![put(key, value, 0)], Reply::Integer(1)),
                _ => (Vec::new(), Reply::Integer(0)),
            },
            ExpireOp::GetEx { key, ttl } => {
                let Some((value, at)) = current else {
                    return (Vec::new(), Reply::Null);
                };
                let ttl = match ttl {
                    Ok(ttl) => ttl,
                    Err(refused) => return (Vec::new(), refused),
                };
                let reply = Reply::Bulk(value.clone());
                let new = ttl.resolve(at, now_ms);
                if new == at {
                    return (Vec::new(), reply);
                }
                (vec![write_with_expiry(key, value, new, now_ms)], reply)
            }
        }
    }
}

fn expire(
    key: Bytes,
    current: Option<(Bytes, u64)>,
    now_ms: u64,
    (when, relative): (i64, bool),
    condition: Option<ExpireCondition>,
    command: &str,
) -> (Vec<Mutation>, Reply) {
    let when = match relative {
        true => match i64::try_from(now_ms)
            .ok()
            .and_then(|now| when.checked_add(now))
        {
            Some(when) => when,
            None => return (Vec::new(), invalid_expire_time(command)),
        },
        false => when,
    };
    let Some((value, at)) = current else {
        return (Vec::new(), Reply::Integer(0));
    };
    // Redis's "no expiry" is -1 here; GT treats it as infinite.
    let has = at != 0;
    let at = at as i64;
    let allowed = match condition {
        None => true,
        Some(ExpireCondition::Nx) => !has,
        Some(ExpireCondition::Xx) => has,
        Some(ExpireCondition::Gt) => has && when > at,
        Some(ExpireCondition::Lt) => !has || when < at,
        Some(ExpireCondition::XxLt) => has && when < at,
    };
    if !allowed {
        return (Vec::new(), Reply::Integer(0));
    }
    // Not positive, or at or before now: the key goes (Redis deletes it).
    let write = match u64::try_from(when) {
        Ok(at) if at > now_ms => put(key, value, at),
        _ => Mutation::new(key, None),
    };
    (vec![write], Reply::Integer(1))
}

/// The value rewritten to expire at `at` (0: never); a time already past
/// (or not positive) deletes the key instead.
fn write_with_expiry(key: Bytes, value: Bytes, at: u64, now_ms: u64) -> Mutation {
    match at {
        0 => put(key, value, 0),
        at if at <= now_ms => Mutation::new(key, None),
        at => put(key, value, at),
    }
}

fn put(key: Bytes, value: Bytes, expire_at_ms: u64) -> Mutation {
    Mutation {
        key,
        value: Some(value),
        expire_at_ms,
    }
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 without the key, -1 without an
/// expiry.
pub fn execute_ttl(db: &Db, key: Bytes, kind: TtlReply) -> LocalBoxFuture<'static, Reply> {
    let ttl = db.ttl(key);
    async move {
        match ttl.await {
            Ok(ttl) => Reply::Integer(ttl_number(ttl, kind)),
            Err(e) => engine_error(&e),
        }
    }
    .boxed_local()
}

fn ttl_number(ttl: Ttl, kind: TtlReply) -> i64 {
    let (at_ms, remaining_ms) = match ttl {
        Ttl::Absent => return -2,
        Ttl::Never => return -1,
        Ttl::At {
            at_ms,
            remaining_ms,
        } => (at_ms as i64, remaining_ms as i64),
    };
    match kind {
        TtlReply::Seconds => (remaining_ms + 500) / 1000,
        TtlReply::Millis => remaining_ms,
        // Rounded, as Redis's EXPIRETIME rounds.
        TtlReply::AtSeconds => (at_ms + 500) / 1000,
        TtlReply::AtMillis => at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter().map(|s| b(s)).collect()
    }

    fn error_of(parsed: Option<Parsed>) -> String {
        match parsed {
            Some(Parsed::Reply(Reply::Error(e))) => e,
            other => format!("not an error: {other:?}"),
        }
    }

    fn expire_op(name: &'static str, list: &[&str]) -> ExpireOp {
        match parse(name, &args(list)) {
            Some(Parsed::Engine(Op::Rmw(Rmw::Expiry(op)))) => op,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expire_options_are_checked_as_redis() {
        let err = |list: &[&str]| error_of(parse("expire", &args(list)));
        assert_eq!(
            err(&["k", "10", "NX", "XX"]),
            "ERR NX and XX, GT or LT options at the same time are not compatible"
        );
        assert_eq!(
            err(&["k", "10", "GT", "LT"]),
            "ERR GT and LT options at the same time are not compatible"
        );
        assert_eq!(err(&["k", "10", "foo"]), "ERR Unsupported option foo");
        assert_eq!(
            err(&["k", "ten"]),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err(&["k", "9223372036854776"]),
            "ERR invalid expire time in 'expire' command"
        );
        assert!(matches!(
            expire_op("pexpireat", &["k", "5", "xx", "gt"]),
            ExpireOp::Expire {
                when: 5,
                relative: false,
                condition: Some(ExpireCondition::Gt),
                ..
            }
        ));
    }

    #[test]
    fn expire_conditions_and_past_times() {
        let at = |when, condition| ExpireOp::Expire {
            key: b("k"),
            when,
            relative: false,
            condition,
            command: "pexpireat",
        };
        let now = 1_000;
        let v = || Some((b("v"), 0));
        let timed = || Some((b("v"), 5_000));
        let reply = |op: ExpireOp, current| op.apply(current, now).1;
        assert_eq!(reply(at(2_000, None), None), Reply::Integer(0));
        assert_eq!(
            reply(at(2_000, Some(ExpireCondition::Nx)), timed()),
            Reply::Integer(0)
        );
        assert_eq!(
            reply(at(2_000, Some(ExpireCondition::Nx)), v()),
            Reply::Integer(1)
        );
        assert_eq!(
            reply(at(2_000, Some(ExpireCondition::Xx)), v()),
            Reply::Integer(0)
        );
        assert_eq!(
            reply(at(2_000, Some(ExpireCondition::Gt)), v()),
            Reply::Integer(0)
        );
        assert_eq!(
            reply(at(9_000, Some(ExpireCondition::Gt)), timed()),
            Reply::Integer(1)
        );
        assert_eq!(
            reply(at(2_000, Some(ExpireCondition::Lt)), v()),
            Reply::Integer(1)
        );
        assert_eq!(
            reply(at(9_000, Some(ExpireCondition::Lt)), timed()),
            Reply::Integer(0)
        );
        let (writes, _) = at(2_000, None).apply(v(), now);
        assert_eq!(writes, vec![put(b("k"), b("v"), 2_000)]);
        // A time at or before now deletes.
        let (writes, reply) = at(1_000, None).apply(v(), now);
        assert_eq!(
            (writes, reply),
            (vec![Mutation::new(b("k"), None)], Reply::Integer(1))
        );
        let (writes, _) = at(-5, None).apply(v(), now);
        assert_eq!(writes, vec![Mutation::new(b("k"), None)]);
        let overflow = ExpireOp::Expire {
            key: b("k"),
            when: i64::MAX - 10,
            relative: true,
            condition: None,
            command: "pexpire",
        };
        assert_eq!(
            overflow.apply(v(), now).1,
            Reply::err("invalid expire time in 'pexpire' command")
        );
    }

    #[test]
    fn set_style_options() {
        let ok = |unit: &str, n: &str| expiry_option(unit.as_bytes(), n.as_bytes(), "set");
        assert_eq!(ok("ex", "10"), Ok(SetTtl::InMs(10_000)));
        assert_eq!(ok("PX", "10"), Ok(SetTtl::InMs(10)));
        assert_eq!(ok("exat", "10"), Ok(SetTtl::AtMs(10_000)));
        assert_eq!(ok("pxat", "10"), Ok(SetTtl::AtMs(10)));
        let invalid = Err(Reply::err("invalid expire time in 'set' command"));
        assert_eq!(ok("ex", "0"), invalid);
        assert_eq!(ok("ex", "-1"), invalid);
        assert_eq!(ok("ex", "10000000000000000"), invalid);
        assert_eq!(ok("px", "9223372036854775807"), invalid);
        assert_eq!(ok("ex", "x"), Err(not_an_integer()));
        assert_eq!(
            error_of(parse("setex", &args(&["k", "0", "v"]))),
            "ERR invalid expire time in 'setex' command"
        );
        assert_eq!(
            error_of(parse("getex", &args(&["k", "persist", "ex"]))),
            "ERR syntax error"
        );
        // GETEX's time is judged only for a key that exists.
        let Some(Parsed::Engine(Op::Rmw(Rmw::Expiry(getex)))) =
            parse("getex", &args(&["k", "px", "-1"]))
        else {
            panic!("GETEX with a bad time must reach the key");
        };
        assert_eq!(getex.clone().apply(None, 1).1, Reply::Null);
        assert_eq!(
            getex.apply(Some((b("v"), 0)), 1).1,
            Reply::err("invalid expire time in 'getex' command")
        );
    }

    #[test]
    fn getex_and_persist() {
        let getex = |ttl| ExpireOp::GetEx {
            key: b("k"),
            ttl: Ok(ttl),
        };
        let (writes, reply) = getex(SetTtl::InMs(500)).apply(Some((b("v"), 0)), 1_000);
        assert_eq!(
            (writes, reply),
            (vec![put(b("k"), b("v"), 1_500)], Reply::Bulk(b("v")))
        );
        let (writes, _) = getex(SetTtl::Keep).apply(Some((b("v"), 3_000)), 1_000);
        assert!(writes.is_empty());
        let (writes, _) = getex(SetTtl::Clear).apply(Some((b("v"), 3_000)), 1_000);
        assert_eq!(writes, vec![put(b("k"), b("v"), 0)]);
        assert_eq!(getex(SetTtl::Clear).apply(None, 1).1, Reply::Null);
        let persist = || ExpireOp::Persist { key: b("k") };
        assert_eq!(persist().apply(Some((b("v"), 0)), 1).1, Reply::Integer(0));
        assert_eq!(persist().apply(Some((b("v"), 9)), 1).1, Reply::Integer(1));
        assert_eq!(persist().apply(None, 1).1, Reply::Integer(0));
    }

    #[test]
    fn ttl_numbers_round_as_redis() {
        let at = |remaining_ms| Ttl::At {
            at_ms: 1_700_000_000_499,
            remaining_ms,
        };
        assert_eq!(ttl_number(Ttl::Absent, TtlReply::Seconds), -2);
        assert_eq!(ttl_number(Ttl::Never, TtlReply::Millis), -1);
        assert_eq!(ttl_number(at(1_499), TtlReply::Seconds), 1);
        assert_eq!(ttl_number(at(1_500), TtlReply::Seconds), 2);
        assert_eq!(ttl_number(at(1_500), TtlReply::Millis), 1_500);
        assert_eq!(ttl_number(at(1), TtlReply::AtSeconds), 1_700_000_000);
        let half_past = Ttl::At {
            at_ms: 1_700_000_000_500,
            remaining_ms: 1,
        };
        assert_eq!(ttl_number(half_past, TtlReply::AtSeconds), 1_700_000_001);
        assert_eq!(ttl_number(at(1), TtlReply::AtMillis), 1_700_000_000_499);
    }
}
