//! The API's bodies and answers, one type each: the handlers serialize them
//! and the CLI (`client`, `main`) deserializes the same types, so a field
//! renamed on one side is a compile error on the other.

use baton_core::store::{
    CheckpointRecord, EventRow, FlowRow, OWNED_COUNTED_UP_TO, RequestRow, ServerRow,
};
use baton_core::{FlowProperties, RequestStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
}

/// `POST /api/flows/{name}/requests` without `?wait`: the request started,
/// or the one its idempotency key started before.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Started {
    /// Request ID.
    pub id: String,
    /// Whether this call created it (`false`: its key named an earlier one).
    pub created: bool,
}

/// `POST /api/flows/{name}/requests?wait=true`: the request when it ended
/// or the wait ran out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Waited {
    /// Request ID.
    pub id: String,
    /// Its status then.
    pub status: RequestStatus,
    /// The output, once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The last error, once it ended otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A request in a list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestSummary {
    /// Request ID.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// Pinned version.
    pub version: String,
    /// Status.
    pub status: RequestStatus,
    /// Owning server.
    pub owner: Option<String>,
    /// Attempts started.
    pub attempts: i64,
    /// Name of the last committed checkpoint.
    pub last_checkpoint: Option<String>,
    /// Created, ms.
    pub created_at: i64,
    /// Last changed, ms.
    pub updated_at: i64,
    /// The last error.
    pub error: Option<String>,
    /// The request whose flow started this one (a child flow).
    pub parent: Option<String>,
    /// Held by an operator: it does not run until resumed.
    pub held: bool,
}

impl From<&RequestRow> for RequestSummary {
    fn from(request: &RequestRow) -> Self {
        Self {
            id: request.id.clone(),
            flow: request.flow.clone(),
            version: request.version.clone(),
            status: request.status,
            owner: request.owner.clone(),
            attempts: request.attempts,
            last_checkpoint: request.last_checkpoint.clone(),
            created_at: request.created_at,
            updated_at: request.updated_at,
            error: request.error.clone(),
            parent: request.parent.clone(),
            held: request.held,
        }
    }
}

/// `GET /api/requests/{id}`: a request with one page of its checkpoints
/// and history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestDetail {
    /// What a list shows of it.
    #[serde(flatten)]
    pub summary: RequestSummary,
    /// Flow errors counted against `max_retries`.
    pub failures: i64,
    /// Fencing epoch.
    pub epoch: i64,
    /// Journal generation.
    pub generation: i64,
    /// When the next attempt is due, ms.
    pub next_attempt_at: Option<i64>,
    /// The output, once succeeded.
    pub output: Value,
    /// The flow's JSON details of the last error (`FlowError::with_details`).
    pub error_details: Option<Value>,
    /// The event the flow waits for, while it waits.
    pub waiting_for: Option<String>,
    /// The values the flow published (`ctx.set_status`), by key.
    pub status_values: std::collections::BTreeMap<String, Value>,
    /// The requests its flow started (`ctx.start_flow`), newest first: the
    /// first hundred; `GET /api/requests?parent=ID` lists all.
    pub children: Vec<RequestSummary>,
    /// Checkpoints, in order.
    pub checkpoints: Vec<CheckpointView>,
    /// `checkpoints_after` of the next page, if there is one.
    pub checkpoints_next: Option<i64>,
    /// History, oldest first.
    pub events: Vec<EventRow>,
    /// `events_after` of the next page, if there is one.
    pub events_next: Option<i64>,
}

/// `GET /api/requests/{id}/bundle`: what replaying a request takes, with
/// no database: the component, the input and the current journal
/// generation with its values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestBundle {
    /// Request ID.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// The version the component is (the request's own unless asked for
    /// another).
    pub version: String,
    /// Status.
    pub status: RequestStatus,
    /// The journal generation replayed.
    pub generation: i64,
    /// The component's bytes, base64.
    pub component: String,
    /// The input.
    pub input: Value,
    /// The generation's records, in order.
    pub journal: Vec<BundleRecord>,
    /// The output, once succeeded.
    pub output: Value,
    /// The last error.
    pub error: Option<String>,
}

/// One record of a bundle's journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleRecord {
    /// Position in its generation.
    pub seq: i64,
    /// Name.
    pub name: String,
    /// The committed value.
    pub value: Value,
}

/// A committed checkpoint, without its value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointView {
    /// Position in its generation.
    pub seq: i64,
    /// Journal generation.
    pub generation: i64,
    /// Name the flow gave it.
    pub name: String,
    /// Server that committed it.
    pub server: String,
    /// Epoch it was committed at.
    pub epoch: i64,
    /// Commit time, ms.
    pub at: i64,
    /// Size of its value in bytes.
    pub size: i64,
}

impl From<&CheckpointRecord> for CheckpointView {
    fn from(c: &CheckpointRecord) -> Self {
        Self {
            seq: c.seq,
            generation: c.generation,
            name: c.name.clone(),
            server: c.server.clone(),
            epoch: c.epoch,
            at: c.at,
            size: c.payload.size,
        }
    }
}

