//! What values are made of (`--value-kind`): random bytes, which no codec
//! shrinks, or text like real application data.
//!
//! `text` is a stream of JSON-like records, deterministic from a seed:
//! repeated field names, words from a small dictionary, names, numbers,
//! booleans and dates, e.g.
//! `{"id":48213,"user":"maria_silva","email":"maria.silva@example.org",
//! "city":"Porto","active":true,"score":73.41,"tags":["blue","fast"],
//! "created":"2024-03-17T08:15:02Z","note":"order shipped to the north
//! warehouse after review"}`. A value is a slice of that stream, so a block
//! of values shrinks about as much as a block of such records does.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::keys::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    /// Random bytes (incompressible), as db_bench with compression ratio 1.
    #[default]
    Random,
    /// JSON-like records (compressible about 2-4x by LZ4 and zstd).
    Text,
}

impl ValueKind {
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::Random => "random",
            ValueKind::Text => "text",
        }
    }

    /// `len` bytes of this kind, deterministic from `seed`.
    pub fn buffer(self, len: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng::new(seed);
        match self {
            ValueKind::Random => (0..len).map(|_| rng.next_u64() as u8).collect(),
            ValueKind::Text => text(len, &mut rng),
        }
    }
}

const FIRST: &[&str] = &[
    "maria", "john", "wei", "fatima", "carlos", "anna", "olu", "yuki", "lena", "omar", "sofia",
    "ivan", "priya", "lucas", "amara", "noah",
];
const LAST: &[&str] = &[
    "silva", "smith", "chen", "khan", "garcia", "novak", "adeyemi", "tanaka", "muller", "haddad",
    "rossi", "petrov", "patel", "martin", "okafor", "jones",
];
const CITIES: &[&str] = &[
    "Porto", "Lisbon", "Berlin", "Lagos", "Osaka", "Austin", "Lyon", "Pune", "Quito", "Oslo",
];
const WORDS: &[&str] = &[
    "order",
    "shipped",
    "to",
    "the",
    "north",
    "warehouse",
    "after",
    "review",
    "customer",
    "asked",
    "for",
    "a",
    "refund",
    "on",
    "delivery",
    "late",
    "package",
    "returned",
    "payment",
    "received",
    "invoice",
    "sent",
    "account",
    "updated",
    "address",
    "changed",
    "new",
    "item",
    "added",
    "cart",
    "discount",
    "applied",
    "support",
    "ticket",
    "closed",
    "by",
    "agent",
];
const TAGS: &[&str] = &[
    "blue", "fast", "gold", "new", "vip", "eu", "mobile", "trial",
];
const DOMAINS: &[&str] = &["example.org", "mail.test", "corp.example"];

fn pick<'a>(rng: &mut Rng, list: &[&'a str]) -> &'a str {
    list[rng.below(list.len() as u64) as usize]
}

/// Records until `len` bytes, cut to `len`.
fn text(len: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = String::with_capacity(len + 512);
    while out.len() < len {
        let (first, last) = (pick(rng, FIRST), pick(rng, LAST));
        let words: Vec<&str> = (0..3 + rng.below(8)).map(|_| pick(rng, WORDS)).collect();
        let tags: Vec<String> = (0..1 + rng.below(3))
            .map(|_| format!("\"{}\"", pick(rng, TAGS)))
            .collect();
        out.push_str(&format!(
            "{{\"id\":{},\"user\":\"{first}_{last}\",\"email\":\"{first}.{last}@{}\",\
             \"city\":\"{}\",\"active\":{},\"score\":{}.{:02},\"tags\":[{}],\
             \"created\":\"2024-{:02}-{:02}T{:02}:{:02}:{:02}Z\",\"note\":\"{}\"}}\n",
            rng.below(1_000_000),
            pick(rng, DOMAINS),
            pick(rng, CITIES),
            rng.below(4) != 0,
            rng.below(100),
            rng.below(100),
            tags.join(","),
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            words.join(" "),
        ));
    }
    let mut bytes = out.into_bytes();
    bytes.truncate(len);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_deterministic_json_like_and_compressible() {
        let a = ValueKind::Text.buffer(1 << 16, 7);
        assert_eq!(a, ValueKind::Text.buffer(1 << 16, 7));
        assert_ne!(a, ValueKind::Text.buffer(1 << 16, 8));
        assert_eq!(a.len(), 1 << 16);
        let text = String::from_utf8(a.clone()).unwrap();
        assert!(text.starts_with("{\"id\":"), "{}", &text[..80]);
        assert!(text.matches("\"email\":").count() > 100);
        let distinct: std::collections::HashSet<&u8> = a.iter().collect();
        assert!(distinct.len() < 80, "{} distinct bytes", distinct.len());
        let random = ValueKind::Random.buffer(1 << 16, 7);
        assert_eq!(random.len(), 1 << 16);
        assert!(
            random
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len()
                > 250
        );
    }
}
