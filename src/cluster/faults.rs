//! A fault-injecting layer for the peer network, for tests of in-process
//! clusters: it drops, delays, duplicates and partitions node-to-node
//! messages.
//!
//! Every node of a test cluster is given the same [`NetworkFaults`]
//! (through [`super::ClusterConfig::faults`]); before a node sends a
//! request to a peer it asks [`NetworkFaults::fate`] what happens to it.
//! The rules are an immutable [`FaultRules`] value behind an `ArcSwap`: the
//! test replaces them at any time, the nodes read them lock-free. A server
//! started from the command line has no `NetworkFaults` and pays one
//! `Option` check per message.
//!
//! What each fault does to a request from node A to node B:
//! - *cut* (A, B) in [`FaultRules::cut`]: never sent, the call fails as if
//!   B were unreachable. A partition cuts both directions of every link
//!   across it.
//! - *drop*: with probability `drop_per_mille / 1000`, either the request
//!   is never sent or (with equal chance) it is delivered and its reply is
//!   lost; either way the caller sees a network error, and in the second
//!   case the request did take effect.
//! - *delay*: the request waits a random time up to `max_delay` before it
//!   is sent.
//! - *duplicate*: with probability `duplicate_per_mille / 1000` the
//!   request is delivered twice and the first reply is discarded. Only
//!   Raft's own messages are duplicated (AppendEntries and Vote are
//!   idempotent by design); a forwarded client write is not, and TCP never
//!   duplicates it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::NodeId;

/// What the network does to node-to-node messages (default: nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultRules {
    /// Directed links `(from, to)` that carry nothing.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Chance in 1000 that a message or its reply is lost.
    pub drop_per_mille: u32,
    /// Chance in 1000 that a (Raft) message is delivered twice.
    pub duplicate_per_mille: u32,
    /// Each message waits a random time up to this before it is sent.
    pub max_delay: Duration,
}

impl FaultRules {
    /// These rules with every link between `side` and `rest` cut, both
    /// ways.
    pub fn partitioned(mut self, side: &[NodeId], rest: &[NodeId]) -> Self {
        for a in side {
            for b in rest {
                self.cut.insert((*a, *b));
                self.cut.insert((*b, *a));
            }
        }
        self
    }

    /// These rules with no link cut.
    pub fn healed(mut self) -> Self {
        self.cut.clear();
        self
    }
}

/// The fate of one message, drawn by [`NetworkFaults::fate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Not sent: the link is cut or the message is lost.
    Lost,
    /// Sent after `delay`, `copies` times (the last reply counts); the
    /// reply is lost if `lose_reply`.
    Sent {
        delay: Duration,
        copies: u8,
        lose_reply: bool,
    },
}

/// The shared, lock-free control of a test network (module doc).
#[derive(Debug)]
pub struct NetworkFaults {
    rules: ArcSwap<FaultRules>,
    /// xorshift64 state: a deterministic stream of draws per seed (the
    /// order of draws across tasks is not deterministic).
    random: AtomicU64,
}

impl NetworkFaults {
    /// A network with no faults, drawing from `seed`.
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(NetworkFaults {
            rules: ArcSwap::from_pointee(FaultRules::default()),
            random: AtomicU64::new(seed | 1),
        })
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<FaultRules> {
        self.rules.load_full()
    }

    /// Replaces the rules; messages sent from now on follow them.
    pub fn set(&self, rules: FaultRules) {
        self.rules.store(Arc::new(rules));
    }

    /// Cuts every link between `side` and `rest`, keeping the other rules.
    pub fn partition(&self, side: &[NodeId], rest: &[NodeId]) {
        self.set(FaultRules::clone(&self.rules()).partitioned(side, rest));
    }

    /// Restores every cut link, keeping the other rules.
    pub fn heal(&self) {
        self.set(FaultRules::clone(&self.rules()).healed());
    }

    /// What happens to a message from `from` to `to`; `duplicable` says
    /// whether the message may be delivered twice.
    pub fn fate(&self, from: NodeId, to: NodeId, duplicable: bool) -> Fate {
        let rules = self.rules.load();
        if rules.cut.contains(&(from, to)) {
            return Fate::Lost;
        }
        let mut lose_reply = false;
        if self.chance(rules.drop_per_mille) {
            if self.chance(500) {
                return Fate::Lost;
            }
            lose_reply = true;
        }
        let copies = if duplicable && self.chance(rules.duplicate_per_mille) {
            2
        } else {
            1
        };
        let max_nanos = rules.max_delay.as_nanos() as u64;
        let delay = match max_nanos {
            0 => Duration::ZERO,
            max => Duration::from_nanos(self.next() % (max + 1)),
        };
        Fate::Sent {
            delay,
            copies,
            lose_reply,
        }
    }

    fn chance(&self, per_mille: u32) -> bool {
        per_mille > 0 && self.next() % 1000 < u64::from(per_mille)
    }

    fn next(&self) -> u64 {
        let step = |mut x: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let previous = self
            .random
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(step(x)))
            .unwrap_or_else(|x| x);
        step(previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_cuts_both_ways_and_heals() {
        let faults = NetworkFaults::new(7);
        faults.partition(&[1], &[2, 3]);
        assert_eq!(faults.fate(1, 2, true), Fate::Lost);
        assert_eq!(faults.fate(3, 1, true), Fate::Lost);
        assert!(matches!(faults.fate(2, 3, true), Fate::Sent { .. }));
        faults.heal();
        assert!(matches!(faults.fate(1, 2, true), Fate::Sent { .. }));
    }

    #[test]
    fn drops_duplicates_and_delays_follow_their_rates() {
        let faults = NetworkFaults::new(42);
        faults.set(FaultRules {
            drop_per_mille: 100,
            duplicate_per_mille: 200,
            max_delay: Duration::from_millis(5),
            ..FaultRules::default()
        });
        let (mut lost, mut lost_replies, mut doubled, mut longest) = (0, 0, 0, Duration::ZERO);
        for _ in 0..10_000 {
            match faults.fate(1, 2, true) {
                Fate::Lost => lost += 1,
                Fate::Sent {
                    delay,
                    copies,
                    lose_reply,
                } => {
                    lost_replies += usize::from(lose_reply);
                    doubled += usize::from(copies == 2);
                    longest = longest.max(delay);
                }
            }
        }
        assert!((350..650).contains(&lost), "{lost}");
        assert!((350..650).contains(&lost_replies), "{lost_replies}");
        assert!((1500..2100).contains(&doubled), "{doubled}");
        assert!(longest > Duration::from_millis(4) && longest <= Duration::from_millis(5));
        let never_doubled = (0..1000).all(|_| match faults.fate(1, 2, false) {
            Fate::Sent { copies, .. } => copies == 1,
            Fate::Lost => true,
        });
        assert!(never_doubled);
    }
}
