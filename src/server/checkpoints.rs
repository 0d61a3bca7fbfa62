//! Checkpoints asked for by clients (native `Checkpoint`, RESP `SAVE` and
//! `BGSAVE`): where they may be written and when the last one finished.
//!
//! A client names a checkpoint; the server writes it only as a direct child
//! of the root the operator gave (`run_server --checkpoint-dir DIR`). With
//! no root every request is refused; a name that is empty, `.` or `..`,
//! holds a path separator, `..` or NUL, is longer than 255 bytes, or already
//! exists under the root is refused, so a client cannot make the server
//! write anywhere else or over anything. One [`CheckpointRoot`] is shared
//! by both protocols; its state is atomics, no lock.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Db;
use crate::engine::Checkpointed;

/// The message of a refused request when the server has no root.
pub const NO_ROOT: &str =
    "checkpoints are off on this server: start run_server with --checkpoint-dir DIR";

/// Longest checkpoint name.
const MAX_NAME_BYTES: usize = 255;

/// The allowed root and what was last written under it.
#[derive(Debug, Default)]
pub struct CheckpointRoot {
    /// Where checkpoints go; `None` refuses them all.
    root: Option<PathBuf>,
    /// Unix seconds when the last checkpoint finished (0: none yet), for
    /// `LASTSAVE`.
    last_save_unix: AtomicU64,
    /// A checkpoint started by `BGSAVE` has not finished.
    background: AtomicBool,
}

/// Why a checkpoint was not written.
#[derive(Debug)]
pub enum CheckpointRefused {
    /// The request itself: no root, or a name not allowed (the message
    /// says which).
    Request(String),
    /// The engine failed while writing it (a partial copy is removed).
    Engine(crate::Error),
}

/// A written checkpoint.
#[derive(Debug, Clone)]
pub struct Saved {
    /// The checkpoint's directory on the server.
    pub path: PathBuf,
    /// What it holds.
    pub checkpoint: Checkpointed,
}

impl CheckpointRoot {
    /// Checkpoints written under `root`, or refused without one.
    pub fn new(root: Option<PathBuf>) -> Self {
        CheckpointRoot {
            root,
            ..CheckpointRoot::default()
        }
    }

    /// Whether checkpoints are allowed at all.
    pub fn enabled(&self) -> bool {
        self.root.is_some()
    }

    /// The root, if any.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The directory a checkpoint called `name` goes to.
    ///
    /// # Errors
    /// A message for the client: no root, or a name not allowed (see the
    /// module doc).
    pub fn target(&self, name: &str) -> Result<PathBuf, String> {
        let root = self.root.as_deref().ok_or_else(|| NO_ROOT.to_string())?;
        check_name(name)?;
        let target = root.join(name);
        if target.symlink_metadata().is_ok() {
            return Err(format!("checkpoint '{name}' already exists"));
        }
        Ok(target)
    }

    /// Writes a checkpoint of `db` called `name` under the root (the
    /// memtable flush is asked for before this returns, so the
    /// checkpoint holds every write acknowledged before the call), and
    /// records when it finished.
    pub fn save(
        self: &Arc<Self>,
        db: &Db,
        name: &str,
    ) -> impl Future<Output = Result<Saved, CheckpointRefused>> + 'static {
        let target = self.target(name);
        let written = target.as_ref().ok().map(|path| db.checkpoint(path.clone()));
        let this = self.clone();
        async move {
            let path = target.map_err(CheckpointRefused::Request)?;
            let written = written.ok_or_else(|| CheckpointRefused::Request(NO_ROOT.into()))?;
            let checkpoint = match written.await {
                Ok(checkpoint) => checkpoint,
                Err(e) => {
                    // A copy cut short must not be mistaken for a checkpoint.
                    if matches!(e, crate::Error::Io { .. }) {
                        let _ = std::fs::remove_dir_all(&path);
                    }
                    return Err(CheckpointRefused::Engine(e));
                }
            };
            this.last_save_unix.store(unix_now(), Ordering::Release);
            Ok(Saved { path, checkpoint })
        }
    }

    /// A name for a checkpoint taken now by `SAVE` or `BGSAVE`:
    /// `save-<unix milliseconds>`, with `-N` added if that exists.
    pub fn timestamped_name(&self) -> String {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let base = format!("save-{millis}");
        let exists = |name: &str| {
            self.root
                .as_deref()
                .is_some_and(|root| root.join(name).symlink_metadata().is_ok())
        };
        if !exists(&base) {
            return base;
        }
        (1..)
            .map(|n| format!("{base}-{n}"))
            .find(|name| !exists(name))
            .unwrap_or(base)
    }

    /// Unix seconds when the last checkpoint finished; 0 if none has.
    pub fn last_save_unix(&self) -> u64 {
        self.last_save_unix.load(Ordering::Acquire)
    }

    /// Marks a background checkpoint as started; false if one is already
    /// running.
    pub fn begin_background(&self) -> bool {
        !self.background.swap(true, Ordering::AcqRel)
    }

    /// Marks the background checkpoint as finished.
    pub fn end_background(&self) {
        self.background.store(false, Ordering::Release);
    }

    /// Whether a background checkpoint is running.
    pub fn background_running(&self) -> bool {
        self.background.load(Ordering::Acquire)
    }
}

/// Refuses names that would leave the root or are not one plain component.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("'{name}' is not a checkpoint name"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "a checkpoint name is at most {MAX_NAME_BYTES} bytes"
        ));
    }
    if name.contains(['/', '\\', '\0']) || name.contains("..") || Path::new(name).is_absolute() {
        return Err(format!(
            "checkpoint name '{name}' must be one plain name: no path separator or '..'"
        ));
    }
    Ok(())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_one_plain_component() {
        for good in ["daily", "save-1700000000000", "a.b", "x_y-z"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let long = "x".repeat(256);
        for bad in [
            "", ".", "..", "../x", "a/b", "/abs", "a\\b", "a..b", "a\0b", &long,
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn without_a_root_everything_is_refused() {
        let root = CheckpointRoot::new(None);
        assert_eq!(root.target("daily").unwrap_err(), NO_ROOT);
        assert!(!root.enabled());
    }

    #[test]
    fn targets_are_children_of_the_root_that_do_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let root = CheckpointRoot::new(Some(dir.path().to_path_buf()));
        assert_eq!(root.target("daily").unwrap(), dir.path().join("daily"));
        std::fs::create_dir(dir.path().join("daily")).unwrap();
        assert!(root.target("daily").unwrap_err().contains("already exists"));
        assert!(root.target("../escape").is_err());
    }

    #[test]
    fn timestamped_names_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let root = CheckpointRoot::new(Some(dir.path().to_path_buf()));
        let first = root.timestamped_name();
        assert!(first.starts_with("save-"), "{first}");
        std::fs::create_dir(dir.path().join(&first)).unwrap();
        let second = root.timestamped_name();
        assert_ne!(first, second);
        assert!(root.target(&second).is_ok());
    }

    #[test]
    fn one_background_checkpoint_at_a_time() {
        let root = CheckpointRoot::new(None);
        assert!(root.begin_background());
        assert!(!root.begin_background());
        assert!(root.background_running());
        root.end_background();
        assert!(root.begin_background());
    }
}
