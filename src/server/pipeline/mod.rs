//! One pipelined connection, for any protocol: the [`Connection`] actor.
//! The native session and the RESP session are each a [`Protocol`] (a
//! decoder, a command mapping and a reply encoder); everything else about a
//! connection lives here, once:
//! - **order**: replies leave in request order (a queue of slots, filled as
//!   engine calls finish, written from the front); a request observes every
//!   write sent before it on the connection and none after ([`order`]);
//! - **memory bounded in bytes**: the bytes of unanswered requests and of
//!   replies the socket has not yet taken count against a budget
//!   (`max_reply_bytes`; 64 KiB before authentication); the socket is not
//!   read while the budget is full, and reads wait while the replies alone
//!   fill it. A budget's bytes are released when the socket takes them, not
//!   when they enter a buffer. A read the engine cannot answer at once (it
//!   waits for the disk) is dispatched only when no other such read is in
//!   flight, so at most one reply larger than the budget is ever held. The
//!   worst case per connection is written in docs/PROTOCOL.md ("Limits");
//! - **a server-wide byte budget**: the same bytes of every connection add
//!   up in one atomic counter ([`budget`]); while it is at its cap no
//!   connection reads or starts a read. A request still being received
//!   counts there too once it holds more than
//!   [`budget::UNCHARGED_PARTIAL_BYTES`]: its socket is read only as far
//!   as the counter grants, and requests in progress may take it to half
//!   the cap only;
//! - **write stalls**: a connection whose socket takes no reply byte for
//!   the idle timeout while replies wait is closed (a client that never
//!   reads cannot hold its budget, or the server's, for ever);
//! - **gathered puts**: consecutive plain puts taken in one pass of the
//!   reader over what the socket had go to the engine as one write batch
//!   (one WAL record, one turn, one sync) when the pass ends or another
//!   request is dispatched; each is answered in its own slot
//!   ([`Protocol::gatherable_put`]);
//! - **prefetched reads**: once the client has authenticated, the reader
//!   decodes up to [`io::READ_AHEAD_REQUESTS`] requests (at most
//!   [`io::READ_AHEAD_BYTES`] of them) before taking the first, and the
//!   protocol prefetches what their gets will read
//!   ([`Protocol::prefetch`]): a pipelined pass's gets then wait for memory
//!   together, not one after another. They are taken one at a time as
//!   before, under the same checks;
//! - **gets read together**: when nothing the connection sent before such
//!   a batch is unanswered or held, the plain gets at its front are read at
//!   once, together ([`Protocol::answer_early`], `Db::get_many_now`), and
//!   each is answered from that read when its turn comes, unless a write
//!   of the connection was dispatched first ([`EarlyReplies`]);
//! - **in-flight limit**: at most `max_in_flight` requests unanswered;
//! - **timeouts**: idle and half-sent requests ([`super::timeouts`]), and a
//!   connection that has not authenticated within `auth_timeout`;
//! - **pre-authentication limits**: small requests and a small budget until
//!   the protocol says the client has authenticated, and again from the
//!   moment it says the client no longer is (a wrong token after a right
//!   one).
//!
//! The reader and the writer (`io`) are futures the actor runs in its own
//! context, so they and the actor share its state with no lock and no
//! message; the actor, its reads and its writes all run on one worker
//! thread. They are one item of that context (`io::Socket`), which also
//! polls the engine calls not answered at once (kept in the connection,
//! not spawned): one poll reads what the socket has, takes the engine's
//! answers and writes the replies, so a request costs one wake-up of the
//! actor, not one for the read and another for the write (and, for a call
//! that waits, two more: one for its answer, one for the writer).

pub mod budget;
mod io;
pub mod order;

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::Decoder;

pub use budget::ServerReplyBudget;
use order::Order;
pub use order::{Access, Footprint};

use crate::engine::{Mutation, WriteBatch};
use crate::server::connections::ConnectionGuard;
use crate::server::request_stats::RequestStats;
use crate::server::timeouts::UnfinishedBytes;

/// Most bytes of requests and replies an unauthenticated connection may
/// make the server hold; its requests are refused above this size too.
pub const PRE_AUTH_MAX_BYTES: usize = 64 << 10;
/// A connection that has not authenticated this long after it opened is
/// closed (`--auth-timeout` has no flag: the default is what clients need).
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Default byte budget of one connection's unanswered requests and unsent
/// replies (`--max-reply-bytes`).
pub const DEFAULT_MAX_REPLY_BYTES: usize = 4 << 20;
/// The write buffer is not kept past this capacity once it is empty (a
/// kept buffer counts against the connection's budget: it is memory).
const KEPT_BUFFER_BYTES: usize = 64 << 10;

