//! The RESP request codec for tokio-util's `Framed`: decodes requests (a
//! multibulk `*n` of `$len` bulks, or an inline line of words as telnet and
//! some `redis-cli` modes send) into argument lists, and encodes
//! [`Reply`]s in the connection's [`Protocol`].
//!
//! Decoding is incremental: a request's header and each finished bulk are
//! taken from the buffer once, so a large request arriving in pieces is not
//! parsed again from its start. A bulk's declared length is checked before
//! any of it is buffered. Malformed input is a [`ProtocolError`] (worded as
//! Redis words it); the stream cannot be resynchronised after one, so the
//! session answers `-ERR Protocol error: ...` and closes, as Redis does.
//!
//! A blank line and `*0` (or `*-1`), which some clients send as
//! keepalives, decode as an empty request: it ends a frame, so the frame
//! timeout does not run on them, and the session ignores it, as Redis
//! does.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::reply::{Protocol, Reply};

/// A header line (`*n`, `$len`) longer than this is refused (Redis: 64 KiB).
const MAX_HEADER_LINE: usize = 64 << 10;

/// What the decoder accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest bulk argument (key or value).
    pub max_bulk_bytes: usize,
    /// Most arguments in one request.
    pub max_args: usize,
    /// Most bytes of arguments in one request.
    pub max_request_bytes: usize,
    /// Longest inline request line.
    pub max_inline_bytes: usize,
}

impl Limits {
    /// The limits before authentication: nothing an AUTH or HELLO needs is
    /// longer than [`crate::server::pipeline::PRE_AUTH_MAX_BYTES`] or has
    /// more than 16 arguments.
    pub fn pre_auth(self) -> Limits {
        let small = crate::server::pipeline::PRE_AUTH_MAX_BYTES;
        Limits {
            max_bulk_bytes: self.max_bulk_bytes.min(small),
            max_args: self.max_args.min(16),
            max_request_bytes: self.max_request_bytes.min(small),
            max_inline_bytes: self.max_inline_bytes.min(small),
        }
    }
}

/// Input that is not RESP; `Display` gives the text after `ERR `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

/// The request in progress.
#[derive(Debug, Default)]
struct Partial {
    /// Arguments the header announced.
    expected: usize,
    args: Vec<Bytes>,
    /// Argument bytes so far, against `max_request_bytes`.
    bytes: usize,
    /// The current bulk's length, once its `$len` line is read.
    bulk_len: Option<usize>,
}

/// Decodes argument lists, encodes `(Protocol, Reply)`.
#[derive(Debug)]
pub struct RespCodec {
    limits: Limits,
    partial: Option<Partial>,
}

impl RespCodec {
    /// A codec that holds requests to `limits`.
    pub fn new(limits: Limits) -> Self {
        RespCodec {
            limits,
            partial: None,
        }
    }

    /// Changes the limits from the next request on.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Reads a multibulk header; `None` until the whole line is there.
    fn start_multibulk(&mut self, src: &mut BytesMut) -> Result<Option<()>, ProtocolError> {
        let Some(count) = take_header(src, "mbulk")? else {
            return Ok(None);
        };
        let count = count
            .filter(|&n| n <= self.limits.max_args as i64)
            .ok_or_else(|| error("invalid multibulk length"))?;
        if count > 0 {
            self.partial = Some(Partial {
                expected: count as usize,
                args: Vec::with_capacity((count as usize).min(1024)),
                ..Partial::default()
            });
        }
        Ok(Some(()))
    }

    /// Reads bulks into the request in progress; the arguments once all are
    /// there.
    fn continue_multibulk(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let limits = self.limits;
        let Some(partial) = self.partial.as_mut() else {
            return Ok(None);
        };
        while partial.args.len() < partial.expected {
            let len = match partial.bulk_len {
                Some(len) => len,
                None => {
                    let Some(len) = bulk_header(src, &limits)? else {
                        return Ok(None);
                    };
                    partial.bytes += len;
                    if partial.bytes > limits.max_request_bytes {
                        return Err(error(format!(
                            "request larger than {} bytes",
                            limits.max_request_bytes
                        )));
                    }
                    partial.bulk_len = Some(len);
                    len
                }
            };
            if src.len() < len + 2 {
                src.reserve(len + 2 - src.len());
                return Ok(None);
            }
            partial.args.push(src.split_to(len).freeze());
            src.advance(2);
            partial.bulk_len = None;
        }
        Ok(self.partial.take().map(|p| p.args))
    }

