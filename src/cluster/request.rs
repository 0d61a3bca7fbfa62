//! The command a Raft log entry carries ([`ClusterRequest`]) and what
//! applying it answers ([`ClusterResponse`]).
//!
//! # Encoding (inside each `Entry` of `DIR/raft/log` and on the wire)
//!
//! postcard, versioned by its first varint:
//!
//! - **Version 1** (before expiry was replicated): `varint n` followed by
//!   `n` mutations, each `key: bytes, value: Option<bytes>` (`None`: a
//!   delete). This is the postcard encoding of the old
//!   `struct ClusterRequest { mutations: Vec<(Vec<u8>, Option<Vec<u8>>)> }`;
//!   `n` is the mutation count, always far below `u64::MAX`.
//! - **Version 2**: `varint u64::MAX` ([`V2_TAG`]), then the postcard
//!   encoding of `RequestV2`: the accepting node's clock, conditions,
//!   mutations with their absolute expiries, and range deletes.
//!
//! Old logs decode as version 1 (no conditions, nothing expires, no range
//! deletes); new entries are always written as version 2.
//!
//! # Conditions
//!
//! A conditional request (a Redis read-modify-write, EXEC, a native
//! `Expire`) names, for each key it read, the value and expiry it saw
//! (`None`: absent). Every node decides it when applying the entry, from
//! its own engine, which holds exactly the entries before this one: the
//! key's newest version, taken as live or expired at the entry's
//! `now_ms` (the accepting node's clock, carried in the entry, never the
//! applying node's), must equal what the proposer saw. The same entries in
//! the same order give the same answer on every node. Engine sequence
//! numbers are not used: whether the engine can decide them without a disk
//! read depends on when each node flushed its memtable, which differs.

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::WriteBatch;

/// The first varint of a version-2 request (see the module doc).
pub const V2_TAG: u64 = u64::MAX;

