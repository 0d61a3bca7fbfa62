//! The commands served, with the arity and key positions Redis gives them:
//! behind the arity check and the `COMMAND` replies.

use super::super::reply::Reply;

/// One command's entry.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis's arity: `n` exactly n arguments (the name included), `-n` at
    /// least n.
    pub arity: i64,
    pub flags: &'static [&'static str],
    /// Key positions: first, last (-1: the last argument), step.
    pub keys: (i64, i64, i64),
}

impl Spec {
    /// True if `len` arguments (the name included) suit the arity.
    pub fn arity_ok(&self, len: usize) -> bool {
        let len = len as i64;
        if self.arity >= 0 {
            len == self.arity
        } else {
            len >= -self.arity
        }
    }

    /// The `COMMAND` entry: name, arity, flags, first key, last key, step,
    /// ACL categories, tips, key specs, subcommands.
    pub fn info(&self) -> Reply {
        let words = |list: &[&'static str]| {
            Reply::Array(list.iter().map(|w| Reply::Status((*w).into())).collect())
        };
        Reply::Array(vec![
            Reply::text(self.name),
            Reply::Integer(self.arity),
            words(self.flags),
            Reply::Integer(self.keys.0),
            Reply::Integer(self.keys.1),
            Reply::Integer(self.keys.2),
            Reply::Array(vec![]),
            Reply::Array(vec![]),
            Reply::Array(vec![]),
            Reply::Array(vec![]),
        ])
    }
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        keys,
    }
}

const READ: &[&str] = &["readonly", "fast"];
const WRITE: &[&str] = &["write", "denyoom"];
const FAST_WRITE: &[&str] = &["write", "denyoom", "fast"];
const CONN: &[&str] = &["fast", "loading", "stale"];
const NONE: (i64, i64, i64) = (0, 0, 0);
const ONE: (i64, i64, i64) = (1, 1, 1);
const ALL: (i64, i64, i64) = (1, -1, 1);

