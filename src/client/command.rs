//! The shell's command language, as pure functions: splitting a line into
//! arguments, parsing arguments into a [`ShellCommand`], and showing bytes.
//!
//! Arguments are separated by spaces. Double quotes group words into one
//! argument and, inside them, `\"`, `\\`, `\n` and `\xHH` are escapes.
//! Single quotes group words too, with `\'` the only escape (as in
//! redis-cli). A line whose first non-blank character is `#` is a comment.

use bytes::Bytes;

/// One shell command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellCommand {
    /// `get KEY`
    Get { key: Bytes },
    /// `set KEY VALUE [ex SECONDS | px MILLISECONDS]` (alias `put`); a
    /// `ttl_ms` of 0 never expires.
    Set {
        key: Bytes,
        value: Bytes,
        ttl_ms: u64,
    },
    /// `ttl KEY`
    Ttl { key: Bytes },
    /// `expire KEY SECONDS`
    Expire { key: Bytes, ttl_ms: u64 },
    /// `persist KEY`
    Persist { key: Bytes },
    /// `del KEY` (aliases `delete`, `remove`)
    Del { key: Bytes },
    /// `scan [START [END [LIMIT]]]`, or `rscan` for descending order. An
    /// empty START or END is unbounded; no LIMIT (or 0) means all.
    Scan {
        start: Bytes,
        end: Bytes,
        limit: u64,
        reverse: bool,
    },
    /// `ping`
    Ping,
    /// `auth TOKEN`
    Auth { token: String },
    /// `stats`
    Stats,
    /// `checkpoint NAME`: a checkpoint in NAME under the server's
    /// `--checkpoint-dir`.
    Checkpoint { name: String },
    /// `cluster status`, `cluster add ID HOST:PORT`, `cluster remove ID`
    /// on a cluster node.
    Cluster(ClusterCommand),
    /// `help`
    Help,
    /// `quit` (alias `exit`)
    Quit,
}

/// The shell's help text.
pub const HELP: &str = "\
commands:
  get KEY                      print the value of KEY, or (nil)
  set KEY VALUE [ex S|px MS]   set KEY, expiring in S seconds or MS ms (alias: put)
  ttl KEY                      print how long KEY has to live
  expire KEY SECONDS           make KEY expire in SECONDS, 0 or less: now (1: done, 0: no such key)
  persist KEY                  remove KEY's expiry (1: removed, 0: none to remove)
  del KEY                      remove KEY (aliases: delete, remove)
  scan [START [END [LIMIT]]]   print KEY<TAB>VALUE for keys in [START, END)
  rscan [START [END [LIMIT]]]  the same, in descending order
  ping                         check the server answers
  auth TOKEN                   authenticate (servers with --auth-token-file)
  stats                        print the server's counters
  checkpoint NAME              write a checkpoint NAME under the server's --checkpoint-dir
  cluster status               members, leader, term, each node's matched index and lag
  cluster add ID HOST:PORT     add node ID (peer address) as a learner, promote it once caught up
  cluster remove ID            remove node ID from the cluster
  help                         this text
  quit                         leave (alias: exit)
Double quotes group words; inside them \\\" \\\\ \\n and \\xHH are escapes.
Single quotes group words; inside them \\' is the only escape.
Lines starting with # are comments.";

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A quote was opened and never closed.
    #[error("unclosed quote")]
    UnclosedQuote,
    /// A backslash escape that is not one of the four.
    #[error("bad escape: {0}")]
    BadEscape(String),
    /// The first word is no command.
    #[error("unknown command '{0}' (try help)")]
    UnknownCommand(String),
    /// Too few or too many arguments, or a bad number.
    #[error("usage: {0}")]
    Usage(&'static str),
}

/// Parses one line; `Ok(None)` for a blank line or a `#` comment.
///
/// # Errors
/// The line does not split (quotes, escapes) or is no valid command.
pub fn parse_line(line: &str) -> Result<Option<ShellCommand>, ParseError> {
    if line.trim_start().starts_with('#') {
        return Ok(None);
    }
    let words = split_args(line)?;
    if words.is_empty() {
        return Ok(None);
    }
    parse_words(words).map(Some)
}

