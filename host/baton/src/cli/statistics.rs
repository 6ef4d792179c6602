//! `baton statistics`: a window's totals per flow and per server.

use std::time::{SystemTime, UNIX_EPOCH};

use baton_core::statistics::Report;

use crate::cli::ServerArg;
use crate::cli::client::print_table;
use crate::config::Age;

/// The arguments of `baton statistics`.
#[derive(clap::Args)]
pub struct StatisticsArgs {
    /// The window, ending now (`1h`, `24h`, `7d`; at most 31 days).
    #[arg(long, default_value = "1h")]
    pub window: Age,
    /// Only this flow.
    #[arg(long)]
    pub flow: Option<String>,
    /// Print the whole report as JSON (with the per-step series).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

const COLUMNS: [&str; 11] = [
    "name",
    "started",
    "succeeded",
    "failed",
    "cancelled",
    "retries",
    "takeovers",
    "checkpoints",
    "p50_ms",
    "p95_ms",
    "p99_ms",
];

/// `baton statistics`.
pub async fn statistics(args: StatisticsArgs) -> anyhow::Result<()> {
    let StatisticsArgs {
        window,
        flow,
        json,
        server,
    } = args;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("from", &(now - window.0.as_millis() as i64).to_string());
    if let Some(flow) = &flow {
        query.append_pair("flow", flow);
    }
    let report: Report = server
        .client()
        .get(&format!("/api/statistics?{}", query.finish()))
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("per flow (durations in ms, as their bucket's upper bound)");
    print_table(&report.flows, &COLUMNS, false);
    println!("\nper server");
    print_table(&report.servers, &COLUMNS, false);
    Ok(())
}
