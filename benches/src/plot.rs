//! SVG charts of benchmark results (plotters): Mpps and cycles per packet
//! against the number of flows, one line per forwarder; latency
//! percentiles against the load, as a share of each forwarder's zero-loss
//! rate. They are drawn from the JSON `compare` writes, so a chart can be
//! drawn again from kept results (`vswitch-bench plot`).

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Each forwarder's colour, fixed so that charts compare at a glance.
fn colour(forwarder: &str) -> RGBColor {
    match forwarder {
        "vswitch" => RGBColor(0xd6, 0x27, 0x28),
        "vswitch-base" => RGBColor(0xff, 0x7f, 0x0e),
        "testpmd" => RGBColor(0x7f, 0x7f, 0x7f),
        "ovs-dpdk" => RGBColor(0x1f, 0x77, 0xb4),
        _ => RGBColor(0x2c, 0xa0, 0x2c),
    }
}

/// One line: a forwarder's (x, y) points.
pub type Line = (String, Vec<(f64, f64)>);

/// A count as people write it: 1, 10, 1k, 100k, 1M.
fn human(x: f64) -> String {
    match x {
        x if x >= 1e6 => format!("{}M", x / 1e6),
        x if x >= 1e3 => format!("{}k", x / 1e3),
        x => format!("{x}"),
    }
}

/// A white 800x480 chart titled `title` on `root`, its axes still to be
/// given.
fn frame<'a, 'p: 'a>(
    root: &'a DrawingArea<SVGBackend<'p>, plotters::coord::Shift>,
    title: &str,
) -> Result<ChartBuilder<'a, 'a, SVGBackend<'p>>> {
    root.fill(&WHITE)?;
    let mut b = ChartBuilder::on(root);
    b.caption(title, ("sans-serif", 20)).margin(12).x_label_area_size(40).y_label_area_size(60);
    Ok(b)
}

/// Draws the legend in the upper left corner and writes the file.
fn finish<'a, CT: plotters::coord::CoordTranslate>(
    root: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A chart of `lines` against flows, both axes logarithmic (the values
/// span orders of magnitude between the forwarders).
fn log_x_chart(path: &Path, title: &str, y_desc: &str, lines: &[Line]) -> Result<()> {
    let pts = || lines.iter().flat_map(|(_, p)| p.iter());
    let x_max = pts().map(|p| p.0).fold(1.0, f64::max) * 2.0;
    let y_max = pts().map(|p| p.1).fold(0.0, f64::max) * 2.0;
    let y_min = pts().map(|p| p.1).filter(|y| *y > 0.0).fold(f64::MAX, f64::min).min(y_max) / 2.0;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    let mut chart = frame(&root, title)?
        .build_cartesian_2d((0.5f64..x_max).log_scale(), (y_min.max(1e-3)..y_max.max(1e-2)).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("flows per direction")
        .y_desc(y_desc)
        .x_label_formatter(&|x| human(*x))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()?;
    for (name, points) in lines {
        let c = colour(name);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, c.filled())))?;
    }
    finish(&root, &mut chart)
}

/// A forwarder's latency percentiles (p50, p99, p99.9) at each load.
type LatencyLine = (String, Vec<(f64, [f64; 3])>);

/// Latency percentiles (p50, p99, p99.9) against the load, per forwarder:
/// one chart, a line per forwarder and percentile.
fn latency_chart(path: &Path, title: &str, series: &[LatencyLine]) -> Result<()> {
    let y_max = series.iter().flat_map(|(_, p)| p.iter().flat_map(|(_, l)| l.iter())).fold(0.0, |a: f64, b| a.max(*b));
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    let mut chart =
        frame(&root, title)?.build_cartesian_2d(40f64..105f64, (0.1f64..(y_max * 2.0).max(1.0)).log_scale())?;
    chart.configure_mesh().x_desc("load, % of the zero-loss rate").y_desc("latency, us").draw()?;
    for (name, points) in series {
        let c = colour(name);
        // p50 solid, p99 dashed, p99.9 dotted.
        for (i, (pct, dash)) in [("p50", None), ("p99", Some((8, 4))), ("p99.9", Some((2, 4)))].into_iter().enumerate()
        {
            let style = c.stroke_width(2);
            let line: Vec<(f64, f64)> = points.iter().map(|(x, l)| (*x, l[i].max(0.1))).collect();
            let legend = move |(x, y): (i32, i32)| {
                let ends = match dash {
                    None => vec![(x, y), (x + 20, y)],
                    Some((on, _)) => vec![(x, y), (x + on.min(20), y)],
                };
                PathElement::new(ends, style)
            };
            match dash {
                None => chart.draw_series(LineSeries::new(line.iter().copied(), style))?,
                Some((on, off)) => chart.draw_series(DashedLineSeries::new(line.iter().copied(), on, off, style))?,
            }
            .label(format!("{name} {pct}"))
            .legend(legend);
            chart.draw_series(line.iter().map(|p| Circle::new(*p, 3, c.filled())))?;
        }
    }
    finish(&root, &mut chart)
}

