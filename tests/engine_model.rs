//! Model-based test: random operation sequences run against the engine and
//! against a `BTreeMap`, compared after every read. Tiny memtables and
//! segments make flushes and background compactions happen all the time, so
//! reads are checked while the segment set changes under them.
//!
//! Expiring puts, `expire`, `persist` and a manual clock that moves forward
//! are part of the mix: the model holds only live keys.
//!
//! `NAIVEKV_LONG_TESTS=1` runs more and longer cases.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use std::sync::Arc;

use naive_kv::options::Compression;
use naive_kv::{
    Clock, Db, Error, ManualClock, Options, ScanRequest, Stats, SyncPolicy, WriteBatch,
};
use proptest::prelude::*;

type Model = BTreeMap<Bytes, Bytes>;

/// A value: `len` bytes derived from `seed`; long ones span several blocks.
#[derive(Debug, Clone)]
struct ValueSpec {
    seed: u8,
    len: usize,
}

impl ValueSpec {
    fn bytes(&self) -> Bytes {
        (0..self.len)
            .map(|i| self.seed.wrapping_add((i % 251) as u8))
            .collect::<Vec<u8>>()
            .into()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(u16, ValueSpec),
    Delete(u16),
    Batch(Vec<(u16, Option<ValueSpec>)>),
    /// Writes issued one after another without awaiting, then joined:
    /// they must apply in issue order.
    Pipelined(Vec<(u16, Option<ValueSpec>)>),
    /// `delete_range(key(start), key(end))`, or to the end of the key space.
    DeleteRange(u16, Option<u16>),
    Get(u16),
    Scan(ScanSpec),
    Flush,
    Compact,
    /// `close` then `open`.
    Reopen,
    /// Drop every handle without `close`, then open again.
    DropReopen,
    /// A put that expires `.2` ms from now.
    PutExpiring(u16, ValueSpec, u64),
    /// `Db::expire` to `.1` ms from now (0: now, which deletes).
    Expire(u16, u64),
    Persist(u16),
    /// Moves the clock forward.
    Advance(u64),
}

#[derive(Debug, Clone)]
struct ScanSpec {
    start: Option<(u16, bool)>,
    end: Option<(u16, bool)>,
    reverse: bool,
    limit: usize,
    max_bytes: usize,
}

const KEYS: u16 = 200;

fn key(k: u16) -> Bytes {
    Bytes::from(format!("key{k:03}"))
}

fn value_strategy() -> impl Strategy<Value = ValueSpec> {
    prop_oneof![
        12 => (any::<u8>(), 0usize..24).prop_map(|(seed, len)| ValueSpec { seed, len }),
        1 => (any::<u8>(), 1000usize..5000).prop_map(|(seed, len)| ValueSpec { seed, len }),
    ]
}

fn mutation_strategy() -> impl Strategy<Value = (u16, Option<ValueSpec>)> {
    (0..KEYS, prop::option::weighted(0.7, value_strategy()))
}

fn bound_strategy() -> impl Strategy<Value = Option<(u16, bool)>> {
    prop::option::weighted(0.75, (0..KEYS + 5, any::<bool>()))
}

fn scan_strategy() -> impl Strategy<Value = ScanSpec> {
    (
        bound_strategy(),
        bound_strategy(),
        any::<bool>(),
        prop_oneof![Just(0usize), 1usize..8, 8usize..300],
        prop_oneof![Just(usize::MAX), 1usize..200, 200usize..20_000],
    )
        .prop_map(|(start, end, reverse, limit, max_bytes)| ScanSpec {
            start,
            end,
            reverse,
            limit,
            max_bytes,
        })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0..KEYS, value_strategy()).prop_map(|(k, v)| Op::Put(k, v)),
        10 => (0..KEYS).prop_map(Op::Delete),
        6 => prop::collection::vec(mutation_strategy(), 1..8).prop_map(Op::Batch),
        3 => prop::collection::vec(mutation_strategy(), 1..12).prop_map(Op::Pipelined),
        1 => (0..KEYS, prop::option::weighted(0.9, 0..KEYS + 5))
            .prop_filter("a range ends after it starts", |(s, e)| e.is_none_or(|e| e > *s))
            .prop_map(|(s, e)| Op::DeleteRange(s, e)),
        20 => (0..KEYS).prop_map(Op::Get),
        10 => scan_strategy().prop_map(Op::Scan),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::DropReopen),
        8 => (0..KEYS, value_strategy(), 1u64..50).prop_map(|(k, v, ttl)| Op::PutExpiring(k, v, ttl)),
        4 => (0..KEYS, 0u64..50).prop_map(|(k, ttl)| Op::Expire(k, ttl)),
        2 => (0..KEYS).prop_map(Op::Persist),
        4 => (1u64..40).prop_map(Op::Advance),
    ]
}

