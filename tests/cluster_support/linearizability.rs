//! A per-key linearizability checker for histories of puts, deletes and
//! gets (Wing & Gong's search with Lowe's memoization, as in Porcupine).
//!
//! A history is a list of [`Operation`]s, each with the real time it was
//! invoked and the time it returned. A history is linearizable if every
//! key's operations can be put in one order that (1) respects real time:
//! an operation that returned before another was invoked comes first, and
//! (2) is a legal run of a register: a get returns the value of the last
//! put before it (`None` after a delete or before any put).
//!
//! An operation that did not return an answer (a write answered with an
//! error, or cut off by a failure) is *indeterminate*: it may have taken
//! effect at any time after its invocation, or never. It has no return time
//! (`returned: None`) and the search may place it anywhere after its
//! invocation or leave it out. Failed reads are left out of the history. An
//! indeterminate put whose value no read returned is dropped before the
//! search (values are unique: if it took effect, it was overwritten before
//! any read, so leaving it out changes no read), which keeps the search
//! small after failures.
//!
//! The search: among the operations not yet placed, those invoked before
//! the earliest return of any unplaced completed operation may come next;
//! try each whose effect is legal in the current register state, recurse,
//! undo. The pair (set of placed operations, register state) is memoized:
//! reaching the same pair twice cannot succeed the second time.

use std::collections::{BTreeMap, HashSet};

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Put(String),
    Delete,
    /// A read and the value it returned.
    Get(Option<String>),
}

/// One operation of a history.
#[derive(Debug, Clone)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub action: Action,
    /// When the client sent it (nanoseconds since the history began).
    pub invoked: u64,
    /// When the client got its answer; `None` if it is indeterminate.
    pub returned: Option<u64>,
}

/// Why a history is not linearizable: the first key found without a legal
/// order, and its operations.
#[derive(Debug)]
pub struct Violation {
    pub key: String,
    pub operations: Vec<Operation>,
}

/// Checks every key of `history` (module doc).
///
/// # Errors
///
/// The first key whose operations have no legal order.
pub fn check(history: &[Operation]) -> Result<(), Violation> {
    let read: HashSet<(&str, &str)> = history
        .iter()
        .filter_map(|op| match &op.action {
            Action::Get(Some(value)) => Some((op.key.as_str(), value.as_str())),
            _ => None,
        })
        .collect();
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in history {
        if let (Action::Put(value), None) = (&op.action, op.returned)
            && !read.contains(&(op.key.as_str(), value.as_str()))
        {
            continue; // an indeterminate put nobody read may as well not have happened
        }
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    for (key, operations) in by_key {
        if !check_key(&operations) {
            return Err(Violation {
                key: key.to_string(),
                operations,
            });
        }
    }
    Ok(())
}

/// Whether one key's operations have a legal order (starting from an
/// absent key).
pub fn check_key(operations: &[Operation]) -> bool {
    let mut operations = operations.to_vec();
    operations.sort_by_key(|op| op.invoked);
    Search::new(&operations).run()
}

/// The search's state: which operations are placed (a bitset), the
/// register's value, and the stack of choices made (explicit, so long
/// histories do not overflow the thread's stack).
struct Search<'a> {
    /// Sorted by invocation time.
    operations: &'a [Operation],
    placed: Vec<u64>,
    state: Option<String>,
    /// Each choice: the operation placed and the state before it.
    choices: Vec<(usize, Option<String>)>,
    seen: HashSet<(Vec<u64>, Option<String>)>,
}

impl<'a> Search<'a> {
    fn new(operations: &'a [Operation]) -> Self {
        Search {
            operations,
            placed: vec![0; operations.len().div_ceil(64)],
            state: None,
            choices: Vec::new(),
            seen: HashSet::new(),
        }
    }

    fn is_placed(&self, i: usize) -> bool {
        self.placed[i / 64] & (1 << (i % 64)) != 0
    }

    fn flip(&mut self, i: usize) {
        self.placed[i / 64] ^= 1 << (i % 64);
    }

