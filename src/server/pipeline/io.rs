//! The socket's two halves as futures run inside a [`Connection`]'s own
//! context (`ctx.spawn`): each poll has the actor's state at hand, so the
//! reader checks the budget before taking a request and the writer releases
//! budget as the socket takes bytes, with no lock and no message.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};

use actix::ActorFuture;
use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use tokio::io::AsyncWrite;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::FramedRead;

use super::{Connection, PipelineConfig, Protocol};
use crate::server::timeouts::{RequestProgress, TimedRead, Tracked};

type Requests<D> = FramedRead<TimedRead<OwnedReadHalf>, Tracked<D>>;

/// Reads requests while the connection's budget allows; ends at EOF, a
/// read error (a timeout included), or shutdown.
pub(super) struct Reader<P: Protocol> {
    requests: Requests<P::Decoder>,
    /// Completes when the server shuts down.
    shutdown: LocalBoxFuture<'static, ()>,
    /// The decoder's limits have been raised after authentication.
    raised: bool,
}

impl<P: Protocol> Reader<P> {
    pub(super) fn new(read: OwnedReadHalf, decoder: P::Decoder, config: &PipelineConfig) -> Self {
        let progress = Rc::new(RequestProgress::default());
        let read = TimedRead::new(
            read,
            config.idle_timeout,
            config.frame_timeout,
            progress.clone(),
        );
        let mut shutdown = config.shutdown.clone();
        Reader {
            requests: FramedRead::new(read, Tracked::new(decoder, progress)),
            shutdown: Box::pin(async move {
                let _ = shutdown.wait_for(|&stop| stop).await;
            }),
            raised: false,
        }
    }
}

impl<P: Protocol> ActorFuture<Connection<P>> for Reader<P> {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        connection: &mut Connection<P>,
        ctx: &mut actix::Context<Connection<P>>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        let this = self.get_mut();
        if this.shutdown.as_mut().poll(task).is_ready() {
            connection.on_end_of_requests(ctx);
            return Poll::Ready(());
        }
        loop {
            if connection.reading_done {
                return Poll::Ready(());
            }
            if !connection.may_read() {
                connection.reader = Some(task.waker().clone());
                return Poll::Pending;
            }
            if !this.raised && connection.protocol.authenticated() {
                let decoder = this.requests.decoder_mut().inner_mut();
                connection.protocol.raise_limits(decoder);
                this.raised = true;
            }
            match this.requests.poll_next_unpin(task) {
                Poll::Ready(Some(Ok((bytes, request)))) => {
                    connection.on_request(bytes, request, ctx)
                }
                Poll::Ready(Some(Err(e))) => {
                    connection.on_read_error(&e, ctx);
                    return Poll::Ready(());
                }
                Poll::Ready(None) => {
                    connection.on_end_of_requests(ctx);
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Writes the connection's encoded replies as they come, releasing budget
/// as the socket takes bytes; shuts the socket's write side once the
/// connection is closing and everything is written, then stops the actor.
pub(super) struct Writer {
    socket: OwnedWriteHalf,
    /// Bytes taken from the outbox and not yet written.
    chunk: BytesMut,
    shut: bool,
}

impl Writer {
    pub(super) fn new(socket: OwnedWriteHalf) -> Self {
        Writer {
            socket,
            chunk: BytesMut::new(),
            shut: false,
        }
    }

    /// Writes until the socket or the outbox is empty; `Ready` when the
    /// connection is over (closed, or the socket failed).
    fn write<P: Protocol>(
        &mut self,
        connection: &mut Connection<P>,
        ctx: &mut actix::Context<Connection<P>>,
        task: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if self.chunk.is_empty() {
                if connection.outbox.is_empty() {
                    if connection.closing() || self.shut {
                        self.shut = true;
                        return Pin::new(&mut self.socket).poll_shutdown(task);
                    }
                    connection.writer = Some(task.waker().clone());
                    return Poll::Pending;
                }
                let spare = std::mem::take(&mut self.chunk);
                self.chunk = connection.take_outbox(spare);
            }
            match Pin::new(&mut self.socket).poll_write(task, &self.chunk) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.chunk.advance(n);
                    connection.on_written(n, ctx);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<P: Protocol> ActorFuture<Connection<P>> for Writer {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        connection: &mut Connection<P>,
        ctx: &mut actix::Context<Connection<P>>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        let this = self.get_mut();
        match this.write(connection, ctx, task) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                if let Err(e) = result {
                    log::debug!("connection write error: {e}");
                }
                actix::ActorContext::stop(ctx);
                Poll::Ready(())
            }
        }
    }
}
