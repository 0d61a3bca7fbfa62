//! `run_client`: the NaiveKV shell. Argument parsing and mode choice only;
//! the shell is `naive_kv::client::shell`.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Parser};
use naive_kv::client::shell::{Shell, Target, default_history_file};
use naive_kv::options::parse_host;
use naive_kv::server::auth::read_token;

/// Talks to a NaiveKV server: one command from the arguments, one per line
/// of a non-terminal stdin (`#` comments and blank lines skipped), or an
/// interactive prompt (type `help`). Reconnects on the next command after
/// a lost connection.
#[derive(Debug, Parser)]
#[command(name = "run_client", version, about, disable_help_flag = true)]
struct Args {
    /// The server's address or host name (`-h`, as redis-cli).
    #[arg(short = 'h', long, visible_alias = "host", default_value = "127.0.0.1",
          value_parser = parse_host)]
    ip: IpAddr,
    /// The server's native port (not its RESP port).
    #[arg(short = 'p', long, default_value_t = 1024)]
    port: u16,
    /// A file holding the server's token, sent (Auth) on every connection
    /// before any command.
    #[arg(long)]
    auth_token_file: Option<PathBuf>,
    /// Seconds to wait for a connection and the server's first reply.
    #[arg(short = 't', long, default_value_t = 5.0)]
    timeout: f64,
    /// The interactive prompt's history (default ~/.naivekv_history; none
    /// when HOME is unset; an empty value turns it off).
    // An `OsString`, not a `PathBuf`: clap refuses an empty path before it
    // gets here.
    #[arg(long)]
    history_file: Option<OsString>,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
    /// A command and its arguments, e.g. `set KEY VALUE`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

impl Args {
    fn target(&self) -> Result<Target, String> {
        let token = match &self.auth_token_file {
            Some(path) => Some(read_token(path).map_err(|e| e.to_string())?),
            None => None,
        };
        let timeout = Duration::try_from_secs_f64(self.timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or("--timeout must be a positive number of seconds")?;
        Ok(Target {
            addr: SocketAddr::new(self.ip, self.port),
            token,
            timeout,
        })
    }

    fn history(&self) -> Option<PathBuf> {
        match &self.history_file {
            Some(path) if path.is_empty() => None,
            Some(path) => Some(PathBuf::from(path)),
            None => default_history_file(),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let connected = args
        .target()
        .and_then(|target| Shell::connect(target).map_err(|e| e.to_string()));
    let mut shell = match connected {
        Ok(shell) => shell,
        Err(message) => {
            eprintln!("run_client: {message}");
            return ExitCode::FAILURE;
        }
    };
    let ok = if !args.command.is_empty() {
        let words = args.command.iter().cloned().map(OsString::into_vec);
        shell.run_words(words.collect())
    } else if std::io::stdin().is_terminal() {
        shell.run_interactive(args.history().as_deref())
    } else {
        shell.run_lines(std::io::stdin().lock())
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
