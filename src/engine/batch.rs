//! [`WriteBatch`]: an atomic group of writes.

use bytes::Bytes;

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
    pub(crate) mutations: Vec<(Bytes, Option<Bytes>)>,
    pub(crate) requirements: Vec<Requirement>,
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
    /// The value, `None` if the key is absent.
    pub value: Option<Bytes>,
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
        self.mutations.push((key.into(), Some(value.into())));
        self
    }
    /// Adds a delete.
    pub fn delete(&mut self, key: impl Into<Bytes>) -> &mut Self {
        self.mutations.push((key.into(), None));
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
    /// Number of mutations.
    pub fn len(&self) -> usize {
        self.mutations.len()
    }
    /// True if the batch holds no mutation.
    pub fn is_empty(&self) -> bool {
        self.mutations.is_empty()
    }
}

/// Appends the WAL payload of one write request to `out`: exactly the bytes
/// prost makes of `WalBatch { first_seq, mutations }` (see
/// `protos/storage.proto`), written from borrowed keys and values. Building
/// the message first would clone every key and value handle, which for a
/// `Bytes` made from a `Vec` means an allocation each.
pub(crate) fn encode_wal_batch(
    first_seq: u64,
    mutations: &[(Bytes, Option<Bytes>)],
    out: &mut Vec<u8>,
) {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
    if first_seq != 0 {
        encode_key(1, WireType::Varint, out);
        encode_varint(first_seq, out);
    }
    for (key, value) in mutations {
        let bytes_field = |len: usize| match len {
            0 => 0,
            _ => key_len(1) + encoded_len_varint(len as u64) + len,
        };
        let value_bytes = value.as_deref().unwrap_or_default();
        let delete_len = if value.is_none() { key_len(3) + 1 } else { 0 };
        let len = bytes_field(key.len()) + bytes_field(value_bytes.len()) + delete_len;
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
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::storage::{WalBatch, WalMutation};

    fn prost_encoding(first_seq: u64, mutations: &[(Bytes, Option<Bytes>)]) -> Vec<u8> {
        let mutations = mutations
            .iter()
            .map(|(key, value)| WalMutation {
                key: key.clone(),
                delete: value.is_none(),
                value: value.clone().unwrap_or_default(),
            })
            .collect();
        WalBatch {
            first_seq,
            mutations,
        }
        .encode_to_vec()
    }

    /// A first sequence number and its mutations (`None`: a delete).
    type Case = (u64, Vec<(Bytes, Option<Bytes>)>);

    #[test]
    fn wal_batch_bytes_are_prosts() {
        let big = Bytes::from(vec![b'v'; 300]);
        let cases: Vec<Case> = vec![
            (1, vec![]),
            (0, vec![(Bytes::from("k"), Some(Bytes::from("v")))]),
            (7, vec![(Bytes::from("k"), None)]),
            (u64::MAX, vec![(Bytes::from("k"), Some(Bytes::new()))]),
            (
                300,
                vec![
                    (Bytes::from(vec![b'k'; 200]), Some(big.clone())),
                    (Bytes::from("gone"), None),
                    (Bytes::new(), Some(big)),
                    (Bytes::from("x"), Some(Bytes::from("y"))),
                ],
            ),
        ];
        for (first_seq, mutations) in cases {
            let mut ours = vec![0xAA];
            encode_wal_batch(first_seq, &mutations, &mut ours);
            assert_eq!(ours[1..], prost_encoding(first_seq, &mutations)[..]);
            let decoded = WalBatch::decode(&ours[1..]).unwrap();
            assert_eq!(decoded.mutations.len(), mutations.len());
        }
    }
}
