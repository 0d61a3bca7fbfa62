//! [`WriteBatch`]: an atomic group of writes.

use bytes::Bytes;

/// An atomic group of writes: all are applied, or none.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub(crate) mutations: Vec<(Bytes, Option<Bytes>)>,
    /// `[start, end)` ranges to delete, applied after `mutations`.
    pub(crate) range_deletes: Vec<(Bytes, Bytes)>,
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
                ..Default::default()
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
