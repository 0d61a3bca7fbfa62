//! What the machine gives, measured in the same run as the engines so that
//! their figures can be compared with it: the load average, and the latency
//! of one durable write with no engine at all (a 4 KiB append and
//! fdatasync), the physical limit for a single durable writer.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::measure::{new_histogram, record};
use crate::workload::BenchResult;

/// Appends of 4 KiB measured by [`raw_fdatasync`].
const RAW_SYNCS: u64 = 300;

/// `/proc/loadavg`'s first three fields.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// p50 and p99 in microseconds of a 4 KiB append followed by fdatasync, in
/// a file created in `dir` (removed afterwards).
pub fn raw_fdatasync(dir: &Path) -> BenchResult<(f64, f64)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("raw-fdatasync");
    let mut file = std::fs::File::create(&path)?;
    let block = vec![0x5a_u8; 4096];
    let mut histogram = new_histogram();
    for _ in 0..RAW_SYNCS {
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        record(&mut histogram, start.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    let micros = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok((micros(0.5), micros(0.99)))
}
