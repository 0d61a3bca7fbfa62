//! Access control: with a token, nothing but `Auth` is served until the
//! right token arrives; wrong tokens are refused and, repeated, close the
//! connection; `run_server` refuses to listen openly without a token; the
//! data directory is private to its owner.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod server_support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use bytes::Bytes;
use naive_kv::client::{Client, ClientError};
use naive_kv::proto::{self, ErrorCode, request::Command, response::Reply};
use naive_kv::server::ServerConfig;
use naive_kv::server::auth::AuthToken;
use server_support::{TestServer, config, error_code, read_response, request, round_trip, runtime};

const TOKEN: &str = "correct horse battery staple";

fn with_token() -> TestServer {
    TestServer::start_with(ServerConfig {
        auth_token: AuthToken::new(TOKEN),
        ..config()
    })
}

fn auth(id: u64, token: &str) -> Vec<u8> {
    request(
        id,
        Command::Auth(proto::Auth {
            token: token.into(),
        }),
    )
}

fn get(id: u64, key: &str) -> Vec<u8> {
    request(
        id,
        Command::Get(proto::Get {
            key: Bytes::from(key.to_string()),
        }),
    )
}

#[test]
fn nothing_is_served_before_the_right_token() {
    let server = with_token();
    let mut stream = server.connect();
    let ping = request(1, Command::Ping(proto::Ping {}));
    let response = round_trip(&mut stream, &ping);
    assert_eq!(response.id, 1);
    assert_eq!(error_code(&response), Some(ErrorCode::Unauthenticated));
    let response = round_trip(&mut stream, &get(2, "k"));
    assert_eq!(error_code(&response), Some(ErrorCode::Unauthenticated));
    let response = round_trip(&mut stream, &auth(3, "correct horse"));
    assert_eq!(error_code(&response), Some(ErrorCode::Unauthenticated));
    // Pipelined: a get before the token is refused, the one after served.
    let mut bytes = get(4, "k");
    bytes.extend(auth(5, TOKEN));
    bytes.extend(get(6, "k"));
    stream.write_all(&bytes).unwrap();
    let replies: Vec<_> = (0..3)
        .map(|_| read_response(&mut stream).unwrap())
        .collect();
    assert_eq!(error_code(&replies[0]), Some(ErrorCode::Unauthenticated));
    assert_eq!(replies[1].reply, Some(Reply::Done(proto::Done {})));
    assert_eq!(replies[2].id, 6);
    assert!(matches!(replies[2].reply, Some(Reply::Value(_))));
}

#[test]
fn repeated_wrong_tokens_close_the_connection() {
    let server = with_token();
    let mut stream = server.connect();
    for id in 1..=3 {
        let response = round_trip(&mut stream, &auth(id, "guess"));
        assert_eq!(error_code(&response), Some(ErrorCode::Unauthenticated));
    }
    assert!(read_response(&mut stream).is_none(), "closed");
}

#[test]
fn a_large_frame_before_auth_is_refused() {
    let server = with_token();
    let mut stream = server.connect();
    let put = request(
        1,
        Command::Put(proto::Put {
            key: "k".into(),
            value: vec![0u8; 100 << 10].into(),
            ..Default::default()
        }),
    );
    let _ = stream.write_all(&put);
    let response = read_response(&mut stream).unwrap();
    assert_eq!(error_code(&response), Some(ErrorCode::FrameTooLarge));
    let Some(Reply::Error(error)) = &response.reply else {
        panic!("{response:?}");
    };
    assert!(error.message.contains("before Auth"), "{error:?}");
}

#[test]
fn the_client_library_authenticates() {
    let server = with_token();
    runtime().block_on(async {
        let client = Client::connect(server.addr).await.unwrap();
        match client.put("k", "v").await {
            Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::Unauthenticated),
            other => panic!("unexpected {other:?}"),
        }
        client.auth(TOKEN).await.unwrap();
        client.put("k", "big".repeat(100_000)).await.unwrap();
        assert_eq!(client.get("k").await.unwrap().unwrap().len(), 300_000);
    });
}

#[test]
fn auth_without_a_configured_token_is_accepted() {
    let server = TestServer::start();
    let mut stream = server.connect();
    let response = round_trip(&mut stream, &auth(1, "anything"));
    assert_eq!(response.reply, Some(Reply::Done(proto::Done {})));
}

#[test]
fn run_client_reads_the_token_file() {
    let server = with_token();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    let run = |token: Option<&std::path::Path>| {
        let mut cmd = Process::new(env!("CARGO_BIN_EXE_run_client"));
        cmd.args(["--port", &server.addr.port().to_string()]);
        if let Some(token) = token {
            cmd.arg("--auth-token-file").arg(token);
        }
        cmd.args(["set", "a", "b"]).output().unwrap()
    };
    let out = run(Some(&path));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"OK\n");
    let out = run(None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("UNAUTHENTICATED"), "{stderr}");
    // And says what to do about it.
    assert!(stderr.contains("--auth-token-file"), "{stderr}");
}

/// Starts `run_server` with `args` on a fresh directory; its exit status and
/// stderr if it exits within 5 s, `None` (after killing it) if it serves.
fn run_server(args: &[&str]) -> Option<(std::process::ExitStatus, String)> {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Process::new(env!("CARGO_BIN_EXE_run_server"))
        .arg("--directory")
        .arg(dir.path().join("db"))
        .args(["--port", "0"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            if line.contains("listening on") {
                let _ = tx.send(None);
            }
            text.push_str(&line);
            text.push('\n');
        }
        let _ = tx.send(Some(text));
    });
    let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    match first {
        Some(text) => Some((child.wait().unwrap(), text)),
        None => {
            child.kill().unwrap();
            child.wait().unwrap();
            None
        }
    }
}

#[test]
fn an_open_address_needs_a_token_or_insecure() {
    let (status, stderr) = run_server(&["--ip", "0.0.0.0"]).expect("refuses to start");
    assert!(!status.success());
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("--insecure"), "{stderr}");
    assert!(run_server(&["--ip", "0.0.0.0", "--insecure"]).is_none());
    assert!(run_server(&["--ip", "127.0.0.1"]).is_none());
}

#[test]
fn the_redis_listener_takes_the_same_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "t0ken\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let token = ["--auth-token-file", path.to_str().unwrap()];
    let resp = ["--resp-port", "0"];
    // With a token, both listeners are protected: the server starts.
    assert!(run_server(&[&token[..], &resp[..]].concat()).is_none());
    // Without one, a non-loopback address is still refused.
    let (status, _) = run_server(&["--ip", "0.0.0.0", "--resp-port", "0"]).unwrap();
    assert!(!status.success());
}

#[test]
fn token_files_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let path_arg = path.to_str().unwrap();
    std::fs::write(&path, "\n").unwrap();
    let (status, stderr) = run_server(&["--auth-token-file", path_arg]).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("empty"), "{stderr}");
    std::fs::write(&path, "t0ken\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = ["--ip", "0.0.0.0", "--auth-token-file", path_arg];
    assert!(run_server(&args).is_none(), "serves with a token");
}

#[test]
fn data_directory_is_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let server = TestServer::start_in(&dir, config());
    runtime().block_on(async {
        let client = Client::connect(server.addr).await.unwrap();
        client.put("k", "v").await.unwrap();
    });
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "directory");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
            files += 1;
        }
    }
    assert!(files > 0);
    drop(server);
}