/// Every command served.
pub const COMMANDS: &[Spec] = &[
    spec("get", 2, READ, ONE),
    spec("set", -3, WRITE, ONE),
    spec("setnx", 3, FAST_WRITE, ONE),
    spec("mget", -2, READ, ALL),
    spec("lcs", -3, &["readonly"], (1, 2, 1)),
    spec("mset", -3, WRITE, (1, -1, 2)),
    spec("del", -2, &["write"], ALL),
    spec("unlink", -2, &["write", "fast"], ALL),
    spec("exists", -2, READ, ALL),
    spec("incr", 2, FAST_WRITE, ONE),
    spec("decr", 2, FAST_WRITE, ONE),
    spec("incrby", 3, FAST_WRITE, ONE),
    spec("decrby", 3, FAST_WRITE, ONE),
    spec("append", 3, FAST_WRITE, ONE),
    spec("getset", 3, FAST_WRITE, ONE),
    spec("getdel", 2, FAST_WRITE, ONE),
    spec("incrbyfloat", 3, FAST_WRITE, ONE),
    spec("setrange", 4, WRITE, ONE),
    spec("getrange", 4, &["readonly"], ONE),
    spec("substr", 4, &["readonly"], ONE),
    spec("setbit", 4, WRITE, ONE),
    spec("getbit", 3, READ, ONE),
    spec("bitcount", -2, READ, ONE),
    spec("bitpos", -3, READ, ONE),
    spec("bitop", -4, WRITE, (2, -1, 1)),
    spec("msetnx", -3, WRITE, (1, -1, 2)),
    spec("rename", 3, &["write"], (1, 2, 1)),
    spec("renamenx", 3, FAST_WRITE, (1, 2, 1)),
    spec("copy", -3, WRITE, (1, 2, 1)),
    spec("touch", -2, READ, ALL),
    spec("type", 2, READ, ONE),
    spec("randomkey", 1, &["readonly"], NONE),
    spec("multi", 1, &["noscript", "loading", "stale", "fast"], NONE),
    spec(
        "exec",
        1,
        &["noscript", "loading", "stale", "skip_slowlog"],
        NONE,
    ),
    spec(
        "discard",
        1,
        &["noscript", "loading", "stale", "fast"],
        NONE,
    ),
    spec("watch", -2, &["noscript", "loading", "stale", "fast"], ALL),
    spec(
        "unwatch",
        1,
        &["noscript", "loading", "stale", "fast"],
        NONE,
    ),
    spec("move", 3, FAST_WRITE, ONE),
    spec("swapdb", 3, &["write", "fast"], NONE),
    spec("reset", 1, &["noscript", "loading", "stale", "fast"], NONE),
    spec("flushall", -1, &["write"], NONE),
    spec("flushdb", -1, &["write"], NONE),
    spec("time", 1, &["random", "loading", "stale", "fast"], NONE),
    spec("wait", 3, &["noscript"], NONE),
    spec("strlen", 2, READ, ONE),
    spec("setex", 4, WRITE, ONE),
    spec("psetex", 4, WRITE, ONE),
    spec("getex", -2, &["write", "fast"], ONE),
    spec("expire", -3, &["write", "fast"], ONE),
    spec("pexpire", -3, &["write", "fast"], ONE),
    spec("expireat", -3, &["write", "fast"], ONE),
    spec("pexpireat", -3, &["write", "fast"], ONE),
    spec("persist", 2, &["write", "fast"], ONE),
    spec("ttl", 2, READ, ONE),
    spec("pttl", 2, READ, ONE),
    spec("expiretime", 2, READ, ONE),
    spec("pexpiretime", 2, READ, ONE),
    spec("dbsize", 1, READ, NONE),
    spec("scan", -2, &["readonly"], NONE),
    spec("keys", 2, &["readonly"], NONE),
    spec("info", -1, &["loading", "stale"], NONE),
    spec("save", 1, &["admin", "noscript", "no_async_loading"], NONE),
    spec(
        "bgsave",
        -1,
        &["admin", "noscript", "no_async_loading"],
        NONE,
    ),
    spec("lastsave", 1, &["random", "loading", "stale", "fast"], NONE),
    spec("role", 1, &["noscript", "loading", "stale", "fast"], NONE),
    spec("ping", -1, CONN, NONE),
    spec("echo", 2, CONN, NONE),
    spec("select", 2, CONN, NONE),
    spec("quit", -1, CONN, NONE),
    spec("hello", -1, CONN, NONE),
    spec("client", -2, CONN, NONE),
    spec("command", -1, &["loading", "stale"], NONE),
    spec("config", -2, &["admin", "loading", "stale"], NONE),
    spec(
        "debug",
        -2,
        &["admin", "noscript", "loading", "stale"],
        NONE,
    ),
    spec("function", -2, &["noscript"], NONE),
];

/// The entry for lower-case `name`.
pub fn find(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|spec| spec.name == name)
}

/// The entry for `name` in any case, compared byte by byte (no lowercased
/// copy: this runs once per request).
pub fn find_ignoring_case(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Where the command named `name` (any case) is in [`COMMANDS`].
pub fn position(name: &[u8]) -> Option<usize> {
    COMMANDS
        .iter()
        .position(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arity() {
        let get = find("get").map(|s| (s.arity_ok(2), s.arity_ok(3)));
        assert_eq!(get, Some((true, false)));
        let del = find("del").map(|s| (s.arity_ok(1), s.arity_ok(5)));
        assert_eq!(del, Some((false, true)));
        assert!(find("flushall").is_some());
        assert!(find("hset").is_none());
        let found = |name: &[u8]| find_ignoring_case(name).map(|s| s.name);
        assert_eq!(found(b"GeT"), Some("get"));
        assert_eq!(found(b"INCRBYFLOAT"), Some("incrbyfloat"));
        assert_eq!(found(b"ge"), None);
        assert_eq!(found(b"\xff"), None);
    }
}
