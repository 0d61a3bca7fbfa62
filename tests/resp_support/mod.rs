//! Shared by the RESP tests: a real server (native and RESP listeners on
//! one database, as `run_server --resp-port` runs them) on 127.0.0.1:0
//! ports with a tempdir database, in its own actix system on a thread; and
//! helpers to speak raw RESP bytes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use naive_kv::resp::{RespConfig, run_beside};
use naive_kv::server::ServerConfig;
use naive_kv::{Db, Options, SyncPolicy};
use tokio::sync::oneshot;

/// A server running on its own thread until dropped.
pub struct RespServer {
    pub addr: SocketAddr,
    pub native_addr: SocketAddr,
    _tempdir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl RespServer {
    /// Two workers, a small bulk limit (1 MiB) so oversize is cheap to test.
    pub fn start() -> RespServer {
        Self::start_with(SyncPolicy::None)
    }

    /// The same, with `sync` as the database's sync policy.
    pub fn start_with(sync: SyncPolicy) -> RespServer {
        Self::start_configured(sync, None)
    }

    /// The same, requiring AUTH with `token` if given.
    pub fn start_configured(sync: SyncPolicy, token: Option<&str>) -> RespServer {
        Self::start_tuned(sync, token, |_| {})
    }

    /// The same, with `tune` applied to the RESP configuration last.
    pub fn start_tuned(
        sync: SyncPolicy,
        token: Option<&str>,
        tune: impl FnOnce(&mut RespConfig) + Send + 'static,
    ) -> RespServer {
        let auth_token = token.and_then(naive_kv::server::auth::AuthToken::new);
        let tempdir = tempfile::tempdir().unwrap();
        let directory = tempdir.path().to_path_buf();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix::System::new().block_on(async move {
                let native = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let resp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let mut options = Options::new(directory);
                options.sync = sync;
                let db = Db::open(options).await.map_err(|e| e.to_string())?;
                let addrs = (resp.local_addr().unwrap(), native.local_addr().unwrap());
                addr_tx.send(addrs).unwrap();
                let native_config = ServerConfig {
                    workers: 2,
                    ..ServerConfig::default()
                };
                let mut resp_config = RespConfig {
                    workers: 2,
                    max_bulk_bytes: 1 << 20,
                    auth_token,
                    ..RespConfig::default()
                };
                tune(&mut resp_config);
                let shutdown = async move {
                    let _ = stopped.await;
                };
                run_beside(native, resp, db, native_config, resp_config, shutdown)
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        let (addr, native_addr) = addr_rx.recv().expect("server starts");
        RespServer {
            addr,
            native_addr,
            _tempdir: tempdir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A `redis` crate client for this server.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(format!("redis://{}/", self.addr)).unwrap()
    }

    /// A synchronous `redis` connection.
    pub fn redis(&self) -> redis::Connection {
        self.client().get_connection().unwrap()
    }

    /// A raw connection with a read timeout, so a missing reply fails the
    /// test instead of hanging it.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// Shuts down gracefully and waits.
    pub fn stop(mut self) -> Result<(), String> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().unwrap(),
            None => Ok(()),
        }
    }
}

impl Drop for RespServer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Sends `request` and checks that exactly `expected` comes back.
pub fn exchange(stream: &mut TcpStream, request: &[u8], expected: &[u8]) {
    stream.write_all(request).unwrap();
    expect(stream, expected);
}

/// Reads `expected.len()` bytes and checks them.
pub fn expect(stream: &mut TcpStream, expected: &[u8]) {
    let mut got = vec![0u8; expected.len()];
    stream
        .read_exact(&mut got)
        .unwrap_or_else(|e| panic!("reading {:?}: {e}", String::from_utf8_lossy(expected)));
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
}

/// True once the server has closed the connection (EOF or reset).
pub fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

/// `args` as a RESP multibulk request.
pub fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Runs `args` (the command first) and converts the reply; panics on error.
pub fn q<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Runs `args`, which must fail; the error's text.
pub fn fails(con: &mut redis::Connection, args: &[&str]) -> String {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    match c.query::<redis::Value>(con) {
        Err(e) => e.to_string(),
        Ok(v) => panic!("{args:?} answered {v:?}"),
    }
}

/// The engine counter `name`, from `INFO engine`.
pub fn engine_counter(con: &mut redis::Connection, name: &str) -> u64 {
    let info: String = q(con, &["INFO", "engine"]);
    let prefix = format!("{name}:");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}
