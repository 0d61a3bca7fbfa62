//! `run_server`: the NaiveKV TCP server. Argument parsing and wiring only;
//! the server is `naive_kv::server`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use naive_kv::server::{self, ServerConfig};
use naive_kv::{Options, SyncPolicy};

/// Serves a NaiveKV database over TCP (protocol: docs/PROTOCOL.md).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The database directory (created if missing).
    #[arg(long, default_value = "./naive_kv_data")]
    directory: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Port to listen on.
    #[arg(long, default_value_t = 1024)]
    port: u16,
    /// Threads serving connections (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// When acknowledged writes reach the disk.
    #[arg(long, value_enum, default_value_t = Sync::Always)]
    sync: Sync,
    /// With --sync interval: milliseconds between WAL syncs.
    #[arg(long, default_value_t = 100)]
    sync_interval_ms: u64,
    /// Memtable size that triggers a flush (default 64 MiB).
    #[arg(long)]
    memtable_bytes: Option<usize>,
    /// Longest request frame accepted.
    #[arg(long, default_value_t = server::DEFAULT_MAX_FRAME_BYTES)]
    max_frame_bytes: usize,
    /// Connections served at once; past it new ones get BUSY.
    #[arg(long, default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
}

/// `--sync` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Sync {
    /// fdatasync before acknowledging each write (group commit).
    Always,
    /// fdatasync every --sync-interval-ms.
    Interval,
    /// Never fdatasync; leave it to the operating system.
    None,
}

impl Args {
    fn options(&self) -> Options {
        let mut options = Options::new(&self.directory);
        options.sync = match self.sync {
            Sync::Always => SyncPolicy::Always,
            Sync::Interval => SyncPolicy::Interval(Duration::from_millis(self.sync_interval_ms)),
            Sync::None => SyncPolicy::None,
        };
        if let Some(bytes) = self.memtable_bytes {
            options.memtable_bytes = bytes;
        }
        options
    }

    fn config(&self) -> ServerConfig {
        let mut config = ServerConfig {
            max_frame_bytes: self.max_frame_bytes,
            max_connections: self.max_connections,
            ..ServerConfig::default()
        };
        if let Some(workers) = self.workers {
            config.workers = workers;
        }
        config
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = SocketAddr::new(args.ip, args.port);
    let result = actix::System::new().block_on(async {
        let shutdown =
            server::shutdown_signal().map_err(|e| format!("cannot handle signals: {e}"))?;
        server::serve(addr, args.options(), args.config(), shutdown)
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("run_server: {message}");
            ExitCode::FAILURE
        }
    }
}