/// Where a chart next to `json` goes: `results.json` -> `results-NAME.svg`.
pub fn beside(json: &Path, name: &str) -> PathBuf {
    let stem = json.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "results".into());
    json.with_file_name(format!("{stem}-{name}.svg"))
}

/// The latency chart of one `compare` document (when it holds zero-loss
/// results); the path written.
pub fn latency(doc: &Value, json: &Path) -> Result<Option<PathBuf>> {
    let mut series = Vec::new();
    for r in doc["results"].as_array().into_iter().flatten() {
        let pts: Vec<(f64, [f64; 3])> = r["zero_loss"]["latency"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| {
                let us = |k: &str| l["latency_us"][k].as_f64();
                Some((l["load_pct"].as_f64()?, [us("p50")?, us("p99")?, us("p999")?]))
            })
            .collect();
        if !pts.is_empty() {
            series.push((r["forwarder"].as_str().unwrap_or("?").to_string(), pts));
        }
    }
    if series.is_empty() {
        return Ok(None);
    }
    let path = beside(json, "latency");
    let title = format!(
        "{} {} B, {} flows: latency vs load",
        doc["scenario"].as_str().unwrap_or("?"),
        doc["frame_size"],
        doc["flows"]
    );
    latency_chart(&path, &title, &series).with_context(|| format!("drawing {}", path.display()))?;
    Ok(Some(path))
}

/// Mpps (zero-loss where measured, else the median throughput) and cycles
/// per packet against flows, from `compare` documents of one scenario at
/// several flow counts; the paths written (`STEM-mpps.svg`,
/// `STEM-cycles.svg`).
pub fn versus_flows(docs: &[Value], stem: &Path) -> Result<Vec<PathBuf>> {
    let mut mpps: Vec<Line> = Vec::new();
    let mut cycles: Vec<Line> = Vec::new();
    let add = |lines: &mut Vec<Line>, name: &str, x: f64, y: f64| match lines.iter_mut().find(|l| l.0 == name) {
        Some(l) => l.1.push((x, y)),
        None => lines.push((name.to_string(), vec![(x, y)])),
    };
    let mut scenario = String::new();
    for d in docs {
        scenario = d["scenario"].as_str().unwrap_or("?").to_string();
        let Some(flows) = d["flows"].as_f64() else { continue };
        for r in d["results"].as_array().into_iter().flatten() {
            let name = r["forwarder"].as_str().unwrap_or("?");
            if let Some(m) = r["zero_loss"]["mpps"].as_f64().or_else(|| r["mpps"].as_f64()) {
                add(&mut mpps, name, flows, m);
            }
            if let Some(c) = r["cycles_per_packet"].as_f64() {
                add(&mut cycles, name, flows, c);
            }
        }
    }
    for l in mpps.iter_mut().chain(cycles.iter_mut()) {
        l.1.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let mut out = Vec::new();
    let base = stem.to_string_lossy().into_owned();
    for (name, title, y, lines) in [
        ("mpps", format!("{scenario}: Mpps per direction vs flows"), "Mpps", &mpps),
        ("cycles", format!("{scenario}: cycles per packet vs flows"), "cycles per packet", &cycles),
    ] {
        if lines.is_empty() {
            continue;
        }
        let path = PathBuf::from(format!("{base}-{name}.svg"));
        log_x_chart(&path, &title, y, lines).with_context(|| format!("drawing {}", path.display()))?;
        out.push(path);
    }
    Ok(out)
}
