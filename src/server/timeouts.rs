//! Read deadlines for a connection, for any protocol: [`TimedRead`] wraps
//! the socket's read half and fails a read with `TimedOut` when the client
//! sends nothing for the idle timeout, or leaves a request half-sent for the
//! frame timeout.
//!
//! Whether a request is in progress is told by the decoder, through
//! [`Tracked`]: it wraps the protocol's decoder, counts the bytes each
//! request took off the wire (the session's memory accounting uses that
//! too), and records in a shared [`RequestProgress`] whether bytes of an
//! unfinished request have been taken or are buffered, and since when. A
//! deadline only runs while the server is waiting for bytes: when the
//! session stops reading (its budget is full) the clock is not held against
//! the client.
//!
//! The same progress carries the bytes an unfinished request holds (the
//! read buffer, and what the decoder took from it: [`UnfinishedBytes`]) and
//! how many it may hold ([`RequestProgress::allow`]): [`TimedRead`] reads no
//! byte past that and marks the progress *starved*, so the reader asks the
//! server-wide budget for more (see `pipeline::io`). A starved read waits
//! like one the client is slow to fill: the frame timeout runs.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf, Take};
use tokio::time::{Instant, Sleep};
use tokio_util::codec::Decoder;

/// Where the byte stream stands, shared by the decoder and the reader.
#[derive(Debug)]
pub struct RequestProgress {
    /// Bytes of a request not yet complete have arrived.
    midway: Cell<bool>,
    /// A request began since `started` was last taken: the reader takes the
    /// time when it next waits for bytes (one clock read per wait, not one
    /// per request; the frame clock starts at most one wait late).
    began: Cell<bool>,
    /// When the request in progress began.
    started: Cell<Instant>,
    /// Bytes the unfinished request holds, as of the decoder's last look.
    held: Cell<usize>,
    /// Most bytes the unfinished request may hold before the reader must
    /// ask for more.
    allowed: Cell<usize>,
    /// A read was refused because `held` reached `allowed`.
    starved: Cell<bool>,
}

impl Default for RequestProgress {
    fn default() -> Self {
        RequestProgress {
            midway: Cell::new(false),
            began: Cell::new(false),
            started: Cell::new(Instant::now()),
            held: Cell::new(0),
            allowed: Cell::new(usize::MAX),
            starved: Cell::new(false),
        }
    }
}

impl RequestProgress {
    /// Since when a request has been in progress, if one is; `now` is the
    /// start of a request that began since the last call.
    pub fn midway_since(&self, now: Instant) -> Option<Instant> {
        if self.began.replace(false) {
            self.started.set(now);
        }
        self.midway.get().then(|| self.started.get())
    }

    /// Bytes the unfinished request holds (the read buffer included).
    pub fn held(&self) -> usize {
        self.held.get()
    }

    /// Lets the unfinished request hold up to `bytes` before reads stop.
    pub fn allow(&self, bytes: usize) {
        self.allowed.set(bytes);
    }

    /// True (once) if a read was refused since the last call: the request
    /// holds all it was allowed.
    pub fn take_starved(&self) -> bool {
        self.starved.replace(false)
    }

    /// Bytes that may still be read; 0 marks the progress starved.
    fn room(&self) -> usize {
        let room = self.allowed.get().saturating_sub(self.held.get());
        if room == 0 {
            self.starved.set(true);
        }
        room
    }
}

/// A decoder that may keep bytes of an unfinished request outside the read
/// buffer (the finished arguments of a RESP request): they are memory the
/// request holds too.
pub trait UnfinishedBytes {
    /// Bytes of the request in progress held outside the read buffer.
    fn held_outside_buffer(&self) -> usize {
        0
    }
}

/// A decoder that reports progress and sizes: yields each request with the
/// number of bytes it took off the wire.
#[derive(Debug)]
pub struct Tracked<D> {
    inner: D,
    progress: Rc<RequestProgress>,
    /// Bytes taken from the buffer since the last request was yielded.
    taken: usize,
}

impl<D> Tracked<D> {
    /// `inner`, reporting into `progress`.
    pub fn new(inner: D, progress: Rc<RequestProgress>) -> Self {
        Tracked {
            inner,
            progress,
            taken: 0,
        }
    }

    /// The protocol's decoder (to change its limits).
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }
}

impl<D: Decoder + UnfinishedBytes> Decoder for Tracked<D> {
    type Item = (usize, D::Item);
    type Error = D::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, D::Error> {
        let before = src.len();
        let was_midway = self.progress.midway.get();
        let decoded = self.inner.decode(src)?;
        self.taken += before - src.len();
        let midway = self.taken > 0 && decoded.is_none() || !src.is_empty();
        if midway && (!was_midway || decoded.is_some()) {
            self.progress.began.set(true);
        }
        self.progress.midway.set(midway);
        let held = src.len() + self.inner.held_outside_buffer();
        self.progress.held.set(held);
        Ok(decoded.map(|item| (std::mem::take(&mut self.taken), item)))
    }
}

