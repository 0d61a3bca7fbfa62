//! Strict per-connection order on the Redis port: long randomized pipelines
//! of SET, GET, DEL, MSET, MGET, INCR, EXISTS and DBSIZE over a few keys,
//! written
//! without waiting, are checked reply by reply against a model of
//! sequential execution. Values are unique, so a read that saw a later
//! write or missed an earlier one fails. The database syncs every write,
//! so reads of keys no earlier write touches overtake those writes often,
//! and a read that overtook a write of its own key would fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};

use naive_kv::SyncPolicy;
use resp_support::{RespServer, request};

type Model = BTreeMap<String, String>;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A request and the reply sequential execution gives, in RESP bytes.
fn step(rng: &mut Rng, model: &mut Model, i: u64) -> (Vec<u8>, Vec<u8>) {
    let key = |rng: &mut Rng| format!("k{}", rng.below(4));
    let bulk = |v: Option<&String>| match v {
        Some(v) => format!("${}\r\n{v}\r\n", v.len()),
        None => "$-1\r\n".into(),
    };
    match rng.below(22) {
        0..=5 => {
            let (k, v) = (key(rng), format!("v{i}"));
            let req = request(&[b"SET", k.as_bytes(), v.as_bytes()]);
            model.insert(k, v);
            (req, b"+OK\r\n".to_vec())
        }
        6..=10 => {
            let k = key(rng);
            let reply = bulk(model.get(&k));
            (request(&[b"GET", k.as_bytes()]), reply.into_bytes())
        }
        11..=12 => {
            let (a, b) = (key(rng), key(rng));
            let mut removed = usize::from(model.remove(&a).is_some());
            removed += usize::from(model.remove(&b).is_some());
            let req = request(&[b"DEL", a.as_bytes(), b.as_bytes()]);
            (req, format!(":{removed}\r\n").into_bytes())
        }
        13..=14 => {
            let (a, b) = (key(rng), key(rng));
            let (va, vb) = (format!("v{i}a"), format!("v{i}b"));
            let req = request(&[
                b"MSET",
                a.as_bytes(),
                va.as_bytes(),
                b.as_bytes(),
                vb.as_bytes(),
            ]);
            model.insert(a, va);
            model.insert(b, vb);
            (req, b"+OK\r\n".to_vec())
        }
        15..=16 => {
            let keys: Vec<String> = (0..3).map(|_| key(rng)).collect();
            let mut reply = "*3\r\n".to_string();
            for k in &keys {
                reply.push_str(&bulk(model.get(k)));
            }
            let mut args: Vec<&[u8]> = vec![b"MGET"];
            args.extend(keys.iter().map(|k| k.as_bytes()));
            (request(&args), reply.into_bytes())
        }
        17..=18 => {
            let k = format!("n{}", rng.below(2));
            let n: i64 = model.get(&k).map_or(0, |v| v.parse().unwrap()) + 1;
            model.insert(k.clone(), n.to_string());
            (
                request(&[b"INCR", k.as_bytes()]),
                format!(":{n}\r\n").into_bytes(),
            )
        }
        19 => {
            let k = key(rng);
            let n = usize::from(model.contains_key(&k));
            (
                request(&[b"EXISTS", k.as_bytes()]),
                format!(":{n}\r\n").into_bytes(),
            )
        }
        _ => (
            request(&[b"DBSIZE"]),
            format!(":{}\r\n", model.len()).into_bytes(),
        ),
    }
}

/// Reads one reply per step and checks it is the step's expected one.
fn expect_replies(reader: &mut impl Read, steps: &[(Vec<u8>, Vec<u8>)], part: &str) {
    for (n, (req, want)) in steps.iter().enumerate() {
        let mut got = vec![0u8; want.len()];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "request {n} of {part}: {}",
            String::from_utf8_lossy(req)
        );
    }
}

#[test]
fn a_read_sees_the_write_of_its_key_sent_before_it_and_none_after() {
    let server = RespServer::start_with(SyncPolicy::Always);
    let mut stream = server.connect();
    let steps: &[(&[&[u8]], &[u8])] = &[
        (&[b"SET", b"a", b"1"], b"+OK\r\n"),
        (&[b"GET", b"b"], b"$-1\r\n"),
        (&[b"GET", b"a"], b"$1\r\n1\r\n"),
        (&[b"SET", b"a", b"2"], b"+OK\r\n"),
        (&[b"EXISTS", b"b"], b":0\r\n"),
        (&[b"GET", b"a"], b"$1\r\n2\r\n"),
        (&[b"SET", b"b", b"3"], b"+OK\r\n"),
        (
            &[b"MGET", b"c", b"b", b"a"],
            b"*3\r\n$-1\r\n$1\r\n3\r\n$1\r\n2\r\n",
        ),
        (&[b"DEL", b"a"], b":1\r\n"),
        (&[b"DBSIZE"], b":1\r\n"),
        (&[b"GET", b"a"], b"$-1\r\n"),
        (&[b"DEL", b"b"], b":1\r\n"),
    ];
    let mut pipeline = Vec::new();
    let mut want = Vec::new();
    for _ in 0..20 {
        for (args, reply) in steps {
            pipeline.extend(request(args));
            want.extend_from_slice(reply);
        }
    }
    stream.write_all(&pipeline).unwrap();
    let mut got = vec![0u8; want.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

#[test]
fn randomized_pipelines_match_sequential_execution() {
    let server = RespServer::start_with(SyncPolicy::Always);
    let stream = server.connect();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut model = Model::new();
    let mut i = 0;
    for seed in 1..=4u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let steps: Vec<(Vec<u8>, Vec<u8>)> = (0..1500)
            .map(|_| {
                i += 1;
                step(&mut rng, &mut model, i)
            })
            .collect();
        let bytes: Vec<u8> = steps.iter().flat_map(|(req, _)| req.clone()).collect();
        let mut writer = stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || writer.write_all(&bytes).unwrap());
        expect_replies(&mut reader, &steps, &format!("seed {seed}"));
        sender.join().unwrap();
    }
    // Nothing more came.
    stream
        .set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let mut rest = String::new();
    assert!(reader.read_line(&mut rest).is_err() || rest.is_empty());
}

/// Rounds that open with a run of GETs on a connection with nothing in
/// flight (the previous round's replies all read): those GETs are answered
/// together before their turn, and must still see exactly the writes sent
/// before them, the ones the round's own later requests make included.
#[test]
fn gets_read_together_see_exactly_the_writes_before_them() {
    let server = RespServer::start_with(SyncPolicy::Always);
    let mut stream = server.connect();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut model = Model::new();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut i = 0;
    for round in 0..300 {
        let leading = 2 + rng.below(30);
        let mut steps = Vec::new();
        for _ in 0..leading {
            let k = format!("k{}", rng.below(4));
            let reply = match model.get(&k) {
                Some(v) => format!("${}\r\n{v}\r\n", v.len()),
                None => "$-1\r\n".into(),
            };
            steps.push((request(&[b"GET", k.as_bytes()]), reply.into_bytes()));
        }
        for _ in 0..rng.below(12) {
            i += 1;
            steps.push(step(&mut rng, &mut model, i));
        }
        let bytes: Vec<u8> = steps.iter().flat_map(|(req, _)| req.clone()).collect();
        stream.write_all(&bytes).unwrap();
        expect_replies(&mut reader, &steps, &format!("round {round}"));
    }
}
