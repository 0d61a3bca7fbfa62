//! A client of a cluster that retries on its own: [`RetryingClient`]
//! holds the native address of every node it may use and one connection at
//! a time. A request that fails because the node could not reach a leader
//! (`UNAVAILABLE`), or because the connection broke or could not be made,
//! is sent again after a backoff, on a new connection to the next node, up
//! to [`RetryPolicy::attempts`] tries, when the request allows it
//! ([`may_retry`]):
//!
//! - reads (`Get`, `Scan`, `Ttl`, `Ping`, `Stats`, cluster status) always;
//! - idempotent writes (`Put` and `Batch` without a relative TTL,
//!   `Delete`): applying one twice leaves what applying it once does, so
//!   they are resent unless [`RetryPolicy::retry_idempotent_writes`] is off.
//!   A resent write that had in fact committed the first time is applied
//!   again, possibly after another client's write of the same key
//!   (at-least-once: the same caveat as any retrying Redis or etcd client);
//! - anything else (a relative TTL, `Expire`, `Persist`, `Checkpoint`,
//!   membership changes, `Auth`) only when no connection could be made, so
//!   the request was never sent.
//!
//! An `UNAVAILABLE` reply names the last known leader's native address
//! when the answering node knows it (`client address HOST:PORT`, read by
//! [`leader_hint`]): the next try goes there first, with no backoff, even
//! if it is not in the client's list. Otherwise (no hint, or the hint names
//! the node that answered) the next try goes to the next node in the list
//! after the backoff (any node serves any request: followers forward
//! writes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{Client, ClientError, ScanPage};
use crate::WriteBatch;
use crate::proto::{self, ErrorCode, request::Command};

/// How a [`RetryingClient`] retries. `RetryPolicy::default()` documents
/// the defaults.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries per request, the first included; default 10.
    pub attempts: u32,
    /// The pause before the first retry, doubled after each; default 50 ms.
    pub first_backoff: Duration,
    /// The longest pause between tries; default 1 s.
    pub max_backoff: Duration,
    /// How long a connection (and its first Ping or Auth) may take;
    /// default 2 s.
    pub connect_timeout: Duration,
    /// Resend idempotent writes (module doc); default true.
    pub retry_idempotent_writes: bool,
    /// The token presented on each new connection, if the servers want one.
    pub token: Option<String>,
    /// Called with the error and the try number (1-based) before each
    /// retry, to tell a user (the shell prints it); default none.
    pub on_retry: Option<fn(&ClientError, u32)>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 10,
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            retry_idempotent_writes: true,
            token: None,
            on_retry: None,
        }
    }
}

impl RetryPolicy {
    /// The pause after failed try number `attempt` (0-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.first_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// What resending a request could do (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotence {
    /// Changes nothing.
    Read,
    /// Leaves the same state applied once or twice.
    IdempotentWrite,
    /// Anything else.
    Other,
}

/// Classifies `command` (module doc).
pub fn idempotence(command: &Command) -> Idempotence {
    use proto::mutation::Op;
    match command {
        Command::Get(_) | Command::Scan(_) | Command::Ttl(_) => Idempotence::Read,
        Command::Ping(_) | Command::Stats(_) => Idempotence::Read,
        Command::Cluster(admin) if admin.op.is_none() => Idempotence::Read,
        Command::Put(put) if put.ttl_ms == 0 => Idempotence::IdempotentWrite,
        Command::Delete(_) => Idempotence::IdempotentWrite,
        Command::Batch(batch) => match batch
            .mutations
            .iter()
            .all(|m| !matches!(&m.op, Some(Op::Put(put)) if put.ttl_ms != 0))
        {
            true => Idempotence::IdempotentWrite,
            false => Idempotence::Other,
        },
        _ => Idempotence::Other,
    }
}

