//! The shell behind `run_client`: runs [`ShellCommand`]s against a server
//! and prints one line per result (errors as `(error) MESSAGE` on stderr).
//! Three modes: one command from the process's arguments, one command per
//! line of a non-terminal stdin, or an interactive prompt with a history
//! file.
//!
//! The shell talks through a [`RetryingClient`] (one address, plus the
//! leader a cluster node names when it answers UNAVAILABLE): a command
//! that finds the connection gone (the server restarted, or closed an idle
//! connection) or meets UNAVAILABLE is sent again on a new connection, with
//! a line on stderr, if it is safe to resend ([`idempotence`]): reads, and
//! writes that leave the same state applied twice (`set` without a TTL,
//! `del`). Others (`set ... ex`, `expire`, `persist`, `checkpoint`,
//! `cluster add/remove`, `auth`) are sent again only if the connection
//! could not be made at all. A `scan` retries page by page, so no line is
//! printed twice.

use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use futures_util::FutureExt;

use super::command::{ClusterCommand, HELP, ShellCommand, escape, parse_line, parse_words};
use super::retry::{Idempotence, RetryPolicy, RetryingClient};
use super::{Client, ClientError};
use crate::Ttl;
use crate::proto;
use crate::proto::ErrorCode;

/// Whether the shell goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// Why a shell command failed.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// The server or the connection failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Standard output could not be written.
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
}

/// What resending `command` could do (module doc).
pub fn idempotence(command: &ShellCommand) -> Idempotence {
    match command {
        ShellCommand::Get { .. } | ShellCommand::Ttl { .. } | ShellCommand::Scan { .. } => {
            Idempotence::Read
        }
        ShellCommand::Ping | ShellCommand::Stats | ShellCommand::Help | ShellCommand::Quit => {
            Idempotence::Read
        }
        ShellCommand::Cluster(ClusterCommand::Status) => Idempotence::Read,
        ShellCommand::Set { ttl_ms: 0, .. } | ShellCommand::Del { .. } => {
            Idempotence::IdempotentWrite
        }
        _ => Idempotence::Other,
    }
}

/// Runs `command` with `client` (retried as [`idempotence`] allows),
/// printing its result to `out`.
///
/// # Errors
/// The server refused the command, the connection failed, or `out` failed.
pub async fn execute(
    client: &RetryingClient,
    command: ShellCommand,
    out: &mut impl Write,
) -> Result<Flow, ShellError> {
    let kind = idempotence(&command);
    match command {
        ShellCommand::Get { key } => {
            match client.retry(kind, |c| c.get(key.clone()).boxed()).await? {
                Some(value) => writeln!(out, "{}", show(&value))?,
                None => writeln!(out, "(nil)")?,
            }
        }
        ShellCommand::Set { key, value, ttl_ms } => {
            let put = |c: &Client| c.put_with_ttl(key.clone(), value.clone(), ttl_ms).boxed();
            client.retry(kind, put).await?;
            writeln!(out, "OK")?;
        }
        ShellCommand::Ttl { key } => {
            match client.retry(kind, |c| c.ttl(key.clone()).boxed()).await? {
                Ttl::Absent => writeln!(out, "(nil)")?,
                Ttl::Never => writeln!(out, "(no expiry)")?,
                Ttl::At { remaining_ms, .. } => writeln!(out, "{remaining_ms} ms")?,
            }
        }
        ShellCommand::Expire { key, ttl_ms } => {
            // 0: expire now, a time long past (the protocol takes no 0 TTL).
            let expire = |c: &Client| match ttl_ms {
                0 => c.expire_at(key.clone(), 1).boxed(),
                ttl_ms => c.expire_in(key.clone(), ttl_ms).boxed(),
            };
            let set = client.retry(kind, expire).await?;
            writeln!(out, "{}", u8::from(set))?;
        }
        ShellCommand::Persist { key } => {
            let removed = client
                .retry(kind, |c| c.persist(key.clone()).boxed())
                .await?;
            writeln!(out, "{}", u8::from(removed))?;
        }
        ShellCommand::Del { key } => {
            client
                .retry(kind, |c| c.delete(key.clone()).boxed())
                .await?;
            writeln!(out, "OK")?;
        }
        ShellCommand::Scan {
            start,
            end,
            limit,
            reverse,
        } => {
            scan(client, start, end, limit, reverse, out).await?;
        }
        ShellCommand::Auth { token } => {
            client
                .retry(kind, |c| c.auth(token.clone()).boxed())
                .await?;
            writeln!(out, "OK")?;
        }
        ShellCommand::Ping => {
            client.retry(kind, |c| c.ping().boxed()).await?;
            writeln!(out, "PONG")?;
        }
        ShellCommand::Stats => {
            for (name, value) in client.retry(kind, |c| c.stats().boxed()).await? {
                writeln!(out, "{name} {value}")?;
            }
        }
        ShellCommand::Checkpoint { name } => {
            let checkpoint = |c: &Client| c.checkpoint(name.clone()).boxed();
            let written = client.retry(kind, checkpoint).await?;
            writeln!(out, "{} seq {}", written.path, written.seq)?;
        }
        ShellCommand::Cluster(command) => {
            let op = cluster_op(command);
            let status = client
                .retry(kind, |c| c.cluster(op.clone()).boxed())
                .await?;
            print_cluster(&status, out)?;
        }
        ShellCommand::Help => writeln!(out, "{HELP}")?,
        ShellCommand::Quit => return Ok(Flow::Quit),
    }
    Ok(Flow::Continue)
}

