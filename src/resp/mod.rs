//! The Redis protocol (RESP2, and RESP3 after `HELLO 3`) in front of the
//! same database as the native server: `run_server --resp-port PORT`.
//! Redis clients (redis-cli, redis-benchmark, redis-py, redis-rs) can
//! store and read strings; the commands served are in [`commands::table`].
//!
//! - [`listener`]: [`run`] accepts connections (limit, worker arbiters,
//!   graceful shutdown); [`run_beside`] and [`serve_beside`] serve it next
//!   to the native protocol on one `Db`.
//! - [`session`]: RESP on a connection ([`Session`]): the decoder, AUTH,
//!   the command mapping and the reply's protocol; pipelining, order, the
//!   byte budget and timeouts are [`crate::server::pipeline`]'s, shared with
//!   the native protocol.
//! - [`codec`]: the RESP request decoder (multibulk and inline) and reply
//!   encoder; [`reply`]: replies and their RESP2/RESP3 forms.
//! - [`commands`]: parsing (pure) and execution, one file per group.
//! - [`store`]: where reads and writes go, one engine or a cluster node
//!   (`--cluster`): the one routing decision.
//! - [`cluster_writes`]: a connection's SETs and MSETs on a cluster node,
//!   pipelined in order (one Raft entry per burst).
//! - [`counter`]: the actor that serialises read-modify-writes (INCR,
//!   SETNX, SET NX/XX, APPEND).
//! - [`cursors`]: the table behind SCAN's numeric cursors.
//! - [`database`]: `SELECT n`: the Redis databases as key ranges.
//! - [`glob`]: Redis's glob patterns for KEYS, SCAN MATCH, CONFIG GET.
//!
//! Not served: other data types, scripting, pub/sub, AUTH with passwords,
//! SWAPDB. How much of Redis's own test suite passes, and which of its
//! tests are excluded and why: `scripts/redis-suite.sh` and the README.

pub mod auth;
pub mod cluster_writes;
pub mod codec;
pub mod command_stats;
pub mod commands;
pub mod counter;
pub mod cursors;
pub mod database;
pub mod glob;
pub mod listener;
pub mod reply;
pub mod session;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

pub use listener::{run, run_beside, serve_beside};
pub use session::Session;

use tokio::sync::watch;

use crate::server::pipeline::PipelineConfig;
use crate::server::request_stats::RequestStats;
use crate::server::{
    DEFAULT_AUTH_TIMEOUT, DEFAULT_FRAME_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_REPLY_BYTES, ServerConfig,
};

/// Longest bulk argument by default: the engine's default value limit,
/// 32 MiB (`run_server` uses the engine's actual limit).
pub const DEFAULT_MAX_BULK_BYTES: usize = 32 << 20;
/// Most bytes of arguments in one request by default: 64 MiB, the native
/// port's default `--max-frame-bytes` (`run_server` uses the option).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = crate::server::DEFAULT_MAX_FRAME_BYTES;
/// Most arguments in one request (Redis 7.0 takes up to 2^31 - 1, bounded
/// only by its query buffer limit; this bounds the argument vector too).
pub const DEFAULT_MAX_ARGS: usize = 1024 * 1024;
/// Longest inline request line (Redis: 64 KiB).
pub const DEFAULT_MAX_INLINE_BYTES: usize = 64 << 10;

