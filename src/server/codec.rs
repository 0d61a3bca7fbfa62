//! The frame codec: each frame is a 4-byte big-endian length followed by that
//! many bytes of one protobuf message. The server decodes `Request`s and
//! encodes `Response`s; the client does the reverse with the same type.
//!
//! A frame is charged against a connection's limits by its length, so its
//! decoded form must stay near that. Empty mutations take 2 bytes each on
//! the wire and about 90 decoded: a 16 MiB `Batch` of them decoded to
//! almost 1 GB (outside probe). [`Prescreen`] looks at a frame's bytes
//! first, and a `Request` holding more mutations than the engine takes in
//! one batch ([`MAX_BATCH_MUTATIONS`]) is refused undecoded.

use std::io;
use std::marker::PhantomData;

use bytes::{BufMut, BytesMut};
use prost::Message;
use prost::encoding::decode_varint;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec, LengthDelimitedCodecError};

use crate::engine::MAX_BATCH_MUTATIONS;
use crate::proto::{Request, Response};

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
    /// Refused before decoding ([`Prescreen`]): the request `id` (0 if
    /// not found) and why.
    Refused { id: u64, reason: String },
}

/// A look at a frame's bytes before they are decoded into `Self`.
pub trait Prescreen {
    /// `Some((id, reason))` refuses the frame undecoded.
    fn refuse_undecoded(_frame: &[u8]) -> Option<(u64, String)> {
        None
    }
}

impl Prescreen for Response {}

impl Prescreen for Request {
    /// A `Request` whose batch holds more mutations than the engine takes.
    /// Decoding merges every occurrence of the `batch` field, so all count.
    fn refuse_undecoded(frame: &[u8]) -> Option<(u64, String)> {
        const ID: u32 = 1;
        const BATCH: u32 = 14;
        const MUTATIONS: u32 = 1;
        let (mut id, mut mutations) = (0, 0usize);
        each_field(frame, |number, field| match (number, field) {
            (ID, Field::Varint(value)) => id = value,
            (BATCH, Field::Bytes(batch)) => each_field(batch, |number, _| {
                mutations += usize::from(number == MUTATIONS);
            }),
            _ => {}
        });
        let reason = format!(
            "a batch of {mutations} mutations; at most {MAX_BATCH_MUTATIONS} go in one batch"
        );
        (mutations > MAX_BATCH_MUTATIONS).then_some((id, reason))
    }
}

/// One top-level field of an encoded protobuf message.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Calls `visit` with each top-level field of `message` in order (its
/// number and value); stops at the first malformed one, which decoding
/// then reports.
fn each_field<'a>(mut message: &'a [u8], mut visit: impl FnMut(u32, Field<'a>)) {
    while !message.is_empty() {
        let Ok(key) = decode_varint(&mut message) else {
            return;
        };
        let number = u32::try_from(key >> 3).unwrap_or(0);
        let field = match key & 7 {
            0 => match decode_varint(&mut message) {
                Ok(value) => Field::Varint(value),
                Err(_) => return,
            },
            2 => {
                let Some(len) = decode_varint(&mut message)
                    .ok()
                    .and_then(|len| usize::try_from(len).ok())
                    .filter(|len| *len <= message.len())
                else {
                    return;
                };
                let (bytes, rest) = message.split_at(len);
                message = rest;
                Field::Bytes(bytes)
            }
            wire @ (1 | 5) => {
                let len = if wire == 1 { 8 } else { 4 };
                let Some(rest) = message.get(len..) else {
                    return;
                };
                message = rest;
                Field::Fixed
            }
            _ => return,
        };
        visit(number, field);
    }
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

/// A frame in progress is all in the read buffer.
impl<In, Out> crate::server::timeouts::UnfinishedBytes for ProtoCodec<In, Out> {}

impl<In, Out> Clone for ProtoCodec<In, Out> {
    fn clone(&self) -> Self {
        ProtoCodec {
            frames: self.frames.clone(),
            _messages: PhantomData,
        }
    }
}

impl<In: Message + Default + Prescreen, Out> Decoder for ProtoCodec<In, Out> {
    type Item = Frame<In>;
    type Error = io::Error;

    /// # Errors
    /// An over-long frame (see [`is_frame_too_large`]); the stream cannot be
    /// resynchronised after it.
    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Frame<In>>> {
        let Some(frame) = self.frames.decode(src)? else {
            return Ok(None);
        };
        if let Some((id, reason)) = In::refuse_undecoded(&frame) {
            return Ok(Some(Frame::Refused { id, reason }));
        }
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

    /// A frame of `mutations` empty mutations, split over `parts`
    /// occurrences of the `batch` field (decoding merges them).
    fn batch_frame(id: u64, mutations: usize, parts: usize) -> Vec<u8> {
        let mut body = Request { id, command: None }.encode_to_vec();
        for part in 0..parts {
            let count = mutations / parts + usize::from(part < mutations % parts);
            let batch = crate::proto::Batch {
                mutations: vec![crate::proto::Mutation::default(); count],
            };
            let request = Request {
                id: 0,
                command: Some(Command::Batch(batch)),
            };
            body.extend_from_slice(&request.encode_to_vec());
        }
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame
    }

    /// Each empty mutation is 2 bytes on the wire and far more decoded: a
    /// batch over the engine's limit is refused before it is decoded.
    #[test]
    fn a_batch_over_the_limit_is_refused_undecoded() {
        let mut server = ProtoCodec::<Request, Response>::new(64 << 20);
        for parts in [1, 3] {
            let frame = batch_frame(9, MAX_BATCH_MUTATIONS + 1, parts);
            match server.decode(&mut BytesMut::from(&frame[..])).unwrap() {
                Some(Frame::Refused { id, reason }) => {
                    assert_eq!(id, 9);
                    assert!(reason.contains("at most"), "{reason}");
                }
                other => panic!("{parts} part(s): {:?}", other.map(|_| ())),
            }
            let frame = batch_frame(9, MAX_BATCH_MUTATIONS, parts);
            match server.decode(&mut BytesMut::from(&frame[..])).unwrap() {
                Some(Frame::Message(Request {
                    id: 9,
                    command: Some(Command::Batch(batch)),
                })) => assert_eq!(batch.mutations.len(), MAX_BATCH_MUTATIONS),
                other => panic!("{parts} part(s): {:?}", other.map(|_| ())),
            }
        }
    }
}
