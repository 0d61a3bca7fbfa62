//! [`WriteBatch`]: an atomic group of writes.

use bytes::Bytes;

/// An atomic group of writes: all are applied, or none.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub(crate) mutations: Vec<(Bytes, Option<Bytes>)>,
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
    /// Number of mutations.
    pub fn len(&self) -> usize {
        self.mutations.len()
    }
    /// True if the batch holds no mutation.
    pub fn is_empty(&self) -> bool {
        self.mutations.is_empty()
    }
}
