//! The block cache seen from `Db`: gets answered from cached blocks agree
//! with what was written, repeated gets hit the cache, the cache holds no
//! more than its budget, and overwrites, deletes and compaction are never
//! hidden by a block cached before them. Short scans read through the same
//! cache.

use bytes::Bytes;
use naive_kv::{Db, Options, ScanRequest, Stats};

const KEYS: u32 = 4000;

fn key(i: u32) -> String {
    format!("key{i:06}")
}

fn value(i: u32, round: u32) -> String {
    format!("value-{i}-{round}-{}", "x".repeat((i % 40) as usize))
}

fn options(dir: &std::path::Path, cache_bytes: usize) -> Options {
    let mut options = Options::new(dir);
    options.sync = naive_kv::SyncPolicy::None;
    options.block_cache_bytes = cache_bytes;
    options.memtable_bytes = 64 << 10;
    options
}

async fn open(dir: &std::path::Path, cache_bytes: usize) -> Db {
    Db::open(options(dir, cache_bytes)).await.unwrap()
}

async fn fill(db: &Db, round: u32) {
    for i in 0..KEYS {
        db.put(key(i), value(i, round)).await.unwrap();
    }
    db.flush().await.unwrap();
}

async fn check_all(db: &Db, round: u32) {
    for i in 0..KEYS {
        let got = db.get(key(i)).await.unwrap();
        assert_eq!(got.as_deref(), Some(value(i, round).as_bytes()), "{i}");
        let missing = format!("{}-", key(i));
        assert_eq!(db.get(missing).await.unwrap(), None);
    }
}

async fn stats(db: &Db) -> Stats {
    db.stats().await.unwrap()
}

/// Whether the segment set changed between `a` and `b`: a flush, a
/// compaction, or a segment moved to another level.
fn set_changed(a: &Stats, b: &Stats) -> bool {
    let levels = (0..7).map(|l| format!("level_{l}_segments"));
    ["compactions", "flushes", "live_segments"]
        .into_iter()
        .map(String::from)
        .chain(levels)
        .any(|name| a.get(&name) != b.get(&name))
}

#[actix_rt::test]
async fn repeated_gets_hit_the_cache_and_agree_with_the_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 8 << 20).await;
    fill(&db, 0).await;
    // A compaction (or a segment moved down a level) that ends between two
    // passes replaces the readers whose blocks were cached, and the next
    // pass reads the new ones once; the fill leaves such work running. So
    // pass until the segment set stays put for a whole pass.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        check_all(&db, 0).await;
        let first = stats(&db).await;
        check_all(&db, 0).await;
        let second = stats(&db).await;
        let hits = second.get("block_cache_hits") - first.get("block_cache_hits");
        let misses = second.get("block_cache_misses") - first.get("block_cache_misses");
        let moved = set_changed(&first, &second);
        if moved && std::time::Instant::now() < deadline {
            continue;
        }
        // Every block fits: a pass over cached blocks reads nothing from
        // the files.
        assert_eq!(misses, 0, "a pass over cached blocks missed {misses} times");
        assert!(hits >= u64::from(KEYS), "{hits} hits");
        assert!(second.get("block_cache_bytes") > 0);
        assert!(second.get("block_cache_bytes") <= 8 << 20);
        break;
    }
    db.close().await.unwrap();
}

/// A flush puts the blocks it writes into the cache (the cache is many
/// memtables large), so the first gets after it read no file; turned off,
/// each block is read from its file on its first two gets.
#[actix_rt::test]
async fn the_first_gets_after_a_flush_find_its_blocks_cached() {
    for cache_flushed_blocks in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut options = options(dir.path(), 8 << 20);
        options.cache_flushed_blocks = cache_flushed_blocks;
        assert_eq!(options.caches_flushed_blocks(), cache_flushed_blocks);
        let db = Db::open(options).await.unwrap();
        fill(&db, 0).await;
        // Sequential keys: the level-0 segments move down to level 1 (with
        // their open tables, so their cached blocks); wait for the moves.
        let before = settled(&db).await;
        assert!(before.get("live_segments") > 2, "{before:?}");
        let case = format!("cache_flushed_blocks {cache_flushed_blocks}");
        check_all_cached(&db, 0, &before, cache_flushed_blocks, &case).await;
        db.close().await.unwrap();
    }
}

