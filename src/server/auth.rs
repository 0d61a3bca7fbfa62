//! Access control: the shared token (`--auth-token-file`), the per-connection
//! gate every request passes, and the refusal to listen on a non-loopback
//! address with no token (like Redis's protected mode).
//!
//! Every listener (the protobuf sessions here, and any other protocol front
//! end) keeps one [`AuthGate`] per connection: [`AuthGate::is_open`] before
//! serving a request, [`AuthGate::attempt`] for the protocol's AUTH command.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// Wrong tokens one connection may send before it is closed: enough for a
/// typo, too few to guess with.
pub const MAX_AUTH_FAILURES: u32 = 3;

/// The token clients must present. Its bytes never appear in `Debug`
/// output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(Arc<[u8]>);

impl AuthToken {
    /// A token of `bytes`; `None` if empty (an empty token protects nothing).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<AuthToken> {
        let bytes: Vec<u8> = bytes.into();
        (!bytes.is_empty()).then(|| AuthToken(bytes.into()))
    }

    /// True if `candidate` is this token. The time taken depends on the
    /// lengths only, not on where the bytes differ.
    pub fn verify(&self, candidate: &[u8]) -> bool {
        constant_time_eq(&self.0, candidate)
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthToken(<{} bytes>)", self.0.len())
    }
}

/// Compares `secret` with `candidate` without an early exit: every byte of
/// `secret` is visited whatever `candidate` holds.
pub fn constant_time_eq(secret: &[u8], candidate: &[u8]) -> bool {
    let mut diff = u8::from(secret.len() != candidate.len());
    for (i, s) in secret.iter().enumerate() {
        let c = candidate.get(i).copied().unwrap_or(!*s);
        diff |= std::hint::black_box(s ^ c);
    }
    diff == 0
}

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file cannot be read.
    #[error("cannot read token file {path}: {source}")]
    Read { path: String, source: io::Error },
    /// The file holds nothing but a line end.
    #[error("token file {path} is empty")]
    Empty { path: String },
    /// The token is not UTF-8 (`Auth.token` is a protobuf string).
    #[error("token file {path} is not UTF-8 text")]
    NotUtf8 { path: String },
}

/// A token read from a file, and a warning to log if the file is readable
/// by group or others.
#[derive(Debug)]
pub struct LoadedToken {
    pub token: AuthToken,
    pub warning: Option<String>,
}

/// Reads the token in `path` (for the server and the client alike): its
/// text with trailing `\n`/`\r\n` removed.
///
/// # Errors
/// The file cannot be read, is not UTF-8, or the token is empty.
pub fn read_token(path: &Path) -> Result<String, TokenFileError> {
    let shown = || path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TokenFileError::Read {
        path: shown(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| TokenFileError::NotUtf8 { path: shown() })?;
    let token = text.trim_end_matches(['\n', '\r']);
    if token.is_empty() {
        return Err(TokenFileError::Empty { path: shown() });
    }
    Ok(token.to_string())
}

/// Reads the server's token in `path` (see [`read_token`]) and checks who
/// else may read the file.
///
/// # Errors
/// As [`read_token`].
pub fn read_token_file(path: &Path) -> Result<LoadedToken, TokenFileError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display().to_string();
    let text = read_token(path)?;
    let mode = std::fs::metadata(path)
        .map_err(|source| TokenFileError::Read {
            path: shown.clone(),
            source,
        })?
        .permissions()
        .mode();
    let token = AuthToken::new(text).ok_or(TokenFileError::Empty {
        path: shown.clone(),
    })?;
    let warning = (mode & 0o044 != 0).then(|| {
        format!("token file {shown} is readable by group or others (mode {mode:o}); chmod 600 it")
    });
    Ok(LoadedToken { token, warning })
}

/// Refuses to serve `ip` when it is reachable from other hosts and no token
/// protects it, unless `insecure` says so on purpose.
///
/// # Errors
/// The one-line reason, for stderr.
pub fn check_exposure(ip: IpAddr, has_token: bool, insecure: bool) -> Result<(), String> {
    if ip.is_loopback() || has_token || insecure {
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {ip} without --auth-token-file: anyone who can reach it \
         could read and change the data (pass --insecure to do it anyway)"
    ))
}

/// One connection's authentication state.
#[derive(Debug, Clone)]
pub struct AuthGate {
    /// The token to present; `None` when the server needs none.
    token: Option<AuthToken>,
    authenticated: bool,
    failures: u32,
}

/// What an AUTH attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The token is right (or none is configured): the gate is open.
    Accepted,
    /// Wrong token: the gate is closed; answer UNAUTHENTICATED.
    Refused,
    /// Wrong token, [`MAX_AUTH_FAILURES`] times: answer UNAUTHENTICATED and
    /// close the connection.
    TooManyFailures,
}

impl AuthGate {
    /// A gate for a new connection; open from the start if `token` is `None`.
    pub fn new(token: Option<AuthToken>) -> AuthGate {
        AuthGate {
            authenticated: token.is_none(),
            token,
            failures: 0,
        }
    }

    /// True once requests may be served.
    pub fn is_open(&self) -> bool {
        self.authenticated
    }

    /// Checks `candidate`. A wrong token closes a gate that was open.
    pub fn attempt(&mut self, candidate: &[u8]) -> AuthOutcome {
        let Some(token) = &self.token else {
            return AuthOutcome::Accepted;
        };
        self.authenticated = token.verify(candidate);
        if self.authenticated {
            return AuthOutcome::Accepted;
        }
        self.failures += 1;
        if self.failures >= MAX_AUTH_FAILURES {
            AuthOutcome::TooManyFailures
        } else {
            AuthOutcome::Refused
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"secret", b""));
        assert!(!constant_time_eq(b"\0", b""));
    }

    #[test]
    fn gate() {
        let mut open = AuthGate::new(None);
        assert!(open.is_open());
        assert_eq!(open.attempt(b"anything"), AuthOutcome::Accepted);
        let mut gate = AuthGate::new(AuthToken::new("t0k"));
        assert!(!gate.is_open());
        assert_eq!(gate.attempt(b"t0k"), AuthOutcome::Accepted);
        assert!(gate.is_open());
        assert_eq!(gate.attempt(b"no"), AuthOutcome::Refused);
        assert!(!gate.is_open());
        assert_eq!(gate.attempt(b"no"), AuthOutcome::Refused);
        assert_eq!(gate.attempt(b"no"), AuthOutcome::TooManyFailures);
    }

    #[test]
    fn exposure() {
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(check_exposure(local, false, false).is_ok());
        assert!(check_exposure("::1".parse().unwrap(), false, false).is_ok());
        assert!(check_exposure(any, false, false).is_err());
        assert!(check_exposure(any, true, false).is_ok());
        assert!(check_exposure(any, false, true).is_ok());
    }

    #[test]
    fn token_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc\r\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = read_token_file(&path).unwrap();
        assert!(loaded.token.verify(b"abc"));
        assert!(loaded.warning.is_none());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_token_file(&path).unwrap().warning.is_some());
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            read_token_file(&path),
            Err(TokenFileError::Empty { .. })
        ));
        assert!(read_token_file(&dir.path().join("missing")).is_err());
        assert!(!format!("{:?}", loaded.token).contains("abc"));
    }
}