/// What one protocol supplies: its decoder, its command mapping and its
/// reply encoding. Requests that change only the connection (AUTH, HELLO,
/// PING ...) are answered by [`Protocol::accept`]; the rest become `Op`s,
/// run by [`Protocol::execute`] when [`order`] allows.
pub trait Protocol: Sized + Unpin + 'static {
    /// Splits the byte stream into requests.
    type Decoder: Decoder<Error = std::io::Error> + UnfinishedBytes + Unpin + 'static;
    /// What a reply's encoding needs from its request (an id, the
    /// protocol version the connection spoke then); kept in its slot.
    type Tag: Copy + Unpin + 'static;
    /// A request for the engine.
    type Op: Unpin + 'static;
    /// One reply.
    type Reply: Clone + Unpin + 'static;

    /// Answers a request or turns it into an engine request.
    fn accept(&mut self, request: <Self::Decoder as Decoder>::Item) -> Accepted<Self>;
    /// How `op` relates to the other requests on the connection.
    fn access(op: &Self::Op) -> Access;
    /// What `op` reads or writes: a read waits only for earlier writes
    /// whose footprint overlaps its own. `All` unless told otherwise.
    fn footprint(_op: &Self::Op) -> Footprint {
        Footprint::All
    }
    /// Which of the listener's counted commands `op` is (an index into
    /// the names its [`RequestStats`] was made with).
    fn command_index(op: &Self::Op) -> usize;
    /// Calls the engine (eagerly: a write is enqueued before this returns).
    fn execute(&self, op: Self::Op) -> LocalBoxFuture<'static, Self::Reply>;
    /// `op` as a put (a [`Mutation`] with a value) that may share one
    /// engine write with the puts sent next to it on the connection
    /// ([`Connection`]'s `puts`), or `op` back. Only a put the engine will
    /// take (its key and value within the limits) and whose reply is the
    /// same whatever its neighbours.
    fn gatherable_put(&self, op: Self::Op) -> Result<Mutation, Self::Op> {
        Err(op)
    }
    /// A hint: `requests` (decoded, in order) are the next ones the
    /// connection will take. The protocol may prefetch what their reads
    /// will touch ([`crate::Db::prefetch_gets`]), so that their memory
    /// loads overlap; it must change nothing a request can observe.
    fn prefetch(&self, _requests: &mut dyn Iterator<Item = &<Self::Decoder as Decoder>::Item>) {}
    /// As [`Protocol::prefetch`], called instead of it when nothing the
    /// connection sent before `requests` is unanswered or held: the plain
    /// gets at their front may be answered now, a moment each of them may
    /// observe (every write sent before them is answered, none sent after
    /// them has run). Appends those replies to `replies` in order, each
    /// with the key it read ([`Protocol::early_key`]), holding values of at
    /// most [`EARLY_VALUE_BYTES`]; see [`EarlyReplies`].
    fn answer_early(
        &self,
        requests: &mut dyn Iterator<Item = &<Self::Decoder as Decoder>::Item>,
        _replies: &mut VecDeque<(Bytes, Self::Reply)>,
    ) {
        self.prefetch(requests);
    }
    /// The key `op` reads if it is a plain get, whose reply
    /// [`Protocol::answer_early`] may have made.
    fn early_key(_op: &Self::Op) -> Option<&[u8]> {
        None
    }
    /// Writes `batch`, the puts [`Protocol::gatherable_put`] gave, as one engine
    /// write; the reply is every one of those puts' reply.
    fn write_puts(&self, batch: WriteBatch) -> LocalBoxFuture<'static, Self::Reply>;
    /// The engine answered the request tagged `tag` with `reply`, `elapsed`
    /// after it was called (the pipeline's own clock reads, shared so that
    /// a protocol's statistics need none of their own).
    fn answered(&self, _tag: Self::Tag, _reply: &Self::Reply, _elapsed: Duration) {}
    /// Appends the bytes of `reply` to the request tagged `tag` to `out`.
    ///
    /// # Errors
    /// The reply cannot be encoded; the connection is closed.
    fn encode(
        &mut self,
        tag: Self::Tag,
        reply: Self::Reply,
        out: &mut BytesMut,
    ) -> std::io::Result<()>;
    /// The reply to send before closing after the decoder failed, if any.
    fn read_error(&mut self, error: &std::io::Error) -> Option<(Self::Tag, Self::Reply)>;
    /// True while the protocol cannot take the next request yet: its
    /// meaning depends on the reply to one in flight (an EXEC that may or
    /// may not change the connection's state). Reading resumes once a
    /// reply is in and this is false.
    fn holds_reading(&self) -> bool {
        false
    }
    /// True once the client may use the server fully.
    fn authenticated(&self) -> bool;
    /// Raises the decoder's limits from the pre-authentication ones.
    fn raise_limits(&self, decoder: &mut Self::Decoder);
    /// Lowers the decoder's limits back to the pre-authentication ones (a
    /// wrong token after a right one closed the gate again).
    fn lower_limits(&self, decoder: &mut Self::Decoder);
    /// True if `request` may change whether the connection is
    /// authenticated (an `Auth`): the requests after it are decoded only
    /// once it is taken, under the limits it leaves.
    fn may_change_authentication(_request: &<Self::Decoder as Decoder>::Item) -> bool {
        false
    }
}