/// Parses a command already split into words (for example, from the
/// process's arguments).
///
/// # Errors
/// Unknown command or wrong arguments.
pub fn parse_words(words: Vec<Vec<u8>>) -> Result<ShellCommand, ParseError> {
    let mut words = words.into_iter().map(Bytes::from);
    let name = words.next().unwrap_or_default();
    let args: Vec<Bytes> = words.collect();
    let name = String::from_utf8_lossy(&name).to_lowercase();
    match name.as_str() {
        "get" => one_key(args, "get KEY").map(|key| ShellCommand::Get { key }),
        "set" | "put" => set(args),
        "ttl" => one_key(args, "ttl KEY").map(|key| ShellCommand::Ttl { key }),
        "persist" => one_key(args, "persist KEY").map(|key| ShellCommand::Persist { key }),
        "expire" => match <[Bytes; 2]>::try_from(args) {
            // As Redis: 0 or less expires the key at once (deletes it).
            Ok([key, seconds]) if at_most_zero(&seconds) => {
                Ok(ShellCommand::Expire { key, ttl_ms: 0 })
            }
            Ok([key, seconds]) => match duration_ms(&seconds, 1000) {
                Some(ttl_ms) => Ok(ShellCommand::Expire { key, ttl_ms }),
                None => Err(ParseError::Usage("expire KEY SECONDS (an integer)")),
            },
            Err(_) => Err(ParseError::Usage("expire KEY SECONDS")),
        },
        "del" | "delete" | "remove" => {
            one_key(args, "del KEY").map(|key| ShellCommand::Del { key })
        }
        "scan" => scan(args, false),
        "rscan" => scan(args, true),
        "ping" => no_args(args, ShellCommand::Ping, "ping"),
        "auth" => one_key(args, "auth TOKEN").and_then(|token| {
            String::from_utf8(token.to_vec())
                .map(|token| ShellCommand::Auth { token })
                .map_err(|_| ParseError::Usage("auth TOKEN (UTF-8)"))
        }),
        "stats" => no_args(args, ShellCommand::Stats, "stats"),
        "checkpoint" => one_key(args, "checkpoint NAME").and_then(|name| {
            String::from_utf8(name.to_vec())
                .map(|name| ShellCommand::Checkpoint { name })
                .map_err(|_| ParseError::Usage("checkpoint NAME (UTF-8)"))
        }),
        "cluster" => cluster(args).map(ShellCommand::Cluster),
        "help" => Ok(ShellCommand::Help),
        "quit" | "exit" => Ok(ShellCommand::Quit),
        _ => Err(ParseError::UnknownCommand(name)),
    }
}

/// A `cluster` subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterCommand {
    Status,
    Add { id: u64, addr: String },
    Remove { id: u64 },
}

const CLUSTER_USAGE: &str = "cluster status | cluster add ID HOST:PORT | cluster remove ID";

fn cluster(args: Vec<Bytes>) -> Result<ClusterCommand, ParseError> {
    let usage = ParseError::Usage(CLUSTER_USAGE);
    let words: Vec<String> = args
        .iter()
        .map(|a| String::from_utf8(a.to_vec()).map_err(|_| usage.clone()))
        .collect::<Result<_, _>>()?;
    let id = |word: &str| word.parse::<u64>().ok().filter(|id| *id > 0);
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["status"] => Ok(ClusterCommand::Status),
        ["add", node, addr] if addr.contains(':') => match id(node) {
            Some(id) => Ok(ClusterCommand::Add {
                id,
                addr: (*addr).to_string(),
            }),
            None => Err(usage),
        },
        ["remove", node] => id(node)
            .map(|id| ClusterCommand::Remove { id })
            .ok_or(usage),
        _ => Err(usage),
    }
}

const SET_USAGE: &str = "set KEY VALUE [ex SECONDS | px MILLISECONDS]";

fn set(args: Vec<Bytes>) -> Result<ShellCommand, ParseError> {
    let usage = ParseError::Usage(SET_USAGE);
    let mut args = args.into_iter();
    let (Some(key), Some(value)) = (args.next(), args.next()) else {
        return Err(usage);
    };
    let ttl_ms = match (args.next(), args.next(), args.next()) {
        (None, _, _) => 0,
        (Some(unit), Some(amount), None) => {
            let scale = match unit.to_ascii_lowercase().as_slice() {
                b"ex" => 1000,
                b"px" => 1,
                _ => return Err(usage),
            };
            duration_ms(&amount, scale).ok_or(usage)?
        }
        _ => return Err(usage),
    };
    Ok(ShellCommand::Set { key, value, ttl_ms })
}

/// A positive whole number of units of `scale` ms, in ms.
/// An integer of 0 or less.
fn at_most_zero(text: &[u8]) -> bool {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .is_some_and(|n| n <= 0)
}

fn duration_ms(text: &[u8], scale: u64) -> Option<u64> {
    let amount: u64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    amount.checked_mul(scale).filter(|ms| *ms > 0)
}

fn one_key(args: Vec<Bytes>, usage: &'static str) -> Result<Bytes, ParseError> {
    match <[Bytes; 1]>::try_from(args) {
        Ok([key]) => Ok(key),
        Err(_) => Err(ParseError::Usage(usage)),
    }
}

fn no_args(
    args: Vec<Bytes>,
    command: ShellCommand,
    usage: &'static str,
) -> Result<ShellCommand, ParseError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(ParseError::Usage(usage))
    }
}

