//! Accepting connections: the connection limit, the worker arbiters and
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;

use actix::Arbiter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::codec::encode_frame;
use super::dispatch;
use super::session::{Session, SessionParams};
use super::{ServerConfig, ServerError};
use crate::proto::{ErrorCode, Response};
use crate::server::connections::{ConnectionGuard, accept_until, hand_over, refuse};
use crate::{Db, Options};

/// Binds `addr`, opens the database and runs the server until `shutdown`
/// completes. Must be called inside a running actix system.
///
/// # Errors
/// The address cannot be bound, the database cannot be opened (locked,
/// unwritable, corrupt) or closed.
pub async fn serve(
    addr: SocketAddr,
    options: Options,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let db = Db::open(options).await?;
    // The bound address: with port 0 the system chose the port.
    let bound = listener.local_addr().unwrap_or(addr);
    log::info!("listening on {bound}");
    run(listener, db, config, shutdown).await
}

/// Serves connections from `listener` until `shutdown` completes, then stops
/// accepting, lets sessions finish their in-flight requests (for at most
/// `config.shutdown_grace`) and closes `db`. Must be called inside a running
/// actix system; sessions run on `config.workers` new arbiters.
///
/// # Errors
/// Closing the database failed.
pub async fn run(
    listener: TcpListener,
    db: Db,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let workers: Vec<Arbiter> = crate::server::workers::start(config.workers);
    let connections = config.connections.clone();
    let (stop, stopping) = watch::channel(false);
    let params = SessionParams {
        db: db.clone(),
        max_frame_bytes: config.max_frame_bytes,
        auth_token: config.auth_token.clone(),
        pipeline: config.pipeline(stopping),
        checkpoints: config.checkpoints.clone(),
        cluster: config.cluster.clone(),
    };
    let mut next_worker = 0usize;
    let serve = |stream, guard| {
        if let Some(worker) = workers.get(next_worker % workers.len()) {
            start_session(worker, stream, params.clone(), guard);
        }
        next_worker = next_worker.wrapping_add(1);
    };
    let max = config.max_connections;
    accept_until(
        &listener,
        shutdown,
        &connections,
        max,
        "native",
        refuse_busy,
        serve,
    )
    .await;
    log::info!("shutting down: no new connections, finishing in-flight requests");
    drop(listener);
    drop(params);
    let _ = stop.send(true);
    connections
        .wait_for_all(config.shutdown_grace, "native")
        .await;
    for worker in &workers {
        worker.stop();
    }
    db.close().await?;
    log::info!("database closed");
    Ok(())
}

/// Hands `stream` to a new session on `worker`.
fn start_session(
    worker: &Arbiter,
    stream: TcpStream,
    params: SessionParams,
    guard: ConnectionGuard,
) {
    hand_over(worker, stream, "native", move |stream| {
        Session::start(stream, params, guard)
    });
}

/// Tells a connection over the limit `Error{BUSY}`, then closes it.
async fn refuse_busy(stream: TcpStream) {
    let busy = Response {
        id: 0,
        reply: Some(dispatch::error(ErrorCode::Busy, "too many connections")),
    };
    refuse(stream, &encode_frame(&busy), "busy").await;
}

/// Completes at the first SIGINT or SIGTERM.
///
/// # Errors
/// The signal handlers cannot be installed.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => log::info!("SIGINT received"),
            _ = terminate.recv() => log::info!("SIGTERM received"),
        }
    })
}
