//! Open refuses, never destroys: files that disagree with each other (a lost
//! manifest, swapped, truncated or foreign segments, a deleted or renumbered
//! WAL, a manifest from an older state) make open fail with `Corruption`
//! naming the file, and leave every file where it was. `naivekv-check`
//! reports each case, and `--repair` brings back every key still readable.

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use naive_kv::engine::{check_database, repair_database};
use naive_kv::{Db, Error, Options, ScanRequest};

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key{i:05}"))
}

fn value(i: usize, round: usize) -> Bytes {
    Bytes::from(format!("value-{i}-{round}"))
}

/// Writes keys `range` with `round`'s values, then flushes if asked.
async fn write(db: &Db, range: std::ops::Range<usize>, round: usize, flush: bool) {
    for i in range {
        db.put(key(i), value(i, round)).await.unwrap();
    }
    if flush {
        db.flush().await.unwrap();
    }
}

/// A closed database with two flushed segments and writes still in a WAL:
/// keys 0..300, the first 100 overwritten in round 1, 250..300 only in the WAL.
async fn populated(dir: &Path) {
    let db = Db::open(Options::new(dir)).await.unwrap();
    write(&db, 0..150, 0, true).await;
    write(&db, 150..250, 0, false).await;
    write(&db, 0..100, 1, true).await;
    write(&db, 250..300, 0, false).await;
    db.close().await.unwrap();
}

fn expected(i: usize) -> Bytes {
    value(i, if i < 100 { 1 } else { 0 })
}

async fn all_entries(db: &Db) -> Vec<(Bytes, Bytes)> {
    let request = ScanRequest {
        limit: 0,
        ..ScanRequest::all()
    };
    db.scan(request).await.unwrap().entries
}

fn names(dir: &Path) -> Vec<String> {
    common::files(dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    common::files_ending(dir, ".sst")
}

/// Opens `dir`, expects `Corruption` naming a file whose name ends with
/// `file_suffix` and whose message holds `words`, and checks that no file
/// was removed or changed.
async fn assert_refused(dir: &Path, file_suffix: &str, words: &str) {
    let before: Vec<(String, Vec<u8>)> = names(dir)
        .into_iter()
        .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
        .collect();
    match Db::open(Options::new(dir)).await {
        Err(Error::Corruption { path, detail, .. }) => {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.ends_with(file_suffix), "named {name}: {detail}");
            assert!(detail.contains(words), "{name}: {detail}");
        }
        other => panic!("expected a refusal naming *{file_suffix}, got {other:?}"),
    }
    let after: Vec<(String, Vec<u8>)> = names(dir)
        .into_iter()
        .filter(|n| n != "LOCK")
        .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
        .collect();
    let before: Vec<_> = before.into_iter().filter(|(n, _)| n != "LOCK").collect();
    assert_eq!(before, after, "a refused open changed the directory");
}

/// `naivekv-check` finds at least one problem, one of them in `file_suffix`.
fn assert_check_reports(dir: &Path, file_suffix: &str) {
    let report = check_database(&naive_kv::fs::StdFs, dir).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.file.ends_with(file_suffix)),
        "check missed *{file_suffix}: {:?}",
        report.problems
    );
}

#[actix_rt::test]
async fn a_clean_database_reopens_and_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    let report = check_database(&naive_kv::fs::StdFs, dir.path()).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.segments_checked >= 2);
    let db = common::reopen(Options::new(dir.path())).await;
    assert_eq!(all_entries(&db).await.len(), 300);
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn a_missing_manifest_is_refused_not_a_new_database() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    std::fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    assert_refused(dir.path(), "MANIFEST", "naivekv-check --repair").await;
    assert_check_reports(dir.path(), "MANIFEST");
}

#[actix_rt::test]
async fn swapped_segments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    let sst = segments(dir.path());
    assert!(sst.len() >= 2, "{sst:?}");
    let (a, b) = (&sst[0], &sst[1]);
    let swap = dir.path().join("swap");
    std::fs::rename(a, &swap).unwrap();
    std::fs::rename(b, a).unwrap();
    std::fs::rename(&swap, b).unwrap();
    assert_refused(dir.path(), ".sst", "does not match the MANIFEST").await;
    assert_check_reports(dir.path(), ".sst");
}

#[actix_rt::test]
async fn a_truncated_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    let sst = &segments(dir.path())[0];
    let bytes = std::fs::read(sst).unwrap();
    std::fs::write(sst, &bytes[..bytes.len() / 2]).unwrap();
    assert_refused(dir.path(), ".sst", "").await;
    assert_check_reports(dir.path(), ".sst");
    // The damaged one is counted among those checked.
    let report = check_database(&naive_kv::fs::StdFs, dir.path()).unwrap();
    assert_eq!(report.segments_checked, segments(dir.path()).len());
}

