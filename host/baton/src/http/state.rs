//! What every handler can reach.

use std::sync::Arc;

use baton_core::store::Store;

use crate::config::ServerConfig;
use crate::engine::cluster::Cluster;
use crate::engine::executor::Executor;
use crate::http::credentials::LoginGuard;
use crate::http::live::LiveFeed;
use crate::metrics::Metrics;
use crate::requests::Requests;
use crate::vcs::versions::Versions;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The shared store.
    pub store: Arc<dyn Store>,
    /// This server's executor.
    pub executor: Arc<Executor>,
    /// This server's membership.
    pub cluster: Arc<Cluster>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Resolved settings.
    pub config: Arc<ServerConfig>,
    /// Throttles password guessing on `/login`.
    pub login: Arc<LoginGuard>,
    /// Submit, cancel, re-execute.
    pub requests: Requests,
    /// Deploy, repository state, Update.
    pub versions: Versions,
    /// The cluster's changes, for the console's live pages.
    pub live: LiveFeed,
}
