//! The engine's one error type. Normal outcomes are values, not errors: an
//! absent key is `Ok(None)`. Every variant is a kind a caller can match on.

use std::path::PathBuf;
use std::sync::Arc;

/// What went wrong in the storage engine.
///
/// `Error` is `Clone` so that one failed group commit can be reported to every
/// writer waiting on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The caller passed something the engine refuses (an empty key, a bad range).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A key longer than `Options::max_key_bytes`.
    #[error("key too large: {len} bytes, the limit is {limit}")]
    KeyTooLarge { len: usize, limit: usize },
    /// A value longer than `Options::max_value_bytes`.
    #[error("value too large: {len} bytes, the limit is {limit}")]
    ValueTooLarge { len: usize, limit: usize },
    /// A file on disk does not say what it should: bad checksum, bad length,
    /// bad magic number. Never returned as wrong data instead.
    #[error("corruption in {}: {detail} (at offset {offset})", path.display())]
    Corruption {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    /// An operating-system I/O call failed. After a failed WAL write or sync
    /// later writes get [`Error::Poisoned`] until the database is reopened.
    #[error("I/O error: {context}: {source}")]
    Io {
        context: String,
        source: Arc<std::io::Error>,
    },
    /// An earlier write to the WAL, sync of it or switch to a new one failed,
    /// so what the file holds after the last acknowledged write is unknown:
    /// the database refuses writes (reads still work) until it is reopened,
    /// and recovery then keeps exactly what was acknowledged. `cause` is that
    /// first failure. (A full disk is not this: writes are refused with
    /// `Io` of kind `StorageFull` and resume once there is space.)
    #[error(
        "writes refused until the database is reopened: an earlier WAL write or sync failed ({cause})"
    )]
    Poisoned { cause: Box<Error> },
    /// Another process (or another `Db` in this one) holds the directory's lock.
    #[error("database directory {} is locked by another process", path.display())]
    Locked { path: PathBuf },
    /// The database was closed, or its actors have stopped.
    #[error("database is closed")]
    Closed,
    /// A conditional write ([`crate::WriteBatch::require_unchanged`]) was
    /// not applied: a key it depends on was written after it was read.
    /// Nothing of the batch was written; read again and retry.
    #[error("conflict: a key the write depends on changed after it was read")]
    Conflict,
}

/// What an empty key is refused with.
const EMPTY_KEY: &str = "keys must not be empty";

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with what was being done when it happened.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// The message for someone outside the machine (a client, a report):
    /// every absolute path in it is cut to its file name, so that a client
    /// learns which file, not where the server keeps its data. The server's
    /// log keeps the full message.
    pub fn client_message(&self) -> String {
        self.to_string()
            .split(' ')
            .map(|word| match word.strip_prefix('/') {
                Some(path) => path.rsplit('/').next().unwrap_or(path),
                None => word,
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The refusal of an empty key.
    pub fn empty_key() -> Self {
        Error::InvalidArgument(EMPTY_KEY.into())
    }

    /// True for the refusal of a key nothing can be stored under (empty,
    /// or longer than the limit): a read of it finds nothing.
    pub fn is_unstorable_key(&self) -> bool {
        match self {
            Error::KeyTooLarge { .. } => true,
            Error::InvalidArgument(message) => message == EMPTY_KEY,
            _ => false,
        }
    }

    /// A corruption error at `offset` of `path`.
    pub fn corruption(path: impl Into<PathBuf>, offset: u64, detail: impl Into<String>) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            detail: detail.into(),
        }
    }
}

/// Adds the path (and what was being done) to an `io::Error`.
pub trait IoContext<T> {
    /// Turns an `io::Result` into an engine `Result`, saying what failed.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_name_files_not_where_they_are() {
        let error = Error::corruption("/srv/db/000007.sst", 12, "bad block");
        assert_eq!(
            error.client_message(),
            "corruption in 000007.sst: bad block (at offset 12)"
        );
        let error = Error::io(
            "renaming /srv/db/MANIFEST.tmp to /srv/db/MANIFEST",
            std::io::Error::other("gone"),
        );
        let message = error.client_message();
        assert_eq!(
            message,
            "I/O error: renaming MANIFEST.tmp to MANIFEST: gone"
        );
    }
}
