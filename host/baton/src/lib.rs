//! The Baton server: a durable flow service that runs flows as sandboxed
//! WebAssembly components, commits their progress at checkpoints into a
//! shared store, and fails over between servers.
//!
//! # Layout
//!
//! - [`config`]: settings from file, environment and flags.
//! - [`auth`]: accounts, sessions, API tokens and roles.
//! - [`accounts`]: the credential life cycle's rules and actions, shared by
//!   the API and the console.
//! - [`cluster`]: identity, heartbeats, takeover of dead servers, clean stop.
//! - [`executor`]: the retry process that claims due requests and runs attempts.
//! - [`checkpoint`]: an attempt's journal (replay, fenced grouped commits).
//! - [`deploy`]: building, inspecting and storing flow versions.
//! - [`api`]: the JSON API, `/healthz`, `/metrics`; [`console`]: HTML pages.
//! - [`server`]: `baton up`, putting the above together.
//! - [`client`]: the CLI commands that talk to a running server.
//! - [`resources`]: which resources a flow uses are local to one server.
//! - [`schedule`]: cron-style schedules fired once per tick across the cluster.
//! - [`version_control`]: the flows git repository and Update.
//! - [`bench`]: `baton bench`.
//! - [`metrics`]: counters and latency samples.

pub mod accounts;
pub mod api;
pub mod auth;
pub mod bench;
pub mod checkpoint;
pub mod client;
pub mod cluster;
pub mod config;
pub mod console;
pub mod deploy;
pub mod executor;
pub mod metrics;
pub mod resources;
pub mod schedule;
pub mod server;
pub mod version_control;
