//! `run_server --cluster ... --resp-port P`: three real processes serve
//! Redis clients; a SET through one node reads back through the others,
//! and exactly one node says `role:master` in `INFO replication`; each
//! node's log says which role it took, in which term, under which leader.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cluster_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster_support::free_ports;

/// The children, killed when the test ends however it ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn connect(port: u16) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .ok()?;
    con.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    Some(con)
}

/// `args` through `port`, retried until it succeeds or `within` passes.
fn until_ok<T: redis::FromRedisValue>(port: u16, args: &[&str], within: Duration) -> T {
    let deadline = Instant::now() + within;
    loop {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        let answer = connect(port).map(|mut con| command.query::<T>(&mut con));
        match answer {
            Some(Ok(value)) => return value,
            other if Instant::now() >= deadline => {
                let error = other.map(|r| r.err().map(|e| e.to_string()));
                panic!("{args:?} through {port}: {error:?}");
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn three_processes_serve_redis_clients_through_the_cluster() {
    let ports = free_ports(9);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let secret = dirs[0].path().join("cluster-secret");
    std::fs::write(&secret, "a process cluster's secret\n").unwrap();
    let list: Vec<String> = (0..3)
        .map(|i| format!("{}=127.0.0.1:{}", i + 1, ports[6 + i]))
        .collect();
    let list = list.join(",");
    let mut children = Processes(Vec::new());
    for (i, dir) in dirs.iter().enumerate() {
        let child = Command::new(env!("CARGO_BIN_EXE_run_server"))
            .arg("--directory")
            .arg(dir.path().join("data"))
            .args(["--port", &ports[i].to_string()])
            .args(["--resp-port", &ports[3 + i].to_string()])
            .args(["--node-id", &(i + 1).to_string()])
            .args(["--peer-port", &ports[6 + i].to_string()])
            .args(["--cluster", &list])
            .arg("--cluster-secret-file")
            .arg(&secret)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .unwrap();
        children.0.push(child);
    }
    let resp = &ports[3..6];
    let within = Duration::from_secs(30);
    let set: String = until_ok(resp[0], &["SET", "k", "through node 1"], within);
    assert_eq!(set, "OK");
    for &port in &resp[1..] {
        let got: Option<String> = until_ok(port, &["GET", "k"], within);
        assert_eq!(got.as_deref(), Some("through node 1"));
    }
    let incr: i64 = until_ok(resp[2], &["INCR", "n"], within);
    assert_eq!(incr, 1);
    let masters = resp
        .iter()
        .filter(|&&port| {
            let info: String = until_ok(port, &["INFO", "replication"], within);
            info.contains("role:master\r\n")
        })
        .count();
    assert_eq!(masters, 1);
    let logs: Vec<String> = dirs
        .iter()
        .map(|dir| std::fs::read_to_string(dir.path().join("log")).unwrap())
        .collect();
    let leading = logs
        .iter()
        .filter(|log| log.contains(": Leader in term"))
        .count();
    assert!(leading >= 1, "no node logged that it leads: {logs:?}");
    for (i, log) in logs.iter().enumerate() {
        let line = format!("cluster node {}: ", i + 1);
        assert!(
            log.contains(&line) && log.contains(", leader node "),
            "node {}: {log}",
            i + 1
        );
    }
}
