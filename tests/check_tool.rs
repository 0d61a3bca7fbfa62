//! The `naivekv-check` binary as an operator runs it: exit 0 and a clean
//! summary for a healthy database, one `problem:` line per damaged file and
//! exit 1 otherwise, and `--repair` bringing a refused database back.

use std::path::Path;
use std::process::{Command, Output};

use naive_kv::{Db, Options};

fn run_check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_naivekv-check"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn database_with_data(dir: &Path) {
    let db = Db::open(Options::new(dir)).await.unwrap();
    for i in 0..200 {
        db.put(format!("k{i:04}"), format!("v{i}")).await.unwrap();
    }
    db.flush().await.unwrap();
    for i in 200..250 {
        db.put(format!("k{i:04}"), format!("v{i}")).await.unwrap();
    }
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn check_passes_a_healthy_database() {
    let dir = tempfile::tempdir().unwrap();
    database_with_data(dir.path()).await;
    let output = run_check(&[dir.path().to_str().unwrap()]);
    let text = stdout(&output);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{text}{errors}");
    assert!(text.contains("0 problem(s)"), "{text}");
    assert!(!text.contains("problem:"), "{text}");
}

#[actix_rt::test]
async fn check_reports_a_lost_manifest_and_repair_brings_the_data_back() {
    let dir = tempfile::tempdir().unwrap();
    database_with_data(dir.path()).await;
    std::fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    let path = dir.path().to_str().unwrap();

    let output = run_check(&[path]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("problem: MANIFEST: "), "{text}");
    assert!(
        !text.contains(path),
        "the report names files relative to DIR: {text}"
    );

    let output = run_check(&["--repair", path]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("250 keys"), "{}", stdout(&output));

    let output = run_check(&[path]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let db = Db::open(Options::new(dir.path())).await.unwrap();
    for i in 0..250 {
        let value = db.get(format!("k{i:04}")).await.unwrap();
        assert_eq!(
            value.as_deref(),
            Some(format!("v{i}").as_bytes()),
            "k{i:04}"
        );
    }
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn check_refuses_an_open_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Options::new(dir.path())).await.unwrap();
    let output = run_check(&[dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("locked"), "{stderr}");
    db.close().await.unwrap();
}

/// A path that is not a database is refused, not checked clean: a
/// mistyped path that happens to exist used to pass with "0 problem(s)".
#[test]
fn a_directory_without_a_database_or_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let missing = dir.path().join("missing");
    for (path, words) in [
        (dir.path(), "not a NaiveKV database"),
        (file.as_path(), "not a directory"),
        (missing.as_path(), "no such directory"),
    ] {
        for repair in [false, true] {
            let mut args = vec![path.to_str().unwrap()];
            if repair {
                args.insert(0, "--repair");
            }
            let out = run_check(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
            assert!(stderr.contains(words), "{args:?}: {stderr}");
        }
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing created"
    );
}
