//! `run_server`'s log narrates the engine: each flush and compaction at
//! INFO with its figures, and a corrupt segment reaching a client at ERROR
//! with its full path, while the client's error names only the file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cli_support::ServerProcess;

/// Runs `run_client -p PORT` with `script` on stdin.
fn run_client(port: u16, script: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_run_client"))
        .args(["-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `count` sets of 1 KiB values, keys from `first`.
fn writes(first: usize, count: usize) -> String {
    let value = "v".repeat(1024);
    (first..first + count)
        .map(|i| format!("set key{i:06} {value}\n"))
        .collect()
}

const SMALL_MEMTABLES: [&str; 6] = ["--port", "0", "--sync", "none", "--memtable-bytes", "1MiB"];

#[test]
fn flushes_and_compactions_are_logged_with_their_figures() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("db"), &SMALL_MEMTABLES);
    // About 20 flushes of 1 KiB values: well past the level-0 compaction
    // trigger (12 segments).
    let out = run_client(server.native().port(), &writes(0, 9000));
    assert!(out.status.success(), "{out:?}");
    let flush = server.wait_for_log("flushed WAL").expect("a flush line");
    assert!(flush.contains(" INFO "), "{flush}");
    assert!(
        flush.contains(" entries, ") && flush.contains(" ms"),
        "{flush}"
    );
    let compaction = server.wait_for_log("compacted").expect("a compaction line");
    assert!(compaction.contains("into level 1"), "{compaction}");
    assert!(compaction.contains("bytes in, "), "{compaction}");
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sst"))
        .collect()
}

#[test]
fn a_corrupt_segment_reaching_a_client_is_logged_at_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let server = ServerProcess::start(&db, &SMALL_MEMTABLES);
    let out = run_client(server.native().port(), &writes(0, 700));
    assert!(out.status.success(), "{out:?}");
    server.wait_for_log("flushed WAL").expect("a flush line");
    assert!(server.stop().success());

    let segment = segments(&db).pop().expect("a segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0xFF;
    std::fs::write(&segment, bytes).unwrap();

    let server = ServerProcess::start(&db, &SMALL_MEMTABLES);
    let out = run_client(server.native().port(), "scan\n");
    let replied = String::from_utf8_lossy(&out.stderr);
    assert!(replied.contains("CORRUPTION"), "{out:?}");
    // The client is told the file, not where the server keeps it; the log
    // has the full path.
    let name = segment.file_name().unwrap().to_str().unwrap();
    assert!(replied.contains(name), "{replied}");
    assert!(!replied.contains(db.to_str().unwrap()), "{replied}");
    let logged = server.wait_for_log("corruption").expect("an ERROR line");
    assert!(logged.contains(" ERROR "), "{logged}");
    assert!(logged.contains(segment.to_str().unwrap()), "{logged}");
}