fn cluster_op(command: ClusterCommand) -> Option<proto::cluster_admin::Op> {
    use proto::cluster_admin::Op;
    match command {
        ClusterCommand::Status => None,
        ClusterCommand::Add { id, addr } => Some(Op::Add(proto::ClusterAdd { node_id: id, addr })),
        ClusterCommand::Remove { id } => Some(Op::Remove(proto::ClusterRemove { node_id: id })),
    }
}

/// `node ID ROLE term T leader L log I applied A`, then one line per
/// member: `member ID ADDR voter|learner [matched I lag N]`.
fn print_cluster(status: &proto::ClusterStatus, out: &mut impl Write) -> std::io::Result<()> {
    let leader = match status.has_leader {
        true => status.leader.to_string(),
        false => "none".into(),
    };
    writeln!(
        out,
        "node {} {} term {} leader {leader} log {} applied {}",
        status.node_id, status.role, status.term, status.last_log_index, status.last_applied_index
    )?;
    for member in &status.members {
        let kind = if member.voter { "voter" } else { "learner" };
        write!(out, "member {} {} {kind}", member.node_id, member.addr)?;
        if status.role == "leader" {
            let matched = match member.has_matched {
                true => member.matched_index.to_string(),
                false => "none".into(),
            };
            write!(out, " matched {matched} lag {}", member.lag)?;
        }
        if !member.client_addr.is_empty() {
            write!(out, " client {}", member.client_addr)?;
        }
        if !member.resp_addr.is_empty() {
            write!(out, " resp {}", member.resp_addr)?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Prints `KEY<TAB>VALUE` lines, following continuations until the range is
/// exhausted or `limit` entries (0: no limit) are printed.
async fn scan(
    client: &RetryingClient,
    mut start: Bytes,
    mut end: Bytes,
    limit: u64,
    reverse: bool,
    out: &mut impl Write,
) -> Result<(), ShellError> {
    let mut remaining = limit;
    loop {
        let page_limit = if limit == 0 {
            0
        } else {
            remaining.min(u64::from(u32::MAX)) as u32
        };
        let request = proto::Scan {
            start: start.clone(),
            end: end.clone(),
            limit: page_limit,
            reverse,
        };
        let page = client.scan(request).await?;
        for (key, value) in &page.entries {
            writeln!(out, "{}\t{}", show(key), show(value))?;
        }
        remaining = remaining.saturating_sub(page.entries.len() as u64);
        match page.continuation {
            Some(next) if limit == 0 || remaining > 0 => {
                if reverse {
                    end = next
                } else {
                    start = next
                }
            }
            _ => return Ok(()),
        }
    }
}

/// Bytes for display, `""` for none (as redis-cli shows an empty string).
fn show(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        "\"\"".to_string()
    } else {
        escape(bytes)
    }
}

/// Where and how the shell connects.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// Presented with Auth on every connection, if set.
    pub token: Option<String>,
    /// For the connection and the first reply (see
    /// [`Client::connect_checked`]).
    pub timeout: Duration,
}

/// A shell with its own single-threaded runtime and a retrying client.
pub struct Shell {
    runtime: tokio::runtime::Runtime,
    client: RetryingClient,
    target: Target,
    /// At the prompt: a server that cannot be reached is tried again at
    /// the next command. Reading a script, the shell stops instead.
    interactive: bool,
}

impl Shell {
    /// Connects to `target` and checks the server answers (no retry: a
    /// wrong address fails at once).
    ///
    /// # Errors
    /// The runtime cannot start, the server cannot be reached, does not
    /// answer in time, or refuses the token.
    pub fn connect(target: Target) -> Result<Shell, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Connect {
                addr: target.addr.to_string(),
                message: e.to_string(),
            })?;
        let policy = RetryPolicy {
            connect_timeout: target.timeout,
            token: target.token.clone(),
            on_retry: Some(report_retry),
            ..RetryPolicy::default()
        };
        let client = RetryingClient::new(vec![target.addr], policy);
        runtime.block_on(client.connect_now())?;
        Ok(Shell {
            runtime,
            client,
            target,
            interactive: false,
        })
    }

    /// Runs one command given as words; false if it failed.
    pub fn run_words(&mut self, words: Vec<Vec<u8>>) -> bool {
        match parse_words(words) {
            Ok(command) => self.run(command).0,
            Err(e) => report(&e),
        }
    }

    /// Runs one command per line of `input` until its end or `quit`; false
    /// if any command failed. Blank lines and `#` comments are skipped.
    pub fn run_lines(&mut self, input: impl BufRead) -> bool {
        let mut ok = true;
        for line in input.lines() {
            let line = match line {
                Ok(line) => line,
                Err(e) => return report(&e),
            };
            let (success, flow) = self.run_line(&line);
            ok &= success;
            if flow == Flow::Quit {
                break;
            }
        }
        ok
    }

    /// The interactive prompt with line editing, until `quit` or end of
    /// input; history is read from and saved to `history` if given. False
    /// if the terminal could not be used.
    pub fn run_interactive(&mut self, history: Option<&Path>) -> bool {
        self.interactive = true;
        let mut editor = match rustyline::DefaultEditor::new() {
            Ok(editor) => editor,
            Err(e) => return report(&e),
        };
        if let Some(path) = history {
            // A missing file is the first session's normal state.
            let _ = editor.load_history(path);
        }
        // Ends in the original client's `>>> `, for scripts that wait for it.
        let prompt = format!("naivekv {} >>> ", self.target.addr);
        let ok = loop {
            match editor.readline(&prompt) {
                Ok(line) => {
                    if remembered(&line) {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    if self.run_line(&line).1 == Flow::Quit {
                        break true;
                    }
                }
                Err(rustyline::error::ReadlineError::Interrupted) => continue,
                Err(rustyline::error::ReadlineError::Eof) => break true,
                Err(e) => break report(&e),
            }
        };
        if let Some(path) = history
            && let Err(e) = editor.save_history(path)
        {
            eprintln!("(warning) history not saved to {}: {e}", path.display());
        }
        ok
    }

    fn run_line(&mut self, line: &str) -> (bool, Flow) {
        match parse_line(line) {
            Ok(Some(command)) => self.run(command),
            Ok(None) => (true, Flow::Continue),
            Err(e) => (report(&e), Flow::Continue),
        }
    }

    /// Runs `command` (the client retries what is safe to resend).
    fn run(&mut self, command: ShellCommand) -> (bool, Flow) {
        let mut out = io::stdout().lock();
        let result = self
            .runtime
            .block_on(execute(&self.client, command, &mut out));
        let _ = out.flush();
        match result {
            Ok(flow) => (true, flow),
            // Standard output was closed (`| head`): nothing more can show.
            Err(ShellError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                (false, Flow::Quit)
            }
            // Each further line would retry for a second and fail the same.
            Err(e @ ShellError::Client(ClientError::Connect { .. })) if !self.interactive => {
                report(&e);
                eprintln!("run_client: the server cannot be reached; the rest is not sent");
                (false, Flow::Quit)
            }
            Err(
                e @ ShellError::Client(ClientError::Server {
                    code: ErrorCode::Unauthenticated,
                    ..
                }),
            ) => {
                report(&e);
                eprintln!(
                    "(hint) the server wants its token: type `auth TOKEN`, or start \
                     run_client with --auth-token-file FILE"
                );
                (false, Flow::Continue)
            }
            Err(e) => (report(&e), Flow::Continue),
        }
    }
}

