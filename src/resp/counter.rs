//! The counter: the one actor per server that runs every read-modify-write
//! (see [`super::commands::rmw`]). It takes them one at a time: read the
//! keys with their expiries ([`Db::read_for_update`]), [`Rmw::apply`] (or
//! [`ExpireOp::apply`](super::commands::expire::ExpireOp::apply)), and
//! write the writes as one atomic batch with
//! [`Db::write_if_unchanged`], which the engine drops if another write
//! (a plain SET from another connection) touched a key since it was read;
//! then it reads again. Only when a write is acknowledged does the next
//! one start, so each sees the one before, and none is lost to a plain
//! write either.
//!
//! The cost: these commands are serial across the server, each waiting for
//! its write to be durable (one WAL sync each under `--sync always`).

use actix::prelude::*;

use super::commands::engine_error;
use super::commands::strings::Rmw;
use super::reply::Reply;
use futures_util::future::join_all;

use crate::engine::{Mutation, ReadVersion};
use crate::{Db, WriteBatch};

/// Runs `Rmw`s one at a time.
pub struct Counter {
    db: Db,
}

impl Counter {
    /// A counter over `db`.
    pub fn new(db: Db) -> Self {
        Counter { db }
    }
}

impl Actor for Counter {
    type Context = Context<Self>;
}

/// Apply one read-modify-write; answers its reply.
#[derive(Debug, Message)]
#[rtype(result = "Reply")]
pub struct Apply(pub Rmw);

impl Handler<Apply> for Counter {
    /// Atomic: the actor takes no other message until this one is done.
    type Result = AtomicResponse<Self, Reply>;

    fn handle(&mut self, Apply(rmw): Apply, _ctx: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let work = async move {
            loop {
                match attempt(&db, rmw.clone()).await {
                    Ok(Some(reply)) => return reply,
                    // A write to one of the keys since they were read:
                    // read them again.
                    Ok(None) => continue,
                    Err(e) => return engine_error(&e),
                }
            }
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}

/// Reads the keys, applies `rmw`, and writes its writes if none of the keys
/// changed meanwhile: the reply, or `None` if they changed.
async fn attempt(db: &Db, rmw: Rmw) -> crate::Result<Option<Reply>> {
    let reads = rmw.keys().into_iter().map(|key| db.read_for_update(key));
    let reads = join_all(reads)
        .await
        .into_iter()
        .collect::<crate::Result<Vec<ReadVersion>>>()?;
    let now_ms = db.now_ms();
    let (writes, reply) = match rmw {
        Rmw::Expiry(op) => {
            let current = reads
                .first()
                .and_then(|read| read.value.clone().map(|value| (value, read.expire_at_ms)));
            op.apply(current, now_ms)
        }
        rmw => {
            let expiries: Vec<u64> = reads.iter().map(|read| read.expire_at_ms).collect();
            let expire_at_ms = rmw.expiry_of_write(&expiries, now_ms);
            let olds = reads.iter().map(|read| read.value.clone()).collect();
            let (writes, reply) = rmw.apply(olds);
            let writes = writes
                .into_iter()
                .map(|(key, value)| Mutation {
                    expire_at_ms: if value.is_some() { expire_at_ms } else { 0 },
                    key,
                    value,
                })
                .collect();
            (writes, reply)
        }
    };
    if writes.is_empty() {
        return Ok(Some(reply));
    }
    let mut batch = WriteBatch::new();
    for write in writes {
        match write.value {
            Some(value) => batch.put_with_expiry(write.key, value, write.expire_at_ms),
            None => batch.delete(write.key),
        };
    }
    Ok(db.write_if_unchanged(&reads, batch).await?.then_some(reply))
}
