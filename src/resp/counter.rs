//! The counter: the one actor per server that runs every read-modify-write
//! (INCR family, SETNX, SET NX/XX/GET, APPEND). The `Db` API has no
//! read-modify-write primitive, so two INCRs of one key from two
//! connections could both read 5 and both write 6. The counter takes them
//! one at a time: get, [`Rmw::apply`], put, and only when the put is
//! acknowledged the next one, so each sees the one before.
//!
//! The cost: these commands are serial across the server, each waiting for
//! its write to be durable (one WAL sync each under `--sync always`).

use actix::prelude::*;

use super::commands::engine_error;
use super::commands::strings::Rmw;
use super::reply::Reply;
use crate::Db;

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
            let key = rmw.key().clone();
            let old = match db.get(key.clone()).await {
                Ok(old) => old,
                Err(e) => return engine_error(&e),
            };
            let (new, reply) = rmw.apply(old);
            if let Some(new) = new
                && let Err(e) = db.put(key, new).await
            {
                return engine_error(&e);
            }
            reply
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}