/// Replies [`Protocol::answer_early`] keeps hold values of at most this
/// many bytes (a pass's worth of them is held outside the byte budget).
pub const EARLY_VALUE_BYTES: usize = 4 << 10;

/// Replies to gets made before their turn ([`Protocol::answer_early`]),
/// each with the key it read, in request order. A get dispatched later
/// takes the one for its key; any write or read-modify-write dispatched on
/// the connection drops them all first (the only writes they could have
/// missed are the connection's own: another connection's may land at any
/// time before the reply). A request answered without the engine leaves
/// its reply behind, dropped when a later get takes one after it.
///
/// The read that made them is timed once; each reply is recorded as having
/// taken an equal share of it, so that a get answered from here reads no
/// clock of its own.
struct EarlyReplies<R> {
    replies: VecDeque<(Bytes, R)>,
    /// The time of the read that made `replies`, divided among them.
    each: Duration,
}

impl<R> EarlyReplies<R> {
    fn new() -> Self {
        EarlyReplies {
            replies: VecDeque::new(),
            each: Duration::ZERO,
        }
    }

    fn clear(&mut self) {
        self.replies.clear();
    }

    /// Replaces the replies with those `read` appends, timing it.
    fn read(&mut self, read: impl FnOnce(&mut VecDeque<(Bytes, R)>)) {
        self.replies.clear();
        let started = Instant::now();
        read(&mut self.replies);
        let made = u32::try_from(self.replies.len()).unwrap_or(u32::MAX).max(1);
        self.each = started.elapsed() / made;
    }

    /// The reply kept for a get of `key`, dropping those before it.
    fn take(&mut self, key: &[u8]) -> Option<R> {
        let at = self.replies.iter().position(|(k, _)| k == key)?;
        self.replies.drain(..at);
        self.replies.pop_front().map(|(_, reply)| reply)
    }
}

/// Puts gathered into one engine write stop at this many bytes of keys and
/// values (well below a WAL record's limit).
const MAX_GATHERED_PUT_BYTES: usize = 256 << 10;

/// Consecutive puts admitted during one pass of the reader, not yet sent
/// to the engine: sent as one write when the pass ends, before any other
/// request is dispatched, or when they reach [`MAX_GATHERED_PUT_BYTES`].
#[derive(Default)]
struct GatheredPuts {
    /// The puts' request numbers and command indexes, in order.
    seqs: Vec<(u64, usize)>,
    batch: WriteBatch,
    bytes: usize,
}

/// An engine call's answer, with what its request's slot needs.
enum EngineAnswer<R> {
    /// Request `seq`, command `command`, called at `started`.
    One {
        seq: u64,
        command: usize,
        started: Instant,
        reply: R,
    },
    /// Gathered puts, written as one batch at `started`.
    Puts {
        seqs: Vec<(u64, usize)>,
        started: Instant,
        reply: R,
    },
}

/// What [`Protocol::accept`] decided.
pub enum Accepted<P: Protocol> {
    /// Answer this at once.
    Answer(P::Tag, P::Reply),
    /// Answer this, then read no more and close once every reply is out.
    AnswerAndClose(P::Tag, P::Reply),
    /// Run this in the engine.
    Engine(P::Tag, P::Op),
    /// Nothing to answer: a keepalive that only ended a frame (RESP's
    /// blank line or `*0`, which Redis ignores).
    Ignore,
}