/// How the RESP listener runs; `RespConfig::default()` gives the
/// documented defaults.
#[derive(Debug, Clone)]
pub struct RespConfig {
    /// Arbiters (threads) the sessions are spread over. Default: the number
    /// of cores.
    pub workers: usize,
    /// Past this many open connections a new one gets
    /// `-ERR max number of clients reached`. Default 10 000.
    pub max_connections: usize,
    /// The open connections counted against it (the native listener's,
    /// after [`RespConfig::share_connection_limits`]).
    pub connections: Arc<crate::server::Connections>,
    /// Requests in flight per connection before reading stops; default 128.
    pub max_in_flight: usize,
    /// Byte budget per connection of unanswered requests and unsent
    /// replies, as [`ServerConfig::max_reply_bytes`]; default 4 MiB.
    pub max_reply_bytes: usize,
    /// What all connections hold together, against its cap, as
    /// [`ServerConfig::server_budget`] (shared with the native listener by
    /// [`RespConfig::share_connection_limits`]).
    pub server_budget: Arc<crate::server::pipeline::ServerReplyBudget>,
    /// A connection silent this long is closed; default 300 s.
    pub idle_timeout: Duration,
    /// A request still incomplete this long after its first byte closes
    /// the connection; default 10 s.
    pub frame_timeout: Duration,
    /// With a token, a connection not authenticated this long after it
    /// opened is closed; default 10 s.
    pub auth_timeout: Duration,
    /// A bulk declared longer than this is refused
    /// (`-ERR Protocol error: invalid bulk length`) before it is read.
    pub max_bulk_bytes: usize,
    /// A request whose arguments add up to more is refused
    /// (`-ERR Protocol error: request larger than N bytes`, then closed);
    /// the native port's `--max-frame-bytes` after
    /// [`RespConfig::share_connection_limits`].
    pub max_request_bytes: usize,
    /// Most arguments in one request.
    pub max_args: usize,
    /// Longest inline request line.
    pub max_inline_bytes: usize,
    /// At shutdown, how long sessions get to finish; default 10 s.
    pub shutdown_grace: Duration,
    /// The token clients must send with AUTH first (the native protocol's
    /// `--auth-token-file`); `None`: no AUTH needed. Default `None`.
    pub auth_token: Option<crate::server::auth::AuthToken>,
    /// Connections and per-command latencies, for `/metrics`.
    pub request_stats: Arc<RequestStats>,
    /// Where SAVE and BGSAVE write (`--checkpoint-dir`); default nowhere
    /// (refused).
    pub checkpoints: Arc<crate::server::checkpoints::CheckpointRoot>,
    /// Databases `SELECT` can pick (`0..databases`); default 16.
    pub databases: u32,
    /// With `--cluster`: this node, through which requests go
    /// ([`store`]). Default: none, one engine.
    pub cluster: Option<crate::cluster::ClusterNode>,
}

impl Default for RespConfig {
    fn default() -> Self {
        RespConfig {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
            server_budget: Arc::default(),
            connections: Arc::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            max_bulk_bytes: DEFAULT_MAX_BULK_BYTES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_args: DEFAULT_MAX_ARGS,
            max_inline_bytes: DEFAULT_MAX_INLINE_BYTES,
            shutdown_grace: Duration::from_secs(10),
            auth_token: None,
            request_stats: Arc::new(RequestStats::new("resp", commands::STATS_NAMES)),
            checkpoints: Arc::default(),
            databases: database::DEFAULT_DATABASES,
            cluster: None,
        }
    }
}

impl RespConfig {
    /// Takes the per-connection limits and timeouts of the native
    /// listener's configuration (one set of flags serves both ports):
    /// in-flight limit, byte budget and the server-wide one (the same
    /// counter), the connection limit (the same count: `--max-connections`
    /// is for both ports together), the largest request
    /// (`--max-frame-bytes`), idle, frame and auth timeouts, token, where
    /// checkpoints may be written, and the cluster node if any.
    pub fn share_connection_limits(&mut self, native: &ServerConfig) {
        self.max_in_flight = native.max_in_flight;
        self.max_request_bytes = native.max_frame_bytes;
        self.max_reply_bytes = native.max_reply_bytes;
        self.server_budget = native.server_budget.clone();
        self.max_connections = native.max_connections;
        self.connections = native.connections.clone();
        self.idle_timeout = native.idle_timeout;
        self.frame_timeout = native.frame_timeout;
        self.auth_timeout = native.auth_timeout;
        self.auth_token = native.auth_token.clone();
        self.checkpoints = native.checkpoints.clone();
        self.cluster = native.cluster.clone();
    }

    /// The connection settings, with `shutdown` as the stop signal.
    pub(crate) fn pipeline(&self, shutdown: watch::Receiver<bool>) -> PipelineConfig {
        PipelineConfig {
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

    /// The decoder's limits.
    pub fn limits(&self) -> codec::Limits {
        codec::Limits {
            max_bulk_bytes: self.max_bulk_bytes,
            max_args: self.max_args,
            max_request_bytes: self.max_request_bytes,
            max_inline_bytes: self.max_inline_bytes,
        }
    }
}
