//! One request command to one engine call and its reply. The mappings
//! (scan bounds, batch, error codes) are pure functions; only
//! [`execute`] touches the database.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::{FutureExt, LocalBoxFuture, ready};

use super::checkpoints::{CheckpointRefused, CheckpointRoot};
use super::log_limit::{LogLimiter, held_back_suffix};
use super::pipeline::Access;
use crate::proto::{self, ErrorCode, mutation::Op, request::Command, response::Reply};
use crate::{Db, Error, ScanPage, ScanRequest, Ttl, WriteBatch};

/// Entries a scan returns when the request's limit is 0.
pub const DEFAULT_SCAN_LIMIT: usize = 1000;
/// A scan page stops once its keys and values reach about this many bytes.
pub const SCAN_PAGE_BYTES: usize = 4 << 20;

/// How `command` relates to the other requests on its connection (see
/// [`super::pipeline::order`]).
pub fn access(command: &Command) -> Access {
    match command {
        Command::Put(_) | Command::Delete(_) | Command::Batch(_) => Access::Write,
        // Read the key's entry, then write it back with a new expiry, in a
        // step the engine does not order against this connection's other
        // writes: earlier writes must be applied first, later ones wait.
        Command::Expire(_) | Command::Persist(_) => Access::ReadWrite,
        // Ping and Auth are answered by the session; as reads they would
        // only wait for earlier writes.
        Command::Get(_)
        | Command::Scan(_)
        | Command::Stats(_)
        | Command::Ttl(_)
        | Command::Ping(_)
        | Command::Auth(_) => Access::Read,
        // Waits for the connection's earlier writes, which it then holds.
        Command::Checkpoint(_) => Access::Read,
        // Answered by a cluster node (`crate::cluster::admin`).
        Command::Cluster(_) => Access::Read,
    }
}

/// Calls the engine for `command` (eagerly: a write is enqueued before this
/// returns) and gives a future of the reply. Engine errors become
/// `Reply::Error`. Checkpoints go under `checkpoints`' root.
pub fn execute(
    db: &Db,
    checkpoints: &Arc<CheckpointRoot>,
    command: Command,
) -> LocalBoxFuture<'static, Reply> {
    match command {
        Command::Checkpoint(request) => checkpoint(db, checkpoints, &request.name),
        // A combinator: an `async` block would hold the get's future twice.
        Command::Get(get) => db.get(get.key).map(get_reply).boxed_local(),
        Command::Put(put) => {
            let at = expire_at(db, put.expire_at_ms, put.ttl_ms);
            done(db.put_with_expiry(put.key, put.value, at))
        }
        Command::Expire(expire) => {
            let at = expire_at(db, expire.expire_at_ms, expire.ttl_ms);
            let db = db.clone();
            async move {
                if at == 0 {
                    return invalid_request("Expire needs expire_at_ms or ttl_ms");
                }
                db.expire(expire.key, at)
                    .await
                    .map_or_else(|e| error_reply(&e), flag_reply)
            }
            .boxed_local()
        }
        Command::Persist(persist) => {
            let db = db.clone();
            async move {
                db.persist(persist.key)
                    .await
                    .map_or_else(|e| error_reply(&e), flag_reply)
            }
            .boxed_local()
        }
        Command::Ttl(ttl) => {
            let ttl = db.ttl(ttl.key);
            async move { ttl.await.map_or_else(|e| error_reply(&e), ttl_reply) }.boxed_local()
        }
        Command::Delete(delete) => done(db.delete(delete.key)),
        Command::Batch(batch) => match write_batch(batch) {
            Ok(batch) => done(db.write(batch)),
            Err(message) => ready(invalid_request(message)).boxed_local(),
        },
        Command::Scan(scan) => {
            let reverse = scan.reverse;
            let page = db.scan(scan_request(scan));
            async move {
                page.await
                    .map_or_else(|e| error_reply(&e), |p| scan_reply(p, reverse))
            }
            .boxed_local()
        }
        Command::Ping(_) => ready(Reply::Pong(proto::Pong {})).boxed_local(),
        Command::Cluster(_) => {
            ready(invalid_request("not a cluster node (no --cluster)")).boxed_local()
        }
        // The session answers `Auth` itself: it changes the connection,
        // not the database.
        Command::Auth(_) => ready(invalid_request("Auth is answered by the session")).boxed_local(),
        Command::Stats(_) => {
            let stats = db.stats();
            async move {
                stats.await.map_or_else(
                    |e| error_reply(&e),
                    |s| {
                        Reply::Stats(proto::StatsResult {
                            counters: s.counters.into_iter().collect(),
                        })
                    },
                )
            }
            .boxed_local()
        }
    }
}

