//! Bytes from a client: the server's frame codec splits and decodes them,
//! the frame tracker of the read deadlines must agree with it on where
//! frames end, and each decoded request is dispatched to a real database
//! (tiny memtable, so flushes and compactions run across inputs).
#![no_main]

use std::cell::RefCell;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use naive_kv::proto::{Request, Response};
use naive_kv::server::codec::{Frame, ProtoCodec};
use naive_kv::server::dispatch;
use naive_kv::server::timeouts::FrameState;
use naive_kv::{Db, Options, SyncPolicy};
use tokio_util::codec::Decoder;

/// Longest frame accepted here: small, so inputs over it exercise refusal.
const MAX_FRAME: usize = 1 << 20;

struct Harness {
    system: actix::SystemRunner,
    db: Db,
    _dir: tempfile::TempDir,
}

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = Options::new(dir.path().join("db"));
    options.sync = SyncPolicy::None;
    options.memtable_bytes = 64 << 10;
    let system = actix::System::new();
    let db = system.block_on(Db::open(options)).expect("open");
    Harness {
        system,
        db,
        _dir: dir,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut codec = ProtoCodec::<Request, Response>::new(MAX_FRAME);
    let mut buf = BytesMut::from(data);
    let mut requests = Vec::new();
    let mut refused = false;
    let mut frames = 0;
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(Frame::Message(request))) => {
                frames += 1;
                requests.push(request);
            }
            Ok(Some(Frame::Undecodable(_))) => frames += 1,
            Ok(None) => break,
            Err(_) => {
                refused = true;
                break;
            }
        }
    }
    if !refused {
        // The tracker ends as many frames as the codec decoded, and when it
        // is between frames the codec has nothing left over.
        let mut state = FrameState::Idle;
        let mut ended = 0;
        for byte in data {
            let (next, end) = state.advance(std::slice::from_ref(byte));
            state = next;
            ended += usize::from(end);
        }
        assert_eq!(ended, frames, "tracker counts other frames");
        assert_eq!(
            state,
            FrameState::Idle.advance(data).0,
            "split reads differ"
        );
        if state == FrameState::Idle {
            assert!(buf.is_empty(), "tracker idle with bytes left");
        }
    }
    HARNESS.with(|cell| {
        let mut cell = cell.borrow_mut();
        let harness = cell.get_or_insert_with(harness);
        let db = harness.db.clone();
        harness.system.block_on(async move {
            for request in requests {
                if let Some(command) = request.command {
                    let _ = dispatch::access(&command);
                    let _reply = dispatch::execute(&db, command).await;
                }
            }
        });
    });
});
