//! The socket's two halves, run inside a [`Connection`]'s own context as
//! one item ([`Socket`], `ctx.spawn`): each poll has the actor's state at
//! hand, so the reader checks the budget before taking a request and the
//! writer releases a buffer's budget once the socket has taken all of it,
//! with no lock and no message.

use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use actix::ActorFuture;
use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use tokio::io::AsyncWrite;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{Instant, Sleep};
use tokio_util::codec::FramedRead;

use super::budget::{PARTIAL_STEP_BYTES, UNCHARGED_PARTIAL_BYTES};
use super::{Connection, PipelineConfig, Protocol};
use crate::server::timeouts::{RequestProgress, TimedRead, Tracked};

type Requests<D> = FramedRead<TimedRead<OwnedReadHalf>, Tracked<D>>;
type Item<P> = <<P as Protocol>::Decoder as tokio_util::codec::Decoder>::Item;

/// Most requests decoded ahead of the one being taken, for
/// [`Protocol::prefetch`].
pub const READ_AHEAD_REQUESTS: usize = 16;
/// Decoding ahead stops once the requests decoded ahead hold this many
/// bytes (they were in the read buffer already; held decoded, they are not
/// charged to the connection's budget until taken).
pub const READ_AHEAD_BYTES: usize = 64 << 10;

/// How the socket ended, once the requests decoded before it are taken.
enum StreamEnd {
    Failed(std::io::Error),
    Closed,
}

/// Reads requests while the connection's budget allows; ends at EOF, a
/// read error (a timeout included), or shutdown.
pub(super) struct Reader<P: Protocol> {
    requests: Requests<P::Decoder>,
    /// The decoder's and the socket's shared view of the request being
    /// received: what it holds, what it may hold.
    progress: Rc<RequestProgress>,
    /// Completes when the server shuts down.
    shutdown: LocalBoxFuture<'static, ()>,
    /// The decoder's limits are the raised ones (the client was
    /// authenticated when they were last set).
    raised: bool,
    /// Requests decoded, not yet taken, with their wire bytes.
    ahead: VecDeque<(usize, Item<P>)>,
    /// What the socket gave after `ahead`'s requests.
    end: Option<StreamEnd>,
}

// Nothing of a reader is pinned in place: it is polled through `get_mut`.
impl<P: Protocol> Unpin for Reader<P> {}

impl<P: Protocol> Reader<P> {
    pub(super) fn new(read: OwnedReadHalf, decoder: P::Decoder, config: &PipelineConfig) -> Self {
        let progress = Rc::new(RequestProgress::default());
        progress.allow(UNCHARGED_PARTIAL_BYTES);
        let read = TimedRead::new(
            read,
            config.idle_timeout,
            config.frame_timeout,
            progress.clone(),
        );
        let mut shutdown = config.shutdown.clone();
        Reader {
            requests: FramedRead::new(read, Tracked::new(decoder, progress.clone())),
            progress,
            shutdown: Box::pin(async move {
                let _ = shutdown.wait_for(|&stop| stop).await;
            }),
            raised: false,
            ahead: VecDeque::new(),
            end: None,
        }
    }
}

impl<P: Protocol> Reader<P> {
    /// One pass over what the socket has; `Ready` once reading is over.
    fn read_pass(
        &mut self,
        connection: &mut Connection<P>,
        ctx: &mut actix::Context<Connection<P>>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        connection.begin_pass();
        let polled = self.take_requests(connection, ctx, task);
        connection.end_pass(ctx);
        polled
    }
}

