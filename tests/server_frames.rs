//! The frame layer, byte for byte: exact reply bytes, partial frames,
//! garbage frames, requests without a command, over-long frames.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod server_support;

use std::io::Write;
use std::time::Duration;

use naive_kv::proto::{self, ErrorCode, Request, request::Command, response::Reply};
use naive_kv::server::ServerConfig;
use server_support::{TestServer, config, error_code, frame, read_response, request, round_trip};

fn ping(id: u64) -> Vec<u8> {
    request(id, Command::Ping(proto::Ping {}))
}

#[test]
fn ping_reply_is_exact_bytes() {
    let server = TestServer::start();
    let mut stream = server.connect();
    stream.write_all(&ping(1)).unwrap();
    let mut reply = [0u8; 8];
    std::io::Read::read_exact(&mut stream, &mut reply).unwrap();
    // length 4; field 1 (id) varint 1; field 13 (pong) empty message.
    assert_eq!(reply, [0, 0, 0, 4, 0x08, 0x01, 0x6a, 0x00]);
}

#[test]
fn a_frame_split_across_writes_is_reassembled() {
    let server = TestServer::start();
    let mut stream = server.connect();
    let bytes = ping(42);
    for byte in &bytes {
        stream.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(read_response(&mut stream).unwrap().id, 42);
}

#[test]
fn garbage_frame_gets_invalid_request_id_zero_and_connection_stays() {
    let server = TestServer::start();
    let mut stream = server.connect();
    let response = round_trip(&mut stream, &[0, 0, 0, 3, 0xff, 0xff, 0xff]);
    assert_eq!(response.id, 0);
    assert_eq!(error_code(&response), Some(ErrorCode::InvalidRequest));
    let response = round_trip(&mut stream, &ping(5));
    assert_eq!(
        (response.id, response.reply),
        (5, Some(Reply::Pong(proto::Pong {})))
    );
}

#[test]
fn request_without_command_gets_invalid_request_with_its_id() {
    let server = TestServer::start();
    let mut stream = server.connect();
    let response = round_trip(
        &mut stream,
        &frame(&Request {
            id: 9,
            command: None,
        }),
    );
    assert_eq!(response.id, 9);
    assert_eq!(error_code(&response), Some(ErrorCode::InvalidRequest));
    assert_eq!(round_trip(&mut stream, &ping(10)).id, 10);
}

#[test]
fn oversized_frame_gets_frame_too_large_then_close() {
    let server = TestServer::start_with(ServerConfig {
        max_frame_bytes: 1024,
        ..config()
    });
    let mut stream = server.connect();
    // A request answered first, then a frame header announcing 2000 bytes.
    stream.write_all(&ping(1)).unwrap();
    stream.write_all(&2000u32.to_be_bytes()).unwrap();
    assert_eq!(read_response(&mut stream).unwrap().id, 1);
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.id, 0);
    assert_eq!(error_code(&response), Some(ErrorCode::FrameTooLarge));
    // It says the limit and the flag that sets it.
    let Some(Reply::Error(error)) = &response.reply else {
        panic!("{response:?}");
    };
    assert!(
        error
            .message
            .contains("at most 1024 bytes (run_server --max-frame-bytes)"),
        "{error:?}"
    );
    assert!(read_response(&mut stream).is_none(), "connection closed");
    // The server goes on serving others.
    assert_eq!(round_trip(&mut server.connect(), &ping(2)).id, 2);
}

#[test]
fn oversized_frame_reply_survives_an_unread_body() {
    let server = TestServer::start_with(ServerConfig {
        max_frame_bytes: 1024,
        ..config()
    });
    let mut stream = server.connect();
    let mut bytes = 200_000u32.to_be_bytes().to_vec();
    bytes.extend(vec![7u8; 200_000]);
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&bytes));
    let response = read_response(&mut stream).expect("the error reply, not a reset");
    assert_eq!(error_code(&response), Some(ErrorCode::FrameTooLarge));
    assert!(read_response(&mut stream).is_none(), "connection closed");
    let _ = sender.join().unwrap();
}
