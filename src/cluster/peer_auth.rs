//! Peer authentication: a connection between two nodes proves, both ways,
//! that each side knows the cluster secret (`run_server
//! --cluster-secret-file`) before any request is served.
//!
//! # Handshake
//!
//! Three frames in the peer connection's framing (4-byte big-endian
//! length, then the bytes; see [`super::network`]), each at most
//! [`HANDSHAKE_FRAME_BYTES`] long, all within [`HANDSHAKE_TIMEOUT`]:
//!
//! 1. client to server: `b"NKVPEER1"` then a 32-byte random client nonce;
//! 2. server to client: a 32-byte random server nonce, then
//!    `HMAC-SHA256(secret, "server" || client nonce || server nonce)`;
//! 3. client to server: `HMAC-SHA256(secret, "client" || client nonce ||
//!    server nonce)`.
//!
//! Each side checks the other's tag in constant time (`Mac::verify_slice`)
//! and closes the connection on a mismatch, a malformed frame or a
//! timeout; the server reads no request frame before step 3 checked out.
//! Fresh nonces from both sides mean a recorded handshake cannot be
//! replayed in either direction; the role prefix means one side's tag is
//! never valid as the other's. The secret itself never crosses the wire.
//! The traffic after the handshake is neither encrypted nor
//! integrity-protected: this keeps out whoever can reach the peer port
//! without the secret, not an attacker on the path (use a private network
//! or a tunnel for that).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// The first bytes a client sends: names the protocol and its version.
const MAGIC: &[u8; 8] = b"NKVPEER1";
/// Length of each side's random nonce.
const NONCE_BYTES: usize = 32;
/// Length of an HMAC-SHA256 tag.
const TAG_BYTES: usize = 32;
/// The longest frame either side accepts during the handshake, so an
/// unauthenticated peer cannot make a node allocate a large frame.
pub const HANDSHAKE_FRAME_BYTES: usize = 256;
/// How long the whole handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

type PeerFramed = Framed<TcpStream, LengthDelimitedCodec>;

/// The shared cluster secret (its bytes never show in `Debug`).
#[derive(Clone)]
pub struct ClusterSecret(Arc<[u8]>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// A secret of these bytes.
    ///
    /// # Errors
    ///
    /// A message if it is shorter than [`MIN_SECRET_BYTES`].
    pub fn new(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the cluster secret must be at least {MIN_SECRET_BYTES} bytes, not {}",
                bytes.len()
            ));
        }
        Ok(ClusterSecret(bytes.into()))
    }

    /// The secret in `path`, trailing newlines (`\n`, `\r\n`) ignored.
    ///
    /// # Errors
    ///
    /// A message naming the file if it cannot be read or is too short.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("reading the cluster secret {}: {e}", path.display()))?;
        let end = bytes
            .iter()
            .rposition(|b| *b != b'\n' && *b != b'\r')
            .map_or(0, |i| i + 1);
        Self::new(&bytes[..end]).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// HMAC takes keys of any length, so this is `None` never in practice.
    fn mac(&self, role: &[u8], client_nonce: &[u8], server_nonce: &[u8]) -> Option<Hmac<Sha256>> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).ok()?;
        mac.update(role);
        mac.update(client_nonce);
        mac.update(server_nonce);
        Some(mac)
    }

    /// The tag `role` sends for this pair of nonces.
    fn tag(
        &self,
        role: &[u8],
        client_nonce: &[u8],
        server_nonce: &[u8],
    ) -> std::io::Result<Vec<u8>> {
        let mac = self
            .mac(role, client_nonce, server_nonce)
            .ok_or_else(|| refused("the secret is not a valid HMAC key"))?;
        Ok(mac.finalize().into_bytes().to_vec())
    }

    /// Whether `tag` is `role`'s tag for these nonces (constant time).
    fn verify(&self, role: &[u8], client_nonce: &[u8], server_nonce: &[u8], tag: &[u8]) -> bool {
        self.mac(role, client_nonce, server_nonce)
            .is_some_and(|mac| mac.verify_slice(tag).is_ok())
    }
}

fn nonce() -> std::io::Result<[u8; NONCE_BYTES]> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(nonce)
}

fn refused(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!("peer authentication failed: {what}"),
    )
}

async fn next_frame(framed: &mut PeerFramed) -> std::io::Result<bytes::BytesMut> {
    framed
        .next()
        .await
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?
}

