//! Membership: joining, heartbeats, takeover of dead servers, handover on
//! stop. Liveness is judged only on the store's clock.

use async_trait::async_trait;

use super::StoreError;

/// A server's state as recorded in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerStatus {
    /// Heartbeating (or not yet found dead).
    Running,
    /// Found dead by another server, which took over its requests.
    Terminated,
    /// Stopped cleanly; it handed its requests over.
    Stopped,
}

impl ServerStatus {
    /// The status a stored string names; unknown ones read as terminated.
    pub fn parse(s: &str) -> Self {
        match s {
            "running" => Self::Running,
            "stopped" => Self::Stopped,
            _ => Self::Terminated,
        }
    }

    /// The status string of the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Terminated => "terminated",
            Self::Stopped => "stopped",
        }
    }
}

/// How far an operator's server listing counts each server's unfinished
/// requests: a count reads every one of them, and a server may hold a
/// hundred thousand sleepers, so past this the listing says "more".
pub const OWNED_COUNTED_UP_TO: i64 = 10_000;

/// One server of the cluster.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerRow {
    /// Server ID, kept in the server's data folder.
    pub id: String,
    /// Display name (defaults to the ID).
    pub name: String,
    /// Bumped every time the server (re)joins.
    pub incarnation: i64,
    /// Recorded status.
    pub status: ServerStatus,
    /// Where its console and API listen.
    pub address: String,
    /// When this incarnation joined.
    pub started_at: i64,
    /// Last heartbeat.
    pub heartbeat_at: i64,
    /// Age of the last heartbeat on the database clock.
    pub heartbeat_age_ms: i64,
    /// Requests it owns that are not finished, where they were counted:
    /// up to [`OWNED_COUNTED_UP_TO`], and one more when there are more.
    pub owned: Option<i64>,
    /// Hash over the active versions the server has loaded.
    pub flow_set: Option<String>,
    /// HEAD of the server's flows repository.
    pub flows_head: Option<String>,
    /// The account that last renamed the server, and when.
    pub renamed: Option<(String, i64)>,
}

/// What a takeover moved.
#[derive(Debug, Clone)]
pub struct Takeover {
    /// The dead server.
    pub dead: String,
    /// Requests now owned by the taker, `waiting_retry` at a bumped epoch.
    pub requests: Vec<String>,
    /// Requests whose flow must stay on the dead server: `waiting_retry`,
    /// still its own, at a bumped epoch.
    pub stranded: Vec<String>,
}

/// The store's database connections at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    /// Connections open, idle or in use.
    pub open: u32,
    /// Open connections no one is using.
    pub idle: u32,
}

#[async_trait]
pub trait ServerStore: Send + Sync {
    /// Closes the store once the writes in flight are done: a server's
    /// last act, after it handed its requests over.
    async fn close(&self);

    /// The connection pool's state, for the metrics.
    fn connections(&self) -> Connections;

    /// Calls `wake` whenever a write elsewhere made one of `me`'s requests,
    /// or one handed to the cluster, due (and once after the listening
    /// connection came back, since what was sent meanwhile is lost), until
    /// the store closes. `false` when the database cannot tell: the
    /// scheduler's poll alone finds them.
    async fn listen_for_wakes(
        &self,
        me: &str,
        wake: Box<dyn Fn() + Send + Sync>,
    ) -> Result<bool, StoreError>;

    /// Now on the store's clock, in milliseconds since the Unix epoch.
    async fn now_ms(&self) -> Result<i64, StoreError>;

    /// The recorded state of one server (its `owned` count is not computed: 0).
    async fn server(&self, id: &str) -> Result<Option<ServerRow>, StoreError>;

    /// Every server's ID and name, without counting their requests.
    async fn server_names(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Every server of the cluster, oldest first, without counting their
    /// requests: what the loops that look often (the live feed, a scrape)
    /// read, at a cost that does not grow with the requests held.
    async fn servers(&self) -> Result<Vec<ServerRow>, StoreError>;

    /// Every server of the cluster, oldest first, each with the count of
    /// the unfinished requests it owns, up to [`OWNED_COUNTED_UP_TO`] + 1:
    /// for an operator's listing.
    async fn servers_with_owned(&self) -> Result<Vec<ServerRow>, StoreError>;

    /// Joins the cluster as a new incarnation of `id` and returns it. `name`
    /// renames the server; `None` keeps the recorded name (or the ID).
    async fn join(&self, id: &str, name: Option<&str>, address: &str) -> Result<i64, StoreError>;

    /// Records a heartbeat. `false` means this incarnation is no longer the
    /// running one (it was found dead, or stopped): it must stop executing.
    async fn heartbeat(&self, id: &str, incarnation: i64) -> Result<bool, StoreError>;

    /// Renames a server on behalf of `actor` (recorded).
    async fn rename_server(&self, id: &str, name: &str, actor: &str) -> Result<(), StoreError>;

    /// Records what a server reports besides its heartbeat.
    async fn report_server(
        &self,
        id: &str,
        flow_set: &str,
        flows_head: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Servers still marked running whose heartbeat is older than the lease.
    async fn dead_servers(&self, lease_ms: i64) -> Result<Vec<String>, StoreError>;

    /// Takes over a dead server in one transaction: marks it `terminated`,
    /// moves its requests whose flow allows another server to `waiting_retry`
    /// owned by `me` at a bumped epoch, and shows its requests whose flow
    /// must stay as `waiting_retry`, still its own, at a bumped epoch (so an
    /// operator sees that nothing runs them and can re-execute them
    /// elsewhere; the dead server takes them back if it returns first).
    /// Returns `None` when the server is not dead (any more): another server
    /// got there first, or it heartbeated. Fails with
    /// [`StoreError::Refused`] when `me` is itself no longer running, so a
    /// server found dead cannot adopt anything.
    async fn take_over(
        &self,
        dead: &str,
        me: &str,
        incarnation: i64,
        lease_ms: i64,
    ) -> Result<Option<Takeover>, StoreError>;

    /// Clean stop: marks this incarnation `stopped` and, in the same
    /// transaction, hands its requests that may move over to the cluster
    /// (owner cleared, epoch bumped, due now) so a live server claims them at
    /// once. Requests whose flow must stay wait for this server's return.
    async fn stop_server(&self, id: &str, incarnation: i64) -> Result<Vec<String>, StoreError>;

    /// The lease every server of the cluster judges by, stored in the
    /// database by the first server to start. Returns the cluster's lease in
    /// milliseconds, which is `proposed_ms` unless another server set it
    /// first.
    async fn cluster_lease(&self, proposed_ms: i64) -> Result<i64, StoreError>;

    /// After a restart: this server's requests that were `running` when its
    /// previous incarnation ended become due for a retry here.
    async fn recover_own(&self, id: &str) -> Result<Vec<String>, StoreError>;
}
