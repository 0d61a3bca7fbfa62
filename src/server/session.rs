//! The session actor: one per connection.
//!
//! Requests are read from the socket as a stream (`ctx.add_stream`) and
//! replies written through `actix::io::FramedWrite`. The session keeps the
//! protocol's promises:
//! - replies leave in request order (a queue of slots, filled as engine
//!   calls finish, flushed from the front);
//! - writes go to the engine at once, in arrival order (the `Db` applies
//!   them in call order);
//! - a read waits until every earlier write on the connection has been
//!   acknowledged, because the engine only guarantees that a read sees writes
//!   whose futures completed; reads with no such write go at once, side by
//!   side;
//! - at most `max_in_flight` requests are unanswered: each read frame holds
//!   a semaphore permit until its reply has been written to the socket, and
//!   the socket is not read while none is free. Replies wait for the socket
//!   in a writer task as `Response`s (values shared with the engine, encoded
//!   only when written), so a client that never reads holds at most
//!   `max_in_flight` replies in memory;
//! - with a token configured, nothing but `Auth` is served until the client
//!   has sent the right token (see [`super::auth`]); before that, frames
//!   longer than [`PRE_AUTH_MAX_FRAME_BYTES`] are refused;
//! - a client silent for the idle timeout, or that leaves a frame half-sent
//!   for the frame timeout, is disconnected (see [`super::timeouts`]).

use std::cell::Cell;
use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::codec::{Encoder, FramedRead};

use super::auth::{AuthGate, AuthOutcome, AuthToken};
use super::codec::{Frame, ProtoCodec, is_frame_too_large};
use super::dispatch::{self, Access};
use super::timeouts::TimedRead;
use crate::Db;
use crate::proto::{ErrorCode, Request, Response, request::Command, response::Reply};
use crate::server::connections::ConnectionGuard;

type Codec = ProtoCodec<Request, Response>;

/// Longest frame read from a connection that has not yet authenticated: an
/// `Auth` is small, and an unknown client should not make the server buffer
/// 64 MiB.
pub const PRE_AUTH_MAX_FRAME_BYTES: usize = 64 << 10;

/// The writer task gathers queued replies into one socket write up to about
/// this many bytes.
const WRITE_BATCH_BYTES: usize = 64 << 10;

/// What the socket stream yields: a frame (or the read error that ends the
/// stream) with the in-flight permit taken for it.
type Inbound = (OwnedSemaphorePermit, std::io::Result<Frame<Request>>);

/// A reply on its way to the socket, still holding its in-flight permit.
type Outbound = (Response, OwnedSemaphorePermit);

/// One reply position, in request order.
struct Slot {
    /// The request's id, echoed in the reply.
    id: u64,
    /// Filled when the engine answers.
    reply: Option<Reply>,
    /// Released once the reply is written to the socket, letting one more
    /// request in.
    permit: OwnedSemaphorePermit,
}

/// The actor serving one connection.
pub struct Session {
    db: Db,
    /// Replies in order to the writer task; dropped to close the connection
    /// once everything is answered.
    replies: Option<mpsc::UnboundedSender<Outbound>>,
    /// Replies not yet written, in request order; `slots[0]` has sequence
    /// number `first_seq`.
    slots: VecDeque<Slot>,
    first_seq: u64,
    next_seq: u64,
    /// Sequence numbers of writes sent to the engine and not yet answered.
    unacked_writes: BTreeSet<u64>,
    /// Reads waiting for an earlier write, in arrival order.
    held_reads: VecDeque<(u64, Command)>,
    /// The socket will give no more requests (EOF, error, shutdown, or the
    /// session gave up on the client).
    reading_done: bool,
    /// Whether this connection has authenticated.
    gate: AuthGate,
    /// Mirrors `gate.is_open()` for the socket stream, which raises the
    /// frame limit once it is.
    authenticated: Rc<Cell<bool>>,
    /// Counts this connection against the server's limit while it lives.
    _guard: ConnectionGuard,
}

/// How a session is set up; one per server, cloned into each session.
#[derive(Clone)]
pub(crate) struct SessionParams {
    pub db: Db,
    pub max_frame_bytes: usize,
    pub max_in_flight: usize,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
    /// The token clients must send first, if any.
    pub auth_token: Option<AuthToken>,
    /// Turns true when the server shuts down: sessions stop reading.
    pub shutdown: watch::Receiver<bool>,
}