/// Whether a request of `kind` that failed with `error` may be sent again
/// under `policy`.
pub fn may_retry(kind: Idempotence, error: &ClientError, policy: &RetryPolicy) -> bool {
    let resendable = match kind {
        Idempotence::Read => true,
        Idempotence::IdempotentWrite => policy.retry_idempotent_writes,
        Idempotence::Other => false,
    };
    match error {
        // Never sent: safe for anything.
        ClientError::Connect { .. } => true,
        ClientError::Disconnected(_) => resendable,
        ClientError::Server { code, .. } => *code == ErrorCode::Unavailable && resendable,
        ClientError::Protocol(_) => false,
    }
}

/// The leader's native address named in an UNAVAILABLE `message`, if any
/// (after [`crate::cluster::node::CLIENT_ADDRESS_HINT`]).
pub fn leader_hint(message: &str) -> Option<SocketAddr> {
    use crate::cluster::node::CLIENT_ADDRESS_HINT;
    let (_, after) = message.split_once(CLIENT_ADDRESS_HINT)?;
    let end = after
        .find(|c: char| c == ')' || c.is_whitespace())
        .unwrap_or(after.len());
    after.get(..end)?.parse().ok()
}

/// One live connection, its address and, if it is one of the listed
/// nodes, its index.
#[derive(Debug)]
struct Connection {
    addr: SocketAddr,
    node: Option<usize>,
    client: Client,
}

/// A client of a cluster's nodes that retries (module doc). Share it by
/// reference; requests from concurrent callers share one connection.
#[derive(Debug)]
pub struct RetryingClient {
    nodes: Vec<SocketAddr>,
    policy: RetryPolicy,
    /// The connection in use, replaced (never locked) when it fails.
    current: ArcSwapOption<Connection>,
    /// The node the next new connection goes to.
    next_node: AtomicUsize,
    /// The leader's address from the last UNAVAILABLE answer, tried first
    /// by the next new connection.
    hint: ArcSwapOption<SocketAddr>,
}

impl RetryingClient {
    /// A client of `nodes` (their native ports), connecting on first use
    /// to the first. Must be used inside a tokio runtime.
    pub fn new(nodes: Vec<SocketAddr>, policy: RetryPolicy) -> RetryingClient {
        RetryingClient {
            nodes,
            policy,
            current: ArcSwapOption::empty(),
            next_node: AtomicUsize::new(0),
            hint: ArcSwapOption::empty(),
        }
    }

    /// Connects now (if not connected), with no retry: to check at start
    /// that the first node answers.
    ///
    /// # Errors
    ///
    /// The connection's error.
    pub async fn connect_now(&self) -> Result<(), ClientError> {
        self.connection().await.map(|_| ())
    }

    /// The native address of the node the client talks to now, if it is
    /// connected.
    pub fn connected_to(&self) -> Option<SocketAddr> {
        Some(self.current.load_full()?.addr)
    }

    async fn connection(&self) -> Result<Arc<Connection>, ClientError> {
        if let Some(current) = self.current.load_full() {
            return Ok(current);
        }
        let (addr, node) = match self.hint.swap(None) {
            Some(hint) => (*hint, self.nodes.iter().position(|n| *n == *hint)),
            None => {
                let count = self.nodes.len().max(1);
                let node = self.next_node.fetch_add(1, Ordering::Relaxed) % count;
                let addr = self.nodes.get(node).ok_or_else(|| ClientError::Connect {
                    addr: "(none)".into(),
                    message: "the client has no node addresses".into(),
                })?;
                (*addr, Some(node))
            }
        };
        let token = self.policy.token.as_deref();
        let client = Client::connect_checked(addr, self.policy.connect_timeout, token).await?;
        let connection = Arc::new(Connection { addr, node, client });
        self.current.store(Some(connection.clone()));
        Ok(connection)
    }

    /// Forgets `failed` (unless another caller replaced it already), so the
    /// next try connects to the next node.
    fn drop_connection(&self, failed: Option<&Arc<Connection>>) {
        let Some(failed) = failed else { return };
        if let Some(node) = failed.node {
            self.next_node.store(node + 1, Ordering::Relaxed);
        }
        let _ = self
            .current
            .compare_and_swap(&Some(failed.clone()), None::<Arc<Connection>>);
    }

