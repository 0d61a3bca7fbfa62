//! The counter: the one actor per server that runs every read-modify-write
//! (see [`super::commands::rmw`]) and every EXEC, each as one isolated,
//! atomic unit.
//!
//! A unit reads its keys with [`Db::get_versioned`] (values with their
//! expiries), computes its writes with the pure [`KeyOp::apply`] (the
//! expiry a put carries from [`Rmw::expiry_of_write`]: a plain SET clears
//! it, INCR and APPEND keep it, RENAME carries it; the EXPIRE family from
//! [`ExpireOp::apply`]) and writes them as one batch that
//! requires every key it read to be unchanged
//! ([`WriteBatch::require_unchanged`]). If another connection wrote one of
//! them in between (a plain SET does not come through here), the engine
//! refuses the batch with `Conflict` and the unit is run again from fresh
//! reads. So no update is lost and an EXEC sees no other connection's write
//! between its commands.
//!
//! Units are grouped: while one round is being committed, the units that
//! arrive wait, and the next round takes them all (up to
//! [`MAX_UNITS_PER_ROUND`]), runs them one after the other against its own
//! view of the keys (each sees the writes of those before it) and commits
//! them as one batch: one WAL write, and one sync under `--sync always`,
//! for the whole round. A round that fails for another reason than a
//! conflict (a value too large, say) is redone one unit at a time, so one
//! unit's error is not another's.
//!
//! On a cluster node ([`Store::Cluster`]) each attempt first passes the
//! node's read barrier, reads the local engine, and proposes the round's
//! batch conditional on the value and expiry of every key it read (not on
//! sequence numbers: see [`crate::cluster::request`]); the entry's apply
//! decides the conditions alike on every node and answers `conflict` back
//! to this node, which runs the round again from fresh reads. Two INCR
//! loops through two nodes therefore lose no increment. The difference
//! from one engine: a key changed and changed back to the same value and
//! expiry between the read and the apply (ABA) counts as unchanged. For
//! WATCH, the check at EXEC against the WATCH mark is still by sequence
//! number on this node's engine; only the window between EXEC's reads and
//! its apply is judged by value.
//!
//! WATCH: an EXEC carries the keys its connection watched, each with the
//! sequence number the database had applied when WATCH ran and the expiry
//! WATCH read ([`WatchMark`]). A key whose newest version is newer than
//! that (or that an earlier unit of the round wrote), or whose expiry has
//! passed since, was changed: the EXEC answers a null array and writes
//! nothing.

use std::collections::{HashMap, HashSet};

use crate::resp::commands::keyop::{JOINED_AT_ONCE, join_in_chunks};
use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;

use super::commands::expire::ExpireOp;
use super::commands::keyop::KeyOp;
use super::commands::rmw::{Rmw, Writes};
use super::commands::transaction::BoundedReplies;
use super::commands::{WatchMark, engine_error};
use super::reply::{HEADER_BYTES, Reply};
use super::store::{Current, Store, StoreError};
use crate::engine::Mutation;
use crate::{Db, Error, ReadVersion, WriteBatch};

type Result<T> = std::result::Result<T, StoreError>;

/// The most units one round takes.
pub const MAX_UNITS_PER_ROUND: usize = 256;
/// How often a round is redone at once after conflicts on one engine, before
/// it waits for a pause in the writes it loses to (see
/// [`Store::conflict_retries`]).
const MAX_ATTEMPTS: usize = 64;

/// Runs [`Unit`]s; see the module doc.
pub struct Counter {
    store: Store,
    /// Units waiting for the next round.
    queue: Vec<Queued>,
    /// A round is being run.
    running: bool,
}

struct Queued {
    unit: Unit,
    reply: oneshot::Sender<Reply>,
}

/// What the counter runs as one.
#[derive(Debug, Clone)]
pub enum Unit {
    /// One read-modify-write command.
    Rmw(Rmw),
    /// EXEC: the queued commands in order, answered as an array, or a null
    /// array when a watched key changed.
    Exec {
        ops: Vec<KeyOp>,
        /// Each watched key with where its WATCH ran.
        watched: Vec<(Bytes, WatchMark)>,
        /// The largest reply the EXEC may build; past it the transaction
        /// still runs whole, but answers
        /// [`exec_too_large`](super::commands::transaction::exec_too_large) instead of its
        /// replies (they are dropped as they pass the bound).
        max_reply_bytes: usize,
    },
}