#[actix_rt::test]
async fn a_segment_from_another_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    {
        let db = Db::open(Options::new(other.path())).await.unwrap();
        write(&db, 0..150, 7, true).await;
        db.close().await.unwrap();
    }
    let foreign = &segments(other.path())[0];
    std::fs::copy(foreign, &segments(dir.path())[0]).unwrap();
    assert_refused(dir.path(), ".sst", "does not match the MANIFEST").await;
}

#[actix_rt::test]
async fn a_missing_named_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    std::fs::remove_file(&segments(dir.path())[0]).unwrap();
    assert_refused(dir.path(), ".sst", "missing").await;
}

#[actix_rt::test]
async fn a_deleted_live_wal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    for wal in common::files_ending(dir.path(), ".wal") {
        std::fs::remove_file(wal).unwrap();
    }
    assert_refused(dir.path(), ".wal", "missing").await;
    assert_check_reports(dir.path(), ".wal");
}

#[actix_rt::test]
async fn a_wal_renumbered_below_the_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    let wals = common::files_ending(dir.path(), ".wal");
    let live = wals.last().unwrap();
    // Numbered below every file the manifest knows: open would call it
    // obsolete, but it holds writes no segment has.
    std::fs::rename(live, dir.path().join("000000.wal")).unwrap();
    assert_refused(dir.path(), ".wal", "").await;
}

#[actix_rt::test]
async fn a_manifest_from_an_older_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Options::new(dir.path())).await.unwrap();
    write(&db, 0..100, 0, true).await;
    let old_manifest = std::fs::read(dir.path().join("MANIFEST")).unwrap();
    write(&db, 100..200, 0, true).await;
    write(&db, 200..300, 0, true).await;
    db.close().await.unwrap();
    std::fs::write(dir.path().join("MANIFEST"), old_manifest).unwrap();
    assert_refused(dir.path(), "", "").await;
    let report = check_database(&naive_kv::fs::StdFs, dir.path()).unwrap();
    assert!(!report.is_clean());
}

#[actix_rt::test]
async fn leftovers_of_interrupted_writes_are_still_removed() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    std::fs::write(dir.path().join("000999.sst.tmp"), b"half a segment").unwrap();
    std::fs::write(dir.path().join("MANIFEST.tmp"), b"half a manifest").unwrap();
    let db = common::reopen(Options::new(dir.path())).await;
    assert_eq!(all_entries(&db).await.len(), 300);
    db.close().await.unwrap();
    assert!(!dir.path().join("000999.sst.tmp").exists());
    assert!(!dir.path().join("MANIFEST.tmp").exists());
}

/// A segment copied in under a number above any a database reaches would
/// make numbering wrap around to live files' numbers (a flush then renamed
/// its output over a live segment): refused, naming the stray file.
#[actix_rt::test]
async fn a_file_numbered_past_the_file_number_space_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    let live = segments(dir.path())[0].clone();
    let stray = dir.path().join(format!("{}.sst", u64::MAX - 1));
    std::fs::copy(&live, &stray).unwrap();
    assert_refused(dir.path(), &format!("{}.sst", u64::MAX - 1), "move it out").await;
    std::fs::remove_file(&stray).unwrap();
    let wal = dir.path().join(format!("{}.wal", 1u64 << 60));
    std::fs::write(&wal, b"").unwrap();
    assert_refused(dir.path(), &format!("{}.wal", 1u64 << 60), "move it out").await;
    std::fs::remove_file(&wal).unwrap();
    let db = common::reopen(Options::new(dir.path())).await;
    assert_eq!(all_entries(&db).await.len(), 300);
    db.close().await.unwrap();
}

/// A segment the manifest does not name is removed as a leftover only when
/// this database wrote it under that number; another database's segment,
/// or one of ours renamed, is refused and kept.
#[actix_rt::test]
async fn an_unnamed_segment_this_database_did_not_write_is_refused_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    let other = tempfile::tempdir().unwrap();
    populated(other.path()).await;
    let foreign = dir.path().join("000900.sst");
    std::fs::copy(&segments(other.path())[0], &foreign).unwrap();
    assert_refused(dir.path(), "000900.sst", "belongs to database").await;
    assert_check_reports(dir.path(), "000900.sst");
    std::fs::remove_file(&foreign).unwrap();
    let renamed = dir.path().join("000901.sst");
    std::fs::copy(&segments(dir.path())[0], &renamed).unwrap();
    assert_refused(dir.path(), "000901.sst", "written as segment").await;
    std::fs::remove_file(&renamed).unwrap();
    let db = common::reopen(Options::new(dir.path())).await;
    assert_eq!(all_entries(&db).await.len(), 300);
    db.close().await.unwrap();
}

