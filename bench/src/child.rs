//! A child process: one engine, one workload (or the load before it), the
//! report printed as JSON on stdout. Running each engine in its own process
//! keeps peak RSS and /proc/self/io counts from mixing.

use std::path::Path;
use std::sync::Arc;

use crate::args::{Args, EngineKind, Workload};
use crate::driver::{self, BlockingEngine};
use crate::engines::{fjall::Fjall, naive, sled::Sled};
use crate::keys::Values;
use crate::measure::{Report, directory_bytes, peak_rss_bytes, process_write_bytes};
use crate::settle;
use crate::workload::{BenchResult, Spec};

/// Runs `engine` on `workload` in the database directory `dir`.
pub fn run(args: &Args, engine: EngineKind, workload: Workload, dir: &Path) -> BenchResult<Report> {
    if std::env::var_os("RUST_LOG").is_some() {
        // The engine's own log (NaiveKV's and fjall's flushes and
        // compactions) on this child's stderr, which the parent passes on.
        let _ = env_logger::try_init();
    }
    let spec = Spec {
        workload,
        num: args.num,
        ops: args.measured_ops(workload),
        threads: args.threads.max(1),
        value_size: args.value_size,
        distribution: args.distribution,
        value_kind: args.value_kind,
    };
    let mut report = match engine {
        EngineKind::Naivekv => {
            let in_flight = args.naive_in_flight;
            let concurrency = naive::Concurrency::Threads { in_flight };
            naive::run_child(dir, args, spec, concurrency)?
        }
        EngineKind::Naivekv1sys => {
            let concurrency = naive::Concurrency::OneSystem;
            naive::run_child(dir, args, spec, concurrency)?
        }
        EngineKind::Fjall => blocking(Arc::new(Fjall::open(dir, args.sync)?), dir, spec, args)?,
        EngineKind::Sled => blocking(Arc::new(Sled::open(dir, args.sync)?), dir, spec, args)?,
    };
    report.engine = match (engine, args.compression) {
        (EngineKind::Naivekv | EngineKind::Naivekv1sys, Some(c)) => {
            format!("{}+{c}", engine.name())
        }
        _ => engine.name().to_string(),
    };
    report.value_kind = args.value_kind.name().to_string();
    report.workload = workload.name().to_string();
    report.sync = format!("{:?}", args.sync).to_lowercase();
    report.threads = match engine {
        EngineKind::Naivekv1sys => 1,
        _ => spec.threads,
    };
    report.in_flight_per_thread = match engine {
        EngineKind::Naivekv => args.naive_in_flight.max(1),
        EngineKind::Naivekv1sys => spec.threads,
        EngineKind::Fjall | EngineKind::Sled => 1,
    };
    report.logical_bytes_written = spec.logical_bytes_written();
    report.logical_bytes_live = spec.logical_bytes_live();
    report.peak_rss_bytes = peak_rss_bytes();
    Ok(report)
}

fn blocking(
    engine: Arc<dyn BlockingEngine>,
    dir: &Path,
    spec: Spec,
    args: &Args,
) -> BenchResult<Report> {
    let settle_deadline = std::time::Duration::from_secs(args.settle_secs);
    if args.prefill {
        let order = args.load_random.then(|| spec.permutation());
        let values = Values::new(spec.value_size, spec.value_kind);
        driver::prefill(&*engine, spec.num, &values, order.as_ref())?;
        let settled = settle::wait(settle_deadline, || engine.idle())?;
        eprintln!("loaded; settled {settled:?}");
        return Ok(Report::default());
    }
    let settle_before = settle::wait(settle_deadline, || engine.idle())?;
    let written_before = process_write_bytes();
    let label = format!(
        "{} {}",
        args.engine.map_or("?", |e| e.name()),
        spec.workload.name()
    );
    let mut report = driver::run(engine.clone(), spec, label)?;
    engine.flush()?;
    report.settle_after = settle::wait(settle_deadline, || engine.idle())?;
    report.settle_before = settle_before;
    report.engine_stats = engine.gauges();
    drop(engine);
    report.disk_bytes_written = process_write_bytes() - written_before;
    report.disk_bytes_used = directory_bytes(dir);
    Ok(report)
}
