//! Scans: bounds, the default limit, the ~4 MiB page cap, and paging in both
//! directions by following the continuation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod server_support;

use bytes::Bytes;
use naive_kv::client::Client;
use naive_kv::proto::Scan;
use server_support::{TestServer, runtime};

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key{i:05}"))
}

/// Every entry of a scan, following continuations; also the page count.
async fn scan_all(client: &Client, mut scan: Scan) -> (Vec<(Bytes, Bytes)>, usize) {
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let page = client.scan(scan.clone()).await.unwrap();
        pages += 1;
        all.extend(page.entries);
        match page.continuation {
            Some(next) if scan.reverse => scan.end = next,
            Some(next) => scan.start = next,
            None => return (all, pages),
        }
    }
}

#[test]
fn paging_forward_and_reverse_follows_continuation() {
    let server = TestServer::start();
    runtime().block_on(async {
        let client = Client::connect(server.addr).await.unwrap();
        let writes: Vec<_> = (0..2500)
            .map(|i| client.put(key(i), format!("v{i}")))
            .collect();
        for w in writes {
            w.await.unwrap();
        }
        let want: Vec<Bytes> = (0..2500).map(key).collect();

        let (all, pages) = scan_all(&client, Scan::default()).await;
        assert_eq!(all.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), want);
        assert_eq!(pages, 3, "limit 0 means pages of 1000");
        assert_eq!(all[7].1, Bytes::from("v7"));

        let reverse = Scan {
            reverse: true,
            limit: 300,
            ..Scan::default()
        };
        let (all, pages) = scan_all(&client, reverse).await;
        let mut rev = want.clone();
        rev.reverse();
        assert_eq!(all.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), rev);
        assert_eq!(pages, 9);

        let bounded = Scan {
            start: key(10),
            end: key(20),
            limit: 3,
            reverse: false,
        };
        let (all, _) = scan_all(&client, bounded).await;
        assert_eq!(
            all.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            want[10..20]
        );
        let bounded = Scan {
            start: key(10),
            end: key(20),
            limit: 3,
            reverse: true,
        };
        let (all, _) = scan_all(&client, bounded).await;
        let mut rev = want[10..20].to_vec();
        rev.reverse();
        assert_eq!(all.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), rev);

        let page = client
            .scan(Scan {
                start: key(2499),
                ..Scan::default()
            })
            .await
            .unwrap();
        assert_eq!(page.entries.len(), 1);
        assert_eq!(
            page.continuation, None,
            "exhausted range has no continuation"
        );
    });
}

#[test]
fn a_page_stops_near_four_mib() {
    let server = TestServer::start();
    runtime().block_on(async {
        let client = Client::connect(server.addr).await.unwrap();
        for i in 0..12 {
            client.put(key(i), vec![b'x'; 1 << 20]).await.unwrap();
        }
        let page = client.scan(Scan::default()).await.unwrap();
        assert!(
            (4..=5).contains(&page.entries.len()),
            "{} entries",
            page.entries.len()
        );
        assert!(page.continuation.is_some());
        let (all, _) = scan_all(&client, Scan::default()).await;
        assert_eq!(all.len(), 12);
    });
}