async fn assert_repaired_holds_everything(dir: &Path) {
    let db = common::reopen(Options::new(dir)).await;
    let entries = all_entries(&db).await;
    assert_eq!(entries.len(), 300);
    for (i, (k, v)) in entries.iter().enumerate() {
        assert_eq!((k, v), (&key(i), &expected(i)), "entry {i}");
    }
    db.put("after", "repair").await.unwrap();
    db.close().await.unwrap();
    let report = check_database(&naive_kv::fs::StdFs, dir).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[actix_rt::test]
async fn repair_rebuilds_a_lost_manifest_with_every_key() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    std::fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    let report = repair_database(&Options::new(dir.path())).unwrap();
    assert!(report.lost.is_empty(), "{:?}", report.lost);
    assert_eq!(report.keys, 300);
    assert_repaired_holds_everything(dir.path()).await;
}

#[actix_rt::test]
async fn repair_moves_an_unreadable_segment_to_lost_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    // The newest segment holds round 1 of keys 0..100 (and the recovery
    // flush of the WAL at the last close holds 150..300 or is not written
    // yet); damage the oldest, which holds round 0 of 0..150.
    let oldest = segments(dir.path())[0].clone();
    let bytes = std::fs::read(&oldest).unwrap();
    std::fs::write(&oldest, &bytes[..bytes.len() - 10]).unwrap();
    let report = repair_database(&Options::new(dir.path())).unwrap();
    assert_eq!(report.lost.len(), 1, "{:?}", report.lost);
    let name = oldest.file_name().unwrap();
    assert!(dir.path().join("lost").join(name).exists());
    let db = common::reopen(Options::new(dir.path())).await;
    let entries = all_entries(&db).await;
    // Keys 100..150 lived only in the damaged segment.
    let keys: Vec<&Bytes> = entries.iter().map(|(k, _)| k).collect();
    for i in (0..100).chain(150..300) {
        assert!(keys.contains(&&key(i)), "key {i} lost");
    }
    for (k, v) in &entries {
        let i: usize = std::str::from_utf8(&k[3..]).unwrap().parse().unwrap();
        assert_eq!(v, &expected(i));
    }
    db.close().await.unwrap();
}

/// One bad block costs that block's writes, not the segment's: repair keeps
/// the entries of the blocks that check, and moves the file to `lost/`.
#[actix_rt::test]
async fn repair_keeps_the_intact_blocks_of_a_damaged_segment() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Options::new(dir.path())).await.unwrap();
    write(&db, 0..3000, 0, true).await;
    db.close().await.unwrap();
    let segment = segments(dir.path())[0].clone();
    let mut bytes = std::fs::read(&segment).unwrap();
    // Data blocks come first: a quarter of the way in is inside one.
    let at = bytes.len() / 4;
    bytes[at] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    let report = repair_database(&Options::new(dir.path())).unwrap();
    assert_eq!(report.lost.len(), 1, "{:?}", report.lost);
    assert!(
        report.lost[0].1.contains("entries kept"),
        "{:?}",
        report.lost
    );
    assert!(
        dir.path()
            .join("lost")
            .join(segment.file_name().unwrap())
            .exists()
    );
    let salvaged = report.entries_salvaged as usize;
    assert!((2000..3000).contains(&salvaged), "{salvaged} of 3000 kept");
    let db = common::reopen(Options::new(dir.path())).await;
    let entries = all_entries(&db).await;
    assert_eq!(entries.len(), salvaged);
    let indexes: Vec<usize> = entries
        .iter()
        .map(|(k, _)| std::str::from_utf8(&k[3..]).unwrap().parse().unwrap())
        .collect();
    for ((_, v), &i) in entries.iter().zip(&indexes) {
        assert_eq!(v, &value(i, 0));
    }
    // What is gone is one block: a run of consecutive keys.
    let gaps = indexes.windows(2).filter(|w| w[1] != w[0] + 1).count();
    let missing_at_ends = usize::from(indexes[0] != 0) + usize::from(indexes[salvaged - 1] != 2999);
    assert_eq!(gaps + missing_at_ends, 1, "more than one run of keys lost");
    db.close().await.unwrap();
}

/// A segment the process may not read is not damaged: repair stops before
/// moving anything, so that fixing its permissions keeps every write.
#[test]
fn repair_stops_at_a_segment_it_may_not_read_and_moves_nothing() {
    use naive_kv::fs::sim::{Fault, Op};
    let fs = populated_sim();
    let segment = fs
        .names(Path::new("/db"))
        .unwrap()
        .into_iter()
        .find(|n| n.ends_with(".sst"))
        .expect("a segment");
    let before = fs.names(Path::new("/db")).unwrap();
    let denied = Fault::fail(Op::Open, std::io::ErrorKind::PermissionDenied)
        .on_path(segment.clone())
        .times(u64::MAX);
    fs.inject(denied).unwrap();
    let error = repair_database(&sim_options(&fs)).unwrap_err().to_string();
    assert!(
        error.contains(&segment) && error.contains("run repair again"),
        "{error}"
    );
    let data =
        |names: Vec<String>| -> Vec<String> { names.into_iter().filter(|n| n != "LOCK").collect() };
    assert_eq!(data(before), data(fs.names(Path::new("/db")).unwrap()));
    fs.clear_faults().unwrap();
    let report = repair_database(&sim_options(&fs)).unwrap();
    assert!(report.lost.is_empty(), "{:?}", report.lost);
}

