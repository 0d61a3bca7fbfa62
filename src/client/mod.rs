//! The client side: an async [`Client`] speaking the wire protocol, a
//! client of a cluster's nodes that retries on its own ([`retry`]), the
//! shell's command parser ([`command`]) and the shell itself ([`shell`])
//! that `run_client` wraps.
//!
//! [`Client`] pipelines: every request method sends its request before it
//! returns and gives back a `'static` future of the reply, so a caller can
//! issue many requests and await them together. Replies come back in request
//! order.

pub mod command;
pub mod retry;
pub mod shell;

pub use retry::{RetryPolicy, RetryingClient, leader_hint};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Encoder, FramedRead};

use crate::proto::{self, ErrorCode, Request, Response, request::Command, response::Reply};
use crate::server::codec::{Frame, ProtoCodec};
use crate::{Ttl, WriteBatch};

/// Longest reply frame the client accepts (a value may be 32 MiB; a scan
/// page about 4 MiB).
const MAX_REPLY_BYTES: usize = 1 << 30;

type Codec = ProtoCodec<Response, Request>;
/// Where a request's reply goes.
type Waiter = (u64, oneshot::Sender<Result<Response, ClientError>>);

/// What went wrong talking to the server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No connection could be made.
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    /// The server answered with an error.
    #[error("{}: {message}", code.as_str_name())]
    Server { code: ErrorCode, message: String },
    /// The connection broke or was closed before the reply came.
    #[error("connection lost: {0}")]
    Disconnected(String),
    /// The server sent something the protocol does not allow here.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// One page of a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    /// Key-value pairs in the requested order.
    pub entries: Vec<(Bytes, Bytes)>,
    /// `None` when the range is exhausted; otherwise pass it as the next
    /// request's `start` (forward) or `end` (reverse).
    pub continuation: Option<Bytes>,
}

/// A connection to a NaiveKV server. Cheap to share by reference; requests
/// from any number of callers are pipelined on the one connection.
#[derive(Debug)]
pub struct Client {
    /// Requests, each with where its reply goes, to the writer task. The
    /// writer hands each waiter to the reader task before it writes the
    /// request, so the reader's queue is in wire order: no lock is needed.
    outgoing: mpsc::UnboundedSender<(Request, Waiter)>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Client {
    /// Connects to `addr`. Must be called inside a tokio runtime; the
    /// connection's reader and writer run as tasks on it.
    ///
    /// # Errors
    /// [`ClientError::Connect`] if the connection cannot be made.
    pub async fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Connect {
                addr: addr.to_string(),
                message: e.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let (outgoing, requests) = mpsc::unbounded_channel();
        let (waiters, waiting) = mpsc::unbounded_channel();
        tokio::spawn(write_requests(write, requests, waiters));
        tokio::spawn(read_replies(read, waiting));
        Ok(Client {
            outgoing,
            next_id: 1.into(),
        })
    }

    /// Connects to `addr` and checks that a NaiveKV server answers, both
    /// within `timeout`: `token`, if any, is presented with Auth; otherwise
    /// a Ping is sent (a server that wants a token still answers it, with
    /// `UNAUTHENTICATED`, which shows it speaks the protocol). A peer that
    /// speaks another protocol (a RESP port, an HTTP server) or nothing at
    /// all fails here instead of hanging the caller.
    ///
    /// # Errors
    /// [`ClientError::Connect`] with a hint when nothing that speaks the
    /// native protocol answers in time; [`ClientError::Server`] when the
    /// token is refused.
    pub async fn connect_checked(
        addr: SocketAddr,
        timeout: Duration,
        token: Option<&str>,
    ) -> Result<Client, ClientError> {
        let seconds = timeout.as_secs_f64();
        let client = tokio::time::timeout(timeout, Client::connect(addr))
            .await
            .map_err(|_| ClientError::Connect {
                addr: addr.to_string(),
                message: format!("no connection within {seconds:.1} s"),
            })??;
        let answered = match token {
            Some(token) => tokio::time::timeout(timeout, client.auth(token)).await,
            None => match tokio::time::timeout(timeout, client.ping()).await {
                Ok(Err(ClientError::Server { .. })) => Ok(Ok(())),
                other => other,
            },
        };
        match answered {
            Ok(Ok(())) => Ok(client),
            Ok(Err(e @ ClientError::Server { .. })) => Err(e),
            Ok(Err(e)) => Err(not_native(addr, e.to_string())),
            Err(_) => Err(not_native(addr, format!("no reply within {seconds:.1} s"))),
        }
    }

    /// Sends `command` at once; the future gives the server's response.
    pub fn request(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<Response, ClientError>> + 'static {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (reply, response) = oneshot::channel();
        let request = Request {
            id,
            command: Some(command),
        };
        let sent = self.outgoing.send((request, (id, reply)));
        async move {
            sent.map_err(|_| ClientError::Disconnected("connection closed".into()))?;
            response
                .await
                .map_err(|_| ClientError::Disconnected("connection closed".into()))?
        }
    }

    /// Sends `command` and gives its reply, a server error as `Err`.
    fn reply(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<Reply, ClientError>> + 'static {
        let response = self.request(command);
        async move {
            match response.await?.reply {
                Some(Reply::Error(e)) => Err(ClientError::Server {
                    code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unknown),
                    message: e.message,
                }),
                Some(reply) => Ok(reply),
                None => Err(ClientError::Protocol("response without a reply".into())),
            }
        }
    }