impl Session {
    /// Starts a session actor for `stream` on the current arbiter.
    pub(crate) fn start(stream: TcpStream, params: SessionParams, guard: ConnectionGuard) {
        let (read, write) = stream.into_split();
        let gate = AuthGate::new(params.auth_token.clone());
        let authenticated = Rc::new(Cell::new(gate.is_open()));
        let limits = FrameLimits {
            authenticated: authenticated.clone(),
            max_frame_bytes: params.max_frame_bytes,
        };
        let read = TimedRead::new(read, params.idle_timeout, params.frame_timeout);
        let frames = FramedRead::new(read, Codec::new(limits.current()));
        let (replies, outbound) = mpsc::unbounded_channel();
        Session::create(move |ctx| {
            let stream = inbound(frames, limits, params.max_in_flight, params.shutdown);
            ctx.add_stream(stream);
            let writer = actix::fut::wrap_future::<_, Session>(write_replies(write, outbound));
            ctx.spawn(writer.map(|result, _session, ctx| {
                if let Err(e) = result {
                    log::debug!("connection write error: {e}");
                }
                ctx.stop();
            }));
            Session {
                db: params.db,
                replies: Some(replies),
                slots: VecDeque::new(),
                first_seq: 0,
                next_seq: 0,
                unacked_writes: BTreeSet::new(),
                held_reads: VecDeque::new(),
                reading_done: false,
                gate,
                authenticated,
                _guard: guard,
            }
        });
    }

    /// Takes a request: queues its slot and dispatches or holds it.
    fn accept(&mut self, request: Request, permit: OwnedSemaphorePermit, ctx: &mut Context<Self>) {
        let Some(command) = request.command else {
            let reply = dispatch::invalid_request("request has no command");
            self.push_slot(request.id, Some(reply), permit);
            return;
        };
        if let Command::Auth(auth) = &command {
            let reply = self.authenticate(auth.token.as_bytes());
            self.push_slot(request.id, Some(reply), permit);
            return;
        }
        if !self.gate.is_open() {
            let reply = dispatch::error(ErrorCode::Unauthenticated, "send Auth first");
            self.push_slot(request.id, Some(reply), permit);
            return;
        }
        let seq = self.push_slot(request.id, None, permit);
        match dispatch::access(&command) {
            Access::Write => {
                self.unacked_writes.insert(seq);
                self.dispatch(seq, command, ctx);
            }
            Access::Read if self.waits_for_write(seq) => self.held_reads.push_back((seq, command)),
            Access::Read | Access::Immediate => self.dispatch(seq, command, ctx),
        }
    }

    /// Checks an `Auth` token and gives its reply. After too many wrong
    /// tokens the connection is closed once the reply is written.
    fn authenticate(&mut self, token: &[u8]) -> Reply {
        let outcome = self.gate.attempt(token);
        self.authenticated.set(self.gate.is_open());
        match outcome {
            AuthOutcome::Accepted => Reply::Done(crate::proto::Done {}),
            AuthOutcome::Refused => dispatch::error(ErrorCode::Unauthenticated, "wrong token"),
            AuthOutcome::TooManyFailures => {
                log::warn!("closing a connection after repeated wrong tokens");
                self.reading_done = true;
                dispatch::error(ErrorCode::Unauthenticated, "wrong token; closing")
            }
        }
    }

    /// Queues a reply slot and returns its sequence number.
    fn push_slot(&mut self, id: u64, reply: Option<Reply>, permit: OwnedSemaphorePermit) -> u64 {
        self.slots.push_back(Slot { id, reply, permit });
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// True if a write that arrived before `seq` is still unanswered.
    fn waits_for_write(&self, seq: u64) -> bool {
        self.unacked_writes.first().is_some_and(|&w| w < seq)
    }

    fn dispatch(&mut self, seq: u64, command: Command, ctx: &mut Context<Self>) {
        let reply = dispatch::execute(&self.db, command);
        ctx.spawn(
            reply
                .into_actor(self)
                .map(move |reply, session, ctx| session.complete(seq, reply, ctx)),
        );
    }

    /// Records the engine's answer to request `seq`, releases reads that
    /// were waiting for it and writes whatever replies are now in order.
    fn complete(&mut self, seq: u64, reply: Reply, ctx: &mut Context<Self>) {
        let index = seq.checked_sub(self.first_seq).map(|i| i as usize);
        if let Some(slot) = index.and_then(|i| self.slots.get_mut(i)) {
            slot.reply = Some(reply);
        }
        if self.unacked_writes.remove(&seq) {
            self.release_reads(ctx);
        }
        self.flush(ctx);
    }

    fn release_reads(&mut self, ctx: &mut Context<Self>) {
        while let Some(&(seq, _)) = self.held_reads.front() {
            if self.waits_for_write(seq) {
                break;
            }
            if let Some((seq, command)) = self.held_reads.pop_front() {
                self.dispatch(seq, command, ctx);
            }
        }
    }

    /// Hands the answered replies at the front of the queue to the writer
    /// task; lets it close the connection once reading is over and nothing
    /// is left to answer.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        while self.slots.front().is_some_and(|s| s.reply.is_some()) {
            let Some(slot) = self.slots.pop_front() else {
                break;
            };
            self.first_seq += 1;
            let response = Response {
                id: slot.id,
                reply: slot.reply,
            };
            let sent = self
                .replies
                .as_ref()
                .map(|r| r.send((response, slot.permit)));
            if !matches!(sent, Some(Ok(()))) {
                // The writer has ended: the socket is gone.
                return ctx.stop();
            }
        }
        if self.reading_done && self.slots.is_empty() {
            self.replies = None;
        }
    }
}