/// How connections run; one per listener, cloned into each connection.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Requests in flight before reading stops.
    pub max_in_flight: usize,
    /// The byte budget of unanswered requests and unsent replies.
    pub max_reply_bytes: usize,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
    /// A request still incomplete this long after its first byte closes
    /// the connection.
    pub frame_timeout: Duration,
    /// A connection not authenticated this long after it opened is closed.
    pub auth_timeout: Duration,
    /// Turns true when the server shuts down: connections stop reading.
    pub shutdown: watch::Receiver<bool>,
    /// The listener's connection count and per-command latencies.
    pub request_stats: Arc<RequestStats>,
    /// What all connections of the server hold together, and its cap.
    pub server_budget: Arc<ServerReplyBudget>,
}

/// One reply position, in request order.
enum Slot<Tag> {
    /// Not answered yet; its request holds this many bytes.
    Waiting { request_bytes: usize, tag: Tag },
    /// Answered (behind an earlier unanswered one): the encoded reply.
    Encoded(BytesMut),
}

/// The actor serving one connection in protocol `P`.
pub struct Connection<P: Protocol> {
    protocol: P,
    /// Replies not yet sent to the writer; `slots[0]` has sequence number
    /// `first_seq`.
    slots: VecDeque<Slot<P::Tag>>,
    first_seq: u64,
    next_seq: u64,
    /// Unanswered and held engine requests.
    order: Order<P::Op>,
    /// Encoded replies, in order, for the writer to take.
    outbox: BytesMut,
    /// The outbox's capacity, as last charged to `reply_bytes` and
    /// `queued_bytes` (its allocation, not its length: a buffer grows by
    /// doubling, and what it holds is what the process holds).
    outbox_charge: usize,
    /// Memory holding encoded replies the socket has not taken: their
    /// bytes in slots, the outbox's capacity, and the buffer the writer is
    /// writing from, charged as it was taken and released only once all of
    /// it is written (a half-written buffer is still allocated).
    reply_bytes: usize,
    /// The part of `reply_bytes` handed to the writer (the outbox and the
    /// buffer being written): these drain as the client reads, whatever
    /// else the connection waits for.
    queued_bytes: usize,
    /// Bytes of requests not yet answered.
    request_bytes: usize,
    /// A read the engine did not answer at once (it went to the disk).
    waiting_read: Option<u64>,
    /// Engine calls not answered at once, polled by the socket's item.
    awaited: Vec<LocalBoxFuture<'static, EngineAnswer<P::Reply>>>,
    /// A future was added to `awaited` since the socket's item last polled
    /// them.
    unpolled_answers: bool,
    /// The socket's item is being polled: the writer and the awaited
    /// answers will be polled before it returns, so neither needs a wake.
    socket_polling: bool,
    /// The parked reader may read again: the socket's item, being polled,
    /// polls it again instead of waking the actor.
    reader_due: bool,
    /// The actor's task, as last polled (to wake it for an engine call
    /// made outside the socket's item).
    task: Option<Waker>,
    /// Times the socket's item was polled (the actor woke for its socket,
    /// an engine's answer or a writable socket); added to `stats` when the
    /// connection ends.
    wakeups: u64,
    /// Puts waiting to be written together ([`GatheredPuts`]).
    puts: GatheredPuts,
    /// Gets answered before their turn ([`EarlyReplies`]).
    early: EarlyReplies<P::Reply>,
    /// The reader is taking requests: gathered puts wait for its pass to
    /// end (`end_pass`).
    in_pass: bool,
    /// In a pass, the clock's last reading: when the request answered last
    /// was answered. The next request's time is counted from it, so that a
    /// request answered at once costs one clock read, not two. (The pass's
    /// first request reads the clock before it too: a pass that finds no
    /// request reads none.)
    pass_clock: Option<Instant>,
    max_in_flight: usize,
    max_reply_bytes: usize,
    /// No more requests will be read (EOF, error, QUIT, shutdown).
    reading_done: bool,
    /// Woken when the budget lets the socket be read again.
    reader: Option<Waker>,
    /// Woken when there is something to write, or to close.
    writer: Option<Waker>,
    /// The server-wide budget, and this connection's share of it as last
    /// reported (`request_bytes + reply_bytes` then, in whole granules).
    server_budget: Arc<ServerReplyBudget>,
    charged: usize,
    /// What the request being received may hold, granted from the
    /// server-wide budget (part of `charged`); 0 while it holds no more
    /// than [`budget::UNCHARGED_PARTIAL_BYTES`].
    partial_bytes: usize,
    /// The request being received was refused more bytes: the reader waits
    /// for the server-wide budget.
    partial_waiting: bool,
    /// A look at the server-wide budget is scheduled.
    recheck_armed: bool,
    /// Counts this connection against the server's limit while it lives.
    _guard: ConnectionGuard,
    /// Where its requests' latencies and its own life are counted.
    stats: Arc<RequestStats>,
}