fn options(dir: &std::path::Path, sync: bool) -> Options {
    let mut options = common::tiny_options(dir);
    options.sync = if sync {
        SyncPolicy::Always
    } else {
        SyncPolicy::None
    };
    options
}

/// Opens, retrying while a dropped or just-closed handle's actors still hold
/// the lock (after `close` that is a bug, pinned by
/// `engine_limits::close_releases_the_directory_at_once`).
async fn open(options: Options) -> Db {
    for _ in 0..200 {
        match Db::open(options.clone()).await {
            Ok(db) => return db,
            Err(Error::Locked { .. }) => {
                actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(other) => panic!("open failed: {other}"),
        }
    }
    panic!("directory still locked 2 s after its handle was dropped");
}

fn bound(b: Option<(u16, bool)>) -> Bound<Bytes> {
    match b {
        None => Bound::Unbounded,
        Some((k, true)) => Bound::Included(key(k)),
        Some((k, false)) => Bound::Excluded(key(k)),
    }
}

fn in_range(range: &(Bound<Bytes>, Bound<Bytes>), k: &Bytes) -> bool {
    let after_start = match &range.0 {
        Bound::Included(s) => k >= s,
        Bound::Excluded(s) => k > s,
        Bound::Unbounded => true,
    };
    let before_end = match &range.1 {
        Bound::Included(e) => k <= e,
        Bound::Excluded(e) => k < e,
        Bound::Unbounded => true,
    };
    after_start && before_end
}

/// Runs a scan page by page, following continuations, and checks each page's
/// limits; returns everything it read.
async fn scan_all(db: &Db, spec: &ScanSpec) -> Vec<(Bytes, Bytes)> {
    let mut request = ScanRequest {
        start: bound(spec.start),
        end: bound(spec.end),
        limit: spec.limit,
        reverse: spec.reverse,
        max_bytes: spec.max_bytes,
    };
    let mut all = Vec::new();
    for _ in 0..2000 {
        let page = db.scan(request.clone()).await.unwrap();
        check_page(spec, &page);
        all.extend(page.entries.iter().cloned());
        let Some(next) = page.continuation(spec.reverse) else {
            assert!(!page.more, "more set but no continuation: {spec:?}");
            return all;
        };
        if spec.reverse {
            request.end = Bound::Excluded(next);
        } else {
            request.start = Bound::Included(next);
        }
    }
    panic!("scan {spec:?} did not finish in 2000 pages");
}

fn check_page(spec: &ScanSpec, page: &naive_kv::ScanPage) {
    let n = page.entries.len();
    if spec.limit > 0 {
        assert!(n <= spec.limit, "page of {n} over limit: {spec:?}");
    }
    assert!(!page.more || n > 0, "empty page with more: {spec:?}");
    let sizes: Vec<usize> = page
        .entries
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .collect();
    let before_last: usize = sizes.iter().take(n.saturating_sub(1)).sum();
    assert!(
        n <= 1 || before_last < spec.max_bytes,
        "page went on after reaching max_bytes: {spec:?}"
    );
    if page.more {
        let total: usize = sizes.iter().sum();
        assert!(
            (spec.limit > 0 && n == spec.limit) || total >= spec.max_bytes,
            "page stopped early with more set: {n} entries, {total} bytes, {spec:?}"
        );
    }
}

fn expected_scan(model: &Model, spec: &ScanSpec) -> Vec<(Bytes, Bytes)> {
    let range = (bound(spec.start), bound(spec.end));
    let mut expected: Vec<_> = model
        .iter()
        .filter(|(k, _)| in_range(&range, k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if spec.reverse {
        expected.reverse();
    }
    expected
}

fn full_scan() -> ScanSpec {
    ScanSpec {
        start: None,
        end: None,
        reverse: false,
        limit: 0,
        max_bytes: usize::MAX,
    }
}

fn apply(model: &mut Model, mutations: &[(u16, Option<ValueSpec>)]) {
    for (k, v) in mutations {
        match v {
            Some(v) => model.insert(key(*k), v.bytes()),
            None => model.remove(&key(*k)),
        };
    }
}

/// Flushes and compactions seen over every case, and explicit compactions.
static FLUSHES: AtomicU64 = AtomicU64::new(0);
static COMPACTIONS: AtomicU64 = AtomicU64::new(0);
static COMPACT_CALLS: AtomicU64 = AtomicU64::new(0);

async fn record_stats(db: &Db) {
    let stats: Stats = db.stats().await.unwrap();
    assert_eq!(stats.get("background_errors"), 0, "{stats:?}");
    FLUSHES.fetch_add(stats.get("flushes"), Ordering::Relaxed);
    COMPACTIONS.fetch_add(stats.get("compactions"), Ordering::Relaxed);
}

/// The time the model's clock starts at.
const START_MS: u64 = 1_700_000_000_000;

async fn run_case(ops: Vec<Op>, sync: bool, point_index: bool, inline_syncs: bool) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let mut options = options(dir.path(), sync);
    options.memtable_point_index = point_index;
    options.inline_durable_writes = inline_syncs;
    options.clock = clock.clone();
    // Cases take turns at each block codec (the values compress well).
    options.compression =
        [Compression::None, Compression::Lz4, Compression::Zstd(1)][ops.len() % 3];
    let mut db = open(options.clone()).await;
    let mut model = Model::new();
    // The expiry of each live key that has one; `model` holds only live keys.
    let mut expiries: BTreeMap<Bytes, u64> = BTreeMap::new();
    for (step, op) in ops.iter().enumerate() {
        let now = clock.now_ms();
        if let Op::Put(k, _) | Op::Delete(k) = op {
            expiries.remove(&key(*k));
        }
        if let Op::Batch(mutations) | Op::Pipelined(mutations) = op {
            for (k, _) in mutations {
                expiries.remove(&key(*k));
            }
        }
        match op {
            Op::Put(k, v) => {
                db.put(key(*k), v.bytes()).await.unwrap();
                model.insert(key(*k), v.bytes());
            }
            Op::Delete(k) => {
                db.delete(key(*k)).await.unwrap();
                model.remove(&key(*k));
            }
            Op::PutExpiring(k, v, ttl) => {
                db.put_with_expiry(key(*k), v.bytes(), now + ttl)
                    .await
                    .unwrap();
                model.insert(key(*k), v.bytes());
                expiries.insert(key(*k), now + ttl);
            }
            Op::Expire(k, ttl) => {
                let done = db.expire(key(*k), now + ttl).await.unwrap();
                assert_eq!(
                    done,
                    model.contains_key(&key(*k)),
                    "step {step}: expire {k}"
                );
                if done && *ttl == 0 {
                    model.remove(&key(*k));
                    expiries.remove(&key(*k));
                } else if done {
                    expiries.insert(key(*k), now + ttl);
                }
            }
            Op::Persist(k) => {
                let done = db.persist(key(*k)).await.unwrap();
                let had = expiries.remove(&key(*k)).is_some();
                assert_eq!(done, had, "step {step}: persist {k}");
            }
            Op::Advance(ms) => {
                clock.advance(*ms);
                let now = clock.now_ms();
                expiries.retain(|k, at| {
                    let live = *at > now;
                    if !live {
                        model.remove(k);
                    }
                    live
                });
            }
            Op::Batch(mutations) => {
                let mut batch = WriteBatch::new();
                for (k, v) in mutations {
                    match v {
                        Some(v) => batch.put(key(*k), v.bytes()),
                        None => batch.delete(key(*k)),
                    };
                }
                db.write(batch).await.unwrap();
                apply(&mut model, mutations);
            }
            Op::Pipelined(mutations) => {
                let futures: Vec<_> = mutations
                    .iter()
                    .map(|(k, v)| match v {
                        Some(v) => futures_util::future::Either::Left(db.put(key(*k), v.bytes())),
                        None => futures_util::future::Either::Right(db.delete(key(*k))),
                    })
                    .collect();
                for result in futures_util::future::join_all(futures).await {
                    result.unwrap();
                }
                apply(&mut model, mutations);
            }
            Op::DeleteRange(start, end) => {
                let end_key = end.map(key).unwrap_or_default();
                db.delete_range(key(*start), end_key.clone()).await.unwrap();
                let outside = |k: &Bytes| *k < key(*start) || (end.is_some() && *k >= end_key);
                model.retain(|k, _| outside(k));
                expiries.retain(|k, _| outside(k));
            }
            Op::Get(k) => {
                let got = db.get(key(*k)).await.unwrap();
                assert_eq!(got.as_ref(), model.get(&key(*k)), "step {step}: get {k}");
            }
            Op::Scan(spec) => {
                let got = scan_all(&db, spec).await;
                assert!(
                    got == expected_scan(&model, spec),
                    "step {step}: scan {spec:?} read {:?}, expected {:?}",
                    keys_of(&got),
                    keys_of(&expected_scan(&model, spec))
                );
            }
            Op::Flush => db.flush().await.unwrap(),
            Op::Compact => {
                db.compact().await.unwrap();
                COMPACT_CALLS.fetch_add(1, Ordering::Relaxed);
            }
            Op::Reopen => {
                record_stats(&db).await;
                db.close().await.unwrap();
                db = open(options.clone()).await;
                check_everything(&db, &model, step).await;
            }
            Op::DropReopen => {
                record_stats(&db).await;
                drop(db);
                db = open(options.clone()).await;
                check_everything(&db, &model, step).await;
            }
        }
    }
    check_everything(&db, &model, ops.len()).await;
    record_stats(&db).await;
    db.close().await.unwrap();
}

fn keys_of(entries: &[(Bytes, Bytes)]) -> Vec<String> {
    entries
        .iter()
        .map(|(k, v)| format!("{}={}b", String::from_utf8_lossy(k), v.len()))
        .collect()
}

async fn check_everything(db: &Db, model: &Model, step: usize) {
    let got = scan_all(db, &full_scan()).await;
    let expected = expected_scan(model, &full_scan());
    assert!(
        got == expected,
        "step {step}: full scan read {:?}, expected {:?}",
        keys_of(&got),
        keys_of(&expected)
    );
    for k in 0..KEYS {
        let got = db.get(key(k)).await.unwrap();
        assert_eq!(got.as_ref(), model.get(&key(k)), "step {step}: get {k}");
    }
}

fn config() -> (u32, usize) {
    if common::long_tests() {
        (256, 600)
    } else {
        (32, 150)
    }
}

#[test]
fn engine_matches_a_btreemap() {
    let (cases, max_ops) = config();
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        ops in prop::collection::vec(op_strategy(), max_ops / 2..max_ops),
        sync in prop::bool::weighted(0.25),
        point_index in prop::bool::ANY,
        inline_syncs in prop::bool::ANY,
    )| {
        actix_rt::System::new().block_on(run_case(ops, sync, point_index, inline_syncs));
    });
    let flushes = FLUSHES.load(Ordering::Relaxed);
    let compactions = COMPACTIONS.load(Ordering::Relaxed);
    let calls = COMPACT_CALLS.load(Ordering::Relaxed);
    assert!(
        flushes > cases as u64,
        "only {flushes} flushes in {cases} cases"
    );
    assert!(
        compactions > calls,
        "{compactions} compactions for {calls} compact() calls: no background compaction ran"
    );
    eprintln!("{flushes} flushes, {compactions} compactions ({calls} compact() calls)");
}

