//! `run_server`: the NaiveKV TCP server. Argument parsing and wiring only;
//! the server is `naive_kv::server`.

use std::ffi::OsString;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};
use naive_kv::cluster::node::parse_members;
use naive_kv::cluster::{ClusterConfig, ClusterNode, ClusterSecret, ReadConsistency};
use naive_kv::options::Compression;
use naive_kv::options::{
    MAX_BLOCK_CACHE_BYTES, MIN_MEMTABLE_BYTES, display_size, parse_host, parse_size,
};
use naive_kv::resp::{self, RespConfig};
use naive_kv::server::checkpoints::CheckpointRoot;
use naive_kv::server::pipeline::ServerReplyBudget;
use naive_kv::server::{self, ServerConfig, auth, loading, memory, metrics};
use naive_kv::{Db, Options, SyncPolicy};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::oneshot;

/// Serves a NaiveKV database over TCP (protocol: docs/PROTOCOL.md).
/// Sizes take units: 65536, 4KiB, 64MiB, 1GiB (or K, M, G; KB, MB, GB are
/// powers of 1000). Operating guide: docs/OPERATING.md.
#[derive(Debug, Parser)]
#[command(name = "run_server", version, about, args_override_self = true)]
struct Args {
    /// A file of `flag = value` lines (TOML: `port = 1024`,
    /// `directory = "/var/lib/naivekv"`, `insecure = true`); flags given
    /// on the command line override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The database directory (created if missing).
    #[arg(long, default_value = "./naive_kv_data")]
    directory: PathBuf,
    /// Address or host name to listen on (`localhost` resolves).
    #[arg(long, default_value = "127.0.0.1", value_parser = parse_host)]
    ip: IpAddr,
    /// Port to listen on.
    #[arg(long, default_value_t = 1024)]
    port: u16,
    /// Also serve the Redis protocol (RESP2/RESP3) on this port, same --ip
    /// and database (off by default).
    #[arg(long)]
    resp_port: Option<u16>,
    /// Redis databases SELECT can pick on the RESP port (0..N), 1 to 10000.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    databases: u32,
    /// Serve Prometheus metrics at http://METRICS_IP:PORT/metrics (off by
    /// default).
    #[arg(long)]
    metrics_port: Option<u16>,
    /// Address the metrics endpoint listens on.
    #[arg(long, default_value = "127.0.0.1", value_parser = parse_host)]
    metrics_ip: IpAddr,
    /// Threads serving connections, at least 1 (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// When acknowledged writes reach the disk.
    #[arg(long, value_enum, default_value_t = Sync::Always)]
    sync: Sync,
    /// With --sync interval: milliseconds between WAL syncs, at least 1.
    #[arg(long, default_value_t = 100)]
    sync_interval_ms: u64,
    /// Memory for all memtables together, at least 1MiB (default 64MiB);
    /// the active one is flushed at half of it, its share beside one frozen
    /// memtable.
    #[arg(long, value_parser = parse_size)]
    memtable_bytes: Option<usize>,
    /// Level 0 (flushed memtables, whose key ranges overlap) is merged into
    /// level 1 once it holds this many segments, 1 to 100 (default 12).
    /// Every get that misses the memtables checks each level-0 segment: a
    /// lower value makes such gets cheaper and rewrites level 1 more often
    /// (more bytes written per byte stored); see docs/OPERATING.md.
    #[arg(long)]
    l0_compaction_trigger: Option<usize>,
    /// Memory for cached data blocks (default a sixteenth of the machine's
    /// memory or the cgroups' limit, 32MiB to 8GiB; 0 turns it off).
    #[arg(long, value_parser = parse_size)]
    block_cache_bytes: Option<usize>,
    /// Leave the blocks a flush writes out of the block cache. By default
    /// they go in (when the cache holds at least 8 memtables), so gets of
    /// recent keys read no file; a write-heavy load whose reads are of
    /// older keys keeps more of those cached without it.
    #[arg(long)]
    no_flush_cache: bool,
    /// How new segment data blocks are compressed: none, lz4, zstd or
    /// zstd:LEVEL (1-22, default 3). Existing files keep theirs.
    #[arg(long, default_value_t = Compression::Lz4)]
    compression: Compression,
    /// The only directory under which clients may write checkpoints
    /// (native `Checkpoint NAME`, RESP `SAVE`/`BGSAVE`), created if
    /// missing; without it they are refused. Restore: run_server
    /// --directory DIR/NAME.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Longest request frame accepted, at least 1KiB (default 64MiB).
    #[arg(long, default_value_t = server::DEFAULT_MAX_FRAME_BYTES, value_parser = parse_size)]
    max_frame_bytes: usize,
    /// Connections served at once, at least 1; past it new ones get BUSY.
    #[arg(long, default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Bytes of unanswered requests and unsent replies one connection may
    /// hold before the server stops reading it (one larger reply is still
    /// sent, alone).
    #[arg(long, default_value_t = server::DEFAULT_MAX_REPLY_BYTES, value_parser = parse_size)]
    max_reply_bytes: usize,
    /// Bytes of unanswered requests and unsent replies all connections (both
    /// ports) may hold together before every connection stops reading and
    /// starting reads until some drain; requests still being received count
    /// once past 128KiB each, and may take at most half of it.
    #[arg(long, default_value_t = server::DEFAULT_MAX_SERVER_REPLY_BYTES, value_parser = parse_size)]
    max_server_reply_bytes: usize,
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
    // Cluster flags (docs/CLUSTER.md): all three together, or none.
    /// This node's id in the cluster (with --cluster).
    #[arg(long)]
    node_id: Option<u64>,
    /// Port for node-to-node Raft traffic, on --ip (with --cluster).
    #[arg(long)]
    peer_port: Option<u16>,
    /// Every member as ID=HOST:PEER_PORT, comma-separated, the same list on
    /// every node; a fresh cluster forms once a majority is up.
    #[arg(long)]
    cluster: Option<String>,
    /// A file holding the secret (at least 16 bytes; trailing newlines
    /// ignored) every peer connection must prove; the same on every node.
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
    /// Serve peers that prove no secret (only on a network nobody else can
    /// reach): a cluster node refuses to start without this or
    /// --cluster-secret-file.
    #[arg(long)]
    insecure_peers: bool,
    /// How reads are served on a cluster node: `linearizable` (after a read
    /// index from the leader) or `local` (from this node's engine at once,
    /// possibly stale on a follower).
    #[arg(long, value_enum, default_value_t = ReadConsistencyArg::Linearizable)]
    read_consistency: ReadConsistencyArg,
    /// Build a Raft snapshot every this many applied entries (and purge the
    /// log up to it).
    #[arg(long, default_value_t = 5000)]
    snapshot_every: u64,
    /// Log entries kept before the last snapshot, so a follower slightly
    /// behind catches up from the log instead of a snapshot.
    #[arg(long, default_value_t = 1000)]
    logs_kept_after_snapshot: u64,
}