impl<P: Protocol> Actor for Connection<P> {
    type Context = Context<Self>;
}

/// Starts a connection actor for `stream` on the current arbiter.
pub(crate) fn start<P: Protocol>(
    stream: TcpStream,
    protocol: P,
    decoder: P::Decoder,
    config: &PipelineConfig,
    guard: ConnectionGuard,
) {
    let (read, write) = stream.into_split();
    let reader = io::Reader::<P>::new(read, decoder, config);
    let writer = io::Writer::new(write, config.idle_timeout);
    let socket = io::Socket::new(reader, writer);
    let auth_timeout = config.auth_timeout;
    let stats = config.request_stats.clone();
    stats.connection(true);
    Connection::create(move |ctx| {
        ctx.spawn(socket);
        if !protocol.authenticated() {
            ctx.run_later(auth_timeout, |connection, ctx| {
                if !connection.protocol.authenticated() {
                    log::debug!("closing a connection that did not authenticate in time");
                    ctx.stop();
                }
            });
        }
        Connection {
            protocol,
            slots: VecDeque::new(),
            first_seq: 0,
            next_seq: 0,
            order: Order::default(),
            outbox: BytesMut::new(),
            outbox_charge: 0,
            reply_bytes: 0,
            queued_bytes: 0,
            request_bytes: 0,
            waiting_read: None,
            awaited: Vec::new(),
            unpolled_answers: false,
            socket_polling: false,
            reader_due: false,
            task: None,
            wakeups: 0,
            puts: GatheredPuts::default(),
            early: EarlyReplies::new(),
            in_pass: false,
            pass_clock: None,
            max_in_flight: config.max_in_flight.max(1),
            max_reply_bytes: config.max_reply_bytes.max(1),
            reading_done: false,
            reader: None,
            writer: None,
            server_budget: config.server_budget.clone(),
            charged: 0,
            partial_bytes: 0,
            partial_waiting: false,
            recheck_armed: false,
            _guard: guard,
            stats,
        }
    });
}

impl<P: Protocol> Drop for Connection<P> {
    fn drop(&mut self) {
        self.server_budget.settle(self.charged, 0);
        self.stats.add_wakeups(self.wakeups);
        self.stats.connection(false);
    }
}

impl<P: Protocol> Connection<P> {
    /// The byte budget now: small until the client has authenticated.
    fn budget(&self) -> usize {
        if self.protocol.authenticated() {
            self.max_reply_bytes
        } else {
            self.max_reply_bytes.min(PRE_AUTH_MAX_BYTES)
        }
    }

    /// Bytes this connection holds: its share of the server's budget.
    fn held_bytes(&self) -> usize {
        self.request_bytes + self.reply_bytes
    }

    /// True if the socket may be read for one more request.
    fn may_read(&self) -> bool {
        !self.reading_done
            && !self.protocol.holds_reading()
            && self.slots.len() < self.max_in_flight
            && self.held_bytes() < self.budget()
            && !self.server_full(self.held_bytes())
    }

    /// True if reads must wait: replies handed to the writer fill the
    /// budget (the connection's, or the server's with everyone else's
    /// bytes), or a read that went to the disk is still in flight.
    /// (Replies kept in slots behind a held read do not count here: they
    /// cannot drain before it, so waiting for them would never end.)
    fn reads_blocked(&self) -> bool {
        self.waiting_read.is_some()
            || self.queued_bytes >= self.budget()
            || self.server_full(self.queued_bytes)
    }

    /// True if the other connections' bytes and `own` reach the server's cap.
    fn server_full(&self, own: usize) -> bool {
        self.server_budget.full_with(self.charged, own)
    }

    /// Reports this connection's bytes to the server's budget; if the
    /// server's cap is what keeps it from reading or from starting a held
    /// read, looks again shortly (nothing else would wake it).
    fn settle_server_budget(&mut self, ctx: &mut Context<Self>) {
        let held = self.held_bytes();
        let share = budget::granules(held + self.partial_bytes);
        if share != self.charged {
            self.server_budget.settle(self.charged, share);
            self.charged = share;
        }
        let blocked = self.reader.is_some() && (self.server_full(held) || self.partial_waiting)
            || self.order.holds_any() && self.server_full(self.queued_bytes);
        if blocked && !self.recheck_armed {
            self.recheck_armed = true;
            ctx.run_later(budget::RECHECK_INTERVAL, |connection, ctx| {
                connection.recheck_armed = false;
                // A request refused more bytes asks again now.
                connection.partial_waiting = false;
                connection.pump(ctx);
            });
        }
    }

