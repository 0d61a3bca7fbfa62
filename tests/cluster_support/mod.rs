//! In-process test clusters: nodes on loopback ports sharing one
//! fault-injecting network, concurrent clients that record a history of
//! their operations, and the checks run on it (every acknowledged write
//! survives; the history is linearizable per key).

#![allow(dead_code)]

pub mod linearizability;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use naive_kv::Options;
use naive_kv::cluster::faults::NetworkFaults;
use naive_kv::cluster::{ClusterConfig, ClusterNode, ClusterRequest, ClusterSecret, NodeId};
use naive_kv::server::{ServerConfig, run};
use tempfile::TempDir;

use linearizability::{Action, Operation};

/// Whether the long variants run (`NAIVEKV_CLUSTER_TESTS=1`).
pub fn long_tests() -> bool {
    std::env::var("NAIVEKV_CLUSTER_TESTS").is_ok_and(|v| v == "1")
}

/// `n` loopback ports free at the time of the call, below Linux's
/// ephemeral range (32768 and up): a node restarted on its old port must
/// not find it taken as the local port of some outgoing connection. Ports
/// come from one counter per process, starting at a place that differs
/// between runs, so concurrent tests never get the same one.
pub fn free_ports(n: usize) -> Vec<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let nanos = std::time::UNIX_EPOCH
        .elapsed()
        .map_or(0, |d| d.subsec_nanos());
    let seed = std::process::id().wrapping_mul(2_654_435_761) ^ nanos;
    let _ = NEXT.compare_exchange(u32::MAX, seed % SPAN, Ordering::SeqCst, Ordering::SeqCst);
    let mut ports = Vec::with_capacity(n);
    while ports.len() < n {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    ports
}

/// The secret of every test cluster's peer connections.
pub const TEST_SECRET: &[u8] = b"a test cluster's shared secret";

pub fn test_secret() -> ClusterSecret {
    ClusterSecret::new(TEST_SECRET).unwrap()
}

/// Serves the native protocol for `node` on a new loopback port (as
/// `run_server --cluster` does); returns the port.
pub fn serve(node: &ClusterNode) -> u16 {
    serve_until(node, std::future::pending())
}

/// As [`serve`], until `shutdown` completes (stop the node first: the
/// server closes the engine it serves as it stops).
pub fn serve_until(node: &ClusterNode, shutdown: impl Future<Output = ()> + 'static) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let config = ServerConfig {
        workers: 1,
        cluster: Some(node.clone()),
        ..ServerConfig::default()
    };
    let engine = (*node.engine()).clone();
    actix_rt::spawn(async move {
        let _ = run(listener, engine, config, shutdown).await;
    });
    port
}

/// Serves RESP for `node` on a new loopback port (as `run_server
/// --cluster ... --resp-port` does); returns the port.
pub fn serve_resp(node: &ClusterNode) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let config = naive_kv::resp::RespConfig {
        workers: 1,
        cluster: Some(node.clone()),
        ..naive_kv::resp::RespConfig::default()
    };
    let engine = (*node.engine()).clone();
    actix_rt::spawn(naive_kv::resp::run(
        listener,
        engine,
        config,
        std::future::pending(),
    ));
    port
}

/// The running nodes, shared with the clients (one thread: an `Rc`).
pub type Nodes = Rc<RefCell<BTreeMap<NodeId, ClusterNode>>>;

/// A cluster of nodes `1..=n` in this process.
pub struct TestCluster {
    pub members: BTreeMap<NodeId, String>,
    dirs: BTreeMap<NodeId, TempDir>,
    pub nodes: Nodes,
    pub faults: Arc<NetworkFaults>,
    /// Snapshot every this many entries (and keep no log behind it), or
    /// openraft's defaults if `None`.
    pub snapshot_every: Option<u64>,
    /// Nodes `1..=initial` form the cluster; higher ids are spares, to be
    /// added with a membership change.
    pub initial: u64,
}

impl TestCluster {
    /// Starts `n` nodes and waits for a leader.
    pub async fn start(n: u64, seed: u64, snapshot_every: Option<u64>) -> TestCluster {
        Self::with_spares(n, 0, seed, snapshot_every).await
    }

    /// Starts `n` nodes that form a cluster, and gives `spares` more ids
    /// (ports and directories) for nodes started later.
    pub async fn with_spares(
        initial: u64,
        spares: u64,
        seed: u64,
        snapshot_every: Option<u64>,
    ) -> TestCluster {
        // Node warnings and errors show beside a failing test's output.
        let _ = env_logger::builder()
            .is_test(true)
            .filter_level(log::LevelFilter::Warn)
            .try_init();
        let n = initial + spares;
        let ports = free_ports(n as usize);
        let members = (1..=n)
            .map(|id| (id, format!("127.0.0.1:{}", ports[id as usize - 1])))
            .collect();
        let cluster = TestCluster {
            members,
            dirs: (1..=n)
                .map(|id| (id, tempfile::tempdir().unwrap()))
                .collect(),
            nodes: Rc::new(RefCell::new(BTreeMap::new())),
            faults: NetworkFaults::new(seed),
            snapshot_every,
            initial,
        };
        for id in 1..=initial {
            cluster.start_node(id).await;
        }
        cluster.leader(Duration::from_secs(10)).await;
        cluster
    }

