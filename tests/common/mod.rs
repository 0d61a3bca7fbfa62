//! Helpers shared by the engine behaviour tests.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use naive_kv::Options;

/// Options with tiny memtables, segments and blocks, so that a few hundred
/// writes already cause flushes and compactions.
pub fn tiny_options(dir: &Path) -> Options {
    let mut options = Options::new(dir);
    // Shared by the active memtable and one frozen one: 4 KiB each.
    options.memtable_bytes = 8 << 10;
    options.l0_compaction_trigger = 2;
    options.level1_bytes = 16 << 10;
    options.level_size_multiplier = 4;
    options.target_segment_bytes = 8 << 10;
    options.block_bytes = 256;
    // Still a cache that fills and evicts, but cheap to make thousands of.
    options.block_cache_bytes = 16 << 10;
    options.read_threads = 2;
    options
}

/// True when the heavier variants were asked for.
pub fn long_tests() -> bool {
    std::env::var_os("NAIVEKV_LONG_TESTS").is_some_and(|v| v != "0" && !v.is_empty())
}

/// The regular files of `dir`, sorted by name.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Files of `dir` whose name ends with `suffix`, sorted by name.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(suffix))
        .collect()
}

/// Sum of the sizes of the regular files of `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    files(dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// Copies every regular file of `from` into `to` (created if missing).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for path in files(from) {
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// Opens a directory that a `Db` of this process just closed. `close`
/// releases the directory before it returns (pinned by
/// `engine_limits::close_releases_the_directory_at_once`); this still
/// retries on `Locked` for up to 2 s so that a regression there shows up in
/// that one test, not as noise in every test that reopens.
pub async fn reopen(options: naive_kv::Options) -> naive_kv::Db {
    for _ in 0..200 {
        match naive_kv::Db::open(options.clone()).await {
            Err(naive_kv::Error::Locked { .. }) => {
                actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            other => return other.unwrap(),
        }
    }
    panic!("directory still locked 2 s after close");
}

/// Wakes a parked thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future on the calling thread, parking between polls: the
/// plainest executor there is, with no actix or tokio runtime (for tests
/// that drive the engine from plain OS threads).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// Options for a database at `/db` on the simulated file system `fs`, one
/// read thread, syncing as `sync`.
pub fn sim_options(fs: &naive_kv::fs::sim::SimFs, sync: naive_kv::SyncPolicy) -> Options {
    let mut options = Options::new("/db");
    options.fs = Arc::new(fs.clone());
    options.read_threads = 1;
    options.sync = sync;
    options
}
