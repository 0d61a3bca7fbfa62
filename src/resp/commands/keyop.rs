//! Key operations: the commands whose reply and writes are a pure function
//! of the current values of the keys they name (GET, STRLEN, GETRANGE,
//! GETBIT, BITCOUNT, BITPOS, MGET, EXISTS, TYPE, SET, MSET, DEL, and every read-modify-write).
//!
//! [`KeyOp::keys`] names what an operation reads and [`KeyOp::apply`] turns
//! those values into its writes and its reply, touching nothing. Run alone
//! ([`run`]) an operation reads the engine and writes its writes as one
//! batch; inside EXEC the [`Counter`](crate::resp::counter::Counter) runs a
//! transaction's operations one after the other against its own view of the
//! keys, so each sees the ones before, and commits them together.

use std::future::Future;

use bytes::Bytes;
use futures_util::future::join_all;

use super::bits::BitRead;
use super::lcs::{LcsOptions, lcs};
use super::rmw::{Rmw, Writes};
use super::strings::range_of;
use super::{Op, absent_if_too_large, engine_error};
use crate::WriteBatch;
use crate::resp::reply::Reply;
use crate::resp::store::Store;

/// An operation on named keys. See the module doc.
#[derive(Debug, Clone)]
pub enum KeyOp {
    Get(Bytes),
    Strlen(Bytes),
    GetRange(Bytes, i64, i64),
    /// GETBIT, BITCOUNT, BITPOS.
    Bits(Bytes, BitRead),
    MGet(Vec<Bytes>),
    /// EXISTS and TOUCH: how many of the keys (repeats counted) exist.
    Exists(Vec<Bytes>),
    Type(Bytes),
    Set(Bytes, Bytes),
    MSet(Vec<(Bytes, Bytes)>),
    /// DEL and UNLINK: deletes the keys that exist, answers how many.
    Del(Vec<Bytes>),
    Rmw(Rmw),
    /// LCS of two keys' values.
    Lcs(Bytes, Bytes, LcsOptions),
    /// A reply known in advance (PING inside MULTI).
    Ready(Reply),
}

impl KeyOp {
    /// The key operation `op` is, or `op` back if it is not one (scans,
    /// DBSIZE, FLUSHALL, INFO ...).
    pub fn from_op(op: Op) -> Result<KeyOp, Op> {
        Ok(match op {
            Op::Get(key) => KeyOp::Get(key),
            Op::Strlen(key) => KeyOp::Strlen(key),
            Op::GetRange(key, start, end) => KeyOp::GetRange(key, start, end),
            Op::Bits(key, read) => KeyOp::Bits(key, read),
            Op::MGet(keys) => KeyOp::MGet(keys),
            Op::Exists(keys) => KeyOp::Exists(keys),
            Op::Type(key) => KeyOp::Type(key),
            Op::Set(key, value) => KeyOp::Set(key, value),
            Op::MSet(pairs) => KeyOp::MSet(pairs),
            Op::Del(keys) => KeyOp::Del(keys),
            Op::Rmw(rmw) => KeyOp::Rmw(rmw),
            Op::Lcs(a, b, options) => KeyOp::Lcs(a, b, options),
            Op::Ready(reply) => KeyOp::Ready(reply),
            other => return Err(other),
        })
    }

    /// The keys read, in the order [`KeyOp::apply`] takes their values.
    pub fn keys(&self) -> Vec<Bytes> {
        match self {
            KeyOp::Get(key)
            | KeyOp::Strlen(key)
            | KeyOp::GetRange(key, ..)
            | KeyOp::Bits(key, _)
            | KeyOp::Type(key) => vec![key.clone()],
            KeyOp::MGet(keys) | KeyOp::Exists(keys) => keys.clone(),
            KeyOp::Del(keys) => unique(keys.clone()),
            KeyOp::Rmw(rmw) => rmw.keys(),
            KeyOp::Lcs(a, b, _) => vec![a.clone(), b.clone()],
            KeyOp::Set(..) | KeyOp::MSet(_) | KeyOp::Ready(_) => Vec::new(),
        }
    }

    /// True if [`KeyOp::apply`] needs only whether each key has a value
    /// (EXISTS, DEL, TYPE), not the value: a value read is then dropped at
    /// once, so that such a command over many large values holds none.
    pub fn needs_presence_only(&self) -> bool {
        matches!(self, KeyOp::Exists(_) | KeyOp::Del(_) | KeyOp::Type(_))
    }