/// `CheckpointResult`, or `INVALID_REQUEST` when the server has no root or
/// the name is not allowed.
fn checkpoint(db: &Db, root: &Arc<CheckpointRoot>, name: &str) -> LocalBoxFuture<'static, Reply> {
    let saved = root.save(db, name);
    async move {
        match saved.await {
            Ok(saved) => Reply::Checkpoint(proto::CheckpointResult {
                path: saved.path.display().to_string(),
                seq: saved.checkpoint.seq,
                segments: saved.checkpoint.segments as u64,
                bytes: saved.checkpoint.bytes,
            }),
            Err(CheckpointRefused::Request(message)) => invalid_request(message),
            Err(CheckpointRefused::Engine(e)) => error_reply(&e),
        }
    }
    .boxed_local()
}

/// The reply to a write: `Done`, or the engine's error.
pub(super) fn done(
    write: impl Future<Output = crate::Result<()>> + 'static,
) -> LocalBoxFuture<'static, Reply> {
    async move {
        write
            .await
            .map_or_else(|e| error_reply(&e), |()| Reply::Done(proto::Done {}))
    }
    .boxed_local()
}

/// A wire expiry as Unix milliseconds: `expire_at_ms` if set, else
/// `ttl_ms` from the database's now, else 0 (never).
pub(super) fn expire_at(db: &Db, expire_at_ms: u64, ttl_ms: u64) -> u64 {
    match (expire_at_ms, ttl_ms) {
        (0, 0) => 0,
        (0, ttl) => db.now_ms().saturating_add(ttl),
        (at, _) => at,
    }
}

fn flag_reply(value: bool) -> Reply {
    Reply::Flag(proto::Flag { value })
}

fn ttl_reply(ttl: Ttl) -> Reply {
    let (found, expire_at_ms, remaining_ms) = match ttl {
        Ttl::Absent => (false, 0, 0),
        Ttl::Never => (true, 0, 0),
        Ttl::At {
            at_ms,
            remaining_ms,
        } => (true, at_ms, remaining_ms),
    };
    Reply::Ttl(proto::TtlResult {
        found,
        expire_at_ms,
        remaining_ms,
    })
}

/// A `Get`'s reply to what the engine read.
pub fn get_reply(read: crate::Result<Option<Bytes>>) -> Reply {
    read.map_or_else(|e| error_reply(&e), value_reply)
}

fn value_reply(value: Option<Bytes>) -> Reply {
    Reply::Value(proto::Value {
        found: value.is_some(),
        value: value.unwrap_or_default(),
    })
}

fn scan_reply(page: ScanPage, reverse: bool) -> Reply {
    let continuation = page.continuation(reverse).unwrap_or_default();
    Reply::Scan(proto::ScanResult {
        entries: page
            .entries
            .into_iter()
            .map(|(key, value)| proto::KeyValue { key, value })
            .collect(),
        continuation,
    })
}

/// The engine's scan for a wire `Scan`: `[start, end)`, an empty `end`
/// meaning no upper bound, limit 0 meaning [`DEFAULT_SCAN_LIMIT`].
pub fn scan_request(scan: proto::Scan) -> ScanRequest {
    let start = if scan.start.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Included(scan.start)
    };
    let end = if scan.end.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(scan.end)
    };
    let limit = match scan.limit {
        0 => DEFAULT_SCAN_LIMIT,
        n => n as usize,
    };
    ScanRequest {
        start,
        end,
        limit,
        reverse: scan.reverse,
        max_bytes: SCAN_PAGE_BYTES,
    }
}