/// Tells the user a command is sent again (the retrying client's hook).
fn report_retry(error: &ClientError, attempt: u32) {
    eprintln!(
        "({error}; reconnecting and sending again, try {})",
        attempt + 1
    );
}

/// Whether an interactive line goes into the history: not blank, and not an
/// `auth` line (its token would be written to the history file).
pub fn remembered(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or_default();
    !first.is_empty() && !first.eq_ignore_ascii_case("auth")
}

/// The history file: `~/.naivekv_history`, `None` when `HOME` is not set.
pub fn default_history_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|home| !home.is_empty())?;
    Some(PathBuf::from(home).join(".naivekv_history"))
}

/// Prints `(error) MESSAGE` on stderr; always false (the command failed).
fn report(error: &dyn std::fmt::Display) -> bool {
    eprintln!("(error) {error}");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_status_shows_each_members_client_addresses_when_known() {
        let member = |id, client: &str, resp: &str| proto::ClusterMember {
            node_id: id,
            addr: format!("127.0.0.1:700{id}"),
            voter: true,
            has_matched: true,
            matched_index: 9,
            lag: 0,
            client_addr: client.into(),
            resp_addr: resp.into(),
        };
        let status = proto::ClusterStatus {
            node_id: 1,
            has_leader: true,
            leader: 1,
            term: 2,
            role: "leader".into(),
            last_log_index: 9,
            last_applied_index: 9,
            members: vec![
                member(1, "127.0.0.1:1024", "127.0.0.1:6379"),
                member(2, "127.0.0.1:1025", ""),
                member(3, "", ""),
            ],
        };
        let mut out = Vec::new();
        print_cluster(&status, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "node 1 leader term 2 leader 1 log 9 applied 9",
                "member 1 127.0.0.1:7001 voter matched 9 lag 0 client 127.0.0.1:1024 resp 127.0.0.1:6379",
                "member 2 127.0.0.1:7002 voter matched 9 lag 0 client 127.0.0.1:1025",
                "member 3 127.0.0.1:7003 voter matched 9 lag 0",
            ]
        );
    }

    #[test]
    fn blank_and_auth_lines_are_not_remembered() {
        assert!(remembered("get k"));
        assert!(remembered("  set k v"));
        assert!(!remembered(""));
        assert!(!remembered(" \t "));
        assert!(!remembered("auth s3cret"));
        assert!(!remembered("AUTH s3cret"));
    }

    #[test]
    fn only_reads_and_idempotent_writes_are_resent() {
        let key = Bytes::from("k");
        let get = ShellCommand::Get { key: key.clone() };
        assert_eq!(idempotence(&get), Idempotence::Read);
        let set = |ttl_ms| ShellCommand::Set {
            key: key.clone(),
            value: Bytes::from("v"),
            ttl_ms,
        };
        assert_eq!(idempotence(&set(0)), Idempotence::IdempotentWrite);
        assert_eq!(idempotence(&set(5)), Idempotence::Other);
        let del = ShellCommand::Del { key: key.clone() };
        assert_eq!(idempotence(&del), Idempotence::IdempotentWrite);
        let expire = ShellCommand::Expire { key, ttl_ms: 5 };
        assert_eq!(idempotence(&expire), Idempotence::Other);
        let status = ShellCommand::Cluster(ClusterCommand::Status);
        assert_eq!(idempotence(&status), Idempotence::Read);
        let remove = ShellCommand::Cluster(ClusterCommand::Remove { id: 2 });
        assert_eq!(idempotence(&remove), Idempotence::Other);
    }

    #[test]
    fn empty_values_show_as_two_quotes() {
        assert_eq!(show(b""), "\"\"");
        assert_eq!(show(b"v"), "v");
    }
}