    /// Reads an inline request; `None` until its line is complete, an empty
    /// list for a blank line.
    fn inline(&mut self, src: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let Some(end) = src.iter().position(|&b| b == b'\n') else {
            if src.len() > self.limits.max_inline_bytes {
                return Err(error("too big inline request"));
            }
            return Ok(None);
        };
        let line = src.split_to(end + 1);
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        split_args_at_most(line, self.limits.max_args).map(Some)
    }
}

/// The finished arguments of a request in progress have left the read
/// buffer; they are held here until the request is complete.
impl crate::server::timeouts::UnfinishedBytes for RespCodec {
    fn held_outside_buffer(&self) -> usize {
        // `bytes` counts the bulk being read from its header on; its bytes
        // are still in the buffer.
        self.partial
            .as_ref()
            .map_or(0, |p| p.bytes - p.bulk_len.unwrap_or(0))
    }
}

impl Decoder for RespCodec {
    type Item = Vec<Bytes>;
    type Error = io::Error;

    /// # Errors
    /// Malformed input, as an `InvalidData` error wrapping a
    /// [`ProtocolError`] (see [`protocol_error`]).
    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Vec<Bytes>>> {
        self.decode_request(src)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl RespCodec {
    fn decode_request(&mut self, src: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if self.partial.is_some() {
                return self.continue_multibulk(src);
            }
            let Some(&first) = src.first() else {
                return Ok(None);
            };
            if first == b'*' {
                match self.start_multibulk(src)? {
                    None => return Ok(None),
                    // `*0`: an empty request, a keepalive.
                    Some(()) if self.partial.is_none() => return Ok(Some(Vec::new())),
                    Some(()) => continue,
                }
            }
            if first == 0 {
                // No request starts with NUL; a native NaiveKV frame (its
                // big-endian length) does, and has no newline for the
                // inline parser to wait for: its client would wait for its
                // timeout. Short: the client shows the first 64 bytes.
                return Err(error("binary frame; native clients use --port"));
            }
            // A blank line is an empty request, a keepalive.
            return self.inline(src);
        }
    }
}

impl Encoder<(Protocol, Reply)> for RespCodec {
    type Error = io::Error;

