//! [`WriteBatch`]: an atomic group of writes, and its WAL record: the one
//! writer ([`encode_wal_batch`], [`encode_wal_range_deletes`]) and the one
//! reader ([`logged_writes`]) of a `WalBatch` payload.

use bytes::Bytes;

use super::range_delete::{RangeDelete, RangeTombstone};
use crate::proto::storage::WalBatch;

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    pub key: Bytes,
    /// The value, or `None` for a delete.
    pub value: Option<Bytes>,
    /// When a put expires, in Unix milliseconds; 0: never (always 0 on a
    /// delete).
    pub expire_at_ms: u64,
}

impl Mutation {
    /// A put that never expires, or a delete (`value` `None`).
    pub fn new(key: Bytes, value: Option<Bytes>) -> Self {
        Mutation {
            key,
            value,
            expire_at_ms: 0,
        }
    }
}

/// An atomic group of writes: all are applied, or none.
///
/// A batch may also be conditional ([`WriteBatch::require_unchanged`]): it
/// is applied only if none of the keys it names was written after the read
/// that gave its [`ReadVersion`], and fails with
/// [`crate::Error::Conflict`] otherwise. This is optimistic concurrency
/// control: a read-modify-write reads with [`crate::Db::get_versioned`],
/// computes, and writes conditionally, retrying on a conflict. The check
/// runs in the memtable actor when the batch is given its sequence numbers,
/// so conditional batches join group commit like any other write.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub(crate) mutations: Vec<Mutation>,
    pub(crate) requirements: Vec<Requirement>,
    /// `[start, end)` ranges to delete, applied after `mutations`.
    pub(crate) range_deletes: Vec<(Bytes, Bytes)>,
}

/// What a read of one key saw, for a conditional write: the sequence number
/// of the version it found (0 when the key never existed or was compacted
/// away) and how far the database had applied writes when it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadVersion {
    /// The sequence number of the version the read found.
    pub seq: u64,
    /// Every write up to this sequence number was visible to the read.
    pub read_at: u64,
}

/// A value as one read saw it, with the version a conditional write names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Versioned {
    /// The value, `None` if the key is absent or expired.
    pub value: Option<Bytes>,
    /// When the value expires (Unix milliseconds); 0: never, or no value.
    pub expire_at_ms: u64,
    /// Pass to [`WriteBatch::require_unchanged`].
    pub version: ReadVersion,
}

