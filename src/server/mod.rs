//! The TCP server: protobuf messages in length-delimited frames, one session
//! actor per connection. The protocol is written down in `docs/PROTOCOL.md`.
//!
//! - [`listener`]: [`run`] accepts connections on a bound listener, spreads
//!   sessions over worker arbiters, enforces the connection limit and shuts
//!   down gracefully; [`serve`] binds, opens the database and runs.
//! - [`pipeline`]: the [`pipeline::Connection`] actor, one per connection
//!   of either protocol: pipelining, reply order, strict per-connection
//!   order, the byte budget, timeouts, pre-authentication limits.
//! - [`session`]: the native protocol on a connection ([`Session`]): frame
//!   codec, `Auth`, commands.
//! - [`dispatch`]: turns one request command into an engine call and its
//!   reply (pure mapping plus the call).
//! - [`codec`]: the frame codec shared with the client.
//! - [`checkpoints`]: the root client-asked checkpoints are written under,
//!   and the checks on their names.
//! - [`auth`]: the token, the per-connection gate, and the refusal to
//!   listen openly with no token.
//! - [`timeouts`]: idle and half-sent-request deadlines on a socket's reads.
//! - [`memory`]: the memory the server may use, and the block cache it
//!   takes by default.

pub mod auth;
pub mod checkpoints;
pub mod codec;
pub(crate) mod connections;
pub mod dispatch;
pub mod listener;
pub mod loading;
pub mod log_limit;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod request_stats;
pub mod session;
pub mod timeouts;
pub(crate) mod workers;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use listener::{run, serve, shutdown_signal};
pub use session::Session;

/// Longest frame accepted by default (`--max-frame-bytes`): 64 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 << 20;
/// Connections served at once by default (`--max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Requests one connection may have in flight before the server stops
/// reading its socket.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 128;
/// A connection that sends nothing this long is closed (`--idle-timeout`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A frame not completed this long after its first byte closes the
/// connection (`--frame-timeout`).
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
pub use connections::Connections;
pub use pipeline::budget::DEFAULT_MAX_SERVER_REPLY_BYTES;
pub use pipeline::{DEFAULT_AUTH_TIMEOUT, DEFAULT_MAX_REPLY_BYTES};

/// How the server runs; `ServerConfig::default()` gives the documented
/// defaults, which the `run_server` flags mirror.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Arbiters (threads) the sessions are spread over, round-robin; at
    /// least one is used. Default: the number of cores.
    pub workers: usize,
    /// Past this many open connections a new one gets `Error{BUSY}` and is
    /// closed. Default 10 000. Counted in `connections`, which the RESP
    /// listener shares: the limit is for both ports together.
    pub max_connections: usize,
    /// The open connections, counted against `max_connections`; clone the
    /// `Arc` to share the count.
    pub connections: Arc<Connections>,
    /// A frame longer than this gets `Error{FRAME_TOO_LARGE}` and the
    /// connection is closed. Default 64 MiB.
    pub max_frame_bytes: usize,
    /// Requests in flight per connection before reading stops; default 128.
    pub max_in_flight: usize,
    /// Byte budget per connection of unanswered requests and replies the
    /// socket has not taken (`--max-reply-bytes`); reading stops while it
    /// is full. One larger reply is still sent, alone. Default 4 MiB.
    pub max_reply_bytes: usize,
    /// What all connections together (both listeners, when the RESP
    /// listener shares this configuration's limits) may hold of
    /// unanswered requests and unsent replies before every connection
    /// stops reading and starting reads (`--max-server-reply-bytes`,
    /// default 1 GiB). The counter is shared: clone the `Arc` to share it.
    pub server_budget: Arc<pipeline::ServerReplyBudget>,
    /// At shutdown, how long sessions get to finish their in-flight requests
    /// before the database is closed anyway; default 10 s.
    pub shutdown_grace: Duration,
    /// A connection silent this long (while the server waits for a
    /// request) is closed; default 300 s.
    pub idle_timeout: Duration,
    /// A frame still incomplete this long after its first byte closes the
    /// connection (slow or stalled senders); default 10 s.
    pub frame_timeout: Duration,
    /// With a token, a connection not authenticated this long after it
    /// opened is closed; default 10 s.
    pub auth_timeout: Duration,
    /// With a token, every connection must send `Auth{token}` before
    /// anything else is served. Default: none.
    pub auth_token: Option<auth::AuthToken>,
    /// Connections and per-command latencies, for `/metrics`.
    pub request_stats: Arc<request_stats::RequestStats>,
    /// Where `Checkpoint` requests may write (`--checkpoint-dir`); shared
    /// with the RESP listener. Default: nowhere (refused).
    pub checkpoints: Arc<checkpoints::CheckpointRoot>,
    /// With `--cluster`: this node, through which writes and reads go
    /// (see `crate::cluster::dispatch`). Default: none, a single node.
    pub cluster: Option<crate::cluster::ClusterNode>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            connections: Arc::default(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
            server_budget: Arc::default(),
            shutdown_grace: Duration::from_secs(10),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            auth_token: None,
            request_stats: Arc::new(request_stats::RequestStats::new(
                "native",
                session::COMMANDS,
            )),
            checkpoints: Arc::default(),
            cluster: None,
        }
    }
}

impl ServerConfig {
    /// The connection settings both protocols share, with `shutdown` as
    /// the stop signal.
    pub(crate) fn pipeline(&self, shutdown: watch::Receiver<bool>) -> pipeline::PipelineConfig {
        pipeline::PipelineConfig {
            max_in_flight: self.max_in_flight,
            max_reply_bytes: self.max_reply_bytes,
            idle_timeout: self.idle_timeout,
            frame_timeout: self.frame_timeout,
            auth_timeout: self.auth_timeout,
            shutdown,
            request_stats: self.request_stats.clone(),
            server_budget: self.server_budget.clone(),
        }
    }
}

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listening socket could not be bound or used.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    /// The database could not be opened or closed.
    #[error("{0}")]
    Engine(#[from] crate::Error),
}