    pub fn config(&self, id: NodeId) -> ClusterConfig {
        // The founders list each other; a spare lists everyone (itself
        // included, as `--cluster` must) but never forms a cluster.
        let members = match id <= self.initial {
            true => self
                .members
                .range(..=self.initial)
                .map(|(i, a)| (*i, a.clone()))
                .collect(),
            false => self.members.clone(),
        };
        let mut config = ClusterConfig::new(id, self.members[&id].clone(), members);
        config.heartbeat = Duration::from_millis(100);
        config.election_timeout = Duration::from_millis(500);
        config.request_timeout = Duration::from_secs(2);
        config.faults = Some(self.faults.clone());
        config.secret = Some(test_secret());
        if let Some(every) = self.snapshot_every {
            config.snapshot_every = every;
            config.logs_kept_after_snapshot = 0;
        }
        config
    }

    /// Starts node `id` from its directory (fresh or kept).
    pub async fn start_node(&self, id: NodeId) -> ClusterNode {
        self.start_node_with(id, |_| {}).await
    }

    /// Starts node `id` from its directory with its configuration changed
    /// by `adjust`.
    pub async fn start_node_with(
        &self,
        id: NodeId,
        adjust: impl FnOnce(&mut ClusterConfig),
    ) -> ClusterNode {
        let dir = self.dirs[&id].path();
        let mut config = self.config(id);
        adjust(&mut config);
        let node = ClusterNode::start(config, dir, Options::new(dir.join("unused")))
            .await
            .unwrap();
        self.nodes.borrow_mut().insert(id, node.clone());
        node
    }

    /// Stops node `id` (its directory stays).
    pub async fn stop_node(&self, id: NodeId) {
        let node = self.nodes.borrow_mut().remove(&id).unwrap();
        node.shutdown().await.unwrap();
    }

    /// Empties node `id`'s directory (the node must be stopped).
    pub fn wipe_node(&mut self, id: NodeId) {
        assert!(!self.nodes.borrow().contains_key(&id));
        self.dirs.insert(id, tempfile::tempdir().unwrap());
    }

    pub fn node(&self, id: NodeId) -> ClusterNode {
        self.nodes.borrow()[&id].clone()
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.borrow().keys().copied().collect()
    }

    /// Waits until a running node sees itself as leader; returns its id
    /// (of the highest term, if a deposed leader does not know it yet).
    pub async fn leader(&self, within: Duration) -> NodeId {
        self.leader_after(0, within).await.0
    }

