//! Peer authentication: a peer port serves nothing to a connection that
//! does not prove the cluster secret (none at all, or a wrong one), and
//! the cluster keeps working; with the secret, the same request is served
//! (the test's own control).

mod cluster_support;

use std::time::Duration;

use bytes::Bytes;
use cluster_support::{TestCluster, test_secret};
use futures_util::{SinkExt, StreamExt};
use naive_kv::cluster::network::{CallError, PeerConnection, PeerReply, PeerRequest};
use naive_kv::cluster::{ClusterRequest, ClusterSecret, NodeId};
use openraft::Vote;
use openraft::raft::VoteRequest;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// A Vote from a would-be node 99 in a term far above the cluster's: a
/// node that took it would move to that term and depose its leader.
fn impostor_vote(term: u64) -> PeerRequest {
    PeerRequest::Vote(VoteRequest::new(Vote::new(term, 99), None))
}

fn frame(request: &PeerRequest) -> Bytes {
    Bytes::from(postcard::to_stdvec(request).unwrap())
}

async fn raw_connection(addr: &str) -> Framed<TcpStream, LengthDelimitedCodec> {
    Framed::new(
        TcpStream::connect(addr).await.unwrap(),
        LengthDelimitedCodec::new(),
    )
}

/// The server closes the connection without answering.
async fn closed_unanswered(framed: &mut Framed<TcpStream, LengthDelimitedCodec>) {
    let next = tokio::time::timeout(Duration::from_secs(10), framed.next()).await;
    match next.expect("the peer port closes the connection within 10 s") {
        None | Some(Err(_)) => {}
        Some(Ok(reply)) => panic!("an unauthenticated request was answered: {reply:?}"),
    }
}

fn max_term(cluster: &TestCluster) -> u64 {
    let ids = cluster.ids();
    ids.iter()
        .map(|id| cluster.node(*id).status().term)
        .max()
        .unwrap()
}

async fn write_succeeds(cluster: &TestCluster, via: NodeId, key: &str) {
    let request = ClusterRequest::of(vec![(key.as_bytes().to_vec(), Some(b"v".to_vec()))]);
    cluster.node(via).write(request).await.unwrap();
}

#[actix_rt::test]
async fn peers_without_the_secret_are_refused_and_the_cluster_keeps_working() {
    let cluster = TestCluster::start(3, 41, None).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let addr = cluster.members[&follower].clone();
    let term = max_term(&cluster);
    let forged_term = term + 100;

    // No handshake at all: the request frame is refused unread.
    let mut framed = raw_connection(&addr).await;
    framed
        .send(frame(&impostor_vote(forged_term)))
        .await
        .unwrap();
    closed_unanswered(&mut framed).await;

    // A handshake with a wrong tag, then the request: refused.
    let mut framed = raw_connection(&addr).await;
    let hello = [b"NKVPEER1".as_slice(), &[7u8; 32]].concat();
    framed.send(Bytes::from(hello)).await.unwrap();
    let challenge = framed.next().await.unwrap().unwrap();
    assert_eq!(challenge.len(), 64);
    framed.send(Bytes::from(vec![0u8; 32])).await.unwrap();
    let _ = framed.send(frame(&impostor_vote(forged_term))).await;
    closed_unanswered(&mut framed).await;

    // Our own client with a wrong secret: the server's proof does not
    // check out, so nothing is sent.
    let wrong = ClusterSecret::new(b"not the cluster's secret").unwrap();
    let mut connection = PeerConnection::new(addr.clone()).with_secret(Some(wrong));
    let refused = connection
        .call(&impostor_vote(forged_term), Duration::from_secs(5))
        .await;
    match refused {
        Err(CallError::Unreachable(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}")
        }
        other => panic!("a wrong secret was not refused: {other:?}"),
    }

    // The cluster never saw the forged term and keeps serving.
    assert!(max_term(&cluster) < forged_term);
    assert_eq!(cluster.leader(Duration::from_secs(10)).await, leader);
    write_succeeds(&cluster, follower, "after-impostors").await;

    // With the secret, the same requests are served (without the
    // handshake, the refused frames above would have been answered too).
    let mut connection = PeerConnection::new(addr).with_secret(Some(test_secret()));
    let answer = connection
        .call(&PeerRequest::Initialized, Duration::from_secs(5))
        .await;
    assert!(
        matches!(answer, Ok(PeerReply::Initialized(true))),
        "{answer:?}"
    );
    let answer = connection
        .call(&impostor_vote(forged_term), Duration::from_secs(5))
        .await;
    assert!(matches!(answer, Ok(PeerReply::Vote(_))), "{answer:?}");
    cluster.shutdown().await;
}
