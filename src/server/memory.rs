//! The memory the server may use, and the default it sizes from it: the
//! block cache's.
//!
//! A library that opens a database keeps [`Options`](crate::Options)'s
//! fixed 32 MiB block cache: it shares its process with its embedder. The
//! server is the main thing running where it runs, and gets decide its
//! speed once the data outgrows the cache: with 632k keys of 100-byte
//! values (73 MB), 32 MiB missed 70 % of block lookups and pipelined gets
//! ran at half the rate of a cache that held the data (docs/BENCHMARKS.md,
//! session 18). So `run_server` without `--block-cache-bytes` takes
//! [`BLOCK_CACHE_SHARE`] of the memory it may use, never less than the
//! library's default. A cache only grows as blocks are read twice, so an
//! idle or small database holds little of it; its slot table (about 24
//! bytes per 2 KiB of capacity) is made at start.
//!
//! "The memory it may use" is the machine's (`MemTotal` in
//! `/proc/meminfo`), or the limit of the process's cgroup when that is
//! lower (a container: cgroup v2's `memory.max`, v1's
//! `memory.limit_in_bytes`). Where neither can be read the library's
//! default is kept.

use std::fs;

use crate::Options;

/// The share of usable memory the server's block cache takes by default.
pub const BLOCK_CACHE_SHARE: u64 = 16;

/// The default block cache of a server that may use `memory` bytes (`None`:
/// unknown): `memory / BLOCK_CACHE_SHARE`, at least the library's default
/// and at most [`MAX_BLOCK_CACHE_BYTES`](crate::options::MAX_BLOCK_CACHE_BYTES).
pub fn default_block_cache_bytes(memory: Option<u64>) -> usize {
    let library = Options::new("").block_cache_bytes;
    let Some(memory) = memory else {
        return library;
    };
    let share = usize::try_from(memory / BLOCK_CACHE_SHARE).unwrap_or(usize::MAX);
    share.clamp(library, crate::options::MAX_BLOCK_CACHE_BYTES)
}

/// The bytes of memory this process may use: the machine's, or its
/// cgroup's limit if lower. `None` if the machine's cannot be read.
pub fn usable_memory_bytes() -> Option<u64> {
    let machine = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_bytes(&text))?;
    let cgroup = cgroup_limit_paths()
        .into_iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .filter_map(|text| cgroup_limit_bytes(&text))
        .min();
    Some(cgroup.map_or(machine, |limit| limit.min(machine)))
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?;
    let kib = line.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
    kib.checked_mul(1024)
}

/// A cgroup memory limit file's value in bytes; `None` for `max` (no limit)
/// or anything unreadable.
fn cgroup_limit_bytes(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|&bytes| bytes > 0)
}

/// Where this process's cgroup memory limit may be written: its own
/// cgroup v2 directory (from `/proc/self/cgroup`), the v2 root, and v1's
/// memory controller.
fn cgroup_limit_paths() -> Vec<String> {
    let mut paths = Vec::new();
    if let Ok(text) = fs::read_to_string("/proc/self/cgroup") {
        paths.extend(own_cgroup_v2(&text).map(|dir| format!("/sys/fs/cgroup{dir}/memory.max")));
    }
    paths.push("/sys/fs/cgroup/memory.max".to_string());
    paths.push("/sys/fs/cgroup/memory/memory.limit_in_bytes".to_string());
    paths
}

/// The cgroup v2 path of a `/proc/self/cgroup` text (its `0::PATH` line),
/// unless it is the root.
fn own_cgroup_v2(text: &str) -> Option<&str> {
    let path = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    let path = path.trim();
    (path.starts_with('/') && path != "/" && !path.contains("..")).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_total() {
        let text = "MemTotal:       24568040 kB\nMemFree:        1000 kB\n";
        assert_eq!(mem_total_bytes(text), Some(24_568_040 * 1024));
        assert_eq!(mem_total_bytes("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total_bytes("MemTotal: lots kB\n"), None);
    }

    #[test]
    fn reads_cgroup_limits() {
        assert_eq!(cgroup_limit_bytes("2147483648\n"), Some(2 << 30));
        assert_eq!(cgroup_limit_bytes("max\n"), None);
        assert_eq!(cgroup_limit_bytes("0\n"), None);
        assert_eq!(
            own_cgroup_v2("0::/system.slice/naivekv.service\n"),
            Some("/system.slice/naivekv.service")
        );
        assert_eq!(own_cgroup_v2("0::/\n"), None);
        assert_eq!(own_cgroup_v2("12:memory:/docker/abc\n"), None);
        assert_eq!(own_cgroup_v2("0::/a/../../etc\n"), None);
    }

    #[test]
    fn block_cache_is_a_share_of_memory_within_bounds() {
        let library = Options::new("").block_cache_bytes;
        assert_eq!(default_block_cache_bytes(None), library);
        assert_eq!(default_block_cache_bytes(Some(24 << 30)), 3 << 29);
        // A small machine or container keeps the library's default.
        assert_eq!(default_block_cache_bytes(Some(256 << 20)), library);
        assert_eq!(
            default_block_cache_bytes(Some(u64::MAX)),
            crate::options::MAX_BLOCK_CACHE_BYTES
        );
    }

    #[test]
    fn this_machine_has_usable_memory() {
        let memory = usable_memory_bytes();
        assert!(memory.is_some_and(|bytes| bytes >= 64 << 20), "{memory:?}");
    }
}
