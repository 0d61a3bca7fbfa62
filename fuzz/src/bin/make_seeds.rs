//! Writes seed corpora from a real database: its WAL and SSTable files, and
//! a few request frames. Run from fuzz/: `cargo run --bin make_seeds`.

use std::path::Path;

use naive_kv::proto::{self, Request, request::Command};
use naive_kv::server::codec::encode_frame;
use naive_kv::{Db, Options, SyncPolicy, WriteBatch};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let db_dir = tmp.path().join("db");
    let mut options = Options::new(&db_dir);
    options.sync = SyncPolicy::Always;
    options.block_bytes = 256;
    actix::System::new().block_on(async {
        let db = Db::open(options).await.map_err(|e| e.to_string())?;
        for i in 0..40u32 {
            let put = db.put(format!("key{i:03}"), format!("value {i}"));
            put.await.map_err(|e| e.to_string())?;
        }
        db.delete("key007").await.map_err(|e| e.to_string())?;
        db.flush().await.map_err(|e| e.to_string())?;
        let mut batch = WriteBatch::new();
        batch
            .put("b1", "one")
            .put("b2", vec![7u8; 300])
            .delete("key001");
        db.write(batch).await.map_err(|e| e.to_string())?;
        copy_files(&db_dir).map_err(|e| e.to_string())?;
        db.close().await.map_err(|e| e.to_string())
    })?;
    write_frames()?;
    Ok(())
}

/// Copies the database's `.wal` and `.sst` files into the corpora.
fn copy_files(db_dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(db_dir)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let target = match path.extension().and_then(|e| e.to_str()) {
            Some("wal") => "corpus/wal_reader",
            Some("sst") => "corpus/sstable_reader",
            _ => continue,
        };
        std::fs::create_dir_all(target)?;
        std::fs::copy(&path, Path::new(target).join(name.unwrap_or_default()))?;
    }
    Ok(())
}

/// One seed per command kind, plus all of them pipelined in one input.
fn write_frames() -> std::io::Result<()> {
    let commands = [
        Command::Put(proto::Put {
            key: "k".into(),
            value: "v".into(),
        }),
        Command::Get(proto::Get { key: "k".into() }),
        Command::Delete(proto::Delete { key: "k".into() }),
        Command::Scan(proto::Scan {
            start: "a".into(),
            end: "z".into(),
            limit: 10,
            reverse: true,
        }),
        Command::Batch(proto::Batch {
            mutations: vec![proto::Mutation {
                op: Some(proto::mutation::Op::Put(proto::Put {
                    key: "b".into(),
                    value: "c".into(),
                })),
            }],
        }),
        Command::Ping(proto::Ping {}),
        Command::Stats(proto::Stats {}),
        Command::Auth(proto::Auth { token: "t".into() }),
    ];
    std::fs::create_dir_all("corpus/frame_dispatch")?;
    let mut all = Vec::new();
    for (i, command) in commands.into_iter().enumerate() {
        let frame = encode_frame(&Request {
            id: i as u64,
            command: Some(command),
        });
        std::fs::write(format!("corpus/frame_dispatch/seed{i}"), &frame)?;
        all.extend(frame);
    }
    std::fs::write("corpus/frame_dispatch/pipelined", all)
}
