//! SVG charts of a sweep, drawn with plotters' SVG backend (text is written
//! as SVG `<text>`, so no font files or system libraries are needed).
//!
//! - Several sizes: per workload, ops/s against data size and p99 against
//!   data size (log-scale size axis), one line per engine:
//!   `<name>-<workload>-ops.svg`, `<name>-<workload>-p99.svg`.
//! - One size: ops/s and p99 of every workload side by side, one bar per
//!   engine: `<name>-ops.svg`, `<name>-p99.svg`.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::sweep::{SizedReport, size_label, workloads_of};
use crate::workload::BenchResult;

/// A figure charted, read from a report.
#[derive(Debug, Clone, Copy)]
enum Metric {
    OpsPerSec,
    P99,
}

impl Metric {
    fn of(self, r: &SizedReport) -> f64 {
        match self {
            Metric::OpsPerSec => r.report.ops_per_sec,
            Metric::P99 => r.report.p99_us,
        }
    }
    fn file_tag(self) -> &'static str {
        match self {
            Metric::OpsPerSec => "ops",
            Metric::P99 => "p99",
        }
    }
    fn axis(self) -> &'static str {
        match self {
            Metric::OpsPerSec => "ops/s",
            Metric::P99 => "p99 latency (us, log scale)",
        }
    }
    /// Latencies span microseconds to tens of milliseconds between engines:
    /// they are drawn on a log scale (log10 of the value on a linear axis).
    fn plotted(self, r: &SizedReport) -> f64 {
        match self {
            Metric::OpsPerSec => self.of(r),
            Metric::P99 => self.of(r).max(1.0).log10(),
        }
    }
    /// The plotted range for the values of `rows`.
    fn range<'a>(self, rows: impl Iterator<Item = &'a SizedReport>) -> std::ops::Range<f64> {
        let plotted: Vec<f64> = rows.map(|r| self.plotted(r)).collect();
        let top = plotted.iter().copied().fold(0.0, f64::max);
        match self {
            Metric::OpsPerSec => 0.0..(top * 1.15).max(1.0),
            Metric::P99 => {
                let low = plotted.iter().copied().fold(f64::INFINITY, f64::min);
                low.floor().min(top)..top.ceil().max(low.floor() + 1.0) + 0.3
            }
        }
    }
    /// The axis label at plotted value `y`.
    fn label(self, y: f64) -> String {
        match self {
            Metric::OpsPerSec => format!("{y:.0}"),
            Metric::P99 => format!("{:.0}", 10f64.powf(y)),
        }
    }
}

/// Colour of each engine, the same in every chart.
fn colour(engine: &str) -> RGBColor {
    match engine {
        "naivekv" => RGBColor(214, 39, 40),
        "naivekv-1sys" => RGBColor(255, 127, 14),
        "fjall" => RGBColor(31, 119, 180),
        "sled" => RGBColor(44, 160, 44),
        _ => RGBColor(90, 90, 90),
    }
}

fn engines_of(results: &[SizedReport]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in results {
        if !names.contains(&r.report.engine) {
            names.push(r.report.engine.clone());
        }
    }
    names
}

