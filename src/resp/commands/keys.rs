//! Key-space commands: DEL, EXISTS, DBSIZE, SCAN, KEYS.
//!
//! SCAN's cursor is a number standing for the key where the scan goes on
//! (see [`Cursors`]); `0` starts and ends an iteration. A MATCH pattern
//! with a literal prefix reads only that prefix's key range.
//!
//! KEYS and DBSIZE read the whole key space in pages, each page a
//! separate snapshot: with concurrent writes the result is approximate.
//! Both stop after [`MAX_KEYS_SCANNED`] keys: KEYS then answers an error
//! (use SCAN), DBSIZE answers the bound.

use std::ops::Bound;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{LocalBoxFuture, ready};

use super::keyop::{self, KeyOp};
use super::rmw::Rmw;
use super::{Op, Parsed, engine_error, int_arg, not_an_integer, syntax_error};
use crate::resp::cursors::Cursors;
use crate::resp::glob;
use crate::resp::reply::Reply;
use crate::{Db, ScanRequest, WriteBatch};

/// KEYS and DBSIZE read at most this many keys.
pub const MAX_KEYS_SCANNED: usize = 1_000_000;
/// Keys read per page by KEYS and DBSIZE.
const PAGE_KEYS: usize = 1000;
/// A page stops at about this many bytes of keys and values.
const PAGE_BYTES: usize = 4 << 20;
/// SCAN's COUNT when none is given, and the most it honours.
const DEFAULT_COUNT: usize = 10;
const MAX_COUNT: usize = 100_000;

/// A parsed SCAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The cursor: 0 for the beginning.
    pub cursor: u64,
    pub pattern: Option<Bytes>,
    /// Keys to read (matching or not), as Redis's COUNT hint.
    pub count: usize,
    /// `TYPE` other than `string`: nothing matches.
    pub none: bool,
}

/// Parses a key-space command; `None` if `name` is not one.
pub fn parse(name: &str, args: &[Bytes]) -> Option<Parsed> {
    let op = match name {
        "del" => Op::Del(args.to_vec()),
        "exists" | "touch" => Op::Exists(args.to_vec()),
        "type" => Op::Type(args.first().cloned().unwrap_or_default()),
        "randomkey" => Op::RandomKey,
        "rename" | "renamenx" => Op::Rmw(Rmw::Rename {
            from: args.first().cloned().unwrap_or_default(),
            to: args.get(1).cloned().unwrap_or_default(),
            only_if_absent: name == "renamenx",
        }),
        "copy" => return Some(parse_copy(args)),
        "dbsize" => Op::DbSize,
        "flushall" | "flushdb" => match args.first().map(|a| a.to_ascii_uppercase()) {
            None => Op::FlushAll,
            Some(mode) if mode == b"SYNC" || mode == b"ASYNC" => Op::FlushAll,
            Some(_) => return Some(Parsed::Reply(syntax_error())),
        },
        "keys" => Op::Keys(args.first().cloned().unwrap_or_default()),
        "scan" => match parse_scan(args) {
            Ok(scan) => Op::Scan(scan),
            Err(reply) => return Some(Parsed::Reply(reply)),
        },
        _ => return None,
    };
    Some(Parsed::Engine(op))
}

/// `COPY source destination [DB 0] [REPLACE]`.
fn parse_copy(args: &[Bytes]) -> Parsed {
    let mut replace = false;
    let mut options = args.iter().skip(2);
    while let Some(option) = options.next() {
        match option.to_ascii_uppercase().as_slice() {
            b"REPLACE" => replace = true,
            b"DB" => match options.next().map(|db| int_arg(db)) {
                Some(Some(0)) => {}
                Some(Some(_)) => {
                    return Parsed::Reply(Reply::err("databases other than 0 are not supported"));
                }
                Some(None) => return Parsed::Reply(not_an_integer()),
                None => return Parsed::Reply(syntax_error()),
            },
            _ => return Parsed::Reply(syntax_error()),
        }
    }
    Parsed::Engine(Op::Rmw(Rmw::Copy {
        from: args.first().cloned().unwrap_or_default(),
        to: args.get(1).cloned().unwrap_or_default(),
        replace,
    }))
}