/// A cache smaller than 8 memtables is left to reads: a flush would push
/// out much of what they keep there.
#[test]
fn a_flush_fills_only_a_cache_many_memtables_large() {
    let mut options = Options::new("unused");
    assert!(options.cache_flushed_blocks);
    options.block_cache_bytes = 8 * options.memtable_freeze_bytes();
    assert!(options.caches_flushed_blocks());
    options.block_cache_bytes -= 8;
    assert!(!options.caches_flushed_blocks());
    options.block_cache_bytes = 0;
    assert!(!options.caches_flushed_blocks());
    // The library's defaults: a 32 MiB cache, 32 MiB memtables.
    assert!(!Options::new("unused").caches_flushed_blocks());
}

#[actix_rt::test]
async fn a_small_cache_stays_within_its_budget_and_stays_correct() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 32 << 10;
    let db = open(dir.path(), budget).await;
    fill(&db, 0).await;
    check_all(&db, 0).await;
    check_all(&db, 0).await;
    let stats = stats(&db).await;
    assert!(stats.get("block_cache_bytes") <= budget as u64);
    assert!(
        stats.get("block_cache_misses") > 0,
        "the data cannot all fit"
    );
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn no_cache_reads_every_block_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 0).await;
    fill(&db, 0).await;
    check_all(&db, 0).await;
    let stats = stats(&db).await;
    assert_eq!(stats.get("block_cache_bytes"), 0);
    assert_eq!(stats.get("block_cache_hits"), 0);
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn writes_after_a_block_was_cached_are_seen() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 8 << 20).await;
    fill(&db, 0).await;
    check_all(&db, 0).await;
    // Overwrite everything, flushed into newer segments, then compact so the
    // cached blocks' tables are gone.
    fill(&db, 1).await;
    check_all(&db, 1).await;
    db.compact().await.unwrap();
    check_all(&db, 1).await;
    for i in (0..KEYS).step_by(3) {
        db.delete(key(i)).await.unwrap();
    }
    db.flush().await.unwrap();
    for i in 0..KEYS {
        let got = db.get(key(i)).await.unwrap();
        let expected = (i % 3 != 0).then(|| value(i, 1));
        assert_eq!(got.as_deref(), expected.as_deref().map(str::as_bytes));
    }
    db.close().await.unwrap();
}

/// A segment moved down a level without a rewrite (a sequential load's
/// level-0 segments, disjoint, over an empty level 1) keeps its open table,
/// so the blocks cached from it still hit.
#[actix_rt::test]
async fn a_segment_moved_down_a_level_keeps_its_cached_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path());
    options.sync = naive_kv::SyncPolicy::None;
    options.block_cache_bytes = 8 << 20;
    options.l0_compaction_trigger = 2;
    let db = Db::open(options).await.unwrap();
    let read_first_half = || async {
        for i in 0..KEYS / 2 {
            assert!(db.get(key(i)).await.unwrap().is_some(), "{i}");
        }
    };
    for i in 0..KEYS / 2 {
        db.put(key(i), value(i, 0)).await.unwrap();
    }
    db.flush().await.unwrap();
    // Twice: a block is cached on its second read.
    read_first_half().await;
    read_first_half().await;
    for i in KEYS / 2..KEYS {
        db.put(key(i), value(i, 0)).await.unwrap();
    }
    db.flush().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let settled = loop {
        let now = stats(&db).await;
        if now.get("level_0_segments") == 0 || std::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // Moved, not merged: both segments are still there, in level 1.
    assert_eq!(settled.get("level_0_segments"), 0, "{settled:?}");
    assert_eq!(settled.get("level_1_segments"), 2, "{settled:?}");
    read_first_half().await;
    let after = stats(&db).await;
    let misses = after.get("block_cache_misses") - settled.get("block_cache_misses");
    assert_eq!(misses, 0, "the moved segment's blocks were read again");
    db.close().await.unwrap();
}