fn scan(args: Vec<Bytes>, reverse: bool) -> Result<ShellCommand, ParseError> {
    const USAGE: &str = "scan [START [END [LIMIT]]]";
    if args.len() > 3 {
        return Err(ParseError::Usage(USAGE));
    }
    let mut args = args.into_iter();
    let start = args.next().unwrap_or_default();
    let end = args.next().unwrap_or_default();
    let limit = match args.next() {
        Some(limit) => std::str::from_utf8(&limit)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(ParseError::Usage(USAGE))?,
        None => 0,
    };
    Ok(ShellCommand::Scan {
        start,
        end,
        limit,
        reverse,
    })
}

/// Splits `line` into arguments: spaces separate, double quotes group and
/// allow escapes.
///
/// # Errors
/// An unclosed quote or a bad escape.
pub fn split_args(line: &str) -> Result<Vec<Vec<u8>>, ParseError> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
            if c == '"' {
                quoted(&mut chars, &mut arg)?;
            } else if c == '\'' {
                single_quoted(&mut chars, &mut arg)?;
            } else {
                push_char(&mut arg, c);
            }
        }
        args.push(arg);
    }
}

/// Reads a quoted part (after its opening quote) into `arg`.
fn quoted(chars: &mut impl Iterator<Item = char>, arg: &mut Vec<u8>) -> Result<(), ParseError> {
    loop {
        match chars.next().ok_or(ParseError::UnclosedQuote)? {
            '"' => return Ok(()),
            '\\' => match chars.next().ok_or(ParseError::UnclosedQuote)? {
                '"' => arg.push(b'"'),
                '\\' => arg.push(b'\\'),
                'n' => arg.push(b'\n'),
                'x' => {
                    let hex: String = chars.take(2).collect();
                    let byte = u8::from_str_radix(&hex, 16)
                        .ok()
                        .filter(|_| hex.len() == 2)
                        .ok_or_else(|| ParseError::BadEscape(format!("\\x{hex}")))?;
                    arg.push(byte);
                }
                other => return Err(ParseError::BadEscape(format!("\\{other}"))),
            },
            c => push_char(arg, c),
        }
    }
}

/// Reads a single-quoted part (after its opening quote) into `arg`: every
/// character as is, except `\'` for a quote.
fn single_quoted(
    chars: &mut std::iter::Peekable<impl Iterator<Item = char>>,
    arg: &mut Vec<u8>,
) -> Result<(), ParseError> {
    loop {
        match chars.next().ok_or(ParseError::UnclosedQuote)? {
            '\'' => return Ok(()),
            '\\' if chars.next_if_eq(&'\'').is_some() => arg.push(b'\''),
            c => push_char(arg, c),
        }
    }
}

fn push_char(arg: &mut Vec<u8>, c: char) {
    let mut utf8 = [0; 4];
    arg.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
}

