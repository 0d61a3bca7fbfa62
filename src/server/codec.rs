//! The frame codec: each frame is a 4-byte big-endian length followed by that
//! many bytes of one protobuf message. The server decodes `Request`s and
//! encodes `Response`s; the client does the reverse with the same type.

use std::io;
use std::marker::PhantomData;

use bytes::{BufMut, BytesMut};
use prost::Message;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec, LengthDelimitedCodecError};

/// Size of the length prefix.
const LENGTH_BYTES: usize = 4;

/// One decoded frame: a message, or a frame whose bytes are not one.
///
/// An undecodable frame is a normal outcome (the connection goes on), so it
/// is a value, not a decoder error.
#[derive(Debug)]
pub enum Frame<M> {
    /// A well-formed message.
    Message(M),
    /// The frame's bytes are not a valid message.
    Undecodable(prost::DecodeError),
}

/// Decodes frames of `In` (refusing frames over a maximum length) and
/// encodes frames of `Out`.
#[derive(Debug)]
pub struct ProtoCodec<In, Out> {
    /// Splits the byte stream into frames and enforces the maximum length.
    frames: LengthDelimitedCodec,
    _messages: PhantomData<fn(Out) -> In>,
}

impl<In, Out> ProtoCodec<In, Out> {
    /// A codec that refuses incoming frames longer than `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        ProtoCodec {
            frames: LengthDelimitedCodec::builder()
                .length_field_length(LENGTH_BYTES)
                .max_frame_length(max_frame_bytes)
                .new_codec(),
            _messages: PhantomData,
        }
    }
}

impl<In, Out> ProtoCodec<In, Out> {
    /// Changes the longest incoming frame accepted from the next frame on.
    pub fn set_max_frame_bytes(&mut self, max_frame_bytes: usize) {
        self.frames.set_max_frame_length(max_frame_bytes);
    }
}

impl<In, Out> Clone for ProtoCodec<In, Out> {
    fn clone(&self) -> Self {
        ProtoCodec {
            frames: self.frames.clone(),
            _messages: PhantomData,
        }
    }
}

impl<In: Message + Default, Out> Decoder for ProtoCodec<In, Out> {
    type Item = Frame<In>;
    type Error = io::Error;

    /// # Errors
    /// An over-long frame (see [`is_frame_too_large`]); the stream cannot be
    /// resynchronised after it.
    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Frame<In>>> {
        let Some(frame) = self.frames.decode(src)? else {
            return Ok(None);
        };
        Ok(Some(match In::decode(frame.freeze()) {
            Ok(message) => Frame::Message(message),
            Err(e) => Frame::Undecodable(e),
        }))
    }
}

impl<In, Out: Message> Encoder<Out> for ProtoCodec<In, Out> {
    type Error = io::Error;

    /// Outgoing frames are not held to the incoming limit: a reply may carry
    /// a value as large as the engine accepts.
    ///
    /// # Errors
    /// A message longer than a 4-byte length can say.
    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> io::Result<()> {
        let len = item.encoded_len();
        let prefix = u32::try_from(len).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "message longer than 4 GiB")
        })?;
        dst.reserve(LENGTH_BYTES + len);
        dst.put_u32(prefix);
        item.encode(dst).map_err(io::Error::other)
    }
}

/// True if `error` is the decoder refusing a frame over the maximum length.
pub fn is_frame_too_large(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>())
}

/// `message` as one frame, length prefix included.
pub fn encode_frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut frame = Vec::with_capacity(LENGTH_BYTES + body.len());
    // A message built here is far below 4 GiB.
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::proto::{Ping, Request, Response, request::Command};

    #[test]
    fn round_trip_and_partial_frames() {
        let request = Request {
            id: 7,
            command: Some(Command::Ping(Ping {})),
        };
        let frame = encode_frame(&request);
        let mut server = ProtoCodec::<Request, Response>::new(1024);
        let mut buf = BytesMut::from(&frame[..frame.len() - 1]);
        assert!(server.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&frame[frame.len() - 1..]);
        match server.decode(&mut buf).unwrap() {
            Some(Frame::Message(r)) => assert_eq!(r, request),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn garbage_is_a_value_and_long_frames_an_error() {
        let mut server = ProtoCodec::<Request, Response>::new(8);
        let mut buf = BytesMut::from(&[0, 0, 0, 2, 0xff, 0xff][..]);
        assert!(matches!(
            server.decode(&mut buf).unwrap(),
            Some(Frame::Undecodable(_))
        ));
        let mut buf = BytesMut::from(&[0, 0, 0, 9][..]);
        let err = server.decode(&mut buf).unwrap_err();
        assert!(is_frame_too_large(&err));
    }
}
