//! Tools › Flows, Status › Version Control and Settings › Services › Flow.

use maud::{Markup, html};

use super::csrf_field;
use crate::{Page, layout};

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
                        " fetches, fast-forwards only, then builds the flows that changed and replays their unfinished and last 20 finished requests against each new version: a flow whose journals would diverge stays on its old version. "
                        label { input type="checkbox" name="force" value="on"; " Deploy even if a journal would diverge" }
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
            @if page.admin {
                h2 { "Purge" }
                p { "Deletes finished requests that ended at least this long ago, with their journals, histories and inboxes, then the blobs no row names and nobody wrote for an hour. The configured retention purges once a minute by itself." }
                form.purge method="post" action="/settings/flow/purge" {
                    (csrf_field(page))
                    label { "Older than " input name="older_than" required placeholder="30d" maxlength="20"; }
                    " "
                    label { "Status " select name="status" {
                        option value="" { "any finished" }
                        option value="succeeded" { "succeeded" }
                        option value="error" { "error" }
                        option value="cancelled" { "cancelled" }
                    } }
                    " "
                    label { "Flow " input name="flow" maxlength="100"; }
                    " "
                    label { input type="checkbox" name="dry_run" value="on" checked; " Only count" }
                    " " button { "Purge" }
                }
            }
        },
    )
}