/// `--read-consistency` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReadConsistencyArg {
    /// After a read index confirmed by the leader.
    Linearizable,
    /// From the local engine, possibly stale.
    Local,
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

/// The smallest `--max-frame-bytes`: room for a request's header and a key.
const MIN_FRAME_BYTES: usize = 1 << 10;

/// The most `--workers`.
const MAX_WORKERS: usize = 1024;
/// The highest `--l0-compaction-trigger`: past it every get checks that
/// many filters and merges rewrite gigabytes at once.
const MAX_L0_COMPACTION_TRIGGER: usize = 100;

impl Args {
    /// Checks the values their types do not: ranges, and one port per
    /// listener. The message names the flag.
    fn validate(&self) -> Result<(), String> {
        let at_least = |value: usize, min: usize, flag: &str, min_text: &str| {
            if value < min {
                return Err(format!("{flag} must be at least {min_text}, not {value}"));
            }
            Ok(())
        };
        at_least(self.workers.unwrap_or(1), 1, "--workers", "1")?;
        // Each worker is a thread with its own event loop and descriptors;
        // past this the server only contends with itself.
        if let Some(workers) = self.workers.filter(|&w| w > MAX_WORKERS) {
            return Err(format!(
                "--workers must be at most {MAX_WORKERS}, not {workers}"
            ));
        }
        if let Some(bytes) = self
            .block_cache_bytes
            .filter(|&b| b > MAX_BLOCK_CACHE_BYTES)
        {
            return Err(format!(
                "--block-cache-bytes must be at most 1TiB, not {bytes}"
            ));
        }
        seconds(self.idle_timeout, "--idle-timeout")?;
        seconds(self.frame_timeout, "--frame-timeout")?;
        at_least(self.max_connections, 1, "--max-connections", "1")?;
        if let Some(trigger) = self.l0_compaction_trigger {
            at_least(trigger, 1, "--l0-compaction-trigger", "1")?;
            if trigger > MAX_L0_COMPACTION_TRIGGER {
                return Err(format!(
                    "--l0-compaction-trigger must be at most {MAX_L0_COMPACTION_TRIGGER}, not {trigger}"
                ));
            }
        }
        let (frame, memtable) = (self.max_frame_bytes, self.memtable_bytes);
        at_least(frame, MIN_FRAME_BYTES, "--max-frame-bytes", "1KiB")?;
        let memtable = memtable.unwrap_or(MIN_MEMTABLE_BYTES);
        at_least(memtable, MIN_MEMTABLE_BYTES, "--memtable-bytes", "1MiB")?;
        if self.sync_interval_ms == 0 {
            return Err("--sync-interval-ms must be at least 1".into());
        }
        self.check_ports()?;
        self.cluster_config()?;
        self.options().validate().map_err(|e| e.to_string())
    }