/// A read half with idle and frame deadlines, that reads no more than the
/// unfinished request may hold ([`RequestProgress::allow`]).
pub struct TimedRead<R> {
    /// Limited, at each read, to the bytes the request may still take.
    inner: Take<R>,
    idle_timeout: Duration,
    frame_timeout: Duration,
    progress: Rc<RequestProgress>,
    /// The deadline, reused from wait to wait (no allocation per wait).
    timer: Pin<Box<Sleep>>,
    /// `timer` is set for the current wait for bytes.
    armed: bool,
}

impl<R: AsyncRead> TimedRead<R> {
    /// `inner` with the given deadlines; `progress` is the decoder's.
    pub fn new(
        inner: R,
        idle_timeout: Duration,
        frame_timeout: Duration,
        progress: Rc<RequestProgress>,
    ) -> Self {
        TimedRead {
            inner: inner.take(u64::MAX),
            idle_timeout,
            frame_timeout,
            progress,
            timer: Box::pin(tokio::time::sleep(idle_timeout)),
            armed: false,
        }
    }

    /// When a wait for bytes that starts `now` must end.
    fn deadline(&self, now: Instant) -> Instant {
        let idle = now + self.idle_timeout;
        match self.progress.midway_since(now) {
            None => idle,
            Some(started) => idle.min(started + self.frame_timeout),
        }
    }

    /// Waits for the deadline (the socket, or the budget, has no bytes
    /// for us); `Ready` with `TimedOut` once it has passed.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.armed {
            let deadline = self.deadline(Instant::now());
            self.timer.as_mut().reset(deadline);
            self.armed = true;
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(self.timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn timed_out(&self) -> io::Error {
        let what = match self.progress.midway_since(Instant::now()) {
            None => format!("no request for {:?}", self.idle_timeout),
            Some(_) => format!("request not completed in {:?}", self.frame_timeout),
        };
        io::Error::new(io::ErrorKind::TimedOut, what)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for TimedRead<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let room = this.progress.room();
        if room == 0 {
            return this.wait(cx);
        }
        this.inner
            .set_limit(u64::try_from(room).unwrap_or(u64::MAX));
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.armed = false;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.wait(cx),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio_util::codec::LinesCodec;

    impl UnfinishedBytes for LinesCodec {}

    #[test]
    fn tracks_requests_in_progress_and_their_sizes() {
        let progress = Rc::new(RequestProgress::default());
        let mut lines = Tracked::new(LinesCodec::new(), progress.clone());
        let mut buf = BytesMut::from(&b"ab"[..]);
        let now = Instant::now();
        assert_eq!(lines.decode(&mut buf).unwrap(), None);
        assert_eq!(progress.midway_since(now), Some(now));
        buf.extend_from_slice(b"c\nd");
        assert_eq!(lines.decode(&mut buf).unwrap(), Some((4, "abc".into())));
        // The next request has begun: its clock starts at the next wait.
        let later = now + Duration::from_secs(1);
        assert_eq!(progress.midway_since(later), Some(later));
        let much_later = later + Duration::from_secs(1);
        assert_eq!(progress.midway_since(much_later), Some(later));
        buf.extend_from_slice(b"\n");
        assert_eq!(lines.decode(&mut buf).unwrap(), Some((2, "d".into())));
        assert_eq!(lines.decode(&mut buf).unwrap(), None);
        assert_eq!(progress.midway_since(now), None);
    }

    #[tokio::test]
    async fn reads_stop_where_the_request_may_hold_no_more() {
        let progress = Rc::new(RequestProgress::default());
        let mut lines = Tracked::new(LinesCodec::new(), progress.clone());
        let long = Duration::from_secs(60);
        let mut read = TimedRead::new(&b"abcdefgh"[..], long, long, progress.clone());
        progress.allow(3);
        let mut buf = BytesMut::with_capacity(64);
        tokio::io::AsyncReadExt::read_buf(&mut read, &mut buf)
            .await
            .unwrap();
        assert_eq!(&buf[..], b"abc");
        assert_eq!(lines.decode(&mut buf).unwrap(), None);
        assert_eq!(progress.held(), 3);
        // Held what it may: the next read waits and says why.
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut storage = [0u8; 8];
        let mut more = ReadBuf::new(&mut storage);
        assert!(
            Pin::new(&mut read)
                .poll_read(&mut cx, &mut more)
                .is_pending()
        );
        assert!(progress.take_starved());
        assert!(!progress.take_starved());
        progress.allow(5);
        tokio::io::AsyncReadExt::read_buf(&mut read, &mut buf)
            .await
            .unwrap();
        assert_eq!(&buf[..], b"abcde");
    }
}