    fn encode(
        &mut self,
        (protocol, reply): (Protocol, Reply),
        dst: &mut BytesMut,
    ) -> io::Result<()> {
        reply.encode(protocol, dst);
        Ok(())
    }
}

/// The protocol error inside a decoder error, if it is one.
pub fn protocol_error(error: &io::Error) -> Option<&ProtocolError> {
    error.get_ref()?.downcast_ref::<ProtocolError>()
}

fn error(message: impl Into<String>) -> ProtocolError {
    ProtocolError(message.into())
}

/// Takes a header line (`*n` or `$len`, and its CRLF) from `src` and reads
/// the integer after its first byte: `None` until the line is complete,
/// `Some(None)` if it holds no integer. `what` names the header in the
/// too-long error. The line is parsed where it lies: taking it out of the
/// buffer as a handle of its own cost two atomic operations per header.
fn take_header(src: &mut BytesMut, what: &str) -> Result<Option<Option<i64>>, ProtocolError> {
    let search = &src[..src.len().min(MAX_HEADER_LINE + 2)];
    let Some(end) = search.windows(2).position(|w| w == b"\r\n") else {
        if src.len() > MAX_HEADER_LINE {
            return Err(error(format!("too big {what} count string")));
        }
        return Ok(None);
    };
    // The line starts with its type byte, so `end` is at least 1.
    let value = src.get(1..end).and_then(parse_int);
    src.advance(end + 2);
    Ok(Some(value))
}

/// Reads a `$len` line; the length once the line is complete.
fn bulk_header(src: &mut BytesMut, limits: &Limits) -> Result<Option<usize>, ProtocolError> {
    let Some(&first) = src.first() else {
        return Ok(None);
    };
    if first != b'$' {
        return Err(error(format!("expected '$', got '{}'", first as char)));
    }
    let Some(len) = take_header(src, "bulk")? else {
        return Ok(None);
    };
    len.filter(|&n| n >= 0 && n as u64 <= limits.max_bulk_bytes as u64)
        .map(|n| Some(n as usize))
        .ok_or_else(|| error("invalid bulk length"))
}

/// A decimal integer, strictly (an optional `-`, then digits).
fn parse_int(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // As Redis's `string2ll`: no leading zero, no `-0`.
    if digits[0] == b'0' && (digits.len() > 1 || negative) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'));
    Some(if negative { -n } else { n })
}

/// Splits an inline request into words as Redis's `sdssplitargs` does:
/// whitespace separates; `"..."` takes `\n \r \t \b \a \\ \" \xHH`
/// escapes; `'...'` takes `\'`; a closing quote must end the word.
///
/// # Errors
/// Unbalanced quotes.
pub fn split_args(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    split_args_at_most(line, usize::MAX)
}

/// [`split_args`], refusing a line of more than `max_args` words (as a
/// multibulk header announcing more is refused) before it makes the next.
fn split_args_at_most(line: &[u8], max_args: usize) -> Result<Vec<Bytes>, ProtocolError> {
    let unbalanced = || error("unbalanced quotes in request");
    let mut args = Vec::new();
    let mut i = 0;
    while i < line.len() {
        if line[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if args.len() == max_args {
            return Err(error(format!(
                "too many arguments in inline request (at most {max_args})"
            )));
        }
        let mut word = Vec::new();
        let quote = matches!(line[i], b'"' | b'\'').then_some(line[i]);
        if quote.is_some() {
            i += 1;
        }
        loop {
            let Some(&c) = line.get(i) else {
                if quote.is_some() {
                    return Err(unbalanced());
                }
                break;
            };
            match quote {
                None if c.is_ascii_whitespace() => break,
                None => word.push(c),
                Some(q) if c == q => {
                    if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return Err(unbalanced());
                    }
                    i += 1;
                    break;
                }
                Some(b'"') if c == b'\\' => {
                    let (byte, used) = escape(&line[i + 1..]);
                    word.push(byte);
                    i += used;
                }
                Some(_) if c == b'\\' && line.get(i + 1) == Some(&b'\'') => {
                    word.push(b'\'');
                    i += 1;
                }
                Some(_) => word.push(c),
            }
            i += 1;
        }
        args.push(Bytes::from(word));
    }
    Ok(args)
}

/// The byte a backslash escape in double quotes stands for, and how many
/// bytes after the backslash it used.
fn escape(rest: &[u8]) -> (u8, usize) {
    let hex = |b: u8| (b as char).to_digit(16);
    match rest {
        [b'x', h, l, ..] if hex(*h).is_some() && hex(*l).is_some() => {
            let value = hex(*h).unwrap_or(0) * 16 + hex(*l).unwrap_or(0);
            (value as u8, 3)
        }
        [c, ..] => {
            let byte = match c {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'b' => 0x08,
                b'a' => 0x07,
                other => *other,
            };
            (byte, 1)
        }
        [] => (b'\\', 0),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_bulk_bytes: 16,
            max_args: 8,
            max_request_bytes: 40,
            max_inline_bytes: 32,
        }
    }