fn parse_scan(args: &[Bytes]) -> Result<Scan, Reply> {
    let cursor = args
        .first()
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or_else(|| Reply::err("invalid cursor"))?;
    let mut scan = Scan {
        cursor,
        pattern: None,
        count: DEFAULT_COUNT,
        none: false,
    };
    let mut options = args.iter().skip(1);
    while let Some(option) = options.next() {
        let value = options.next().ok_or_else(syntax_error)?;
        match option.to_ascii_uppercase().as_slice() {
            b"MATCH" => scan.pattern = Some(value.clone()),
            b"COUNT" => match int_arg(value) {
                Some(n) if n >= 1 => scan.count = (n as usize).min(MAX_COUNT),
                Some(_) => return Err(syntax_error()),
                None => return Err(not_an_integer()),
            },
            b"TYPE" => scan.none = !value.eq_ignore_ascii_case(b"string"),
            _ => return Err(syntax_error()),
        }
    }
    Ok(scan)
}

/// The smallest key above every key starting with `prefix`; `None` if
/// there is none (the prefix is empty or all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Bytes> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(Bytes::from(end));
        }
    }
    None
}

/// The range holding every key that `pattern` can match, from `from` on.
fn range(from: Option<Bytes>, pattern: Option<&Bytes>, limit: usize) -> ScanRequest {
    let prefix = Bytes::from(pattern.map(|p| glob::literal_prefix(p)).unwrap_or_default());
    let start = match from {
        Some(from) if from > prefix => from,
        _ => prefix.clone(),
    };
    ScanRequest {
        start: if start.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Included(start)
        },
        end: prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded),
        limit,
        reverse: false,
        max_bytes: PAGE_BYTES,
    }
}

/// Runs a key-space request.
pub fn execute(op: Op, db: &Db, cursors: &Cursors) -> LocalBoxFuture<'static, Reply> {
    match op {
        Op::Exists(_) | Op::Del(_) | Op::Type(_) => match KeyOp::from_op(op) {
            Ok(op) => keyop::run(op, db.clone()).boxed_local(),
            Err(_) => ready(Reply::err("internal error: not a key operation")).boxed_local(),
        },
        Op::Scan(scan) => scan_page(db, scan, cursors.clone()).boxed_local(),
        Op::Keys(pattern) => keys(db.clone(), pattern).boxed_local(),
        Op::DbSize => dbsize(db.clone()).boxed_local(),
        Op::RandomKey => random_key(db.clone()).boxed_local(),
        Op::FlushAll => flush_all(db.clone()).boxed_local(),
        _ => ready(Reply::err("internal error: not a key-space command")).boxed_local(),
    }
}

/// FLUSHALL / FLUSHDB: deletes every key, a page at a time (one batch per
/// page). Not atomic: a key written by another connection meanwhile may
/// survive, as it would had it been written just after.
async fn flush_all(db: Db) -> Reply {
    loop {
        let page = match db.scan(range(None, None, PAGE_KEYS)).await {
            Ok(page) => page,
            Err(e) => return engine_error(&e),
        };
        if page.entries.is_empty() {
            return Reply::ok();
        }
        let mut batch = WriteBatch::new();
        for (key, _) in page.entries {
            batch.delete(key);
        }
        if let Err(e) = db.write(batch).await {
            return engine_error(&e);
        }
    }
}

/// RANDOMKEY: the first key at or after a random one (wrapping to the first
/// key), so keys after a long gap are likelier; null when empty.
async fn random_key(db: Db) -> Reply {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    let start = Bytes::copy_from_slice(&hasher.finish().to_be_bytes());
    for from in [Some(start), None] {
        let request = ScanRequest {
            start: from.map_or(Bound::Unbounded, Bound::Included),
            limit: 1,
            ..ScanRequest::all()
        };
        match db.scan(request).await {
            Ok(page) => {
                if let Some((key, _)) = page.entries.into_iter().next() {
                    return Reply::Bulk(key);
                }
            }
            Err(e) => return engine_error(&e),
        }
    }
    Reply::Null
}

