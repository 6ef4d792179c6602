//! The `baton` command: runs a server, or talks to one.

use std::path::PathBuf;

use anyhow::{Context, bail};
use baton::client::{Client, print_table};
use baton::config::{FileConfig, ServerConfig};
use baton::http::api::dto::{
    AccountView, Deleted, FlowView, IssuedToken, NewAccount, NewSchedule, PasswordChange,
    PasswordReset, RequestChanged, RequestDetail, RequestSummary, Revoked, RevokedTokens,
    RoleChange, ServerName, ServerView, Started, TokenRevocation,
};
use baton::vcs::deploy::Deployed;
use baton::vcs::repository::UpdateReport;
use baton_core::RequestStatus;
use baton_core::store::ScheduleRow;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "baton",
    version,
    about = "Durable flows as WebAssembly components, with failover between servers"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a server.
    Up {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data folder (server ID, lock, compiled components, SQLite file).
        #[arg(long, env = "BATON_DATA")]
        data: Option<PathBuf>,
        /// Address of the console and API.
        #[arg(long, env = "BATON_LISTEN")]
        listen: Option<String>,
        /// Checkpoint connection: sqlite://FILE or postgres://…
        #[arg(long, env = "BATON_DATABASE_URL")]
        database: Option<String>,
        /// Checkpoint storage path (shared by the cluster).
        #[arg(long, env = "BATON_STORAGE_PATH")]
        storage: Option<PathBuf>,
        /// Server name (defaults to the recorded name, or the ID).
        #[arg(long)]
        name: Option<String>,
        /// Heartbeat interval in milliseconds (default 1000).
        #[arg(long)]
        heartbeat_ms: Option<u64>,
        /// Lease timeout in milliseconds (default 5000).
        #[arg(long)]
        lease_ms: Option<u64>,
        /// Executions at once (default 64).
        #[arg(long)]
        capacity: Option<usize>,
        /// Memory limit per flow instance in MiB (default 64).
        #[arg(long)]
        memory_limit_mib: Option<usize>,
        /// Guest execution time per attempt in seconds (default 60).
        #[arg(long)]
        time_limit_s: Option<f64>,
        /// Wall-clock time per attempt in seconds (default 300): an attempt
        /// still waiting in an HTTP call, pause or sleep then ends.
        #[arg(long)]
        attempt_wall_limit_s: Option<u64>,
        /// How long a console session lasts in seconds (default 43200; 0:
        /// until logout).
        #[arg(long)]
        session_ttl_s: Option<u64>,
        /// How long an API token issued through the API lasts in seconds
        /// (default 0: until revoked).
        #[arg(long)]
        token_ttl_s: Option<u64>,
        /// The flows git repository that Version Control › Update fast-forwards.
        #[arg(long)]
        flows_repo: Option<PathBuf>,
        /// Whether Update builds changed flow crates with cargo (default
        /// true: the repository's code runs on this server) or, with false,
        /// deploys the prebuilt `dist/*.wasm` components committed in it.
        #[arg(long)]
        build_flows: Option<bool>,
        /// Cargo's build folder for Update's builds (default
        /// `<data>/flows-build`).
        #[arg(long)]
        flows_build_dir: Option<PathBuf>,
        /// Flow crates, workspaces or .wasm files to build and deploy at start.
        #[arg(long, num_args = 1..)]
        deploy: Vec<PathBuf>,
    },
    /// Build (a crate folder) or take (a .wasm file) components and deploy them.
    Deploy {
        /// Flow crate folders, workspaces or .wasm files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Start a request of a flow.
    Run {
        /// Flow name.
        flow: String,
        /// Input JSON, or @FILE.
        #[arg(long, default_value = "null")]
        input: String,
        /// Wait for the request to finish and print its output.
        #[arg(long)]
        wait: bool,
        /// Idempotency key: run again with the same key and input, it
        /// answers the request the first run started instead of a new one.
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List requests, newest first.
    Requests {
        /// Only this status.
        #[arg(long)]
        status: Option<String>,
        /// Only this flow.
        #[arg(long)]
        flow: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Show one request with its checkpoints and history.
    Request {
        /// Request ID.
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Wait for a request to finish and print its output (as `run --wait`).
    Wait {
        /// Request ID.
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List the deployed flows with their active versions.
    Flows {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List the servers of the cluster.
    Servers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Re-execute a request in error, or waiting for a server that is down.
    Reexecute {
        /// Request ID.
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Cancel a request that has not finished.
    Cancel {
        /// Request ID.
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Rename a server.
    Rename {
        /// Server ID.
        id: String,
        /// New name.
        name: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Create or replace a cron-style schedule that starts a flow.
    Schedule {
        /// Schedule name.
        name: String,
        /// Flow to start.
        flow: String,
        /// Cron expression: "sec min hour day month weekday" (or five fields).
        cron: String,
        /// Input JSON of every request.
        #[arg(long, default_value = "null")]
        input: String,
        /// Fire only on this server (a local schedule) instead of cluster-wide.
        #[arg(long)]
        local: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Update the flows repository of a server (fetch, fast-forward) and
    /// deploy the flows that changed.
    Sync {
        #[command(flatten)]
        server: ServerArg,
    },
    /// Create an account (the password is read from BATON_ACCOUNT_PASSWORD).
    Account {
        /// Login name.
        name: String,
        /// admin, operator or viewer.
        #[arg(long, default_value = "viewer")]
        role: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Change an existing account: `--password` (from
    /// `BATON_ACCOUNT_PASSWORD`), `--role`, `--disable`, `--enable`,
    /// `--delete`, `--revoke-tokens`.
    Manage {
        /// Account name.
        name: String,
        /// Set its password from BATON_ACCOUNT_PASSWORD (ends its sessions).
        #[arg(long)]
        password: bool,
        /// Give it another role: admin, operator or viewer.
        #[arg(long, conflicts_with = "delete")]
        role: Option<String>,
        /// Disable it: no login, its sessions end, its tokens answer nothing.
        #[arg(long, conflicts_with_all = ["enable", "delete"])]
        disable: bool,
        /// Enable it again.
        #[arg(long, conflicts_with = "delete")]
        enable: bool,
        /// Delete it with its sessions and tokens.
        #[arg(long)]
        delete: bool,
        /// Revoke every API token it has.
        #[arg(long)]
        revoke_tokens: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Change your own password: the current one from BATON_PASSWORD, the
    /// new one from BATON_NEW_PASSWORD.
    Passwd {
        #[command(flatten)]
        server: ServerArg,
    },
    /// Revoke an API token (read from standard input, so it stays out of
    /// the shell history).
    Revoke {
        #[command(flatten)]
        server: ServerArg,
    },
    /// Issue an API token for an account (printed once).
    Token {
        /// Account name.
        name: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List schedules.
    Schedules {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Benchmarks: checkpointed requests against raw commits.
    #[cfg(feature = "bench")]
    Bench(baton::bench::BenchArgs),
}

#[derive(clap::Args)]
struct ServerArg {
    /// The server to talk to.
    #[arg(
        long = "server",
        env = "BATON_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// API token (default: the local server's <data>/admin.token, for a
    /// server on this machine only).
    #[arg(long, env = "BATON_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl ServerArg {
    fn client(self) -> Client {
        let token = baton::client::token(self.token, &self.url);
        Client::new(&self.url, token)
    }
}

fn main() -> anyhow::Result<()> {
    // Whatever Baton creates (database, blobs, tokens, compiled flows) is
    // for its own user only. Set before the runtime starts any thread.
    #[allow(unsafe_code)]
    // SAFETY: umask(2) sets the process's file mode mask and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,wasmtime=warn,cranelift=warn")
    });
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up {
            config,
            data,
            listen,
            database,
            storage,
            name,
            heartbeat_ms,
            lease_ms,
            capacity,
            memory_limit_mib,
            time_limit_s,
            attempt_wall_limit_s,
            session_ttl_s,
            token_ttl_s,
            flows_repo,
            build_flows,
            flows_build_dir,
            deploy,
        } => {
            let file = match config {
                Some(path) => FileConfig::read(&path)?,
                None => FileConfig::default(),
            };
            let flags = FileConfig {
                data,
                listen,
                database,
                storage,
                name,
                heartbeat_ms,
                lease_ms,
                capacity,
                memory_limit_mib,
                time_limit_s,
                attempt_wall_limit_s,
                connections: Default::default(),
                flows_repo,
                build_flows,
                flows_build_dir,
                protect_metrics: None,
                max_postponements: None,
                http_body_limit_mib: None,
                public_url: None,
                trusted_proxies: None,
                session_ttl_s,
                token_ttl_s,
            };
            baton::server::up(ServerConfig::resolve(file, flags), deploy).await
        }
        Command::Deploy { paths, server } => {
            let client = server.client();
            for path in paths {
                for (file, bytes) in
                    baton::vcs::deploy::component_bytes(&path, &baton::vcs::deploy::Builder::Admin)
                        .await?
                {
                    let deployed: Deployed = client
                        .post("/api/flows", bytes)
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
        Command::Run {
            flow,
            input,
            wait,
            key,
            server,
        } => {
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
        Command::Wait { id, server } => wait_for(&server.client(), &id).await,
        Command::Flows { json, server } => {
            let rows: Vec<FlowView> = server.client().get("/api/flows").await?;
            print_table(&rows, &["name", "version", "size", "updated_at"], json);
            Ok(())
        }
        Command::Requests {
            status,
            flow,
            limit,
            json,
            server,
        } => {
            let mut path = format!("/api/requests?limit={limit}");
            if let Some(status) = status {
                path.push_str(&format!("&status={status}"));
            }
            if let Some(flow) = flow {
                path.push_str(&format!("&flow={flow}"));
            }
            let rows: Vec<RequestSummary> = server.client().get(&path).await?;
            print_table(
                &rows,
                &[
                    "id",
                    "flow",
                    "status",
                    "owner",
                    "attempts",
                    "last_checkpoint",
                    "error",
                ],
                json,
            );
            Ok(())
        }
        Command::Request { id, server } => {
            let request: RequestDetail =
                server.client().get(&format!("/api/requests/{id}")).await?;
            println!("{}", serde_json::to_string_pretty(&request)?);
            Ok(())
        }
        Command::Servers { json, server } => {
            let rows: Vec<ServerView> = server.client().get("/api/servers").await?;
            print_table(
                &rows,
                &[
                    "id",
                    "name",
                    "status",
                    "address",
                    "heartbeat_age_ms",
                    "owned",
                ],
                json,
            );
            Ok(())
        }
        Command::Reexecute { id, server } => {
            let answer: RequestChanged = server
                .client()
                .post(&format!("/api/requests/{id}/reexecute"), Vec::new())
                .await?;
            println!(
                "{id} re-executed on {}",
                answer.owner.as_deref().unwrap_or("?")
            );
            Ok(())
        }
        Command::Cancel { id, server } => {
            let _: RequestChanged = server
                .client()
                .post(&format!("/api/requests/{id}/cancel"), Vec::new())
                .await?;
            println!("{id} cancelled");
            Ok(())
        }
        Command::Rename { id, name, server } => {
            let body = ServerName {
                id: None,
                name: name.clone(),
            };
            let _: ServerName = server
                .client()
                .post_json(&format!("/api/servers/{id}/name"), &body)
                .await?;
            println!("{id} is now named {name}");
            Ok(())
        }
        Command::Schedule {
            name,
            flow,
            cron,
            input,
            local,
            server,
        } => {
            let input: serde_json::Value =
                serde_json::from_str(&input).context("--input is not valid JSON")?;
            let body = NewSchedule {
                name: name.clone(),
                flow,
                cron,
                input: Some(input),
                local,
            };
            let answer: ScheduleRow = server.client().post_json("/api/schedules", &body).await?;
            println!("{name} next fires at {}", answer.next_fire_at);
            Ok(())
        }
        Command::Sync { server } => {
            let report: UpdateReport = server
                .client()
                .post("/api/version-control/update", Vec::new())
                .await?;
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
        Command::Account { name, role, server } => {
            let password = std::env::var("BATON_ACCOUNT_PASSWORD")
                .context("set BATON_ACCOUNT_PASSWORD to the new account's password")?;
            let body = NewAccount {
                name: name.clone(),
                password,
                role: role.clone(),
            };
            let _: AccountView = server.client().post_json("/api/accounts", &body).await?;
            println!("created the {role} account {name}");
            Ok(())
        }
        Command::Manage {
            name,
            password,
            role,
            disable,
            enable,
            delete,
            revoke_tokens,
            server,
        } => {
            let client = server.client();
            if let Some(role) = role {
                let body = RoleChange { role: role.clone() };
                let _: AccountView = client
                    .post_json(&format!("/api/accounts/{name}/role"), &body)
                    .await?;
                println!("{name} is now a {role}");
            }
            if password {
                let password = std::env::var("BATON_ACCOUNT_PASSWORD")
                    .context("set BATON_ACCOUNT_PASSWORD to the account's new password")?;
                let _: AccountView = client
                    .post_json(
                        &format!("/api/accounts/{name}/password"),
                        &PasswordReset { password },
                    )
                    .await?;
                println!("set the password of {name}");
            }
            if revoke_tokens {
                let answer: RevokedTokens = client
                    .delete(&format!("/api/accounts/{name}/tokens"))
                    .await?;
                println!("revoked {} tokens of {name}", answer.revoked);
            }
            for (wanted, action) in [(disable, "disable"), (enable, "enable")] {
                if wanted {
                    let _: AccountView = client
                        .post(&format!("/api/accounts/{name}/{action}"), Vec::new())
                        .await?;
                    println!("{action}d {name}");
                }
            }
            if delete {
                let _: Deleted = client.delete(&format!("/api/accounts/{name}")).await?;
                println!("deleted {name}");
            }
            Ok(())
        }
        Command::Passwd { server } => {
            let current = std::env::var("BATON_PASSWORD")
                .context("set BATON_PASSWORD to your current password")?;
            let password = std::env::var("BATON_NEW_PASSWORD")
                .context("set BATON_NEW_PASSWORD to your new password")?;
            let body = PasswordChange { current, password };
            let _: AccountView = server.client().post_json("/api/password", &body).await?;
            println!("password changed; your console sessions have ended");
            Ok(())
        }
        Command::Revoke { server } => {
            let mut token = String::new();
            std::io::stdin()
                .read_line(&mut token)
                .context("reading the token from standard input")?;
            let body = TokenRevocation {
                token: token.trim().to_owned(),
            };
            let _: Revoked = server
                .client()
                .post_json("/api/tokens/revoke", &body)
                .await?;
            println!("revoked");
            Ok(())
        }
        Command::Token { name, server } => {
            let answer: IssuedToken = server
                .client()
                .post(&format!("/api/accounts/{name}/tokens"), Vec::new())
                .await?;
            println!("{}", answer.token);
            Ok(())
        }
        Command::Schedules { json, server } => {
            let rows: Vec<ScheduleRow> = server.client().get("/api/schedules").await?;
            print_table(
                &rows,
                &[
                    "name",
                    "flow",
                    "cron",
                    "server",
                    "next_fire_at",
                    "last_fired_at",
                ],
                json,
            );
            Ok(())
        }
        #[cfg(feature = "bench")]
        Command::Bench(args) => baton::bench::run(args).await,
    }
}

/// Waits for request `id` to finish: prints its output when it succeeded,
/// fails with its error otherwise.
async fn wait_for(client: &Client, id: &str) -> anyhow::Result<()> {
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
