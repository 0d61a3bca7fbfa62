//! A client program talking to a running NaiveKV server:
//! `cargo run --release --example client -- [HOST:PORT]` (default
//! 127.0.0.1:1024; `localhost:1024` works too).
//!
//! It writes a few keys (one by one, pipelined, and as an atomic batch),
//! reads them back, pages through a scan and prints the server's counters.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use naive_kv::WriteBatch;
use naive_kv::client::command::escape;
use naive_kv::client::{Client, ClientError};
use naive_kv::options::parse_host;
use naive_kv::proto::Scan;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:1024".into());
    let addr = match resolve(&addr) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("bad address {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match demo(addr).await {
        Ok(()) => ExitCode::SUCCESS,
        // `| head` closed the pipe: the reader has what it wanted.
        Err(Failure::Stdout(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Stdout(e)) => {
            eprintln!("error: cannot write to standard output: {e}");
            ExitCode::FAILURE
        }
        Err(Failure::Client(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why the demo stopped.
enum Failure {
    Client(ClientError),
    Stdout(io::Error),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

/// Prints a line, or stops the demo if standard output is gone (`println!`
/// would panic).
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(io::stdout(), $($arg)*).map_err(Failure::Stdout)?
    };
}

/// `HOST:PORT`, the host an address or a name.
fn resolve(addr: &str) -> Result<SocketAddr, String> {
    let (host, port) = addr.rsplit_once(':').ok_or("expected HOST:PORT")?;
    let port = port.parse().map_err(|_| format!("bad port '{port}'"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(SocketAddr::new(parse_host(host)?, port))
}

async fn demo(addr: SocketAddr) -> Result<(), Failure> {
    let client = Client::connect(addr).await?;
    client.ping().await?;
    say!("connected to {addr}");

    client.put("example:greeting", "hello").await?;
    say!("greeting = {:?}", client.get("example:greeting").await?);

    // Pipelining: every call sends at once; await the replies afterwards.
    let writes: Vec<_> = (0..100)
        .map(|i| client.put(format!("example:n{i:03}"), i.to_string()))
        .collect();
    for write in writes {
        write.await?;
    }

    let mut batch = WriteBatch::new();
    batch
        .put("example:a", "1")
        .put("example:b", "2")
        .delete("example:greeting");
    client.batch(&batch).await?;
    say!(
        "after batch, greeting = {:?}",
        client.get("example:greeting").await?
    );

    // Page through [example:, example;) ten entries at a time.
    let mut scan = Scan {
        start: "example:".into(),
        end: "example;".into(),
        limit: 10,
        reverse: false,
    };
    let (mut pages, mut entries) = (0, 0);
    loop {
        let page = client.scan(scan.clone()).await?;
        pages += 1;
        entries += page.entries.len();
        if let Some((key, value)) = page.entries.first() {
            say!("page {pages} starts at {} = {}", escape(key), escape(value));
        }
        match page.continuation {
            Some(next) => scan.start = next,
            None => break,
        }
    }
    say!("{entries} entries in {pages} pages");

    for (name, value) in client.stats().await? {
        say!("{name} {value}");
    }
    Ok(())
}