/// What re-execute, a fork or cancel left a request as.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestChanged {
    /// Request ID.
    pub id: String,
    /// Its status now.
    pub status: RequestStatus,
    /// Its owner now (re-execute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// For a fork, the request it was forked from (`id` is the new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<String>,
}

/// What hold or resume left a request as.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldChanged {
    /// Request ID.
    pub id: String,
    /// Whether it is held now.
    pub held: bool,
    /// Whether this call changed it (`false`: it was so already).
    pub changed: bool,
}

/// `POST /api/requests/{id}/events/{name}`: the event was kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventSent {
    /// The request.
    pub id: String,
    /// The event's name.
    pub name: String,
    /// Whether this send kept it: `false` when its idempotency key had
    /// kept it before.
    pub kept: bool,
}

/// A flow with its active version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowView {
    /// Flow name.
    pub name: String,
    /// Active version (component hash).
    pub version: String,
    /// Component size in bytes.
    pub size: i64,
    /// When the active version was switched, ms.
    pub updated_at: i64,
    /// What the version declares.
    pub properties: FlowProperties,
}

impl From<FlowRow> for FlowView {
    fn from(flow: FlowRow) -> Self {
        Self {
            name: flow.name,
            version: flow.active.hash,
            size: flow.active.size,
            updated_at: flow.updated_at,
            properties: flow.active.properties,
        }
    }
}

/// `POST /api/schedules`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewSchedule {
    /// Unique name.
    pub name: String,
    /// Flow to start.
    pub flow: String,
    /// Cron expression.
    pub cron: String,
    /// The IANA time zone the expression is read in (default UTC).
    #[serde(default)]
    pub tz: Option<String>,
    /// Input of every request it starts.
    #[serde(default)]
    pub input: Option<Value>,
    /// Fire only on the server that receives this call (a local schedule).
    #[serde(default)]
    pub local: bool,
}

/// Something named that was deleted (a schedule, an account).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deleted {
    /// Its name.
    pub name: String,
    /// Always `true`.
    pub deleted: bool,
}

/// A server of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerView {
    /// Server ID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `running`, `terminated` or `stopped`.
    pub status: String,
    /// Where its console and API listen.
    pub address: String,
    /// Bumped every time it (re)joins.
    pub incarnation: i64,
    /// Age of its last heartbeat on the database clock, ms.
    pub heartbeat_age_ms: i64,
    /// Unfinished requests it owns, counted up to 10,000.
    pub owned: i64,
    /// It owns more than `owned` says (the count stops at 10,000).
    pub owned_more: bool,
    /// Hash over the active versions it has loaded.
    pub flow_set: Option<String>,
    /// HEAD of its flows repository.
    pub flows_head: Option<String>,
    /// The account that last renamed it.
    pub renamed_by: Option<String>,
    /// Whether it is the server that answered.
    pub current: bool,
}

impl ServerView {
    /// The view of `server` as the server `current` sees it.
    pub fn of(server: ServerRow, current: &str) -> Self {
        Self {
            current: server.id == current,
            status: server.status.as_str().to_owned(),
            renamed_by: server.renamed.map(|(by, _)| by),
            id: server.id,
            name: server.name,
            address: server.address,
            incarnation: server.incarnation,
            heartbeat_age_ms: server.heartbeat_age_ms,
            owned: server.owned.unwrap_or_default().min(OWNED_COUNTED_UP_TO),
            owned_more: server.owned.unwrap_or_default() > OWNED_COUNTED_UP_TO,
            flow_set: server.flow_set,
            flows_head: server.flows_head,
        }
    }
}

/// `POST /api/servers/{id}/name`, and its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerName {
    /// Server ID (in the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The new display name.
    pub name: String,
}

/// `POST /api/accounts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewAccount {
    /// Login name.
    pub name: String,
    /// Password.
    pub password: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
}

/// An account as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountView {
    /// Login name.
    pub name: String,
    /// Its role, where the answer is about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Whether it is disabled, where the answer is about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// `POST /api/accounts/{name}/role`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleChange {
    /// The new role.
    pub role: String,
}

/// `POST /api/password`: the caller changes their own password.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasswordChange {
    /// The current password.
    pub current: String,
    /// The new one.
    pub password: String,
}

/// `POST /api/accounts/{name}/password`: an admin sets a password.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasswordReset {
    /// The new password.
    pub password: String,
}

/// `POST /api/accounts/{name}/tokens`: a new API token, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedToken {
    /// The account it acts as.
    pub account: String,
    /// The secret.
    pub token: String,
}

/// `DELETE /api/accounts/{name}/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokedTokens {
    /// The account.
    pub account: String,
    /// How many tokens were revoked.
    pub revoked: u64,
}

/// `POST /api/tokens/revoke`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRevocation {
    /// The token to revoke.
    pub token: String,
}

/// The answer to a token revocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revoked {
    /// Always `true`.
    pub revoked: bool,
}
