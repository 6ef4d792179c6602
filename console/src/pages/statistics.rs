//! Status › Statistics: a window's series as server-rendered SVG charts
//! and its totals per flow and per server.

use baton_core::statistics::{Report, Summary};
use maud::{Markup, html};

use crate::{Page, layout, time};

/// The windows the page offers, as (value, label, length in ms).
pub const WINDOWS: [(&str, &str, i64); 4] = [
    ("1h", "last hour", 3_600_000),
    ("6h", "last 6 hours", 6 * 3_600_000),
    ("24h", "last 24 hours", 24 * 3_600_000),
    ("7d", "last 7 days", 7 * 86_400_000),
];

/// What the statistics page shows.
#[derive(Debug, Clone)]
pub struct StatisticsView {
    /// The report, server IDs already replaced by names.
    pub report: Report,
    /// The chosen window (a [`WINDOWS`] value).
    pub window: String,
    /// The chosen flow; empty: all.
    pub flow: String,
    /// The flows to choose from.
    pub flows: Vec<String>,
}

/// One line of a chart.
struct Line<'a> {
    label: &'a str,
    color: &'a str,
    values: Vec<f64>,
}

/// A line chart of `lines` over the report's steps, its scale from zero
/// to the largest value; every value is also in the chart's text (its
/// `desc`) for readers that do not see it.
fn chart(title: &str, unit: &str, report: &Report, lines: &[Line<'_>]) -> Markup {
    let (width, height, left, bottom) = (760.0, 180.0, 56.0, 24.0);
    let top = 10.0;
    let max = lines
        .iter()
        .flat_map(|l| l.values.iter().copied())
        .fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { max } else { 1.0 };
    let steps = report.points.len().max(2) - 1;
    let x = |i: usize| left + i as f64 / steps as f64 * (width - left - 8.0);
    let y = |v: f64| top + (1.0 - v / scale) * (height - top - bottom);
    let totals: Vec<String> = lines
        .iter()
        .map(|l| {
            format!(
                "{}: peak {:.1}, mean {:.1}",
                l.label,
                l.values.iter().copied().fold(0.0, f64::max),
                l.values.iter().sum::<f64>() / l.values.len().max(1) as f64
            )
        })
        .collect();
    html! {
        figure.chart {
            svg width=(width) height=(height) viewBox={"0 0 " (width) " " (height)} role="img" {
                title { (title) }
                desc { (totals.join("; ")) " (" (unit) ")" }
                line x1=(left) y1=(y(0.0)) x2=(width - 8.0) y2=(y(0.0)) stroke="#9ca3af" {}
                line x1=(left) y1=(top) x2=(left) y2=(y(0.0)) stroke="#9ca3af" {}
                text x=(left - 4.0) y=(top + 8.0) text-anchor="end" { (format!("{max:.1}")) }
                text x=(left - 4.0) y=(y(0.0)) text-anchor="end" { "0" }
                @for line in lines {
                    polyline fill="none" stroke=(line.color) stroke-width="2"
                        points=(line.values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect::<Vec<_>>().join(" ")) {}
                }
                text x=(left) y=(height - 6.0) { (time(report.from)) }
                text x=(width - 8.0) y=(height - 6.0) text-anchor="end" { (time(report.to)) }
            }
            figcaption {
                (title) " (" (unit) "): "
                @for (i, line) in lines.iter().enumerate() {
                    @if i > 0 { " · " }
                    svg width="10" height="10" aria-hidden="true" { rect width="10" height="10" fill=(line.color) {} }
                    " " (line.label)
                }
            }
        }
    }
}

fn duration(ms: Option<i64>) -> String {
    match ms {
        None => "—".into(),
        Some(i64::MAX) => "> 6 h".into(),
        Some(ms) if ms < 1_000 => format!("≤ {ms} ms"),
        Some(ms) if ms < 60_000 => format!("≤ {} s", ms as f64 / 1000.0),
        Some(ms) => format!("≤ {} min", ms / 60_000),
    }
}

fn totals(caption: &str, first: &str, rows: &[Summary]) -> Markup {
    html! {
        table.statistics {
            caption { (caption) }
            thead { tr {
                th { (first) } th { "Started" } th { "Succeeded" } th { "Error" } th { "Cancelled" }
                th { "Retries" } th { "Takeovers" } th { "Checkpoints" } th { "p50" } th { "p95" } th { "p99" }
            } }
            tbody {
                @for row in rows {
                    tr {
                        td { (row.name) } td { (row.started) } td { (row.succeeded) } td { (row.failed) }
                        td { (row.cancelled) } td { (row.retries) } td { (row.takeovers) } td { (row.checkpoints) }
                        td { (duration(row.p50_ms)) } td { (duration(row.p95_ms)) } td { (duration(row.p99_ms)) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="11" { "Nothing happened in this window." } } }
            }
        }
    }
}

/// Status › Statistics.
pub fn statistics_page(page: &Page, view: &StatisticsView) -> Markup {
    let report = &view.report;
    let series = |f: fn(&baton_core::statistics::Point) -> f64| {
        report.points.iter().map(f).collect::<Vec<f64>>()
    };
    layout(
        page,
        html! {
            form.filters method="get" action="/status/statistics" {
                label { "Window" select name="window" {
                    @for (value, label, _) in WINDOWS {
                        option value=(value) selected[view.window == value] { (label) }
                    }
                } }
                label { "Flow" select name="flow" {
                    option value="" { "all" }
                    @for flow in &view.flows {
                        option value=(flow) selected[view.flow == *flow] { (flow) }
                    }
                } }
                button { "Show" }
            }
            p { "From " (time(report.from)) " to " (time(report.to)) ", one point per " (report.step_ms / 60_000) " min." }
            (chart("Requests started and finished", "per minute", report, &[
                Line { label: "started", color: "#2563eb", values: series(|p| p.started_per_min) },
                Line { label: "finished", color: "#16a34a", values: series(|p| p.finished_per_min) },
            ]))
            (chart("Checkpoints", "per second", report, &[
                Line { label: "checkpoints", color: "#d97706", values: series(|p| p.checkpoints_per_s) },
            ]))
            (totals("Per flow", "Flow", &report.flows))
            (totals("Per server", "Server", &report.servers))
            p { "What is unfinished now is on the " a href="/status/requests" { "Status List" } ", by status." }
        },
    )
}
