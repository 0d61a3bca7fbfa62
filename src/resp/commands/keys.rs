//! Key-space commands: DEL, EXISTS, DBSIZE, SCAN, KEYS, FLUSHDB, FLUSHALL,
//! MOVE. Keys arrive already mapped into the session's database (see
//! `resp/database.rs`); the commands that walk keys read only its range.
//!
//! FLUSHDB and FLUSHALL are range deletes (`Db::delete_range`): one write,
//! whatever the number of keys; compaction gives the space back.
//!
//! SCAN's cursor is a number standing for the key where the scan goes on
//! (see [`Cursors`]); `0` starts and ends an iteration. A MATCH pattern
//! with a literal prefix reads only that prefix's key range.
//!
//! KEYS and DBSIZE read the whole key space in pages, each page a
//! separate snapshot: with concurrent writes the result is approximate.
//! Both stop after [`MAX_KEYS_SCANNED`] keys: KEYS then answers an error
//! (use SCAN), DBSIZE answers the bound. KEYS also answers an error once
//! its reply would pass the server's largest reply (`Engine::largest_reply`).

use std::future::Future;
use std::ops::Bound;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{LocalBoxFuture, ready};

use super::keyop::{self, KeyOp};
use super::rmw::Rmw;
use super::{Op, Parsed, engine_error, int_arg, not_an_integer, reply_too_large, syntax_error};
use crate::resp::cursors::Cursors;
use crate::resp::database::Database;
#[cfg(test)]
use crate::resp::database::prefix_end;
use crate::resp::glob;
use crate::resp::reply::{HEADER_BYTES, Reply};
use crate::resp::store::Store;
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

/// Parses a key-space command of a session on `database`; `None` if
/// `name` is not one.
pub fn parse(name: &str, args: &[Bytes], database: Database) -> Option<Parsed> {
    let op = match name {
        "del" | "unlink" => Op::Del(args.to_vec()),
        "exists" | "touch" => Op::Exists(args.to_vec()),
        "type" => Op::Type(args.first().cloned().unwrap_or_default()),
        "randomkey" => Op::RandomKey(database),
        "move" => return Some(parse_move(args, database)),
        "swapdb" => {
            return Some(Parsed::Reply(Reply::err(
                "SWAPDB is not supported by NaiveKV: databases are key ranges of one engine",
            )));
        }
        "rename" | "renamenx" => Op::Rmw(Rmw::Rename {
            from: args.first().cloned().unwrap_or_default(),
            to: args.get(1).cloned().unwrap_or_default(),
            only_if_absent: name == "renamenx",
        }),
        "copy" => return Some(parse_copy(args, database)),
        "dbsize" => Op::DbSize(database),
        "flushall" | "flushdb" => {
            let all = name == "flushall";
            match args {
                [] => Op::Flush { all, database },
                [mode]
                    if mode.eq_ignore_ascii_case(b"SYNC")
                        || mode.eq_ignore_ascii_case(b"ASYNC") =>
                {
                    Op::Flush { all, database }
                }
                _ => return Some(Parsed::Reply(syntax_error())),
            }
        }
        "keys" => Op::Keys(database, args.first().cloned().unwrap_or_default()),
        "scan" => match parse_scan(args) {
            Ok(scan) => Op::Scan(database, scan),
            Err(reply) => return Some(Parsed::Reply(reply)),
        },
        _ => return None,
    };
    Some(Parsed::Engine(op))
}