/// `bytes` for display: printable UTF-8 as is, a backslash as `\\`, every
/// other byte as `\xHH`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => push_hex(&mut out, c.to_string().as_bytes()),
                c => out.push(c),
            }
        }
        push_hex(&mut out, chunk.invalid());
    }
    out
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push_str(&format!("\\x{b:02x}"));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn splits_on_spaces_and_groups_quotes() {
        let args = split_args(r#"  set "hello world"  x"y"z "" "#).unwrap();
        let want: Vec<&[u8]> = vec![b"set", b"hello world", b"xyz", b""];
        assert_eq!(args, want);
    }

    #[test]
    fn single_quotes_group_words_and_keep_backslashes() {
        let args = split_args(r#"set 'hello world' 'it\'s' 'a\nb' x'y z'"#).unwrap();
        let want: Vec<&[u8]> = vec![b"set", b"hello world", b"it's", b"a\\nb", b"xy z"];
        assert_eq!(args, want);
        assert_eq!(split_args("'open"), Err(ParseError::UnclosedQuote));
    }

    #[test]
    fn comments_are_skipped() {
        assert_eq!(parse_line("# set k v").unwrap(), None);
        assert_eq!(parse_line("   #").unwrap(), None);
        let get = ShellCommand::Get { key: b("#k") };
        assert_eq!(parse_line("get #k").unwrap(), Some(get));
    }

    #[test]
    fn escapes_inside_quotes() {
        let args = split_args(r#""a\"b\\c\nd\x00\xff""#).unwrap();
        assert_eq!(args, vec![b"a\"b\\c\nd\x00\xff".to_vec()]);
        assert_eq!(
            split_args(r#""\q""#),
            Err(ParseError::BadEscape("\\q".into()))
        );
        assert_eq!(
            split_args(r#""\x4""#),
            Err(ParseError::BadEscape("\\x4\"".into()))
        );
        assert_eq!(split_args("\"open"), Err(ParseError::UnclosedQuote));
    }

    #[test]
    fn commands_and_aliases() {
        let p = |s| parse_line(s).unwrap().unwrap();
        assert_eq!(p("get k"), ShellCommand::Get { key: b("k") });
        assert_eq!(
            p("SET k v"),
            ShellCommand::Set {
                key: b("k"),
                value: b("v"),
                ttl_ms: 0,
            }
        );
        assert_eq!(p("put k v"), p("set k v"));
        let expiring = |ttl_ms| ShellCommand::Set {
            key: b("k"),
            value: b("v"),
            ttl_ms,
        };
        assert_eq!(p("set k v ex 60"), expiring(60_000));
        assert_eq!(p("set k v PX 1500"), expiring(1500));
        for bad in [
            "set k v ex",
            "set k v ex 0",
            "set k v ex -1",
            "set k v zz 5",
            "set k v ex 5 x",
        ] {
            assert!(
                matches!(parse_line(bad), Err(ParseError::Usage(_))),
                "{bad}"
            );
        }
        assert_eq!(p("ttl k"), ShellCommand::Ttl { key: b("k") });
        assert_eq!(p("persist k"), ShellCommand::Persist { key: b("k") });
        let expire = ShellCommand::Expire {
            key: b("k"),
            ttl_ms: 60_000,
        };
        assert_eq!(p("expire k 60"), expire);
        // As Redis, 0 or less expires the key at once.
        for now in ["expire k 0", "expire k -5"] {
            let at_once = ShellCommand::Expire {
                key: b("k"),
                ttl_ms: 0,
            };
            assert_eq!(p(now), at_once, "{now}");
        }
        assert!(matches!(
            parse_line("expire k soon"),
            Err(ParseError::Usage(_))
        ));
        for del in ["del k", "delete k", "remove k"] {
            assert_eq!(p(del), ShellCommand::Del { key: b("k") });
        }
        assert_eq!(p("exit"), ShellCommand::Quit);
        assert_eq!(p("quit"), ShellCommand::Quit);
        assert_eq!(p("help"), ShellCommand::Help);
        assert_eq!(p("ping"), ShellCommand::Ping);
        let token = "s3cret".to_string();
        assert_eq!(p("auth s3cret"), ShellCommand::Auth { token });
        assert_eq!(p("stats"), ShellCommand::Stats);
        assert_eq!(
            p("cluster status"),
            ShellCommand::Cluster(ClusterCommand::Status)
        );
        assert_eq!(
            p("cluster add 4 h:7004"),
            ShellCommand::Cluster(ClusterCommand::Add {
                id: 4,
                addr: "h:7004".into()
            })
        );
        assert_eq!(
            p("cluster remove 2"),
            ShellCommand::Cluster(ClusterCommand::Remove { id: 2 })
        );
        let name = "daily".to_string();
        assert_eq!(p("checkpoint daily"), ShellCommand::Checkpoint { name });
        assert_eq!(parse_line("   ").unwrap(), None);
    }

    #[test]
    fn scan_arguments() {
        let p = |s| parse_line(s).unwrap().unwrap();
        let all = ShellCommand::Scan {
            start: b(""),
            end: b(""),
            limit: 0,
            reverse: false,
        };
        assert_eq!(p("scan"), all);
        let some = ShellCommand::Scan {
            start: b("a"),
            end: b("z"),
            limit: 5,
            reverse: true,
        };
        assert_eq!(p("rscan a z 5"), some);
        assert!(matches!(
            parse_line("scan a z x"),
            Err(ParseError::Usage(_))
        ));
        assert!(matches!(
            parse_line("scan a b 1 2"),
            Err(ParseError::Usage(_))
        ));
    }

    #[test]
    fn wrong_arguments_are_usage_errors() {
        assert!(matches!(parse_line("get"), Err(ParseError::Usage(_))));
        assert!(matches!(parse_line("set k"), Err(ParseError::Usage(_))));
        assert!(matches!(parse_line("ping x"), Err(ParseError::Usage(_))));
        for bad in [
            "cluster add 0 h:1",
            "cluster add 4 h",
            "cluster remove x",
            "cluster x",
        ] {
            assert!(
                matches!(parse_line(bad), Err(ParseError::Usage(_))),
                "{bad}"
            );
        }
        assert_eq!(
            parse_line("frob"),
            Err(ParseError::UnknownCommand("frob".into()))
        );
    }

    #[test]
    fn escape_shows_unprintable_bytes() {
        assert_eq!(escape(b"plain text"), "plain text");
        assert_eq!(escape("h\u{e9}".as_bytes()), "h\u{e9}");
        assert_eq!(escape(b"a\\b"), "a\\\\b");
        assert_eq!(escape(b"\x00\n\xff"), "\\x00\\x0a\\xff");
    }
}
