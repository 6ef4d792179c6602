//! The use cases on flow versions: deploy a component, read the flows
//! repository's state, Update from it. The API, the console and `baton up`
//! all come here, with this server's runtime, connections and repository.

use std::sync::Arc;

use baton_core::store::Store;

use crate::config::ServerConfig;
use crate::engine::executor::Executor;
use crate::vcs::deploy::{self, DeployError, Deployed, ReplayCheck};
use crate::vcs::repository::{self, RepoState, SyncError, UpdateReport};

/// Flow versions as this server handles them.
#[derive(Clone)]
pub struct Versions {
    store: Arc<dyn Store>,
    executor: Arc<Executor>,
    config: Arc<ServerConfig>,
}

impl Versions {
    /// Versions deployed with `executor`'s runtime and `config`'s
    /// connections and flows repository.
    pub fn new(store: Arc<dyn Store>, executor: Arc<Executor>, config: Arc<ServerConfig>) -> Self {
        Self {
            store,
            executor,
            config,
        }
    }

    /// Checks, stores and activates the component `bytes`, after replaying
    /// the flow's journals against it when `check` asks.
    pub async fn deploy(
        &self,
        bytes: Vec<u8>,
        check: Option<ReplayCheck>,
    ) -> Result<Deployed, DeployError> {
        deploy::deploy(
            &*self.store,
            self.executor.runtime(),
            bytes,
            &self.config.connections,
            check,
        )
        .await
    }

    /// The flows repository's branch, head, remote and local changes.
    pub async fn repository(&self) -> Result<RepoState, SyncError> {
        let path = self.config.flows_repo.clone();
        // git2 blocks: off the async threads.
        tokio::task::spawn_blocking(move || repository::state(path.as_deref()))
            .await
            .map_err(|e| SyncError::Refused(format!("reading the repository failed: {e}")))?
    }

    /// Fetches, fast-forwards, builds (or takes the prebuilt components)
    /// and deploys what changed. Each changed flow's unfinished requests
    /// and its last [`UPDATE_CHECK_LAST`] finished ones are replayed
    /// against its new version first: one that would diverge keeps the
    /// flow on its old version (named in the report), unless `force`.
    pub async fn update(&self, force: bool) -> Result<UpdateReport, SyncError> {
        repository::update(
            self.config.flows_repo.as_deref(),
            self.config
                .build_flows
                .then_some(self.config.flows_build_dir.as_path()),
            &*self.store,
            self.executor.runtime(),
            &self.config.connections,
            ReplayCheck {
                last: UPDATE_CHECK_LAST,
                force,
            },
        )
        .await
    }
}

/// How many finished requests of each flow Update replays against the new
/// version, newest first (all unfinished ones too).
pub const UPDATE_CHECK_LAST: usize = 20;
