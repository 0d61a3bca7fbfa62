//! [`ScanRequest`] and [`ScanPage`]: what a scan reads and one page of it.

use std::ops::Bound;

use bytes::Bytes;

/// What a scan reads.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// Where the range starts.
    pub start: Bound<Bytes>,
    /// Where the range ends.
    pub end: Bound<Bytes>,
    /// At most this many entries (0: no limit other than `max_bytes`).
    pub limit: usize,
    /// Descending key order.
    pub reverse: bool,
    /// Stop once the entries returned reach this many bytes (keys plus values);
    /// at least one entry is always returned if any exists.
    pub max_bytes: usize,
}

/// One page of a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    /// Key-value pairs in the requested order.
    pub entries: Vec<(Bytes, Bytes)>,
    /// True if the page stopped at `limit` or `max_bytes` with entries left.
    pub more: bool,
}

impl ScanRequest {
    /// Everything, ascending, in pages of at most 1000 entries or 4 MiB.
    pub fn all() -> Self {
        ScanRequest {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
            limit: 1000,
            reverse: false,
            max_bytes: 4 << 20,
        }
    }

    /// `[start, end)`, ascending, in pages of at most 1000 entries or 4 MiB.
    pub fn range(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        ScanRequest {
            start: Bound::Included(start.into()),
            end: Bound::Excluded(end.into()),
            ..Self::all()
        }
    }
}

impl ScanPage {
    /// Where the next page starts: for a forward scan the smallest key after
    /// the last one returned (use as the next inclusive start); for a reverse
    /// scan the last key returned (use as the next exclusive end). `None`
    /// when the range is exhausted.
    pub fn continuation(&self, reverse: bool) -> Option<Bytes> {
        if !self.more {
            return None;
        }
        let (last, _) = self.entries.last()?;
        if reverse {
            return Some(last.clone());
        }
        let mut next = Vec::with_capacity(last.len() + 1);
        next.extend_from_slice(last);
        next.push(0);
        Some(Bytes::from(next))
    }
}