    /// The cluster this node joins, if `--cluster` is given.
    fn cluster_config(&self) -> Result<Option<ClusterConfig>, String> {
        let (id, port, list) = match (self.node_id, self.peer_port, &self.cluster) {
            (None, None, None) => return Ok(None),
            (Some(id), Some(port), Some(list)) => (id, port, list),
            _ => return Err("--node-id, --peer-port and --cluster go together".into()),
        };
        let members = parse_members(list)?;
        let peer_listen = SocketAddr::new(self.ip, port).to_string();
        let mut config = ClusterConfig::new(id, peer_listen, members);
        config.secret = match (&self.cluster_secret_file, self.insecure_peers) {
            (Some(path), false) => Some(ClusterSecret::from_file(path)?),
            (None, true) => None,
            (Some(_), true) => {
                return Err("--cluster-secret-file and --insecure-peers exclude each other".into());
            }
            (None, false) => {
                return Err("a cluster node needs --cluster-secret-file (or \
                            --insecure-peers on a network nobody else can reach)"
                    .into());
            }
        };
        config.read_consistency = match self.read_consistency {
            ReadConsistencyArg::Linearizable => ReadConsistency::Linearizable,
            ReadConsistencyArg::Local => ReadConsistency::Local,
        };
        if self.snapshot_every == 0 {
            return Err("--snapshot-every must be at least 1".into());
        }
        config.snapshot_every = self.snapshot_every;
        config.logs_kept_after_snapshot = self.logs_kept_after_snapshot;
        // Named to clients as the leader's address; an unspecified --ip or
        // port 0 would name nothing a client can reach.
        let native = SocketAddr::new(self.ip, self.port);
        config.client_addr = (!self.ip.is_unspecified() && self.port != 0).then_some(native);
        Ok(Some(config))
    }

