//! `run_server`'s flags: bad values are refused at start with one clear
//! error and exit code 2; sizes take units and hosts are names; a config
//! file sets flags, the command line overrides it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli_support;

use cli_support::{ServerProcess, refused};

#[test]
fn bad_values_are_refused_with_the_flag_named() {
    let cases: &[(&[&str], &str)] = &[
        (&["--workers", "0"], "--workers must be at least 1"),
        (
            &["--sync", "interval", "--sync-interval-ms", "0"],
            "--sync-interval-ms must be at least 1",
        ),
        (
            &["--memtable-bytes", "1"],
            "--memtable-bytes must be at least 1MiB",
        ),
        (&["--memtable-bytes", "64 parsecs"], "unknown size unit"),
        (
            &["--max-frame-bytes", "10"],
            "--max-frame-bytes must be at least",
        ),
        (
            &["--max-connections", "0"],
            "--max-connections must be at least 1",
        ),
        (
            &["--port", "1029", "--resp-port", "1029"],
            "--port and --resp-port are both 1029",
        ),
        (
            &["--resp-port", "7000", "--metrics-port", "7000"],
            "--resp-port and --metrics-port are both 7000",
        ),
        (&["--ip", "no-such-host.invalid"], "cannot resolve host"),
        // These once aborted (an allocation of 3.7 TB), panicked (too many
        // threads) or exited 1 after the banner.
        (
            &["--block-cache-bytes", "1000TB"],
            "--block-cache-bytes must be at most 1TiB",
        ),
        (&["--workers", "100000"], "--workers must be at most 1024"),
        (
            &["--l0-compaction-trigger", "0"],
            "--l0-compaction-trigger must be at least 1",
        ),
        (
            &["--l0-compaction-trigger", "101"],
            "--l0-compaction-trigger must be at most 100",
        ),
        (
            &["--idle-timeout", "0"],
            "--idle-timeout must be a positive number of seconds",
        ),
        (
            &["--frame-timeout", "0"],
            "--frame-timeout must be a positive number of seconds",
        ),
    ];
    for (args, message) in cases {
        let out = refused(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: "), "{args:?}: {stderr}");
        assert!(first.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn sizes_with_units_and_host_names_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--ip",
        "localhost",
        "--port",
        "0",
        "--memtable-bytes",
        "4MiB",
        "--block-cache-bytes",
        "1M",
        "--max-frame-bytes",
        "1GB",
        "--max-reply-bytes",
        "4MiB",
        "--max-server-reply-bytes",
        "256MiB",
        "--sync",
        "interval",
        "--sync-interval-ms",
        "1",
    ];
    let server = ServerProcess::start(&dir.path().join("db"), &args);
    assert!(server.native().ip().is_loopback(), "{}", server.listening);
    assert!(server.stop().success());
}

#[test]
fn the_startup_line_says_version_directory_sync_and_ports() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let args = ["--port", "0", "--sync", "none", "--resp-port", "0"];
    let server = ServerProcess::start(&db, &args);
    let banner = server.startup.first().unwrap().clone();
    let version = format!("NaiveKV {} starting", env!("CARGO_PKG_VERSION"));
    for part in [
        version.as_str(),
        &format!("directory {}", db.display()),
        "sync none",
        "memtable budget 64.0 MiB",
        "native port 0",
        "RESP port 0",
        "metrics port off",
    ] {
        assert!(banner.contains(part), "{part} missing from {banner}");
    }
    assert!(server.listening.contains("(RESP)"), "{}", server.listening);
    assert!(server.stop().success());
}

#[test]
fn a_config_file_sets_flags_and_the_command_line_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("naivekv.toml");
    let text = "# a service\nport = 0\nresp_port = 0\nsync = \"none\"\nmemtable-bytes = '4MiB'\n";
    std::fs::write(&config, text).unwrap();
    let config_arg = config.to_str().unwrap();
    let args = ["--config", config_arg, "--sync", "always"];
    let server = ServerProcess::start(&dir.path().join("db"), &args);
    let banner = server.startup.first().unwrap().clone();
    assert!(banner.contains("sync always"), "{banner}");
    assert!(banner.contains("memtable budget 4.0 MiB"), "{banner}");
    assert!(server.listening.contains("(RESP)"), "{}", server.listening);
    assert!(server.stop().success());

    std::fs::write(&config, "port = 0\nworkerz = 2\n").unwrap();
    let out = refused(&["--config", config_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 2: unknown key `workerz`"), "{stderr}");
}

/// `--max-connections` counts both ports together: with a limit of 2, one
/// native and one RESP connection fill it, and a third on either port is
/// refused with that port's "busy" answer.
#[test]
fn the_connection_limit_is_for_both_ports_together() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let args = ["--port", "0", "--resp-port", "0", "--max-connections", "2"];
    let server = ServerProcess::start(&dir.path().join("db"), &args);
    let ping_resp = |stream: &mut TcpStream| -> String {
        stream.write_all(b"PING\r\n").unwrap();
        let mut reply = [0u8; 64];
        let n = stream.read(&mut reply).unwrap();
        String::from_utf8_lossy(&reply[..n]).into_owned()
    };
    let native = TcpStream::connect(server.native()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut first_resp = TcpStream::connect(server.resp()).unwrap();
    assert_eq!(ping_resp(&mut first_resp), "+PONG\r\n");
    let mut second_resp = TcpStream::connect(server.resp()).unwrap();
    let busy = ping_resp(&mut second_resp);
    assert!(
        busy.starts_with("-ERR max number of clients reached"),
        "{busy:?}"
    );
    let mut extra_native = TcpStream::connect(server.native()).unwrap();
    let mut answer = Vec::new();
    extra_native
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let _ = extra_native.read_to_end(&mut answer);
    assert!(
        String::from_utf8_lossy(&answer).contains("too many connections"),
        "{answer:?}"
    );
    drop((native, first_resp, second_resp, extra_native));
    assert!(server.stop().success());
}

/// The checkpoint directory the server creates is owner-only, as the data
/// directory is: checkpoints are the database's data (it was 0755).
#[test]
fn the_checkpoint_directory_is_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups/naivekv");
    let root_arg = root.to_str().unwrap();
    let args = ["--port", "0", "--checkpoint-dir", root_arg];
    let server = ServerProcess::start(&dir.path().join("db"), &args);
    let mode = std::fs::metadata(&root).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    assert!(server.stop().success());
}

/// `--l0-compaction-trigger` reaches the engine: with a trigger of 2, the
/// flushes of 4 MB of writes through 1 MiB of memtables leave level 0
/// merged into level 1 (the default of 12 would leave about 8 segments
/// there).
#[test]
fn the_level_0_trigger_flag_merges_level_0_sooner() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--port",
        "0",
        "--resp-port",
        "0",
        "--sync",
        "none",
        "--memtable-bytes",
        "1MiB",
        "--l0-compaction-trigger",
        "2",
    ];
    let server = ServerProcess::start(&dir.path().join("db"), &args);
    let url = format!("redis://{}/", server.resp());
    let mut connection = redis::Client::open(url).unwrap().get_connection().unwrap();
    let value = vec![b'v'; 1000];
    for i in 0..4000 {
        let () = redis::cmd("SET")
            .arg(format!("key{i:05}"))
            .arg(&value)
            .query(&mut connection)
            .unwrap();
    }
    let field = |info: &str, name: &str| -> u64 {
        let line = info.lines().find(|l| l.starts_with(name)).unwrap();
        line.split(':').nth(1).unwrap().trim().parse().unwrap()
    };
    let deadline = std::time::Instant::now() + cli_support::PATIENCE;
    loop {
        let info: String = redis::cmd("INFO").query(&mut connection).unwrap();
        let (level0, level1) = (
            field(&info, "level_0_segments:"),
            field(&info, "level_1_segments:"),
        );
        if level0 < 2 && level1 >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "level 0 holds {level0} segments, level 1 {level1}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(server.stop().success());
}