    /// The value of `key`, `None` if absent.
    pub fn get(
        &self,
        key: impl Into<Bytes>,
    ) -> impl Future<Output = Result<Option<Bytes>, ClientError>> + 'static {
        let reply = self.reply(Command::Get(proto::Get { key: key.into() }));
        async move {
            match reply.await? {
                Reply::Value(v) => Ok(v.found.then_some(v.value)),
                other => Err(unexpected(&other)),
            }
        }
    }

    /// Sets `key` to `value`.
    pub fn put(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> impl Future<Output = Result<(), ClientError>> + 'static {
        self.put_with_ttl(key, value, 0)
    }

    /// Sets `key` to `value`, expiring `ttl_ms` milliseconds after the
    /// server receives it (0: never).
    pub fn put_with_ttl(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ttl_ms: u64,
    ) -> impl Future<Output = Result<(), ClientError>> + 'static {
        let (key, value) = (key.into(), value.into());
        let put = proto::Put {
            key,
            value,
            ttl_ms,
            ..Default::default()
        };
        done(self.reply(Command::Put(put)))
    }

    /// Sets `key` to `value`, expiring at `expire_at_ms` (Unix
    /// milliseconds; 0: never).
    pub fn put_with_expiry(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        expire_at_ms: u64,
    ) -> impl Future<Output = Result<(), ClientError>> + 'static {
        let (key, value) = (key.into(), value.into());
        let put = proto::Put {
            key,
            value,
            expire_at_ms,
            ..Default::default()
        };
        done(self.reply(Command::Put(put)))
    }

    /// Makes `key` expire `ttl_ms` milliseconds from the server's now (a
    /// positive number). False if there is no such key.
    pub fn expire_in(
        &self,
        key: impl Into<Bytes>,
        ttl_ms: u64,
    ) -> impl Future<Output = Result<bool, ClientError>> + 'static {
        let expire = proto::Expire {
            key: key.into(),
            ttl_ms,
            ..Default::default()
        };
        flag(self.reply(Command::Expire(expire)))
    }

    /// Makes `key` expire at `expire_at_ms` (Unix milliseconds, not 0; a
    /// time past deletes it). False if there is no such key.
    pub fn expire_at(
        &self,
        key: impl Into<Bytes>,
        expire_at_ms: u64,
    ) -> impl Future<Output = Result<bool, ClientError>> + 'static {
        let expire = proto::Expire {
            key: key.into(),
            expire_at_ms,
            ..Default::default()
        };
        flag(self.reply(Command::Expire(expire)))
    }

    /// Removes `key`'s expiry. True if it had one.
    pub fn persist(
        &self,
        key: impl Into<Bytes>,
    ) -> impl Future<Output = Result<bool, ClientError>> + 'static {
        let persist = proto::Persist { key: key.into() };
        flag(self.reply(Command::Persist(persist)))
    }

    /// How long `key` has to live.
    pub fn ttl(
        &self,
        key: impl Into<Bytes>,
    ) -> impl Future<Output = Result<Ttl, ClientError>> + 'static {
        let reply = self.reply(Command::Ttl(proto::GetTtl { key: key.into() }));
        async move {
            match reply.await? {
                Reply::Ttl(t) if !t.found => Ok(Ttl::Absent),
                Reply::Ttl(t) if t.expire_at_ms == 0 => Ok(Ttl::Never),
                Reply::Ttl(t) => Ok(Ttl::At {
                    at_ms: t.expire_at_ms,
                    remaining_ms: t.remaining_ms,
                }),
                other => Err(unexpected(&other)),
            }
        }
    }

    /// Removes `key` (absent keys included).
    pub fn delete(
        &self,
        key: impl Into<Bytes>,
    ) -> impl Future<Output = Result<(), ClientError>> + 'static {
        done(self.reply(Command::Delete(proto::Delete { key: key.into() })))
    }

    /// Applies `batch` atomically.
    pub fn batch(
        &self,
        batch: &WriteBatch,
    ) -> impl Future<Output = Result<(), ClientError>> + 'static {
        let mutations = batch
            .mutations()
            .iter()
            .map(|m| proto::Mutation {
                op: Some(match &m.value {
                    Some(value) => proto::mutation::Op::Put(proto::Put {
                        key: m.key.clone(),
                        value: value.clone(),
                        expire_at_ms: m.expire_at_ms,
                        ttl_ms: 0,
                    }),
                    None => proto::mutation::Op::Delete(proto::Delete { key: m.key.clone() }),
                }),
            })
            .collect();
        done(self.reply(Command::Batch(proto::Batch { mutations })))
    }

    /// One page of `scan` (see `docs/PROTOCOL.md` for its fields).
    pub fn scan(
        &self,
        scan: proto::Scan,
    ) -> impl Future<Output = Result<ScanPage, ClientError>> + 'static {
        let reply = self.reply(Command::Scan(scan));
        async move {
            match reply.await? {
                Reply::Scan(page) => Ok(ScanPage {
                    entries: page
                        .entries
                        .into_iter()
                        .map(|kv| (kv.key, kv.value))
                        .collect(),
                    continuation: (!page.continuation.is_empty()).then_some(page.continuation),
                }),
                other => Err(unexpected(&other)),
            }
        }
    }

    /// Presents `token` to a server started with `--auth-token-file`; until
    /// it is accepted, every other request gets `UNAUTHENTICATED`. Requests
    /// sent after this one are served only if it succeeds.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `UNAUTHENTICATED` for a wrong token.
    pub fn auth(
        &self,
        token: impl Into<String>,
    ) -> impl Future<Output = Result<(), ClientError>> + 'static {
        let token = token.into();
        done(self.reply(Command::Auth(proto::Auth { token })))
    }

    /// Checks the server answers.
    pub fn ping(&self) -> impl Future<Output = Result<(), ClientError>> + 'static {
        let reply = self.reply(Command::Ping(proto::Ping {}));
        async move {
            match reply.await? {
                Reply::Pong(_) => Ok(()),
                other => Err(unexpected(&other)),
            }
        }
    }

    /// Asks the server to write a checkpoint called `name` under its
    /// `--checkpoint-dir`: a directory that opens as a database holding
    /// every write acknowledged before this call. Answers where it is and
    /// the sequence number of its last write.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `INVALID_REQUEST` when the server has
    /// no `--checkpoint-dir` or the name is not one plain new name.
    pub fn checkpoint(
        &self,
        name: impl Into<String>,
    ) -> impl Future<Output = Result<proto::CheckpointResult, ClientError>> + 'static {
        let name = name.into();
        let reply = self.reply(Command::Checkpoint(proto::Checkpoint { name }));
        async move {
            match reply.await? {
                Reply::Checkpoint(result) => Ok(result),
                other => Err(unexpected(&other)),
            }
        }
    }

    /// A cluster node's view of the cluster, after making `change` (none:
    /// just the status).
    ///
    /// # Errors
    /// [`ClientError::Server`] with `INVALID_REQUEST` from a server that is
    /// not a cluster node or for a refused change, `UNAVAILABLE` when no
    /// leader made the change in time.
    pub fn cluster(
        &self,
        change: Option<proto::cluster_admin::Op>,
    ) -> impl Future<Output = Result<proto::ClusterStatus, ClientError>> + 'static {
        let reply = self.reply(Command::Cluster(proto::ClusterAdmin { op: change }));
        async move {
            match reply.await? {
                Reply::Cluster(status) => Ok(status),
                other => Err(unexpected(&other)),
            }
        }
    }

    /// The engine's counters.
    pub fn stats(
        &self,
    ) -> impl Future<Output = Result<BTreeMap<String, u64>, ClientError>> + 'static {
        let reply = self.reply(Command::Stats(proto::Stats {}));
        async move {
            match reply.await? {
                Reply::Stats(stats) => Ok(stats.counters.into_iter().collect()),
                other => Err(unexpected(&other)),
            }
        }
    }
}

