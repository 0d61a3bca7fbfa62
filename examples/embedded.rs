//! NaiveKV embedded in your own actix system: open a database, write, read,
//! scan page by page, look at the counters, close.
//!
//! Run with: `cargo run --release --example embedded -- /tmp/naive_kv_embedded`

use std::ops::Bound;
use std::process::ExitCode;

use naive_kv::{Db, Options, ScanRequest, SyncPolicy, WriteBatch};

#[actix_rt::main]
async fn main() -> ExitCode {
    match demo().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Display, not Debug: "database directory ... is locked by
            // another process", not `Locked { path: ... }`.
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> Result<(), naive_kv::Error> {
    let directory = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "naive_kv_embedded".into());
    let mut options = Options::new(&directory);
    options.sync = SyncPolicy::Always;
    let db = Db::open(options).await?;

    db.put("greeting", "hello").await?;
    let mut batch = WriteBatch::new();
    for i in 0..2500 {
        batch.put(format!("user:{i:04}"), format!("name {i}"));
    }
    db.write(batch).await?; // atomic: all 2500 or none, also across a crash
    db.delete("user:0001").await?;

    println!("greeting = {:?}", db.get("greeting").await?);
    println!("user:0001 = {:?}", db.get("user:0001").await?);

    // Page through user:* in pages of 1000, following the continuation.
    let mut request = ScanRequest::range("user:", "user;");
    let mut total = 0;
    loop {
        let page = db.scan(request.clone()).await?;
        total += page.entries.len();
        match page.continuation(false) {
            Some(next) => request.start = Bound::Included(next),
            None => break,
        }
    }
    println!("scanned {total} users");

    db.compact().await?;
    let stats = db.stats().await?;
    for name in [
        "writes",
        "wal_syncs",
        "writes_per_sync",
        "flushes",
        "compactions",
        "live_segments",
    ] {
        println!("{name} {}", stats.get(name));
    }
    db.close().await?;
    Ok(())
}
