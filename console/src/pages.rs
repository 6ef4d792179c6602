//! One function per page and per live fragment.

use maud::{Markup, html};

use crate::{Page, layout, time};

/// One server of the Server List.
#[derive(Debug, Clone)]
pub struct ServerView {
    /// Server ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// `running`, `terminated` or `stopped`.
    pub status: String,
    /// Listen address.
    pub address: String,
    /// Incarnation.
    pub incarnation: i64,
    /// Heartbeat age in milliseconds.
    pub heartbeat_age_ms: i64,
    /// Unfinished requests owned.
    pub owned: i64,
    /// Is this the server serving the page?
    pub current: bool,
    /// Hash over the active versions it has loaded.
    pub flow_set: String,
    /// Its flows repository's HEAD (short).
    pub flows_head: String,
    /// Whether its flow-set or HEAD differs from the current server's.
    pub drift: bool,
    /// Who renamed it last, when.
    pub renamed: String,
}

/// One row of the Status List.
#[derive(Debug, Clone)]
pub struct RequestView {
    /// Request ID.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// Status string (`waiting_retry`, …).
    pub status: String,
    /// Plain status label.
    pub label: String,
    /// Owner server's name.
    pub owner: String,
    /// Attempts started.
    pub attempts: i64,
    /// Last checkpoint name.
    pub last_checkpoint: String,
    /// Created, ms.
    pub created_at: i64,
    /// Updated, ms.
    pub updated_at: i64,
}

/// The Status List's filters, as given in the query string.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Filters {
    /// Status string.
    pub status: Option<String>,
    /// Flow name.
    pub flow: Option<String>,
    /// Owner server ID.
    pub server: Option<String>,
    /// Created on or after (YYYY-MM-DD).
    pub from: Option<String>,
    /// Created before the end of (YYYY-MM-DD).
    pub to: Option<String>,
    /// Request ID prefix.
    pub id: Option<String>,
    /// Keyset cursor: list requests older than this one.
    pub after: Option<String>,
}

