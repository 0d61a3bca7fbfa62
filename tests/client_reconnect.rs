//! `run_client` reconnects on the next command after the server restarted
//! or closed an idle connection, and fails within its timeout, with a hint,
//! when pointed at a port that does not speak the native protocol.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli_support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use cli_support::{PATIENCE, ServerProcess, wait_for};

/// A `run_client` in stdin mode, fed and read line by line.
struct Shell {
    child: Child,
    input: ChildStdin,
    output: Receiver<String>,
}

impl Shell {
    fn start(port: u16) -> Shell {
        let mut child = Command::new(env!("CARGO_BIN_EXE_run_client"))
            .args(["-p", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, output) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    return;
                }
            }
        });
        Shell {
            child,
            input,
            output,
        }
    }

    /// Sends `line` and gives the next line of output.
    fn send(&mut self, line: &str) -> String {
        writeln!(self.input, "{line}").unwrap();
        self.output.recv_timeout(PATIENCE).expect("an answer")
    }

    /// Ends the input; the exit code and stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        drop(self.input);
        let status = wait_for(&mut self.child);
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status.code(), stderr)
    }
}

#[test]
fn the_shell_reconnects_after_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let server = ServerProcess::start(&db, &["--port", "0", "--sync", "none"]);
    let port = server.native().port();
    let mut shell = Shell::start(port);
    assert_eq!(shell.send("set a 1"), "OK");
    assert!(server.stop().success());
    let port_arg = port.to_string();
    let _server = ServerProcess::start(&db, &["--port", &port_arg, "--sync", "none"]);
    assert_eq!(shell.send("get a"), "1");
    assert_eq!(shell.send("ping"), "PONG");
    let (code, stderr) = shell.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
}

#[test]
fn the_shell_reconnects_after_an_idle_close() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--port", "0", "--sync", "none", "--idle-timeout", "0.2"];
    let server = ServerProcess::start(&dir.path().join("db"), &args);
    let mut shell = Shell::start(server.native().port());
    assert_eq!(shell.send("set k v"), "OK");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(shell.send("get k"), "v");
    let (code, stderr) = shell.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
}

/// Reading a script, the shell stops once the server cannot be reached
/// (after its retries) instead of retrying every remaining line: 200k
/// lines piped in after a server stopped would have taken hours.
#[test]
fn a_script_stops_when_the_server_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("db"), &["--port", "0"]);
    let mut shell = Shell::start(server.native().port());
    assert_eq!(shell.send("set a 1"), "OK");
    assert!(server.stop().success());
    let script: String = (0..10_000).map(|i| format!("set k{i} v\n")).collect();
    // The shell may stop (and close its stdin) before it has read it all.
    let _ = shell.input.write_all(script.as_bytes());
    let started = Instant::now();
    let (code, stderr) = shell.finish();
    assert!(started.elapsed() < PATIENCE, "{:?}", started.elapsed());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("the rest is not sent"), "{stderr}");
    assert!(stderr.lines().count() < 30, "{stderr}");
}

/// Runs `run_client --timeout 1 -p PORT ping`: exit code, stderr and time.
fn ping_with_timeout(port: u16) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_run_client"))
        .args(["--timeout", "1", "-p", &port.to_string(), "ping"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_for(&mut child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (status.code(), stderr, started.elapsed())
}

#[test]
fn a_silent_port_fails_within_the_timeout_with_a_hint() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (code, stderr, took) = ping_with_timeout(silent.local_addr().unwrap().port());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(stderr.contains("no reply within 1.0 s"), "{stderr}");
    assert!(stderr.contains("NaiveKV native port"), "{stderr}");
}

/// The RESP port refuses a native frame at once (its first byte is 0, and
/// no RESP request starts so), rather than waiting for a newline that never
/// comes: the client says so without waiting for its timeout.
#[test]
fn the_resp_port_fails_at_once_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--port", "0", "--resp-port", "0", "--sync", "none"];
    let server = ServerProcess::start(&dir.path().join("db"), &args);
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_run_client"))
        .args(["--timeout", "30", "-p", &server.resp().port().to_string()])
        .arg("ping")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("native clients use --port"), "{stderr}");
    assert!(stderr.contains("NaiveKV native port"), "{stderr}");
}

/// A service that answers in text (a Redis server's `-ERR`, an HTTP
/// status line) is told at once from its first bytes: the client used to
/// read them as a frame length of some 700 MB and wait for its timeout.
#[test]
fn a_port_that_answers_in_text_fails_at_once() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(1) {
            let mut stream = stream.unwrap();
            let mut request = [0u8; 64];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"-ERR unknown command\r\n");
            std::thread::sleep(Duration::from_secs(30));
        }
    });
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_run_client"))
        .args(["--timeout", "20", "-p", &port.to_string(), "ping"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("answered in text (`-ERR unknown command`)"),
        "{stderr}"
    );
}