    /// Two listeners on one port would fail with "Address already in use"
    /// about the server's own port; say what is wrong instead.
    fn check_ports(&self) -> Result<(), String> {
        let ports = [
            ("--port", Some(self.port)),
            ("--resp-port", self.resp_port),
            ("--metrics-port", self.metrics_port),
        ];
        for (i, (flag, port)) in ports.iter().enumerate() {
            for (other, other_port) in ports.iter().skip(i + 1) {
                if let (Some(port), Some(other_port)) = (port, other_port)
                    && port == other_port
                    && *port != 0
                {
                    return Err(format!(
                        "{flag} and {other} are both {port}: each listener needs a port of its own"
                    ));
                }
            }
        }
        Ok(())
    }

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
        if let Some(trigger) = self.l0_compaction_trigger {
            options.l0_compaction_trigger = trigger;
            // Writers slow down at twice the trigger, never below the
            // default's stall point.
            options.l0_stall_trigger = options.l0_stall_trigger.max(trigger * 2);
        }
        options.block_cache_bytes = self
            .block_cache_bytes
            .unwrap_or_else(|| memory::default_block_cache_bytes(memory::usable_memory_bytes()));
        options.cache_flushed_blocks = !self.no_flush_cache;
        // Each worker thread serves many connections: a write must not poll
        // for its answer while the others wait.
        options.writers_spin = false;
        // Most of a server's reads are point gets, many of recent keys.
        options.memtable_point_index = true;
        // A lone durable write is synced on its worker's thread, without
        // four hand-offs to the memtable actor and its sync thread.
        options.inline_durable_writes = true;
        options.compression = self.compression;
        options
    }

    fn resp_config(&self, options: &Options) -> RespConfig {
        let mut config = RespConfig {
            max_bulk_bytes: options.max_value_bytes.max(options.max_key_bytes),
            max_connections: self.max_connections,
            databases: self.databases,
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
            server_budget: Arc::new(ServerReplyBudget::new(self.max_server_reply_bytes)),
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
        if let Some(dir) = &self.checkpoint_dir {
            // Owner-only, as the data directory: checkpoints are its data.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    format!("--checkpoint-dir {}: cannot create it: {e}", dir.display())
                })?;
            config.checkpoints = Arc::new(CheckpointRoot::new(Some(dir.clone())));
        }
        Ok(config)
    }

    /// The startup line: what runs, on what, where.
    fn banner(&self, options: &Options) -> String {
        let sync = match options.sync {
            SyncPolicy::Always => "always".to_string(),
            SyncPolicy::Interval(every) => format!("every {} ms", every.as_millis()),
            SyncPolicy::None => "none".to_string(),
        };
        let port = |port: Option<u16>| port.map_or("off".to_string(), |p| p.to_string());
        format!(
            "NaiveKV {} starting: directory {}, sync {sync}, memtable budget {}, \
             block cache {}, native port {}, RESP port {}, metrics port {}",
            env!("CARGO_PKG_VERSION"),
            options.directory.display(),
            display_size(options.memtable_bytes as u64),
            display_size(options.block_cache_bytes as u64),
            self.port,
            port(self.resp_port),
            port(self.metrics_port),
        )
    }
}

/// A positive number of seconds as a duration.
fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{flag} must be a positive number of seconds"))
}

/// Binds `addr`, saying which listener could not.
async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
}

/// The bound address of `listener` (the chosen port for port 0).
fn bound(listener: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(fallback)
}

/// Binds every listener, opens the database and serves until `shutdown`.
async fn serve(
    args: &Args,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let options = args.options();
    log::info!("{}", args.banner(&options));
    let native_addr = SocketAddr::new(args.ip, args.port);
    let native = bind(native_addr, "native").await?;
    let mut listening = format!("{} (native)", bound(&native, native_addr));
    let resp = match args.resp_port {
        Some(port) => {
            let addr = SocketAddr::new(args.ip, port);
            let listener = bind(addr, "RESP").await?;
            listening.push_str(&format!(", {} (RESP)", bound(&listener, addr)));
            Some(listener)
        }
        None => None,
    };
    let metrics_listener = match args.metrics_port {
        Some(port) => {
            let addr = SocketAddr::new(args.metrics_ip, port);
            let listener = bind(addr, "metrics").await?;
            listening.push_str(&format!(", http://{}/metrics", bound(&listener, addr)));
            Some(listener)
        }
        None => None,
    };
    let resp_config = args.resp_config(&options);
    log::info!("opening the database (replaying its WAL)");
    let opening = Instant::now();
    let mut config = config;
    if let Some(cluster) = args.cluster_config()? {
        let node = ClusterNode::start(cluster, &args.directory, options.clone());
        let node = tokio::select! {
            node = node => node.map_err(|e| e.to_string())?,
            never = loading::answer_loading(&native, resp.as_ref()) => match never {},
        };
        log::info!(
            "cluster node {} started; listening on {listening}",
            node.id()
        );
        config.cluster = Some(node.clone());
        let db = Db::clone(&node.engine());
        // RESP goes through the node too (`config.cluster`).
        let listeners = Listeners {
            native,
            resp,
            metrics: metrics_listener,
        };
        let served = serve_ports(listeners, db, config, resp_config, shutdown).await;
        let stopped = node.shutdown().await;
        served?;
        return stopped.or_else(closed_is_fine).map_err(|e| e.to_string());
    }
    let db = {
        let opening = Db::open(options);
        // Connections made meanwhile are told so (LOADING), not left waiting.
        tokio::select! {
            db = opening => db.map_err(|e| open_failure(&e))?,
            never = loading::answer_loading(&native, resp.as_ref()) => match never {},
        }
    };
    let seconds = opening.elapsed().as_secs_f64();
    log::info!("database open in {seconds:.1} s; listening on {listening}");
    let listeners = Listeners {
        native,
        resp,
        metrics: metrics_listener,
    };
    serve_ports(listeners, db, config, resp_config, shutdown).await
}