impl Counter {
    /// A counter writing to `store`.
    pub fn new(store: Store) -> Self {
        Counter {
            store,
            queue: Vec::new(),
            running: false,
        }
    }

    fn start_round(&mut self, ctx: &mut Context<Self>) {
        if self.running || self.queue.is_empty() {
            return;
        }
        self.running = true;
        let take = self.queue.len().min(MAX_UNITS_PER_ROUND);
        let round: Vec<Queued> = self.queue.drain(..take).collect();
        let work = run_round(self.store.clone(), round);
        ctx.spawn(work.into_actor(self).map(|(), act, ctx| {
            act.running = false;
            act.start_round(ctx);
        }));
    }
}

impl Actor for Counter {
    type Context = Context<Self>;
}

/// Run one unit; answers its reply.
#[derive(Debug, Message)]
#[rtype(result = "Reply")]
pub struct Apply(pub Unit);

impl Handler<Apply> for Counter {
    type Result = ResponseFuture<Reply>;

    fn handle(&mut self, Apply(unit): Apply, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        self.queue.push(Queued { unit, reply });
        self.start_round(ctx);
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|_| engine_error(&Error::Closed))
        })
    }
}

/// Runs a round and answers each unit in it.
async fn run_round(db: Store, round: Vec<Queued>) {
    let (units, replies): (Vec<Unit>, Vec<_>) =
        round.into_iter().map(|q| (q.unit, q.reply)).unzip();
    let answers = match commit_together(&db, &units).await {
        Ok(answers) => answers,
        Err(StoreError::Engine(_)) if units.len() > 1 => {
            let mut answers = Vec::with_capacity(units.len());
            for unit in units {
                let alone = commit_together(&db, std::slice::from_ref(&unit)).await;
                answers.push(alone.map_or_else(|e| e.reply(), |mut a| a.remove(0)));
            }
            answers
        }
        // No leader: every unit gets the same answer, at once.
        Err(e) => vec![e.reply(); units.len()],
    };
    for (reply, answer) in replies.into_iter().zip(answers) {
        let _ = reply.send(answer);
    }
}

/// Runs `units` as one, redoing them after conflicts: their answers, in
/// order, once their writes are acknowledged.
async fn commit_together(store: &Store, units: &[Unit]) -> Result<Vec<Reply>> {
    let mut retries = store.conflict_retries(MAX_ATTEMPTS);
    loop {
        match attempt(store, units).await {
            Err(e) if e.is_conflict() && retries.again().await => {}
            other => return other,
        }
    }
}

/// One attempt of a round; on a cluster node, after the read barrier (the
/// reads are local), and its write conditional on the values read.
async fn attempt(store: &Store, units: &[Unit]) -> Result<Vec<Reply>> {
    store.barrier().await?;
    let db = &store.db();
    let mut view = RoundView {
        keeps_every_value: store.conditions_on_values(),
        ..RoundView::default()
    };
    let mut answers = Vec::with_capacity(units.len());
    for unit in units {
        let answer = match unit {
            Unit::Rmw(rmw) => view.run(db, KeyOp::Rmw(rmw.clone())).await?,
            Unit::Exec {
                ops,
                watched,
                max_reply_bytes,
            } => {
                if view.changed(db, watched).await? {
                    answers.push(Reply::NullArray);
                    continue;
                }
                let mut replies = BoundedReplies::new(ops.len(), *max_reply_bytes);
                for op in ops {
                    match view.run_within(db, op.clone(), replies.room()).await? {
                        Some(reply) => replies.push(reply),
                        None => replies.exceed(),
                    }
                }
                replies.into_reply()
            }
        };
        answers.push(answer);
    }
    view.commit(store, db).await?;
    Ok(answers)
}