/// One condition of a conditional batch: `key` is as `version` saw it.
#[derive(Debug, Clone)]
pub(crate) struct Requirement {
    pub key: Bytes,
    pub version: ReadVersion,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a put.
    pub fn put(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> &mut Self {
        self.mutations
            .push(Mutation::new(key.into(), Some(value.into())));
        self
    }
    /// Adds a put that expires at `expire_at_ms` (Unix milliseconds; 0:
    /// never). At and after that time the key reads as absent; a time
    /// already past makes the put hide the key at once, like a delete.
    pub fn put_with_expiry(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        expire_at_ms: u64,
    ) -> &mut Self {
        self.mutations.push(Mutation {
            key: key.into(),
            value: Some(value.into()),
            expire_at_ms,
        });
        self
    }
    /// Adds a delete.
    pub fn delete(&mut self, key: impl Into<Bytes>) -> &mut Self {
        self.mutations.push(Mutation::new(key.into(), None));
        self
    }
    /// Makes the batch conditional: it is applied only if `key` has not been
    /// written since the read that returned `version` (see the type's doc).
    /// A key may be named once per batch.
    pub fn require_unchanged(&mut self, key: impl Into<Bytes>, version: ReadVersion) -> &mut Self {
        self.requirements.push(Requirement {
            key: key.into(),
            version,
        });
        self
    }
    /// The mutations, in the order they were added.
    pub fn mutations(&self) -> &[Mutation] {
        &self.mutations
    }
    /// Adds a range delete of `[start, end)` (an empty `end`: to the end of
    /// the key space). A batch's range deletes apply after its puts and
    /// deletes, whatever order they were added in; see [`crate::Db::delete_range`].
    pub fn delete_range(&mut self, start: impl Into<Bytes>, end: impl Into<Bytes>) -> &mut Self {
        self.range_deletes.push((start.into(), end.into()));
        self
    }
    /// Number of mutations (range deletes included).
    pub fn len(&self) -> usize {
        self.mutations.len() + self.range_deletes.len()
    }
    /// True if the batch holds no mutation.
    pub fn is_empty(&self) -> bool {
        self.mutations.is_empty() && self.range_deletes.is_empty()
    }
}

/// Appends the WAL payload of one write request to `out`: exactly the bytes
/// prost makes of `WalBatch { first_seq, mutations }` (see
/// `protos/storage.proto`), written from borrowed keys and values. Building
/// the message first would clone every key and value handle, which for a
/// `Bytes` made from a `Vec` means an allocation each.
pub(crate) fn encode_wal_batch(first_seq: u64, mutations: &[Mutation], out: &mut Vec<u8>) {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
    if first_seq != 0 {
        encode_key(1, WireType::Varint, out);
        encode_varint(first_seq, out);
    }
    for mutation in mutations {
        let (key, value) = (&mutation.key, &mutation.value);
        let expire_at_ms = if value.is_some() {
            mutation.expire_at_ms
        } else {
            0
        };
        let bytes_field = |len: usize| match len {
            0 => 0,
            _ => key_len(1) + encoded_len_varint(len as u64) + len,
        };
        let value_bytes = value.as_deref().unwrap_or_default();
        let delete_len = if value.is_none() { key_len(3) + 1 } else { 0 };
        let expiry_len = match expire_at_ms {
            0 => 0,
            at => key_len(4) + encoded_len_varint(at),
        };
        let len = bytes_field(key.len()) + bytes_field(value_bytes.len()) + delete_len + expiry_len;
        encode_key(2, WireType::LengthDelimited, out);
        encode_varint(len as u64, out);
        for (field, bytes) in [(1, key.as_ref()), (2, value_bytes)] {
            if !bytes.is_empty() {
                encode_key(field, WireType::LengthDelimited, out);
                encode_varint(bytes.len() as u64, out);
                out.extend_from_slice(bytes);
            }
        }
        if value.is_none() {
            encode_key(3, WireType::Varint, out);
            out.push(1);
        }
        if expire_at_ms != 0 {
            encode_key(4, WireType::Varint, out);
            encode_varint(expire_at_ms, out);
        }
    }
}

/// Appends the WAL records of `ranges` to a `WalBatch` payload that
/// `encode_wal_batch` began: they follow its mutations in the repeated
/// field, so they take the batch's last sequence numbers.
pub fn encode_wal_range_deletes(ranges: &[RangeDelete], out: &mut Vec<u8>) {
    use prost::Message;
    use prost::encoding::{WireType, encode_key, encode_varint};
    for (start, end) in ranges {
        let mutation = crate::proto::storage::WalMutation {
            key: start.clone(),
            range_end: end.clone(),
            range_delete: true,
            ..Default::default()
        };
        encode_key(2, WireType::LengthDelimited, out);
        encode_varint(mutation.encoded_len() as u64, out);
        mutation.encode_raw(out);
    }
}

/// One write that a WAL batch record logged, with its sequence number: how
/// replay and repair read back what [`encode_wal_batch`] and
/// [`encode_wal_range_deletes`] wrote (the one reader of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoggedWrite {
    /// A put (`value` `Some`) or a delete of one key.
    Key {
        seq: u64,
        key: Bytes,
        value: Option<Bytes>,
        /// When a put expires (Unix milliseconds); 0: never.
        expire_at_ms: u64,
    },
    /// A range delete.
    Range(RangeTombstone),
}

