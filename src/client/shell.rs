//! The shell behind `run_client`: runs [`ShellCommand`]s against a server
//! and prints one line per result (errors as `(error) MESSAGE` on stderr).
//! Three modes: one command from the process's arguments, one command per
//! line of a non-terminal stdin, or an interactive prompt.

use std::io::{self, BufRead, Write};
use std::net::SocketAddr;

use bytes::Bytes;

use super::command::{HELP, ShellCommand, escape, parse_line, parse_words};
use super::{Client, ClientError};
use crate::proto;

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

/// Runs `command` with `client`, printing its result to `out`.
///
/// # Errors
/// The server refused the command, the connection failed, or `out` failed.
pub async fn execute(
    client: &Client,
    command: ShellCommand,
    out: &mut impl Write,
) -> Result<Flow, ShellError> {
    match command {
        ShellCommand::Get { key } => match client.get(key).await? {
            Some(value) => writeln!(out, "{}", escape(&value))?,
            None => writeln!(out, "(nil)")?,
        },
        ShellCommand::Set { key, value } => {
            client.put(key, value).await?;
            writeln!(out, "OK")?;
        }
        ShellCommand::Del { key } => {
            client.delete(key).await?;
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
            client.auth(token).await?;
            writeln!(out, "OK")?;
        }
        ShellCommand::Ping => {
            client.ping().await?;
            writeln!(out, "PONG")?;
        }
        ShellCommand::Stats => {
            for (name, value) in client.stats().await? {
                writeln!(out, "{name} {value}")?;
            }
        }
        ShellCommand::Help => writeln!(out, "{HELP}")?,
        ShellCommand::Quit => return Ok(Flow::Quit),
    }
    Ok(Flow::Continue)
}

/// Prints `KEY<TAB>VALUE` lines, following continuations until the range is
/// exhausted or `limit` entries (0: no limit) are printed.
async fn scan(
    client: &Client,
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
            writeln!(out, "{}\t{}", escape(key), escape(value))?;
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

/// A connected shell with its own single-threaded runtime.
pub struct Shell {
    runtime: tokio::runtime::Runtime,
    client: Client,
    addr: SocketAddr,
}

impl Shell {
    /// Connects to `addr`.
    ///
    /// # Errors
    /// The runtime cannot start or the server cannot be reached.
    pub fn connect(addr: SocketAddr) -> Result<Shell, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Connect {
                addr: addr.to_string(),
                message: e.to_string(),
            })?;
        let client = runtime.block_on(Client::connect(addr))?;
        Ok(Shell {
            runtime,
            client,
            addr,
        })
    }

    /// Sends `token` (see [`Client::auth`]) before any command.
    ///
    /// # Errors
    /// The server refused the token or the connection failed.
    pub fn authenticate(&self, token: String) -> Result<(), ClientError> {
        self.runtime.block_on(self.client.auth(token))
    }

    /// Runs one command given as words; false if it failed.
    pub fn run_words(&self, words: Vec<Vec<u8>>) -> bool {
        match parse_words(words) {
            Ok(command) => self.run(command).0,
            Err(e) => report(&e),
        }
    }

    /// Runs one command per line of `input` until its end or `quit`; false
    /// if any command failed.
    pub fn run_lines(&self, input: impl BufRead) -> bool {
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

    /// The interactive prompt with line editing and history, until `quit`
    /// or end of input. False if the terminal could not be used.
    pub fn run_interactive(&self) -> bool {
        let mut editor = match rustyline::DefaultEditor::new() {
            Ok(editor) => editor,
            Err(e) => return report(&e),
        };
        let prompt = format!("naivekv {}> ", self.addr);
        loop {
            match editor.readline(&prompt) {
                Ok(line) => {
                    let _ = editor.add_history_entry(line.as_str());
                    if self.run_line(&line).1 == Flow::Quit {
                        return true;
                    }
                }
                Err(rustyline::error::ReadlineError::Interrupted) => continue,
                Err(rustyline::error::ReadlineError::Eof) => return true,
                Err(e) => return report(&e),
            }
        }
    }

    fn run_line(&self, line: &str) -> (bool, Flow) {
        match parse_line(line) {
            Ok(Some(command)) => self.run(command),
            Ok(None) => (true, Flow::Continue),
            Err(e) => (report(&e), Flow::Continue),
        }
    }

    fn run(&self, command: ShellCommand) -> (bool, Flow) {
        let mut out = io::stdout().lock();
        let result = self
            .runtime
            .block_on(execute(&self.client, command, &mut out));
        let _ = out.flush();
        match result {
            Ok(flow) => (true, flow),
            Err(e) => (report(&e), Flow::Continue),
        }
    }
}

/// Prints `(error) MESSAGE` on stderr; always false (the command failed).
fn report(error: &dyn std::fmt::Display) -> bool {
    eprintln!("(error) {error}");
    false
}