/// The bound ports: native, and RESP and metrics when asked for.
struct Listeners {
    native: TcpListener,
    resp: Option<TcpListener>,
    metrics: Option<TcpListener>,
}

/// Serves `db` on `listeners` until `shutdown`: the metrics endpoint (both
/// protocols' request figures), and the native port with RESP beside it
/// (the two sharing one set of connection limits).
async fn serve_ports(
    listeners: Listeners,
    db: Db,
    config: ServerConfig,
    resp_config: RespConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let Listeners {
        native,
        resp,
        metrics: metrics_listener,
    } = listeners;
    if let Some(listener) = metrics_listener {
        let mut requests = vec![config.request_stats.clone()];
        if resp.is_some() {
            requests.push(resp_config.request_stats.clone());
        }
        actix_rt::spawn(metrics::serve(listener, db.clone(), requests));
    }
    let served = match resp {
        None => server::run(native, db, config, shutdown).await,
        Some(resp) => {
            let mut resp_config = resp_config;
            resp_config.share_connection_limits(&config);
            resp::run_beside(native, resp, db, config, resp_config, shutdown).await
        }
    };
    served.map_err(|e| e.to_string())
}

/// `server::run` closes the engine it was given; the cluster's shutdown
/// closing it again finds it closed.
fn closed_is_fine(error: naive_kv::Error) -> Result<(), naive_kv::Error> {
    match error {
        naive_kv::Error::Closed => Ok(()),
        other => Err(other),
    }
}

/// Watches SIGINT and SIGTERM on a thread of its own, so that they are seen
/// however busy the server's threads are: the first completes the returned
/// receiver (a graceful shutdown), a second exits the process at once.
fn watch_signals() -> std::io::Result<oneshot::Receiver<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut interrupt, mut terminate) = {
        let _entered = runtime.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    let (stop, stopped) = oneshot::channel();
    let watch = async move {
        let (name, _) = next_signal(&mut interrupt, &mut terminate).await;
        log::info!("{name} received: shutting down (a second signal exits at once)");
        let _ = stop.send(());
        let (name, number) = next_signal(&mut interrupt, &mut terminate).await;
        log::warn!("second signal ({name}): exiting without a clean shutdown");
        std::process::exit(128 + number);
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || runtime.block_on(watch))?;
    Ok(stopped)
}

/// The next SIGINT or SIGTERM: its name and number.
async fn next_signal(interrupt: &mut Signal, terminate: &mut Signal) -> (&'static str, i32) {
    tokio::select! {
        _ = interrupt.recv() => ("SIGINT", libc::SIGINT),
        _ = terminate.recv() => ("SIGTERM", libc::SIGTERM),
    }
}

