//! The `baton` command: runs a server, or talks to one.

use std::path::PathBuf;

use baton::config::{FileConfig, ServerConfig};
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

/// Where a server's settings, data, database and storage are, and where
/// it listens: what `baton up` and `baton doctor` both read.
#[derive(clap::Args)]
struct Placement {
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
}

impl Placement {
    /// The file's settings, and the flags' (these four, the rest open).
    fn read(self) -> anyhow::Result<(FileConfig, FileConfig)> {
        let file = match &self.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let flags = FileConfig {
            data: self.data,
            listen: self.listen,
            database: self.database,
            storage: self.storage,
            ..FileConfig::default()
        };
        Ok((file, flags))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Start a server.
    Up {
        #[command(flatten)]
        placement: Placement,
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
        /// The OTLP/HTTP collector to export the requests' traces to, e.g.
        /// http://127.0.0.1:4318 (default: none, nothing is recorded).
        #[arg(long, env = "BATON_OTLP_ENDPOINT")]
        otlp_endpoint: Option<String>,
        /// Flow crates, workspaces or .wasm files to build and deploy at start.
        #[arg(long, num_args = 1..)]
        deploy: Vec<PathBuf>,
    },
    /// Create a flow crate (with its test) in a flows workspace.
    New(baton::cli::scaffold::NewArgs),
    /// Check what a server needs before it starts (database reachable and
    /// migrated, clock, folders writable, port free, toolchain), one line
    /// each; exits non-zero when one fails.
    Doctor {
        #[command(flatten)]
        placement: Placement,
    },
    /// Build (a crate folder) or take (a .wasm file) components and deploy them.
    Deploy(baton::cli::flows::DeployArgs),
    /// Start a request of a flow.
    Run(baton::cli::requests::RunArgs),
    /// List requests, newest first.
    Requests(baton::cli::requests::RequestsArgs),
    /// Show one request with its checkpoints and history.
    Request(baton::cli::requests::RequestArgs),
    /// Wait for a request to finish and print its output (as `run --wait`).
    Wait(baton::cli::requests::WaitArgs),
    /// List the deployed flows with their active versions.
    Flows(baton::cli::flows::FlowsArgs),
    /// List the servers of the cluster.
    Servers(baton::cli::servers::ServersArgs),
    /// Re-execute a request in error, or waiting for a server that is down
    /// (--from K: from a checkpoint); or fork any request into a new one
    /// from a checkpoint (--from K --fork).
    Reexecute(baton::cli::requests::ReexecuteArgs),
    /// Cancel a request that has not finished.
    Cancel(baton::cli::requests::CancelArgs),
    /// Hold a request: no server runs it (no retry, no run after a
    /// takeover) until it is resumed; a running attempt stops before its
    /// next step.
    Hold(baton::cli::requests::HoldArgs),
    /// Resume a held request.
    Resume(baton::cli::requests::HoldArgs),
    /// Requests started, ended, retried and taken over, checkpoints and
    /// duration percentiles, per flow and per server, over a window.
    Statistics(baton::cli::statistics::StatisticsArgs),
    /// Delete finished requests older than an age (with their journals,
    /// histories and inboxes), then the blobs no row names any more.
    Purge(baton::cli::requests::PurgeArgs),
    /// Replay a request's journal here against its flow (or another build)
    /// and say where it diverges, if it does.
    Replay(baton::cli::requests::ReplayArgs),
    /// Send an event to a request: its flow's `wait_event` for that name
    /// gets it (events sent before the wait are kept, in order).
    Send(baton::cli::requests::SendArgs),
    /// Rename a server.
    Rename(baton::cli::servers::RenameArgs),
    /// Create or replace a cron-style schedule that starts a flow.
    Schedule(baton::cli::flows::ScheduleArgs),
    /// Update the flows repository of a server (fetch, fast-forward) and
    /// deploy the flows that changed.
    Sync(baton::cli::flows::SyncArgs),
    /// Create an account (the password is read from BATON_ACCOUNT_PASSWORD).
    Account(baton::cli::accounts::AccountArgs),
    /// Change an existing account: `--password` (from
    /// `BATON_ACCOUNT_PASSWORD`), `--role`, `--disable`, `--enable`,
    /// `--delete`, `--revoke-tokens`.
    Manage(baton::cli::accounts::ManageArgs),
    /// Change your own password: the current one from BATON_PASSWORD, the
    /// new one from BATON_NEW_PASSWORD.
    Passwd(baton::cli::accounts::PasswdArgs),
    /// Revoke an API token (read from standard input, so it stays out of
    /// the shell history).
    Revoke(baton::cli::accounts::RevokeArgs),
    /// Issue an API token for an account (printed once).
    Token(baton::cli::accounts::TokenArgs),
    /// List schedules.
    Schedules(baton::cli::flows::SchedulesArgs),
    /// Print the shell completion script: `source <(baton completions bash)`,
    /// or write it where your shell loads completions from.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Benchmarks: checkpointed requests against raw commits.
    #[cfg(feature = "bench")]
    Bench(baton::bench::BenchArgs),
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
            placement,
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
            otlp_endpoint,
            deploy,
        } => {
            let (file, placed) = placement.read()?;
            let flags = FileConfig {
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
                otlp_endpoint,
                trusted_proxies: None,
                session_ttl_s,
                token_ttl_s,
                ..placed
            };
            baton::server::up(ServerConfig::resolve(file, flags), deploy).await
        }
        Command::New(args) => baton::cli::scaffold::new_flow(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "baton", &mut std::io::stdout());
            Ok(())
        }
        Command::Doctor { placement } => {
            let (file, flags) = placement.read()?;
            let findings = baton::doctor::examine(&ServerConfig::resolve(file, flags)).await;
            let mut failed = 0;
            for finding in &findings {
                let verdict = match finding.verdict {
                    baton::doctor::Verdict::Ok => "ok",
                    baton::doctor::Verdict::Warn => "warn",
                    baton::doctor::Verdict::Fail => {
                        failed += 1;
                        "FAIL"
                    }
                };
                println!("{verdict:<5}{:<10}{}", finding.check, finding.message);
            }
            if failed > 0 {
                anyhow::bail!("{failed} check(s) failed");
            }
            Ok(())
        }
        Command::Deploy(args) => baton::cli::flows::deploy(args).await,
        Command::Run(args) => baton::cli::requests::run(args).await,
        Command::Wait(args) => baton::cli::requests::wait(args).await,
        Command::Flows(args) => baton::cli::flows::flows(args).await,
        Command::Requests(args) => baton::cli::requests::requests(args).await,
        Command::Request(args) => baton::cli::requests::request(args).await,
        Command::Servers(args) => baton::cli::servers::servers(args).await,
        Command::Reexecute(args) => baton::cli::requests::reexecute(args).await,
        Command::Cancel(args) => baton::cli::requests::cancel(args).await,
        Command::Hold(args) => baton::cli::requests::hold(args, true).await,
        Command::Resume(args) => baton::cli::requests::hold(args, false).await,
        Command::Purge(args) => baton::cli::requests::purge(args).await,
        Command::Statistics(args) => baton::cli::statistics::statistics(args).await,
        Command::Send(args) => baton::cli::requests::send(args).await,
        Command::Replay(args) => baton::cli::requests::replay(args).await,
        Command::Rename(args) => baton::cli::servers::rename(args).await,
        Command::Schedule(args) => baton::cli::flows::schedule(args).await,
        Command::Sync(args) => baton::cli::flows::sync(args).await,
        Command::Account(args) => baton::cli::accounts::account(args).await,
        Command::Manage(args) => baton::cli::accounts::manage(args).await,
        Command::Passwd(args) => baton::cli::accounts::passwd(args).await,
        Command::Revoke(args) => baton::cli::accounts::revoke(args).await,
        Command::Token(args) => baton::cli::accounts::token(args).await,
        Command::Schedules(args) => baton::cli::flows::schedules(args).await,
        #[cfg(feature = "bench")]
        Command::Bench(args) => baton::bench::run(args).await,
    }
}
