//! Redis databases (`SELECT n`) as key ranges of the one engine.
//!
//! Database 0 is the engine's key space as the native protocol sees it,
//! minus NaiveKV's reserved prefix ([`crate::keyspace::INTERNAL_PREFIX`]):
//! a key in database 0 is stored as it is, and a Redis client cannot name a
//! key under the reserved prefix there. Database `n >= 1` keeps key `k` as
//! [`DB_PREFIX`]` + n (decimal) + "/" + k`; each database is so one
//! contiguous range (everything that starts with its prefix), and all of
//! them together are the range of `DB_PREFIX`, which is what FLUSHDB and
//! FLUSHALL delete with one range delete each.
//!
//! Keys are mapped in one place: [`Database::map_args`], when a command is
//! parsed, at the key positions of the command table; every command, inside
//! MULTI or not, read-modify-writes included, so works on the selected
//! database. KEYS, SCAN, RANDOMKEY and DBSIZE read [`Database::scan_range`]
//! and give keys back through [`Database::user_key`].

use bytes::Bytes;

use super::commands::table::Spec;
use super::reply::Reply;
use crate::keyspace::{DB_PREFIX, INTERNAL_PREFIX, is_internal};

/// Databases a server has unless `--databases` says otherwise (Redis: 16).
pub const DEFAULT_DATABASES: u32 = 16;

/// A session's selected database, and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Database {
    /// The selected database, below `count`.
    pub index: u32,
    /// The number of databases (`--databases`).
    pub count: u32,
}

impl Default for Database {
    fn default() -> Self {
        Database::first_of(DEFAULT_DATABASES)
    }
}

/// `ERR DB index is out of range`.
pub fn out_of_range() -> Reply {
    Reply::err("DB index is out of range")
}

/// The smallest key above every key starting with `prefix`; `None` if
/// there is none (the prefix is empty or all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Bytes> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(Bytes::from(end));
        }
    }
    None
}

impl Database {
    /// Database 0 of `count`.
    pub fn first_of(count: u32) -> Self {
        Database {
            index: 0,
            count: count.max(1),
        }
    }

    /// Database `index` of the same count; `Err` with Redis's reply if
    /// `index` is out of range (or not an integer: `None`).
    pub fn select(&self, index: Option<i64>) -> Result<Database, Reply> {
        let index = index.ok_or_else(super::commands::not_an_integer)?;
        if i32::try_from(index).is_err() {
            // Redis reads a database index as a C int.
            return Err(Reply::err(format!(
                "value is out of range, value must between {} and {}",
                i32::MIN,
                i32::MAX
            )));
        }
        match u32::try_from(index) {
            Ok(index) if index < self.count => Ok(Database {
                index,
                count: self.count,
            }),
            _ => Err(out_of_range()),
        }
    }

    /// The bytes in front of every key of this database (empty for 0).
    pub fn prefix(&self) -> Bytes {
        match self.index {
            0 => Bytes::new(),
            n => Bytes::from([DB_PREFIX, format!("{n}/").as_bytes()].concat()),
        }
    }

    /// The engine key of this database's key `key`.
    pub fn key(&self, key: &[u8]) -> Bytes {
        match self.index {
            0 => Bytes::copy_from_slice(key),
            _ => Bytes::from([self.prefix().as_ref(), key].concat()),
        }
    }

    /// The key a client of this database knows engine key `key` by; `None`
    /// if the key is not in this database.
    pub fn user_key(&self, key: Bytes) -> Option<Bytes> {
        if self.index == 0 {
            return (!is_internal(&key)).then_some(key);
        }
        let prefix = self.prefix();
        key.starts_with(&prefix).then(|| key.slice(prefix.len()..))
    }

    /// The key ranges `[start, end)` of this database (an empty end: the
    /// end of the key space): one for database `n >= 1`, two for 0 (below
    /// and above the reserved prefix).
    pub fn ranges(&self) -> Vec<(Bytes, Bytes)> {
        if self.index == 0 {
            let above = prefix_end(INTERNAL_PREFIX).unwrap_or_default();
            return vec![
                (Bytes::new(), Bytes::from_static(INTERNAL_PREFIX)),
                (above, Bytes::new()),
            ];
        }
        let prefix = self.prefix();
        let end = prefix_end(&prefix).unwrap_or_default();
        vec![(prefix, end)]
    }

    /// The ranges FLUSHALL deletes: database 0's and every other one's.
    pub fn all_ranges(&self) -> Vec<(Bytes, Bytes)> {
        let mut ranges = Database::first_of(self.count).ranges();
        let end = prefix_end(DB_PREFIX).unwrap_or_default();
        ranges.push((Bytes::from_static(DB_PREFIX), end));
        ranges
    }