    fn decode_all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut codec = RespCodec::new(limits());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // Byte by byte: every partial state is exercised.
        for &b in input {
            buf.extend_from_slice(&[b]);
            while let Some(args) = codec.decode_request(&mut buf)? {
                out.push(args);
            }
        }
        Ok(out)
    }

    fn words(list: &[&str]) -> Vec<Bytes> {
        list.iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn multibulk_and_inline_byte_by_byte() {
        let got =
            decode_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n\r\n*0\r\nset a \"b c\"\n").unwrap();
        assert_eq!(
            got,
            vec![
                words(&["GET", "k"]),
                words(&["PING"]),
                Vec::new(),
                Vec::new(),
                words(&["set", "a", "b c"])
            ]
        );
    }

    #[test]
    fn protocol_errors_as_redis_words_them() {
        let e = |input: &[u8]| decode_all(input).unwrap_err().to_string();
        assert_eq!(e(b"*x\r\n"), "Protocol error: invalid multibulk length");
        assert_eq!(e(b"*9\r\n"), "Protocol error: invalid multibulk length");
        assert_eq!(e(b"*1\r\n+3\r\n"), "Protocol error: expected '$', got '+'");
        assert_eq!(e(b"*1\r\n$-1\r\n"), "Protocol error: invalid bulk length");
        // Refused from the header alone, before any of the bulk is sent.
        assert_eq!(e(b"*1\r\n$17\r\n"), "Protocol error: invalid bulk length");
        assert_eq!(
            e(b"set \"a\n"),
            "Protocol error: unbalanced quotes in request"
        );
        assert_eq!(e(&[b'a'; 40]), "Protocol error: too big inline request");
        // A native frame: its length's first byte is 0.
        assert_eq!(
            e(&[0, 0, 0, 5, 8, 1, 18, 1, 0]),
            "Protocol error: binary frame; native clients use --port"
        );
        // Only a request's first byte: a NUL inside a bulk is data.
        let args = decode_all(b"*1\r\n$1\r\n\0\r\n").unwrap();
        assert_eq!(args, vec![vec![Bytes::from_static(b"\0")]]);
        // A pipelined request before the frame is answered first.
        let mut codec = RespCodec::new(limits());
        let mut buf = BytesMut::from(&b"PING\r\n\0\0\0\x05"[..]);
        assert_eq!(codec.decode_request(&mut buf), Ok(Some(words(&["PING"]))));
        assert!(codec.decode_request(&mut buf).is_err());
        let big = b"*3\r\n$16\r\naaaaaaaaaaaaaaaa\r\n$16\r\naaaaaaaaaaaaaaaa\r\n$16\r\n";
        assert!(e(big).contains("request larger than 40 bytes"));
    }

    #[test]
    fn inline_requests_are_held_to_the_argument_limit() {
        // Eight words pass (the limit), nine do not; as for `*9`.
        let eight = decode_all(b"a b c d e f g h\r\n").unwrap();
        assert_eq!(eight[0].len(), 8);
        let nine = decode_all(b"a b c d e f g h i\r\n").unwrap_err();
        assert!(nine.0.contains("too many arguments"), "{nine}");
        assert!(decode_all(b"*9\r\n").is_err());
        // Before authentication, 16.
        let mut codec = RespCodec::new(limits_with_args(1000).pre_auth());
        let mut line = BytesMut::from(&b"SET a b\r\n"[..]);
        assert!(codec.decode_request(&mut line).unwrap().is_some());
        let mut line = BytesMut::from(&[&b"x "[..]; 17].concat()[..]);
        line.extend_from_slice(b"\r\n");
        let error = codec.decode_request(&mut line).unwrap_err();
        assert!(error.0.contains("at most 16"), "{error}");
    }

    fn limits_with_args(max_args: usize) -> Limits {
        Limits {
            max_args,
            max_inline_bytes: 1 << 20,
            ..limits()
        }
    }

    #[test]
    fn split_args_quotes_and_escapes() {
        let got = split_args(br#"a "x\x41\n" 'it\'s'  b"#).unwrap();
        assert_eq!(got, words(&["a", "xA\n", "it's", "b"]));
        assert!(split_args(br#""a"b"#).is_err());
        assert!(split_args(b"'a").is_err());
        assert_eq!(split_args(b"  ").unwrap(), Vec::<Bytes>::new());
    }

    #[test]
    fn parse_int_is_strict() {
        assert_eq!(parse_int(b"12"), Some(12));
        assert_eq!(parse_int(b"-1"), Some(-1));
        assert_eq!(parse_int(b"+1"), None);
        assert_eq!(parse_int(b""), None);
        assert_eq!(parse_int(b"1 "), None);
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"01"), None);
        assert_eq!(parse_int(b"-0"), None);
    }
}
