//! `INFO [section ...]`: Redis's sections with NaiveKV's real figures.
//!
//! Sections: `server clients memory persistence stats replication cpu
//! commandstats errorstats keyspace engine` (the last is NaiveKV's own:
//! every engine counter). No argument, `default`: all but `commandstats`;
//! `all` and `everything`: all of them. Names are case-insensitive; a
//! section named twice is given once; an unknown name gives nothing.
//!
//! `used_memory` is the process's resident set (NaiveKV does not count its
//! allocations); `used_cpu_*` come from `getrusage`.

use std::fmt::Write as _;

use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;

use super::server::REDIS_VERSION;
use super::{Engine, keys};
use crate::resp::database::Database;
use crate::resp::reply::Reply;

/// Every section, in the order Redis prints them.
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "commandstats",
    "errorstats",
    "keyspace",
    "engine",
];

/// The sections `names` ask for, in [`SECTIONS`] order.
fn wanted(names: &[String]) -> Vec<&'static str> {
    let default = names.is_empty() || names.iter().any(|n| n == "default");
    let all = names.iter().any(|n| n == "all" || n == "everything");
    SECTIONS
        .iter()
        .copied()
        .filter(|s| all || (default && *s != "commandstats") || names.iter().any(|n| n == s))
        .collect()
}

/// `INFO replication` on a cluster node: Redis's `role` (`master` on the
/// leader, `slave` elsewhere), `master_host`/`master_port` (the leader's
/// RESP address, once known), `master_link_status` (`up` while a leader is
/// known), `connected_slaves` and one `slaveN` line per other member (with
/// `ip=`/`port=`, its RESP address, once known), then the figures
/// `cluster status` shows, prefixed `cluster_`: this node, the leader's id
/// and peer address, the term, Raft role, log and applied indexes, and per
/// member its peer address, voter flag, native and RESP addresses (once
/// known: `client_addr=`, `resp_addr=`) and, on the leader, matched index
/// and lag.
pub fn cluster_replication(status: &crate::cluster::ClusterStatus) -> String {
    let leading = status.role == "leader";
    let addr_of = |id| {
        status
            .members
            .iter()
            .find(|m| Some(m.id) == id)
            .map_or(String::new(), |m| m.addr.clone())
    };
    let others: Vec<_> = status
        .members
        .iter()
        .filter(|m| m.id != status.node_id)
        .collect();
    let mut out = String::new();
    let _ = write!(out, "role:{}\r\n", if leading { "master" } else { "slave" });
    if !leading {
        let leader = others.iter().find(|m| Some(m.id) == status.leader);
        if let Some(addr) = leader.and_then(|m| m.resp_addr) {
            let _ = write!(
                out,
                "master_host:{}\r\nmaster_port:{}\r\n",
                addr.ip(),
                addr.port()
            );
        }
        let link = if status.leader.is_some() {
            "up"
        } else {
            "down"
        };
        let _ = write!(out, "master_link_status:{link}\r\n");
    }
    let _ = write!(
        out,
        "connected_slaves:{}\r\n",
        if leading { others.len() } else { 0 }
    );
    if leading {
        for (i, m) in others.iter().enumerate() {
            let state = if m.lag.is_some_and(|lag| lag == 0) {
                "online"
            } else {
                "catching_up"
            };
            let _ = write!(out, "slave{i}:id={},", m.id);
            if let Some(addr) = m.resp_addr {
                let _ = write!(out, "ip={},port={},", addr.ip(), addr.port());
            }
            let _ = write!(
                out,
                "addr={},state={state},offset={},lag={}\r\n",
                m.addr,
                m.matched_index.unwrap_or(0),
                m.lag.unwrap_or(0)
            );
        }
    }
    let applied = status.last_applied_index.unwrap_or(0);
    let _ = write!(out, "master_repl_offset:{applied}\r\n");
    let _ = write!(
        out,
        "cluster_node_id:{}\r\ncluster_role:{}\r\ncluster_leader_id:{}\r\n\
         cluster_leader_addr:{}\r\ncluster_term:{}\r\ncluster_last_log_index:{}\r\n\
         cluster_last_applied_index:{applied}\r\ncluster_members:{}\r\n",
        status.node_id,
        status.role,
        status.leader.unwrap_or(0),
        addr_of(status.leader),
        status.term,
        status.last_log_index.unwrap_or(0),
        status.members.len(),
    );
    for m in &status.members {
        let _ = write!(
            out,
            "cluster_member_{}:addr={},voter={}",
            m.id,
            m.addr,
            u8::from(m.voter)
        );
        if let Some(addr) = m.client_addr {
            let _ = write!(out, ",client_addr={addr}");
        }
        if let Some(addr) = m.resp_addr {
            let _ = write!(out, ",resp_addr={addr}");
        }
        if let Some(lag) = m.lag {
            let _ = write!(
                out,
                ",matched_index={},lag={lag}",
                m.matched_index.unwrap_or(0)
            );
        }
        out.push_str("\r\n");
    }
    out
}

