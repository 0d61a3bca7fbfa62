//! `Db::prefetch_gets`, the hint a pipelined pass gives before its gets
//! (`engine/prefetch.rs`): it answers nothing, counts nothing and changes
//! nothing, whatever the keys (empty, absent, past every segment, only in
//! a memtable, in a block not cached), and the gets after it read what
//! they would have read without it.

use naive_kv::{Db, Options, Stats};

fn key(i: u32) -> String {
    format!("key{i:05}")
}

async fn stats(db: &Db) -> Stats {
    db.stats().await.unwrap()
}

#[actix_rt::test]
async fn prefetching_changes_nothing_a_get_or_the_stats_can_see() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path());
    options.sync = naive_kv::SyncPolicy::None;
    let db = Db::open(options).await.unwrap();
    // Three overlapping level-0 segments, then some keys only in the
    // memtable, one of them deleted.
    for segment in 0..3 {
        for i in (0..600).filter(|i| i % 3 == segment) {
            db.put(key(i), format!("v{i}")).await.unwrap();
        }
        db.flush().await.unwrap();
    }
    for i in 600..650 {
        db.put(key(i), format!("v{i}")).await.unwrap();
    }
    db.delete(key(7)).await.unwrap();
    // Some blocks cached, most not.
    for i in (0..600).step_by(50) {
        db.get(key(i)).await.unwrap();
    }
    let mut keys: Vec<Vec<u8>> = (0..700).step_by(7).map(|i| key(i).into_bytes()).collect();
    keys.extend([Vec::new(), b"zzz".to_vec(), vec![0xff; 4096], b"a".to_vec()]);
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let before = stats(&db).await;
    db.prefetch_gets(&refs);
    db.prefetch_gets(&[]);
    db.prefetch_gets(&refs[..1]);
    let after = stats(&db).await;
    for counter in [
        "gets",
        "block_cache_hits",
        "block_cache_misses",
        "bloom_filter_hits",
    ] {
        assert_eq!(before.get(counter), after.get(counter), "{counter} changed");
    }
    for i in (0..700).step_by(7) {
        let want = match i {
            7 => None,
            i if i < 650 => Some(format!("v{i}")),
            _ => None,
        };
        let got = db.get(key(i)).await.unwrap();
        assert_eq!(
            got.as_deref(),
            want.as_deref().map(str::as_bytes),
            "key {i}"
        );
    }
    db.close().await.unwrap();
}
