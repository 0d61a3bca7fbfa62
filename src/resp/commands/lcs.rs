//! `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]`: the longest
//! common subsequence of two strings, its length, or the matching ranges,
//! with Redis 7's replies (the same dynamic program and the same walk back
//! from the end, so ties break the same way).
//!
//! The table has one cell per pair of positions; it is refused, before it
//! is allocated, above [`MAX_CELLS`] (64 MiB of cells).

use bytes::Bytes;

use super::{int_arg, syntax_error};
use crate::resp::reply::Reply;

/// The most cells (of 4 bytes) the table may have.
pub const MAX_CELLS: usize = 16 << 20;

/// LCS's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LcsOptions {
    pub len: bool,
    pub idx: bool,
    pub min_match_len: usize,
    pub with_match_len: bool,
}

/// Parses the options after the two keys.
pub fn parse_options(args: &[Bytes]) -> Result<LcsOptions, Reply> {
    let mut options = LcsOptions::default();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        match arg.to_ascii_lowercase().as_slice() {
            b"len" => options.len = true,
            b"idx" => options.idx = true,
            b"withmatchlen" => options.with_match_len = true,
            b"minmatchlen" => {
                let amount = args.get(i + 1).ok_or_else(syntax_error)?;
                let n = int_arg(amount).ok_or_else(super::not_an_integer)?;
                options.min_match_len = usize::try_from(n).unwrap_or(0);
                i += 1;
            }
            _ => return Err(syntax_error()),
        }
        i += 1;
    }
    if options.len && options.idx {
        return Err(Reply::err(
            "If you want both the length and indexes, please just use IDX.",
        ));
    }
    Ok(options)
}

/// The reply of LCS over `a` and `b`.
pub fn lcs(a: &[u8], b: &[u8], options: LcsOptions) -> Reply {
    let (rows, cols) = (a.len() + 1, b.len() + 1);
    if rows.checked_mul(cols).is_none_or(|cells| cells > MAX_CELLS) {
        return Reply::err(
            "Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        );
    }
    let mut table = vec![0u32; rows * cols];
    let at = |i: usize, j: usize| i * cols + j;
    for i in 1..rows {
        for j in 1..cols {
            table[at(i, j)] = if a[i - 1] == b[j - 1] {
                table[at(i - 1, j - 1)] + 1
            } else {
                table[at(i - 1, j)].max(table[at(i, j - 1)])
            };
        }
    }
    let length = table[at(rows - 1, cols - 1)] as usize;
    if options.len {
        return Reply::Integer(length as i64);
    }
    let walk = walk_back(a, b, length, &table, cols, options);
    if !options.idx {
        return Reply::Bulk(Bytes::from(walk.common));
    }
    Reply::Map(vec![
        (Reply::text("matches"), Reply::Array(walk.matches)),
        (Reply::text("len"), Reply::Integer(length as i64)),
    ])
}

struct Walk {
    common: Vec<u8>,
    matches: Vec<Reply>,
}

/// Walks the table back from the end: the common subsequence, and the
/// contiguous matching ranges, last first.
fn walk_back(
    a: &[u8],
    b: &[u8],
    length: usize,
    table: &[u32],
    cols: usize,
    options: LcsOptions,
) -> Walk {
    let at = |i: usize, j: usize| table[i * cols + j];
    let mut common = vec![0u8; length];
    let mut matches = Vec::new();
    let (mut i, mut j, mut idx) = (a.len(), b.len(), length);
    // The current range in a and b; None between ranges.
    let mut range: Option<(usize, usize, usize, usize)> = None;
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            common[idx - 1] = a[i - 1];
            range = match range {
                None => Some((i - 1, i - 1, j - 1, j - 1)),
                Some((a_start, a_end, b_start, b_end)) if a_start == i && b_start == j => {
                    Some((a_start - 1, a_end, b_start - 1, b_end))
                }
                other => {
                    emit = true;
                    other
                }
            };
            if range.is_some_and(|(a_start, _, b_start, _)| a_start == 0 || b_start == 0) {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            if at(i - 1, j) > at(i, j - 1) {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = range.is_some();
        }
        if let (true, Some((a_start, a_end, b_start, b_end))) = (emit, range) {
            let match_len = a_end - a_start + 1;
            if options.min_match_len == 0 || match_len >= options.min_match_len {
                let pair = |s: usize, e: usize| {
                    Reply::Array(vec![Reply::Integer(s as i64), Reply::Integer(e as i64)])
                };
                let mut entry = vec![pair(a_start, a_end), pair(b_start, b_end)];
                if options.with_match_len {
                    entry.push(Reply::Integer(match_len as i64));
                }
                matches.push(Reply::Array(entry));
            }
            range = None;
        }
    }
    Walk { common, matches }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(options: LcsOptions) -> LcsOptions {
        LcsOptions {
            idx: true,
            ..options
        }
    }

    #[test]
    fn the_subsequence_its_length_and_its_ranges() {
        let (a, b) = (b"ohmytext".as_slice(), b"mynewtext".as_slice());
        assert_eq!(
            lcs(a, b, LcsOptions::default()),
            Reply::Bulk(Bytes::from_static(b"mytext"))
        );
        let len = LcsOptions {
            len: true,
            ..LcsOptions::default()
        };
        assert_eq!(lcs(a, b, len), Reply::Integer(6));
        let pair = |s: i64, e: i64| Reply::Array(vec![Reply::Integer(s), Reply::Integer(e)]);
        let with_len = idx(LcsOptions {
            with_match_len: true,
            ..LcsOptions::default()
        });
        assert_eq!(
            lcs(a, b, with_len),
            Reply::Map(vec![
                (
                    Reply::text("matches"),
                    Reply::Array(vec![
                        Reply::Array(vec![pair(4, 7), pair(5, 8), Reply::Integer(4)]),
                        Reply::Array(vec![pair(2, 3), pair(0, 1), Reply::Integer(2)]),
                    ])
                ),
                (Reply::text("len"), Reply::Integer(6)),
            ])
        );
        let min = idx(LcsOptions {
            min_match_len: 4,
            ..LcsOptions::default()
        });
        let Reply::Map(fields) = lcs(a, b, min) else {
            panic!()
        };
        assert_eq!(
            fields[0].1,
            Reply::Array(vec![Reply::Array(vec![pair(4, 7), pair(5, 8)])])
        );
    }

    #[test]
    fn options_and_limits() {
        let args = |list: &[&str]| {
            list.iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect::<Vec<_>>()
        };
        assert!(parse_options(&args(&["LEN", "IDX"])).is_err());
        assert!(parse_options(&args(&["MINMATCHLEN"])).is_err());
        assert_eq!(
            parse_options(&args(&["idx", "minmatchlen", "3"]))
                .unwrap()
                .min_match_len,
            3
        );
        let big = vec![b'x'; 5000];
        assert!(lcs(&big, &big, LcsOptions::default()).is_error());
        assert_eq!(
            lcs(b"", b"abc", LcsOptions::default()),
            Reply::Bulk(Bytes::new())
        );
    }
}
