//! The Baton server: a durable flow service that runs flows as sandboxed
//! WebAssembly components, commits their progress at checkpoints into a
//! shared store, and fails over between servers.
//!
//! # Layout
//!
//! - [`config`]: settings from file, environment and flags.
//! - [`auth`]: accounts, sessions, API tokens and roles.
//! - [`engine`]: cluster membership, the retry process, an attempt's
//!   checkpoint journal, schedules.
//! - [`requests`]: submit, cancel, re-execute, whoever asks.
//! - [`vcs`]: building and deploying flow versions, the flows repository.
//! - [`accounts`]: the credential life cycle's rules and actions, shared by
//!   the API and the console.
//! - [`api`]: the JSON API, `/healthz`, `/metrics`; [`console`]: HTML pages.
//! - [`server`]: `baton up`, putting the above together.
//! - [`client`]: the CLI commands that talk to a running server.
//! - [`resources`]: which resources a flow uses are local to one server.
//! - [`bench`]: `baton bench`.
//! - [`metrics`]: counters and latency samples.

pub mod accounts;
pub mod api;
pub mod auth;
pub mod bench;
pub mod client;
pub mod config;
pub mod console;
pub mod engine;
pub mod metrics;
pub mod requests;
pub mod resources;
pub mod server;
pub mod vcs;
