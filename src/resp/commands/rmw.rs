//! Read-modify-writes: commands whose writes depend on what the keys hold
//! (INCR family, INCRBYFLOAT, APPEND, SET NX/XX/GET, SETNX, GETSET, GETDEL,
//! SETRANGE, SETBIT, BITOP, MSETNX, RENAME, RENAMENX, COPY).
//!
//! Each is pure here: [`Rmw::keys`] names what it reads, [`Rmw::apply`]
//! turns their values into the writes and the reply. The
//! [`Counter`](crate::resp::counter::Counter) actor runs them one at a time
//! for the whole server, writing each one's writes as one atomic batch.

use bytes::{Bytes, BytesMut};

use super::bits::BitOperation;
use super::expire::{ExpireOp, SetTtl};
use super::{int_arg, not_an_integer};
use crate::resp::reply::Reply;

/// The longest string SETRANGE, SETBIT and APPEND may build: the engine's
/// default value limit. Checked before anything is allocated.
pub const MAX_STRING_BYTES: usize = 32 << 20;

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

/// Writes to make: a value to put, or `None` to delete.
pub type Writes = Vec<(Bytes, Option<Bytes>)>;

/// A read-modify-write.
#[derive(Debug, Clone, PartialEq)]
pub enum Rmw {
    IncrBy {
        key: Bytes,
        by: i64,
    },
    IncrByFloat {
        key: Bytes,
        by: f64,
    },
    Append {
        key: Bytes,
        value: Bytes,
    },
    Set {
        key: Bytes,
        value: Bytes,
        condition: Option<Condition>,
        /// SET ... GET (and GETSET): answer the old value.
        get: bool,
        reply: SetReply,
        /// What the write does to the key's expiry (plain SET: clears it).
        ttl: SetTtl,
    },
    GetDel {
        key: Bytes,
    },
    SetRange {
        key: Bytes,
        offset: usize,
        value: Bytes,
    },
    SetBit {
        key: Bytes,
        offset: usize,
        bit: bool,
    },
    /// MSETNX: all or none, only if every key is absent.
    MSetNx(Vec<(Bytes, Bytes)>),
    /// RENAME (`only_if_absent` false) and RENAMENX.
    Rename {
        from: Bytes,
        to: Bytes,
        only_if_absent: bool,
    },
    Copy {
        from: Bytes,
        to: Bytes,
        replace: bool,
    },
    /// EXPIRE family, PERSIST, GETEX: changes a key's expiry (the counter
    /// calls [`ExpireOp::apply`] with the expiry, not `Rmw::apply`).
    Expiry(ExpireOp),
    /// MOVE: `from` to `to` (the same key in another database) if `to` is
    /// absent; 1 if moved, else 0.
    Move {
        from: Bytes,
        to: Bytes,
    },
    /// BITOP: `dest` gets `operation` over the values of `sources`
    /// (`bits.rs`); an empty result deletes it. Answers the result's length.
    BitOp {
        operation: BitOperation,
        dest: Bytes,
        sources: Vec<Bytes>,
    },
}

impl Rmw {
    /// The keys read, in the order `apply` takes their values.
    pub fn keys(&self) -> Vec<Bytes> {
        match self {
            Rmw::IncrBy { key, .. }
            | Rmw::IncrByFloat { key, .. }
            | Rmw::Append { key, .. }
            | Rmw::Set { key, .. }
            | Rmw::GetDel { key }
            | Rmw::SetRange { key, .. }
            | Rmw::SetBit { key, .. } => vec![key.clone()],
            Rmw::MSetNx(pairs) => pairs.iter().map(|(key, _)| key.clone()).collect(),
            Rmw::Expiry(op) => vec![op.key().clone()],
            Rmw::Rename { from, to, .. } | Rmw::Copy { from, to, .. } | Rmw::Move { from, to } => {
                vec![from.clone(), to.clone()]
            }
            Rmw::BitOp { sources, .. } => sources.clone(),
        }
    }

    /// From the keys' current values (as `keys` orders them): the writes
    /// and the reply.
    pub fn apply(self, olds: Vec<Option<Bytes>>) -> (Writes, Reply) {
        if let Rmw::BitOp {
            operation, dest, ..
        } = self
        {
            let result = operation.apply(&olds);
            let len = result.len() as i64;
            let write = (!result.is_empty()).then(|| Bytes::from(result));
            return (vec![(dest, write)], Reply::Integer(len));
        }
        let mut olds = olds.into_iter();
        let first = olds.next().flatten();
        let second = olds.next().flatten();
        match self {
            Rmw::MSetNx(pairs) => mset_nx(
                pairs,
                first.is_some() || second.is_some() || olds.any(|o| o.is_some()),
            ),
            Rmw::Rename {
                from,
                to,
                only_if_absent,
            } => rename(from, to, first, second.is_some(), only_if_absent),
            Rmw::Copy { to, replace, .. } => copy(to, first, second.is_some(), replace),
            Rmw::Move { from, to } => match (first, second) {
                (Some(value), None) => (vec![(from, None), (to, Some(value))], Reply::Integer(1)),
                _ => (Vec::new(), Reply::Integer(0)),
            },
            single => {
                let key = single.keys().swap_remove(0);
                let (write, reply) = single.apply_one(first);
                (write.map(|w| vec![(key, w)]).unwrap_or_default(), reply)
            }
        }
    }