    /// From the keys' values (as [`KeyOp::keys`] orders them): the writes
    /// and the reply.
    pub fn apply(self, olds: Vec<Option<Bytes>>) -> (Writes, Reply) {
        let first = || olds.first().cloned().flatten();
        match self {
            KeyOp::Get(_) => (Vec::new(), Reply::value(first())),
            KeyOp::Strlen(_) => (
                Vec::new(),
                Reply::Integer(first().map_or(0, |v| v.len() as i64)),
            ),
            KeyOp::GetRange(_, start, end) => {
                let value = first().unwrap_or_default();
                let range = Bytes::copy_from_slice(range_of(&value, start, end));
                (Vec::new(), Reply::Bulk(range))
            }
            KeyOp::Bits(_, read) => (Vec::new(), read.answer(first().as_deref())),
            KeyOp::MGet(_) => (
                Vec::new(),
                Reply::Array(olds.into_iter().map(Reply::value).collect()),
            ),
            KeyOp::Exists(_) => {
                let found = olds.iter().filter(|v| v.is_some()).count();
                (Vec::new(), Reply::Integer(found as i64))
            }
            KeyOp::Type(_) => {
                let name = if first().is_some() { "string" } else { "none" };
                (Vec::new(), Reply::Status(name.into()))
            }
            KeyOp::Set(key, value) => (vec![(key, Some(value))], Reply::ok()),
            KeyOp::MSet(pairs) => (
                pairs.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                Reply::ok(),
            ),
            KeyOp::Del(keys) => {
                let present: Writes = unique(keys)
                    .into_iter()
                    .zip(olds)
                    .filter(|(_, old)| old.is_some())
                    .map(|(key, _)| (key, None))
                    .collect();
                let count = present.len() as i64;
                (present, Reply::Integer(count))
            }
            KeyOp::Rmw(rmw) => rmw.apply(olds),
            KeyOp::Lcs(_, _, options) => {
                let value = |i: usize| olds.get(i).cloned().flatten().unwrap_or_default();
                (Vec::new(), lcs(&value(0), &value(1), options))
            }
            KeyOp::Ready(reply) => (Vec::new(), reply),
        }
    }
}

/// Sorted, each key once.
fn unique(mut keys: Vec<Bytes>) -> Vec<Bytes> {
    keys.sort();
    keys.dedup();
    keys
}

/// Runs `op` alone: reads its keys, then writes its writes as one batch and
/// answers once they are acknowledged. Not for read-modify-writes, whose
/// read and write must not be split by another connection's write (they go
/// through the counter).
///
/// Every key is read at one moment ([`crate::Db::point_in_time`]), in
/// groups of [`KEYS_READ_TOGETHER`] ([`GroupReads`]), with a yield to the
/// worker's other connections between two groups: EXISTS and DEL of many
/// keys count one snapshot, as Redis's atomic commands do. An operation
/// that needs only whether its keys exist ([`KeyOp::needs_presence_only`])
/// keeps no value it read.
pub async fn run(op: KeyOp, store: Store) -> Reply {
    let keys = op.keys();
    let presence_only = op.needs_presence_only();
    let moment = store.db().point_in_time();
    let mut olds = Vec::with_capacity(keys.len());
    for (group, keys) in keys.chunks(KEYS_READ_TOGETHER).enumerate() {
        if group > 0 {
            tokio::task::yield_now().await;
        }
        let mut reads = GroupReads::new(&moment, keys);
        while let Some(read) = reads.next().await {
            match absent_if_too_large(read) {
                Ok(value) if presence_only => olds.push(value.map(|_| Bytes::new())),
                Ok(value) => olds.push(value),
                Err(e) => return engine_error(&e),
            }
        }
    }
    let (writes, reply) = op.apply(olds);
    if writes.is_empty() {
        return reply;
    }
    match store.write(batch_of(writes)).await {
        Ok(()) => reply,
        Err(e) => e.reply(),
    }
}

/// Keys a command reads together ([`GroupReads`]), and between two yields
/// to the other connections of its worker thread (EXISTS or MGET may name a
/// million).
pub const KEYS_READ_TOGETHER: usize = 64;

/// The values of `keys` at one moment, in order, read lazily: first all
/// together from memory when made ([`crate::engine::PointInTime::get_many_now`],
/// their memory loads overlapped), then, as [`GroupReads::next`] reaches
/// them, each key memory could not answer from the segments, one at a time
/// (a caller that bounds what it holds counts each before the next is
/// read). A value from memory is shared with the memtable or the block
/// cache, not copied (entries of at most 256 bytes are copied).
pub struct GroupReads<'a> {
    moment: &'a crate::engine::PointInTime,
    keys: std::slice::Iter<'a, Bytes>,
    from_memory: std::vec::IntoIter<Option<crate::Result<Option<Bytes>>>>,
}

