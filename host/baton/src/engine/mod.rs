//! What runs requests on a server: membership in the cluster, the retry
//! process, an attempt's checkpoint journal, and the schedules that start
//! requests. Nothing here speaks HTTP.
//!
//! - [`cluster`]: identity, heartbeats, takeover of dead servers, clean stop.
//! - [`executor`]: the retry process that claims due requests and runs attempts.
//! - [`checkpoint`]: an attempt's journal (replay, journaled clock, randomness and sleep).
//! - [`committer`]: fenced checkpoint commits grouped into one transaction.
//! - [`schedule`]: cron-style schedules fired once per tick across the cluster.
//! - [`replay`]: a request's journal replayed against a component, with no
//!   database (`baton replay`).
//! - [`retention`]: the cluster's purge of finished requests and the blob
//!   sweep.

pub mod checkpoint;
pub mod cluster;
pub mod committer;
pub mod executor;
pub mod replay;
pub mod retention;
pub mod schedule;