/// What one attempt of a round sees and has written: each key's value as
/// the units before left it, the version of every key read from the
/// engine, and the keys written in the order first written.
///
/// The view keeps the values the round wrote, not those it only read: once
/// the operation that read a key has run, a value read (and not written
/// since) is replaced by an empty stand-in, so that a transaction that
/// reads many large values (GETs, EXISTS) holds none of them past the
/// command that needed it (its reply is bounded apart, see
/// [`BoundedReplies`]). A key read only to learn whether it has a value
/// (EXISTS, DEL, TYPE: [`KeyOp::needs_presence_only`]) drops it as the
/// read completes. An operation that needs a value the view dropped reads
/// the key again; a version other than the first read is a conflict (the
/// round runs again from fresh reads). Not on a cluster node, whose write
/// is conditional on the values read.
#[derive(Default)]
struct RoundView {
    values: HashMap<Bytes, Current>,
    /// Each key read from the engine: its version and what was read.
    read: Vec<(Bytes, ReadVersion, Current)>,
    /// The sequence number each key of `read` was read at, by key.
    read_seqs: HashMap<Bytes, u64>,
    written: Vec<Bytes>,
    written_set: HashSet<Bytes>,
    /// Keys whose value in `values` is an empty stand-in.
    stand_ins: HashSet<Bytes>,
    /// Values read are kept whatever needed them (a cluster node's store).
    keeps_every_value: bool,
}

impl RoundView {
    /// The values of `keys`, reading from the engine those not seen yet.
    /// With `presence_only`, a value read is dropped at once (see the type's
    /// doc) and the caller gets an empty stand-in for it.
    async fn values_of(
        &mut self,
        db: &Db,
        keys: &[Bytes],
        presence_only: bool,
    ) -> Result<Vec<Current>> {
        if !presence_only {
            self.read_values_again(db, keys).await?;
        }
        let drops_values = presence_only && !self.keeps_every_value;
        let mut missing: Vec<Bytes> = keys
            .iter()
            .filter(|k| !self.values.contains_key(*k))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        // A key nothing can be stored under reads as absent, with no
        // version to require at commit.
        missing.retain(|key| {
            let storable = db.check_put(key, &[]).is_ok();
            if !storable {
                self.values.insert(key.clone(), None);
            }
            storable
        });
        let reads = join_in_chunks(missing.iter().map(|key| {
            futures_util::FutureExt::map(db.get_versioned(key.clone()), move |read| {
                read.map(|mut read| {
                    if drops_values {
                        read.value = read.value.map(|_| Bytes::new());
                    }
                    read
                })
            })
        }))
        .await;
        for (key, read) in missing.into_iter().zip(reads) {
            let read = read?;
            let current = read.value.map(|v| (v, read.expire_at_ms));
            if drops_values && current.is_some() {
                self.stand_ins.insert(key.clone());
            }
            let kept = match self.keeps_every_value {
                true => current.clone(),
                false => stand_in(&current),
            };
            self.read_seqs.insert(key.clone(), read.version.seq);
            self.read.push((key.clone(), read.version, kept));
            self.values.insert(key, current);
        }
        Ok(keys
            .iter()
            .map(|k| self.values.get(k).cloned().flatten())
            .collect())
    }

    /// Reads again the keys of `keys` whose value was dropped: a conflict
    /// if one changed since it was first read.
    async fn read_values_again(&mut self, db: &Db, keys: &[Bytes]) -> Result<()> {
        let mut again: Vec<Bytes> = keys
            .iter()
            .filter(|k| self.stand_ins.contains(*k))
            .cloned()
            .collect();
        again.sort();
        again.dedup();
        let reads = join_in_chunks(again.iter().map(|key| db.get_versioned(key.clone()))).await;
        for (key, read) in again.into_iter().zip(reads) {
            let read = read?;
            if self.read_seqs.get(&key) != Some(&read.version.seq) {
                return Err(Error::Conflict.into());
            }
            self.stand_ins.remove(&key);
            let current = read.value.map(|v| (v, read.expire_at_ms));
            self.values.insert(key, current);
        }
        Ok(())
    }

