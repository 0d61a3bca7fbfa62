//! The RESP session actor: one per connection, on a worker arbiter.
//!
//! The same shape and promises as the native [`crate::server::Session`]:
//! requests are read as a stream (`ctx.add_stream`), replies written through
//! `actix::io::FramedWrite`, and
//! - replies leave in request order (a queue of slots, filled as engine
//!   calls finish, flushed from the front), each in the protocol the
//!   connection spoke when its request arrived (HELLO switches it);
//! - every request sees exactly the writes sent before it on the
//!   connection, as in Redis (stricter than the native session, where a
//!   read may see a later write): a read waits until every earlier write is
//!   acknowledged; a write goes to the engine at once, in arrival order,
//!   unless an earlier request is still held; a read-modify-write (INCR,
//!   DEL, SET NX ...) waits like a read, and later writes wait for its
//!   answer;
//! - at most `max_in_flight` requests are unanswered: each holds a
//!   semaphore permit until its reply is written, and the socket is not
//!   read while none is free;
//! - malformed input is answered `-ERR Protocol error: ...` and the
//!   connection closed; QUIT is answered `+OK` and the connection closed.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use actix::io::{FramedWrite, WriteHandler};
use actix::prelude::*;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::codec::FramedRead;

use super::auth::{self, Gated};
use super::codec::{Limits, RespCodec, protocol_error};
use super::commands::{self, Access, Connection, Engine, Op, Parsed};
use super::reply::{Protocol, Reply};
use crate::server::auth::{AuthGate, AuthToken};
use crate::server::connections::ConnectionGuard;

/// What the socket stream yields: a request (or the read error that ends
/// the stream) with the in-flight permit taken for it.
type Inbound = (OwnedSemaphorePermit, std::io::Result<Vec<Bytes>>);

/// One reply position, in request order.
struct Slot {
    reply: Option<Reply>,
    /// The protocol to write the reply in.
    protocol: Protocol,
    /// Released when the reply is written, letting one more request in.
    _permit: OwnedSemaphorePermit,
}

/// How a session is set up; one per server, cloned into each session.
#[derive(Clone)]
pub(crate) struct SessionParams {
    pub engine: Engine,
    pub limits: Limits,
    pub max_in_flight: usize,
    /// Turns true when the server shuts down: sessions stop reading.
    pub shutdown: watch::Receiver<bool>,
    /// The token AUTH must present, if the server has one.
    pub auth_token: Option<AuthToken>,
}

/// The actor serving one RESP connection.
pub struct Session {
    engine: Engine,
    connection: Connection,
    writer: FramedWrite<(Protocol, Reply), OwnedWriteHalf, RespCodec>,
    /// Replies not yet written; `slots[0]` has sequence number `first_seq`.
    slots: VecDeque<Slot>,
    first_seq: u64,
    next_seq: u64,
    /// Writes and read-modify-writes not yet answered (held ones included).
    unacked_writes: BTreeSet<u64>,
    /// Read-modify-writes not yet answered.
    unacked_rmws: BTreeSet<u64>,
    /// Requests waiting for an earlier one, in arrival order.
    held: VecDeque<(u64, Op)>,
    /// The socket will give no more requests (EOF, error, QUIT, shutdown).
    reading_done: bool,
    /// Set to true to stop reading the socket (QUIT).
    stop_reading: watch::Sender<bool>,
    /// Whether this connection has authenticated (open if no token is set).
    gate: AuthGate,
    /// The server has a token: AUTH checks against it.
    auth_configured: bool,
    /// Counts this connection against the server's limit while it lives.
    _guard: ConnectionGuard,
}

impl Session {
    /// Starts a session actor for `stream` on the current arbiter.
    pub(crate) fn start(stream: TcpStream, id: u64, params: SessionParams, guard: ConnectionGuard) {
        let (read, write) = stream.into_split();
        let (stop_reading, stopped) = watch::channel(false);
        Session::create(move |ctx| {
            let frames = FramedRead::new(read, RespCodec::new(params.limits));
            ctx.add_stream(inbound(
                frames,
                params.max_in_flight,
                params.shutdown,
                stopped,
            ));
            Session {
                engine: params.engine,
                connection: Connection {
                    id,
                    ..Connection::default()
                },
                writer: FramedWrite::new(write, RespCodec::new(params.limits), ctx),
                slots: VecDeque::new(),
                first_seq: 0,
                next_seq: 0,
                unacked_writes: BTreeSet::new(),
                unacked_rmws: BTreeSet::new(),
                held: VecDeque::new(),
                reading_done: false,
                stop_reading,
                auth_configured: params.auth_token.is_some(),
                gate: AuthGate::new(params.auth_token.clone()),
                _guard: guard,
            }
        });
    }

