//! Replies and how they are written in RESP2 or RESP3.
//!
//! A connection starts in RESP2; `HELLO 3` switches it to RESP3. The two
//! differ here only where a client can tell: a null is `$-1` in RESP2 and
//! `_` in RESP3 (redis-py drops a RESP3 connection that gets `$-1`), and a
//! map is a flat array of keys and values in RESP2 and `%` in RESP3.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// The default, until `HELLO 3`.
    #[default]
    Resp2,
    /// After `HELLO 3`.
    Resp3,
}

impl Protocol {
    /// The version number `HELLO` reports.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+text`: a status such as `OK` or `PONG`.
    Status(Cow<'static, str>),
    /// `-text`: the text starts with the error's kind, e.g. `ERR ...`.
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$len` and the bytes.
    Bulk(Bytes),
    /// No value: `$-1` (RESP2) or `_` (RESP3).
    Null,
    /// No array: `*-1` (RESP2) or `_` (RESP3), as EXEC answers when a
    /// watched key changed.
    NullArray,
    /// `*n` and the elements.
    Array(Vec<Reply>),
    /// `%n` (RESP3) or a flat array of 2n elements (RESP2).
    Map(Vec<(Reply, Reply)>),
}

impl Reply {
    /// `+OK`.
    pub const fn ok() -> Reply {
        Reply::Status(Cow::Borrowed("OK"))
    }

    /// `-ERR message`.
    pub fn err(message: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {message}"))
    }

    /// A bulk string of `text`.
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::Bulk(Bytes::from(text.into()))
    }

    /// `Bulk` for a value, `Null` for none.
    pub fn value(value: Option<Bytes>) -> Reply {
        value.map_or(Reply::Null, Reply::Bulk)
    }

    /// True for an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// At least as many bytes as the reply takes on the wire in either
    /// protocol (each header counted at its longest): what the largest-reply
    /// bounds (MGET, KEYS, EXEC) count, before any byte is encoded.
    pub fn wire_bytes(&self) -> usize {
        match self {
            Reply::Status(text) => text.len() + 3,
            Reply::Error(text) => text.len() + 3,
            Reply::Integer(_) | Reply::Null | Reply::NullArray => HEADER_BYTES,
            Reply::Bulk(bytes) => HEADER_BYTES + bytes.len() + 2,
            Reply::Array(items) => {
                HEADER_BYTES + items.iter().map(Reply::wire_bytes).sum::<usize>()
            }
            Reply::Map(pairs) => {
                HEADER_BYTES
                    + pairs
                        .iter()
                        .map(|(key, value)| key.wire_bytes() + value.wire_bytes())
                        .sum::<usize>()
            }
        }
    }

    /// Appends the reply's bytes in `protocol` to `out`.
    pub fn encode(&self, protocol: Protocol, out: &mut BytesMut) {
        match self {
            Reply::Status(text) => line(out, b'+', text.as_bytes()),
            Reply::Error(text) => line(out, b'-', text.as_bytes()),
            Reply::Integer(n) => header(out, b':', *n),
            Reply::Bulk(bytes) => {
                header(out, b'$', bytes.len() as i64);
                out.reserve(bytes.len() + 2);
                out.put_slice(bytes);
                out.put_slice(b"\r\n");
            }
            Reply::Null => match protocol {
                Protocol::Resp2 => out.put_slice(b"$-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Reply::NullArray => match protocol {
                Protocol::Resp2 => out.put_slice(b"*-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Reply::Array(items) => {
                header(out, b'*', items.len() as i64);
                for item in items {
                    item.encode(protocol, out);
                }
            }
            Reply::Map(pairs) => {
                match protocol {
                    Protocol::Resp2 => header(out, b'*', 2 * pairs.len() as i64),
                    Protocol::Resp3 => header(out, b'%', pairs.len() as i64),
                }
                for (key, value) in pairs {
                    key.encode(protocol, out);
                    value.encode(protocol, out);
                }
            }
        }
    }
}

/// The longest header line: a kind byte, a sign, 19 digits, CRLF.
pub const HEADER_BYTES: usize = 23;

/// `kind` then `n` in decimal then CRLF, formatted without allocating.
fn header(out: &mut BytesMut, kind: u8, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.put_u8(kind);
    if n < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(digits.get(at..).unwrap_or_default());
    out.put_slice(b"\r\n");
}

/// A one-line reply; CR and LF would end the line early, so they become
/// spaces (Redis does the same to error texts).
fn line(out: &mut BytesMut, kind: u8, text: &[u8]) {
    out.put_u8(kind);
    out.extend(
        text.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(reply: &Reply, protocol: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        reply.encode(protocol, &mut out);
        out.to_vec()
    }

    #[test]
    fn nulls_and_maps_depend_on_the_protocol() {
        assert_eq!(bytes(&Reply::Null, Protocol::Resp2), b"$-1\r\n");
        assert_eq!(bytes(&Reply::Null, Protocol::Resp3), b"_\r\n");
        let map = Reply::Map(vec![(Reply::text("a"), Reply::Integer(1))]);
        assert_eq!(bytes(&map, Protocol::Resp2), b"*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(bytes(&map, Protocol::Resp3), b"%1\r\n$1\r\na\r\n:1\r\n");
    }

    #[test]
    fn scalars_and_line_breaks_in_errors() {
        assert_eq!(bytes(&Reply::ok(), Protocol::Resp2), b"+OK\r\n");
        assert_eq!(bytes(&Reply::Integer(-3), Protocol::Resp2), b":-3\r\n");
        assert_eq!(bytes(&Reply::Integer(0), Protocol::Resp2), b":0\r\n");
        let min = format!(":{}\r\n", i64::MIN);
        assert_eq!(
            bytes(&Reply::Integer(i64::MIN), Protocol::Resp2),
            min.as_bytes()
        );
        let e = Reply::err("a\r\nb");
        assert_eq!(bytes(&e, Protocol::Resp2), b"-ERR a  b\r\n");
        let array = Reply::Array(vec![Reply::Bulk(Bytes::from_static(b"x")), Reply::Null]);
        assert_eq!(bytes(&array, Protocol::Resp2), b"*2\r\n$1\r\nx\r\n$-1\r\n");
    }

    #[test]
    fn wire_bytes_is_never_below_the_encoding() {
        let replies = [
            Reply::ok(),
            Reply::err("x"),
            Reply::Integer(i64::MIN),
            Reply::Null,
            Reply::NullArray,
            Reply::Bulk(Bytes::from(vec![7u8; 1000])),
            Reply::Array(vec![
                Reply::Integer(1),
                Reply::text("ab"),
                Reply::Array(vec![]),
            ]),
            Reply::Map(vec![(Reply::text("a"), Reply::Null)]),
        ];
        for reply in &replies {
            for protocol in [Protocol::Resp2, Protocol::Resp3] {
                let encoded = bytes(reply, protocol).len();
                assert!(reply.wire_bytes() >= encoded, "{reply:?}: {encoded}");
                // An estimate, not a wild one: within a header per element
                // (at most five here).
                assert!(
                    reply.wire_bytes() <= encoded + 5 * HEADER_BYTES,
                    "{reply:?}"
                );
            }
        }
    }
}