    /// Runs `send` on the current connection, retrying as `kind` allows.
    ///
    /// # Errors
    ///
    /// The last error, once it may not be retried or the tries are spent.
    pub async fn retry<T, F>(&self, kind: Idempotence, send: F) -> Result<T, ClientError>
    where
        F: Fn(&Client) -> BoxFuture<'static, Result<T, ClientError>>,
    {
        let mut attempt = 0;
        loop {
            let connection = self.connection().await;
            let result = match &connection {
                Ok(connection) => send(&connection.client).await,
                Err(e) => Err(e.clone()),
            };
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            attempt += 1;
            if attempt >= self.policy.attempts || !may_retry(kind, &error, &self.policy) {
                return Err(error);
            }
            if let Some(report) = self.policy.on_retry {
                report(&error, attempt);
            }
            // A failed connect already moved `next_node` on.
            self.drop_connection(connection.as_ref().ok());
            if !self.follow_hint(&error, connection.as_ref().ok()) {
                tokio::time::sleep(self.policy.backoff(attempt - 1)).await;
            }
        }
    }

    /// Keeps the leader named by an UNAVAILABLE `error` for the next
    /// connection, unless it is the node that answered; whether it did.
    fn follow_hint(&self, error: &ClientError, answered: Option<&Arc<Connection>>) -> bool {
        let ClientError::Server { code, message } = error else {
            return false;
        };
        let hint = leader_hint(message).filter(|_| *code == ErrorCode::Unavailable);
        match hint {
            Some(leader) if answered.is_none_or(|c| c.addr != leader) => {
                self.hint.store(Some(Arc::new(leader)));
                true
            }
            _ => false,
        }
    }

    /// Sends `command`, retrying as [`idempotence`] classifies it; the
    /// server's reply (an error reply as `Err`).
    ///
    /// # Errors
    ///
    /// As [`Self::retry`].
    pub async fn execute(&self, command: Command) -> Result<proto::response::Reply, ClientError> {
        let kind = idempotence(&command);
        self.retry(kind, |client| client.reply(command.clone()).boxed())
            .await
    }

    /// The value of `key`, `None` if absent (a read).
    ///
    /// # Errors
    ///
    /// As [`Self::retry`].
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>, ClientError> {
        let key = key.into();
        self.retry(Idempotence::Read, |client| client.get(key.clone()).boxed())
            .await
    }

    /// One page of a scan (a read).
    ///
    /// # Errors
    ///
    /// As [`Self::retry`].
    pub async fn scan(&self, scan: proto::Scan) -> Result<ScanPage, ClientError> {
        self.retry(Idempotence::Read, |client| {
            client.scan(scan.clone()).boxed()
        })
        .await
    }

    /// Sets `key` to `value` (an idempotent write).
    ///
    /// # Errors
    ///
    /// As [`Self::retry`].
    pub async fn put(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let (key, value) = (key.into(), value.into());
        self.retry(Idempotence::IdempotentWrite, |client| {
            client.put(key.clone(), value.clone()).boxed()
        })
        .await
    }

    /// Removes `key` (an idempotent write).
    ///
    /// # Errors
    ///
    /// As [`Self::retry`].
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<(), ClientError> {
        let key = key.into();
        self.retry(Idempotence::IdempotentWrite, |client| {
            client.delete(key.clone()).boxed()
        })
        .await
    }