/// Draws the charts of `results` into `out`; returns the files written.
pub fn draw_all(results: &[SizedReport], out: &Path, name: &str) -> BenchResult<Vec<PathBuf>> {
    let mut sizes: Vec<u64> = results.iter().map(|r| r.keys).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut written = Vec::new();
    for metric in [Metric::OpsPerSec, Metric::P99] {
        if sizes.len() >= 2 {
            for workload in workloads_of(results) {
                let path = out.join(format!("{name}-{workload}-{}.svg", metric.file_tag()));
                let rows: Vec<&SizedReport> = results
                    .iter()
                    .filter(|r| r.report.workload == workload)
                    .collect();
                against_size(&rows, metric, &workload, &path).map_err(|e| e.to_string())?;
                written.push(path);
            }
        } else {
            let path = out.join(format!("{name}-{}.svg", metric.file_tag()));
            let title = format!("{} at {} keys", metric.axis(), size_label(sizes[0]));
            per_workload(results, metric, &title, &path).map_err(|e| e.to_string())?;
            written.push(path);
        }
    }
    Ok(written)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// One line per engine: `metric` against keys. The x axis is log10 of the
/// key count, labelled at the sizes measured (plotters' own log axis puts
/// its labels at round values that need not be among them).
fn against_size(rows: &[&SizedReport], metric: Metric, workload: &str, path: &Path) -> DrawResult {
    let mut sizes: Vec<u64> = rows.iter().map(|r| r.keys).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let x = |keys: u64| (keys.max(1) as f64).log10();
    let (low, high) = (x(sizes[0]) - 0.15, x(sizes[sizes.len() - 1]) + 0.15);
    let y_range = metric.range(rows.iter().copied());
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!("{workload}: {} against data size", metric.axis());
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(low..high, y_range.clone())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_desc("keys in the database (log scale)")
        .y_desc(metric.axis())
        .y_label_formatter(&|y| metric.label(*y))
        .draw()?;
    for &keys in &sizes {
        let (px, py) = chart.backend_coord(&(x(keys), y_range.start));
        root.draw(&PathElement::new(vec![(px, py), (px, py + 5)], BLACK))?;
        let label = size_label(keys);
        let left = px - 4 * label.len() as i32;
        root.draw(&Text::new(label, (left, py + 8), ("sans-serif", 14)))?;
    }
    let owned: Vec<SizedReport> = rows.iter().map(|r| (*r).clone()).collect();
    for engine in engines_of(&owned) {
        let colour = colour(&engine);
        let points: Vec<(f64, f64)> = sizes
            .iter()
            .filter_map(|&k| {
                rows.iter()
                    .find(|r| r.keys == k && r.report.engine == engine)
                    .map(|r| (x(k), metric.plotted(r)))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(engine.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Bars: each workload a group, one bar per engine.
fn per_workload(results: &[SizedReport], metric: Metric, title: &str, path: &Path) -> DrawResult {
    let workloads = workloads_of(results);
    let engines = engines_of(results);
    let y_range = metric.range(results.iter());
    let root = SVGBackend::new(path, (760, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let groups = workloads.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..groups - 0.5, y_range.clone())?;
    let names = workloads.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(workloads.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            match names.get(i as usize) {
                Some(name) if (x - i).abs() < 0.01 && i >= 0.0 => name.clone(),
                _ => String::new(),
            }
        })
        .y_desc(metric.axis())
        .y_label_formatter(&|y| metric.label(*y))
        .draw()?;
    let width = 0.8 / engines.len().max(1) as f64;
    for (e, engine) in engines.iter().enumerate() {
        let colour = colour(engine);
        let bars: Vec<Rectangle<(f64, f64)>> = workloads
            .iter()
            .enumerate()
            .filter_map(|(w, workload)| {
                let r = results
                    .iter()
                    .find(|r| &r.report.workload == workload && &r.report.engine == engine)?;
                let left = w as f64 - 0.4 + e as f64 * width;
                Some(Rectangle::new(
                    [
                        (left, y_range.start),
                        (left + width * 0.9, metric.plotted(r)),
                    ],
                    colour.filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(engine.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Report;

    fn result(keys: u64, workload: &str, engine: &str, ops: f64) -> SizedReport {
        SizedReport {
            keys,
            report: Report {
                engine: engine.into(),
                workload: workload.into(),
                ops_per_sec: ops,
                p99_us: 1e6 / ops,
                ..Report::default()
            },
        }
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("naive_kv_chart_{tag}_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_sweep_draws_a_line_per_engine_per_workload() {
        let dir = scratch("sweep");
        let mut results = Vec::new();
        for keys in [200_000, 2_000_000] {
            for engine in ["naivekv", "fjall", "sled"] {
                results.push(result(keys, "readrandom", engine, keys as f64 / 10.0));
            }
        }
        let files = draw_all(&results, &dir, "t").unwrap();
        assert_eq!(files.len(), 2);
        let svg = std::fs::read_to_string(dir.join("t-readrandom-ops.svg")).unwrap();
        assert!(svg.starts_with("<svg"));
        // Each engine's colour strokes its line and its legend mark.
        for colour in ["#D62728", "#1F77B4", "#2CA02C"] {
            let stroke = format!("stroke=\"{colour}\" stroke-width=\"2\"");
            assert_eq!(svg.matches(&stroke).count(), 2, "{colour}");
        }
        for label in ["naivekv", "fjall", "sled", "200k", "2M"] {
            assert!(svg.contains(label), "no {label} in the chart");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_size_draws_bars_per_workload() {
        let dir = scratch("bars");
        let mut results = Vec::new();
        for workload in ["ycsb-a", "ycsb-b"] {
            for engine in ["naivekv", "fjall"] {
                results.push(result(2_000_000, workload, engine, 1000.0));
            }
        }
        let files = draw_all(&results, &dir, "y").unwrap();
        assert_eq!(files.len(), 2);
        let svg = std::fs::read_to_string(dir.join("y-ops.svg")).unwrap();
        assert!(svg.contains("ycsb-a") && svg.contains("ycsb-b") && svg.contains("fjall"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