/// `COPY source destination [DB n] [REPLACE]`.
fn parse_copy(args: &[Bytes], database: Database) -> Parsed {
    let mut replace = false;
    let mut target = database;
    let mut options = args.iter().skip(2);
    while let Some(option) = options.next() {
        match option.to_ascii_uppercase().as_slice() {
            b"REPLACE" => replace = true,
            b"DB" => match options.next().map(|db| database.select(int_arg(db))) {
                Some(Ok(chosen)) => target = chosen,
                Some(Err(reply)) => return Parsed::Reply(reply),
                None => return Parsed::Reply(syntax_error()),
            },
            _ => return Parsed::Reply(syntax_error()),
        }
    }
    let to = args.get(1).cloned().unwrap_or_default();
    let from = args.first().cloned().unwrap_or_default();
    if target == database && from == to {
        return Parsed::Reply(Reply::err("source and destination objects are the same"));
    }
    Parsed::Engine(Op::Rmw(Rmw::Copy {
        from,
        to: database.rebase(&to, target),
        replace,
    }))
}

/// `MOVE key db`: the key (already in the session's database) to the same
/// key of database `db`, only if it is absent there.
fn parse_move(args: &[Bytes], database: Database) -> Parsed {
    let target = match database.select(args.get(1).and_then(|a| int_arg(a))) {
        Ok(target) => target,
        Err(reply) => return Parsed::Reply(reply),
    };
    if target == database {
        return Parsed::Reply(Reply::err("source and destination objects are the same"));
    }
    let from = args.first().cloned().unwrap_or_default();
    let to = database.rebase(&from, target);
    Parsed::Engine(Op::Rmw(Rmw::Move { from, to }))
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

/// The range of `database` holding every key that `pattern` can match,
/// from engine key `from` on (past the reserved keys in database 0).
fn range(
    database: Database,
    from: Option<Bytes>,
    pattern: Option<&Bytes>,
    limit: usize,
) -> ScanRequest {
    let literal = pattern.map(|p| glob::literal_prefix(p)).unwrap_or_default();
    let (prefix, end) = database.scan_range(&literal);
    let start = match from {
        Some(from) if from > prefix => from,
        _ => prefix,
    };
    let start = database.skip_reserved(start);
    ScanRequest {
        start: if start.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Included(start)
        },
        end: end.map_or(Bound::Unbounded, Bound::Excluded),
        limit,
        reverse: false,
        max_bytes: PAGE_BYTES,
    }
}

/// Runs a key-space request.
/// KEYS answers an error rather than build a reply over `largest_reply`
/// bytes.
pub fn execute(
    op: Op,
    store: &Store,
    cursors: &Cursors,
    largest_reply: usize,
) -> LocalBoxFuture<'static, Reply> {
    let db = &store.db();
    match op {
        Op::Exists(_) | Op::Del(_) | Op::Type(_) => match KeyOp::from_op(op) {
            Ok(op) => keyop::run(op, store.clone()).boxed_local(),
            Err(_) => ready(Reply::err("internal error: not a key operation")).boxed_local(),
        },
        Op::Scan(database, scan) => scan_page(db, database, scan, cursors.clone()).boxed_local(),
        Op::Keys(database, pattern) => {
            keys(db.clone(), database, pattern, largest_reply).boxed_local()
        }
        Op::DbSize(database) => dbsize(db.clone(), database).boxed_local(),
        Op::RandomKey(database) => random_key(db.clone(), database).boxed_local(),
        Op::Flush { all, database } => flush(store, all, database).boxed_local(),
        _ => ready(Reply::err("internal error: not a key-space command")).boxed_local(),
    }
}

/// FLUSHDB (the session's database) or FLUSHALL (every database): one
/// atomic batch of range deletes. SYNC and ASYNC both answer once the range
/// deletes are written; the space comes back by compaction afterwards.
fn flush(store: &Store, all: bool, database: Database) -> impl Future<Output = Reply> + 'static {
    let ranges = if all {
        database.all_ranges()
    } else {
        database.ranges()
    };
    let mut batch = WriteBatch::new();
    for (start, end) in ranges {
        batch.delete_range(start, end);
    }
    let written = store.write(batch);
    async move {
        match written.await {
            Ok(()) => Reply::ok(),
            Err(e) => e.reply(),
        }
    }
}

