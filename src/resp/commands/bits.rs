//! Bit reads of a string value: GETBIT, BITCOUNT and BITPOS, as Redis 7.0
//! answers them (`bitops.c`), and BITOP's operations. SETBIT and BITOP
//! are read-modify-writes (`rmw.rs`).
//!
//! A value is a string of bits, the first byte's most significant bit
//! first. A missing key reads as an endless run of zero bits: GETBIT
//! answers 0, BITCOUNT 0 and BITPOS -1 for a one, 0 for a zero, whatever
//! the range. As in Redis, a range's arguments are checked only when the
//! key exists (BITPOS checks its bit argument first): Redis looks the key
//! up before it parses them.

use bytes::Bytes;

use super::{int_arg, not_an_integer, syntax_error};
use crate::resp::reply::Reply;

/// What is read of a value's bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BitRead {
    /// GETBIT: the bit at this offset.
    Get(usize),
    /// BITCOUNT: the arguments after the key (`[start end [BYTE|BIT]]`).
    Count(Vec<Bytes>),
    /// BITPOS: the bit looked for, then the arguments after it
    /// (`[start [end [BYTE|BIT]]]`).
    Pos(bool, Vec<Bytes>),
}

/// BITOP's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitOperation {
    And,
    Or,
    Xor,
    Not,
}

impl BitOperation {
    /// BITOP's first argument, any case.
    pub fn parse(name: &[u8]) -> Option<BitOperation> {
        match name.to_ascii_lowercase().as_slice() {
            b"and" => Some(BitOperation::And),
            b"or" => Some(BitOperation::Or),
            b"xor" => Some(BitOperation::Xor),
            b"not" => Some(BitOperation::Not),
            _ => None,
        }
    }

    /// The operation over `values` (`None`: a missing key), as long as the
    /// longest; shorter values count as padded with zero bytes. NOT takes
    /// the first value only.
    pub fn apply(self, values: &[Option<Bytes>]) -> Vec<u8> {
        let len = values.iter().flatten().map(Bytes::len).max().unwrap_or(0);
        let byte = |value: &Option<Bytes>, i: usize| {
            value.as_ref().and_then(|v| v.get(i)).copied().unwrap_or(0)
        };
        (0..len)
            .map(|i| {
                let mut bytes = values.iter().map(|v| byte(v, i));
                let first = bytes.next().unwrap_or(0);
                match self {
                    BitOperation::And => bytes.fold(first, |a, b| a & b),
                    BitOperation::Or => bytes.fold(first, |a, b| a | b),
                    BitOperation::Xor => bytes.fold(first, |a, b| a ^ b),
                    BitOperation::Not => !first,
                }
            })
            .collect()
    }
}

/// Parses BITPOS's arguments after the key: the bit is checked at once, as
/// Redis does before it looks the key up.
pub fn parse_bitpos(args: &[Bytes]) -> Result<BitRead, Reply> {
    let bit = match args.first().and_then(|a| int_arg(a)) {
        Some(0) => false,
        Some(1) => true,
        Some(_) => return Err(Reply::err("The bit argument must be 1 or 0.")),
        None => return Err(not_an_integer()),
    };
    Ok(BitRead::Pos(
        bit,
        args.get(1..).unwrap_or_default().to_vec(),
    ))
}

impl BitRead {
    /// The reply for a key whose value is `value` (`None`: missing).
    pub fn answer(&self, value: Option<&[u8]>) -> Reply {
        match (self, value) {
            (BitRead::Get(offset), value) => {
                let byte = value.and_then(|v| v.get(offset / 8)).copied();
                let set = byte.unwrap_or(0) & (0x80 >> (offset % 8)) != 0;
                Reply::Integer(i64::from(set))
            }
            (BitRead::Count(_), None) => Reply::Integer(0),
            (BitRead::Pos(bit, _), None) => Reply::Integer(if *bit { -1 } else { 0 }),
            (BitRead::Count(args), Some(value)) => count(value, args).unwrap_or_else(|e| e),
            (BitRead::Pos(bit, args), Some(value)) => {
                position(value, *bit, args).unwrap_or_else(|e| e)
            }
        }
    }
}