    /// The earliest return among unplaced completed operations; `None`
    /// when every completed operation is placed (success).
    fn earliest_return(&self) -> Option<u64> {
        (0..self.operations.len())
            .filter(|i| !self.is_placed(*i))
            .filter_map(|i| self.operations[i].returned)
            .min()
    }

    /// The first operation from `from` on that may come next and is legal
    /// in the current state, with the state after it.
    fn next_choice(&self, from: usize, earliest_return: u64) -> Option<(usize, Option<String>)> {
        for i in from..self.operations.len() {
            let op = &self.operations[i];
            if op.invoked >= earliest_return {
                return None; // sorted by invocation: none later can either
            }
            if self.is_placed(i) {
                continue;
            }
            match &op.action {
                Action::Put(value) => return Some((i, Some(value.clone()))),
                Action::Delete => return Some((i, None)),
                Action::Get(read) if *read == self.state => return Some((i, self.state.clone())),
                Action::Get(_) => {}
            }
        }
        None
    }

    fn run(&mut self) -> bool {
        // `resume_at`: where to look for the next choice at this level
        // (0 on entering a new level, past the undone choice on return).
        let mut resume_at = 0;
        loop {
            let Some(earliest_return) = self.earliest_return() else {
                return true;
            };
            let fresh = resume_at == 0;
            let visited = fresh && !self.seen.insert((self.placed.clone(), self.state.clone()));
            let choice = match visited {
                true => None,
                false => self.next_choice(resume_at, earliest_return),
            };
            match choice {
                Some((i, next)) => {
                    self.flip(i);
                    let before = std::mem::replace(&mut self.state, next);
                    self.choices.push((i, before));
                    resume_at = 0;
                }
                None => {
                    let Some((i, before)) = self.choices.pop() else {
                        return false;
                    };
                    self.flip(i);
                    self.state = before;
                    resume_at = i + 1;
                }
            }
        }
    }
}