    /// Lets the request being received hold `bytes`, if the server-wide
    /// budget grants them (else the reader waits: `partial_waiting`).
    fn grant_partial(&mut self, bytes: usize) -> bool {
        let share = budget::granules(self.held_bytes() + bytes);
        let granted = self.server_budget.try_reserve(self.charged, share);
        if granted {
            self.charged = share;
            self.partial_bytes = bytes;
        }
        self.partial_waiting = !granted;
        granted
    }

    /// The request being received is complete: what it was granted goes
    /// back at the next settling (with the request's own bytes charged).
    fn release_partial(&mut self) {
        self.partial_bytes = 0;
        self.partial_waiting = false;
    }

    /// Takes one decoded request of `bytes` wire bytes.
    fn on_request(
        &mut self,
        bytes: usize,
        request: <P::Decoder as Decoder>::Item,
        ctx: &mut Context<Self>,
    ) {
        crate::server::workers::count_request();
        match self.protocol.accept(request) {
            Accepted::Answer(tag, reply) => self.answer_at_once(tag, reply, ctx),
            Accepted::AnswerAndClose(tag, reply) => {
                self.reading_done = true;
                self.answer_at_once(tag, reply, ctx);
            }
            Accepted::Ignore => {}
            Accepted::Engine(tag, op) => {
                let seq = self.push_slot(bytes, tag);
                let (access, footprint) = (P::access(&op), P::footprint(&op));
                let blocked = self.reads_blocked();
                if let Some(op) = self.order.admit(seq, access, footprint, op, blocked) {
                    self.dispatch(seq, access, op, ctx);
                }
                self.pump(ctx);
            }
        }
    }

    fn answer_at_once(&mut self, tag: P::Tag, reply: P::Reply, ctx: &mut Context<Self>) {
        let seq = self.push_slot(0, tag);
        self.fill(seq, reply, None, ctx);
        self.pump(ctx);
    }

    /// The decoder failed: answer what the protocol says, read no more.
    fn on_read_error(&mut self, error: &std::io::Error, ctx: &mut Context<Self>) {
        self.reading_done = true;
        match self.protocol.read_error(error) {
            Some((tag, reply)) => self.answer_at_once(tag, reply, ctx),
            None => self.pump(ctx),
        }
    }

    /// The socket gave its last request: answer what is in flight, close.
    fn on_end_of_requests(&mut self, ctx: &mut Context<Self>) {
        self.reading_done = true;
        self.pump(ctx);
    }

    /// The writer is done with a buffer it took charged `bytes` (all of it
    /// written).
    fn on_written(&mut self, bytes: usize, ctx: &mut Context<Self>) {
        self.reply_bytes = self.reply_bytes.saturating_sub(bytes);
        self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
        self.pump(ctx);
    }