impl Filters {
    /// The filters as a query string, without the cursor.
    pub fn query(&self) -> String {
        let pairs = [
            ("status", &self.status),
            ("flow", &self.flow),
            ("server", &self.server),
            ("from", &self.from),
            ("to", &self.to),
            ("id", &self.id),
        ];
        pairs
            .iter()
            .filter_map(|(k, v)| {
                v.as_deref()
                    .filter(|v| !v.is_empty())
                    .map(|v| format!("{k}={}", encode(v)))
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn csrf_field(page: &Page) -> Markup {
    html! { input type="hidden" name="csrf" value=(page.csrf); }
}

/// Status › Flow › Server List.
pub fn servers_page(page: &Page, servers: &[ServerView]) -> Markup {
    layout(
        page,
        html! {
            table {
                thead { tr { th {} th { "Name" } th { "ID" } th { "Status" } th { "Address" } th { "Heartbeat" } th { "Requests" } th { "Flow-set" } th { "Flows HEAD" } } }
                tbody #servers hx-get="/status/servers/rows" hx-trigger="every 2s" hx-swap="innerHTML" {
                    (server_rows(servers))
                }
            }
        },
    )
}

/// The Server List's rows (the live fragment).
pub fn server_rows(servers: &[ServerView]) -> Markup {
    html! {
        @for server in servers {
            tr.server.drift[server.drift] data-status=(server.status) {
                td { @if server.current { span title="the server you are logged into" { "★" } } }
                td.name title=(server.renamed) { (server.name) @if !server.renamed.is_empty() { br; small { (server.renamed) } } }
                td { code { (server.id) } }
                td class=(server.status) { span class={"dot " (server.status)} {} (server.status) }
                td { (server.address) }
                td { (server.heartbeat_age_ms) " ms ago" }
                td { (server.owned) }
                td { code { (server.flow_set) } @if server.drift { " ⚠ differs" } }
                td { code { (server.flows_head) } }
            }
        }
    }
}

/// Status › Flow › Status List.
pub fn requests_page(
    page: &Page,
    filters: &Filters,
    statuses: &[(&str, &str)],
    servers: &[(String, String)],
    rows: &[RequestView],
    older: Option<&str>,
    flash: Option<&str>,
) -> Markup {
    let live = format!(
        "/status/requests/rows?{}{}",
        filters.query(),
        filters
            .after
            .as_deref()
            .map(|a| format!("&after={}", encode(a)))
            .unwrap_or_default()
    );
    layout(
        page,
        html! {
            @if let Some(flash) = flash { p.flash { (flash) } }
            form.filters method="get" action="/status/requests" {
                label { "Status" select name="status" {
                    option value="" { "any" }
                    @for (value, label) in statuses {
                        option value=(value) selected[filters.status.as_deref() == Some(value)] { (label) }
                    }
                } }
                label { "Flow" input name="flow" value=[filters.flow.as_deref()]; }
                label { "Server" select name="server" {
                    option value="" { "any" }
                    @for (id, name) in servers {
                        option value=(id) selected[filters.server.as_deref() == Some(id.as_str())] { (name) }
                    }
                } }
                label { "From" input type="date" name="from" value=[filters.from.as_deref()]; }
                label { "To" input type="date" name="to" value=[filters.to.as_deref()]; }
                label { "ID starts with" input name="id" value=[filters.id.as_deref()]; }
                button { "Filter" }
            }
            form method="post" action="/status/requests/actions" {
                (csrf_field(page))
                table {
                    thead { tr { th {} th { "ID" } th { "Flow" } th { "Status" } th { "Server" } th { "Attempts" } th { "Last checkpoint" } th { "Created" } th { "Updated" } } }
                    tbody #requests hx-get=(live) hx-trigger="every 3s" hx-swap="innerHTML" {
                        (request_rows(rows))
                    }
                }
                p {
                    button name="action" value="reexecute" { "Re-execute selected" }
                    " "
                    button name="action" value="cancel" { "Cancel selected" }
                }
            }
            @if let Some(older) = older {
                p { a href={"/status/requests?" (filters.query()) "&after=" (encode(older))} { "Older →" } }
            }
        },
    )
}

/// The Status List's rows (the live fragment). A checkbox keeps its state
/// across refreshes (`hx-preserve`).
pub fn request_rows(rows: &[RequestView]) -> Markup {
    html! {
        @for row in rows {
            tr.request data-id=(row.id) data-status=(row.status) {
                td { input type="checkbox" name="id" value=(row.id) id={"select-" (row.id)} hx-preserve; }
                td { a href={"/status/requests/" (row.id)} { code { (row.id) } } }
                td { (row.flow) }
                td class=(row.status) { (row.label) }
                td { (row.owner) }
                td { (row.attempts) }
                td { (row.last_checkpoint) }
                td { (time(row.created_at)) }
                td { (time(row.updated_at)) }
            }
        }
    }
}

/// A committed checkpoint on the request detail page.
#[derive(Debug, Clone)]
pub struct CheckpointView {
    /// Journal generation.
    pub generation: i64,
    /// Position.
    pub seq: i64,
    /// Name.
    pub name: String,
    /// Name of the server that wrote it.
    pub server: String,
    /// Epoch it was written at.
    pub epoch: i64,
    /// Commit time, ms.
    pub at: i64,
    /// Payload size.
    pub size: i64,
}

/// One entry of a request's history.
#[derive(Debug, Clone)]
pub struct EventView {
    /// When, ms.
    pub at: i64,
    /// What.
    pub kind: baton_core::EventKind,
    /// Name of the server (or account) that did it.
    pub server: String,
    /// Epoch.
    pub epoch: Option<i64>,
    /// Details.
    pub detail: String,
}

/// A JSON payload shown escaped, pretty and possibly truncated.
#[derive(Debug, Clone)]
pub struct PayloadView {
    /// Pretty JSON (already truncated).
    pub preview: String,
    /// Whether the preview is cut.
    pub truncated: bool,
    /// Where the whole payload downloads from.
    pub download: String,
}

/// Everything on the request detail page.
#[derive(Debug, Clone)]
pub struct RequestDetail {
    /// The row.
    pub request: RequestView,
    /// Pinned version.
    pub version: String,
    /// Epoch.
    pub epoch: i64,
    /// One page of checkpoints, all generations.
    pub checkpoints: Vec<CheckpointView>,
    /// Where the next page of checkpoints is, if there are more.
    pub checkpoints_more: Option<String>,
    /// One page of history.
    pub events: Vec<EventView>,
    /// Where the next page of history is, if there is more.
    pub events_more: Option<String>,
    /// Input.
    pub input: PayloadView,
    /// Output, once succeeded.
    pub output: Option<PayloadView>,
    /// Last error.
    pub error: Option<String>,
}

const PALETTE: [&str; 6] = [
    "#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2",
];

/// The checkpoint timeline: time across, one colour per server; attempts
/// (claims) as vertical lines.
pub fn timeline(detail: &RequestDetail) -> Markup {
    let (width, height, left) = (760.0, 90.0, 10.0);
    let attempts: Vec<&EventView> = detail
        .events
        .iter()
        .filter(|e| e.kind.starts_a_run())
        .collect();
    let times: Vec<i64> = detail
        .checkpoints
        .iter()
        .map(|c| c.at)
        .chain(detail.events.iter().map(|e| e.at))
        .collect();
    let (Some(&start), Some(&end)) = (times.iter().min(), times.iter().max()) else {
        return html! {};
    };
    let span = (end - start).max(1) as f64;
    let x = |at: i64| left + (at - start) as f64 / span * (width - 2.0 * left);
    let mut servers: Vec<&str> = Vec::new();
    for name in detail
        .checkpoints
        .iter()
        .map(|c| c.server.as_str())
        .chain(attempts.iter().map(|e| e.server.as_str()))
    {
        if !servers.contains(&name) {
            servers.push(name);
        }
    }
    let color = |server: &str| {
        PALETTE[servers.iter().position(|s| *s == server).unwrap_or(0) % PALETTE.len()]
    };
    html! {
        svg.timeline width=(width) height=(height + 20.0 * servers.len() as f64) viewBox={"0 0 " (width) " " (height + 20.0 * servers.len() as f64)} role="img" {
            title { "Checkpoint timeline" }
            line x1=(left) y1="45" x2=(width - left) y2="45" stroke="#9ca3af" {}
            @for attempt in &attempts {
                line x1=(x(attempt.at)) y1="15" x2=(x(attempt.at)) y2="75" stroke=(color(&attempt.server)) stroke-dasharray="3,2" {
                    title { (attempt.kind.as_str()) " by " (attempt.server) " at " (time(attempt.at)) }
                }
            }
            @for checkpoint in &detail.checkpoints {
                circle.checkpoint cx=(x(checkpoint.at)) cy="45" r="5" fill=(color(&checkpoint.server)) {
                    title { "#" (checkpoint.seq) " " (checkpoint.name) " by " (checkpoint.server) " at " (time(checkpoint.at)) ", " (checkpoint.size) " bytes" }
                }
            }
            text x=(left) y="88" { (time(start)) }
            text x=(width - left) y="88" text-anchor="end" { (time(end)) }
            @for (i, server) in servers.iter().enumerate() {
                rect x=(left) y=(height + 20.0 * i as f64 + 4.0) width="10" height="10" fill=(color(server)) {}
                text x=(left + 16.0) y=(height + 20.0 * i as f64 + 13.0) { (server) }
            }
        }
    }
}

fn payload(title: &str, view: &PayloadView) -> Markup {
    html! {
        h3 { (title) }
        pre { (view.preview) }
        @if view.truncated { p { "Truncated. " a href=(view.download) { "Download the whole " (title.to_lowercase()) } } }
    }
}

/// The request detail page.
pub fn request_page(page: &Page, detail: &RequestDetail) -> Markup {
    let request = &detail.request;
    layout(
        page,
        html! {
            table {
                tr { th { "Flow" } td { (request.flow) } }
                tr { th { "Version" } td { code { (detail.version) } } }
                tr { th { "Status" } td class=(request.status) { (request.label) } }
                tr { th { "Server" } td { (request.owner) } }
                tr { th { "Attempts" } td { (request.attempts) } }
                tr { th { "Epoch" } td { (detail.epoch) } }
                tr { th { "Created" } td { (time(request.created_at)) } }
                tr { th { "Updated" } td { (time(request.updated_at)) } }
            }
            p {
                form.inline method="post" action={"/status/requests/" (request.id) "/reexecute"} { (csrf_field(page)) button { "Re-execute" } }
                " "
                form.inline method="post" action={"/status/requests/" (request.id) "/cancel"} { (csrf_field(page)) button { "Cancel" } }
            }
            @if let Some(error) = &detail.error { h3 { "Error" } pre.error { (error) } }
            h3 { "Checkpoints" }
            (timeline(detail))
            table {
                thead { tr { th { "#" } th { "Name" } th { "Server" } th { "Epoch" } th { "At" } th { "Size" } } }
                @for c in &detail.checkpoints {
                    tr { td { (c.generation) "." (c.seq) } td { (c.name) } td { (c.server) } td { (c.epoch) } td { (time(c.at)) } td { (c.size) " B" } }
                }
            }
            @if let Some(more) = &detail.checkpoints_more { p { a href=(more) { "More checkpoints" } } }
            h3 { "Attempts and owners" }
            table {
                thead { tr { th { "At" } th { "Event" } th { "By" } th { "Epoch" } th { "Detail" } } }
                @for e in &detail.events {
                    tr { td { (time(e.at)) } td { (e.kind.as_str()) } td { (e.server) } td { @if let Some(epoch) = e.epoch { (epoch) } } td { (e.detail) } }
                }
            }
            @if let Some(more) = &detail.events_more { p { a href=(more) { "More history" } } }
            (payload("Input", &detail.input))
            @if let Some(output) = &detail.output { (payload("Output", output)) }
        },
    )
}

/// A flow on the Flows page.
#[derive(Debug, Clone)]
pub struct FlowView {
    /// Name.
    pub name: String,
    /// Active version.
    pub version: String,
    /// Versions deployed.
    pub versions: usize,
    /// Declared properties, as label/value pairs.
    pub properties: Vec<(String, String)>,
    /// Local-resource warnings.
    pub warnings: Vec<String>,
}

/// Tools › Flows.
pub fn flows_page(page: &Page, flows: &[FlowView]) -> Markup {
    layout(
        page,
        html! {
            @if flows.is_empty() { p.notice { "No flow is deployed. Deploy one with " code { "baton deploy PATH" } "." } }
            @for flow in flows {
                section.flow {
                    h2 { (flow.name) }
                    p { "Active version " code { (flow.version) } " (" (flow.versions) " deployed)" }
                    table { @for (label, value) in &flow.properties { tr { th { (label) } td { (value) } } } }
                    @for warning in &flow.warnings { p.notice { (warning) } }
                    form method="post" action={"/flows/" (flow.name) "/run"} {
                        (csrf_field(page))
                        label { "Input (JSON) " br; textarea name="input" { "{}" } }
                        br;
                        button { "Run " (flow.name) }
                    }
                }
            }
        },
    )
}

/// The flows repository as the Version Control page shows it.
#[derive(Debug, Clone)]
pub struct RepoView {
    /// Path on this server.
    pub path: String,
    /// Branch.
    pub branch: String,
    /// HEAD: id, author, message, time (ms).
    pub head: Option<(String, String, String, i64)>,
    /// Upstream remote URL.
    pub remote: Option<String>,
    /// Local commits not on the upstream.
    pub ahead: usize,
    /// Upstream commits not local.
    pub behind: usize,
    /// Files with uncommitted changes.
    pub uncommitted: usize,
}

/// What Update did, per flow crate: path or flow, old, new, error.
#[derive(Debug, Clone)]
pub struct UpdateView {
    /// HEAD before → after.
    pub moved: (String, String),
    /// (flow, old version, new version, error)
    pub flows: Vec<(String, String, String, String)>,
}

/// Status › Version Control.
pub fn version_control_page(
    page: &Page,
    repo: Result<&RepoView, &str>,
    update: Option<Result<&UpdateView, &str>>,
    flow_set: &[(String, String)],
) -> Markup {
    layout(
        page,
        html! {
            @match update {
                Some(Ok(update)) => {
                    p.flash { "Updated " code { (update.moved.0) } " → " code { (update.moved.1) } }
                    @if !update.flows.is_empty() {
                        table {
                            thead { tr { th { "Flow" } th { "Old" } th { "New" } th { "Build" } } }
                            @for (flow, old, new, error) in &update.flows {
                                tr { td { (flow) } td { code { (old) } } td { code { (new) } } td.error { (error) } }
                            }
                        }
                    }
                }
                Some(Err(error)) => { p.notice { "Update refused: " (error) } }
                None => {}
            }
            @match repo {
                Ok(repo) => {
                    table {
                        tr { th { "Repository" } td { code { (repo.path) } } }
                        tr { th { "Branch" } td { (repo.branch) } }
                        @if let Some((id, author, message, time)) = &repo.head {
                            tr { th { "HEAD" } td { code { (id) } " " (message) br; (author) ", " (crate::time(*time)) } }
                        }
                        tr { th { "Remote" } td { (repo.remote.as_deref().unwrap_or("none")) } }
                        tr { th { "Ahead / behind" } td { (repo.ahead) " / " (repo.behind) } }
                        tr { th { "Uncommitted changes" } td { (repo.uncommitted) } }
                    }
                    form method="post" action="/status/version-control/update" {
                        (csrf_field(page))
                        button { "Update" }
                        " fetches, fast-forwards only, then builds and deploys the flows that changed."
                    }
                }
                Err(error) => { p.notice { (error) } }
            }
            h2 { "Active versions" }
            table {
                thead { tr { th { "Flow" } th { "Active version" } } }
                @for (flow, version) in flow_set { tr { td { (flow) } td { code { (version) } } } }
            }
        },
    )
}

/// Settings › Services › Flow.
pub struct SettingsView {
    /// This server's ID.
    pub id: String,
    /// This server's name.
    pub name: String,
    /// Settings that apply after a restart, as label/value pairs.
    pub restart_to_apply: Vec<(String, String)>,
    /// Message after a change.
    pub flash: Option<String>,
}

/// Settings › Services › Flow.
pub fn settings_page(page: &Page, settings: &SettingsView) -> Markup {
    layout(
        page,
        html! {
            @if let Some(flash) = &settings.flash { p.flash { (flash) } }
            h2 { "Server" }
            form method="post" action="/settings/flow/name" {
                (csrf_field(page))
                label { "Server name (ID " code { (settings.id) } ") " input name="name" value=(settings.name) required maxlength="100"; }
                " " button { "Save" }
            }
            h2 { "Checkpoint" }
            p { "These come from the configuration file, the environment or flags; change them there and restart to apply." }
            table { @for (label, value) in &settings.restart_to_apply { tr { th { (label) } td { code { (value) } } } } }
        },
    )
}

/// An account on Settings › Accounts.
#[derive(Debug, Clone)]
pub struct AccountView {
    /// Login name.
    pub name: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Whether it is disabled.
    pub disabled: bool,
    /// Created, ms.
    pub created_at: i64,
    /// Unexpired API tokens.
    pub tokens: i64,
    /// Unexpired console sessions.
    pub sessions: i64,
    /// Whether it is the account viewing the page.
    pub you: bool,
}

/// Where an account's action posts to.
fn account_action(name: &str, action: &str) -> String {
    format!("/settings/accounts/{}/{action}", encode(name))
}

/// Settings › Accounts: every account with its actions, and a form for a
/// new one. Destructive actions (delete, revoke tokens) lead to a
/// confirmation page first.
pub fn accounts_page(
    page: &Page,
    accounts: &[AccountView],
    roles: &[&str],
    password_min: usize,
    flash: Option<&str>,
) -> Markup {
    layout(
        page,
        html! {
            @if let Some(flash) = flash { p.flash { (flash) } }
            table.accounts {
                thead { tr { th { "Name" } th { "Role" } th { "Status" } th { "API tokens" } th { "Sessions" } th { "Created" } th { "Password" } th {} } }
                tbody {
                    @for account in accounts {
                        tr.account data-name=(account.name) data-role=(account.role) data-disabled=(account.disabled) data-tokens=(account.tokens) {
                            td.name { (account.name) @if account.you { " (you)" } }
                            td {
                                form.inline method="post" action=(account_action(&account.name, "role")) {
                                    (csrf_field(page))
                                    select name="role" aria-label="Role" {
                                        @for role in roles {
                                            option value=(role) selected[*role == account.role] { (role) }
                                        }
                                    }
                                    " " button { "Set role" }
                                }
                            }
                            td {
                                @if account.disabled {
                                    "disabled "
                                    form.inline method="post" action=(account_action(&account.name, "enable")) { (csrf_field(page)) button { "Enable" } }
                                } @else {
                                    "enabled "
                                    @if !account.you {
                                        form.inline method="post" action=(account_action(&account.name, "disable")) { (csrf_field(page)) button { "Disable" } }
                                    }
                                }
                            }
                            td.tokens {
                                (account.tokens)
                                @if account.tokens > 0 { " " a href=(account_action(&account.name, "revoke-tokens")) { "Revoke…" } }
                            }
                            td { (account.sessions) }
                            td { (time(account.created_at)) }
                            td {
                                form.inline method="post" action=(account_action(&account.name, "password")) {
                                    (csrf_field(page))
                                    input type="password" name="password" aria-label={"New password for " (account.name)} autocomplete="new-password" minlength=(password_min) required;
                                    " " button { "Reset" }
                                }
                            }
                            td { @if !account.you { a.delete href=(account_action(&account.name, "delete")) { "Delete…" } } }
                        }
                    }
                }
            }
            h2 { "New account" }
            form.new-account method="post" action="/settings/accounts" {
                (csrf_field(page))
                p { label { "Name " input name="name" required maxlength="64" pattern="[A-Za-z0-9._@-]+" autocomplete="off"; } }
                p { label { "Role " select name="role" {
                    @for role in roles { option value=(role) selected[*role == "viewer"] { (role) } }
                } } }
                p { label { "Password " input type="password" name="password" autocomplete="new-password" minlength=(password_min) required; } " at least " (password_min) " characters" }
                button { "Create" }
            }
        },
    )
}

/// Asks before a destructive action on an account: the form posts
/// `confirm=yes` only with its box ticked, without any script.
pub fn confirm_page(
    page: &Page,
    name: &str,
    action: &str,
    question: &str,
    button: &str,
    notice: Option<&str>,
) -> Markup {
    layout(
        page,
        html! {
            @if let Some(notice) = notice { p.notice { (notice) } }
            form.confirm method="post" action=(account_action(name, action)) {
                (csrf_field(page))
                p { (question) }
                p { label { input type="checkbox" name="confirm" value="yes" required; " Yes, I am sure" } }
                button { (button) }
                " "
                a href="/settings/accounts" { "Cancel" }
            }
        },
    )
}

/// The logged-in account changes its own password.
pub fn password_page(page: &Page, password_min: usize, notice: Option<&str>) -> Markup {
    layout(
        page,
        html! {
            @if let Some(notice) = notice { p.notice { (notice) } }
            form.password method="post" action="/account/password" {
                (csrf_field(page))
                p { label { "Current password " input type="password" name="current" autocomplete="current-password" required; } }
                p { label { "New password " input type="password" name="password" autocomplete="new-password" minlength=(password_min) required; } " at least " (password_min) " characters" }
                p { label { "New password again " input type="password" name="password2" autocomplete="new-password" minlength=(password_min) required; } }
                button { "Change password" }
            }
            p { "Changing it ends every session of your account, this one too: log in again afterwards." }
        },
    )
}

/// A sentence with one link onwards.
pub fn notice_page(page: &Page, message: &str, href: &str, link: &str) -> Markup {
    layout(
        page,
        html! { p.flash { (message) } p { a href=(href) { (link) } } },
    )
}

/// The login form; it posts `username` and `password` to `/login`.
pub fn login_page(page: &Page, error: Option<&str>) -> Markup {
    layout(
        page,
        html! {
            @if let Some(error) = error { p.notice { (error) } }
            form method="post" action="/login" {
                (csrf_field(page))
                p { label { "Username " input name="username" autocomplete="username" required; } }
                p { label { "Password " input type="password" name="password" autocomplete="current-password" required; } }
                button { "Log in" }
            }
        },
    )
}

/// A refusal or error shown as a page.
pub fn message_page(page: &Page, message: &str) -> Markup {
    layout(
        page,
        html! { p.notice { (message) } p { a href="/status/requests" { "Back to the Status List" } } },
    )
}
