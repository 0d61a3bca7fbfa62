//! Connection and server commands: PING, ECHO, SELECT, QUIT, HELLO, CLIENT,
//! TIME, WAIT, COMMAND, CONFIG, DEBUG, INFO (in `info.rs`). All but INFO and CONFIG
//! RESETSTAT are answered without the database.

use bytes::Bytes;

use super::{Connection, Op, Parsed, int_arg, not_an_integer, syntax_error, table};
use crate::resp::database::Database;
use crate::resp::glob;
use crate::resp::reply::{Protocol, Reply};

/// The Redis version whose replies we follow; clients read it from HELLO
/// and INFO to decide what they may send.
pub const REDIS_VERSION: &str = "7.2.0";

/// What `CONFIG GET` reports: redis-benchmark asks for `save` and
/// `appendonly` at start-up. NaiveKV always logs writes ahead, and takes no
/// snapshots.
const CONFIG: &[(&str, &str)] = &[
    ("save", ""),
    ("appendonly", "yes"),
    ("databases", "1"),
    ("maxmemory", "0"),
];

/// Parses a connection or server command.
/// `TIME`: seconds and microseconds since the Unix epoch.
fn time() -> Reply {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Reply::Array(vec![
        Reply::text(now.as_secs().to_string()),
        Reply::text(now.subsec_micros().to_string()),
    ])
}

pub fn parse(name: &str, args: &[Bytes], connection: &mut Connection) -> Parsed {
    let reply = match name {
        "ping" => match args {
            [] => Reply::Status("PONG".into()),
            [message] => Reply::Bulk(message.clone()),
            _ => super::wrong_arity("ping"),
        },
        "echo" => Reply::Bulk(args.first().cloned().unwrap_or_default()),
        "select" => match connection
            .database
            .select(args.first().and_then(|a| int_arg(a)))
        {
            Ok(database) => {
                connection.database = database;
                Reply::ok()
            }
            Err(reply) => reply,
        },
        "reset" => {
            connection.database = Database::first_of(connection.database.count);
            connection.protocol = Protocol::default();
            connection.name = None;
            Reply::Status("RESET".into())
        }
        "quit" => return Parsed::Quit,
        "role" => return Parsed::Engine(Op::Role),
        "time" => time(),
        "wait" => wait(args),
        "hello" => hello(args, connection),
        "client" => client(args, connection),
        "command" => command(args),
        "config" if lower(args.first()) == "resetstat" && args.len() == 1 => {
            return Parsed::Engine(Op::ResetStats);
        }
        "config" if lower(args.first()) == "resetstat" => super::wrong_arity("config|resetstat"),
        "config" => config(args, connection.database.count),
        "debug" => {
            Reply::err("DEBUG is not supported by NaiveKV (it has no Redis internals to debug)")
        }
        "function" => function(args),
        "info" => {
            let sections = args
                .iter()
                .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
                .collect();
            return Parsed::Engine(Op::Info(sections));
        }
        _ => super::unknown_command(args),
    };
    Parsed::Reply(reply)
}