    /// Waits until a running node leads in a term above `term`; returns
    /// its id and term.
    pub async fn leader_after(&self, term: u64, within: Duration) -> (NodeId, u64) {
        let deadline = Instant::now() + within;
        loop {
            let leading = self
                .nodes
                .borrow()
                .iter()
                .map(|(id, node)| (*id, node.status()))
                .filter(|(id, s)| s.leader == Some(*id) && s.role == "leader" && s.term > term)
                .max_by_key(|(_, s)| s.term);
            if let Some((id, status)) = leading {
                return (id, status.term);
            }
            assert!(Instant::now() < deadline, "no leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until node `id` has applied everything the leader had in its
    /// log when called (a fixed target: under load the log keeps growing).
    pub async fn caught_up(&self, id: NodeId, within: Duration) {
        let deadline = Instant::now() + within;
        let leader = self.leader(within).await;
        let target = self.node(leader).status().last_log_index;
        loop {
            if self.node(id).status().last_applied_index >= target {
                return;
            }
            assert!(Instant::now() < deadline, "node {id} did not catch up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn shutdown(&self) {
        let nodes: Vec<_> = self
            .nodes
            .borrow_mut()
            .split_off(&0)
            .into_values()
            .collect();
        for node in nodes {
            node.shutdown().await.unwrap();
        }
    }
}

/// The keys the clients share: few, so operations on each overlap.
pub const KEYS: [&str; 3] = ["k0", "k1", "k2"];

/// A recorded history shared by the clients.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    pub history: Rc<RefCell<Vec<Operation>>>,
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            start: Instant::now(),
            history: Rc::new(RefCell::new(Vec::new())),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Runs one operation through `node` and records it.
    pub async fn run(&self, client: usize, node: &ClusterNode, key: &str, action: Action) {
        let invoked = self.now();
        let (action, ok) = match action {
            Action::Get(_) => match read(node, key).await {
                Some(value) => (Action::Get(value), true),
                None => return, // a failed read says nothing
            },
            write => {
                let value = match &write {
                    Action::Put(v) => Some(v.as_bytes().to_vec()),
                    _ => None,
                };
                let request = ClusterRequest::of(vec![(key.as_bytes().to_vec(), value)]);
                (write, node.write(request).await.is_ok())
            }
        };
        let returned = ok.then(|| self.now());
        self.history.borrow_mut().push(Operation {
            client,
            key: key.to_string(),
            action,
            invoked,
            returned,
        });
    }

    pub fn acknowledged_writes(&self) -> usize {
        self.history
            .borrow()
            .iter()
            .filter(|op| op.returned.is_some() && !matches!(op.action, Action::Get(_)))
            .count()
    }
}

/// A linearizable read through `node`, or `None` if it failed.
pub async fn read(node: &ClusterNode, key: &str) -> Option<Option<String>> {
    read_or_error(node, key).await.ok()
}

async fn read_or_error(node: &ClusterNode, key: &str) -> Result<Option<String>, String> {
    node.linearizable_barrier()
        .await
        .map_err(|e| format!("barrier: {e}"))?;
    let value = node.engine().get(Bytes::from(key.to_string())).await;
    let value = value.map_err(|e| format!("engine: {e}"))?;
    Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Concurrent clients, each looping put/get/delete on [`KEYS`] through
/// "its" node (client `i` prefers node `i % n + 1`, and any running node
/// while that one is down) until stopped.
pub struct Clients {
    stop: Rc<RefCell<bool>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Clients {
    pub fn spawn(count: usize, nodes: &Nodes, recorder: &Recorder) -> Clients {
        let stop = Rc::new(RefCell::new(false));
        let handles = (0..count)
            .map(|client| {
                let (nodes, recorder, stop) = (nodes.clone(), recorder.clone(), stop.clone());
                actix_rt::spawn(client_loop(client, nodes, recorder, stop))
            })
            .collect();
        Clients { stop, handles }
    }

    /// Stops the clients and waits for their last operations.
    pub async fn stop(self) {
        *self.stop.borrow_mut() = true;
        for handle in self.handles {
            handle.await.unwrap();
        }
    }
}

async fn client_loop(client: usize, nodes: Nodes, recorder: Recorder, stop: Rc<RefCell<bool>>) {
    let mut step = 0u64;
    while !*stop.borrow() {
        let node = {
            let nodes = nodes.borrow();
            let preferred = (client as u64) % 3 + 1;
            nodes
                .get(&preferred)
                .or_else(|| nodes.values().nth(client % nodes.len().max(1)))
                .cloned()
        };
        let Some(node) = node else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let key = KEYS[(step as usize * 7 + client) % KEYS.len()];
        let action = match step % 10 {
            0..=4 => Action::Put(format!("c{client}-{step}")),
            5 => Action::Delete,
            _ => Action::Get(None),
        };
        recorder.run(client, &node, key, action).await;
        step += 1;
    }
}

/// A read after the faults are healed, tried up to five times (a loaded
/// machine may still be electing a leader); a failed read has no effect,
/// so only the last attempt joins the history. Returns when it was invoked.
async fn final_read(
    recorder: &Recorder,
    node: &ClusterNode,
    key: &str,
) -> (u64, Result<Option<String>, String>) {
    let mut attempt = 1;
    loop {
        let invoked = recorder.now();
        let value = read_or_error(node, key).await;
        if value.is_ok() || attempt == 5 {
            return (invoked, value);
        }
        attempt += 1;
    }
}

/// After the clients stopped: every running node reads every key (the
/// reads join the history), the values agree with linearizability and no
/// acknowledged write is lost; returns the number of operations checked.
pub async fn check(cluster: &TestCluster, recorder: &Recorder) -> usize {
    let mut finals = BTreeMap::new();
    for id in cluster.ids() {
        let node = cluster.node(id);
        for key in KEYS {
            let (invoked, value) = final_read(recorder, &node, key).await;
            let value = value.unwrap_or_else(|e| panic!("final read of {key} on node {id}: {e}"));
            recorder.history.borrow_mut().push(Operation {
                client: usize::MAX,
                key: key.to_string(),
                action: Action::Get(value.clone()),
                invoked,
                returned: Some(recorder.now()),
            });
            finals.insert(key.to_string(), value);
        }
    }
    let history = recorder.history.borrow();
    if let Err(violation) = linearizability::check(&history) {
        panic!(
            "not linearizable on {}: {:#?}",
            violation.key, violation.operations
        );
    }
    linearizability::check_final_values(&history, &finals).unwrap();
    history.len()
}