impl<P: Protocol> Reader<P> {
    /// Takes requests until the socket has no more, the connection may not
    /// read, or reading is over.
    fn take_requests(
        &mut self,
        connection: &mut Connection<P>,
        ctx: &mut actix::Context<Connection<P>>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        if self.shutdown.as_mut().poll(task).is_ready() {
            connection.on_end_of_requests(ctx);
            return Poll::Ready(());
        }
        loop {
            if connection.reading_done {
                return Poll::Ready(());
            }
            if !connection.may_read() {
                connection.park_reader(task.waker().clone(), ctx);
                return Poll::Pending;
            }
            self.follow_authentication(connection);
            if self.ahead.is_empty() && self.end.is_none() && !self.read_ahead(connection, task) {
                if self.progress.take_starved() && self.grow(connection) {
                    continue;
                }
                if connection.partial_waiting {
                    connection.park_reader(task.waker().clone(), ctx);
                }
                return Poll::Pending;
            }
            if let Some((bytes, request)) = self.ahead.pop_front() {
                connection.on_request(bytes, request, ctx);
                continue;
            }
            match self.end.take() {
                Some(StreamEnd::Failed(e)) => connection.on_read_error(&e, ctx),
                Some(StreamEnd::Closed) | None => connection.on_end_of_requests(ctx),
            }
            return Poll::Ready(());
        }
    }

    /// Sets the decoder's limits for the connection's authentication now:
    /// raised once the client has authenticated, lowered again if a wrong
    /// token closed the gate after.
    fn follow_authentication(&mut self, connection: &Connection<P>) {
        let authenticated = connection.protocol.authenticated();
        if authenticated != self.raised {
            let decoder = self.requests.decoder_mut().inner_mut();
            if authenticated {
                connection.protocol.raise_limits(decoder);
            } else {
                connection.protocol.lower_limits(decoder);
            }
            self.raised = authenticated;
        }
    }

    /// Decodes the requests the socket has, up to the read-ahead limits
    /// (one before the client has authenticated, and none past an `Auth`:
    /// the decoder's limits change then), and lets the protocol prefetch for them. False if the
    /// socket had nothing (its waker is registered).
    fn read_ahead(&mut self, connection: &mut Connection<P>, task: &mut TaskContext<'_>) -> bool {
        let most = match connection.protocol.authenticated() {
            true => READ_AHEAD_REQUESTS,
            false => 1,
        };
        let mut held = 0;
        while self.ahead.len() < most && held < READ_AHEAD_BYTES {
            match self.requests.poll_next_unpin(task) {
                Poll::Ready(Some(Ok((bytes, request)))) => {
                    if connection.partial_bytes > 0 {
                        connection.release_partial();
                        self.progress.allow(UNCHARGED_PARTIAL_BYTES);
                    }
                    held += bytes;
                    let stop = P::may_change_authentication(&request);
                    self.ahead.push_back((bytes, request));
                    if stop {
                        break;
                    }
                }
                Poll::Ready(Some(Err(e))) => self.end = Some(StreamEnd::Failed(e)),
                Poll::Ready(None) => self.end = Some(StreamEnd::Closed),
                Poll::Pending => break,
            }
            if self.end.is_some() {
                break;
            }
        }
        if self.ahead.len() > 1 {
            let requests = &mut self.ahead.iter().map(|(_, r)| r);
            if connection.settled() {
                let protocol = &connection.protocol;
                (connection.early).read(|replies| protocol.answer_early(requests, replies));
            } else {
                connection.protocol.prefetch(requests);
            }
        }
        !self.ahead.is_empty() || self.end.is_some()
    }
}

impl<P: Protocol> Reader<P> {
    /// The request being received holds all it may: asks the server-wide
    /// budget for [`PARTIAL_STEP_BYTES`] more. False if refused (the
    /// connection then waits for the budget; the frame timeout runs).
    fn grow(&mut self, connection: &mut Connection<P>) -> bool {
        let want = self.progress.held().saturating_add(PARTIAL_STEP_BYTES);
        let granted = connection.grant_partial(want);
        if granted {
            self.progress.allow(want);
        }
        granted
    }
}

/// Writes the connection's encoded replies as they come, releasing the
/// budget a buffer was charged once the socket has taken all of it; shuts
/// the socket's write side once the connection is closing and everything
/// is written, then stops the actor.
/// A socket that takes no byte for `stall_timeout` while replies wait
/// ends the connection (`TimedOut`).
pub(super) struct Writer {
    socket: OwnedWriteHalf,
    /// Bytes taken from the outbox and not yet written.
    chunk: BytesMut,
    /// What `chunk` was charged when taken; released once it is all
    /// written.
    chunk_charge: usize,
    shut: bool,
    stall_timeout: Duration,
    /// Set while the socket refuses bytes; made at the first stall.
    stall: Option<Pin<Box<Sleep>>>,
    /// `stall` is set for the current stall.
    stalled: bool,
}

