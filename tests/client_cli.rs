//! `run_client` as a subprocess: one-shot and stdin modes, exact output
//! lines and exit codes, and the no-server failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod server_support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use server_support::TestServer;

fn run_client(server_port: u16, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_run_client"))
        .args(["--ip", "127.0.0.1", "--port", &server_port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn one_shot_commands() {
    let server = TestServer::start();
    let port = server.addr.port();
    let out = run_client(port, &["set", "k", "hello world"], "");
    assert_eq!(
        (stdout(&out).as_str(), out.status.code()),
        ("OK\n", Some(0))
    );
    let out = run_client(port, &["get", "k"], "");
    assert_eq!(
        (stdout(&out).as_str(), out.status.code()),
        ("hello world\n", Some(0))
    );
    let out = run_client(port, &["remove", "k"], "");
    assert_eq!(
        (stdout(&out).as_str(), out.status.code()),
        ("OK\n", Some(0))
    );
    let out = run_client(port, &["get", "k"], "");
    assert_eq!(
        (stdout(&out).as_str(), out.status.code()),
        ("(nil)\n", Some(0))
    );
    let out = run_client(port, &["ping"], "");
    assert_eq!(stdout(&out), "PONG\n");
    let out = run_client(port, &["get"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("(error) usage: get KEY"));
}

#[test]
fn stdin_runs_one_command_per_line() {
    let server = TestServer::start();
    let port = server.addr.port();
    let script = "set a 1\nput b \"two words\"\n\nget b\nset c \"\\x00\\xff\\n\"\nget c\n\
                  scan\nrscan \"\" c\ndelete a\nscan a \"\" 1\nping\nexit\nget b\n";
    let out = run_client(port, &[], script);
    let want = "OK\nOK\ntwo words\nOK\n\\x00\\xff\\x0a\n\
                a\t1\nb\ttwo words\nc\t\\x00\\xff\\x0a\n\
                b\ttwo words\na\t1\nOK\nb\ttwo words\nPONG\n";
    assert_eq!(stdout(&out), want);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--history-file ''` turns the history off, as `--help` says (clap used
/// to refuse the empty value before the client saw it).
#[test]
fn an_empty_history_file_turns_history_off() {
    let server = TestServer::start();
    let out = run_client(
        server.addr.port(),
        &["--history-file", ""],
        "set a 1\nget a\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout(&out), "OK\n1\n");
}

#[test]
fn stats_print_name_value_lines() {
    let server = TestServer::start();
    let out = run_client(server.addr.port(), &["stats"], "");
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(!text.is_empty());
    for line in text.lines() {
        let (name, value) = line.split_once(' ').unwrap();
        assert!(!name.is_empty() && value.parse::<u64>().is_ok(), "{line}");
    }
}

#[test]
fn scan_follows_continuation_up_to_the_limit() {
    let server = TestServer::start();
    let port = server.addr.port();
    let script: String = (0..2500).map(|i| format!("set k{i:04} v\n")).collect();
    assert_eq!(run_client(port, &[], &script).status.code(), Some(0));
    let out = run_client(port, &["scan"], "");
    assert_eq!(stdout(&out).lines().count(), 2500);
    let out = run_client(port, &["rscan", "", "", "1500"], "");
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1500);
    assert_eq!(text.lines().next(), Some("k2499\tv"));
    assert_eq!(text.lines().last(), Some("k1000\tv"));
}

#[test]
fn a_failed_command_makes_exit_code_one() {
    let server = TestServer::start();
    let out = run_client(server.addr.port(), &[], "ping\nfrobnicate\nping\n");
    assert_eq!(stdout(&out), "PONG\nPONG\n");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr, "(error) unknown command 'frobnicate' (try help)\n");
}

#[test]
fn no_server_is_one_line_and_exit_one() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let out = run_client(port, &["ping"], "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[test]
fn short_flags_and_host_names_as_in_redis_cli() {
    let server = TestServer::start();
    let port = server.addr.port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_run_client"))
        .args(["-h", "localhost", "-p", &port, "ping"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "PONG\n", "{out:?}");
    let help = Command::new(env!("CARGO_BIN_EXE_run_client"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("-h, --ip <IP>"), "{}", stdout(&help));
}

#[test]
fn single_quotes_empty_values_and_comments() {
    let server = TestServer::start();
    let port = server.addr.port();
    let script = "# a comment\n  # another\nset 'two words' ''\nget 'two words'\n\
                  set k 'it\\'s'\nget k\nscan 't' 'u'\n";
    let out = run_client(port, &[], script);
    assert_eq!(stdout(&out), "OK\n\"\"\nOK\nit's\ntwo words\t\"\"\n");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn expiry_commands() {
    let server = TestServer::start();
    let port = server.addr.port();
    let script = "set k v ex 60\nttl missing\nset p v\nttl p\nexpire missing 5\nexpire p 100\n\
                  persist p\npersist p\nttl p\nset gone v px 1\n";
    let out = run_client(port, &[], script);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines[0], "OK");
    assert_eq!(
        lines[1..].to_vec(),
        [
            "(nil)",
            "OK",
            "(no expiry)",
            "0",
            "1",
            "1",
            "0",
            "(no expiry)",
            "OK"
        ]
    );
    let out = run_client(port, &["ttl", "k"], "");
    let ms: u64 = stdout(&out).trim().trim_end_matches(" ms").parse().unwrap();
    assert!((50_000..=60_000).contains(&ms), "{ms}");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = run_client(port, &["get", "gone"], "");
    assert_eq!(stdout(&out), "(nil)\n");
    let out = run_client(port, &["set", "k", "v", "ex"], "");
    assert_eq!(out.status.code(), Some(1));
}

/// On a terminal the shell prompts with the original client's `>>> ` and
/// takes its words (`set`, `get`, `remove`, `exit`). `script` (util-linux)
/// gives the client a pseudo-terminal; the test says so and passes where it
/// is not installed.
#[test]
fn a_terminal_gets_the_original_prompt_and_words() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let server = TestServer::start();
    let client = format!(
        "{} --port {} --history-file ''",
        env!("CARGO_BIN_EXE_run_client"),
        server.addr.port()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &client, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The line editor discards what was typed before its prompt, as a
    // terminal does: each line is sent once the prompt before it is shown.
    let mut stdout = child.stdout.take().unwrap();
    let (chunks, arrived) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = std::io::Read::read(&mut stdout, &mut buffer) {
            if chunks.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let prompt = format!("naivekv 127.0.0.1:{} >>> ", server.addr.port());
    let mut stdin = child.stdin.take().unwrap();
    let mut seen = Vec::new();
    for (shown, line) in ["set k v1", "get k", "remove k", "get k", "exit"]
        .iter()
        .enumerate()
    {
        while String::from_utf8_lossy(&seen).matches(&prompt).count() <= shown {
            let chunk = arrived
                .recv_timeout(std::time::Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no prompt: {}", String::from_utf8_lossy(&seen)));
            seen.extend(chunk);
        }
        stdin.write_all(format!("{line}\r").as_bytes()).unwrap();
    }
    let status = child.wait().unwrap();
    drop(stdin);
    while let Ok(chunk) = arrived.recv_timeout(std::time::Duration::from_secs(1)) {
        seen.extend(chunk);
    }
    let out = Output {
        status,
        stdout: seen,
        stderr: Vec::new(),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(text.matches(&prompt).count(), 5, "{text}");
    let answers: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| ["OK", "v1", "(nil)"].contains(l))
        .collect();
    assert_eq!(answers, ["OK", "v1", "OK", "(nil)"], "{text}");
}

/// `expire KEY 0` (or less) deletes the key at once, as in Redis; the shell
/// used to refuse it.
#[test]
fn expire_of_zero_seconds_deletes_the_key() {
    let server = TestServer::start();
    let script = "set k v\nexpire k 60\nexpire k 0\nget k\nexpire k 0\n";
    let out = run_client(server.addr.port(), &[], script);
    assert_eq!(stdout(&out), "OK\n1\n1\n(nil)\n0\n");
    assert_eq!(out.status.code(), Some(0));
}
