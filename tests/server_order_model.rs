//! Strict per-connection order on the native port: long randomized
//! pipelines of puts, gets, deletes, batches and scans over a few keys,
//! written without waiting, are checked reply by reply against a model of
//! sequential execution. Every value is unique, so a read that saw a write
//! sent after it, or missed one sent before it, fails the check. The
//! database syncs every write, so acknowledgements come late and reads are
//! held often. Scans cover part of the key space as often as all of it: a
//! read waits only for earlier writes inside what it reads, so a scan that
//! overtook a write inside its range, or a get one of its key, would fail.
//! Expire and Persist read a key's entry and write it back: an outside probe
//! found them reading before an earlier write to their key was applied, and
//! (retrying after a conflict) after a later one, deleting an acknowledged
//! put.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod server_support;

use std::collections::BTreeMap;
use std::io::Write;

use bytes::Bytes;
use naive_kv::proto::{self, mutation::Op, request::Command, response::Reply};
use server_support::{TestServer, read_response, request};

/// Each key's value, and whether it has an expiry.
type Model = BTreeMap<Bytes, (Bytes, bool)>;

/// An hour from now: far enough to never pass during the test.
const HOUR_MS: u64 = 3_600_000;

/// A xorshift generator: the same pipeline for the same seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn key(rng: &mut Rng) -> Bytes {
    Bytes::from(format!("k{}", rng.below(4)))
}

fn random_command(rng: &mut Rng, i: u64) -> Command {
    let value = || Bytes::from(format!("v{i}"));
    match rng.below(24) {
        20 => Command::Expire(proto::Expire {
            key: key(rng),
            ttl_ms: HOUR_MS,
            ..Default::default()
        }),
        // Long past: deletes the key.
        21 => Command::Expire(proto::Expire {
            key: key(rng),
            expire_at_ms: 1,
            ..Default::default()
        }),
        22 => Command::Persist(proto::Persist { key: key(rng) }),
        0..=5 => Command::Put(proto::Put {
            key: key(rng),
            value: value(),
            ..Default::default()
        }),
        6..=10 => Command::Get(proto::Get { key: key(rng) }),
        11..=12 => Command::Delete(proto::Delete { key: key(rng) }),
        13..=15 => {
            let mutations = (0..1 + rng.below(3))
                .map(|m| {
                    let key = key(rng);
                    let op = if rng.below(3) == 0 {
                        Op::Delete(proto::Delete { key })
                    } else {
                        let value = Bytes::from(format!("v{i}.{m}"));
                        Op::Put(proto::Put {
                            key,
                            value,
                            ..Default::default()
                        })
                    };
                    proto::Mutation { op: Some(op) }
                })
                .collect();
            Command::Batch(proto::Batch { mutations })
        }
        _ => {
            // From k0..k3 or the start, to a later one or the end.
            let from = rng.below(4);
            let to = from + 1 + rng.below(4);
            let bound = |n: u64| match n {
                1..=3 => Bytes::from(format!("k{n}")),
                _ => Bytes::new(),
            };
            Command::Scan(proto::Scan {
                start: bound(from),
                end: bound(to),
                reverse: rng.below(2) == 0,
                ..proto::Scan::default()
            })
        }
    }
}

/// Applies `command` to the model and gives the reply sequential execution
/// would give.
fn expected(model: &mut Model, command: &Command) -> Reply {
    let done = Reply::Done(proto::Done {});
    match command {
        Command::Put(p) => {
            model.insert(p.key.clone(), (p.value.clone(), false));
            done
        }
        Command::Expire(e) => {
            let found = model.contains_key(&e.key);
            if e.expire_at_ms == 1 {
                model.remove(&e.key);
            } else if let Some((_, expires)) = model.get_mut(&e.key) {
                *expires = true;
            }
            Reply::Flag(proto::Flag { value: found })
        }
        Command::Persist(p) => {
            let had = model
                .get_mut(&p.key)
                .is_some_and(|(_, expires)| std::mem::replace(expires, false));
            Reply::Flag(proto::Flag { value: had })
        }
        Command::Delete(d) => {
            model.remove(&d.key);
            done
        }
        Command::Batch(b) => {
            for m in &b.mutations {
                match &m.op {
                    Some(Op::Put(p)) => model.insert(p.key.clone(), (p.value.clone(), false)),
                    Some(Op::Delete(d)) => model.remove(&d.key),
                    None => None,
                };
            }
            done
        }
        Command::Get(g) => Reply::Value(proto::Value {
            found: model.contains_key(&g.key),
            value: model
                .get(&g.key)
                .map(|(v, _)| v.clone())
                .unwrap_or_default(),
        }),
        Command::Scan(s) => {
            let in_range = |key: &Bytes| key >= &s.start && (s.end.is_empty() || key < &s.end);
            let mut entries: Vec<_> = model
                .iter()
                .filter(|(key, _)| in_range(key))
                .map(|(key, (value, _))| proto::KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect();
            if s.reverse {
                entries.reverse();
            }
            Reply::Scan(proto::ScanResult {
                entries,
                continuation: Bytes::new(),
            })
        }
        other => panic!("not generated: {other:?}"),
    }
}

#[test]
fn randomized_pipelines_match_sequential_execution() {
    let server = TestServer::start_syncing();
    let mut stream = server.connect();
    let mut model = Model::new();
    let mut id = 0;
    for seed in 1..=4u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let commands: Vec<(u64, Command)> = (0..1500)
            .map(|_| {
                id += 1;
                (id, random_command(&mut rng, id))
            })
            .collect();
        let bytes: Vec<u8> = commands
            .iter()
            .flat_map(|(id, c)| request(*id, c.clone()))
            .collect();
        let mut writer = stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || writer.write_all(&bytes).unwrap());
        for (id, command) in &commands {
            let response = read_response(&mut stream).expect("a reply");
            assert_eq!(response.id, *id, "replies in request order");
            let want = expected(&mut model, command);
            assert_eq!(response.reply, Some(want), "request {id}: {command:?}");
        }
        sender.join().unwrap();
    }
}

/// Rounds that open with a run of gets on a connection with nothing in
/// flight (the previous round's replies all read): those gets are answered
/// together before their turn, and must still see exactly the writes sent
/// before them, the ones the round's own later requests make included.
#[test]
fn gets_read_together_see_exactly_the_writes_before_them() {
    let server = TestServer::start_syncing();
    let mut stream = server.connect();
    let mut model = Model::new();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut id = 0;
    for round in 0..300 {
        let mut commands: Vec<(u64, Command)> = Vec::new();
        for _ in 0..2 + rng.below(30) {
            id += 1;
            commands.push((id, Command::Get(proto::Get { key: key(&mut rng) })));
        }
        for _ in 0..rng.below(12) {
            id += 1;
            commands.push((id, random_command(&mut rng, id)));
        }
        let bytes: Vec<u8> = commands
            .iter()
            .flat_map(|(id, c)| request(*id, c.clone()))
            .collect();
        stream.write_all(&bytes).unwrap();
        for (id, command) in &commands {
            let response = read_response(&mut stream).expect("a reply");
            assert_eq!(response.id, *id, "replies in request order");
            let want = expected(&mut model, command);
            assert_eq!(
                response.reply,
                Some(want),
                "round {round}, request {id}: {command:?}"
            );
        }
    }
}
