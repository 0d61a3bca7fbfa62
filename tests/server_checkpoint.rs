//! Checkpoints asked for by clients: the native `Checkpoint` request (library
//! client and `run_client checkpoint NAME` against `run_server
//! --checkpoint-dir`), RESP `SAVE`/`BGSAVE`/`LASTSAVE`; each checkpoint is
//! opened as a database and checked, and requests without a root or with a
//! name that would leave it are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli_support;
mod resp_support;
mod server_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use naive_kv::client::{Client, ClientError};
use naive_kv::proto::ErrorCode;
use naive_kv::server::ServerConfig;
use naive_kv::server::checkpoints::CheckpointRoot;
use naive_kv::{Db, Options, ScanRequest, SyncPolicy};
use resp_support::{RespServer, fails, q};
use server_support::{TestServer, runtime};

fn root_config(root: &Path) -> ServerConfig {
    ServerConfig {
        workers: 2,
        checkpoints: Arc::new(CheckpointRoot::new(Some(root.to_path_buf()))),
        ..ServerConfig::default()
    }
}

/// Every key and value of the database in `dir`, opened on its own.
fn contents(dir: &Path) -> Vec<(Bytes, Bytes)> {
    actix::System::new().block_on(async {
        let db = Db::open(Options::new(dir)).await.unwrap();
        let request = ScanRequest {
            limit: 0,
            ..ScanRequest::all()
        };
        let all = db.scan(request).await.unwrap().entries;
        db.close().await.unwrap();
        all
    })
}

fn pairs(range: std::ops::Range<usize>, tag: &str) -> Vec<(Bytes, Bytes)> {
    range
        .map(|i| {
            (
                Bytes::from(format!("k{i:05}")),
                Bytes::from(format!("{tag}{i}")),
            )
        })
        .collect()
}

#[test]
fn a_native_checkpoint_holds_the_writes_before_it_and_none_after() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(root_config(root.path()));
    let result = runtime().block_on(async {
        let client = Client::connect(server.addr).await.unwrap();
        for (k, v) in pairs(0..500, "v") {
            client.put(k, v).await.unwrap();
        }
        let result = client.checkpoint("first").await.unwrap();
        // Writes after the answer are not in the checkpoint.
        for (k, _) in pairs(0..100, "v") {
            client.delete(k).await.unwrap();
        }
        client.put("late", "x").await.unwrap();
        result
    });
    let path = PathBuf::from(&result.path);
    assert_eq!(path, root.path().join("first"));
    assert!(result.seq >= 500, "{result:?}");
    server.stop().unwrap();
    assert_eq!(contents(&path), pairs(0..500, "v"));
}

#[test]
fn native_checkpoints_are_refused_without_a_root_or_outside_it() {
    let root = tempfile::tempdir().unwrap();
    let off = TestServer::start();
    let on = TestServer::start_with(root_config(root.path()));
    runtime().block_on(async {
        let refused = |result: Result<_, ClientError>| match result {
            Err(ClientError::Server { code, message }) => {
                assert_eq!(code, ErrorCode::InvalidRequest, "{message}");
                message
            }
            other => panic!("not refused: {other:?}"),
        };
        let client = Client::connect(off.addr).await.unwrap();
        let message = refused(client.checkpoint("daily").await);
        assert!(message.contains("--checkpoint-dir"), "{message}");

        let client = Client::connect(on.addr).await.unwrap();
        client.put("k", "v").await.unwrap();
        let outside = root.path().parent().unwrap().join("escaped");
        for name in [
            "",
            ".",
            "..",
            "../escaped",
            "a/b",
            outside.to_str().unwrap(),
        ] {
            refused(client.checkpoint(name).await);
        }
        assert!(!outside.exists());
        client.checkpoint("daily").await.unwrap();
        let message = refused(client.checkpoint("daily").await);
        assert!(message.contains("already exists"), "{message}");
        // The connection still serves after refusals.
        assert_eq!(client.get("k").await.unwrap(), Some(Bytes::from("v")));
    });
    let names: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["daily"]);
}