    /// Runs one operation of an EXEC against the view: `None` if its reply
    /// would pass `room` bytes, which an MGET finds out as it reads.
    async fn run_within(&mut self, db: &Db, op: KeyOp, room: usize) -> Result<Option<Reply>> {
        match op {
            KeyOp::MGet(keys) => self.mget_within(db, &keys, room).await,
            op => self.run(db, op).await.map(Some),
        }
    }

    /// MGET in a round: its keys read a few at a time, each group's values
    /// counted into the reply and dropped from the view before the next
    /// group is read, so the round holds at most `room` bytes of them (and
    /// one group's reads); `None` as soon as the reply passes `room`.
    async fn mget_within(&mut self, db: &Db, keys: &[Bytes], room: usize) -> Result<Option<Reply>> {
        let mut bytes = HEADER_BYTES;
        if bytes > room {
            // An earlier reply used the budget up: nothing is read.
            return Ok(None);
        }
        let mut values = Vec::with_capacity(keys.len().min(room / HEADER_BYTES + 1));
        for group in keys.chunks(JOINED_AT_ONCE) {
            let current = self.values_of(db, group, false).await?;
            self.drop_values_read(group);
            for value in current {
                let value = Reply::value(value.map(|(value, _)| value));
                bytes = bytes.saturating_add(value.wire_bytes());
                if bytes > room {
                    return Ok(None);
                }
                values.push(value);
            }
        }
        Ok(Some(Reply::Array(values)))
    }

    /// Runs one operation against the view.
    async fn run(&mut self, db: &Db, op: KeyOp) -> Result<Reply> {
        let keys = op.keys();
        let current = self.values_of(db, &keys, op.needs_presence_only()).await?;
        let now_ms = db.now_ms();
        let (writes, reply) = apply(op, current, now_ms);
        // A write the engine would refuse (an empty or too long key, a too
        // large value) fails its own command, not the whole round.
        let refused = writes.iter().find_map(|w| {
            let value = w.value.as_deref().unwrap_or_default();
            db.check_put(&w.key, value).err()
        });
        if let Some(error) = refused {
            return Ok(engine_error(&error));
        }
        for write in writes {
            if self.written_set.insert(write.key.clone()) {
                self.written.push(write.key.clone());
            }
            self.stand_ins.remove(&write.key);
            let expired = write.expire_at_ms != 0 && write.expire_at_ms <= now_ms;
            let value = write.value.filter(|_| !expired);
            self.values
                .insert(write.key, value.map(|v| (v, write.expire_at_ms)));
        }
        self.drop_values_read(&keys);
        Ok(reply)
    }

    /// Replaces the values of `keys` read and not written by the round with
    /// stand-ins (see the type's doc).
    fn drop_values_read(&mut self, keys: &[Bytes]) {
        if self.keeps_every_value {
            return;
        }
        for key in keys {
            if self.written_set.contains(key) {
                continue;
            }
            if let Some(current @ Some(_)) = self.values.get_mut(key) {
                *current = stand_in(current);
                self.stand_ins.insert(key.clone());
            }
        }
    }

