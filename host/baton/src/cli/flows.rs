//! Commands on flows: deploy, list, schedules, Update.

use std::path::PathBuf;

use anyhow::{Context, bail};
use baton_core::store::ScheduleRow;

use crate::cli::ServerArg;
use crate::cli::client::print_table;
use crate::http::api::dto::{FlowView, NewSchedule};
use crate::vcs::deploy::Deployed;
use crate::vcs::repository::UpdateReport;

/// The arguments of `baton deploy`.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// Flow crate folders, workspaces or .wasm files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Before activating, replay the journals of every unfinished request
    /// of the flow and of its N newest finished ones against the new
    /// version; refuse it when any would diverge.
    #[arg(long, value_name = "N")]
    pub check: Option<usize>,
    /// With --check: activate even when some would diverge (listed as
    /// warnings).
    #[arg(long, requires = "check")]
    pub force: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton deploy`.
pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let DeployArgs {
        paths,
        check,
        force,
        server,
    } = args;
    let client = server.client();
    let route = match check {
        Some(last) => format!("/api/flows?check={last}&force={force}"),
        None => "/api/flows".to_owned(),
    };
    for path in paths {
        for (file, bytes) in
            crate::vcs::deploy::component_bytes(&path, &crate::vcs::deploy::Builder::Admin).await?
        {
            let deployed: Deployed = client
                .post(&route, bytes)
                .await
                .with_context(|| format!("deploying {}", file.display()))?;
            println!("{} {}", deployed.name, deployed.version);
            for warning in deployed.warnings {
                eprintln!("warning: {warning}");
            }
        }
    }
    Ok(())
}

/// The arguments of `baton flows`.
#[derive(clap::Args)]
pub struct FlowsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton flows`.
pub async fn flows(args: FlowsArgs) -> anyhow::Result<()> {
    let FlowsArgs { json, server } = args;
    let rows: Vec<FlowView> = server.client().get("/api/flows").await?;
    print_table(&rows, &["name", "version", "size", "updated_at"], json);
    Ok(())
}

/// The arguments of `baton schedule`.
#[derive(clap::Args)]
pub struct ScheduleArgs {
    /// Schedule name.
    pub name: String,
    /// Flow to start.
    pub flow: String,
    /// Cron expression: "sec min hour day month weekday" (or five fields).
    pub cron: String,
    /// The IANA time zone the expression is read in, e.g. Europe/Berlin.
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// Input JSON of every request.
    #[arg(long, default_value = "null")]
    pub input: String,
    /// Fire only on this server (a local schedule) instead of cluster-wide.
    #[arg(long)]
    pub local: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton schedule`.
pub async fn schedule(args: ScheduleArgs) -> anyhow::Result<()> {
    let ScheduleArgs {
        name,
        flow,
        cron,
        tz,
        input,
        local,
        server,
    } = args;
    let input: serde_json::Value =
        serde_json::from_str(&input).context("--input is not valid JSON")?;
    let body = NewSchedule {
        name: name.clone(),
        flow,
        cron,
        tz: Some(tz),
        input: Some(input),
        local,
    };
    let answer: ScheduleRow = server.client().post_json("/api/schedules", &body).await?;
    println!(
        "{name} next fires at {} UTC",
        baton_console::time(answer.next_fire_at)
    );
    Ok(())
}

/// The arguments of `baton schedules`.
#[derive(clap::Args)]
pub struct SchedulesArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton schedules`.
pub async fn schedules(args: SchedulesArgs) -> anyhow::Result<()> {
    let SchedulesArgs { json, server } = args;
    let rows: Vec<ScheduleRow> = server.client().get("/api/schedules").await?;
    print_table(
        &rows,
        &[
            "name",
            "flow",
            "cron",
            "tz",
            "server",
            "next_fire_at",
            "last_fired_at",
        ],
        json,
    );
    Ok(())
}

/// The arguments of `baton sync`.
#[derive(clap::Args)]
pub struct SyncArgs {
    /// Deploy a flow's new version even when some of its journals would
    /// diverge from it (they are listed as warnings).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton sync`.
pub async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let SyncArgs { force, server } = args;
    let path = if force {
        "/api/version-control/update?force=true"
    } else {
        "/api/version-control/update"
    };
    let report: UpdateReport = server.client().post(path, Vec::new()).await?;
    println!(
        "{} → {}",
        report.from.as_deref().unwrap_or("-"),
        report.to.as_deref().unwrap_or("-")
    );
    let mut failed = false;
    for flow in &report.flows {
        let name = flow.flow.as_deref().unwrap_or(&flow.path);
        match &flow.error {
            Some(error) => {
                failed = true;
                println!("{name}: {error}");
            }
            None => println!(
                "{name}: {} → {}",
                flow.old.as_deref().unwrap_or("(new)"),
                flow.new.as_deref().unwrap_or("-")
            ),
        }
        for warning in &flow.warnings {
            eprintln!("warning: {name}: {warning}");
        }
    }
    if failed {
        bail!("some flows did not build or deploy");
    }
    Ok(())
}
