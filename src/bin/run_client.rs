//! `run_client`: the NaiveKV shell. Argument parsing and mode choice only;
//! the shell is `naive_kv::client::shell`.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use naive_kv::client::shell::Shell;
use naive_kv::server::auth::read_token;

/// Talks to a NaiveKV server: one command from the arguments, one per line
/// of a non-terminal stdin, or an interactive prompt (type `help`).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// The server's port.
    #[arg(long, default_value_t = 1024)]
    port: u16,
    /// A file holding the server's token, sent (Auth) before any command.
    #[arg(long)]
    auth_token_file: Option<PathBuf>,
    /// A command and its arguments, e.g. `set KEY VALUE`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

/// Connects, and authenticates if a token file was given.
fn connect(args: &Args) -> Result<Shell, String> {
    let token = match &args.auth_token_file {
        Some(path) => Some(read_token(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let shell = Shell::connect(SocketAddr::new(args.ip, args.port)).map_err(|e| e.to_string())?;
    if let Some(token) = token {
        shell.authenticate(token).map_err(|e| e.to_string())?;
    }
    Ok(shell)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let shell = match connect(&args) {
        Ok(shell) => shell,
        Err(message) => {
            eprintln!("run_client: {message}");
            return ExitCode::FAILURE;
        }
    };
    let ok = if !args.command.is_empty() {
        shell.run_words(args.command.into_iter().map(OsString::into_vec).collect())
    } else if std::io::stdin().is_terminal() {
        shell.run_interactive()
    } else {
        shell.run_lines(std::io::stdin().lock())
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