/// The process's arguments with those of the `--config` file, if any,
/// inserted before them (so that the command line overrides the file).
fn arguments_with_config_file() -> Result<Vec<OsString>, String> {
    let mut arguments: Vec<OsString> = std::env::args_os().collect();
    let Some(path) = config_path(&arguments) else {
        return Ok(arguments);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read --config {}: {e}", path.display()))?;
    let known: Vec<(String, bool)> = Args::command()
        .get_arguments()
        .filter_map(|arg| {
            let takes_value = arg.get_action().takes_values();
            arg.get_long().map(|long| (long.to_string(), takes_value))
        })
        .collect();
    let from_file =
        config_arguments(&text, &known).map_err(|e| format!("--config {}: {e}", path.display()))?;
    let at = arguments.len().min(1);
    arguments.splice(at..at, from_file.into_iter().map(OsString::from));
    Ok(arguments)
}

/// The value of `--config PATH` or `--config=PATH` in raw arguments.
fn config_path(arguments: &[OsString]) -> Option<PathBuf> {
    let mut words = arguments.iter().skip(1);
    while let Some(word) = words.next() {
        if word == "--config" {
            return words.next().map(PathBuf::from);
        }
        if let Some(path) = word.to_str().and_then(|w| w.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// A config file's lines as flags: `key = value` becomes `--key value`
/// (`_` in keys read as `-`), `key = true` becomes `--key`, `key = false`
/// nothing. Blank lines and `#` comments are skipped. Values are TOML
/// scalars: integers, decimals, booleans, "basic" and 'literal' strings.
/// `known` is each flag with whether it takes a value (else it is a switch,
/// set with a boolean). As in TOML, a key may appear once.
fn config_arguments(text: &str, known: &[(String, bool)]) -> Result<Vec<String>, String> {
    let mut flags = Vec::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let at = |message: String| format!("line {}: {message}", index + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| at(format!("expected `key = value`, not `{line}`")))?;
        let key = key.trim().replace('_', "-");
        let takes_value = match known.iter().find(|(name, _)| *name == key) {
            Some((_, takes_value)) if key != "config" => *takes_value,
            _ => return Err(at(format!("unknown key `{key}` (keys are the flags)"))),
        };
        if let Some((_, first)) = seen.iter().find(|(name, _)| *name == key) {
            return Err(at(format!("`{key}` is set twice (first on line {first})")));
        }
        seen.push((key.clone(), index + 1));
        match (toml_scalar(value.trim()).map_err(at)?, takes_value) {
            (Scalar::Bool(true), false) => flags.push(format!("--{key}")),
            (Scalar::Bool(false), false) => {}
            (Scalar::Text(value), true) => flags.extend([format!("--{key}"), value]),
            (Scalar::Bool(_), true) => {
                return Err(at(format!("`{key}` takes a value, not true or false")));
            }
            (Scalar::Text(_), false) => {
                return Err(at(format!("`{key}` is a switch: true or false")));
            }
        }
    }
    Ok(flags)
}

/// A config value.
#[derive(Debug, PartialEq)]
enum Scalar {
    Bool(bool),
    Text(String),
}

/// Parses a TOML scalar with an optional `# comment` after it.
fn toml_scalar(value: &str) -> Result<Scalar, String> {
    let mut chars = value.chars();
    let (text, rest) = match chars.next() {
        Some('"') => basic_string(&mut chars)?,
        Some('\'') => {
            let body = chars.as_str();
            let end = body.find('\'').ok_or("unclosed ' string")?;
            (body[..end].to_string(), &body[end + 1..])
        }
        _ => {
            let end = value.find('#').unwrap_or(value.len());
            let bare = value[..end].trim();
            return match bare {
                "true" => Ok(Scalar::Bool(true)),
                "false" => Ok(Scalar::Bool(false)),
                _ if !bare.is_empty() && bare.parse::<f64>().is_ok() => {
                    Ok(Scalar::Text(bare.replace('_', "")))
                }
                _ => Err(format!(
                    "`{bare}` is not a number, boolean or quoted string"
                )),
            };
        }
    };
    let rest = rest.trim();
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err(format!("unexpected `{rest}` after the value"));
    }
    Ok(Scalar::Text(text))
}

/// The rest of a "basic" string after its opening quote, and what follows.
fn basic_string<'a>(chars: &mut std::str::Chars<'a>) -> Result<(String, &'a str), String> {
    let mut text = String::new();
    loop {
        match chars.next().ok_or("unclosed \" string")? {
            '"' => return Ok((text, chars.as_str())),
            '\\' => match chars.next() {
                Some('"') => text.push('"'),
                Some('\\') => text.push('\\'),
                Some('n') => text.push('\n'),
                Some('t') => text.push('\t'),
                other => return Err(format!("unsupported escape \\{}", other.unwrap_or(' '))),
            },
            c => text.push(c),
        }
    }
}

/// Makes glibc's malloc give every allocation of 256 KiB or more its own
/// mapping, returned to the system when freed. By default the threshold
/// rises with the largest block freed (up to 32 MiB), after which large
/// reply buffers come from the heap and a flood of 1 MiB replies left
/// hundreds of MB resident after its clients had gone (845 MB after 300
/// connections, docs/BENCHMARKS.md, session 15). Setting the threshold
/// fixes it at this value. Other C libraries have no `mallopt`.
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const THRESHOLD: libc::c_int = 256 << 10;
        // SAFETY: mallopt takes two integers and changes malloc's tuning;
        // it is called before any thread is started.
        let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) };
    }
}

