//! Read deadlines for a connection: [`TimedRead`] wraps the socket's read
//! half and fails a read with `TimedOut` when the client sends nothing for
//! the idle timeout, or leaves a frame half-sent for the frame timeout.
//!
//! It follows the frame boundaries itself (4-byte length, then the body) so
//! that it knows, byte by byte, whether a frame is in progress. A deadline
//! only runs while the server is waiting for bytes: when the session stops
//! reading (requests in flight at the cap) the clock is not held against
//! the client.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Size of the frame length prefix.
const LENGTH_BYTES: usize = 4;

/// Where the byte stream stands relative to frame boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameState {
    /// Between frames.
    Idle,
    /// `have` bytes of the length prefix seen.
    Header {
        have: usize,
        len: [u8; LENGTH_BYTES],
    },
    /// `left` bytes of the body still to come.
    Body { left: u64 },
}

impl FrameState {
    /// The state after `bytes` more of the stream, and whether a frame
    /// ended within them.
    pub fn advance(mut self, mut bytes: &[u8]) -> (FrameState, bool) {
        let mut ended = false;
        while let Some((&byte, rest)) = bytes.split_first() {
            self = match self {
                FrameState::Idle => FrameState::Header {
                    have: 1,
                    len: [byte, 0, 0, 0],
                },
                FrameState::Header { have, mut len } => {
                    if let Some(slot) = len.get_mut(have) {
                        *slot = byte;
                    }
                    if have + 1 < LENGTH_BYTES {
                        FrameState::Header {
                            have: have + 1,
                            len,
                        }
                    } else {
                        Self::body(u64::from(u32::from_be_bytes(len)))
                    }
                }
                FrameState::Body { left } => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = bytes.get(take..).unwrap_or_default();
                    self = Self::body(left - take as u64);
                    ended |= self == FrameState::Idle;
                    continue;
                }
            };
            ended |= self == FrameState::Idle;
            bytes = rest;
        }
        (self, ended)
    }

    fn body(left: u64) -> FrameState {
        if left == 0 {
            FrameState::Idle
        } else {
            FrameState::Body { left }
        }
    }
}

/// A read half with idle and frame deadlines.
pub struct TimedRead<R> {
    inner: R,
    idle_timeout: Duration,
    frame_timeout: Duration,
    state: FrameState,
    /// When the first byte of the frame in progress arrived.
    frame_started: Instant,
    /// The running deadline; `None` until the reader next waits for bytes.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<R> TimedRead<R> {
    /// `inner` with the given deadlines.
    pub fn new(inner: R, idle_timeout: Duration, frame_timeout: Duration) -> Self {
        TimedRead {
            inner,
            idle_timeout,
            frame_timeout,
            state: FrameState::Idle,
            frame_started: Instant::now(),
            timer: None,
        }
    }

    /// When a wait for bytes that starts `now` must end.
    fn deadline(&self, now: Instant) -> Instant {
        let idle = now + self.idle_timeout;
        match self.state {
            FrameState::Idle => idle,
            _ => idle.min(self.frame_started + self.frame_timeout),
        }
    }

    fn timed_out(&self) -> io::Error {
        let what = match self.state {
            FrameState::Idle => format!("no request for {:?}", self.idle_timeout),
            _ => format!("frame not completed in {:?}", self.frame_timeout),
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
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().get(before..).unwrap_or_default();
                if !read.is_empty() {
                    let was_idle = this.state == FrameState::Idle;
                    let (state, ended) = this.state.advance(read);
                    if was_idle || ended {
                        // This read began the frame now in progress.
                        this.frame_started = Instant::now();
                    }
                    this.state = state;
                    this.timer = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let timer = match &mut this.timer {
                    Some(timer) => timer,
                    None => {
                        let deadline = this.deadline(Instant::now());
                        this.timer
                            .insert(Box::pin(tokio::time::sleep_until(deadline)))
                    }
                };
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(this.timed_out())),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn follows_frame_boundaries() {
        let s = FrameState::Idle;
        let header = FrameState::Header {
            have: 2,
            len: [0, 0, 0, 0],
        };
        assert_eq!(s.advance(&[0, 0]), (header, false));
        assert_eq!(s.advance(&[0, 0, 0, 0]), (FrameState::Idle, true));
        let body = FrameState::Body { left: 2 };
        assert_eq!(s.advance(&[0, 0, 0, 3, 1]), (body, false));
        assert_eq!(s.advance(&[0, 0, 0, 3, 1, 2, 3]), (FrameState::Idle, true));
        let two = [0, 0, 0, 1, 9, 0, 0, 0, 2, 7];
        assert_eq!(s.advance(&two), (FrameState::Body { left: 1 }, true));
        let split = s.advance(&[0, 0, 1]).0.advance(&[0]).0.advance(&[5; 255]);
        assert_eq!(split, (FrameState::Body { left: 1 }, false));
    }
}