fn scan_page(db: &Db, scan: Scan, cursors: Cursors) -> LocalBoxFuture<'static, Reply> {
    let db = db.clone();
    async move {
        let from = match scan.cursor {
            0 => None,
            id => match cursors.resolve(id).await {
                Some(key) => Some(key),
                None => return Reply::err("invalid cursor"),
            },
        };
        let page = match db
            .scan(range(from, scan.pattern.as_ref(), scan.count))
            .await
        {
            Ok(page) => page,
            Err(e) => return engine_error(&e),
        };
        let next = match page.continuation(false) {
            Some(key) => cursors.issue(key).await,
            None => 0,
        };
        let keys = page
            .entries
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| !scan.none && scan.pattern.as_ref().is_none_or(|p| glob::matches(p, key)))
            .map(Reply::Bulk)
            .collect();
        Reply::Array(vec![Reply::text(next.to_string()), Reply::Array(keys)])
    }
    .boxed_local()
}

/// Reads the keys `pattern` can match, page by page; `visit` sees each.
/// Returns the number read, or an error reply past the bound.
async fn walk(
    db: &Db,
    pattern: Option<&Bytes>,
    mut visit: impl FnMut(Bytes),
) -> Result<usize, Reply> {
    let mut from = None;
    let mut read = 0;
    loop {
        let page = db
            .scan(range(from, pattern, PAGE_KEYS))
            .await
            .map_err(|e| engine_error(&e))?;
        from = page.continuation(false);
        read += page.entries.len();
        page.entries.into_iter().for_each(|(key, _)| visit(key));
        if from.is_none() {
            return Ok(read);
        }
        if read >= MAX_KEYS_SCANNED {
            return Err(Reply::err(format!(
                "more than {MAX_KEYS_SCANNED} keys to read; use SCAN"
            )));
        }
    }
}

async fn keys(db: Db, pattern: Bytes) -> Reply {
    let mut found = Vec::new();
    let walked = walk(&db, Some(&pattern), |key| {
        if glob::matches(&pattern, &key) {
            found.push(Reply::Bulk(key));
        }
    })
    .await;
    match walked {
        Ok(_) => Reply::Array(found),
        Err(reply) => reply,
    }
}

/// The number of keys, up to [`MAX_KEYS_SCANNED`].
pub async fn count_keys(db: &Db) -> Result<usize, Reply> {
    match walk(db, None, |_| {}).await {
        Err(Reply::Error(e)) if e.contains("more than") => Ok(MAX_KEYS_SCANNED),
        other => other,
    }
}

async fn dbsize(db: Db) -> Reply {
    count_keys(&db)
        .await
        .map_or_else(|reply| reply, |n| Reply::Integer(n as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_end(b"ab"), Some(Bytes::from_static(b"ac")));
        assert_eq!(prefix_end(b"a\xff"), Some(Bytes::from_static(b"b")));
        assert_eq!(prefix_end(b"\xff"), None);
        let r = range(
            Some(Bytes::from_static(b"a")),
            Some(&Bytes::from_static(b"u:*")),
            5,
        );
        assert_eq!(r.start, Bound::Included(Bytes::from_static(b"u:")));
        assert_eq!(r.end, Bound::Excluded(Bytes::from_static(b"u;")));
    }

    #[test]
    fn scan_options() {
        let args = |list: &[&str]| -> Vec<Bytes> {
            list.iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect()
        };
        let scan = parse_scan(&args(&["0", "MATCH", "a*", "COUNT", "5"]));
        assert_eq!(
            scan,
            Ok(Scan {
                cursor: 0,
                pattern: Some(Bytes::from_static(b"a*")),
                count: 5,
                none: false
            })
        );
        assert_eq!(parse_scan(&args(&["0", "COUNT", "0"])), Err(syntax_error()));
        assert_eq!(parse_scan(&args(&["0", "MATCH"])), Err(syntax_error()));
        assert_eq!(parse_scan(&args(&["x"])), Err(Reply::err("invalid cursor")));
    }
}
