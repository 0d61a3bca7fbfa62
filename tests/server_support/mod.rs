//! Shared by the server and client tests: a real server on a 127.0.0.1:0
//! listener with a tempdir database, run in its own actix system on a
//! thread, and helpers to speak raw frames.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use naive_kv::proto::{Request, Response, request::Command, response::Reply};
use naive_kv::server::{ServerConfig, run};
use naive_kv::{Db, Options, SyncPolicy};
use prost::Message;
use tokio::sync::oneshot;

/// A server running on its own thread until stopped or dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

/// A small, fast configuration: two workers.
pub fn config() -> ServerConfig {
    ServerConfig {
        workers: 2,
        ..ServerConfig::default()
    }
}

impl TestServer {
    /// A server with the default test configuration on a fresh directory.
    pub fn start() -> TestServer {
        Self::start_with(config())
    }

    /// A server with `config` on a fresh directory.
    pub fn start_with(config: ServerConfig) -> TestServer {
        let tempdir = tempfile::tempdir().unwrap();
        let mut server = Self::start_in(tempdir.path(), config);
        server._tempdir = Some(tempdir);
        server
    }

    /// A server with `config` on `dir` (kept after the server stops).
    pub fn start_in(dir: &Path, config: ServerConfig) -> TestServer {
        Self::start_synced(dir, config, SyncPolicy::None)
    }

    /// A fresh-directory server whose database syncs every write, the
    /// default and slowest policy: acknowledgements come late, so the
    /// session's read-after-write holding matters.
    pub fn start_syncing() -> TestServer {
        let tempdir = tempfile::tempdir().unwrap();
        let mut server = Self::start_synced(tempdir.path(), config(), SyncPolicy::Always);
        server._tempdir = Some(tempdir);
        server
    }

    fn start_synced(dir: &Path, config: ServerConfig, sync: SyncPolicy) -> TestServer {
        let mut options = Options::new(dir);
        options.sync = sync;
        Self::start_with_options(options, config)
    }

    /// A server with `config` on a database opened with `options` (its
    /// directory is kept after the server stops).
    pub fn start_with_options(options: Options, config: ServerConfig) -> TestServer {
        let dir = options.directory.clone();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix::System::new().block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let db = match Db::open(options).await {
                    Ok(db) => db,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e.to_string()));
                        return Err(e.to_string());
                    }
                };
                addr_tx.send(Ok(listener.local_addr().unwrap())).unwrap();
                let shutdown = async move {
                    let _ = stopped.await;
                };
                run(listener, db, config, shutdown)
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        let addr = addr_rx.recv().unwrap().expect("server starts");
        TestServer {
            addr,
            dir,
            _tempdir: None,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Shuts the server down gracefully and waits for it.
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

    /// A raw connection with a read timeout, so a missing reply fails the
    /// test instead of hanging it.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// A single-threaded tokio runtime for the async client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `message` as a length-prefixed frame.
pub fn frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A request frame.
pub fn request(id: u64, command: Command) -> Vec<u8> {
    frame(&Request {
        id,
        command: Some(command),
    })
}

/// Reads one response frame; `None` at a clean end of stream.
pub fn read_response(stream: &mut TcpStream) -> Option<Response> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("read failed: {e}"),
    }
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    Some(Response::decode(&body[..]).unwrap())
}

/// Sends `bytes` and reads one response.
pub fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> Response {
    stream.write_all(bytes).unwrap();
    read_response(stream).expect("a response")
}

/// The error code of a response, if it is an error.
pub fn error_code(response: &Response) -> Option<naive_kv::proto::ErrorCode> {
    match &response.reply {
        Some(Reply::Error(e)) => naive_kv::proto::ErrorCode::try_from(e.code).ok(),
        _ => None,
    }
}