/// Whether a range counts bytes (the default) or bits.
fn unit_is_bit(arg: Option<&Bytes>) -> Result<bool, Reply> {
    match arg {
        None => Ok(false),
        Some(unit) if unit.eq_ignore_ascii_case(b"bit") => Ok(true),
        Some(unit) if unit.eq_ignore_ascii_case(b"byte") => Ok(false),
        Some(_) => Err(syntax_error()),
    }
}

fn integer(arg: &Bytes) -> Result<i64, Reply> {
    int_arg(arg).ok_or_else(not_an_integer)
}

/// An inclusive range of `total` units, negative ends counted from the
/// end and both clamped into the value; `None` when it holds nothing.
fn clamp(start: i64, end: i64, total: i64) -> Option<(i64, i64)> {
    let from_end = |i: i64| if i < 0 { (total + i).max(0) } else { i };
    let (start, end) = (from_end(start), from_end(end).min(total - 1));
    (start <= end).then_some((start, end))
}

/// The bit at `position` (most significant first) of `value`.
fn bit_at(value: &[u8], position: i64) -> bool {
    let byte = value.get((position / 8) as usize).copied().unwrap_or(0);
    byte & (0x80 >> (position % 8)) != 0
}

/// The set bits of `value` in the inclusive bit range `first..=last`.
fn ones_between(value: &[u8], first: i64, last: i64) -> i64 {
    let (first_byte, last_byte) = (first / 8, last / 8);
    let mut ones = 0;
    for index in first_byte..=last_byte {
        let mut byte = value.get(index as usize).copied().unwrap_or(0);
        if index == first_byte {
            byte &= 0xFF >> (first % 8);
        }
        if index == last_byte {
            byte &= 0xFF << (7 - last % 8);
        }
        ones += i64::from(byte.count_ones());
    }
    ones
}

/// BITCOUNT of an existing value.
fn count(value: &[u8], args: &[Bytes]) -> Result<Reply, Reply> {
    let bytes = value.len() as i64;
    let (first, last) = match args {
        [] => (0, bytes * 8 - 1),
        [start, end] | [start, end, _] => {
            let (start, end) = (integer(start)?, integer(end)?);
            if start < 0 && end < 0 && start > end {
                return Ok(Reply::Integer(0));
            }
            let bits = unit_is_bit(args.get(2))?;
            let total = if bits { bytes * 8 } else { bytes };
            let Some((start, end)) = clamp(start, end, total) else {
                return Ok(Reply::Integer(0));
            };
            if bits {
                (start, end)
            } else {
                (start * 8, end * 8 + 7)
            }
        }
        _ => return Err(syntax_error()),
    };
    if first > last {
        return Ok(Reply::Integer(0));
    }
    Ok(Reply::Integer(ones_between(value, first, last)))
}

/// BITPOS of an existing value: the first bit equal to `bit` in the range,
/// or -1. Without an explicit end, the value is taken as followed by zero
/// bits, so a search for a zero that finds none answers the bit after it.
fn position(value: &[u8], bit: bool, args: &[Bytes]) -> Result<Reply, Reply> {
    let bytes = value.len() as i64;
    let (first, last, end_given) = match args {
        [] => (0, bytes * 8 - 1, false),
        [start, rest @ ..] if rest.len() <= 2 => {
            let start = integer(start)?;
            let bits = unit_is_bit(rest.get(1))?;
            let end = match rest.first() {
                Some(end) => Some(integer(end)?),
                None => None,
            };
            let total = if bits { bytes * 8 } else { bytes };
            let Some((start, end)) = clamp(start, end.unwrap_or(total - 1), total) else {
                return Ok(Reply::Integer(-1));
            };
            let (first, last) = if bits {
                (start, end)
            } else {
                (start * 8, end * 8 + 7)
            };
            (first, last, !rest.is_empty())
        }
        _ => return Err(syntax_error()),
    };
    if first > last {
        return Ok(Reply::Integer(-1));
    }
    let found = first_bit_between(value, bit, first, last);
    Ok(Reply::Integer(match found {
        Some(position) => position,
        None if !bit && !end_given => last + 1,
        None => -1,
    }))
}