fn sim_options(fs: &naive_kv::fs::sim::SimFs) -> Options {
    let mut options = Options::new("/db");
    options.fs = std::sync::Arc::new(fs.clone());
    options
}

/// A database on the simulated file system with segments and a live WAL,
/// closed and then through a power loss.
fn populated_sim() -> naive_kv::fs::sim::SimFs {
    let fs = naive_kv::fs::sim::SimFs::new(5);
    actix_rt::System::new().block_on(async {
        let db = Db::open(sim_options(&fs)).await.unwrap();
        write(&db, 0..150, 0, true).await;
        write(&db, 150..200, 0, false).await;
        db.close().await.unwrap();
    });
    fs.crash().unwrap()
}

/// Removes `/db/NAME` durably, then cuts the power.
fn remove_durably(fs: naive_kv::fs::sim::SimFs, names: &[String]) -> naive_kv::fs::sim::SimFs {
    use naive_kv::fs::FileSystem;
    for name in names {
        fs.remove_file(&Path::new("/db").join(name)).unwrap();
    }
    fs.sync_dir(Path::new("/db")).unwrap();
    fs.crash().unwrap()
}

fn assert_sim_refused(fs: &naive_kv::fs::sim::SimFs, file: &str) {
    let before = fs.names(Path::new("/db")).unwrap();
    match actix_rt::System::new().block_on(Db::open(sim_options(fs))) {
        Err(Error::Corruption { path, .. }) => {
            assert!(path.to_string_lossy().ends_with(file), "{path:?}");
        }
        other => panic!("expected a refusal naming {file}, got {other:?}"),
    }
    let after = fs.names(Path::new("/db")).unwrap();
    let data =
        |names: Vec<String>| -> Vec<String> { names.into_iter().filter(|n| n != "LOCK").collect() };
    assert_eq!(
        data(before),
        data(after),
        "a refused open changed the directory"
    );
}

/// The same refusals on the simulated file system, after a power loss.
#[test]
fn refusals_hold_on_the_simulated_file_system_after_a_power_loss() {
    let fs = populated_sim();
    let wals: Vec<String> = fs
        .names(Path::new("/db"))
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".wal"))
        .collect();
    assert!(!wals.is_empty());
    assert_sim_refused(&remove_durably(fs, &wals), ".wal");
    let fs = remove_durably(populated_sim(), &["MANIFEST".to_string()]);
    assert_sim_refused(&fs, "MANIFEST");
}

/// After a repair the database behaves like a map: random puts, deletes and
/// reopens checked against a `BTreeMap`.
#[actix_rt::test]
async fn a_repaired_database_passes_a_model_run() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    std::fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    repair_database(&Options::new(dir.path())).unwrap();
    let mut model: std::collections::BTreeMap<Bytes, Bytes> =
        (0..300).map(|i| (key(i), expected(i))).collect();
    let mut db = common::reopen(common::tiny_options(dir.path())).await;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for step in 0..1500 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let k = key((state % 400) as usize);
        match state % 10 {
            0..=5 => {
                let v = Bytes::from(format!("v{step}"));
                db.put(k.clone(), v.clone()).await.unwrap();
                model.insert(k, v);
            }
            6..=8 => {
                db.delete(k.clone()).await.unwrap();
                model.remove(&k);
            }
            _ if step % 300 == 9 => {
                db.close().await.unwrap();
                db = common::reopen(common::tiny_options(dir.path())).await;
            }
            _ => {}
        }
    }
    let expected: Vec<(Bytes, Bytes)> = model.into_iter().collect();
    assert_eq!(all_entries(&db).await, expected);
    db.close().await.unwrap();
    let report = check_database(&naive_kv::fs::StdFs, dir.path()).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

/// A range delete the manifest holds (flushed, then the database closed) is
/// applied by a repair: its keys stay deleted. (A copy of an open database
/// made file by file can catch a compaction half way, which repair then
/// undoes by design, so this test closes the database; the WAL's range
/// deletes are read by the same reader as replay's, unit-tested in
/// `engine::batch`.)
#[actix_rt::test]
async fn repair_applies_range_deletes_from_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    let db = Db::open(Options::new(dir.path())).await.unwrap();
    db.delete_range(key(10), key(20)).await.unwrap();
    db.flush().await.unwrap();
    db.close().await.unwrap();
    repair_database(&Options::new(dir.path())).unwrap();
    let db = common::reopen(Options::new(dir.path())).await;
    let entries = all_entries(&db).await;
    let wanted: Vec<(Bytes, Bytes)> = (0..300)
        .filter(|i| !(10..20).contains(i))
        .map(|i| (key(i), expected(i)))
        .collect();
    assert_eq!(entries, wanted);
    db.close().await.unwrap();
}

