//! The read pool: a `SyncArbiter` of threads that read segments for point
//! lookups and scans, so that a block read never stalls an actor's mailbox.
//! Each request carries the immutable view it reads; the pool owns nothing.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use super::ScanPage;
use super::ScanRequest;
use super::memtable::ReadView;
use super::merge::{LiveIter, MemTableIter, MergeIter};
use super::range_delete::{Uncovered, all_tombstones};
use super::segment::Segment;
use super::version::{SegmentLookup, lookup};
use crate::Result;
use crate::format::sstable::{BlockCache, BlockReads};
use crate::format::{EntryIter, KeyRange};

/// A point lookup in the segments whose bloom filters let the key through.
#[derive(Message)]
#[rtype(result = "Result<SegmentLookup>")]
pub struct SegmentGet {
    pub candidates: Vec<Arc<Segment>>,
    pub key: Bytes,
}

/// A scan of one view.
#[derive(Message)]
#[rtype(result = "Result<ScanPage>")]
pub struct RangeScan {
    pub view: Arc<ReadView>,
    /// The bound for the view's active memtable (`Db::read_view`).
    pub read_at: u64,
    pub request: ScanRequest,
    /// The time entries' expiries are compared with.
    pub now_ms: u64,
}

/// One reader thread.
#[derive(Debug)]
pub struct ReadWorker {
    /// The database's block cache, which point lookups read through.
    pub cache: Arc<BlockCache>,
}

impl Actor for ReadWorker {
    type Context = SyncContext<Self>;
}

impl Handler<SegmentGet> for ReadWorker {
    type Result = Result<SegmentLookup>;
    fn handle(&mut self, msg: SegmentGet, _: &mut SyncContext<Self>) -> Self::Result {
        lookup(&msg.candidates, &msg.key, &self.cache)
    }
}

impl Handler<RangeScan> for ReadWorker {
    type Result = Result<ScanPage>;
    fn handle(&mut self, msg: RangeScan, _: &mut SyncContext<Self>) -> Self::Result {
        let reads = BlockReads {
            cache: Some(self.cache.clone()),
            wait_for_disk: true,
        };
        scan_page(&msg.view, msg.read_at, &msg.request, msg.now_ms, &reads)
    }
}

/// Merges the active memtable (as of `read_at`), the frozen memtables and
/// the segments of one view, newest first, and collects one page, reading blocks as `reads`
/// says.
pub fn scan_page(
    view: &ReadView,
    read_at: u64,
    request: &ScanRequest,
    now_ms: u64,
    reads: &BlockReads,
) -> Result<ScanPage> {
    let range: KeyRange = (request.start.clone(), request.end.clone());
    let reverse = request.reverse;
    let active = MemTableIter::new(view.active.at(read_at), range.clone(), reverse);
    let mut sources: Vec<Box<dyn EntryIter>> = vec![Box::new(active)];
    for frozen in &view.frozen {
        let iter = MemTableIter::new(frozen.table.clone(), range.clone(), reverse);
        sources.push(Box::new(iter));
    }
    sources.extend(view.segments.iters(&range, reverse, reads));
    let merged = MergeIter::new(sources, reverse);
    let tombstones = all_tombstones(&view.segments, &view.range_tombstones);
    let mut live = LiveIter(Uncovered::new(merged, tombstones), now_ms);
    let limit = if request.limit == 0 {
        usize::MAX
    } else {
        request.limit
    };
    let mut page = ScanPage::default();
    let mut bytes = 0usize;
    while let Some(entry) = live.next_entry()? {
        let full =
            page.entries.len() >= limit || (bytes >= request.max_bytes && !page.entries.is_empty());
        if full {
            page.more = true;
            break;
        }
        let value = entry.value.unwrap_or_default();
        bytes += entry.key.len() + value.len();
        page.entries.push((entry.key, value));
    }
    Ok(page)
}