impl Actor for Session {
    type Context = Context<Self>;
}

impl StreamHandler<Inbound> for Session {
    fn handle(&mut self, (permit, frame): Inbound, ctx: &mut Context<Self>) {
        if self.reading_done {
            return; // the session has given up on this client
        }
        match frame {
            Ok(Frame::Message(request)) => self.accept(request, permit, ctx),
            Ok(Frame::Undecodable(e)) => {
                log::debug!("undecodable frame: {e}");
                let reply = dispatch::invalid_request(format!("not a valid Request: {e}"));
                self.push_slot(0, Some(reply), permit);
            }
            Err(e) if is_frame_too_large(&e) => {
                let reply = dispatch::error(ErrorCode::FrameTooLarge, e.to_string());
                self.push_slot(0, Some(reply), permit);
                self.reading_done = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                log::debug!("closing a connection: {e}");
                self.reading_done = true;
            }
            Err(e) => {
                log::debug!("connection read error: {e}");
                self.reading_done = true;
            }
        }
        self.flush(ctx);
    }

    /// The socket gave its last request: answer what is in flight, then close.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.reading_done = true;
        self.flush(ctx);
    }
}

/// The longest frame the socket stream accepts: small until the
/// connection has authenticated.
struct FrameLimits {
    authenticated: Rc<Cell<bool>>,
    max_frame_bytes: usize,
}

impl FrameLimits {
    fn current(&self) -> usize {
        if self.authenticated.get() {
            self.max_frame_bytes
        } else {
            self.max_frame_bytes.min(PRE_AUTH_MAX_FRAME_BYTES)
        }
    }
}

/// The socket's frames, each with an in-flight permit taken before it is
/// read: with no permit free the socket is left unread. Ends at EOF, after
/// a read error (a timeout included), or at shutdown.
fn inbound(
    frames: FramedRead<TimedRead<OwnedReadHalf>, Codec>,
    limits: FrameLimits,
    max_in_flight: usize,
    shutdown: watch::Receiver<bool>,
) -> impl Stream<Item = Inbound> {
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    futures_util::stream::unfold(
        (frames, permits, shutdown),
        move |(mut frames, permits, mut shutdown)| {
            // The session handled the previous frame (an `Auth`, maybe)
            // before this runs.
            frames.decoder_mut().set_max_frame_bytes(limits.current());
            async move {
                let permit = tokio::select! {
                    permit = permits.clone().acquire_owned() => permit.ok()?,
                    _ = shutdown.wait_for(|&stop| stop) => return None,
                };
                let frame = tokio::select! {
                    frame = frames.next() => frame?,
                    _ = shutdown.wait_for(|&stop| stop) => return None,
                };
                Some(((permit, frame), (frames, permits, shutdown)))
            }
        },
    )
}

/// The writer task: encodes replies as they come (gathering what is queued
/// into one write) and writes them; a reply's permit is released once it is
/// written. Shuts the socket's write side when the session drops its sender.
///
/// # Errors
/// The socket write failed (the client went away).
async fn write_replies(
    mut write: OwnedWriteHalf,
    mut replies: mpsc::UnboundedReceiver<Outbound>,
) -> std::io::Result<()> {
    let mut codec = Codec::new(0);
    let mut buffer = BytesMut::new();
    let mut written = Vec::new();
    while let Some((response, permit)) = replies.recv().await {
        codec.encode(response, &mut buffer)?;
        written.push(permit);
        while buffer.len() < WRITE_BATCH_BYTES {
            let Ok((response, permit)) = replies.try_recv() else {
                break;
            };
            codec.encode(response, &mut buffer)?;
            written.push(permit);
        }
        write.write_all(&buffer).await?;
        written.clear();
        if buffer.capacity() > 4 * WRITE_BATCH_BYTES {
            buffer = BytesMut::new(); // do not keep a large value's buffer
        } else {
            buffer.clear();
        }
    }
    write.shutdown().await
}