/// Checks that no acknowledged write was lost: each key's `final_value`
/// (read after every client stopped) was written by a put (or a delete,
/// for `None`) that no acknowledged write follows in real time.
///
/// # Errors
///
/// The key, its final value and the acknowledged write that should have
/// replaced it.
pub fn check_final_values(
    history: &[Operation],
    final_values: &BTreeMap<String, Option<String>>,
) -> Result<(), String> {
    for (key, final_value) in final_values {
        let writes: Vec<&Operation> = history
            .iter()
            .filter(|op| &op.key == key && !matches!(op.action, Action::Get(_)))
            .collect();
        let wrote_final = |op: &&&Operation| match (&op.action, final_value) {
            (Action::Put(v), Some(f)) => v == f,
            (Action::Delete, None) => true,
            _ => false,
        };
        let candidates: Vec<&&Operation> = writes.iter().filter(wrote_final).collect();
        if candidates.is_empty() && final_value.is_none() {
            continue; // never written, or written and never acknowledged
        }
        let survives = candidates.iter().any(|candidate| {
            let end = candidate.returned.unwrap_or(u64::MAX);
            !writes
                .iter()
                .any(|later| later.returned.is_some() && later.invoked > end)
        });
        if !survives {
            return Err(format!(
                "key {key}: final value {final_value:?} does not come from the last \
                 acknowledged writes (candidates {candidates:?})"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(action: Action, invoked: u64, returned: Option<u64>) -> Operation {
        Operation {
            client: 0,
            key: "k".into(),
            action,
            invoked,
            returned,
        }
    }

    fn put(v: &str, invoked: u64, returned: u64) -> Operation {
        op(Action::Put(v.into()), invoked, Some(returned))
    }

    fn get(v: Option<&str>, invoked: u64, returned: u64) -> Operation {
        op(Action::Get(v.map(String::from)), invoked, Some(returned))
    }

    #[test]
    fn a_sequential_history_is_accepted() {
        let history = [
            get(None, 0, 1),
            put("a", 2, 3),
            get(Some("a"), 4, 5),
            op(Action::Delete, 6, Some(7)),
            get(None, 8, 9),
        ];
        assert!(check(&history).is_ok());
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // put a and put b overlap; readers after both may see either, but
        // two later reads in sequence must agree with one order.
        let history = [
            put("a", 0, 10),
            put("b", 1, 9),
            get(Some("a"), 11, 12),
            get(Some("a"), 13, 14),
        ];
        assert!(check(&history).is_ok());
        let history = [put("a", 0, 10), put("b", 1, 9), get(Some("b"), 11, 12)];
        assert!(check(&history).is_ok());
        // A read overlapping a put may see the old or the new value.
        let history = [put("a", 0, 1), put("b", 2, 10), get(Some("a"), 3, 4)];
        assert!(check(&history).is_ok());
    }

    #[test]
    fn a_stale_read_is_rejected() {
        let history = [put("a", 0, 1), put("b", 2, 3), get(Some("a"), 4, 5)];
        let violation = check(&history).unwrap_err();
        assert_eq!(violation.key, "k");
    }

    #[test]
    fn reads_that_go_back_in_time_are_rejected() {
        // Both puts overlap both reads, but once a reader saw b after a, a
        // later reader cannot see a again: no single order explains it.
        let history = [
            put("a", 0, 100),
            put("b", 0, 100),
            get(Some("a"), 10, 20),
            get(Some("b"), 30, 40),
            get(Some("a"), 50, 60),
        ];
        assert!(check(&history).is_err());
    }

    #[test]
    fn a_value_never_written_is_rejected() {
        assert!(check(&[put("a", 0, 1), get(Some("z"), 2, 3)]).is_err());
        assert!(check(&[get(Some("a"), 0, 1), put("a", 2, 3)]).is_err());
    }

    #[test]
    fn an_indeterminate_write_may_or_may_not_take_effect() {
        let failed = op(Action::Put("x".into()), 2, None);
        let seen = [put("a", 0, 1), failed.clone(), get(Some("x"), 100, 101)];
        assert!(check(&seen).is_ok());
        let unseen = [put("a", 0, 1), failed.clone(), get(Some("a"), 100, 101)];
        assert!(check(&unseen).is_ok());
        // ... but not before it was invoked.
        let early = [
            put("a", 0, 1),
            get(Some("x"), 1, 2),
            op(Action::Put("x".into()), 3, None),
        ];
        assert!(check(&early).is_err());
    }

    #[test]
    fn keys_are_checked_separately() {
        let mut other = put("b", 0, 1);
        other.key = "j".into();
        assert!(check(&[put("a", 0, 1), other, get(Some("a"), 2, 3)]).is_ok());
    }

    #[test]
    fn a_lost_acknowledged_write_is_found() {
        let history = [put("a", 0, 1), put("b", 2, 3)];
        let lost = BTreeMap::from([("k".to_string(), Some("a".to_string()))]);
        assert!(check_final_values(&history, &lost).is_err());
        let kept = BTreeMap::from([("k".to_string(), Some("b".to_string()))]);
        assert!(check_final_values(&history, &kept).is_ok());
        let concurrent = [put("a", 0, 5), put("b", 2, 3)];
        assert!(check_final_values(&concurrent, &lost).is_ok());
    }

    #[test]
    fn a_long_history_needs_no_deep_stack() {
        // Ten thousand sequential operations: one choice each, deeper
        // than a recursive search could go on a test thread.
        let history: Vec<_> = (0..10_000u64)
            .map(|i| put(&format!("v{i}"), 2 * i, 2 * i + 1))
            .collect();
        assert!(check(&history).is_ok());
    }

    #[test]
    fn a_few_thousand_concurrent_operations_check_quickly() {
        // Four clients, each doing put then get in turn, overlapping the
        // others: a linearizable history built from a known order.
        let mut history = Vec::new();
        let mut current = None;
        for step in 0..3000u64 {
            let t = step * 10;
            if step % 2 == 0 {
                let value = format!("v{step}");
                current = Some(value.clone());
                history.push(put(&value, t.saturating_sub(15), t + 15));
            } else {
                history.push(get(current.as_deref(), t.saturating_sub(15), t + 1));
            }
        }
        assert!(check(&history).is_ok());
    }
}