/// Why the database did not open, with what to do about a full disk:
/// opening replays the WALs into memtables and flushes them, which needs
/// free space (found by an outside probe: a restart on a full disk failed
/// with the bare ENOSPC).
fn open_failure(error: &naive_kv::Error) -> String {
    match error {
        naive_kv::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
            format!(
                "{error}; the disk is full: opening writes what the WALs hold into segments \
                 and needs about that much free space (free some, then start again)"
            )
        }
        _ => error.to_string(),
    }
}

fn main() -> ExitCode {
    return_large_buffers_to_the_system();
    let arguments = match arguments_with_config_file() {
        Ok(arguments) => arguments,
        Err(message) => Args::command().error(ErrorKind::Io, message).exit(),
    };
    let args = Args::parse_from(arguments);
    if let Err(message) = args.validate() {
        Args::command()
            .error(ErrorKind::ValueValidation, message)
            .exit();
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result = args.config().and_then(|config| {
        let stopped = watch_signals().map_err(|e| format!("cannot handle signals: {e}"))?;
        let shutdown = async move {
            let _ = stopped.await;
        };
        actix::System::new().block_on(serve(&args, config, shutdown))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("run_server: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_at_open_says_what_to_do() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let message = open_failure(&naive_kv::Error::io("writing table x.sst.tmp", full));
        assert!(message.contains("writing table x.sst.tmp"), "{message}");
        assert!(message.contains("free some, then start again"), "{message}");
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let message = open_failure(&naive_kv::Error::io("opening", other));
        assert!(!message.contains("disk is full"), "{message}");
    }

    fn known() -> Vec<(String, bool)> {
        ["port", "directory", "memtable-bytes", "config"]
            .map(|name| (name.to_string(), true))
            .into_iter()
            .chain([("insecure".to_string(), false)])
            .collect()
    }

    #[test]
    fn config_lines_become_flags() {
        let text = "# NaiveKV\n\nport = 1025  # the native port\n\
                    directory = \"/var/lib/naive \\\"kv\\\"\"\n\
                    memtable_bytes = '64MiB'\ninsecure = true\n";
        let flags = config_arguments(text, &known()).unwrap();
        let want = [
            "--port",
            "1025",
            "--directory",
            "/var/lib/naive \"kv\"",
            "--memtable-bytes",
            "64MiB",
            "--insecure",
        ];
        assert_eq!(flags, want);
        assert!(
            config_arguments("insecure = false", &known())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_config_lines_say_where() {
        let error = |text| config_arguments(text, &known()).unwrap_err();
        assert_eq!(
            error("\nportt = 1"),
            "line 2: unknown key `portt` (keys are the flags)"
        );
        assert!(error("config = 'x'").contains("unknown key"));
        assert!(error("[server]").contains("expected `key = value`"));
        assert!(error("port = ten").contains("is not a number"));
        assert!(error("directory = \"x").contains("unclosed"));
        assert!(error("directory = 'x' y").contains("unexpected `y`"));
        assert_eq!(
            error("port = 1\n\nport = 2"),
            "line 3: `port` is set twice (first on line 1)"
        );
        assert!(error("port = false").contains("takes a value"));
        assert!(error("insecure = \"yes\"").contains("is a switch"));
    }

    #[test]
    fn flushes_fill_the_cache_unless_told_not_to() {
        let options = |extra: &[&str]| {
            let mut words = vec!["run_server", "--block-cache-bytes", "1GiB"];
            words.extend_from_slice(extra);
            Args::try_parse_from(words).unwrap().options()
        };
        assert!(options(&[]).caches_flushed_blocks());
        assert!(!options(&["--no-flush-cache"]).caches_flushed_blocks());
        // A cache smaller than 8 memtables is left to reads.
        assert!(!options(&["--memtable-bytes", "512MiB"]).caches_flushed_blocks());
    }

    #[test]
    fn the_config_path_is_found_in_both_spellings() {
        let words = |w: &[&str]| w.iter().map(OsString::from).collect::<Vec<_>>();
        let path = config_path(&words(&["run_server", "--port", "1", "--config", "a.toml"]));
        assert_eq!(path, Some(PathBuf::from("a.toml")));
        let path = config_path(&words(&["run_server", "--config=b.toml"]));
        assert_eq!(path, Some(PathBuf::from("b.toml")));
        assert_eq!(config_path(&words(&["run_server", "--port", "1"])), None);
    }
}