/// A database path that is a file (or passes through one) is an error that
/// says so, not a bare "File exists".
#[actix_rt::test]
async fn a_file_in_place_of_the_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("afile");
    std::fs::write(&file, b"not a database").unwrap();
    for path in [file.clone(), file.join("sub")] {
        match Db::open(Options::new(&path)).await {
            Err(error) => {
                let text = error.to_string();
                assert!(
                    text.contains("afile exists and is not a directory"),
                    "{text}"
                );
            }
            Ok(_) => panic!("opened a database at {}", path.display()),
        }
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a database");
}

/// After a clean close the last MANIFEST says up to which write the WALs
/// reach; a WAL that ends before it (cut, emptied) is refused, where a
/// crash's torn tail is still dropped. `--repair` then keeps what is
/// readable.
#[actix_rt::test]
async fn a_wal_cut_after_a_clean_close_is_refused() {
    for cut in ["half", "empty"] {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path()).await;
        let wal = common::files_ending(dir.path(), ".wal").pop().unwrap();
        let len = std::fs::metadata(&wal).unwrap().len();
        let keep = if cut == "half" { len / 2 } else { 0 };
        std::fs::OpenOptions::new()
            .write(true)
            .open(&wal)
            .unwrap()
            .set_len(keep)
            .unwrap();
        assert_refused(dir.path(), ".wal", "closed cleanly").await;
        assert_check_reports(dir.path(), ".wal");
        let report = repair_database(&Options::new(dir.path())).unwrap();
        assert!(
            report.keys >= 250,
            "{cut}: repair kept {} keys",
            report.keys
        );
        // It says acknowledged writes are gone (an outside probe found it
        // silent: "0 file(s) moved", exit 0).
        let (closed_at, reached) = report.acknowledged_lost.expect("the loss is reported");
        assert!(closed_at > reached, "{cut}: {closed_at} {reached}");
        let db = common::reopen(Options::new(dir.path())).await;
        assert!(all_entries(&db).await.len() >= 250);
        db.close().await.unwrap();
    }
}

/// A repair says what it could not bring back: a segment the old MANIFEST
/// named that is gone, and, for a damaged WAL, how many of its records it
/// kept.
#[actix_rt::test]
async fn repair_reports_missing_segments_and_what_of_a_damaged_wal_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    let gone = segments(dir.path())[0].clone();
    std::fs::remove_file(&gone).unwrap();
    let wal = common::files_ending(dir.path(), ".wal").pop().unwrap();
    let mut bytes = std::fs::read(&wal).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&wal, &bytes).unwrap();
    let report = repair_database(&Options::new(dir.path())).unwrap();
    let gone_name = gone.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(report.missing.len(), 1, "{:?}", report.missing);
    assert_eq!(report.missing[0].0, gone_name);
    assert!(report.missing[0].1 > 0);
    let (_, why) = report
        .lost
        .iter()
        .find(|(file, _)| file.ends_with(".wal"))
        .expect("the damaged WAL moved to lost/");
    assert!(why.contains("50 intact record(s) kept; 1 damaged"), "{why}");
    // Records after the damaged one were kept too.
    let db = Db::open(Options::new(dir.path())).await.unwrap();
    assert_eq!(db.get(key(299)).await.unwrap(), Some(expected(299)));
    db.close().await.unwrap();
}

/// Damage to the first record of a WAL (its identity record, which holds no
/// write) used to make repair drop every record after it. Repair now reads
/// past it, whether the damage is in the record's header (its length
/// unknown) or in its payload, and keeps every key.
#[actix_rt::test]
async fn repair_reads_past_a_damaged_first_record() {
    for at in [0, 14] {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path()).await;
        let wal = largest_wal(dir.path());
        let mut bytes = std::fs::read(&wal).unwrap();
        bytes[at] ^= 0x10;
        std::fs::write(&wal, &bytes).unwrap();
        assert_refused(dir.path(), ".wal", "checksum").await;
        let report = repair_database(&Options::new(dir.path())).unwrap();
        assert_eq!(report.wal_records_kept, 50, "byte {at}: {report:?}");
        let db = Db::open(Options::new(dir.path())).await.unwrap();
        let entries = all_entries(&db).await;
        assert_eq!(entries.len(), 300, "byte {at}");
        assert!(entries.iter().all(|(k, v)| {
            let i: usize = std::str::from_utf8(&k[3..]).unwrap().parse().unwrap();
            *v == expected(i)
        }));
        db.close().await.unwrap();
    }
}

