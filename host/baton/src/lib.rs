//! The Baton server: a durable flow service that runs flows as sandboxed
//! WebAssembly components, commits their progress at checkpoints into a
//! shared store, and fails over between servers.
//!
//! # Layout
//!
//! - [`config`]: settings from file, environment and flags.
//! - [`engine`]: cluster membership, the retry process, an attempt's
//!   checkpoint journal, schedules.
//! - [`requests`]: submit, cancel, re-execute, hold, fork, whoever asks.
//! - [`statistics`]: the statistics report and this server's checkpoint
//!   counts.
//! - [`vcs`]: building and deploying flow versions, the flows repository.
//! - [`http`]: the JSON API, the console, accounts, sessions and tokens.
//! - [`server`]: `baton up`, putting the above together.
//! - [`doctor`]: `baton doctor`, what a server needs before it starts.
//! - [`cli`]: the commands that talk to a running server, and their client.
//! - [`resources`]: which resources a flow uses are local to one server.
//! - `bench` (feature `bench`, on by default): `baton bench`.
//! - [`metrics`]: counters and latency samples.

#[cfg(feature = "bench")]
pub mod bench;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod requests;
pub mod resources;
pub mod server;
pub mod statistics;
pub mod trace;
pub mod vcs;