    /// The engine range holding every key of this database that starts with
    /// `literal`: `(start, end)`, `end` `None` for the end of the key space.
    /// In database 0 it may include reserved keys: filter with `user_key`,
    /// and go on from [`Database::skip_reserved`].
    pub fn scan_range(&self, literal: &[u8]) -> (Bytes, Option<Bytes>) {
        let start = self.key(literal);
        let end = prefix_end(&start);
        (start, end)
    }

    /// Where a scan of database 0 that reached `key` goes on: past the
    /// reserved prefix if `key` is in it, else `key` itself.
    pub fn skip_reserved(&self, key: Bytes) -> Bytes {
        if self.index == 0 && is_internal(&key) {
            return prefix_end(INTERNAL_PREFIX).unwrap_or(key);
        }
        key
    }

    /// `args` (the command name first) with the keys at the positions `spec`
    /// gives mapped into this database. In database 0 a key under the
    /// reserved prefix is refused.
    pub fn map_args(&self, spec: &Spec, mut args: Vec<Bytes>) -> Result<Vec<Bytes>, Reply> {
        let (first, last, step) = spec.keys;
        if first <= 0 || step <= 0 {
            return Ok(args);
        }
        let len = args.len() as i64;
        let last = if last < 0 {
            len + last
        } else {
            last.min(len - 1)
        };
        let mut position = first;
        while position <= last {
            if let Some(arg) = usize::try_from(position).ok().and_then(|p| args.get_mut(p)) {
                if self.index == 0 {
                    if is_internal(arg) {
                        return Err(Reply::err(
                            "keys that start with NaiveKV's reserved prefix are not served",
                        ));
                    }
                } else {
                    *arg = self.key(arg);
                }
            }
            position += step;
        }
        Ok(args)
    }

    /// Engine key `key` of this database moved into database `target`.
    pub fn rebase(&self, key: &Bytes, target: Database) -> Bytes {
        let own = self.user_key(key.clone()).unwrap_or_else(|| key.clone());
        target.key(&own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::commands::table;

    fn db(index: u32) -> Database {
        Database { index, count: 16 }
    }

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    #[test]
    fn each_database_is_one_range_and_none_meets_another() {
        let key = |d: u32, k: &str| db(d).key(k.as_bytes());
        assert_eq!(key(0, "k"), Bytes::from("k"));
        assert_eq!(key(1, "k"), Bytes::from(&b"\xff\x00naivekv/db/1/k"[..]));
        for d in 0..16 {
            for other in 0..16 {
                let k = key(other, "some-key");
                let inside = db(d)
                    .ranges()
                    .iter()
                    .any(|(start, end)| k >= *start && (end.is_empty() || k < *end));
                assert_eq!(inside, d == other, "key of db {other} in ranges of db {d}");
                assert_eq!(db(d).user_key(k).is_some(), d == other);
            }
        }
        // Database 1's range does not hold database 10's keys.
        let (start, end) = db(1).ranges().remove(0);
        assert!(key(10, "") >= end && key(1, "~") >= start);
    }

    #[test]
    fn flushall_ranges_hold_every_database_but_not_other_reserved_keys() {
        let ranges = db(3).all_ranges();
        let held = |k: &Bytes| {
            ranges
                .iter()
                .any(|(start, end)| k >= start && (end.is_empty() || k < end))
        };
        for d in 0..16 {
            assert!(held(&db(d).key(b"x")));
        }
        assert!(!held(&Bytes::from(&b"\xff\x00naivekv/raft/log"[..])));
    }

    #[test]
    fn keys_are_mapped_at_the_table_positions() {
        let mset = table::find("mset").unwrap();
        let mapped = db(2)
            .map_args(mset, args(&["mset", "a", "1", "b", "2"]))
            .unwrap();
        assert_eq!(mapped[1], db(2).key(b"a"));
        assert_eq!(mapped[2], Bytes::from("1"));
        assert_eq!(mapped[3], db(2).key(b"b"));
        let get = table::find("get").unwrap();
        assert_eq!(db(0).map_args(get, args(&["get", "a"])).unwrap()[1], "a");
        let reserved = args(&["get", "\u{0}"]);
        assert!(db(0).map_args(get, reserved).is_ok());
        let mut internal = args(&["get", "x"]);
        internal[1] = db(4).key(b"x");
        assert!(db(0).map_args(get, internal).is_err());
    }

    #[test]
    fn select_checks_the_range() {
        assert_eq!(db(0).select(Some(15)), Ok(db(15)));
        assert_eq!(db(0).select(Some(16)), Err(out_of_range()));
        assert_eq!(db(0).select(Some(-1)), Err(out_of_range()));
        assert!(db(0).select(None).is_err());
        assert_eq!(db(3).rebase(&db(3).key(b"k"), db(0)), Bytes::from("k"));
    }
}
