//! `run_server`: the NaiveKV TCP server. Argument parsing and wiring only;
//! the server is `naive_kv::server`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use naive_kv::resp::{self, RespConfig};
use naive_kv::server::{self, ServerConfig, auth};
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
    /// Also serve the Redis protocol (RESP2/RESP3) on this port, same --ip
    /// and database (off by default).
    #[arg(long)]
    resp_port: Option<u16>,
    /// Threads serving connections (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// When acknowledged writes reach the disk.
    #[arg(long, value_enum, default_value_t = Sync::Always)]
    sync: Sync,
    /// With --sync interval: milliseconds between WAL syncs.
    #[arg(long, default_value_t = 100)]
    sync_interval_ms: u64,
    /// Memory for all memtables together (default 64 MiB); the active one
    /// is flushed at half of it, its share beside one frozen memtable.
    #[arg(long)]
    memtable_bytes: Option<usize>,
    /// Memory for cached data blocks (default 32 MiB; 0 turns it off).
    #[arg(long)]
    block_cache_bytes: Option<usize>,
    /// Longest request frame accepted.
    #[arg(long, default_value_t = server::DEFAULT_MAX_FRAME_BYTES)]
    max_frame_bytes: usize,
    /// Connections served at once; past it new ones get BUSY.
    #[arg(long, default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Bytes of unanswered requests and unsent replies one connection may
    /// hold before the server stops reading it (one larger reply is still
    /// sent, alone).
    #[arg(long, default_value_t = server::DEFAULT_MAX_REPLY_BYTES)]
    max_reply_bytes: usize,
    /// Seconds a connection may send nothing before it is closed.
    #[arg(long, default_value_t = server::DEFAULT_IDLE_TIMEOUT.as_secs_f64())]
    idle_timeout: f64,
    /// Seconds a half-sent request frame may take to complete before the
    /// connection is closed.
    #[arg(long, default_value_t = server::DEFAULT_FRAME_TIMEOUT.as_secs_f64())]
    frame_timeout: f64,
    /// A file holding the token every connection must send (Auth) first;
    /// trailing newlines are ignored.
    #[arg(long)]
    auth_token_file: Option<PathBuf>,
    /// Allow listening on a non-loopback --ip without --auth-token-file.
    #[arg(long)]
    insecure: bool,
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
        if let Some(bytes) = self.block_cache_bytes {
            options.block_cache_bytes = bytes;
        }
        options
    }

    fn resp_config(&self, options: &Options) -> RespConfig {
        let mut config = RespConfig {
            max_bulk_bytes: options.max_value_bytes.max(options.max_key_bytes),
            max_connections: self.max_connections,
            ..RespConfig::default()
        };
        if let Some(workers) = self.workers {
            config.workers = workers;
        }
        config
    }

    /// The server configuration; loads the token file and checks the
    /// listening address is not exposed without one.
    fn config(&self) -> Result<ServerConfig, String> {
        let mut config = ServerConfig {
            max_frame_bytes: self.max_frame_bytes,
            max_connections: self.max_connections,
            max_reply_bytes: self.max_reply_bytes,
            idle_timeout: seconds(self.idle_timeout, "--idle-timeout")?,
            frame_timeout: seconds(self.frame_timeout, "--frame-timeout")?,
            ..ServerConfig::default()
        };
        if let Some(workers) = self.workers {
            config.workers = workers;
        }
        if let Some(path) = &self.auth_token_file {
            let loaded = auth::read_token_file(path).map_err(|e| e.to_string())?;
            if let Some(warning) = loaded.warning {
                log::warn!("{warning}");
            }
            config.auth_token = Some(loaded.token);
        }
        // The Redis listener takes the same token through AUTH.
        auth::check_exposure(self.ip, config.auth_token.is_some(), self.insecure)?;
        Ok(config)
    }
}

/// A positive number of seconds as a duration.
fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{flag} must be a positive number of seconds"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = SocketAddr::new(args.ip, args.port);
    let config = match args.config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("run_server: {message}");
            return ExitCode::FAILURE;
        }
    };
    let result = actix::System::new().block_on(async {
        let shutdown =
            server::shutdown_signal().map_err(|e| format!("cannot handle signals: {e}"))?;
        let options = args.options();
        let served = match args.resp_port {
            None => server::serve(addr, options, config, shutdown).await,
            Some(port) => {
                let resp_addr = SocketAddr::new(args.ip, port);
                let mut resp_config = args.resp_config(&options);
                resp_config.share_connection_limits(&config);
                resp::serve_beside(addr, resp_addr, options, config, resp_config, shutdown).await
            }
        };
        served.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("run_server: {message}");
            ExitCode::FAILURE
        }
    }
}