/// Rewrites `dir`'s manifest, checksummed as the engine writes it, after
/// `edit` has changed its contents.
fn rewrite_manifest(dir: &Path, edit: impl FnOnce(&mut naive_kv::proto::storage::Manifest)) {
    use naive_kv::format::manifest::{read_manifest, write_manifest};
    let fs = naive_kv::fs::StdFs;
    let mut manifest = read_manifest(&fs, dir).unwrap().unwrap();
    edit(&mut manifest);
    write_manifest(&fs, dir, &manifest).unwrap();
}

/// A manifest whose checksum is right but whose contents no engine writes:
/// a segment named twice, a level that does not exist (u32::MAX, which the
/// checker once used to size a table of levels), keys out of order, or a
/// flushed sequence number at the top of the range (which would have made
/// open skip every write in the WAL), or a range delete after the flushed
/// sequence number. Each is refused and reported by the
/// checker, and the original manifest opens again with every key.
#[actix_rt::test]
async fn a_manifest_that_no_engine_writes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    let original = std::fs::read(dir.path().join("MANIFEST")).unwrap();
    type Edit = fn(&mut naive_kv::proto::storage::Manifest);
    let cases: [(Edit, &str, &str); 6] = [
        (
            |m| {
                let first = m.segments[0].clone();
                m.segments.push(first);
            },
            ".sst",
            "named twice",
        ),
        (|m| m.segments[0].level = u32::MAX, ".sst", "levels end at"),
        (
            |m| {
                let segment = &mut m.segments[0];
                std::mem::swap(&mut segment.smallest_key, &mut segment.largest_key);
            },
            ".sst",
            "smallest key after its largest",
        ),
        (
            |m| m.flushed_seq = u64::MAX,
            "MANIFEST",
            "flushed sequence number",
        ),
        (|m| m.closed_at_seq = 1 << 60, "MANIFEST", "clean-close"),
        (
            // A range delete of everything, later than any write: it would
            // have hidden (and compaction dropped) every key.
            |m| {
                m.range_tombstones
                    .push(naive_kv::proto::storage::RangeTombstone {
                        seq: m.flushed_seq + 1_000_000,
                        ..Default::default()
                    })
            },
            "MANIFEST",
            "range delete at sequence",
        ),
    ];
    for (edit, file, words) in cases {
        rewrite_manifest(dir.path(), edit);
        assert_refused(dir.path(), file, words).await;
        assert_check_reports(dir.path(), file);
        std::fs::write(dir.path().join("MANIFEST"), &original).unwrap();
    }
    let db = common::reopen(Options::new(dir.path())).await;
    assert_eq!(all_entries(&db).await.len(), 300);
    db.close().await.unwrap();
}

/// The WAL of `dir` that holds the most bytes.
fn largest_wal(dir: &Path) -> PathBuf {
    common::files_ending(dir, ".wal")
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

/// After a crash (no clean-close marker in the manifest), a WAL copied in
/// from another database, whose writes continue this one's sequence
/// exactly, used to be replayed as this database's own. Its identity record
/// names the other database: refused. One of this database's WALs renamed
/// to another live number is refused too, by the number it was written as.
#[actix_rt::test]
async fn a_wal_from_another_database_is_refused_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    rewrite_manifest(dir.path(), |m| m.closed_at_seq = 0);
    let other = tempfile::tempdir().unwrap();
    populated(other.path()).await;
    let ours = largest_wal(dir.path());
    let original = std::fs::read(&ours).unwrap();
    std::fs::copy(largest_wal(other.path()), &ours).unwrap();
    assert_refused(dir.path(), ".wal", "another database").await;
    assert_check_reports(dir.path(), ".wal");

    std::fs::write(&ours, &original).unwrap();
    let name = ours.file_name().unwrap().to_string_lossy().into_owned();
    let number: u64 = name.trim_end_matches(".wal").parse().unwrap();
    let renamed = dir.path().join(format!("{:06}.wal", number + 1));
    std::fs::rename(&ours, &renamed).unwrap();
    assert_refused(dir.path(), ".wal", &format!("written as {name}")).await;
    std::fs::rename(&renamed, &ours).unwrap();

    let db = common::reopen(Options::new(dir.path())).await;
    let entries = all_entries(&db).await;
    assert_eq!(entries.len(), 300);
    assert!(entries.iter().all(|(k, v)| {
        let i: usize = std::str::from_utf8(&k[3..]).unwrap().parse().unwrap();
        *v == expected(i)
    }));
    db.close().await.unwrap();
}

