//! Glob patterns as Redis matches them (`KEYS`, `SCAN MATCH`, `CONFIG GET`):
//! `*` any run of bytes, `?` one byte, `[abc]`, `[a-z]`, `[^a]` a class
//! (an unclosed class ends with the pattern), `\x` the byte `x` literally.
//! Pure functions.

/// One element of a parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Byte(u8),
    AnyOne,
    AnyRun,
    /// The byte ranges of a class, and whether it is negated.
    Class(Vec<(u8, u8)>, bool),
}

/// True if `text` matches `pattern`.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let tokens = parse(pattern);
    // Two pointers with one backtrack point, at the last `*`: linear in the
    // common case, at worst pattern length times text length.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::AnyRun) => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(token) if one(token, text[t]) => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    tokens[p..].iter().all(|token| *token == Token::AnyRun)
}

/// The bytes every match starts with: the pattern up to its first `*`, `?`
/// or class, escapes resolved. Lets a scan read only that key range.
pub fn literal_prefix(pattern: &[u8]) -> Vec<u8> {
    parse(pattern)
        .into_iter()
        .map_while(|token| match token {
            Token::Byte(b) => Some(b),
            _ => None,
        })
        .collect()
}

/// Whether a one-byte token matches `byte`.
fn one(token: &Token, byte: u8) -> bool {
    match token {
        Token::Byte(b) => *b == byte,
        Token::AnyOne => true,
        Token::AnyRun => false,
        Token::Class(ranges, negated) => {
            ranges.iter().any(|&(lo, hi)| lo <= byte && byte <= hi) != *negated
        }
    }
}

fn parse(pattern: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut i = 0;
    while let Some(&c) = pattern.get(i) {
        i += 1;
        let token = match c {
            b'*' if tokens.last() == Some(&Token::AnyRun) => continue,
            b'*' => Token::AnyRun,
            b'?' => Token::AnyOne,
            b'\\' if i < pattern.len() => {
                i += 1;
                Token::Byte(pattern[i - 1])
            }
            b'[' => {
                let (token, used) = class(&pattern[i..]);
                i += used;
                token
            }
            other => Token::Byte(other),
        };
        tokens.push(token);
    }
    tokens
}

/// Parses a class after its `[`; returns it and the bytes used, `]`
/// included.
fn class(rest: &[u8]) -> (Token, usize) {
    let negated = rest.first() == Some(&b'^');
    let mut i = usize::from(negated);
    let mut ranges = Vec::new();
    while let Some(&c) = rest.get(i) {
        i += 1;
        match c {
            b']' => break,
            b'\\' if i < rest.len() => {
                ranges.push((rest[i], rest[i]));
                i += 1;
            }
            // As Redis: `-` makes a range whenever a byte follows it, even
            // `]` (`[a-]` is the range from `]` to `a`, and the class goes on).
            lo if rest.get(i) == Some(&b'-') && rest.get(i + 1).is_some() => {
                let hi = rest[i + 1];
                ranges.push((lo.min(hi), lo.max(hi)));
                i += 2;
            }
            b => ranges.push((b, b)),
        }
    }
    (Token::Class(ranges, negated), i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        matches(pattern.as_bytes(), text.as_bytes())
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h*llo", "hllo"));
        assert!(m("h*llo", "heeeello"));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(!m("*a*b", "xxaxxbxxc"));
        assert!(m("a**b", "ab"));
        assert!(!m("abc", "abcd"));
        assert!(!m("abcd", "abc"));
    }

    #[test]
    fn classes_negation_ranges_escapes() {
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"));
        assert!(!m("h[a-b]llo", "hcllo"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("[\\]]", "]"));
        assert!(m("x[ab", "xa"));
        assert!(m("[a-]", "a"));
        assert!(m("[a-]", "]"));
        assert!(!m("[a-]", "-"));
        assert!(!m("h[a-]llo", "hallo"));
        assert!(m("h[a-]llo", "hl"));
    }

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix(b"user:*"), b"user:");
        assert_eq!(literal_prefix(b"a\\*b?"), b"a*b");
        assert_eq!(literal_prefix(b"*x"), b"");
        assert_eq!(literal_prefix(b"[ab]c"), b"");
    }
}