    /// The expiry a put made by this command carries, given the
    /// expiries of the keys read (as `keys` orders them; 0: none) and now.
    /// As Redis: a plain SET clears it, KEEPTTL and in-place changes
    /// (INCR, APPEND, SETRANGE, SETBIT) keep it, RENAME and COPY carry the
    /// source's.
    pub fn expiry_of_write(&self, expiries: &[u64], now_ms: u64) -> u64 {
        let first = expiries.first().copied().unwrap_or(0);
        match self {
            Rmw::Set { ttl, .. } => ttl.resolve(first, now_ms),
            // BITOP sets its destination as SET does.
            Rmw::MSetNx(_) | Rmw::GetDel { .. } | Rmw::BitOp { .. } => 0,
            _ => first,
        }
    }

    /// A one-key command: `Some(write)` to make (`Some(None)` deletes).
    fn apply_one(self, old: Option<Bytes>) -> (Option<Option<Bytes>>, Reply) {
        let put = |value: Bytes| Some(Some(value));
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
                    Some(n) => (put(Bytes::from(n.to_string())), Reply::Integer(n)),
                    None => (None, Reply::err("increment or decrement would overflow")),
                }
            }
            Rmw::IncrByFloat { by, .. } => incr_float(old, by),
            Rmw::Append { value, .. } => {
                let old = old.unwrap_or_default();
                if old.len() + value.len() > MAX_STRING_BYTES {
                    return (None, too_long());
                }
                let mut joined = BytesMut::from(old.as_ref());
                joined.extend_from_slice(&value);
                let len = joined.len() as i64;
                (put(joined.freeze()), Reply::Integer(len))
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
                (allowed.then(|| Some(value)), answer)
            }
            Rmw::GetDel { .. } => (old.as_ref().map(|_| None), Reply::value(old)),
            Rmw::SetRange { offset, value, .. } => set_range(old, offset, &value),
            Rmw::SetBit { offset, bit, .. } => set_bit(old, offset, bit),
            Rmw::MSetNx(_)
            | Rmw::Rename { .. }
            | Rmw::Copy { .. }
            | Rmw::Move { .. }
            | Rmw::BitOp { .. }
            | Rmw::Expiry(_) => (None, Reply::err("internal error: not a one-key command")),
        }
    }
}

/// `ERR string exceeds maximum allowed size`.
fn too_long() -> Reply {
    Reply::err(format!(
        "string exceeds maximum allowed size ({MAX_STRING_BYTES} bytes)"
    ))
}

fn incr_float(old: Option<Bytes>, by: f64) -> (Option<Option<Bytes>>, Reply) {
    let current = match &old {
        None => Some(0.0),
        Some(bytes) => float_arg(bytes),
    };
    let Some(current) = current else {
        return (None, Reply::err("value is not a valid float"));
    };
    let sum = current + by;
    if !sum.is_finite() {
        return (None, Reply::err("increment would produce NaN or Infinity"));
    }
    let text = Bytes::from(format_float(sum));
    (Some(Some(text.clone())), Reply::Bulk(text))
}

/// A float argument as Redis reads one: no surrounding spaces, not NaN
/// (an infinity parses; INCRBYFLOAT then refuses the infinite result).
pub fn float_arg(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text.is_empty() || text.trim() != text {
        return None;
    }
    text.parse::<f64>().ok().filter(|f| !f.is_nan())
}