fn resp_with_root(root: &Path) -> RespServer {
    let root = root.to_path_buf();
    RespServer::start_tuned(SyncPolicy::None, None, move |config| {
        config.checkpoints = Arc::new(CheckpointRoot::new(Some(root)));
    })
}

/// The checkpoint directories under `root`, oldest name first.
fn checkpoints(root: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    all.sort();
    all
}

#[test]
fn resp_save_bgsave_and_lastsave_write_checkpoints_that_open() {
    let root = tempfile::tempdir().unwrap();
    let server = resp_with_root(root.path());
    let mut con = server.redis();
    // Before any checkpoint, as Redis before its first save: the start.
    let started = q::<i64>(&mut con, &["LASTSAVE"]);
    assert!(started > 1_700_000_000, "{started}");
    for (k, v) in pairs(0..300, "a") {
        let _: () = redis::cmd("SET")
            .arg(&k[..])
            .arg(&v[..])
            .query(&mut con)
            .unwrap();
    }
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(q::<String>(&mut con, &["SAVE"]), "OK");
    let last = q::<i64>(&mut con, &["LASTSAVE"]);
    assert!(last >= before && last <= before + 5, "{last} vs {before}");
    let info = q::<String>(&mut con, &["INFO", "persistence"]);
    assert!(
        info.contains(&format!("rdb_last_save_time:{last}")),
        "{info}"
    );

    for (k, v) in pairs(300..400, "b") {
        let _: () = redis::cmd("SET")
            .arg(&k[..])
            .arg(&v[..])
            .query(&mut con)
            .unwrap();
    }
    assert_eq!(
        q::<String>(&mut con, &["BGSAVE"]),
        "Background saving started"
    );
    // Wait for the background checkpoint to finish.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = q::<String>(&mut con, &["INFO", "persistence"]);
        if info.contains("rdb_bgsave_in_progress:0") && checkpoints(root.path()).len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "BGSAVE did not finish: {info}");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop().unwrap();
    let saved = checkpoints(root.path());
    assert!(
        saved.iter().all(|p| p
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("save-")),
        "{saved:?}"
    );
    assert_eq!(contents(&saved[0]), pairs(0..300, "a"));
    let mut both = pairs(0..300, "a");
    both.extend(pairs(300..400, "b"));
    assert_eq!(contents(&saved[1]), both);
}

#[test]
fn resp_snapshots_are_refused_without_a_root() {
    let server = RespServer::start();
    let mut con = server.redis();
    for command in ["SAVE", "BGSAVE"] {
        let message = fails(&mut con, &[command]);
        assert!(message.contains("--checkpoint-dir"), "{command}: {message}");
    }
    assert!(q::<i64>(&mut con, &["LASTSAVE"]) > 1_700_000_000);
    let message = fails(&mut con, &["BGSAVE", "NOW"]);
    assert!(message.contains("syntax"), "{message}");
}

#[test]
fn run_client_checkpoint_then_run_server_on_the_checkpoint() {
    let data = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let root_arg = root.path().to_str().unwrap();
    let server = cli_support::ServerProcess::start(
        data.path(),
        &["--port", "0", "--checkpoint-dir", root_arg],
    );
    let client = |port: u16, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_run_client"))
            .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code(),
        )
    };
    let port = server.native().port();
    assert_eq!(client(port, &["set", "greeting", "hello"]).1, Some(0));
    let (out, code) = client(port, &["checkpoint", "nightly"]);
    assert_eq!(code, Some(0), "{out}");
    let nightly = root.path().join("nightly");
    assert!(
        out.starts_with(&format!("{} seq ", nightly.display())),
        "{out}"
    );
    let (_, code) = client(port, &["checkpoint", "../elsewhere"]);
    assert_eq!(code, Some(1));
    server.stop();

    // Restore: serve the checkpoint directory.
    let restored = cli_support::ServerProcess::start(&nightly, &["--port", "0"]);
    let (out, _) = client(restored.native().port(), &["get", "greeting"]);
    assert_eq!(out, "hello\n");
    restored.stop();
}
