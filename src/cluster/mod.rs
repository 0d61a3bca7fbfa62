//! Replication: a NaiveKV cluster on openraft (issue 19).
//!
//! Module map:
//! - [`abstention`]: a node that starts with no Raft state refuses votes
//!   (except to form a fresh cluster) and does not campaign until a leader
//!   has caught it up.
//! - [`log_store`]: the Raft log and vote on disk (`DIR/raft/log`,
//!   `DIR/raft/vote`), framed and checksummed like the WAL.
//! - [`state_machine`]: the NaiveKV engine as openraft's state machine; the
//!   last applied log id and membership are written in the same batch as the
//!   data they describe.
//! - [`snapshot`]: snapshots as engine checkpoints, packed into one archive
//!   file for the wire and unpacked on the receiving node.
//! - [`faults`]: a fault-injecting layer for the peer network (drop, delay,
//!   duplicate, partition), controlled lock-free by tests.
//! - [`network`]: node-to-node RPC over TCP (length-prefixed postcard
//!   frames), the client side (`RaftNetworkFactory`) and the peer listener.
//! - [`request`]: the command a log entry carries (versioned: puts with
//!   absolute expiries, deletes, range deletes, conditions decided at
//!   apply) and what applying it answers.
//! - [`peer_auth`]: the handshake by which two nodes prove the shared
//!   cluster secret before any request is served.
//! - [`read_index`]: the actor that batches read-index rounds, one round
//!   for every read waiting when it starts.
//! - [`backoff`]: the random pause a conditional write takes after a
//!   conflict, so two nodes' read-modify-writes do not fall into step.
//! - [`write_batch`]: the actor that merges the plain writes waiting while
//!   one proposal commits into the next log entry.
//! - [`admin`]: membership changes (`cluster add/remove`) and the status
//!   figures (`cluster status`, `stats`) on the native protocol.
//! - [`dispatch`]: the server's routing point for native commands on a
//!   cluster node (writes through the leader, reads after a read index).
//! - [`node`]: starting a node from `--node-id/--peer-port/--cluster`,
//!   forming the cluster, and the handle the server uses for writes and
//!   linearizable reads.
//!
//! The flow between these parts is in `docs/CLUSTER.md`.

pub mod abstention;
pub mod admin;
pub mod backoff;
pub mod dispatch;
pub mod faults;
pub mod log_store;
pub mod network;
pub mod node;
pub mod peer_auth;
pub mod read_index;
pub mod request;
pub mod snapshot;
pub mod state_machine;
pub mod write_batch;

pub use admin::MemberChange;
pub use log_store::LogStore;
pub use node::{
    ClusterConfig, ClusterError, ClusterNode, ClusterStatus, MemberStatus, ReadConsistency,
};
use openraft::BasicNode;
pub use peer_auth::ClusterSecret;
pub use request::{ClusterMutation, ClusterRequest, ClusterResponse, Condition};
pub use state_machine::StateMachine;

/// A node's id in the cluster (`--node-id`).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of a NaiveKV cluster.
    pub TypeConfig:
        D = ClusterRequest,
        R = ClusterResponse,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
);

/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<NodeId>;

/// A decode or encode failure of a record as an I/O error.
fn codec_error(error: postcard::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, error)
}
