//! Commands on requests: start, wait, list, show, re-execute, cancel.

use anyhow::{Context, bail};
use baton_core::RequestStatus;
use baton_core::store::Purged;

use crate::cli::ServerArg;
use crate::cli::client::{Client, print_table};
use crate::http::api::dto::{
    EventSent, HoldChanged, RequestBundle, RequestChanged, RequestDetail, RequestSummary, Started,
};

/// The arguments of `baton run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Flow name.
    pub flow: String,
    /// Input JSON, or @FILE.
    #[arg(long, default_value = "null")]
    pub input: String,
    /// Wait for the request to finish and print its output.
    #[arg(long)]
    pub wait: bool,
    /// Idempotency key: run again with the same key and input, it
    /// answers the request the first run started instead of a new one.
    #[arg(long)]
    pub key: Option<String>,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton run`.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let RunArgs {
        flow,
        input,
        wait,
        key,
        server,
    } = args;
    let input = match input.strip_prefix('@') {
        Some(file) => std::fs::read(file).with_context(|| format!("reading {file}"))?,
        None => input.into_bytes(),
    };
    let client = server.client();
    let path = format!("/api/flows/{flow}/requests");
    let started: Started = match &key {
        Some(key) => client.post_keyed(&path, input, key).await?,
        None => client.post(&path, input).await?,
    };
    if !wait {
        println!("{}", started.id);
        return Ok(());
    }
    // The ID first: a lost connection still leaves `baton wait ID`.
    eprintln!("request {}", started.id);
    wait_for(&client, &started.id).await
}

/// The arguments of `baton wait`.
#[derive(clap::Args)]
pub struct WaitArgs {
    /// Request ID.
    pub id: String,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton wait`.
pub async fn wait(args: WaitArgs) -> anyhow::Result<()> {
    let WaitArgs { id, server } = args;
    wait_for(&server.client(), &id).await
}