/// `WAIT numreplicas timeout`: 0 replicas, at once. NaiveKV has no Redis
/// replicas to wait for; in a cluster a write is answered only once a
/// majority of the nodes hold it (docs/CLUSTER.md), so there is nothing
/// further to wait for either.
fn wait(args: &[Bytes]) -> Reply {
    match (
        args.first().and_then(|a| int_arg(a)),
        args.get(1).and_then(|a| int_arg(a)),
    ) {
        (None, _) => not_an_integer(),
        (_, None) => Reply::err("timeout is not an integer or out of range"),
        (_, Some(timeout)) if timeout < 0 => Reply::err("timeout is negative"),
        _ => Reply::Integer(0),
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
fn hello(args: &[Bytes], connection: &mut Connection) -> Reply {
    let mut protocol = connection.protocol;
    if let Some(version) = args.first() {
        protocol = match int_arg(version) {
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return Reply::Error("NOPROTO unsupported protocol version".into()),
            None => return Reply::err("Protocol version is not an integer or out of range"),
        };
    }
    let mut name = None;
    let mut i = 1;
    while let Some(written) = args.get(i) {
        let option = String::from_utf8_lossy(written).to_ascii_lowercase();
        match (option.as_str(), args.get(i + 1), args.get(i + 2)) {
            ("auth", Some(user), Some(_)) => {
                // No passwords are configured: the default user takes any.
                if user.as_ref() != b"default" {
                    return Reply::Error(
                        "WRONGPASS invalid username-password pair or user is disabled.".into(),
                    );
                }
                i += 3;
            }
            ("setname", Some(new), _) => {
                if let Err(reply) = check_name(new) {
                    return reply;
                }
                name = Some(Bytes::copy_from_slice(new));
                i += 2;
            }
            _ => {
                let written = String::from_utf8_lossy(written);
                return Reply::err(format!("Syntax error in HELLO option '{written}'"));
            }
        }
    }
    connection.protocol = protocol;
    if let Some(name) = name {
        connection.name = (!name.is_empty()).then_some(name);
    }
    Reply::Map(vec![
        (Reply::text("server"), Reply::text("redis")),
        (Reply::text("version"), Reply::text(REDIS_VERSION)),
        (Reply::text("proto"), Reply::Integer(protocol.version())),
        (Reply::text("id"), Reply::Integer(connection.id as i64)),
        (Reply::text("mode"), Reply::text("standalone")),
        (Reply::text("role"), Reply::text("master")),
        (Reply::text("modules"), Reply::Array(vec![])),
    ])
}

/// Longest client name (CLIENT SETNAME, HELLO SETNAME) or CLIENT SETINFO
/// value: 1 KiB. A connection keeps its name for its life, outside the
/// byte budget (Redis has no limit).
pub const MAX_CLIENT_NAME_BYTES: usize = 1 << 10;

/// A client name or SETINFO value over [`MAX_CLIENT_NAME_BYTES`].
fn check_length(what: &str, value: &[u8]) -> Result<(), Reply> {
    match value.len() > MAX_CLIENT_NAME_BYTES {
        true => Err(Reply::err(format!(
            "{what} longer than {MAX_CLIENT_NAME_BYTES} bytes"
        ))),
        false => Ok(()),
    }
}

fn check_name(name: &[u8]) -> Result<(), Reply> {
    check_length("client name", name)?;
    if name.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
        Ok(())
    } else {
        Err(Reply::err(
            "Client names cannot contain spaces, newlines or special characters.",
        ))
    }
}

/// `CLIENT SETNAME | GETNAME | SETINFO | ID | INFO`.
fn client(args: &[Bytes], connection: &mut Connection) -> Reply {
    let sub = lower(args.first());
    let arity_ok = match sub.as_str() {
        "help" => return help("CLIENT", CLIENT_HELP),
        "setname" => args.len() == 2,
        "getname" | "id" | "info" => args.len() == 1,
        "setinfo" => args.len() == 3,
        _ => return unknown_subcommand(args.first(), "CLIENT"),
    };
    if !arity_ok {
        return super::wrong_arity(&format!("client|{sub}"));
    }
    match (sub.as_str(), args.get(1), args.get(2)) {
        ("setname", Some(name), _) => match check_name(name) {
            Ok(()) => {
                // A copy: a slice would keep the request's whole buffer.
                connection.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
                Reply::ok()
            }
            Err(reply) => reply,
        },
        ("getname", ..) => Reply::value(connection.name.clone()),
        ("id", ..) => Reply::Integer(connection.id as i64),
        ("info", ..) => Reply::text(format!(
            "id={} name={} resp={}\n",
            connection.id,
            String::from_utf8_lossy(connection.name.as_deref().unwrap_or_default()),
            connection.protocol.version()
        )),
        ("setinfo", Some(attribute), Some(value)) => {
            let attribute = String::from_utf8_lossy(attribute).to_ascii_lowercase();
            if let Err(reply) = check_length(&attribute, value) {
                return reply;
            }
            if attribute == "lib-name" || attribute == "lib-ver" {
                Reply::ok()
            } else {
                Reply::err(format!("Unrecognized option '{attribute}'"))
            }
        }
        _ => syntax_error(),
    }
}

/// `COMMAND`, `COMMAND COUNT | LIST | INFO name... | DOCS [name...]`.
fn command(args: &[Bytes]) -> Reply {
    let all = || table::COMMANDS.iter();
    match lower(args.first()).as_str() {
        "" => Reply::Array(all().map(table::Spec::info).collect()),
        "help" => help("COMMAND", COMMAND_HELP),
        "count" if args.len() == 1 => Reply::Integer(table::COMMANDS.len() as i64),
        "count" => super::wrong_arity("command|count"),
        "info" if args.len() == 1 => Reply::Array(all().map(table::Spec::info).collect()),
        "getkeysandflags" => command_getkeys_and_flags(&args[1..]),
        "list" => command_list(&args[1..]),
        "getkeys" => command_getkeys(&args[1..]),
        "info" => Reply::Array(
            args[1..]
                .iter()
                .map(|name| {
                    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                    table::find(&name).map_or(Reply::Null, table::Spec::info)
                })
                .collect(),
        ),
        // No documentation is served; redis-cli starts without hints.
        "docs" => Reply::Map(vec![]),
        _ => unknown_subcommand(args.first(), "COMMAND"),
    }
}

/// `COMMAND LIST [FILTERBY MODULE m | ACLCAT c | PATTERN p]`: no module
/// or ACL category holds any of ours.
fn command_list(args: &[Bytes]) -> Reply {
    let names = table::COMMANDS.iter().map(|s| s.name);
    match args {
        [] => Reply::Array(names.map(Reply::text).collect()),
        [filterby, kind, value] if filterby.eq_ignore_ascii_case(b"filterby") => {
            match lower(Some(kind)).as_str() {
                "pattern" => Reply::Array(
                    names
                        .filter(|n| glob::matches(&value.to_ascii_lowercase(), n.as_bytes()))
                        .map(Reply::text)
                        .collect(),
                ),
                "module" | "aclcat" => Reply::Array(vec![]),
                _ => super::syntax_error(),
            }
        }
        _ => super::syntax_error(),
    }
}

/// `COMMAND GETKEYSANDFLAGS command args...`: each key argument with its
/// key-spec flags (`RO access` for reads, `OW update` for plain writes,
/// `RW access update` for read-modify-writes, `RW access delete` for
/// deletes).
fn command_getkeys_and_flags(args: &[Bytes]) -> Reply {
    let keys = match command_getkeys(args) {
        Reply::Array(keys) => keys,
        error => return error,
    };
    let name = lower(args.first());
    let flags: &[&str] = match table::find(&name).map(|s| s.flags) {
        Some(flags) if flags.contains(&"readonly") => &["RO", "access"],
        _ if matches!(name.as_str(), "del" | "unlink" | "getdel") => &["RW", "access", "delete"],
        _ if matches!(name.as_str(), "set" | "mset" | "setex" | "psetex") => &["OW", "update"],
        _ => &["RW", "access", "update"],
    };
    let flags = Reply::Array(flags.iter().map(|f| Reply::Status((*f).into())).collect());
    Reply::Array(
        keys.into_iter()
            .map(|key| Reply::Array(vec![key, flags.clone()]))
            .collect(),
    )
}

/// `COMMAND GETKEYS command args...`: the key arguments, from the table's
/// key positions.
fn command_getkeys(args: &[Bytes]) -> Reply {
    let Some(spec) = args.first().and_then(|n| table::find(&lower(Some(n)))) else {
        return Reply::err("Invalid command specified");
    };
    if !spec.arity_ok(args.len()) {
        return Reply::err("Invalid number of arguments specified for command");
    }
    let (first, last, step) = spec.keys;
    if first <= 0 || step <= 0 {
        return Reply::err("The command has no key arguments");
    }
    let last = if last < 0 {
        args.len() as i64 + last
    } else {
        last
    };
    let keys = (first..=last)
        .step_by(step as usize)
        .filter_map(|i| args.get(i as usize).cloned())
        .map(Reply::Bulk)
        .collect();
    Reply::Array(keys)
}

/// `CONFIG GET pattern...` over [`CONFIG`]; `CONFIG SET name value ...`
/// accepts a setting's current value and refuses every change (none of
/// NaiveKV's settings can change at run time); `CONFIG RESETSTAT` is an
/// engine request (it clears `INFO commandstats`).
fn config(args: &[Bytes], databases: u32) -> Reply {
    match lower(args.first()).as_str() {
        "help" => help("CONFIG", CONFIG_HELP),
        "set" if args.len() < 3 || args.len().is_multiple_of(2) => super::wrong_arity("config|set"),
        "set" => config_set(&args[1..]),
        "get" if args.len() < 2 => super::wrong_arity("config|get"),
        "get" => Reply::Map(
            CONFIG
                .iter()
                .filter(|(name, _)| {
                    args[1..]
                        .iter()
                        .any(|p| glob::matches(&p.to_ascii_lowercase(), name.as_bytes()))
                })
                .map(|(name, value)| match *name {
                    "databases" => (Reply::text(*name), Reply::text(databases.to_string())),
                    _ => (Reply::text(*name), Reply::text(*value)),
                })
                .collect(),
        ),
        _ => unknown_subcommand(args.first(), "CONFIG"),
    }
}

/// `CONFIG SET` of `name value` pairs: all or nothing.
fn config_set(pairs: &[Bytes]) -> Reply {
    for pair in pairs.chunks(2) {
        let (name, value) = (lower(pair.first()), pair.get(1).map(|v| v.as_ref()));
        match CONFIG.iter().find(|(n, _)| *n == name) {
            None => {
                return Reply::err(format!(
                    "Unknown option or number of arguments for CONFIG SET - '{name}'"
                ));
            }
            Some((_, current)) if Some(current.as_bytes()) == value => {}
            Some(_) => {
                return Reply::err(format!(
                    "CONFIG SET failed (possibly related to argument '{name}') - \
                     NaiveKV cannot change it at run time"
                ));
            }
        }
    }
    Reply::ok()
}

const CLIENT_HELP: &[&str] = &[
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "SETINFO <LIB-NAME|LIB-VER> <value>",
    "    Set client meta attributes.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
];

const COMMAND_HELP: &[&str] = &[
    "(no subcommand)",
    "    Return details about all commands.",
    "COUNT",
    "    Return the total number of commands in this server.",
    "LIST [FILTERBY (MODULE <module-name>|ACLCAT <category>|PATTERN <pattern>)]",
    "    Return a list of all commands in this server.",
    "INFO [<command-name> ...]",
    "    Return details about the given commands.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about commands (none are served).",
    "GETKEYS <full-command>",
    "    Return the keys from a full command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full command.",
];

const CONFIG_HELP: &[&str] = &[
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Accepted only with the current value: NaiveKV's settings are fixed at start.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
];

/// `<COMMAND> HELP`: the subcommands, as Redis lists them.
fn help(command: &str, lines: &[&str]) -> Reply {
    let mut all = vec![format!(
        "{command} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    )];
    all.extend(lines.iter().map(|l| (*l).to_string()));
    all.push("HELP".into());
    all.push("    Print this help.".into());
    Reply::Array(all.into_iter().map(|l| Reply::Status(l.into())).collect())
}

/// `FUNCTION FLUSH [ASYNC|SYNC]`: NaiveKV has no functions, so there is
/// nothing to flush (Redis's test harness sends it before each group).
/// Other subcommands are refused.
fn function(args: &[Bytes]) -> Reply {
    match (
        lower(args.first()).as_str(),
        args.get(1..).unwrap_or_default(),
    ) {
        ("flush", []) => Reply::ok(),
        ("flush", [mode])
            if mode.eq_ignore_ascii_case(b"async") || mode.eq_ignore_ascii_case(b"sync") =>
        {
            Reply::ok()
        }
        ("flush", _) => syntax_error(),
        (sub, _) => Reply::err(format!(
            "FUNCTION {} is not supported by NaiveKV: it has no functions",
            sub.to_ascii_uppercase()
        )),
    }
}

/// The refusal of subcommand `sub`, named as the client wrote it.
fn unknown_subcommand(sub: Option<&Bytes>, command: &str) -> Reply {
    let sub = sub.map(|s| String::from_utf8_lossy(s)).unwrap_or_default();
    Reply::err(format!("unknown subcommand '{sub}'. Try {command} HELP."))
}

fn lower(arg: Option<&Bytes>) -> String {
    arg.map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(list: &[&str], connection: &mut Connection) -> Reply {
        let args: Vec<Bytes> = list
            .iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        match super::super::parse(args, connection) {
            Parsed::Reply(reply) => reply,
            other => Reply::err(format!("{other:?}")),
        }
    }

    #[test]
    fn hello_switches_protocol_and_names() {
        let mut c = Connection {
            id: 7,
            ..Connection::default()
        };
        let reply = run(
            &["HELLO", "3", "AUTH", "default", "x", "SETNAME", "me"],
            &mut c,
        );
        assert!(matches!(&reply, Reply::Map(pairs) if pairs.len() == 7));
        assert_eq!(c.protocol, Protocol::Resp3);
        assert_eq!(c.name.as_deref(), Some(&b"me"[..]));
        let nope = run(&["HELLO", "4"], &mut c);
        assert_eq!(
            nope,
            Reply::Error("NOPROTO unsupported protocol version".into())
        );
        assert_eq!(c.protocol, Protocol::Resp3);
        assert!(run(&["HELLO", "2", "AUTH", "u"], &mut c).is_error());
    }

    #[test]
    fn client_names_and_info_are_held_to_a_kibibyte() {
        let mut c = Connection::default();
        let long = "n".repeat(MAX_CLIENT_NAME_BYTES + 1);
        assert!(run(&["client", "setname", &long], &mut c).is_error());
        assert!(run(&["hello", "3", "setname", &long], &mut c).is_error());
        assert!(run(&["client", "setinfo", "lib-name", &long], &mut c).is_error());
        assert_eq!(c.name, None);
        let longest = "n".repeat(MAX_CLIENT_NAME_BYTES);
        assert_eq!(run(&["client", "setname", &longest], &mut c), Reply::ok());
    }

    #[test]
    fn client_select_config() {
        let mut c = Connection::default();
        assert_eq!(
            run(&["client", "setinfo", "LIB-NAME", "x"], &mut c),
            Reply::ok()
        );
        assert_eq!(run(&["client", "getname"], &mut c), Reply::Null);
        assert!(run(&["client", "setname", "a b"], &mut c).is_error());
        assert_eq!(
            run(&["client", "nope"], &mut c),
            Reply::Error("ERR unknown subcommand 'nope'. Try CLIENT HELP.".into())
        );
        assert_eq!(run(&["select", "1"], &mut c), Reply::ok());
        assert_eq!(c.database.index, 1);
        assert_eq!(
            run(&["select", "16"], &mut c),
            Reply::err("DB index is out of range")
        );
        assert_eq!(run(&["reset"], &mut c), Reply::Status("RESET".into()));
        assert_eq!(c.database.index, 0);
        assert_eq!(
            run(&["config", "get", "save"], &mut c),
            Reply::Map(vec![(Reply::text("save"), Reply::text(""))])
        );
        assert_eq!(run(&["ping", "hi"], &mut c), Reply::text("hi"));
        assert_eq!(run(&["function", "flush"], &mut c), Reply::ok());
        assert_eq!(run(&["function", "flush", "sync"], &mut c), Reply::ok());
        assert!(run(&["function", "list"], &mut c).is_error());
    }

    /// Errors name a subcommand or option as the client wrote it.
    #[test]
    fn refusals_keep_the_case_the_client_used() {
        let mut c = Connection::default();
        assert_eq!(
            run(&["CLIENT", "Foo"], &mut c),
            Reply::err("unknown subcommand 'Foo'. Try CLIENT HELP.")
        );
        assert_eq!(
            run(&["CONFIG", "BaR"], &mut c),
            Reply::err("unknown subcommand 'BaR'. Try CONFIG HELP.")
        );
        assert_eq!(
            run(&["HELLO", "2", "FOO"], &mut c),
            Reply::err("Syntax error in HELLO option 'FOO'")
        );
    }

    #[test]
    fn command_and_config_subcommands_check_their_arity() {
        let mut c = Connection::default();
        let arity = |name: &str| super::super::wrong_arity(name);
        assert_eq!(
            run(&["COMMAND", "COUNT", "x"], &mut c),
            arity("command|count")
        );
        assert_eq!(
            run(&["CONFIG", "RESETSTAT", "x"], &mut c),
            arity("config|resetstat")
        );
        let all = run(&["COMMAND", "INFO"], &mut c);
        assert!(matches!(all, Reply::Array(list) if list.len() == table::COMMANDS.len()));
    }
}
