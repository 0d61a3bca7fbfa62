//! Load generator for a running NaiveKV server (native protocol): N
//! connections, each keeping `--pipeline` requests in flight, a read/write
//! mix over a key space; prints throughput and latency percentiles.
//!
//!     cargo run --release -p naive_kv_bench --bin server_load -- \
//!         --addr 127.0.0.1:1024 --connections 50 --pipeline 16 --reads 1.0

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use naive_kv::client::Client;

#[derive(Parser, Debug, Clone)]
#[command(about = "Drives a running NaiveKV server and reports ops/s and latency")]
struct Args {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:1024")]
    addr: SocketAddr,
    /// Connections, each on its own task.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 16)]
    pipeline: usize,
    /// Fraction of requests that are gets (the rest are puts).
    #[arg(long, default_value_t = 0.5)]
    reads: f64,
    /// Keys are drawn uniformly from 0..keys.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Total requests, spread over the connections.
    #[arg(long, default_value_t = 200_000)]
    requests: u64,
    /// Put every key once before measuring (so gets hit).
    #[arg(long)]
    prefill: bool,
}

/// A small xorshift generator: the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("{i:016}"))
}

async fn prefill(
    client: &Client,
    keys: u64,
    value: &Bytes,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut in_flight = FuturesUnordered::new();
    for i in 0..keys {
        in_flight.push(client.put(key(i), value.clone()));
        if in_flight.len() >= 256
            && let Some(result) = in_flight.next().await
        {
            result?;
        }
    }
    while let Some(result) = in_flight.next().await {
        result?;
    }
    Ok(())
}

/// One connection's share of the run: its latency histogram and errors.
async fn drive(
    args: Args,
    seed: u64,
    requests: u64,
    value: Bytes,
) -> Result<(Histogram<u64>, u64), String> {
    let client = Client::connect(args.addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
    let mut rng = Rng(seed | 1);
    let mut errors = 0;
    let mut in_flight = FuturesUnordered::new();
    let mut sent = 0;
    while sent < requests || !in_flight.is_empty() {
        while sent < requests && in_flight.len() < args.pipeline {
            let k = key(rng.next() % args.keys.max(1));
            let is_read = (rng.next() % 10_000) as f64 / 10_000.0 < args.reads;
            let started = Instant::now();
            let request = if is_read {
                let get = client.get(k);
                Box::pin(async move { get.await.map(|_| ()) })
                    as std::pin::Pin<Box<dyn Future<Output = _>>>
            } else {
                Box::pin(client.put(k, value.clone()))
            };
            in_flight.push(async move { (request.await, started.elapsed()) });
            sent += 1;
        }
        if let Some((result, elapsed)) = in_flight.next().await {
            if result.is_err() {
                errors += 1;
            }
            let _ = histogram.record(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX).max(1));
        }
    }
    Ok((histogram, errors))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let value = Bytes::from(vec![b'v'; args.value_size]);
    actix_rt::System::new().block_on(async move {
        if args.prefill {
            let client = Client::connect(args.addr).await?;
            prefill(&client, args.keys, &value).await?;
        }
        let per_connection = args.requests / args.connections.max(1) as u64;
        let started = Instant::now();
        let tasks: Vec<_> = (0..args.connections)
            .map(|c| actix_rt::spawn(drive(args.clone(), 0x9e37_79b9 + c as u64, per_connection, value.clone())))
            .collect();
        let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
        let mut errors = 0;
        for task in tasks {
            let (histogram, failed) = task.await??;
            total.add(&histogram)?;
            errors += failed;
        }
        let elapsed = started.elapsed().max(Duration::from_micros(1));
        let us = |q: f64| total.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "connections {} pipeline {} reads {:.2} value {} B: {} requests in {:.2} s = {:.0} ops/s; \
             p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us; errors {}",
            args.connections,
            args.pipeline,
            args.reads,
            args.value_size,
            total.len(),
            elapsed.as_secs_f64(),
            total.len() as f64 / elapsed.as_secs_f64(),
            us(0.5),
            us(0.99),
            us(0.999),
            errors
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