/// The first position in `first..=last` whose bit is `bit`; whole bytes
/// that cannot hold it are skipped.
fn first_bit_between(value: &[u8], bit: bool, first: i64, last: i64) -> Option<i64> {
    let skip = if bit { 0x00 } else { 0xFF };
    let mut position = first;
    while position <= last {
        let byte = value.get((position / 8) as usize).copied().unwrap_or(0);
        if position % 8 == 0 && position + 7 <= last && byte == skip {
            position += 8;
            continue;
        }
        if bit_at(value, position) == bit {
            return Some(position);
        }
        position += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    fn count_of(value: &[u8], list: &[&str]) -> Reply {
        BitRead::Count(args(list)).answer(Some(value))
    }

    fn pos_of(value: &[u8], list: &[&str]) -> Reply {
        match parse_bitpos(&args(list)) {
            Ok(read) => read.answer(Some(value)),
            Err(reply) => reply,
        }
    }

    /// Redis's own examples (redis.io's BITCOUNT and BITPOS pages and
    /// `tests/unit/bitops.tcl`).
    #[test]
    fn bitcount_answers_as_redis_does() {
        assert_eq!(count_of(b"foobar", &[]), Reply::Integer(26));
        assert_eq!(count_of(b"foobar", &["0", "0"]), Reply::Integer(4));
        assert_eq!(count_of(b"foobar", &["1", "1"]), Reply::Integer(6));
        assert_eq!(count_of(b"foobar", &["1", "1", "BYTE"]), Reply::Integer(6));
        assert_eq!(count_of(b"foobar", &["5", "30", "BIT"]), Reply::Integer(17));
        assert_eq!(count_of(b"foobar", &["-1", "-2"]), Reply::Integer(0));
        assert_eq!(count_of(b"foobar", &["0", "-1"]), Reply::Integer(26));
        assert_eq!(count_of(b"foobar", &["0", "1000"]), Reply::Integer(26));
        assert_eq!(count_of(b"", &["0", "-1"]), Reply::Integer(0));
        assert_eq!(count_of(b"foobar", &["0"]), syntax_error());
        assert_eq!(count_of(b"foobar", &["0", "1", "bits"]), syntax_error());
        assert_eq!(count_of(b"foobar", &["a", "1"]), not_an_integer());
        assert_eq!(
            BitRead::Count(args(&["a"])).answer(None),
            Reply::Integer(0),
            "a missing key is 0 before its arguments are read"
        );
    }

    #[test]
    fn bitcount_of_a_bit_range_counts_every_bit_once() {
        let value = [0b1011_0110u8, 0xFF, 0b0100_0001];
        for first in 0..24i64 {
            for last in first..24 {
                let want = (first..=last).filter(|&p| bit_at(&value, p)).count() as i64;
                let got = count_of(&value, &[&first.to_string(), &last.to_string(), "BIT"]);
                assert_eq!(got, Reply::Integer(want), "{first}..={last}");
            }
        }
    }

    #[test]
    fn bitpos_answers_as_redis_does() {
        assert_eq!(pos_of(&[0xFF, 0xF0, 0x00], &["0"]), Reply::Integer(12));
        assert_eq!(pos_of(&[0x00, 0xFF, 0xF0], &["1", "0"]), Reply::Integer(8));
        assert_eq!(pos_of(&[0x00, 0xFF, 0xF0], &["1", "2"]), Reply::Integer(16));
        assert_eq!(
            pos_of(&[0x00, 0xFF, 0xF0], &["1", "2", "-1", "BYTE"]),
            Reply::Integer(16)
        );
        assert_eq!(
            pos_of(&[0x00, 0xFF, 0xF0], &["1", "7", "15", "BIT"]),
            Reply::Integer(8)
        );
        assert_eq!(pos_of(&[0x00, 0x00, 0x00], &["1"]), Reply::Integer(-1));
        assert_eq!(pos_of(&[0xFF, 0xFF, 0xFF], &["0"]), Reply::Integer(24));
        assert_eq!(pos_of(&[0xFF, 0xFF, 0xFF], &["0", "0"]), Reply::Integer(24));
        assert_eq!(
            pos_of(&[0xFF, 0xFF, 0xFF], &["0", "0", "-1"]),
            Reply::Integer(-1)
        );
        assert_eq!(pos_of(b"", &["0"]), Reply::Integer(-1));
        assert_eq!(
            pos_of(&[0xFF], &["2"]),
            Reply::err("The bit argument must be 1 or 0.")
        );
        assert_eq!(pos_of(&[0xFF], &["x"]), not_an_integer());
        assert_eq!(pos_of(&[0xFF], &["0", "0", "0", "bits"]), syntax_error());
        assert_eq!(
            parse_bitpos(&args(&["1", "x"])).map(|r| r.answer(None)),
            Ok(Reply::Integer(-1))
        );
        assert_eq!(
            parse_bitpos(&args(&["0"])).map(|r| r.answer(None)),
            Ok(Reply::Integer(0))
        );
    }

    /// Against a bit-by-bit scan, over every bit range of a few values.
    #[test]
    fn bitpos_of_a_bit_range_matches_a_scan() {
        for value in [[0x00u8, 0x00, 0x00], [0xFF, 0xFF, 0xFF], [0x0F, 0x80, 0xFE]] {
            for bit in [false, true] {
                for first in 0..24i64 {
                    for last in first..24 {
                        let want = (first..=last)
                            .find(|&p| bit_at(&value, p) == bit)
                            .unwrap_or(-1);
                        let list = [
                            if bit { "1" } else { "0" }.to_string(),
                            first.to_string(),
                            last.to_string(),
                            "BIT".to_string(),
                        ];
                        let list: Vec<&str> = list.iter().map(String::as_str).collect();
                        assert_eq!(pos_of(&value, &list), Reply::Integer(want), "{list:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn bitop_pads_shorter_values_with_zeros() {
        let v = |bytes: &[u8]| Some(Bytes::copy_from_slice(bytes));
        let values = [v(&[0xF0, 0x0F]), None, v(&[0xFF])];
        assert_eq!(BitOperation::And.apply(&values), [0x00, 0x00]);
        assert_eq!(BitOperation::Or.apply(&values), [0xFF, 0x0F]);
        assert_eq!(BitOperation::Xor.apply(&values), [0x0F, 0x0F]);
        assert_eq!(BitOperation::Not.apply(&values[..1]), [0x0F, 0xF0]);
        assert_eq!(BitOperation::And.apply(&[None, v(&[])]), Vec::<u8>::new());
        assert_eq!(BitOperation::parse(b"xOr"), Some(BitOperation::Xor));
        assert_eq!(BitOperation::parse(b"nand"), None);
    }

    #[test]
    fn getbit_reads_past_the_end_as_zero() {
        let value = Some(&[0x40u8][..]);
        assert_eq!(BitRead::Get(1).answer(value), Reply::Integer(1));
        assert_eq!(BitRead::Get(0).answer(value), Reply::Integer(0));
        assert_eq!(BitRead::Get(100).answer(value), Reply::Integer(0));
        assert_eq!(BitRead::Get(1).answer(None), Reply::Integer(0));
    }
}