/// A float as INCRBYFLOAT prints it: no exponent, no trailing zeros.
fn format_float(value: f64) -> String {
    if value == 0.0 {
        return "0".into(); // Redis prints -0 as 0 too
    }
    let text = format!("{value:.17}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    // Seventeen digits show binary noise ("10.50000000000000000" is fine):
    // keep the shortest form when it reads back the same. (Redis adds in
    // long double, 80 bits on x86, and prints 17 decimals of that, so some
    // sums differ in their last digits: 0.1 + 0.2 is 0.3 there and
    // 0.30000000000000004 here.)
    let shortest = format!("{value}");
    if shortest.parse::<f64>().ok() == Some(value) && shortest.len() <= text.len() {
        shortest
    } else {
        text.to_string()
    }
}

fn set_range(old: Option<Bytes>, offset: usize, value: &[u8]) -> (Option<Option<Bytes>>, Reply) {
    let old = old.unwrap_or_default();
    if value.is_empty() {
        return (None, Reply::Integer(old.len() as i64));
    }
    let Some(end) = offset
        .checked_add(value.len())
        .filter(|end| *end <= MAX_STRING_BYTES)
    else {
        return (None, too_long());
    };
    let mut new = BytesMut::from(old.as_ref());
    if new.len() < end {
        new.resize(end, 0);
    }
    new[offset..end].copy_from_slice(value);
    let len = new.len() as i64;
    (Some(Some(new.freeze())), Reply::Integer(len))
}

fn set_bit(old: Option<Bytes>, offset: usize, bit: bool) -> (Option<Option<Bytes>>, Reply) {
    let byte = offset / 8;
    if byte >= MAX_STRING_BYTES {
        return (
            None,
            Reply::err("bit offset is not an integer or out of range"),
        );
    }
    let mask = 0x80u8 >> (offset % 8);
    // As in Redis, a bit already so in a value that need not grow is no
    // write: it leaves the key (and a WATCH on it) alone.
    if let Some(current) = old.as_ref().and_then(|v| v.get(byte))
        && (current & mask != 0) == bit
    {
        return (None, Reply::Integer(i64::from(bit)));
    }
    let mut new = BytesMut::from(old.unwrap_or_default().as_ref());
    if new.len() <= byte {
        new.resize(byte + 1, 0);
    }
    let was = new[byte] & mask != 0;
    if bit {
        new[byte] |= mask;
    } else {
        new[byte] &= !mask;
    }
    (Some(Some(new.freeze())), Reply::Integer(i64::from(was)))
}

fn mset_nx(pairs: Vec<(Bytes, Bytes)>, any_present: bool) -> (Writes, Reply) {
    if any_present {
        return (Vec::new(), Reply::Integer(0));
    }
    let writes = pairs.into_iter().map(|(k, v)| (k, Some(v))).collect();
    (writes, Reply::Integer(1))
}

fn rename(
    from: Bytes,
    to: Bytes,
    value: Option<Bytes>,
    to_exists: bool,
    only_if_absent: bool,
) -> (Writes, Reply) {
    let Some(value) = value else {
        return (Vec::new(), Reply::err("no such key"));
    };
    if from == to {
        let reply = if only_if_absent {
            Reply::Integer(0)
        } else {
            Reply::ok()
        };
        return (Vec::new(), reply);
    }
    if only_if_absent && to_exists {
        return (Vec::new(), Reply::Integer(0));
    }
    let reply = if only_if_absent {
        Reply::Integer(1)
    } else {
        Reply::ok()
    };
    (vec![(from, None), (to, Some(value))], reply)
}

fn copy(to: Bytes, value: Option<Bytes>, to_exists: bool, replace: bool) -> (Writes, Reply) {
    match value {
        Some(value) if replace || !to_exists => (vec![(to, Some(value))], Reply::Integer(1)),
        _ => (Vec::new(), Reply::Integer(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn one(rmw: Rmw, old: Option<&str>) -> (Writes, Reply) {
        rmw.apply(vec![old.map(b)])
    }

    fn put(key: &str, value: &str) -> Writes {
        vec![(b(key), Some(b(value)))]
    }

    #[test]
    fn incr_counts_refuses_text_and_overflow() {
        let incr = |by, old| one(Rmw::IncrBy { key: b("k"), by }, old);
        assert_eq!(incr(1, None), (put("k", "1"), Reply::Integer(1)));
        assert_eq!(incr(-5, Some("3")), (put("k", "-2"), Reply::Integer(-2)));
        assert_eq!(incr(1, Some("x")).1, not_an_integer());
        let overflow = incr(1, Some(&i64::MAX.to_string()));
        assert!(overflow.0.is_empty());
        assert_eq!(
            overflow.1,
            Reply::Error("ERR increment or decrement would overflow".into())
        );
    }

    #[test]
    fn incrbyfloat_prints_like_redis() {
        let incr = |by, old| one(Rmw::IncrByFloat { key: b("k"), by }, old);
        assert_eq!(incr(0.1, Some("10.50")).1, Reply::Bulk(b("10.6")));
        assert_eq!(incr(5.0e3, Some("5.0e3")).1, Reply::Bulk(b("10000")));
        assert_eq!(incr(1.5, None).0, put("k", "1.5"));
        assert!(matches!(incr(1.0, Some("abc")).1, Reply::Error(_)));
        assert!(matches!(
            incr(f64::MAX, Some(&f64::MAX.to_string())).1,
            Reply::Error(_)
        ));
        assert_eq!(float_arg(b" 1"), None);
        assert_eq!(float_arg(b"nan"), None);
        let inf = one(
            Rmw::IncrByFloat {
                key: b("k"),
                by: f64::INFINITY,
            },
            None,
        );
        assert!(matches!(inf.1, Reply::Error(e) if e.contains("would produce NaN or Infinity")));
        assert_eq!(float_arg(b"1e3"), Some(1000.0));
    }

    #[test]
    fn conditional_sets_and_getdel() {
        let set = |condition, get, reply| Rmw::Set {
            ttl: SetTtl::Clear,
            key: b("k"),
            value: b("v"),
            condition,
            get,
            reply,
        };
        let nx = set(Some(Condition::Nx), false, SetReply::Status);
        assert_eq!(one(nx.clone(), None), (put("k", "v"), Reply::ok()));
        assert_eq!(one(nx, Some("old")), (vec![], Reply::Null));
        let setnx = set(Some(Condition::Nx), false, SetReply::Flag);
        assert_eq!(one(setnx, Some("o")), (vec![], Reply::Integer(0)));
        let get = set(None, true, SetReply::Status);
        assert_eq!(one(get, Some("o")), (put("k", "v"), Reply::Bulk(b("o"))));
        let getdel = Rmw::GetDel { key: b("k") };
        assert_eq!(
            one(getdel.clone(), Some("o")),
            (vec![(b("k"), None)], Reply::Bulk(b("o")))
        );
        assert_eq!(one(getdel, None), (vec![], Reply::Null));
    }

    #[test]
    fn append_setrange_and_setbit_build_strings_within_the_limit() {
        let append = Rmw::Append {
            key: b("k"),
            value: b("de"),
        };
        assert_eq!(
            one(append, Some("abc")),
            (put("k", "abcde"), Reply::Integer(5))
        );
        let range = |offset, value: &str| Rmw::SetRange {
            key: b("k"),
            offset,
            value: b(value),
        };
        assert_eq!(
            one(range(1, "XY"), Some("abcd")),
            (put("k", "aXYd"), Reply::Integer(4))
        );
        assert_eq!(
            one(range(2, "z"), None).0,
            vec![(b("k"), Some(Bytes::from_static(b"\0\0z")))]
        );
        assert_eq!(one(range(0, ""), Some("abc")), (vec![], Reply::Integer(3)));
        assert!(matches!(
            one(range(MAX_STRING_BYTES, "x"), None).1,
            Reply::Error(_)
        ));
        let bit = |offset, bit| Rmw::SetBit {
            key: b("k"),
            offset,
            bit,
        };
        let (writes, reply) = one(bit(7, true), None);
        assert_eq!(
            (writes, reply),
            (
                vec![(b("k"), Some(Bytes::from_static(b"\x01")))],
                Reply::Integer(0)
            )
        );
        assert_eq!(one(bit(0, false), Some("\u{7f}")).1, Reply::Integer(0));
        // Already so: no write, as in Redis (a WATCH on the key holds).
        assert_eq!(
            one(bit(1, true), Some("\u{40}")),
            (vec![], Reply::Integer(1))
        );
        assert_eq!(
            one(bit(9, false), Some("\u{40}")).0.len(),
            1,
            "grows the value"
        );
        assert!(matches!(
            one(bit(usize::MAX, true), None).1,
            Reply::Error(_)
        ));
    }

    #[test]
    fn multi_key_commands() {
        let pairs = vec![(b("a"), b("1")), (b("b"), b("2"))];
        let msetnx = Rmw::MSetNx(pairs);
        assert_eq!(
            msetnx.clone().apply(vec![None, Some(b("x"))]),
            (vec![], Reply::Integer(0))
        );
        assert_eq!(msetnx.apply(vec![None, None]).1, Reply::Integer(1));
        let rename = |nx| Rmw::Rename {
            from: b("a"),
            to: b("b"),
            only_if_absent: nx,
        };
        assert_eq!(
            rename(false).apply(vec![Some(b("1")), Some(b("2"))]),
            (vec![(b("a"), None), (b("b"), Some(b("1")))], Reply::ok())
        );
        assert_eq!(
            rename(true).apply(vec![Some(b("1")), Some(b("2"))]).1,
            Reply::Integer(0)
        );
        assert!(matches!(
            rename(false).apply(vec![None, None]).1,
            Reply::Error(_)
        ));
        let copy = |replace| Rmw::Copy {
            from: b("a"),
            to: b("b"),
            replace,
        };
        assert_eq!(
            copy(false).apply(vec![Some(b("1")), Some(b("2"))]).1,
            Reply::Integer(0)
        );
        assert_eq!(
            copy(true).apply(vec![Some(b("1")), Some(b("2"))]),
            (vec![(b("b"), Some(b("1")))], Reply::Integer(1))
        );
    }
}
