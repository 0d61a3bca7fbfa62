//! Arbitrary bytes through the Redis-protocol codec, as a client would send
//! them (multibulk and inline), split at an arbitrary point; every decoded
//! request goes through the command parser and the AUTH gate. Neither may
//! panic; a protocol error ends the stream, as it closes the connection.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use naive_kv::resp::codec::{Limits, RespCodec};
use naive_kv::resp::commands::{Connection, parse};
use naive_kv::server::auth::{AuthGate, AuthToken};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bulk_bytes: 1 << 16,
        max_args: 1024,
        max_request_bytes: 1 << 20,
        max_inline_bytes: 1 << 16,
    };
    let mut codec = RespCodec::new(limits);
    let mut connection = Connection::default();
    let mut gate = AuthGate::new(AuthToken::new("token"));
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut buffer = BytesMut::new();
    for chunk in [&data[..split], &data[split..]] {
        buffer.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(args)) => {
                    let _ = naive_kv::resp::auth::check(&args, &mut gate, true);
                    let _ = parse(args, &mut connection);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