/// One replicated write: applied atomically (one engine write batch) on
/// every node, or on none if a condition does not hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterRequest {
    /// The accepting node's clock (Unix milliseconds) when it accepted the
    /// request: conditions judge expiries at this time.
    pub now_ms: u64,
    /// What the proposer read; all must still hold at apply.
    pub conditions: Vec<Condition>,
    /// Puts (with absolute expiries) and deletes, in order.
    pub mutations: Vec<ClusterMutation>,
    /// `[start, end)` ranges to delete (empty end: to the end), after the
    /// mutations.
    pub range_deletes: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One put or delete of a [`ClusterRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMutation {
    pub key: Vec<u8>,
    /// `None`: a delete.
    pub value: Option<Vec<u8>>,
    /// When the put expires (Unix milliseconds); 0: never.
    pub expire_at_ms: u64,
}

/// "`key` is as the proposer read it": its value and expiry (0: never), or
/// `None` for absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub key: Vec<u8>,
    pub expected: Option<(Vec<u8>, u64)>,
}

/// What applying a [`ClusterRequest`] answers the proposer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterResponse {
    /// A condition did not hold: nothing of the request was written (the
    /// proposer reads again and retries).
    pub conflict: bool,
}

/// The version-2 body (see the module doc).
#[derive(Serialize, Deserialize)]
struct RequestV2 {
    now_ms: u64,
    conditions: Vec<Condition>,
    mutations: Vec<ClusterMutation>,
    range_deletes: Vec<(Vec<u8>, Vec<u8>)>,
}

impl ClusterRequest {
    /// Unconditional puts and deletes: `(key, Some(value))` sets (never
    /// expiring), `(key, None)` deletes.
    pub fn of(mutations: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Self {
        ClusterRequest {
            mutations: mutations
                .into_iter()
                .map(|(key, value)| ClusterMutation {
                    key,
                    value,
                    expire_at_ms: 0,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// `batch`'s mutations and range deletes (its engine conditions, which
    /// name sequence numbers, are not carried: see [`Self::conditions`]),
    /// accepted at `now_ms`.
    pub fn from_batch(batch: &WriteBatch, now_ms: u64) -> Self {
        let mutations = batch
            .mutations()
            .iter()
            .map(|m| ClusterMutation {
                key: m.key.to_vec(),
                value: m.value.as_ref().map(|v| v.to_vec()),
                expire_at_ms: if m.value.is_some() { m.expire_at_ms } else { 0 },
            })
            .collect();
        let range_deletes = batch
            .range_deletes
            .iter()
            .map(|(start, end)| (start.to_vec(), end.to_vec()))
            .collect();
        ClusterRequest {
            now_ms,
            conditions: Vec::new(),
            mutations,
            range_deletes,
        }
    }

    /// The engine batch that applies this request (conditions are decided
    /// before, by the state machine).
    pub fn to_batch(&self) -> WriteBatch {
        let mut batch = WriteBatch::new();
        for m in &self.mutations {
            match &m.value {
                Some(value) => batch.put_with_expiry(m.key.clone(), value.clone(), m.expire_at_ms),
                None => batch.delete(m.key.clone()),
            };
        }
        for (start, end) in &self.range_deletes {
            batch.delete_range(start.clone(), end.clone());
        }
        batch
    }

    /// Whether `found`, the key's newest version at apply (value and
    /// expiry, expired or not), matches `condition` at the entry's time.
    pub fn holds(&self, condition: &Condition, found: Option<(&[u8], u64)>) -> bool {
        let live = found.filter(|(_, at)| *at == 0 || *at > self.now_ms);
        let expected = condition
            .expected
            .as_ref()
            .map(|(v, at)| (v.as_slice(), *at));
        live == expected
    }
}

impl Serialize for ClusterRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let body = RequestV2 {
            now_ms: self.now_ms,
            conditions: self.conditions.clone(),
            mutations: self.mutations.clone(),
            range_deletes: self.range_deletes.clone(),
        };
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&V2_TAG)?;
        tuple.serialize_element(&body)?;
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for ClusterRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // postcard does not write a tuple's length: the visitor reads as
        // many elements as the version says.
        deserializer.deserialize_tuple(usize::MAX, RequestVisitor)
    }
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = ClusterRequest;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a version-1 or version-2 cluster request")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ClusterRequest, A::Error> {
        let missing = || de::Error::custom("a cluster request ended early");
        let tag: u64 = seq.next_element()?.ok_or_else(missing)?;
        if tag == V2_TAG {
            let body: RequestV2 = seq.next_element()?.ok_or_else(missing)?;
            return Ok(ClusterRequest {
                now_ms: body.now_ms,
                conditions: body.conditions,
                mutations: body.mutations,
                range_deletes: body.range_deletes,
            });
        }
        let mut mutations = Vec::new();
        for _ in 0..tag {
            let (key, value): (Vec<u8>, Option<Vec<u8>>) =
                seq.next_element()?.ok_or_else(missing)?;
            mutations.push((key, value));
        }
        Ok(ClusterRequest::of(mutations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::TypeConfig;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    /// The request as it was encoded before versioning.
    #[derive(Serialize)]
    struct RequestV1 {
        mutations: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    }

    #[test]
    fn a_version_1_request_still_decodes() {
        let old = RequestV1 {
            mutations: vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), None)],
        };
        let bytes = postcard::to_stdvec(&old).unwrap();
        // The exact bytes of the old encoding: count 2, "a" = "1", "b" deleted.
        assert_eq!(bytes, [2, 1, b'a', 1, 1, b'1', 1, b'b', 0]);
        let decoded: ClusterRequest = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            decoded,
            ClusterRequest::of(vec![
                (b"a".to_vec(), Some(b"1".to_vec())),
                (b"b".to_vec(), None)
            ])
        );
    }

    #[test]
    fn a_version_1_log_entry_still_decodes_inside_an_entry() {
        // An `Entry` as the log store wrote it before: log id, then
        // `EntryPayload::Normal` with the version-1 request.
        #[derive(Serialize)]
        struct OldEntry {
            log_id: LogId<u64>,
            payload: OldPayload,
        }
        #[derive(Serialize)]
        enum OldPayload {
            #[allow(dead_code)]
            Blank,
            Normal(RequestV1),
        }
        let log_id = LogId::new(CommittedLeaderId::new(3, 1), 42);
        let old = OldEntry {
            log_id,
            payload: OldPayload::Normal(RequestV1 {
                mutations: vec![(b"k".to_vec(), Some(b"v".to_vec()))],
            }),
        };
        let bytes = postcard::to_stdvec(&old).unwrap();
        let entry: Entry<TypeConfig> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(entry.log_id, log_id);
        let EntryPayload::Normal(request) = entry.payload else {
            panic!("not a normal entry");
        };
        assert_eq!(
            request,
            ClusterRequest::of(vec![(b"k".to_vec(), Some(b"v".to_vec()))])
        );
    }

    #[test]
    fn a_version_2_request_round_trips_with_everything_it_carries() {
        let request = ClusterRequest {
            now_ms: 1_700_000_000_000,
            conditions: vec![
                Condition {
                    key: b"c".to_vec(),
                    expected: Some((b"5".to_vec(), 1_700_000_009_000)),
                },
                Condition {
                    key: b"d".to_vec(),
                    expected: None,
                },
            ],
            mutations: vec![
                ClusterMutation {
                    key: b"c".to_vec(),
                    value: Some(b"6".to_vec()),
                    expire_at_ms: 1_700_000_009_000,
                },
                ClusterMutation {
                    key: b"x".to_vec(),
                    value: None,
                    expire_at_ms: 0,
                },
            ],
            range_deletes: vec![(b"a".to_vec(), Vec::new())],
        };
        let bytes = postcard::to_stdvec(&request).unwrap();
        assert_eq!(
            bytes[..10],
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        let decoded: ClusterRequest = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, request);
        let batch = decoded.to_batch();
        assert_eq!(batch.mutations()[0].expire_at_ms, 1_700_000_009_000);
        assert_eq!(batch.range_deletes.len(), 1);
        assert_eq!(
            ClusterRequest::from_batch(&batch, request.now_ms).mutations,
            request.mutations
        );
    }

    #[test]
    fn conditions_judge_expiry_at_the_entry_time_not_the_node_clock() {
        let request = ClusterRequest {
            now_ms: 1_000,
            ..Default::default()
        };
        let live = Condition {
            key: b"k".to_vec(),
            expected: Some((b"v".to_vec(), 2_000)),
        };
        let absent = Condition {
            key: b"k".to_vec(),
            expected: None,
        };
        // Stored with expiry 2000: live at 1000 whatever the node's clock.
        assert!(request.holds(&live, Some((b"v", 2_000))));
        assert!(!request.holds(&absent, Some((b"v", 2_000))));
        // Expired at the entry's time: absent.
        assert!(request.holds(&absent, Some((b"v", 1_000))));
        assert!(request.holds(&absent, None));
        // Another value or expiry: changed.
        assert!(!request.holds(&live, Some((b"w", 2_000))));
        assert!(!request.holds(&live, Some((b"v", 0))));
        assert!(!request.holds(&live, None));
    }
}