/// RANDOMKEY: the first key at or after a random one (wrapping to the first
/// key), so keys after a long gap are likelier; null when empty.
async fn random_key(db: Db, database: Database) -> Reply {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    let random = Bytes::copy_from_slice(&hasher.finish().to_be_bytes());
    for from in [Some(database.key(&random)), None] {
        match first_key(&db, database, from).await {
            Ok(Some(key)) => return Reply::Bulk(key),
            Ok(None) => {}
            Err(e) => return engine_error(&e),
        }
    }
    Reply::Null
}

/// The first key of `database` at or after engine key `from`.
async fn first_key(
    db: &Db,
    database: Database,
    mut from: Option<Bytes>,
) -> crate::Result<Option<Bytes>> {
    loop {
        let page = db.scan(range(database, from.clone(), None, 1)).await?;
        let Some((key, _)) = page.entries.into_iter().next() else {
            return Ok(None);
        };
        match database.user_key(key.clone()) {
            Some(user) => return Ok(Some(user)),
            None if from.as_ref() == Some(&key) => return Ok(None),
            None => from = Some(key),
        }
    }
}

fn scan_page(
    db: &Db,
    database: Database,
    scan: Scan,
    cursors: Cursors,
) -> LocalBoxFuture<'static, Reply> {
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
            .scan(range(database, from, scan.pattern.as_ref(), scan.count))
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
            .filter_map(|(key, _)| database.user_key(key))
            .filter(|key| !scan.none && scan.pattern.as_ref().is_none_or(|p| glob::matches(p, key)))
            .map(Reply::Bulk)
            .collect();
        Reply::Array(vec![Reply::text(next.to_string()), Reply::Array(keys)])
    }
    .boxed_local()
}

/// Reads the keys `pattern` can match, page by page; `visit` sees each
/// and says whether to go on. Returns the number read, or an error reply
/// past the bound.
async fn walk(
    db: &Db,
    database: Database,
    pattern: Option<&Bytes>,
    mut visit: impl FnMut(Bytes) -> Walk,
) -> Result<usize, Reply> {
    let mut from = None;
    let mut read = 0;
    loop {
        let page = db
            .scan(range(database, from, pattern, PAGE_KEYS))
            .await
            .map_err(|e| engine_error(&e))?;
        from = page.continuation(false);
        for key in page
            .entries
            .into_iter()
            .filter_map(|(key, _)| database.user_key(key))
        {
            read += 1;
            if visit(key) == Walk::Stop {
                return Ok(read);
            }
        }
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

/// Whether [`walk`] goes on after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    Next,
    Stop,
}

/// KEYS: the matching keys, or `-ERR KEYS reply exceeds ...` as soon as
/// their reply would pass `largest_reply` bytes (so the server holds at
/// most that for it, however many keys match).
async fn keys(db: Db, database: Database, pattern: Bytes, largest_reply: usize) -> Reply {
    let mut found = Vec::new();
    let mut bytes = HEADER_BYTES;
    let walked = walk(&db, database, Some(&pattern), |key| {
        if !glob::matches(&pattern, &key) {
            return Walk::Next;
        }
        let reply = Reply::Bulk(key);
        bytes += reply.wire_bytes();
        if bytes > largest_reply {
            found = Vec::new();
            return Walk::Stop;
        }
        found.push(reply);
        Walk::Next
    })
    .await;
    match walked {
        Ok(_) if bytes > largest_reply => {
            reply_too_large("KEYS", largest_reply, "use SCAN or a narrower pattern")
        }
        Ok(_) => Reply::Array(found),
        Err(reply) => reply,
    }
}

/// The number of keys of `database`, up to [`MAX_KEYS_SCANNED`].
pub async fn count_keys(db: &Db, database: Database) -> Result<usize, Reply> {
    match walk(db, database, None, |_| Walk::Next).await {
        Err(Reply::Error(e)) if e.contains("more than") => Ok(MAX_KEYS_SCANNED),
        other => other,
    }
}

async fn dbsize(db: Db, database: Database) -> Reply {
    count_keys(&db, database)
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
            Database::default(),
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
