//! Counting open connections against a limit, one count for both listeners
//! (native and RESP): a slot is taken when a connection is admitted and freed when
//! its session's [`ConnectionGuard`] drops; shutdown waits for all of them.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::Arbiter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How long a refused connection gets to take its "busy" reply.
pub(crate) const BUSY_REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed accept (e.g. out of file descriptors), so the accept
/// loop does not spin.
pub(crate) const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

/// The open connections of a server, counted against `--max-connections`:
/// shared by both listeners when the RESP one shares the native one's
/// limits, and with every session.
#[derive(Debug, Default)]
pub struct Connections {
    open: AtomicUsize,
    /// Woken whenever a connection closes.
    closed: Notify,
}

/// Held by a session for its lifetime; dropping it frees a connection slot.
#[derive(Debug)]
pub(crate) struct ConnectionGuard(Arc<Connections>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.closed.notify_waiters();
    }
}

impl Connections {
    /// A slot for one more connection, unless `max` are open.
    pub(crate) fn admit(self: &Arc<Self>, max: usize) -> Option<ConnectionGuard> {
        let open = &self.open;
        open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| ConnectionGuard(self.clone()))
    }

    /// Waits until every connection has closed, or `grace` has passed.
    pub(crate) async fn wait_for_all(&self, grace: Duration, what: &str) {
        let all_closed = async {
            loop {
                let closed = self.closed.notified();
                if self.open.load(Ordering::SeqCst) == 0 {
                    return;
                }
                closed.await;
            }
        };
        if tokio::time::timeout(grace, all_closed).await.is_err() {
            let open = self.open.load(Ordering::SeqCst);
            log::warn!(
                "{open} connections still open after {grace:?} (counted by the {what} listener, \
                 which may share its count with the other port); closing anyway"
            );
        }
    }
}

/// Accepts connections on `listener` until `shutdown` completes. A
/// connection past `max` open ones goes to `refuse` (which answers "busy"
/// on a task of its own); every other one goes to `serve` with its slot.
/// `what` names the listener in logs.
pub(crate) async fn accept_until<R: Future<Output = ()> + 'static>(
    listener: &TcpListener,
    shutdown: impl Future<Output = ()>,
    connections: &Arc<Connections>,
    max: usize,
    what: &str,
    refuse: impl Fn(TcpStream) -> R,
    mut serve: impl FnMut(TcpStream, ConnectionGuard),
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    log::warn!("{what} accept failed: {e}");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    continue;
                }
            },
        };
        match connections.admit(max) {
            Some(guard) => serve(stream, guard),
            None => {
                log::warn!("refusing {what} connection from {peer}: {max} connections open");
                actix_rt::spawn(refuse(stream));
            }
        }
    }
}

/// Writes `reply` to a connection that will not be served (over the limit,
/// or the database still opening) and closes it, giving it
/// [`BUSY_REPLY_TIMEOUT`] to take the bytes. `why` names it in the log.
pub(crate) async fn refuse(mut stream: TcpStream, reply: &[u8], why: &str) {
    use tokio::io::AsyncWriteExt;
    let write = async {
        stream.write_all(reply).await?;
        stream.shutdown().await
    };
    if let Err(e) = tokio::time::timeout(BUSY_REPLY_TIMEOUT, write)
        .await
        .unwrap_or(Ok(()))
    {
        log::debug!("{why} reply not delivered: {e}");
    }
}

/// Moves an accepted `stream` to `worker` and calls `start` with it there.
/// A tokio socket is tied to the runtime that registered it, so the plain
/// socket crosses and is registered again on the worker's runtime. `what`
/// names the listener in the warnings logged when the hand-over fails (the
/// connection is then dropped).
pub fn hand_over(
    worker: &Arbiter,
    stream: TcpStream,
    what: &'static str,
    start: impl FnOnce(TcpStream) + Send + 'static,
) {
    let _ = stream.set_nodelay(true);
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => return log::warn!("cannot hand over a {what} connection: {e}"),
    };
    let sent = worker.spawn(async move {
        match TcpStream::from_std(stream) {
            Ok(stream) => start(stream),
            Err(e) => log::warn!("cannot register a {what} connection: {e}"),
        }
    });
    if !sent {
        log::warn!("worker arbiter has stopped; {what} connection dropped");
    }
}