/// Runs `step` with the small handshake frame limit and the handshake
/// timeout, then restores the connection's frame limit.
async fn bounded<T>(
    framed: &mut PeerFramed,
    step: impl AsyncFnOnce(&mut PeerFramed) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let limit = framed.codec().max_frame_length();
    framed
        .codec_mut()
        .set_max_frame_length(HANDSHAKE_FRAME_BYTES);
    let result = match tokio::time::timeout(HANDSHAKE_TIMEOUT, step(framed)).await {
        Ok(result) => result,
        Err(_) => Err(refused("no handshake within the timeout")),
    };
    framed.codec_mut().set_max_frame_length(limit);
    result
}

/// The connecting side's handshake (module doc).
///
/// # Errors
///
/// `PermissionDenied` if the server does not prove the secret; I/O errors.
pub async fn client_handshake(
    framed: &mut PeerFramed,
    secret: &ClusterSecret,
) -> std::io::Result<()> {
    bounded(framed, async |framed: &mut PeerFramed| {
        let client_nonce = nonce()?;
        let hello = [MAGIC.as_slice(), &client_nonce].concat();
        framed.send(bytes::Bytes::from(hello)).await?;
        let challenge = next_frame(framed).await?;
        if challenge.len() != NONCE_BYTES + TAG_BYTES {
            return Err(refused("malformed server challenge"));
        }
        let (server_nonce, server_tag) = challenge.split_at(NONCE_BYTES);
        if !secret.verify(b"server", &client_nonce, server_nonce, server_tag) {
            return Err(refused("the server does not know the cluster secret"));
        }
        let tag = secret.tag(b"client", &client_nonce, server_nonce)?;
        framed.send(bytes::Bytes::from(tag)).await
    })
    .await
}

/// The accepting side's handshake (module doc).
///
/// # Errors
///
/// `PermissionDenied` if the client does not prove the secret; I/O errors.
pub async fn server_handshake(
    framed: &mut PeerFramed,
    secret: &ClusterSecret,
) -> std::io::Result<()> {
    bounded(framed, async |framed: &mut PeerFramed| {
        let hello = next_frame(framed).await?;
        let client_nonce = match hello.strip_prefix(MAGIC.as_slice()) {
            Some(nonce) if nonce.len() == NONCE_BYTES => nonce.to_vec(),
            _ => return Err(refused("not a peer handshake")),
        };
        let server_nonce = nonce()?;
        let tag = secret.tag(b"server", &client_nonce, &server_nonce)?;
        let challenge = [server_nonce.as_slice(), &tag].concat();
        framed.send(bytes::Bytes::from(challenge)).await?;
        let answer = next_frame(framed).await?;
        match secret.verify(b"client", &client_nonce, &server_nonce, &answer) {
            true => Ok(()),
            false => Err(refused("the client does not know the cluster secret")),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> ClusterSecret {
        ClusterSecret::new(text.as_bytes()).unwrap()
    }

    #[test]
    fn tags_verify_only_with_the_same_secret_role_and_nonces() {
        let (a, b) = (secret("0123456789abcdef"), secret("0123456789abcdeX"));
        let tag = a.tag(b"client", b"n1", b"n2").unwrap();
        assert!(a.verify(b"client", b"n1", b"n2", &tag));
        assert!(!b.verify(b"client", b"n1", b"n2", &tag));
        assert!(!a.verify(b"server", b"n1", b"n2", &tag));
        assert!(!a.verify(b"client", b"n1", b"n3", &tag));
        assert!(!a.verify(b"client", b"n1", b"n2", &tag[..31]));
    }

    #[test]
    fn short_secrets_are_refused_and_files_lose_trailing_newlines() {
        assert!(ClusterSecret::new(b"short").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "0123456789abcdef\r\n").unwrap();
        let from_file = ClusterSecret::from_file(&path).unwrap();
        let tag = from_file.tag(b"client", b"n1", b"n2").unwrap();
        assert!(secret("0123456789abcdef").verify(b"client", b"n1", b"n2", &tag));
        std::fs::write(&path, "0123456789\n\n\n\n\n\n\n").unwrap();
        assert!(ClusterSecret::from_file(&path).is_err());
        assert!(format!("{from_file:?}").find("0123").is_none());
    }
}