    /// Applies `batch` atomically (an idempotent write: a batch holds no
    /// relative TTL).
    ///
    /// # Errors
    ///
    /// As [`Self::retry`].
    pub async fn batch(&self, batch: &WriteBatch) -> Result<(), ClientError> {
        self.retry(Idempotence::IdempotentWrite, |client| {
            client.batch(batch).boxed()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> ClientError {
        ClientError::Server {
            code: ErrorCode::Unavailable,
            message: "no leader".into(),
        }
    }

    #[test]
    fn reads_and_plain_writes_are_idempotent_relative_ttls_and_admin_are_not() {
        let put = |ttl_ms| {
            Command::Put(proto::Put {
                key: "k".into(),
                value: "v".into(),
                ttl_ms,
                ..Default::default()
            })
        };
        assert_eq!(
            idempotence(&Command::Get(proto::Get { key: "k".into() })),
            Idempotence::Read
        );
        let status = Command::Cluster(proto::ClusterAdmin { op: None });
        assert_eq!(idempotence(&status), Idempotence::Read);
        assert_eq!(idempotence(&put(0)), Idempotence::IdempotentWrite);
        assert_eq!(idempotence(&put(1000)), Idempotence::Other);
        let batch = |ttl_ms| {
            let op = proto::mutation::Op::Put(proto::Put {
                key: "k".into(),
                ttl_ms,
                ..Default::default()
            });
            Command::Batch(proto::Batch {
                mutations: vec![proto::Mutation { op: Some(op) }],
            })
        };
        assert_eq!(idempotence(&batch(0)), Idempotence::IdempotentWrite);
        assert_eq!(idempotence(&batch(5)), Idempotence::Other);
        let expire = Command::Expire(proto::Expire {
            key: "k".into(),
            ttl_ms: 5,
            ..Default::default()
        });
        assert_eq!(idempotence(&expire), Idempotence::Other);
        let checkpoint = Command::Checkpoint(proto::Checkpoint { name: "c".into() });
        assert_eq!(idempotence(&checkpoint), Idempotence::Other);
    }

    #[test]
    fn only_what_is_safe_to_resend_is_retried() {
        let policy = RetryPolicy::default();
        let lost = ClientError::Disconnected("reset".into());
        let refused = ClientError::Connect {
            addr: "a".into(),
            message: "refused".into(),
        };
        let invalid = ClientError::Server {
            code: ErrorCode::InvalidRequest,
            message: "bad".into(),
        };
        for kind in [Idempotence::Read, Idempotence::IdempotentWrite] {
            assert!(may_retry(kind, &unavailable(), &policy));
            assert!(may_retry(kind, &lost, &policy));
            assert!(!may_retry(kind, &invalid, &policy));
        }
        assert!(!may_retry(Idempotence::Other, &unavailable(), &policy));
        assert!(!may_retry(Idempotence::Other, &lost, &policy));
        assert!(may_retry(Idempotence::Other, &refused, &policy));
        let cautious = RetryPolicy {
            retry_idempotent_writes: false,
            ..RetryPolicy::default()
        };
        assert!(!may_retry(Idempotence::IdempotentWrite, &lost, &cautious));
        assert!(may_retry(Idempotence::Read, &lost, &cautious));
    }

    #[test]
    fn the_leader_hint_is_read_from_the_cluster_s_own_message() {
        use crate::cluster::ClusterError;
        let named = ClusterError::Unavailable {
            leader: Some(format!(
                "node 2, {}127.0.0.1:1025",
                crate::cluster::node::CLIENT_ADDRESS_HINT
            )),
        };
        let expected: SocketAddr = "127.0.0.1:1025".parse().unwrap();
        assert_eq!(leader_hint(&named.to_string()), Some(expected));
        let peer_only = ClusterError::Unavailable {
            leader: Some("node 2, peer address 127.0.0.1:7002".into()),
        };
        assert_eq!(leader_hint(&peer_only.to_string()), None);
        let none = ClusterError::Unavailable { leader: None };
        assert_eq!(leader_hint(&none.to_string()), None);
        assert_eq!(leader_hint("client address not-an-address)"), None);
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(0), Duration::from_millis(50));
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        assert_eq!(policy.backoff(4), Duration::from_millis(800));
        assert_eq!(policy.backoff(5), Duration::from_secs(1));
        assert_eq!(policy.backoff(40), Duration::from_secs(1));
    }
}
