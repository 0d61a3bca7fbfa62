//! Shared by the tests that run the binaries: `run_server` as a child
//! process on a tempdir, its bound addresses read from its log.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// Longest wait for the server to start or stop.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A `run_server` child process, stopped (SIGKILL) when dropped.
pub struct ServerProcess {
    pub child: Child,
    /// The log lines before `listening on`.
    pub startup: Vec<String>,
    /// The `listening on ...` log line.
    pub listening: String,
    /// Every later line of its log.
    pub log: Receiver<String>,
}

impl ServerProcess {
    /// Starts `run_server --directory DIR ARGS` and waits for it to listen.
    pub fn start(dir: &Path, args: &[&str]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_run_server"))
            .arg("--directory")
            .arg(dir)
            .args(args)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + PATIENCE;
        let mut startup = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = log.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not listen in time: {startup:?}");
            };
            if line.contains("listening on") {
                return ServerProcess {
                    child,
                    startup,
                    listening: line,
                    log,
                };
            }
            startup.push(line);
        }
    }

    /// The native listener's address.
    pub fn native(&self) -> SocketAddr {
        self.address_before(" (native)")
    }

    /// The RESP listener's address.
    pub fn resp(&self) -> SocketAddr {
        self.address_before(" (RESP)")
    }

    /// The metrics endpoint's address.
    pub fn metrics(&self) -> SocketAddr {
        let start = self.listening.find("http://").unwrap() + "http://".len();
        let rest = &self.listening[start..];
        rest[..rest.find("/metrics").unwrap()].parse().unwrap()
    }

    fn address_before(&self, tag: &str) -> SocketAddr {
        let end = self.listening.find(tag).unwrap();
        let start = self.listening[..end].rfind(' ').unwrap();
        self.listening[start + 1..end].parse().unwrap()
    }

    /// Waits at most [`PATIENCE`] for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) -> Option<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Sends `signal` (e.g. "TERM") to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        wait_for(&mut self.child)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits at most [`PATIENCE`] for `child` to exit.
pub fn wait_for(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `run_server ARGS` on a fresh directory expecting it to refuse
/// them; its output (it is killed if it starts).
pub fn refused(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_run_server"))
        .arg("--directory")
        .arg(dir.path().join("db"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&mut child);
    child.wait_with_output().unwrap()
}

/// Process `pid`'s resident set size in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// CPU time (user and system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // The kernel reports in USER_HZ, 100 per second on Linux.
    Duration::from_millis(ticks * 10)
}