/// Answers `INFO` with `sections` (lower-cased arguments).
pub fn info(engine: &Engine, sections: Vec<String>) -> LocalBoxFuture<'static, Reply> {
    let engine = engine.clone();
    async move {
        let mut text = String::new();
        for section in wanted(&sections) {
            // As Redis: a blank line between sections, none after the last.
            if !text.is_empty() {
                text.push_str("\r\n");
            }
            if let Err(reply) = write_section(&engine, section, &mut text).await {
                return reply;
            }
        }
        Reply::text(text)
    }
    .boxed_local()
}

async fn write_section(engine: &Engine, section: &str, out: &mut String) -> Result<(), Reply> {
    let title = format!("{}{}", section[..1].to_ascii_uppercase(), &section[1..]);
    let _ = write!(out, "# {title}\r\n");
    let info = &engine.info;
    let stats = &engine.commands;
    let lines = match section {
        "server" => format!(
            "redis_version:{REDIS_VERSION}\r\nnaive_kv_version:{}\r\nredis_mode:standalone\r\n\
             os:{} {}\r\narch_bits:64\r\nmultiplexing_api:epoll\r\nprocess_id:{}\r\n\
             tcp_port:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            info.port,
            info.started.elapsed().as_secs(),
            info.started.elapsed().as_secs() / 86_400,
        ),
        "clients" => format!(
            "connected_clients:{}\r\nblocked_clients:0\r\ntracking_clients:0\r\n",
            engine.requests.open_connections()
        ),
        "memory" => {
            let rss = resident_bytes();
            format!(
                "used_memory:{rss}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\n\
                 maxmemory:0\r\nmaxmemory_policy:noeviction\r\nmem_allocator:libc\r\n",
                human(rss)
            )
        }
        "persistence" => super::persistence::info_section(&engine.checkpoints, &engine.info),
        "stats" => format!(
            "total_commands_processed:{}\r\ntotal_error_replies:{}\r\n",
            stats.total_calls(),
            stats.total_errors()
        ),
        "replication" => match engine.store.cluster() {
            None => "role:master\r\nconnected_slaves:0\r\nmaster_repl_offset:0\r\n\
                     second_repl_offset:-1\r\nrepl_backlog_active:0\r\n"
                .to_string(),
            Some(node) => cluster_replication(&node.status()),
        },
        "cpu" => cpu_lines(),
        "commandstats" => {
            let mut lines = String::new();
            stats.render_commands(&mut lines);
            lines
        }
        "errorstats" => {
            let mut lines = String::new();
            stats.render_errors(&mut lines);
            lines
        }
        "keyspace" => {
            let mut lines = String::new();
            for index in 0..engine.databases {
                let database = Database {
                    index,
                    count: engine.databases,
                };
                match keys::count_keys(&engine.db(), database).await? {
                    0 => {}
                    n => {
                        let _ = write!(lines, "db{index}:keys={n},expires=0,avg_ttl=0\r\n");
                    }
                }
            }
            lines
        }
        _ => engine_lines(engine).await?,
    };
    out.push_str(&lines);
    Ok(())
}

async fn engine_lines(engine: &Engine) -> Result<String, Reply> {
    let stats = engine
        .db()
        .stats()
        .await
        .map_err(|e| super::engine_error(&e))?;
    let mut lines = String::new();
    for (name, value) in stats.counters {
        let _ = write!(lines, "{name}:{value}\r\n");
    }
    Ok(lines)
}

/// The process's resident set size, from `/proc/self/statm` (0 where
/// there is none).
fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    pages * 4096
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2}G", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.2}M", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.2}K", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}