/// The engine batch for a wire `Batch`.
///
/// # Errors
/// A message if a mutation carries no operation.
pub fn write_batch(batch: proto::Batch) -> Result<WriteBatch, String> {
    let mut out = WriteBatch::new();
    for (i, mutation) in batch.mutations.into_iter().enumerate() {
        match mutation.op {
            Some(Op::Put(put)) if put.ttl_ms != 0 => {
                return Err(format!(
                    "batch mutation {i}: a put in a batch takes expire_at_ms, not ttl_ms"
                ));
            }
            Some(Op::Put(put)) => out.put_with_expiry(put.key, put.value, put.expire_at_ms),
            Some(Op::Delete(delete)) => out.delete(delete.key),
            None => return Err(format!("batch mutation {i} has no operation")),
        };
    }
    Ok(out)
}

/// The wire code for an engine error.
pub fn error_code(error: &Error) -> ErrorCode {
    match error {
        Error::InvalidArgument(_) => ErrorCode::InvalidRequest,
        Error::KeyTooLarge { .. } => ErrorCode::KeyTooLarge,
        Error::ValueTooLarge { .. } => ErrorCode::ValueTooLarge,
        Error::Corruption { .. } => ErrorCode::Corruption,
        Error::Io { .. } | Error::Locked { .. } | Error::Poisoned { .. } => ErrorCode::Io,
        Error::Closed => ErrorCode::ShuttingDown,
        Error::Conflict => ErrorCode::Conflict,
    }
}

/// Limits the lines of replied I/O errors: on a full disk every write gets one.
static IO_ERRORS_LOGGED: LogLimiter = LogLimiter::new();

/// `Reply::Error` for an engine error.
pub fn error_reply(err: &Error) -> Reply {
    match err {
        Error::Corruption { .. } => log::error!("a read hit corruption, replied CORRUPTION: {err}"),
        Error::Io { .. } | Error::Poisoned { .. } => {
            if let Some(held_back) = IO_ERRORS_LOGGED.admit() {
                log::warn!("replied an I/O error: {err}{}", held_back_suffix(held_back));
            }
        }
        _ => {}
    }
    // The client learns which file, not where the server keeps its data.
    error(error_code(err), err.client_message())
}

/// `Reply::Error{INVALID_REQUEST}` with `message`.
pub fn invalid_request(message: impl Into<String>) -> Reply {
    error(ErrorCode::InvalidRequest, message)
}

/// `Reply::Error` with `code` and `message`.
pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
    Reply::Error(proto::Error {
        code: code as i32,
        message: message.into(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scan_bounds_and_default_limit() {
        let r = scan_request(proto::Scan::default());
        assert_eq!((r.start, r.end), (Bound::Unbounded, Bound::Unbounded));
        assert_eq!(r.limit, DEFAULT_SCAN_LIMIT);
        let r = scan_request(proto::Scan {
            start: Bytes::from_static(b"a"),
            end: Bytes::from_static(b"c"),
            limit: 5,
            reverse: true,
        });
        assert_eq!(r.start, Bound::Included(Bytes::from_static(b"a")));
        assert_eq!(r.end, Bound::Excluded(Bytes::from_static(b"c")));
        assert_eq!((r.limit, r.reverse), (5, true));
    }

    #[test]
    fn batch_without_op_is_refused() {
        let batch = proto::Batch {
            mutations: vec![proto::Mutation { op: None }],
        };
        assert!(write_batch(batch).is_err());
    }

    #[test]
    fn error_codes() {
        assert_eq!(error_code(&Error::Closed), ErrorCode::ShuttingDown);
        let e = Error::KeyTooLarge { len: 2, limit: 1 };
        assert_eq!(error_code(&e), ErrorCode::KeyTooLarge);
        let e = Error::Locked { path: "x".into() };
        assert_eq!(error_code(&e), ErrorCode::Io);
        let cause = Box::new(Error::io(
            "writing /srv/db/000009.wal",
            std::io::Error::other("EIO"),
        ));
        let poisoned = Error::Poisoned { cause };
        assert_eq!(error_code(&poisoned), ErrorCode::Io);
        let message = poisoned.client_message();
        assert!(message.starts_with("writes refused until the database is reopened"));
        assert!(message.contains("writing 000009.wal: EIO"), "{message}");
    }
}
