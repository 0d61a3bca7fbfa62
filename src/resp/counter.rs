//! The counter: the one actor per server that runs every read-modify-write
//! (see [`super::commands::rmw`]). The `Db` API has no
//! read-modify-write primitive, so two INCRs of one key from two
//! connections could both read 5 and both write 6. The counter takes them
//! one at a time: get the keys, [`Rmw::apply`], write the writes as one
//! atomic batch, and only when it is acknowledged the next one, so each
//! sees the one before.
//!
//! The cost: these commands are serial across the server, each waiting for
//! its write to be durable (one WAL sync each under `--sync always`).

use actix::prelude::*;

use super::commands::engine_error;
use super::commands::strings::Rmw;
use super::reply::Reply;
use futures_util::future::join_all;

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
            let reads = rmw.keys().into_iter().map(|key| db.get(key));
            let mut olds = Vec::new();
            for read in join_all(reads).await {
                match read {
                    Ok(old) => olds.push(old),
                    Err(e) => return engine_error(&e),
                }
            }
            let (writes, reply) = rmw.apply(olds);
            if writes.is_empty() {
                return reply;
            }
            let mut batch = WriteBatch::new();
            for (key, value) in writes {
                match value {
                    Some(value) => batch.put(key, value),
                    None => batch.delete(key),
                };
            }
            match db.write(batch).await {
                Ok(()) => reply,
                Err(e) => engine_error(&e),
            }
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}