/// `used_cpu_sys`, `used_cpu_user` and their `_children` twins, in seconds.
fn cpu_lines() -> String {
    let seconds = |who| {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes a whole rusage into the pointer it is
        // given and reads nothing from it.
        let rc = unsafe { libc::getrusage(who, usage.as_mut_ptr()) };
        if rc != 0 {
            return (0.0, 0.0);
        }
        // SAFETY: zeroed is a valid rusage, and getrusage filled it.
        let usage = unsafe { usage.assume_init() };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        (secs(usage.ru_stime), secs(usage.ru_utime))
    };
    let (sys, user) = seconds(libc::RUSAGE_SELF);
    let (sys_children, user_children) = seconds(libc::RUSAGE_CHILDREN);
    format!(
        "used_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\n\
         used_cpu_sys_children:{sys_children:.6}\r\nused_cpu_user_children:{user_children:.6}\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn sections_are_chosen_as_redis_chooses_them() {
        let default = wanted(&[]);
        assert!(default.contains(&"cpu") && default.contains(&"memory"));
        assert!(!default.contains(&"commandstats"));
        assert_eq!(wanted(&names(&["cpu"])), vec!["cpu"]);
        assert_eq!(wanted(&names(&["cpu", "sentinel"])), vec!["cpu"]);
        assert_eq!(wanted(&names(&["cpu", "all"])), SECTIONS.to_vec());
        assert_eq!(wanted(&names(&["cpu", "default"])), default);
        assert_eq!(wanted(&names(&["commandstats"])), vec!["commandstats"]);
        assert!(wanted(&names(&["everything"])).contains(&"commandstats"));
    }

    #[test]
    fn cluster_replication_names_roles_as_redis_and_carries_the_cluster_figures() {
        use crate::cluster::{ClusterStatus, MemberStatus};
        let member = |id, lag: Option<u64>| MemberStatus {
            id,
            addr: format!("h:700{id}"),
            voter: true,
            matched_index: lag.map(|l| 10 - l),
            lag,
            client_addr: None,
            resp_addr: None,
        };
        let leader = ClusterStatus {
            node_id: 1,
            leader: Some(1),
            term: 4,
            role: "leader".into(),
            last_log_index: Some(10),
            last_applied_index: Some(10),
            members: vec![member(1, Some(0)), member(2, Some(0)), member(3, Some(3))],
        };
        let text = cluster_replication(&leader);
        assert!(
            text.starts_with("role:master\r\nconnected_slaves:2\r\n"),
            "{text}"
        );
        assert!(
            text.contains("slave1:id=3,addr=h:7003,state=catching_up,offset=7,lag=3\r\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "cluster_leader_id:1\r\ncluster_leader_addr:h:7001\r\ncluster_term:4\r\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("cluster_member_3:addr=h:7003,voter=1,matched_index=7,lag=3\r\n"),
            "{text}"
        );
        let follower = ClusterStatus {
            node_id: 2,
            leader: None,
            role: "follower".into(),
            members: vec![member(1, None), member(2, None)],
            ..leader
        };
        let text = cluster_replication(&follower);
        assert!(
            text.starts_with("role:slave\r\nmaster_link_status:down\r\nconnected_slaves:0\r\n"),
            "{text}"
        );
        assert!(
            text.contains("cluster_leader_id:0\r\ncluster_leader_addr:\r\n"),
            "{text}"
        );
        assert!(
            text.contains("cluster_member_1:addr=h:7001,voter=1\r\n"),
            "{text}"
        );
    }

    #[test]
    fn cluster_replication_gives_the_client_addresses_it_knows() {
        use crate::cluster::{ClusterStatus, MemberStatus};
        let member = |id: u64, known: bool| MemberStatus {
            id,
            addr: format!("h:700{id}"),
            voter: true,
            matched_index: None,
            lag: None,
            client_addr: known.then(|| format!("10.0.0.{id}:1024").parse().unwrap()),
            resp_addr: known.then(|| format!("10.0.0.{id}:6379").parse().unwrap()),
        };
        let follower = ClusterStatus {
            node_id: 2,
            leader: Some(1),
            term: 4,
            role: "follower".into(),
            last_log_index: Some(10),
            last_applied_index: Some(10),
            members: vec![member(1, true), member(2, false)],
        };
        let text = cluster_replication(&follower);
        assert!(
            text.starts_with(
                "role:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:up\r\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "cluster_member_1:addr=h:7001,voter=1,client_addr=10.0.0.1:1024,resp_addr=10.0.0.1:6379\r\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("cluster_member_2:addr=h:7002,voter=1\r\n"),
            "{text}"
        );
        let leader = ClusterStatus {
            node_id: 2,
            leader: Some(2),
            role: "leader".into(),
            members: vec![
                MemberStatus {
                    lag: Some(0),
                    matched_index: Some(10),
                    ..member(1, true)
                },
                member(2, false),
            ],
            ..follower
        };
        let text = cluster_replication(&leader);
        assert!(
            text.contains(
                "slave0:id=1,ip=10.0.0.1,port=6379,addr=h:7001,state=online,offset=10,lag=0\r\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn cpu_and_memory_carry_figures() {
        assert!(resident_bytes() > 0);
        let cpu = cpu_lines();
        assert!(cpu.starts_with("used_cpu_sys:"), "{cpu}");
        assert_eq!(cpu.matches("used_cpu_user_children").count(), 1);
        assert_eq!(human(3 << 20), "3.00M");
    }
}
