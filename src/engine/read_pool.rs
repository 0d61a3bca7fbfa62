//! The read pool: a `SyncArbiter` of threads that read segments for point
//! lookups and scans, so that a block read never stalls an actor's mailbox.
//! Each request carries the immutable view it reads; the pool owns nothing.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use super::ScanPage;
use super::ScanRequest;
use super::memtable::ScanStart;
use super::merge::{FrozenMemtableIter, LiveIter, MergeIter};
use super::version::{SegmentLookup, SegmentSet};
use crate::Result;
use crate::format::{EntryIter, KeyRange, VecEntryIter};

/// A point lookup in the segments.
#[derive(Message)]
#[rtype(result = "Result<SegmentLookup>")]
pub struct SegmentGet {
    pub segments: Arc<SegmentSet>,
    pub key: Bytes,
}

/// The rest of a scan, from the snapshot the memtable actor took.
#[derive(Message)]
#[rtype(result = "Result<ScanPage>")]
pub struct RangeScan {
    pub start: ScanStart,
    pub request: ScanRequest,
}

/// One reader thread.
#[derive(Debug, Default)]
pub struct ReadWorker;

impl Actor for ReadWorker {
    type Context = SyncContext<Self>;
}

impl Handler<SegmentGet> for ReadWorker {
    type Result = Result<SegmentLookup>;
    fn handle(&mut self, msg: SegmentGet, _: &mut SyncContext<Self>) -> Self::Result {
        msg.segments.get(&msg.key)
    }
}

impl Handler<RangeScan> for ReadWorker {
    type Result = Result<ScanPage>;
    fn handle(&mut self, msg: RangeScan, _: &mut SyncContext<Self>) -> Self::Result {
        scan_page(msg.start, &msg.request)
    }
}

/// Merges the active memtable's copy, the frozen memtables and the segments,
/// newest first, and collects one page.
pub fn scan_page(start: ScanStart, request: &ScanRequest) -> Result<ScanPage> {
    let range: KeyRange = (request.start.clone(), request.end.clone());
    let reverse = request.reverse;
    let mut sources: Vec<Box<dyn EntryIter>> = vec![Box::new(VecEntryIter::new(start.active))];
    for frozen in &start.view.frozen {
        sources.push(Box::new(FrozenMemtableIter::new(
            frozen.clone(),
            range.clone(),
            reverse,
        )));
    }
    sources.extend(start.view.segments.iters(&range, reverse));
    let mut live = LiveIter(MergeIter::new(sources, reverse));
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
