//! AUTH for the Redis listener: the same token as the native protocol
//! (`--auth-token-file`), checked per connection by a
//! [`crate::server::auth::AuthGate`]. Until a connection authenticates, every
//! command but AUTH, HELLO ... AUTH and QUIT answers `-NOAUTH`, as Redis
//! does. A pure function of the request and the gate, so it is unit-tested
//! without a socket.

use bytes::Bytes;

use super::reply::Reply;
use crate::server::auth::{AuthGate, AuthOutcome};

/// What the gate decided about one request.
#[derive(Debug, PartialEq)]
pub enum Gated {
    /// Serve it as usual.
    Pass,
    /// Answer this instead.
    Answer(Reply),
    /// Answer this, then close the connection (too many wrong tokens).
    AnswerAndClose(Reply),
}

const NOAUTH: &str = "NOAUTH Authentication required.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const NO_PASSWORD_SET: &str = "ERR AUTH <password> called without any password configured \
for the default user. Are you sure your configuration is correct?";

/// Checks `args` against the connection's gate; `configured` says whether the
/// server has a token at all.
pub fn check(args: &[Bytes], gate: &mut AuthGate, configured: bool) -> Gated {
    let name: &[u8] = args.first().map_or(b"", |n| n);
    let is = |command: &str| name.eq_ignore_ascii_case(command.as_bytes());
    if is("auth") {
        return auth(args, gate, configured);
    }
    if is("hello") {
        return match hello_password(args) {
            Some(password) => match attempt(gate, password) {
                Gated::Pass => Gated::Pass,
                refused => refused,
            },
            None if gate.is_open() => Gated::Pass,
            None => Gated::Answer(Reply::Error(NOAUTH.into())),
        };
    }
    if gate.is_open() || is("quit") {
        Gated::Pass
    } else {
        Gated::Answer(Reply::Error(NOAUTH.into()))
    }
}

/// `AUTH password` or `AUTH username password` (the user must be `default`).
fn auth(args: &[Bytes], gate: &mut AuthGate, configured: bool) -> Gated {
    let password = match args {
        // As Redis: with no password set, the default user takes any (but
        // a lone password is taken for a mistake).
        [_, _] if !configured => return Gated::Answer(Reply::Error(NO_PASSWORD_SET.into())),
        [_, user, _] if !configured && user.eq_ignore_ascii_case(b"default") => {
            return Gated::Answer(Reply::ok());
        }
        [_, password] => password,
        [_, user, password] if user.eq_ignore_ascii_case(b"default") => password,
        [_, _, _] => return Gated::Answer(Reply::Error(WRONGPASS.into())),
        [_, _, _, _, ..] => return Gated::Answer(Reply::err("syntax error")),
        _ => {
            let message = "ERR wrong number of arguments for 'auth' command";
            return Gated::Answer(Reply::Error(message.into()));
        }
    };
    match attempt(gate, password) {
        Gated::Pass => Gated::Answer(Reply::ok()),
        refused => refused,
    }
}

fn attempt(gate: &mut AuthGate, password: &[u8]) -> Gated {
    match gate.attempt(password) {
        AuthOutcome::Accepted => Gated::Pass,
        AuthOutcome::Refused => Gated::Answer(Reply::Error(WRONGPASS.into())),
        AuthOutcome::TooManyFailures => Gated::AnswerAndClose(Reply::Error(WRONGPASS.into())),
    }
}

/// The password of `HELLO [protover] AUTH username password ...`, if given.
fn hello_password(args: &[Bytes]) -> Option<&[u8]> {
    let at = args.iter().position(|a| a.eq_ignore_ascii_case(b"auth"))?;
    args.get(at + 2).map(|p| p.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::auth::AuthToken;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn gate() -> AuthGate {
        AuthGate::new(AuthToken::new("s3cret"))
    }

    #[test]
    fn commands_wait_for_auth() {
        let mut gate = gate();
        assert_eq!(
            check(&args(&["GET", "k"]), &mut gate, true),
            Gated::Answer(Reply::Error(NOAUTH.into()))
        );
        assert_eq!(check(&args(&["QUIT"]), &mut gate, true), Gated::Pass);
        assert_eq!(
            check(&args(&["AUTH", "s3cret"]), &mut gate, true),
            Gated::Answer(Reply::ok())
        );
        assert_eq!(check(&args(&["GET", "k"]), &mut gate, true), Gated::Pass);
    }

    #[test]
    fn wrong_passwords_are_refused_then_the_connection_closes() {
        let mut gate = gate();
        let wrong = Gated::Answer(Reply::Error(WRONGPASS.into()));
        assert_eq!(check(&args(&["AUTH", "nope"]), &mut gate, true), wrong);
        assert_eq!(
            check(&args(&["AUTH", "default", "nope"]), &mut gate, true),
            wrong
        );
        let closing = check(&args(&["AUTH", "nope"]), &mut gate, true);
        assert!(matches!(closing, Gated::AnswerAndClose(_)), "{closing:?}");
    }

    #[test]
    fn hello_can_carry_the_password() {
        let mut gate = gate();
        let hello = args(&["HELLO", "3", "AUTH", "default", "s3cret"]);
        assert_eq!(check(&hello, &mut gate, true), Gated::Pass);
        assert!(gate.is_open());
        let mut gate = self::gate();
        assert_eq!(
            check(&args(&["HELLO", "3"]), &mut gate, true),
            Gated::Answer(Reply::Error(NOAUTH.into()))
        );
    }

    #[test]
    fn auth_without_a_configured_token_answers_as_redis() {
        let mut open = AuthGate::new(None);
        assert_eq!(check(&args(&["GET", "k"]), &mut open, false), Gated::Pass);
        let answer = check(&args(&["AUTH", "x"]), &mut open, false);
        assert_eq!(answer, Gated::Answer(Reply::Error(NO_PASSWORD_SET.into())));
        let answer = check(&args(&["AUTH", "default", "x"]), &mut open, false);
        assert_eq!(answer, Gated::Answer(Reply::ok()));
        let answer = check(&args(&["AUTH", "alice", "x"]), &mut open, false);
        assert_eq!(answer, Gated::Answer(Reply::Error(WRONGPASS.into())));
        let answer = check(&args(&["AUTH", "a", "b", "c"]), &mut open, false);
        assert_eq!(answer, Gated::Answer(Reply::err("syntax error")));
    }
}
