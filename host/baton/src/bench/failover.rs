//! `baton bench failover`: time from kill -9 of a request's owner to the
//! first checkpoint written by the server that took it over, and from a
//! restart of a killed server on its own data folder to its first resumed
//! checkpoint.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::Value;

use super::{percentile, sorted};

/// Failover benchmark options.
#[derive(Debug, clap::Args)]
pub struct FailoverArgs {
    /// Kills per lease setting.
    #[arg(long, default_value_t = 10)]
    pub trials: usize,
    /// Lease timeouts to measure, in milliseconds.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    pub leases: Vec<u64>,
    /// Shared database (a fresh database is created on that server).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub database: String,
    /// The flow crate to run: batch-import, whose batches take `delay_ms`.
    #[arg(long, default_value = "flows/batch-import")]
    pub flow: PathBuf,
}

/// One `baton up` child process.
struct Node {
    child: Child,
    base: String,
    id: String,
    token: String,
}

impl Node {
    fn start(dir: &Path, name: &str, database: &str, lease_ms: u64) -> anyhow::Result<Node> {
        let data = dir.join(name);
        let out = dir.join(format!("{name}.out"));
        let child = Command::new(std::env::current_exe()?)
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--database",
                database,
                "--name",
                name,
            ])
            .arg("--data")
            .arg(&data)
            .arg("--storage")
            .arg(dir.join("store"))
            .args([
                "--heartbeat-ms",
                &(lease_ms / 5).max(100).to_string(),
                "--lease-ms",
                &lease_ms.to_string(),
            ])
            .stdout(std::fs::File::create(&out)?)
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(base) = crate::server::listening_address(&text) {
                let id = std::fs::read_to_string(data.join("server-id"))?
                    .trim()
                    .to_owned();
                let token =
                    std::fs::read_to_string(data.join(crate::http::credentials::ADMIN_TOKEN_FILE))?
                        .trim()
                        .to_owned();
                return Ok(Node {
                    child,
                    base: base.to_owned(),
                    id,
                    token,
                });
            }
            if Instant::now() > deadline {
                bail!("server {name} did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Runs the failover benchmark and prints p50/p99 per lease.
pub async fn run(args: FailoverArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let (_, component) =
        crate::vcs::deploy::component_bytes(&args.flow, &crate::vcs::deploy::Builder::Admin)
            .await?
            .into_iter()
            .next()
            .context("the flow built nothing")?;
    println!(
        "baton bench failover: {} kills per lease; time from kill -9 of the owner to the new owner's first checkpoint",
        args.trials
    );
    for &lease_ms in &args.leases {
        let dir = tempfile::tempdir()?;
        let database =
            baton_store::scratch::ScratchDatabase::new(&args.database, dir.path(), "baton_bench");
        let mut nodes = Vec::new();
        for i in 0..3 {
            nodes.push(Node::start(
                dir.path(),
                &format!("n{i}"),
                &database.url,
                lease_ms,
            )?);
        }
        http.post(format!("{}/api/flows", nodes[0].base))
            .bearer_auth(&nodes[0].token)
            .body(component.clone())
            .send()
            .await?
            .error_for_status()?;
        let progress = super::bar(args.trials, &format!("lease {lease_ms} ms"));
        let mut gaps = Vec::new();
        for trial in 0..args.trials {
            let owner = trial % nodes.len();
            let watcher = (owner + 1) % nodes.len();
            let id = running_request(&http, &nodes[owner], &nodes[watcher]).await?;
            let url = format!("{}/api/requests/{id}", nodes[watcher].base);
            let token = nodes[watcher].token.clone();
            let dead = nodes[owner].id.clone();
            nodes[owner].kill();
            let killed_at = now_ms();
            let first = first_checkpoint(
                &http,
                &nodes[watcher],
                &id,
                Duration::from_millis(lease_ms * 3 + 10_000),
                |c| c["server"].as_str() != Some(&dead),
            )
            .await?;
            gaps.push((first - killed_at).max(0) as u64);
            http.post(format!("{url}/cancel"))
                .bearer_auth(&token)
                .send()
                .await?;
            nodes[owner] = Node::start(dir.path(), &format!("n{owner}"), &database.url, lease_ms)?;
            progress.inc(1);
        }
        progress.finish_and_clear();
        let gaps = sorted(gaps);
        println!(
            "lease {:>5} ms   kill → first checkpoint by the new owner   p50 {:>6} ms   p99 {:>6} ms   (target p99 ≤ {} ms)",
            lease_ms,
            percentile(&gaps, 0.5),
            percentile(&gaps, 0.99),
            lease_ms + 500
        );
        // The servers go before their database.
        drop(nodes);
        drop(database);
        let restarts = restarts(&http, &component, &args, lease_ms).await?;
        println!(
            "lease {:>5} ms   restart on its own data → first resumed checkpoint   p50 {:>6} ms   p99 {:>6} ms   (goal ≤ 500 ms)",
            lease_ms,
            percentile(&restarts, 0.5),
            percentile(&restarts, 0.99),
        );
    }
    Ok(())
}

/// Starts a long batch import on `on` and returns its id once `watcher`
/// reads two of its checkpoints.
async fn running_request(
    http: &reqwest::Client,
    on: &Node,
    watcher: &Node,
) -> anyhow::Result<String> {
    let started: Value = http
        .post(format!("{}/api/flows/batch-import/requests", on.base))
        .bearer_auth(&on.token)
        .body(r#"{"records": 1000000, "batch": 1000, "delay_ms": 50}"#)
        .send()
        .await?
        .json()
        .await?;
    let id = started["id"].as_str().context("request id")?.to_owned();
    while checkpoints(http, watcher, &id).await?.len() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(id)
}

/// The request's checkpoints as `node` reads them.
async fn checkpoints(http: &reqwest::Client, node: &Node, id: &str) -> anyhow::Result<Vec<Value>> {
    let request: Value = http
        .get(format!("{}/api/requests/{id}", node.base))
        .bearer_auth(&node.token)
        .send()
        .await?
        .json()
        .await?;
    Ok(request["checkpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The first checkpoint time (ms) that `pick` accepts, polled through `node`.
async fn first_checkpoint(
    http: &reqwest::Client,
    node: &Node,
    id: &str,
    limit: Duration,
    pick: impl Fn(&Value) -> bool,
) -> anyhow::Result<i64> {
    let deadline = Instant::now() + limit;
    loop {
        let found = checkpoints(http, node, id)
            .await?
            .iter()
            .filter(|c| pick(c))
            .filter_map(|c| c["at"].as_i64())
            .min();
        if let Some(at) = found {
            return Ok(at);
        }
        if Instant::now() > deadline {
            bail!("no checkpoint within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One server killed and restarted at once on its own data folder: from
/// the restart to its first resumed checkpoint.
async fn restarts(
    http: &reqwest::Client,
    component: &[u8],
    args: &FailoverArgs,
    lease_ms: u64,
) -> anyhow::Result<Vec<u64>> {
    let dir = tempfile::tempdir()?;
    let database =
        baton_store::scratch::ScratchDatabase::new(&args.database, dir.path(), "baton_bench");
    let mut node = Node::start(dir.path(), "r0", &database.url, lease_ms)?;
    http.post(format!("{}/api/flows", node.base))
        .bearer_auth(&node.token)
        .body(component.to_vec())
        .send()
        .await?
        .error_for_status()?;
    let progress = super::bar(args.trials, &format!("restarts, lease {lease_ms} ms"));
    let mut gaps = Vec::new();
    for _ in 0..args.trials {
        let id = running_request(http, &node, &node).await?;
        node.kill();
        let restarted_at = now_ms();
        node = Node::start(dir.path(), "r0", &database.url, lease_ms)?;
        let first = first_checkpoint(
            http,
            &node,
            &id,
            Duration::from_millis(lease_ms * 3 + 10_000),
            |c| c["at"].as_i64().is_some_and(|at| at >= restarted_at),
        )
        .await?;
        gaps.push((first - restarted_at).max(0) as u64);
        http.post(format!("{}/api/requests/{id}/cancel", node.base))
            .bearer_auth(&node.token)
            .send()
            .await?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    drop(node);
    drop(database);
    Ok(sorted(gaps))
}