/// Every entry, ascending, read in pages of `page` entries.
async fn scan_in_pages(db: &Db, page: usize) -> Vec<(Bytes, Bytes)> {
    let mut request = ScanRequest::all();
    request.limit = page;
    let mut all = Vec::new();
    loop {
        let got = db.scan(request.clone()).await.unwrap();
        let next = got.continuation(false);
        all.extend(got.entries);
        match next {
            Some(start) => request.start = std::ops::Bound::Included(start),
            None => return all,
        }
    }
}

/// Short scan pages (read on the caller's thread when their blocks are in
/// memory) and long ones (read by the read pool) agree with the writes, and
/// repeated short scans are answered from the block cache.
#[actix_rt::test]
async fn repeated_short_scans_hit_the_cache_and_agree_with_the_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), 8 << 20).await;
    fill(&db, 0).await;
    let expected: Vec<(Bytes, Bytes)> = (0..KEYS)
        .map(|i| (Bytes::from(key(i)), Bytes::from(value(i, 0))))
        .collect();
    assert_eq!(scan_in_pages(&db, 1000).await, expected, "long pages");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // Twice: a block is cached on its second read.
        assert_eq!(scan_in_pages(&db, 50).await, expected, "short pages");
        assert_eq!(scan_in_pages(&db, 50).await, expected, "short pages");
        let first = stats(&db).await;
        assert_eq!(scan_in_pages(&db, 50).await, expected, "short pages");
        let second = stats(&db).await;
        let hits = second.get("block_cache_hits") - first.get("block_cache_hits");
        let misses = second.get("block_cache_misses") - first.get("block_cache_misses");
        if set_changed(&first, &second) && std::time::Instant::now() < deadline {
            continue;
        }
        assert_eq!(misses, 0, "a scan over cached blocks missed {misses} times");
        assert!(hits > 0, "no scan was answered from the cache");
        break;
    }
    db.close().await.unwrap();
}

/// Checks every key of `round`, with the segment set as it was at
/// `before`: with `cached`, every block read was in the cache (no miss);
/// without, some were read from their files.
async fn check_all_cached(db: &Db, round: u32, before: &Stats, cached: bool, case: &str) {
    check_all(db, round).await;
    let after = stats(db).await;
    assert!(!set_changed(before, &after), "{case}: {before:?} {after:?}");
    let misses = after.get("block_cache_misses") - before.get("block_cache_misses");
    let hits = after.get("block_cache_hits") - before.get("block_cache_hits");
    if cached {
        assert_eq!(misses, 0, "{case}: {hits} hits");
        assert!(hits >= u64::from(KEYS), "{case}: {hits} hits");
    } else {
        assert!(misses > 0, "{case}: {hits} hits");
    }
}

/// Waits (up to 5 s) until the segment set stays put for 10 ms: the stats
/// then.
async fn settled(db: &Db) -> Stats {
    let mut before = stats(db).await;
    for _ in 0..500 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let now = stats(db).await;
        if !set_changed(&before, &now) {
            break;
        }
        before = now;
    }
    before
}

/// A merge of segments whose blocks are cached puts the blocks it writes
/// into the cache (`Options::cache_warm_merge_output`), so the gets after
/// a full compaction read no file. A merge of cold segments (the database
/// just reopened) leaves the cache alone, and so does every merge with the
/// option off.
#[actix_rt::test]
async fn a_merge_of_warm_segments_leaves_its_output_cached() {
    // (option, reopened before the merge, output cached)
    for (option, reopened, cached) in [
        (true, false, true),
        (true, true, false),
        (false, false, false),
    ] {
        let case = format!("option {option}, reopened {reopened}");
        let dir = tempfile::tempdir().unwrap();
        let mut options = options(dir.path(), 8 << 20);
        options.cache_warm_merge_output = option;
        let mut db = Db::open(options.clone()).await.unwrap();
        // The second round overwrites every key: its segments overlap the
        // first's, so the compaction merges them (no segment just moves).
        fill(&db, 0).await;
        fill(&db, 1).await;
        if reopened {
            db.close().await.unwrap();
            db = Db::open(options).await.unwrap();
        }
        db.compact().await.unwrap();
        let before = settled(&db).await;
        assert!(before.get("compactions") > 0, "{case}: {before:?}");
        check_all_cached(&db, 1, &before, cached, &case).await;
        db.close().await.unwrap();
    }
}