    fn push_slot(&mut self, request_bytes: usize, tag: P::Tag) -> u64 {
        self.slots.push_back(Slot::Waiting { request_bytes, tag });
        self.request_bytes += request_bytes;
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Calls the engine for request `seq`; an answer ready at once (a value
    /// in memory, a cached block) is taken without a task.
    fn dispatch(&mut self, seq: u64, access: Access, op: P::Op, ctx: &mut Context<Self>) {
        let command = P::command_index(&op);
        if access != Access::Read {
            self.early.clear();
        }
        let op = match self.protocol.gatherable_put(op) {
            Ok(put) => return self.gather_put(seq, command, put, ctx),
            Err(op) => op,
        };
        self.write_gathered_puts(ctx);
        if let Some(reply) = P::early_key(&op).and_then(|key| self.early.take(key)) {
            let elapsed = self.early.each;
            return self.record_answer(seq, command, reply, elapsed, ctx);
        }
        let started = self.pass_clock.unwrap_or_else(Instant::now);
        let mut reply = self.protocol.execute(op);
        if let Some(reply) = (&mut reply).now_or_never() {
            return self.answer_now(seq, command, reply, started, ctx);
        }
        if access != Access::Write {
            self.waiting_read = Some(seq);
        }
        self.await_answer(Box::pin(reply.map(move |reply| EngineAnswer::One {
            seq,
            command,
            started,
            reply,
        })));
    }

    /// Keeps an engine call's future to be polled by the socket's item;
    /// wakes the actor if that item is not being polled now.
    fn await_answer(&mut self, answer: LocalBoxFuture<'static, EngineAnswer<P::Reply>>) {
        self.awaited.push(answer);
        self.unpolled_answers = true;
        if !self.socket_polling
            && let Some(task) = &self.task
        {
            task.wake_by_ref();
        }
    }

    /// Takes the engine's answers that have come (their futures are polled
    /// here, in the socket's item: an answer wakes the actor once, and the
    /// writer, polled next, sends its reply in the same poll).
    fn take_engine_answers(&mut self, ctx: &mut Context<Self>, task: &mut std::task::Context<'_>) {
        self.unpolled_answers = false;
        let mut next = 0;
        while next < self.awaited.len() {
            let std::task::Poll::Ready(answer) = self.awaited[next].as_mut().poll(task) else {
                next += 1;
                continue;
            };
            drop(self.awaited.swap_remove(next));
            match answer {
                EngineAnswer::One {
                    seq,
                    command,
                    started,
                    reply,
                } => {
                    let elapsed = started.elapsed();
                    self.stats.record(command, elapsed);
                    if self.waiting_read == Some(seq) {
                        self.waiting_read = None;
                    }
                    self.order.answered(seq);
                    self.fill(seq, reply, Some(elapsed), ctx);
                }
                EngineAnswer::Puts {
                    seqs,
                    started,
                    reply,
                } => self.answer_puts(&seqs, &reply, started, ctx),
            }
            self.pump(ctx);
        }
    }

    /// Records request `seq`'s reply, ready when it was dispatched.
    fn answer_now(
        &mut self,
        seq: u64,
        command: usize,
        reply: P::Reply,
        started: Instant,
        ctx: &mut Context<Self>,
    ) {
        let elapsed = self.elapsed_since(started);
        self.record_answer(seq, command, reply, elapsed, ctx);
    }

    /// Records request `seq`'s reply, which took `elapsed`.
    fn record_answer(
        &mut self,
        seq: u64,
        command: usize,
        reply: P::Reply,
        elapsed: Duration,
        ctx: &mut Context<Self>,
    ) {
        self.stats.record(command, elapsed);
        self.order.answered(seq);
        self.fill(seq, reply, Some(elapsed), ctx);
    }

    /// The time since `started`, a request's answer; in a pass, the next
    /// request's time starts now (after this one, not before).
    fn elapsed_since(&mut self, started: Instant) -> Duration {
        let now = Instant::now();
        if self.in_pass {
            self.pass_clock = Some(now);
        }
        now.saturating_duration_since(started)
    }

    /// True if nothing the connection sent is unanswered but reads: a
    /// request decoded now may observe the database as it is now
    /// ([`Protocol::answer_early`]).
    fn settled(&self) -> bool {
        self.order.settled() && self.puts.seqs.is_empty()
    }

    /// Keeps put `seq` to be written with its neighbours.
    fn gather_put(&mut self, seq: u64, command: usize, put: Mutation, ctx: &mut Context<Self>) {
        let puts = &mut self.puts;
        puts.bytes += put.key.len() + put.value.as_ref().map_or(0, Bytes::len);
        puts.batch.mutations.push(put);
        puts.seqs.push((seq, command));
        if !self.in_pass || puts.bytes >= MAX_GATHERED_PUT_BYTES {
            self.write_gathered_puts(ctx);
        }
    }

    /// Sends the gathered puts to the engine as one write; each gets the
    /// write's reply.
    fn write_gathered_puts(&mut self, ctx: &mut Context<Self>) {
        if self.puts.seqs.is_empty() {
            return;
        }
        let GatheredPuts { seqs, batch, .. } = std::mem::take(&mut self.puts);
        let started = Instant::now();
        let mut reply = self.protocol.write_puts(batch);
        if let Some(reply) = (&mut reply).now_or_never() {
            return self.answer_puts(&seqs, &reply, started, ctx);
        }
        self.await_answer(Box::pin(reply.map(move |reply| EngineAnswer::Puts {
            seqs,
            started,
            reply,
        })));
    }

    fn answer_puts(
        &mut self,
        puts: &[(u64, usize)],
        reply: &P::Reply,
        started: Instant,
        ctx: &mut Context<Self>,
    ) {
        let elapsed = self.elapsed_since(started);
        for &(seq, command) in puts {
            self.stats.record(command, elapsed);
            self.order.answered(seq);
            self.fill(seq, reply.clone(), Some(elapsed), ctx);
        }
    }

    /// The reader starts a pass over what the socket has.
    fn begin_pass(&mut self) {
        self.in_pass = true;
        self.pass_clock = None;
    }

    /// The reader's pass over what the socket had is over: the puts it
    /// gathered go to the engine.
    fn end_pass(&mut self, ctx: &mut Context<Self>) {
        self.in_pass = false;
        self.pass_clock = None;
        self.write_gathered_puts(ctx);
        self.pump(ctx);
    }

    /// Records the reply to request `seq` (an engine's, answered `elapsed`
    /// after it was called): encoded straight for the writer if every
    /// earlier reply has gone, else kept in its slot.
    fn fill(
        &mut self,
        seq: u64,
        reply: P::Reply,
        elapsed: Option<Duration>,
        ctx: &mut Context<Self>,
    ) {
        let Some(index) = seq.checked_sub(self.first_seq).map(|i| i as usize) else {
            return;
        };
        let Some(&Slot::Waiting { request_bytes, tag }) = self.slots.get(index) else {
            return;
        };
        if let Some(elapsed) = elapsed {
            self.protocol.answered(tag, &reply, elapsed);
        }
        self.request_bytes -= request_bytes;
        let encoded = if index == 0 {
            self.slots.pop_front();
            self.first_seq += 1;
            let encoded = self.protocol.encode(tag, reply, &mut self.outbox);
            self.recharge_outbox();
            encoded
        } else {
            let mut own = BytesMut::new();
            let encoded = self.protocol.encode(tag, reply, &mut own);
            self.reply_bytes += own.len();
            if let Some(slot) = self.slots.get_mut(index) {
                *slot = Slot::Encoded(own);
            }
            encoded
        };
        if let Err(e) = encoded {
            log::warn!("closing a connection: a reply cannot be encoded: {e}");
            ctx.stop();
        }
    }

    /// Dispatches every held request now allowed, moves replies now in
    /// order to the writer, and wakes the reader and the writer as needed.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        while let Some((seq, op)) = self.order.next_ready(self.reads_blocked()) {
            let access = P::access(&op);
            self.dispatch(seq, access, op, ctx);
        }
        while let Some(Slot::Encoded(_)) = self.slots.front() {
            if let Some(Slot::Encoded(reply)) = self.slots.pop_front() {
                self.outbox.extend_from_slice(&reply);
                self.reply_bytes = self.reply_bytes.saturating_sub(reply.len());
                self.recharge_outbox();
            }
            self.first_seq += 1;
        }
        if (!self.outbox.is_empty() || self.closing())
            && !self.socket_polling
            && let Some(writer) = self.writer.take()
        {
            writer.wake();
        }
        // A reader refused more bytes for its request waits for the
        // recheck: woken by every pump, it would ask again and park again
        // at once, and spin its worker.
        if self.may_read()
            && !self.partial_waiting
            && let Some(reader) = self.reader.take()
        {
            match self.socket_polling {
                true => self.reader_due = true,
                false => reader.wake(),
            }
        }
        self.settle_server_budget(ctx);
    }

