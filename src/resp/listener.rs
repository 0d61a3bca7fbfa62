//! Accepting RESP connections: the connection limit, the worker arbiters
//! and graceful shutdown, as the native listener does; and [`run_beside`],
//! which serves the native protocol and RESP from one database.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix::{Actor, Arbiter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::RespConfig;
use super::command_stats::CommandStats;
use super::commands::{ConnectionLimits, Engine, ServerInfo};
use super::counter::Counter;
use super::cursors::Cursors;
use super::session::{Session, SessionParams};
use super::store::Store;
use crate::server::connections::{ConnectionGuard, accept_until, hand_over, refuse};
use crate::server::{self, ServerConfig, ServerError};
use crate::{Db, Options};

/// Binds both ports, opens the database and serves the native protocol on
/// `native_addr` and RESP on `resp_addr` until `shutdown` completes. Must be
/// called inside a running actix system.
///
/// # Errors
/// An address cannot be bound; the database cannot be opened or closed.
pub async fn serve_beside(
    native_addr: SocketAddr,
    resp_addr: SocketAddr,
    options: Options,
    native_config: ServerConfig,
    resp_config: RespConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.to_string(),
                source,
            })
    };
    let native = bind(native_addr).await?;
    let resp = bind(resp_addr).await?;
    let db = Db::open(options).await?;
    log::info!("listening on {native_addr} (native) and {resp_addr} (RESP)");
    run_beside(native, resp, db, native_config, resp_config, shutdown).await
}

/// Serves the native protocol on `native` and RESP on `resp`, both on `db`,
/// until `shutdown` completes. Then RESP stops accepting and drains first;
/// then the native server does the same and closes `db` (so the native
/// port takes new connections until RESP has drained).
///
/// # Errors
/// Closing the database failed.
pub async fn run_beside(
    native: TcpListener,
    resp: TcpListener,
    db: Db,
    native_config: ServerConfig,
    resp_config: RespConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let (stop, stopping) = watch::channel(false);
    let resp_done = actix_rt::spawn(run(resp, db.clone(), resp_config, async move {
        let mut stopping = stopping;
        let _ = stopping.wait_for(|&s| s).await;
    }));
    // Both listeners stop together. The native one then waits for every
    // connection of both (they share one count) before it closes the
    // database. It used to stop only after the RESP listener's wait, which
    // counted the native connections it had not yet told to close: one idle
    // native connection held the exit for the whole grace period.
    let native_shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let served = server::run(native, db, native_config, native_shutdown).await;
    let _ = resp_done.await;
    served
}

/// Serves RESP connections from `listener` until `shutdown` completes, then
/// stops accepting and lets sessions finish their in-flight requests (for
/// at most `config.shutdown_grace`). Does not close `db`: its owner does.
/// Must be called inside a running actix system.
pub async fn run(
    listener: TcpListener,
    db: Db,
    config: RespConfig,
    shutdown: impl Future<Output = ()>,
) {
    let workers: Vec<Arbiter> = crate::server::workers::start(config.workers);
    let connections = config.connections.clone();
    let (stop, stopping) = watch::channel(false);
    let port = listener.local_addr().map_or(0, |a| a.port());
    let store = match &config.cluster {
        Some(node) => {
            // Other members name it in ROLE and INFO replication.
            if let Ok(addr) = listener.local_addr()
                && !addr.ip().is_unspecified()
            {
                node.advertise_resp_addr(addr);
            }
            Store::Cluster(node.clone())
        }
        None => Store::Single(db),
    };
    let max_key_bytes = store.db().max_key_bytes();
    let engine = Engine {
        counter: Counter::new(store.clone()).start(),
        store,
        info: Arc::new(ServerInfo {
            started: Instant::now(),
            port,
        }),
        cursors: Cursors::start(),
        commands: Arc::new(CommandStats::default()),
        requests: config.request_stats.clone(),
        checkpoints: config.checkpoints.clone(),
        databases: config.databases.max(1),
        largest_reply: config.max_bulk_bytes.max(config.max_reply_bytes),
        connection_limits: ConnectionLimits {
            max_queued_bytes: config.max_request_bytes,
            max_key_bytes,
        },
    };
    let params = SessionParams {
        engine,
        limits: config.limits(),
        auth_token: config.auth_token.clone(),
        pipeline: config.pipeline(stopping),
    };
    let next_id = AtomicU64::new(1);
    let mut next_worker = 0usize;
    let serve = |stream, guard| {
        if let Some(worker) = workers.get(next_worker % workers.len()) {
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            start_session(worker, stream, id, params.clone(), guard);
        }
        next_worker = next_worker.wrapping_add(1);
    };
    let max = config.max_connections;
    accept_until(
        &listener,
        shutdown,
        &connections,
        max,
        "RESP",
        refuse_busy,
        serve,
    )
    .await;
    log::info!("RESP: no new connections, finishing in-flight requests");
    drop(listener);
    drop(params);
    let _ = stop.send(true);
    connections
        .wait_for_all(config.shutdown_grace, "RESP")
        .await;
    for worker in &workers {
        worker.stop();
    }
}

/// Hands `stream` to a new session on `worker`.
fn start_session(
    worker: &Arbiter,
    stream: TcpStream,
    id: u64,
    params: SessionParams,
    guard: ConnectionGuard,
) {
    hand_over(worker, stream, "RESP", move |stream| {
        Session::start(stream, id, params, guard)
    });
}

/// Tells a connection over the limit what Redis says, then closes it.
async fn refuse_busy(stream: TcpStream) {
    refuse(stream, b"-ERR max number of clients reached\r\n", "busy").await;
}