/// The arguments of `baton requests`.
#[derive(clap::Args)]
pub struct RequestsArgs {
    /// Only this status.
    #[arg(long)]
    pub status: Option<String>,
    /// Only this flow.
    #[arg(long)]
    pub flow: Option<String>,
    /// Only held requests (`--held true`) or only those not held.
    #[arg(long)]
    pub held: Option<bool>,
    /// How many.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Export every matching request as CSV, streamed (no --limit).
    #[arg(long, conflicts_with_all = ["json", "jsonl"])]
    pub csv: bool,
    /// Export every matching request as JSON Lines, streamed (no --limit).
    #[arg(long, conflicts_with = "json")]
    pub jsonl: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton requests`.
pub async fn requests(args: RequestsArgs) -> anyhow::Result<()> {
    let RequestsArgs {
        status,
        flow,
        held,
        limit,
        json,
        csv,
        jsonl,
        server,
    } = args;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(status) = &status {
        query.append_pair("status", status);
    }
    if let Some(flow) = &flow {
        query.append_pair("flow", flow);
    }
    if let Some(held) = held {
        query.append_pair("held", &held.to_string());
    }
    if csv || jsonl {
        let route = if csv {
            "requests.csv"
        } else {
            "requests.jsonl"
        };
        let path = format!("/api/{route}?{}", query.finish());
        return server
            .client()
            .download(&path, &mut std::io::stdout().lock())
            .await;
    }
    query.append_pair("limit", &limit.to_string());
    let path = format!("/api/requests?{}", query.finish());
    let rows: Vec<RequestSummary> = server.client().get(&path).await?;
    print_table(
        &rows,
        &[
            "id",
            "flow",
            "status",
            "held",
            "owner",
            "attempts",
            "last_checkpoint",
            "error",
        ],
        json,
    );
    Ok(())
}

/// The arguments of `baton request`.
#[derive(clap::Args)]
pub struct RequestArgs {
    /// Request ID.
    pub id: String,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton request`.
pub async fn request(args: RequestArgs) -> anyhow::Result<()> {
    let RequestArgs { id, server } = args;
    let request: RequestDetail = server.client().get(&format!("/api/requests/{id}")).await?;
    println!("{}", serde_json::to_string_pretty(&request)?);
    Ok(())
}

/// The arguments of `baton reexecute`.
#[derive(clap::Args)]
pub struct ReexecuteArgs {
    /// Request ID.
    pub id: String,
    /// Keep checkpoints 0..K of its current journal generation and run
    /// from checkpoint K live (a new generation).
    #[arg(long, value_name = "K")]
    pub from: Option<i64>,
    /// Run it as a new request (same version and input, the checkpoints
    /// before --from copied); the request itself stays as it was.
    #[arg(long, requires = "from")]
    pub fork: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton reexecute`.
pub async fn reexecute(args: ReexecuteArgs) -> anyhow::Result<()> {
    let ReexecuteArgs {
        id,
        from,
        fork,
        server,
    } = args;
    let mut path = format!("/api/requests/{id}/reexecute");
    if let Some(from) = from {
        path.push_str(&format!("?from={from}"));
    }
    if fork {
        path.push_str("&fork=true");
    }
    let answer: RequestChanged = server.client().post(&path, Vec::new()).await?;
    let owner = answer.owner.as_deref().unwrap_or("?");
    match (from, &answer.forked_from) {
        (Some(from), Some(_)) => {
            println!("{}", answer.id);
            eprintln!("forked from {id} at checkpoint {from}, on {owner}");
        }
        (Some(from), None) => println!("{id} re-executed from checkpoint {from} on {owner}"),
        (None, _) => println!("{id} re-executed on {owner}"),
    }
    Ok(())
}

/// The arguments of `baton cancel`.
#[derive(clap::Args)]
pub struct CancelArgs {
    /// Request ID.
    pub id: String,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton cancel`.
pub async fn cancel(args: CancelArgs) -> anyhow::Result<()> {
    let CancelArgs { id, server } = args;
    let _: RequestChanged = server
        .client()
        .post(&format!("/api/requests/{id}/cancel"), Vec::new())
        .await?;
    println!("{id} cancelled");
    Ok(())
}

/// The arguments of `baton hold` and `baton resume`.
#[derive(clap::Args)]
pub struct HoldArgs {
    /// Request ID.
    pub id: String,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton hold` (`hold = true`) and `baton resume`.
pub async fn hold(args: HoldArgs, hold: bool) -> anyhow::Result<()> {
    let HoldArgs { id, server } = args;
    let verb = if hold { "hold" } else { "resume" };
    let answer: HoldChanged = server
        .client()
        .post(&format!("/api/requests/{id}/{verb}"), Vec::new())
        .await?;
    match (answer.held, answer.changed) {
        (true, true) => println!("{id} held: it runs no more until resumed"),
        (true, false) => println!("{id} was held already"),
        (false, true) => println!("{id} resumed"),
        (false, false) => println!("{id} was not held"),
    }
    Ok(())
}

/// The arguments of `baton purge`.
#[derive(clap::Args)]
pub struct PurgeArgs {
    /// Only requests that finished at least this long ago (`7d`, `12h`).
    #[arg(long, value_name = "AGE")]
    pub older_than: crate::config::Age,
    /// Only this final status (succeeded, error or cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// Only this flow's requests.
    #[arg(long)]
    pub flow: Option<String>,
    /// Count what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton purge`.
pub async fn purge(args: PurgeArgs) -> anyhow::Result<()> {
    let PurgeArgs {
        older_than,
        status,
        flow,
        dry_run,
        server,
    } = args;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("older_than", &format!("{}ms", older_than.0.as_millis()));
    if let Some(status) = &status {
        query.append_pair("status", status);
    }
    if let Some(flow) = &flow {
        query.append_pair("flow", flow);
    }
    if dry_run {
        query.append_pair("dry_run", "true");
    }
    let purged: Purged = server
        .client()
        .post(&format!("/api/purge?{}", query.finish()), Vec::new())
        .await?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    println!(
        "{verb} {} requests and {} blobs no row names",
        purged.requests, purged.blobs
    );
    Ok(())
}

/// The arguments of `baton send`.
#[derive(clap::Args)]
pub struct SendArgs {
    /// Request ID.
    pub id: String,
    /// Event name.
    pub name: String,
    /// The event's JSON, or @FILE.
    #[arg(long, default_value = "null")]
    pub data: String,
    /// Idempotency key: a send retried with the same key keeps one event.
    #[arg(long)]
    pub key: Option<String>,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton send`.
pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let SendArgs {
        id,
        name,
        data,
        key,
        server,
    } = args;
    let data = match data.strip_prefix('@') {
        Some(file) => std::fs::read(file).with_context(|| format!("reading {file}"))?,
        None => data.into_bytes(),
    };
    // The name as one path segment, whatever characters it holds.
    let mut url = url::Url::parse("http://baton/api/requests").expect("a valid URL");
    url.path_segments_mut()
        .expect("an http URL has a path")
        .extend([id.as_str(), "events", name.as_str()]);
    let client = server.client();
    let sent: EventSent = match key {
        Some(key) => client.post_keyed(url.path(), data, &key).await?,
        None => client.post(url.path(), data).await?,
    };
    if sent.kept {
        println!("sent {} to {}", sent.name, sent.id);
    } else {
        println!("{} was sent to {} before with this key", sent.name, sent.id);
    }
    Ok(())
}

/// Waits for request `id` to finish: prints its output when it succeeded,
/// fails with its error otherwise.
pub async fn wait_for(client: &Client, id: &str) -> anyhow::Result<()> {
    loop {
        let request: RequestDetail = client.get(&format!("/api/requests/{id}?limit=1")).await?;
        match request.summary.status {
            RequestStatus::Succeeded => {
                println!("{}", serde_json::to_string_pretty(&request.output)?);
                return Ok(());
            }
            status if status.is_final() => bail!(
                "request {id} ended {}: {}",
                status.as_str(),
                request
                    .summary
                    .error
                    .as_deref()
                    .unwrap_or("no error recorded")
            ),
            _ => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

/// The arguments of `baton replay`.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Request ID.
    pub id: String,
    /// Replay against this deployed version of the flow instead of the
    /// request's own.
    #[arg(long, conflicts_with = "wasm")]
    pub version: Option<String>,
    /// Replay against this component file (another build of the flow).
    #[arg(long)]
    pub wasm: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub server: ServerArg,
}

/// `baton replay`: replays a request's journal here, with no database and
/// no network, and says whether the flow takes the journal's path.
pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    use base64::Engine as _;

    use crate::engine::replay::{Recorded, Verdict, replay};

    let ReplayArgs {
        id,
        version,
        wasm,
        server,
    } = args;
    let path = match &version {
        Some(version) => format!("/api/requests/{id}/bundle?version={version}"),
        None => format!("/api/requests/{id}/bundle"),
    };
    let bundle: RequestBundle = server.client().get(&path).await?;
    let component = match &wasm {
        Some(file) => std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
        None => base64::engine::general_purpose::STANDARD
            .decode(&bundle.component)
            .context("the bundle's component is not base64")?,
    };
    let build = match (&wasm, &version) {
        (Some(file), _) => file.display().to_string(),
        (None, Some(version)) => format!("version {version}"),
        (None, None) => format!("its own version {}", bundle.version),
    };
    let records: Vec<Recorded> = bundle
        .journal
        .iter()
        .map(|r| Recorded {
            name: r.name.clone(),
            value: serde_json::to_vec(&r.value).expect("JSON serializes"),
        })
        .collect();
    let count = records.len();
    let input = serde_json::to_vec(&bundle.input).expect("JSON serializes");
    let verdict = replay(component, &input, &bundle.id, bundle.generation, records).await;
    let status = bundle.status;
    match verdict {
        Verdict::Diverged {
            position,
            recorded,
            asked,
        } => bail!(
            "request {id} diverges against {build} at checkpoint {position}: \
             the journal records {recorded:?}, the flow asks for {asked}"
        ),
        Verdict::Failed(why) => bail!("request {id} cannot be replayed against {build}: {why}"),
        Verdict::ReachedEnd { next, .. } if status.is_final() => bail!(
            "request {id} diverges against {build}: it ended ({status}) after {count} \
             checkpoints, the flow asks for {next:?} after them"
        ),
        Verdict::ReachedEnd { next, .. } => {
            println!(
                "request {id} reproduces against {build}: {count} checkpoints replayed; \
                 it is {status} there, and the flow asks for {next:?} next"
            );
        }
        Verdict::Finished { result: Ok(output) } => {
            let output: serde_json::Value =
                serde_json::from_slice(&output).context("the replayed output is not JSON")?;
            if status != RequestStatus::Succeeded || output != bundle.output {
                bail!(
                    "request {id} diverges against {build}: after its {count} checkpoints the \
                     flow returns {output}, the request is {status} with {}",
                    match status {
                        RequestStatus::Succeeded => bundle.output.to_string(),
                        _ => format!("{:?}", bundle.error.unwrap_or_default()),
                    }
                );
            }
            println!(
                "request {id} reproduces against {build}: {count} checkpoints replayed, \
                 the same output"
            );
        }
        Verdict::Finished { result: Err(error) } => {
            let recorded = bundle.error.unwrap_or_default();
            if status != RequestStatus::Error || !recorded.contains(&error) {
                bail!(
                    "request {id} diverges against {build}: after its {count} checkpoints the \
                     flow fails ({error}), the request is {status}"
                );
            }
            println!(
                "request {id} reproduces against {build}: {count} checkpoints replayed, \
                 the same error ({error})"
            );
        }
    }
    Ok(())
}
