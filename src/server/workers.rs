//! The worker threads connections are served on (`--workers`, one actix
//! arbiter each), and what a worker does before it goes idle.
//!
//! A worker with nothing left to run parks in `epoll_wait`, and the next
//! request on one of its connections wakes it. When clients share the
//! server's cores (a load generator on a test box, an application beside
//! the server), more threads are busy than there are cores, and under
//! unpipelined traffic a worker drains its few ready connections, parks,
//! and is woken again microseconds later: on two cores with
//! `redis-benchmark` beside two workers, 0.37 parks per GET, and P1
//! requests ran about a fifth slower than with one worker (docs/BENCHMARKS.md,
//! session 25). So a worker that served only a few requests since it last
//! parked first yields its core once: a client waiting for that core runs
//! and sends its next requests, which the worker then finds ready without
//! sleeping and being woken. Under pipelined traffic a worker serves many
//! requests per wake-up and parks as before (a yield there took the core
//! from the worker's own next batch: P16 GETs ran 9 % slower when every
//! park yielded). With a core to spare, the yield returns at once.

use std::cell::Cell;

use actix::Arbiter;

/// A worker that served fewer requests than this since it last parked
/// (fewer than one pipelined batch of a client) yields before parking.
const YIELD_BELOW_REQUESTS: u32 = 16;

thread_local! {
    /// Requests this worker served since it last parked.
    static SERVED_SINCE_PARK: Cell<u32> = const { Cell::new(0) };
}

/// Counts a request served on this thread.
pub(crate) fn count_request() {
    SERVED_SINCE_PARK.with(|served| served.set(served.get().saturating_add(1)));
}

/// Runs as the worker's runtime is about to park: yields the core if the
/// worker served a few requests (not none, not a batch's worth) since it
/// last parked. True if it yielded.
fn before_park() -> bool {
    let served = SERVED_SINCE_PARK.with(|served| served.replace(0));
    let yields = (1..YIELD_BELOW_REQUESTS).contains(&served);
    if yields {
        std::thread::yield_now();
    }
    yields
}

/// Starts `count` workers (at least one).
pub(crate) fn start(count: usize) -> Vec<Arbiter> {
    (0..count.max(1))
        .map(|_| {
            Arbiter::try_with_tokio_rt(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .on_thread_park(|| {
                        before_park();
                    })
                    .build()
            })
            .unwrap_or_else(|error| {
                log::warn!(
                    "a worker's runtime could not be built ({error}); using actix's default"
                );
                Arbiter::new()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_few_requests_since_the_last_park_make_a_worker_yield() {
        let parks_after = |served: u32| {
            for _ in 0..served {
                count_request();
            }
            let yielded = before_park();
            assert!(!before_park(), "the count starts again at each park");
            yielded
        };
        assert!(!parks_after(0), "an idle worker parks at once");
        assert!(parks_after(1));
        assert!(parks_after(YIELD_BELOW_REQUESTS - 1));
        assert!(
            !parks_after(YIELD_BELOW_REQUESTS),
            "a batch's worth parks at once"
        );
        assert!(!parks_after(1000));
    }
}