/// A connection that did not answer as a NaiveKV server should.
fn not_native(addr: SocketAddr, reason: String) -> ClientError {
    ClientError::Connect {
        addr: addr.to_string(),
        message: format!(
            "{reason}; is this a NaiveKV native port (run_server --port), \
             not the RESP port or another service?"
        ),
    }
}

async fn done(
    reply: impl Future<Output = Result<Reply, ClientError>> + 'static,
) -> Result<(), ClientError> {
    match reply.await? {
        Reply::Done(_) => Ok(()),
        other => Err(unexpected(&other)),
    }
}

async fn flag(
    reply: impl Future<Output = Result<Reply, ClientError>> + 'static,
) -> Result<bool, ClientError> {
    match reply.await? {
        Reply::Flag(flag) => Ok(flag.value),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(reply: &Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {reply:?}"))
}

/// The writer task: sends queued requests (all that are waiting, in one
/// write) until the client is dropped or the socket fails. Each request's
/// waiter goes to the reader before the request goes on the wire.
async fn write_requests(
    mut write: OwnedWriteHalf,
    mut requests: mpsc::UnboundedReceiver<(Request, Waiter)>,
    waiters: mpsc::UnboundedSender<Waiter>,
) {
    let mut codec = Codec::new(MAX_REPLY_BYTES);
    let mut buffer = BytesMut::new();
    while let Some(first) = requests.recv().await {
        let mut next = Some(first);
        while let Some((request, waiter)) = next {
            if let Err(e) = codec.encode(request, &mut buffer) {
                log::debug!("client cannot encode a request: {e}");
                return;
            }
            if waiters.send(waiter).is_err() {
                return; // the reader has ended: the connection is gone
            }
            next = requests.try_recv().ok();
        }
        if let Err(e) = write.write_all(&buffer).await {
            log::debug!("client write failed: {e}");
            return;
        }
        buffer.clear();
    }
}

/// The reader task: hands each reply to the oldest waiter; when the
/// connection ends, fails every waiter left.
async fn read_replies(mut read: OwnedReadHalf, mut waiters: mpsc::UnboundedReceiver<Waiter>) {
    let reason = match answers_in_text(&mut read).await {
        Some(reason) => reason,
        None => hand_out_replies(read, &mut waiters).await,
    };
    waiters.close();
    while let Ok((_, reply)) = waiters.try_recv() {
        let _ = reply.send(Err(ClientError::Disconnected(reason.clone())));
    }
}

/// Hands each reply to its waiter until the connection fails; why it did.
async fn hand_out_replies(
    read: OwnedReadHalf,
    waiters: &mut mpsc::UnboundedReceiver<Waiter>,
) -> String {
    let mut frames = FramedRead::new(read, Codec::new(MAX_REPLY_BYTES));
    loop {
        let response = match frames.next().await {
            Some(Ok(Frame::Message(response))) => response,
            Some(Ok(Frame::Undecodable(e))) => return format!("undecodable reply: {e}"),
            Some(Ok(Frame::Refused { reason, .. })) => return format!("refused reply: {reason}"),
            Some(Err(e)) => return e.to_string(),
            None => return "closed by the server".to_string(),
        };
        // A reply's waiter was queued before its request was written.
        match waiters.try_recv().ok() {
            Some((id, reply)) if id == response.id => {
                let _ = reply.send(Ok(response));
            }
            Some((id, reply)) => {
                let message = format!("reply id {} for request {id}", response.id);
                let _ = reply.send(Err(server_error_or(response, message)));
            }
            None => return format!("unsolicited reply {response:?}"),
        }
    }
}

/// Why the server's first bytes are not a native reply, if they are text:
/// a reply starts with its length, big-endian, so its first byte is 0 for
/// any reply under 16 MiB and never printable (that would be a reply of
/// over 500 MiB). A Redis port answers `-ERR ...` at once; without this
/// the client took those bytes for a length and waited for its timeout.
async fn answers_in_text(read: &mut OwnedReadHalf) -> Option<String> {
    let mut first = [0u8; 64];
    let seen = read.peek(&mut first).await.ok()?;
    let text = first.get(..seen)?;
    if !text.first().is_some_and(|b| (0x20..0x7f).contains(b)) {
        return None;
    }
    let shown: String = String::from_utf8_lossy(text)
        .chars()
        .take_while(|c| !c.is_control())
        .collect();
    Some(format!("the server answered in text (`{shown}`)"))
}

/// A connection-level server error (id 0, e.g. FRAME_TOO_LARGE) as such;
/// anything else out of order as a protocol error.
fn server_error_or(response: Response, message: String) -> ClientError {
    match response.reply {
        Some(Reply::Error(e)) if response.id == 0 => ClientError::Server {
            code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unknown),
            message: e.message,
        },
        _ => ClientError::Protocol(message),
    }
}