    /// Takes a request: answers it, or queues its slot and dispatches or
    /// holds it.
    fn accept(&mut self, args: Vec<Bytes>, permit: OwnedSemaphorePermit, ctx: &mut Context<Self>) {
        match auth::check(&args, &mut self.gate, self.auth_configured) {
            Gated::Pass => {}
            Gated::Answer(reply) => {
                self.push_slot(Some(reply), permit);
                return;
            }
            Gated::AnswerAndClose(reply) => {
                self.push_slot(Some(reply), permit);
                self.reading_done = true;
                let _ = self.stop_reading.send(true);
                return;
            }
        }
        match commands::parse(args, &mut self.connection) {
            Parsed::Reply(reply) => {
                self.push_slot(Some(reply), permit);
            }
            Parsed::Quit => {
                self.push_slot(Some(Reply::ok()), permit);
                self.reading_done = true;
                let _ = self.stop_reading.send(true);
            }
            Parsed::Engine(op) => {
                let seq = self.push_slot(None, permit);
                let access = op.access();
                if access != Access::Read {
                    self.unacked_writes.insert(seq);
                }
                if access == Access::ReadWrite {
                    self.unacked_rmws.insert(seq);
                }
                if self.ready(seq, access) {
                    self.dispatch(seq, op, ctx);
                } else {
                    self.held.push_back((seq, op));
                }
            }
        }
    }

    /// Queues a reply slot and returns its sequence number.
    fn push_slot(&mut self, reply: Option<Reply>, permit: OwnedSemaphorePermit) -> u64 {
        self.slots.push_back(Slot {
            reply,
            protocol: self.connection.protocol,
            _permit: permit,
        });
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// True if request `seq` may go to the engine now.
    fn ready(&self, seq: u64, access: Access) -> bool {
        let earlier = |set: &BTreeSet<u64>| set.first().is_some_and(|&s| s < seq);
        match access {
            Access::Read | Access::ReadWrite => !earlier(&self.unacked_writes),
            // A write must not overtake a held request: that one would see
            // it. (A dispatched read is safe: the engine applies requests
            // in call order.)
            Access::Write => {
                !earlier(&self.unacked_rmws) && self.held.front().is_none_or(|(s, _)| *s > seq)
            }
        }
    }

    fn dispatch(&mut self, seq: u64, op: Op, ctx: &mut Context<Self>) {
        let reply = commands::execute(op, &self.engine);
        ctx.spawn(
            reply
                .into_actor(self)
                .map(move |reply, session, ctx| session.complete(seq, reply, ctx)),
        );
    }

    /// Records the answer to request `seq`, releases requests that were
    /// waiting for it and writes whatever replies are now in order.
    fn complete(&mut self, seq: u64, reply: Reply, ctx: &mut Context<Self>) {
        let index = seq.checked_sub(self.first_seq).map(|i| i as usize);
        if let Some(slot) = index.and_then(|i| self.slots.get_mut(i)) {
            slot.reply = Some(reply);
        }
        self.unacked_rmws.remove(&seq);
        if self.unacked_writes.remove(&seq) {
            self.release(ctx);
        }
        self.flush();
    }

    /// Dispatches, in arrival order, every held request now ready.
    fn release(&mut self, ctx: &mut Context<Self>) {
        let held = std::mem::take(&mut self.held);
        for (seq, op) in held {
            if self.ready(seq, op.access()) {
                self.dispatch(seq, op, ctx);
            } else {
                self.held.push_back((seq, op));
            }
        }
    }

    /// Writes the answered replies at the front of the queue; closes the
    /// connection once reading is over and nothing is left to answer.
    fn flush(&mut self) {
        while self.slots.front().is_some_and(|s| s.reply.is_some()) {
            if let Some(Slot {
                reply: Some(reply),
                protocol,
                ..
            }) = self.slots.pop_front()
            {
                self.first_seq += 1;
                self.writer.write((protocol, reply));
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
    fn handle(&mut self, (permit, request): Inbound, ctx: &mut Context<Self>) {
        if self.reading_done {
            // Pipelined after QUIT or a protocol error: not served.
            return;
        }
        match request {
            Ok(args) => self.accept(args, permit, ctx),
            Err(e) => {
                if let Some(error) = protocol_error(&e) {
                    log::debug!("closing a RESP connection: {error}");
                    self.push_slot(Some(Reply::err(error)), permit);
                } else {
                    log::debug!("RESP connection read error: {e}");
                }
                self.reading_done = true;
            }
        }
        self.flush();
    }

    /// The socket gave its last request: answer what is in flight, then close.
    fn finished(&mut self, _ctx: &mut Context<Self>) {
        self.reading_done = true;
        self.flush();
    }
}

impl WriteHandler<std::io::Error> for Session {
    fn error(&mut self, err: std::io::Error, _ctx: &mut Context<Self>) -> Running {
        log::debug!("RESP connection write error: {err}");
        Running::Stop
    }
}

/// The socket's requests, each with an in-flight permit taken before it is
/// read: with no permit free the socket is left unread. Ends at EOF, after
/// a read error, at QUIT or at shutdown.
fn inbound(
    frames: FramedRead<OwnedReadHalf, RespCodec>,
    max_in_flight: usize,
    shutdown: watch::Receiver<bool>,
    quit: watch::Receiver<bool>,
) -> impl Stream<Item = Inbound> {
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    futures_util::stream::unfold(
        (frames, permits, shutdown, quit),
        |(mut frames, permits, mut shutdown, mut quit)| async move {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.ok()?,
                _ = shutdown.wait_for(|&stop| stop) => return None,
                _ = quit.wait_for(|&stop| stop) => return None,
            };
            let request = tokio::select! {
                request = frames.next() => request?,
                _ = shutdown.wait_for(|&stop| stop) => return None,
                _ = quit.wait_for(|&stop| stop) => return None,
            };
            Some(((permit, request), (frames, permits, shutdown, quit)))
        },
    )
}