/// The writes of a decoded WAL batch record, in order: the record's
/// mutations take consecutive sequence numbers from its `first_seq`.
pub(crate) fn logged_writes(batch: WalBatch) -> impl Iterator<Item = LoggedWrite> {
    let first_seq = batch.first_seq;
    batch
        .mutations
        .into_iter()
        .enumerate()
        .map(move |(offset, mutation)| {
            let seq = first_seq.saturating_add(offset as u64);
            if mutation.range_delete {
                return LoggedWrite::Range(RangeTombstone {
                    start: mutation.key,
                    end: mutation.range_end,
                    seq,
                });
            }
            LoggedWrite::Key {
                seq,
                key: mutation.key,
                value: (!mutation.delete).then_some(mutation.value),
                expire_at_ms: mutation.expire_at_ms,
            }
        })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::storage::{WalBatch, WalMutation};

    fn prost_encoding(first_seq: u64, mutations: &[Mutation]) -> Vec<u8> {
        let mutations = mutations
            .iter()
            .map(|m| WalMutation {
                key: m.key.clone(),
                delete: m.value.is_none(),
                value: m.value.clone().unwrap_or_default(),
                expire_at_ms: if m.value.is_some() { m.expire_at_ms } else { 0 },
                ..Default::default()
            })
            .collect();
        WalBatch {
            first_seq,
            mutations,
            ..WalBatch::default()
        }
        .encode_to_vec()
    }

    /// A first sequence number and its mutations (`None`: a delete).
    type Case = (u64, Vec<Mutation>);

    fn m(key: impl Into<Bytes>, value: Option<Bytes>) -> Mutation {
        Mutation::new(key.into(), value)
    }

    fn expiring(key: &str, value: &str, expire_at_ms: u64) -> Mutation {
        Mutation {
            expire_at_ms,
            ..m(
                Bytes::copy_from_slice(key.as_bytes()),
                Some(Bytes::copy_from_slice(value.as_bytes())),
            )
        }
    }

    #[test]
    fn wal_batch_bytes_are_prosts() {
        let big = Bytes::from(vec![b'v'; 300]);
        let cases: Vec<Case> = vec![
            (1, vec![]),
            (0, vec![m("k", Some(Bytes::from("v")))]),
            (7, vec![m("k", None)]),
            (u64::MAX, vec![m("k", Some(Bytes::new()))]),
            (
                300,
                vec![
                    m(vec![b'k'; 200], Some(big.clone())),
                    m("gone", None),
                    m(Bytes::new(), Some(big)),
                    m("x", Some(Bytes::from("y"))),
                ],
            ),
            (
                9,
                vec![
                    expiring("a", "b", 1_700_000_000_000),
                    expiring("c", "", u64::MAX),
                    expiring("d", "e", 1),
                    // A delete never carries an expiry.
                    Mutation {
                        expire_at_ms: 5,
                        ..m("f", None)
                    },
                ],
            ),
        ];
        for (first_seq, mutations) in cases {
            let mut ours = vec![0xAA];
            encode_wal_batch(first_seq, &mutations, &mut ours);
            assert_eq!(ours[1..], prost_encoding(first_seq, &mutations)[..]);
            let decoded = WalBatch::decode(&ours[1..]).unwrap();
            assert_eq!(decoded.mutations.len(), mutations.len());
            for (decoded, sent) in decoded.mutations.iter().zip(&mutations) {
                let expected = if sent.value.is_some() {
                    sent.expire_at_ms
                } else {
                    0
                };
                assert_eq!(decoded.expire_at_ms, expected);
            }
        }
    }

    /// What is encoded is read back as the same writes, each with its
    /// sequence number, range deletes after the batch's keys.
    #[test]
    fn logged_writes_read_back_what_was_encoded() {
        let mutations = vec![
            m("a", Some(Bytes::from("1"))),
            m("b", None),
            expiring("c", "3", 1_700_000_000_000),
        ];
        let mut payload = Vec::new();
        encode_wal_batch(40, &mutations, &mut payload);
        let ranges = [
            (Bytes::from("d"), Bytes::from("f")),
            (Bytes::from("x"), Bytes::new()),
        ];
        encode_wal_range_deletes(&ranges, &mut payload);
        let batch = WalBatch::decode(payload.as_slice()).unwrap();
        let key = |seq, key: &str, value: Option<&str>, expire_at_ms| LoggedWrite::Key {
            seq,
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            expire_at_ms,
        };
        let range = |start: &str, end: &str, seq| {
            LoggedWrite::Range(RangeTombstone {
                start: Bytes::copy_from_slice(start.as_bytes()),
                end: Bytes::copy_from_slice(end.as_bytes()),
                seq,
            })
        };
        let expected = vec![
            key(40, "a", Some("1"), 0),
            key(41, "b", None, 0),
            key(42, "c", Some("3"), 1_700_000_000_000),
            range("d", "f", 43),
            range("x", "", 44),
        ];
        assert_eq!(logged_writes(batch).collect::<Vec<_>>(), expected);
    }
}