/// Regression: reads while background compactions replace segments.
#[test]
fn reads_during_background_compaction() {
    actix_rt::System::new().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = open(options(dir.path(), false)).await;
        let mut model = Model::new();
        for round in 0..20u32 {
            for k in 0..KEYS {
                let value = Bytes::from(format!("r{round}-k{k}-{}", "x".repeat((k % 40) as usize)));
                db.put(key(k), value.clone()).await.unwrap();
                model.insert(key(k), value);
                if k % 50 == 0 {
                    let got = db.get(key(k / 2)).await.unwrap();
                    assert_eq!(got.as_ref(), model.get(&key(k / 2)));
                }
            }
            for k in (round as u16 % 3..KEYS).step_by(3) {
                db.delete(key(k)).await.unwrap();
                model.remove(&key(k));
            }
            check_everything(&db, &model, round as usize).await;
        }
        let stats = db.stats().await.unwrap();
        assert!(stats.get("flushes") > 10, "{stats:?}");
        assert!(stats.get("compactions") > 2, "{stats:?}");
        db.close().await.unwrap();
    });
}

/// Waits until background compaction has emptied level 0 (and, if asked,
/// level 1), then returns the stats.
async fn settle(db: &Db, level1_too: bool) -> Stats {
    for _ in 0..500 {
        let stats = db.stats().await.unwrap();
        let busy =
            stats.get("level_0_segments") > 0 || (level1_too && stats.get("level_1_segments") > 0);
        if !busy {
            return stats;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "background compaction did not settle: {:?}",
        db.stats().await
    );
}

/// Regression (found by `engine_matches_a_btreemap`): a level-0 compaction
/// whose level-0 inputs span a narrow range but whose level-1 inputs span a
/// wide one dropped the level-1 tombstones, although level 2 still held
/// older values for those keys: the deleted key came back.
#[test]
fn tombstone_is_kept_while_a_deeper_level_holds_the_key() {
    actix_rt::System::new().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // 1. Old values of key000..=key076 pushed down to level 2.
        let mut deep = options(dir.path(), false);
        deep.memtable_bytes = 1 << 20;
        deep.level1_bytes = 1;
        deep.level_size_multiplier = 1 << 20;
        let db = open(deep).await;
        for round in 0..2 {
            for k in 0..=76 {
                db.put(key(k), format!("old{round}-{}", "o".repeat(60)))
                    .await
                    .unwrap();
            }
            db.flush().await.unwrap();
        }
        let stats = settle(&db, true).await;
        assert!(stats.get("level_2_segments") > 0, "{stats:?}");
        db.close().await.unwrap();

        // 2. A wide level-1 segment holding the tombstone of key076.
        let mut roomy = options(dir.path(), false);
        roomy.memtable_bytes = 1 << 20;
        roomy.level1_bytes = 1 << 20;
        let db = open(roomy.clone()).await;
        db.delete(key(76)).await.unwrap();
        db.put(key(0), "new").await.unwrap();
        db.put(key(190), "new").await.unwrap();
        db.flush().await.unwrap();
        db.put(key(100), "new").await.unwrap();
        db.flush().await.unwrap();
        let stats = settle(&db, false).await;
        assert!(stats.get("level_1_segments") > 0, "{stats:?}");
        assert_eq!(db.get(key(76)).await.unwrap(), None);

        // 3. A narrow level-0 compaction that takes that level-1 segment in.
        db.put(key(125), "new").await.unwrap();
        db.put(key(130), "new").await.unwrap();
        db.flush().await.unwrap();
        db.put(key(127), "new").await.unwrap();
        db.flush().await.unwrap();
        let stats = settle(&db, false).await;
        assert_eq!(stats.get("level_1_segments"), 1, "{stats:?}");
        assert_eq!(
            db.get(key(76)).await.unwrap(),
            None,
            "a deleted key came back"
        );
        let page = db.scan(ScanRequest::range(key(70), key(80))).await.unwrap();
        let keys: Vec<_> = page.entries.iter().map(|(k, _)| k.clone()).collect();
        assert!(
            !keys.contains(&key(76)),
            "a deleted key came back: {keys:?}"
        );
        db.close().await.unwrap();
    });
}
