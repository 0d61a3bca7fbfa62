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
//!   a semaphore permit until its reply is written, and the socket is not
//!   read while none is free.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use actix::io::{FramedWrite, WriteHandler};
use actix::prelude::*;
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::codec::FramedRead;

use super::codec::{Frame, ProtoCodec, is_frame_too_large};
use super::dispatch::{self, Access};
use super::listener::ConnectionGuard;
use crate::Db;
use crate::proto::{ErrorCode, Request, Response, request::Command, response::Reply};

type Codec = ProtoCodec<Request, Response>;

/// What the socket stream yields: a frame (or the read error that ends the
/// stream) with the in-flight permit taken for it.
type Inbound = (OwnedSemaphorePermit, std::io::Result<Frame<Request>>);

/// One reply position, in request order.
struct Slot {
    /// The request's id, echoed in the reply.
    id: u64,
    /// Filled when the engine answers.
    reply: Option<Reply>,
    /// Released when the reply is written, letting one more request in.
    _permit: OwnedSemaphorePermit,
}

/// The actor serving one connection.
pub struct Session {
    db: Db,
    writer: FramedWrite<Response, OwnedWriteHalf, Codec>,
    /// Replies not yet written, in request order; `slots[0]` has sequence
    /// number `first_seq`.
    slots: VecDeque<Slot>,
    first_seq: u64,
    next_seq: u64,
    /// Sequence numbers of writes sent to the engine and not yet answered.
    unacked_writes: BTreeSet<u64>,
    /// Reads waiting for an earlier write, in arrival order.
    held_reads: VecDeque<(u64, Command)>,
    /// The socket will give no more requests (EOF, error or shutdown).
    reading_done: bool,
    /// Counts this connection against the server's limit while it lives.
    _guard: ConnectionGuard,
}

/// How a session is set up; one per server, cloned into each session.
#[derive(Clone)]
pub(crate) struct SessionParams {
    pub db: Db,
    pub max_frame_bytes: usize,
    pub max_in_flight: usize,
    /// Turns true when the server shuts down: sessions stop reading.
    pub shutdown: watch::Receiver<bool>,
}

impl Session {
    /// Starts a session actor for `stream` on the current arbiter.
    pub(crate) fn start(stream: TcpStream, params: SessionParams, guard: ConnectionGuard) {
        let (read, write) = stream.into_split();
        let codec = Codec::new(params.max_frame_bytes);
        Session::create(move |ctx| {
            let frames = FramedRead::new(read, codec.clone());
            ctx.add_stream(inbound(frames, params.max_in_flight, params.shutdown));
            Session {
                db: params.db,
                writer: FramedWrite::new(write, codec, ctx),
                slots: VecDeque::new(),
                first_seq: 0,
                next_seq: 0,
                unacked_writes: BTreeSet::new(),
                held_reads: VecDeque::new(),
                reading_done: false,
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

    /// Queues a reply slot and returns its sequence number.
    fn push_slot(&mut self, id: u64, reply: Option<Reply>, permit: OwnedSemaphorePermit) -> u64 {
        self.slots.push_back(Slot {
            id,
            reply,
            _permit: permit,
        });
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

    /// Writes the answered replies at the front of the queue; closes the
    /// connection once reading is over and nothing is left to answer.
    fn flush(&mut self, _ctx: &mut Context<Self>) {
        while self.slots.front().is_some_and(|s| s.reply.is_some()) {
            if let Some(slot) = self.slots.pop_front() {
                self.first_seq += 1;
                self.writer.write(Response {
                    id: slot.id,
                    reply: slot.reply,
                });
            }
        }
        if self.reading_done && self.slots.is_empty() && !self.writer.closed() {
            self.writer.close();
        }
    }
}

impl Actor for Session {
    type Context = Context<Self>;
}

impl StreamHandler<Inbound> for Session {
    fn handle(&mut self, (permit, frame): Inbound, ctx: &mut Context<Self>) {
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

impl WriteHandler<std::io::Error> for Session {
    fn error(&mut self, err: std::io::Error, _ctx: &mut Context<Self>) -> Running {
        log::debug!("connection write error: {err}");
        Running::Stop
    }
}

/// The socket's frames, each with an in-flight permit taken before it is
/// read: with no permit free the socket is left unread. Ends at EOF, after
/// a read error, or at shutdown.
fn inbound(
    frames: FramedRead<OwnedReadHalf, Codec>,
    max_in_flight: usize,
    shutdown: watch::Receiver<bool>,
) -> impl Stream<Item = Inbound> {
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    futures_util::stream::unfold(
        (frames, permits, shutdown),
        |(mut frames, permits, mut shutdown)| async move {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.ok()?,
                _ = shutdown.wait_for(|&stop| stop) => return None,
            };
            let frame = tokio::select! {
                frame = frames.next() => frame?,
                _ = shutdown.wait_for(|&stop| stop) => return None,
            };
            Some(((permit, frame), (frames, permits, shutdown)))
        },
    )
}
