//! While the database opens (WAL replay can take seconds), the listeners
//! are already bound: rather than leave connections waiting in the kernel's
//! backlog with no word, [`answer_loading`] accepts them and answers each
//! with a clear error, as Redis does with `-LOADING`, then closes it. The
//! native reply is a `Response` with id 0 and `ErrorCode::LOADING`, like
//! the `BUSY` refusal.

use std::convert::Infallible;

use tokio::net::{TcpListener, TcpStream};

use super::codec::encode_frame;
use super::connections::refuse;
use super::dispatch;
use crate::proto::{ErrorCode, Response};

/// What a RESP client is told while the database opens.
pub const RESP_LOADING_REPLY: &[u8] = b"-LOADING NaiveKV is loading the dataset in memory\r\n";

/// Answers every connection on `native` and `resp` with "loading" and
/// closes it; never returns (drop it when the database is open). The
/// listeners are only borrowed: they are served normally afterwards.
pub async fn answer_loading(native: &TcpListener, resp: Option<&TcpListener>) -> Infallible {
    loop {
        let accepted = tokio::select! {
            accepted = native.accept() => accepted.map(|(stream, _)| (stream, false)),
            accepted = accept_or_wait(resp) => accepted.map(|(stream, _)| (stream, true)),
        };
        match accepted {
            Ok((stream, true)) => {
                actix_rt::spawn(refuse(stream, RESP_LOADING_REPLY, "loading"));
            }
            Ok((stream, false)) => {
                actix_rt::spawn(refuse_native(stream));
            }
            Err(e) => {
                log::warn!("accept failed while loading: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn accept_or_wait(
    listener: Option<&TcpListener>,
) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

async fn refuse_native(stream: TcpStream) {
    let loading = Response {
        id: 0,
        reply: Some(dispatch::error(
            ErrorCode::Loading,
            "the server is loading its database; try again shortly",
        )),
    };
    refuse(stream, &encode_frame(&loading), "loading").await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prost::Message as _;
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn read_all(mut stream: TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        let read = stream.read_to_end(&mut out);
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .unwrap()
            .unwrap();
        out
    }

    #[actix_rt::test]
    async fn both_ports_answer_loading_and_close() {
        let native = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let resp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (native_addr, resp_addr) = (native.local_addr().unwrap(), resp.local_addr().unwrap());
        let client = async {
            let resp_reply = read_all(TcpStream::connect(resp_addr).await.unwrap()).await;
            let native_reply = read_all(TcpStream::connect(native_addr).await.unwrap()).await;
            (resp_reply, native_reply)
        };
        let (resp_reply, native_reply) = tokio::select! {
            replies = client => replies,
            never = answer_loading(&native, Some(&resp)) => match never {},
        };
        assert_eq!(resp_reply, RESP_LOADING_REPLY);
        let response = Response::decode(&native_reply[4..]).unwrap();
        let Some(crate::proto::response::Reply::Error(error)) = response.reply else {
            panic!("{response:?}");
        };
        assert_eq!(error.code, ErrorCode::Loading as i32);
    }
}
