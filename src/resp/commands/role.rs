//! `ROLE`, in Redis's reply shape, from the cluster's figures:
//!
//! - the leader: `["master", offset, [[ip, port, offset], ...]]`, the
//!   offset being its applied log index and each replica a member that
//!   serves RESP, with its RESP address and the log index it is known to
//!   hold (its matched index, as strings, as Redis gives them);
//! - any other member: `["slave", host, port, state, offset]`, the
//!   leader's RESP address (`""` and 0 while it is not known), `connected`
//!   while a leader is known (`connecting` during an election) and its own
//!   applied log index;
//! - a single node (no `--cluster`): `["master", 0, []]`.
//!
//! Addresses are learned by asking each member (`ClusterStatus`'s
//! `resp_addr`); a member whose RESP address is unknown (no `--resp-port`,
//! an unspecified `--ip`, not answered yet) is left out of the replicas.

use crate::cluster::ClusterStatus;
use crate::resp::reply::Reply;

/// The ROLE reply for `status` (`None`: a single node).
pub fn reply(status: Option<&ClusterStatus>) -> Reply {
    let Some(status) = status else {
        return master(0, Vec::new());
    };
    let offset = status.last_applied_index.unwrap_or(0);
    if status.role == "leader" {
        let replicas = status
            .members
            .iter()
            .filter(|m| m.id != status.node_id)
            .filter_map(|m| {
                let addr = m.resp_addr?;
                Some(Reply::Array(vec![
                    Reply::text(addr.ip().to_string()),
                    Reply::text(addr.port().to_string()),
                    Reply::text(m.matched_index.unwrap_or(0).to_string()),
                ]))
            })
            .collect();
        return master(offset, replicas);
    }
    let leader = status
        .leader
        .and_then(|id| status.members.iter().find(|m| m.id == id))
        .and_then(|m| m.resp_addr);
    let (host, port) = leader.map_or((String::new(), 0), |a| (a.ip().to_string(), a.port()));
    let state = if status.leader.is_some() {
        "connected"
    } else {
        "connecting"
    };
    Reply::Array(vec![
        Reply::text("slave"),
        Reply::text(host),
        Reply::Integer(i64::from(port)),
        Reply::text(state),
        Reply::Integer(as_i64(offset)),
    ])
}

fn master(offset: u64, replicas: Vec<Reply>) -> Reply {
    Reply::Array(vec![
        Reply::text("master"),
        Reply::Integer(as_i64(offset)),
        Reply::Array(replicas),
    ])
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::MemberStatus;

    fn member(id: u64, resp: Option<&str>, matched: Option<u64>) -> MemberStatus {
        MemberStatus {
            id,
            addr: format!("h:700{id}"),
            voter: true,
            matched_index: matched,
            lag: matched.map(|m| 10 - m),
            client_addr: None,
            resp_addr: resp.map(|a| a.parse().unwrap()),
        }
    }

    fn status(node_id: u64, role: &str, leader: Option<u64>) -> ClusterStatus {
        ClusterStatus {
            node_id,
            leader,
            term: 2,
            role: role.into(),
            last_log_index: Some(10),
            last_applied_index: Some(9),
            members: vec![
                member(1, Some("127.0.0.1:6379"), Some(10)),
                member(2, Some("127.0.0.1:6380"), Some(8)),
                member(3, None, Some(10)),
            ],
        }
    }

    #[test]
    fn a_single_node_is_a_master_with_no_replicas() {
        let expected = Reply::Array(vec![
            Reply::text("master"),
            Reply::Integer(0),
            Reply::Array(vec![]),
        ]);
        assert_eq!(reply(None), expected);
    }

    #[test]
    fn the_leader_lists_the_replicas_it_can_name_with_their_matched_index() {
        let replica = Reply::Array(vec![
            Reply::text("127.0.0.1"),
            Reply::text("6380"),
            Reply::text("8"),
        ]);
        let expected = Reply::Array(vec![
            Reply::text("master"),
            Reply::Integer(9),
            Reply::Array(vec![replica]),
        ]);
        assert_eq!(reply(Some(&status(1, "leader", Some(1)))), expected);
    }

    #[test]
    fn a_follower_names_the_leaders_resp_address_and_its_own_offset() {
        let expected = |host: &str, port, state: &str| {
            Reply::Array(vec![
                Reply::text("slave"),
                Reply::text(host),
                Reply::Integer(port),
                Reply::text(state),
                Reply::Integer(9),
            ])
        };
        let follower = status(3, "follower", Some(1));
        assert_eq!(
            reply(Some(&follower)),
            expected("127.0.0.1", 6379, "connected")
        );
        let electing = status(3, "candidate", None);
        assert_eq!(reply(Some(&electing)), expected("", 0, "connecting"));
        // A leader whose RESP address is not known yet.
        let unknown = status(1, "follower", Some(3));
        assert_eq!(reply(Some(&unknown)), expected("", 0, "connected"));
    }
}