/// A segment and a WAL copied in from another database: open refuses, and
/// repair (which open's message points to) moves both to `lost/` instead
/// of serving the other database's values; it used to merge them. With the
/// manifest gone too, the database is the one most segments name.
#[actix_rt::test]
async fn repair_moves_another_databases_files_to_lost() {
    let other = tempfile::tempdir().unwrap();
    let db = Db::open(Options::new(other.path())).await.unwrap();
    write(&db, 0..50, 7, true).await;
    write(&db, 50..60, 7, false).await;
    db.close().await.unwrap();
    for lose_manifest in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path()).await;
        let highest = names(dir.path())
            .iter()
            .filter_map(|n| n.split('.').next()?.parse::<u64>().ok())
            .max()
            .unwrap();
        let stray_segment = format!("{:06}.sst", highest + 10);
        let stray_wal = format!("{:06}.wal", highest + 11);
        std::fs::copy(&segments(other.path())[0], dir.path().join(&stray_segment)).unwrap();
        std::fs::copy(largest_wal(other.path()), dir.path().join(&stray_wal)).unwrap();
        assert_refused(dir.path(), "", "").await;
        if lose_manifest {
            std::fs::remove_file(dir.path().join("MANIFEST")).unwrap();
        }
        let report = repair_database(&Options::new(dir.path())).unwrap();
        let lost: Vec<&str> = report.lost.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            lost,
            [stray_segment.as_str(), stray_wal.as_str()],
            "{report:?}"
        );
        assert!(
            report
                .lost
                .iter()
                .all(|(_, why)| why.contains("written by database"))
        );
        assert_repaired_holds_everything(dir.path()).await;
    }
}

fn read_manifest(dir: &Path) -> naive_kv::proto::storage::Manifest {
    naive_kv::format::manifest::read_manifest(&naive_kv::fs::StdFs, dir)
        .unwrap()
        .unwrap()
}

fn wal_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(naive_kv::format::wal_file_name(number))
}

/// After a crash just after a WAL rotation, the oldest live WAL holds
/// writes and the newer one is still empty. Deleting the oldest used to
/// open cleanly without its writes: the manifest's number was only a lower
/// bound, and the empty WAL showed no hole in the sequence. The manifest
/// now names that WAL exactly, and open and the checker refuse.
#[actix_rt::test]
async fn the_oldest_live_wal_deleted_beside_an_empty_newer_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    rewrite_manifest(dir.path(), |m| m.closed_at_seq = 0);
    let manifest = read_manifest(dir.path());
    assert!(manifest.oldest_live_wal_exists);
    let oldest = wal_path(dir.path(), manifest.oldest_live_wal);
    let original = std::fs::read(&oldest).unwrap();
    assert!(!original.is_empty(), "keys 250..300 live in the oldest WAL");
    let newer = wal_path(dir.path(), manifest.next_file_number);
    std::fs::write(&newer, b"").unwrap();
    std::fs::remove_file(&oldest).unwrap();
    assert_refused(dir.path(), ".wal", "oldest live").await;
    assert_refused(dir.path(), ".wal", "naivekv-check --repair").await;
    assert_check_reports(dir.path(), ".wal");

    std::fs::write(&oldest, &original).unwrap();
    let db = common::reopen(Options::new(dir.path())).await;
    let entries = all_entries(&db).await;
    assert_eq!(entries.len(), 300);
    db.close().await.unwrap();
}

/// Through flushes and WAL rotations, every manifest the engine writes
/// names a WAL that exists, so the check above never refuses a healthy
/// database. A manifest from before the field (a lower bound only) still
/// opens.
#[actix_rt::test]
async fn every_manifest_names_its_oldest_live_wal_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Options::new(dir.path())).await.unwrap();
    for round in 0..4 {
        write(&db, round * 50..round * 50 + 50, 0, round % 2 == 0).await;
        let manifest = read_manifest(dir.path());
        assert!(manifest.oldest_live_wal_exists);
        let wal = wal_path(dir.path(), manifest.oldest_live_wal);
        assert!(wal.exists(), "round {round}: {} is missing", wal.display());
        let wals = common::files_ending(dir.path(), ".wal");
        assert_eq!(wals.first(), Some(&wal), "round {round}: {wals:?}");
    }
    db.close().await.unwrap();
    rewrite_manifest(dir.path(), |m| {
        m.oldest_live_wal_exists = false;
        m.oldest_live_wal -= 1;
    });
    let db = common::reopen(Options::new(dir.path())).await;
    assert_eq!(all_entries(&db).await.len(), 200);
    db.close().await.unwrap();
}

/// A manifest that records no database id (written before ids, or with the
/// field lost) takes the id its segments' footers name. It used to get a
/// fresh one: that open worked, and every later one refused the segments.
#[actix_rt::test]
async fn a_manifest_without_a_database_id_keeps_the_segments_id() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    let id = read_manifest(dir.path()).database_id;
    assert_ne!(id, 0);
    rewrite_manifest(dir.path(), |m| m.database_id = 0);
    for _ in 0..2 {
        let db = common::reopen(Options::new(dir.path())).await;
        assert_eq!(all_entries(&db).await.len(), 300);
        db.close().await.unwrap();
        assert_eq!(read_manifest(dir.path()).database_id, id);
    }
}

