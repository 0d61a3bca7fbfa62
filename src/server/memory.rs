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
//! library's default and at most [`MAX_DEFAULT_BLOCK_CACHE_BYTES`]. A cache
//! only grows as blocks are read twice, so an idle or small database holds
//! little of it; but its slot table (about 24 bytes per 2 KiB of capacity)
//! is made at start: 26 MB of resident memory at 1.5 GiB, 199 MB and 0.12 s
//! at 16 GiB, 770 MB and 0.4 s at 64 GiB. The cap keeps an idle server on
//! a large machine near 100 MB; a larger cache is a flag away.
//!
//! "The memory it may use" is the machine's (`MemTotal` in
//! `/proc/meminfo`), or the lowest memory limit of the process's cgroup and
//! its parents when that is lower (a container, a systemd slice): cgroup
//! v2's `memory.max` from the process's own directory up to the root, and
//! cgroup v1's `hierarchical_memory_limit` (which counts the parents) and
//! `memory.limit_in_bytes`, in its own directory and at the controller's
//! root. A file that cannot be read is skipped; where `MemTotal` cannot be
//! read either, the library's default is kept.

use std::fs;

use crate::Options;

/// The share of usable memory the server's block cache takes by default.
pub const BLOCK_CACHE_SHARE: u64 = 16;
/// The largest block cache the server takes by default: 8 GiB.
pub const MAX_DEFAULT_BLOCK_CACHE_BYTES: usize = 8 << 30;

/// Where the cgroup file systems are mounted (the usual place; a host that
/// mounts them elsewhere is sized from `MemTotal`).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The default block cache of a server that may use `memory` bytes (`None`:
/// unknown): `memory / BLOCK_CACHE_SHARE`, at least the library's default
/// and at most [`MAX_DEFAULT_BLOCK_CACHE_BYTES`].
pub fn default_block_cache_bytes(memory: Option<u64>) -> usize {
    let library = Options::new("").block_cache_bytes;
    let Some(memory) = memory else {
        return library;
    };
    let share = usize::try_from(memory / BLOCK_CACHE_SHARE).unwrap_or(usize::MAX);
    share.clamp(library, MAX_DEFAULT_BLOCK_CACHE_BYTES)
}

/// The bytes of memory this process may use: the machine's, or its
/// cgroups' lowest limit if lower. `None` if neither can be read.
pub fn usable_memory_bytes() -> Option<u64> {
    let machine = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_bytes(&text));
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let limits = cgroup_limit_files(&own)
        .into_iter()
        .filter_map(|(path, read)| fs::read_to_string(path).ok().and_then(|text| read(&text)));
    machine.into_iter().chain(limits).min()
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
/// or anything unreadable. (v1's "no limit" is a number near 2^63, which
/// the machine's memory is always below.)
fn limit_bytes(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|&bytes| bytes > 0)
}

/// The `hierarchical_memory_limit` line of a cgroup v1 `memory.stat`.
fn hierarchical_limit_bytes(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("hierarchical_memory_limit "))
        .and_then(limit_bytes)
}

/// How a limit file is read.
type ReadLimit = fn(&str) -> Option<u64>;

/// The files that may hold a memory limit on this process, given its
/// `/proc/self/cgroup`, each with how to read it.
fn cgroup_limit_files(own: &str) -> Vec<(String, ReadLimit)> {
    let mut files: Vec<(String, ReadLimit)> = Vec::new();
    // v2: the process's directory and each parent up to the root.
    let mut dir = cgroup_path(own, |controllers| controllers.is_empty()).unwrap_or("");
    loop {
        files.push((format!("{CGROUP_ROOT}{dir}/memory.max"), limit_bytes));
        match dir.rfind('/') {
            Some(parent) => dir = &dir[..parent],
            None => break,
        }
    }
    // v1: the memory controller's directory of the process, and its root.
    let memory = cgroup_path(own, |controllers| {
        controllers.split(',').any(|c| c == "memory")
    });
    for dir in memory.into_iter().chain([""]) {
        let base = format!("{CGROUP_ROOT}/memory{dir}");
        files.push((format!("{base}/memory.stat"), hierarchical_limit_bytes));
        files.push((format!("{base}/memory.limit_in_bytes"), limit_bytes));
    }
    files
}

/// The path of the `/proc/self/cgroup` line (`ID:CONTROLLERS:PATH`) whose
/// controllers `pick` takes, without a trailing `/` (the root is ""); `None`
/// if there is none or its path is not a plain absolute one.
fn cgroup_path(own: &str, pick: impl Fn(&str) -> bool) -> Option<&str> {
    let path = own.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        pick(controllers).then_some(path.trim())
    })?;
    let plain = path.starts_with('/') && !path.split('/').any(|part| part == "..");
    plain.then(|| path.trim_end_matches('/'))
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
        assert_eq!(limit_bytes("2147483648\n"), Some(2 << 30));
        assert_eq!(limit_bytes("max\n"), None);
        assert_eq!(limit_bytes("0\n"), None);
        let stat = "cache 0\nhierarchical_memory_limit 1073741824\nrss 5\n";
        assert_eq!(hierarchical_limit_bytes(stat), Some(1 << 30));
        assert_eq!(hierarchical_limit_bytes("cache 0\n"), None);
    }

    fn paths(own: &str) -> Vec<String> {
        cgroup_limit_files(own)
            .into_iter()
            .map(|(path, _)| path)
            .collect()
    }

    #[test]
    fn every_v2_parent_is_asked() {
        assert_eq!(
            paths("0::/system.slice/naivekv.service\n"),
            [
                "/sys/fs/cgroup/system.slice/naivekv.service/memory.max",
                "/sys/fs/cgroup/system.slice/memory.max",
                "/sys/fs/cgroup/memory.max",
                "/sys/fs/cgroup/memory/memory.stat",
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            ]
        );
        // The root, and a path that climbs out, ask the root only.
        for own in ["0::/\n", "0::/a/../../etc\n", ""] {
            assert_eq!(paths(own)[0], "/sys/fs/cgroup/memory.max", "{own:?}");
            assert_eq!(paths(own).len(), 3, "{own:?}");
        }
    }

    #[test]
    fn the_v1_memory_controller_is_found_among_others() {
        let own = "12:cpu,cpuacct:/x\n4:memory:/docker/abc\n0::/\n";
        let files = paths(own);
        assert!(files.contains(&"/sys/fs/cgroup/memory/docker/abc/memory.stat".to_string()));
        assert!(
            files.contains(&"/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes".to_string())
        );
        let combined = "7:memory,hugetlb:/slice\n";
        assert!(paths(combined).contains(&"/sys/fs/cgroup/memory/slice/memory.stat".to_string()));
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
            MAX_DEFAULT_BLOCK_CACHE_BYTES
        );
        assert_eq!(default_block_cache_bytes(Some(1 << 40)), 8 << 30);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_has_usable_memory() {
        let memory = usable_memory_bytes();
        assert!(memory.is_some_and(|bytes| bytes >= 64 << 20), "{memory:?}");
    }
}