    /// The reader found it may not read: keeps its waker and, if the
    /// server's cap is the reason, schedules a look.
    fn park_reader(&mut self, waker: Waker, ctx: &mut Context<Self>) {
        self.reader = Some(waker);
        self.settle_server_budget(ctx);
    }

    /// True once nothing more will be written: the writer then closes.
    fn closing(&self) -> bool {
        self.reading_done && self.slots.is_empty()
    }

    /// Hands the writer the encoded replies and what they were charged
    /// (the writer gives that back through `on_written` once it has written
    /// them all), keeping `spare`'s buffer as the next outbox.
    fn take_outbox(&mut self, mut spare: BytesMut) -> (BytesMut, usize) {
        spare.clear();
        if spare.capacity() > KEPT_BUFFER_BYTES {
            spare = BytesMut::new();
        }
        let charge = std::mem::take(&mut self.outbox_charge);
        let taken = std::mem::replace(&mut self.outbox, spare);
        self.recharge_outbox();
        (taken, charge)
    }

    /// Charges the outbox's capacity change since it was last charged. An
    /// empty outbox is charged nothing: the writer does not take it, so a
    /// charge on it would never drain (a kept buffer is at most
    /// [`KEPT_BUFFER_BYTES`] per connection).
    fn recharge_outbox(&mut self) {
        let now = if self.outbox.is_empty() {
            0
        } else {
            self.outbox.capacity()
        };
        let was = std::mem::replace(&mut self.outbox_charge, now);
        if now >= was {
            self.reply_bytes += now - was;
            self.queued_bytes += now - was;
        } else {
            self.reply_bytes = self.reply_bytes.saturating_sub(was - now);
            self.queued_bytes = self.queued_bytes.saturating_sub(was - now);
        }
    }
}