impl Writer {
    pub(super) fn new(socket: OwnedWriteHalf, stall_timeout: Duration) -> Self {
        Writer {
            socket,
            chunk: BytesMut::new(),
            chunk_charge: 0,
            shut: false,
            stall_timeout,
            stall: None,
            stalled: false,
        }
    }

    /// The socket refused bytes: starts the stall clock if it is not
    /// running; `Ready` once it has run out.
    fn poll_stall(&mut self, task: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        let timeout = self.stall_timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if !self.stalled {
            // One clock read per stall, not per refused write.
            stall.as_mut().reset(Instant::now() + timeout);
            self.stalled = true;
        }
        match stall.as_mut().poll(task) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read no reply for the idle timeout",
            ))),
            Poll::Pending => Poll::Pending,
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
                (self.chunk, self.chunk_charge) = connection.take_outbox(spare);
            }
            match Pin::new(&mut self.socket).poll_write(task, &self.chunk) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.stalled = false;
                    self.chunk.advance(n);
                    if self.chunk.is_empty() {
                        connection.on_written(std::mem::take(&mut self.chunk_charge), ctx);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return self.poll_stall(task),
            }
        }
    }
}

impl Writer {
    /// Writes what there is; `Ready` once the connection is over (the
    /// actor is then stopped).
    fn write_pass<P: Protocol>(
        &mut self,
        connection: &mut Connection<P>,
        ctx: &mut actix::Context<Connection<P>>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        match self.write(connection, ctx, task) {
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

/// The reader, the engine calls awaited and the writer as one item of the
/// actor's context, polled in that order: the replies a pass of the reader
/// or an engine's answer produced are written in the same poll, without
/// waking the actor's task again for the writer.
pub(super) struct Socket<P: Protocol> {
    reader: Option<Reader<P>>,
    writer: Writer,
}

impl<P: Protocol> Socket<P> {
    pub(super) fn new(reader: Reader<P>, writer: Writer) -> Self {
        Socket {
            reader: Some(reader),
            writer,
        }
    }
}

impl<P: Protocol> ActorFuture<Connection<P>> for Socket<P> {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        connection: &mut Connection<P>,
        ctx: &mut actix::Context<Connection<P>>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        let this = self.get_mut();
        if !connection
            .task
            .as_ref()
            .is_some_and(|t| t.will_wake(task.waker()))
        {
            connection.task = Some(task.waker().clone());
        }
        connection.wakeups += 1;
        connection.socket_polling = true;
        let polled = this.poll_halves(connection, ctx, task);
        connection.socket_polling = false;
        polled
    }
}

impl<P: Protocol> Socket<P> {
    /// Reads, takes the engine's answers, writes; again while that made
    /// engine calls not yet polled. A reader let read again by the answers
    /// or the writer is polled again once in this poll, and woken after
    /// that: a reader let read and parking again at once costs a wake-up
    /// each time, as it did when it was an item of its own, but cannot
    /// hold the worker in this loop.
    fn poll_halves(
        &mut self,
        connection: &mut Connection<P>,
        ctx: &mut actix::Context<Connection<P>>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        let mut reads_left = 2;
        let mut read = true;
        loop {
            connection.reader_due = false;
            if read
                && let Some(reader) = self.reader.as_mut()
                && reader.read_pass(connection, ctx, task).is_ready()
            {
                self.reader = None;
            }
            connection.take_engine_answers(ctx, task);
            if self.writer.write_pass(connection, ctx, task).is_ready() {
                return Poll::Ready(());
            }
            reads_left -= 1;
            read = connection.reader_due && reads_left > 0;
            if connection.reader_due && !read {
                task.waker().wake_by_ref();
            }
            if !read && !connection.unpolled_answers {
                return Poll::Pending;
            }
        }
    }
}