    /// Whether a watched key changed since WATCH: written earlier in this
    /// round, newer in the engine than the sequence number at WATCH, or
    /// expired since the WATCH.
    async fn changed(&mut self, db: &Db, watched: &[(Bytes, WatchMark)]) -> Result<bool> {
        let now_ms = db.now_ms();
        for (key, mark) in watched {
            if db.check_put(key, &[]).is_err() {
                continue; // nothing can be stored under it: never changes
            }
            if self.written_set.contains(key) {
                return Ok(true);
            }
            if !self.read_seqs.contains_key(key) {
                self.values_of(db, std::slice::from_ref(key), true).await?;
            }
            let Some(&seq) = self.read_seqs.get(key) else {
                return Ok(true);
            };
            if watch_broken(*mark, seq, now_ms) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Writes what the round wrote, as one batch requiring every key read
    /// to be unchanged. A round that wrote nothing but read several keys
    /// reads their versions again: all unchanged means they held together.
    async fn commit(self, store: &Store, db: &Db) -> Result<()> {
        if self.written.is_empty() {
            return self.confirm_reads(db).await;
        }
        let mut batch = WriteBatch::new();
        for (key, version, _) in &self.read {
            batch.require_unchanged(key.clone(), *version);
        }
        for key in self.written {
            match self.values.get(&key).cloned().flatten() {
                Some((value, expire_at_ms)) => batch.put_with_expiry(key, value, expire_at_ms),
                None => batch.delete(key),
            };
        }
        let read_as = self.read.into_iter().map(|(k, _, c)| (k, c)).collect();
        store.write_read_as(batch, read_as).await
    }

    async fn confirm_reads(&self, db: &Db) -> Result<()> {
        if self.read.len() < 2 {
            return Ok(());
        }
        // Only the versions are compared: no value read again is kept.
        let again = join_in_chunks(self.read.iter().map(|(key, ..)| {
            futures_util::FutureExt::map(db.get_versioned(key.clone()), |read| {
                read.map(|read| read.version.seq)
            })
        }))
        .await;
        for ((_, first, _), again) in self.read.iter().zip(again) {
            if again? != first.seq {
                return Err(Error::Conflict.into());
            }
        }
        Ok(())
    }
}

/// An empty value in place of `current`'s, with its expiry: whether the key
/// has a value, and until when.
fn stand_in(current: &Current) -> Current {
    current
        .as_ref()
        .map(|(_, expire_at_ms)| (Bytes::new(), *expire_at_ms))
}

/// Whether a key watched at `mark`, whose newest version is now `seq`,
/// changed by `now_ms`: a newer version, or the value WATCH saw has
/// expired since (a key already expired when watched had no value then,
/// and no expiry to pass).
fn watch_broken(mark: WatchMark, seq: u64, now_ms: u64) -> bool {
    let expired_since = mark.expire_at_ms != 0 && mark.expire_at_ms <= now_ms;
    seq > mark.seq || expired_since
}

/// One operation's writes (with the expiry each put carries) and reply,
/// from the current values of its keys.
fn apply(op: KeyOp, current: Vec<Current>, now_ms: u64) -> (Vec<Mutation>, Reply) {
    let values = |current: Vec<Current>| current.into_iter().map(|c| c.map(|(v, _)| v)).collect();
    match op {
        KeyOp::Rmw(Rmw::Expiry(op)) => expire(op, current, now_ms),
        KeyOp::Rmw(rmw) => {
            let expiries: Vec<u64> = current
                .iter()
                .map(|c| c.as_ref().map_or(0, |c| c.1))
                .collect();
            let expire_at_ms = rmw.expiry_of_write(&expiries, now_ms);
            let (writes, reply) = rmw.apply(values(current));
            (with_expiry(writes, expire_at_ms), reply)
        }
        // Plain writes (SET, MSET, DEL) leave no expiry.
        op => {
            let (writes, reply) = op.apply(values(current));
            (with_expiry(writes, 0), reply)
        }
    }
}

fn expire(op: ExpireOp, current: Vec<Current>, now_ms: u64) -> (Vec<Mutation>, Reply) {
    op.apply(current.into_iter().next().flatten(), now_ms)
}

/// `writes` as mutations, each put expiring at `expire_at_ms`.
fn with_expiry(writes: Writes, expire_at_ms: u64) -> Vec<Mutation> {
    writes
        .into_iter()
        .map(|(key, value)| Mutation {
            expire_at_ms: if value.is_some() { expire_at_ms } else { 0 },
            key,
            value,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_key_breaks_on_a_newer_version_or_when_its_expiry_passes() {
        let never = WatchMark {
            seq: 10,
            expire_at_ms: 0,
        };
        assert!(!watch_broken(never, 10, 5_000));
        assert!(watch_broken(never, 11, 5_000));
        // Live with an expiry at WATCH: changed once the expiry has passed.
        let expiring = WatchMark {
            seq: 10,
            expire_at_ms: 2_000,
        };
        assert!(!watch_broken(expiring, 10, 1_999));
        assert!(watch_broken(expiring, 10, 2_000));
    }
}