/// A checkpoint shares its source's database id and file numbering, so a
/// WAL written by a restored checkpoint, copied into the source under its
/// own name, continued the source's sequence exactly and was replayed as
/// the source's own after a crash. Each copy now has a WAL lineage of its
/// own, in every WAL's identity record: refused, and repair moves it to
/// `lost/`.
#[actix_rt::test]
async fn a_wal_from_a_restored_checkpoint_is_refused_by_its_source() {
    let root = tempfile::tempdir().unwrap();
    let (source, copy) = (root.path().join("source"), root.path().join("copy"));
    let db = Db::open(Options::new(&source)).await.unwrap();
    write(&db, 0..100, 0, false).await;
    db.checkpoint(&copy).await.unwrap();
    db.close().await.unwrap();
    rewrite_manifest(&source, |m| m.closed_at_seq = 0);

    let restored = Db::open(Options::new(&copy)).await.unwrap();
    write(&restored, 100..150, 0, false).await;
    restored.close().await.unwrap();
    let copied_wal = largest_wal(&copy);
    let name = copied_wal.file_name().unwrap().to_owned();
    assert!(
        !source.join(&name).exists(),
        "numbers are shared, not reused"
    );
    std::fs::copy(&copied_wal, source.join(&name)).unwrap();

    assert_refused(&source, ".wal", "another copy of this database").await;
    assert_check_reports(&source, ".wal");
    let report = repair_database(&Options::new(&source)).unwrap();
    assert!(
        report
            .lost
            .iter()
            .any(|(file, why)| file.ends_with(".wal")
                && why.contains("another copy of this database")),
        "{:?}",
        report.lost
    );
    let db = Db::open(Options::new(&source)).await.unwrap();
    assert_eq!(all_entries(&db).await.len(), 100);
    db.close().await.unwrap();
}

/// An older copy of one of the database's own segments, put back under a
/// new name: open refuses it ("move it out"), and repair moves it to
/// `lost/` rather than merging it, which brought keys deleted since back
/// (an outside probe found repair kept it and reported nothing).
#[actix_rt::test]
async fn repair_does_not_merge_an_older_copy_of_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    let oldest = segments(dir.path())[0].clone();
    let saved = std::fs::read(&oldest).unwrap();
    {
        let db = Db::open(Options::new(dir.path())).await.unwrap();
        for i in 0..50 {
            db.delete(key(i)).await.unwrap();
        }
        db.compact().await.unwrap();
        db.close().await.unwrap();
    }
    assert!(!oldest.exists(), "the compaction removed it");
    std::fs::write(dir.path().join("000999.sst"), &saved).unwrap();
    assert_refused(dir.path(), ".sst", "move it out").await;
    let report = repair_database(&Options::new(dir.path())).unwrap();
    let lost: Vec<&String> = report.lost.iter().map(|(name, _)| name).collect();
    assert_eq!(lost, ["000999.sst"], "{:?}", report.lost);
    let db = common::reopen(Options::new(dir.path())).await;
    for i in 0..300 {
        let got = db.get(key(i)).await.unwrap();
        let want = (i >= 50).then(|| expected(i));
        assert_eq!(got, want, "key {i}");
    }
    db.close().await.unwrap();
}

/// A MANIFEST copied in from another database: repair trusts the segments
/// and WALs, moves that MANIFEST to `lost/` and keeps every key (an
/// outside probe found it moved every real file to `lost/` instead).
#[actix_rt::test]
async fn repair_sets_aside_a_manifest_from_another_database() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    populated(other.path()).await;
    std::fs::copy(other.path().join("MANIFEST"), dir.path().join("MANIFEST")).unwrap();
    let report = repair_database(&Options::new(dir.path())).unwrap();
    let lost: Vec<&String> = report.lost.iter().map(|(name, _)| name).collect();
    assert_eq!(lost, ["MANIFEST"], "{:?}", report.lost);
    assert_eq!(report.keys, 300);
    assert_repaired_holds_everything(dir.path()).await;
}

/// A live segment that was only renamed (its own name free, the old
/// MANIFEST still listing it) is the only copy of its writes: repair
/// merges it rather than moving it to `lost/` as an older copy.
#[actix_rt::test]
async fn repair_merges_a_live_segment_that_was_only_renamed() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path()).await;
    let newest = segments(dir.path()).pop().unwrap();
    std::fs::rename(&newest, dir.path().join("000999.sst")).unwrap();
    let report = repair_database(&Options::new(dir.path())).unwrap();
    assert!(report.lost.is_empty(), "{:?}", report.lost);
    assert!(report.missing.is_empty(), "{:?}", report.missing);
    assert_eq!(report.keys, 300);
    assert_repaired_holds_everything(dir.path()).await;
}