impl<'a> GroupReads<'a> {
    pub fn new(moment: &'a crate::engine::PointInTime, keys: &'a [Bytes]) -> Self {
        let mut from_memory: Vec<Option<crate::Result<Option<Bytes>>>> =
            keys.iter().map(|_| None).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|key| &key[..]).collect();
        moment.get_many_now(&refs, |at, read| {
            if let Some(slot) = from_memory.get_mut(at) {
                *slot = Some(read);
            }
        });
        GroupReads {
            moment,
            keys: keys.iter(),
            from_memory: from_memory.into_iter(),
        }
    }

    /// The next key's value; `None` after the last key.
    pub async fn next(&mut self) -> Option<crate::Result<Option<Bytes>>> {
        let key = self.keys.next()?;
        match self.from_memory.next().flatten() {
            Some(read) => Some(read),
            None => Some(self.moment.get(key.clone()).await),
        }
    }
}

/// Futures joined at once by [`join_in_chunks`]: below the count at which
/// `join_all` switches to its queue-based form.
pub const JOINED_AT_ONCE: usize = 16;

/// Awaits `futures` (engine reads) a few at a time, their outputs in order.
/// `join_all` over all of them at once polled every unfinished one each time
/// the task woke, and each read gives up the task's cooperative budget
/// after about a hundred: `EXISTS` of 200k keys took 11 s, of 50k 0.5 s.
pub async fn join_in_chunks<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures = futures.into_iter().peekable();
    let mut outputs = Vec::with_capacity(futures.size_hint().0);
    while futures.peek().is_some() {
        let chunk: Vec<F> = futures.by_ref().take(JOINED_AT_ONCE).collect();
        outputs.extend(join_all(chunk).await);
    }
    outputs
}

/// The writes as one batch.
pub fn batch_of(writes: Writes) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for (key, value) in writes {
        match value {
            Some(value) => batch.put(key, value),
            None => batch.delete(key),
        };
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn reads_answer_from_the_values_given() {
        let (writes, reply) = KeyOp::GetRange(b("k"), 1, -2).apply(vec![Some(b("hello"))]);
        assert!(writes.is_empty());
        assert_eq!(reply, Reply::Bulk(b("ell")));
        let (_, reply) = KeyOp::Exists(vec![b("a"), b("a"), b("b")]).apply(vec![
            Some(b("1")),
            Some(b("1")),
            None,
        ]);
        assert_eq!(reply, Reply::Integer(2));
        let (_, reply) =
            KeyOp::Bits(b("k"), BitRead::Get(1)).apply(vec![Some(Bytes::from_static(&[0x40]))]);
        assert_eq!(reply, Reply::Integer(1));
        let (_, reply) = KeyOp::Type(b("k")).apply(vec![None]);
        assert_eq!(reply, Reply::Status("none".into()));
    }

    #[test]
    fn del_counts_each_present_key_once() {
        let op = KeyOp::Del(vec![b("b"), b("a"), b("b"), b("c")]);
        assert_eq!(op.keys(), vec![b("a"), b("b"), b("c")]);
        let (writes, reply) = op.apply(vec![Some(b("1")), None, Some(b("3"))]);
        assert_eq!(writes, vec![(b("a"), None), (b("c"), None)]);
        assert_eq!(reply, Reply::Integer(2));
    }

    #[test]
    fn writes_read_nothing() {
        let op = KeyOp::MSet(vec![(b("a"), b("1")), (b("b"), b("2"))]);
        assert!(op.keys().is_empty());
        let (writes, reply) = op.apply(Vec::new());
        assert_eq!(writes.len(), 2);
        assert_eq!(reply, Reply::ok());
    }

    /// Each future gives up the task's cooperative budget now and then, as
    /// an engine read does: joined in chunks, they are polled about once
    /// each (`join_all` over all 10k polled each unfinished one at every
    /// wake, some 400k polls).
    #[test]
    fn join_in_chunks_polls_each_future_about_once() {
        let polls = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let count = 10_000;
        let outputs = local.block_on(&runtime, async {
            let futures = (0..count).map(|i| {
                let polls = polls.clone();
                let mut read = Box::pin(async move {
                    tokio::task::coop::consume_budget().await;
                    i
                });
                std::future::poll_fn(move |cx| {
                    polls.set(polls.get() + 1);
                    read.as_mut().poll(cx)
                })
            });
            join_in_chunks(futures).await
        });
        assert_eq!(outputs, (0..count).collect::<Vec<_>>());
        assert!(polls.get() <= 2 * count as u64, "{} polls", polls.get());
    }
}
