//! The Flows page, Version Control and the flow settings.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use baton_console::{FlowView, Section, SettingsView};

use super::{PageError, PageResult, check_csrf, form_field, frame, html};
use crate::http::auth::Account;
use crate::http::state::AppState;

pub(super) async fn flows(
    State(state): State<AppState>,
    account: Option<Extension<Account>>,
    headers: HeaderMap,
) -> PageResult {
    let mut views = Vec::new();
    let schedules = state.store.schedules().await?;
    for flow in state.store.flows().await? {
        let versions = state.store.versions(&flow.name).await?.len();
        let properties = &flow.active.properties;
        views.push(FlowView {
            name: flow.name,
            version: flow.active.hash,
            versions,
            properties: vec![
                (
                    "other_server_retry".into(),
                    properties.other_server_retry.to_string(),
                ),
                (
                    "begin_checkpoint".into(),
                    if properties.begin_checkpoint {
                        "use"
                    } else {
                        "not use"
                    }
                    .into(),
                ),
                ("max_retries".into(), properties.max_retries.to_string()),
                (
                    "retry_interval".into(),
                    format!("{} ms", properties.retry_interval_ms),
                ),
                ("backoff".into(), format!("×{}", properties.backoff_factor)),
                (
                    "max_retry_interval".into(),
                    properties
                        .max_retry_interval_ms
                        .map(|ms| format!("{ms} ms"))
                        .unwrap_or_else(|| "none".into()),
                ),
            ],
            warnings: crate::resources::warnings(properties, &state.config.connections, &schedules),
        });
    }
    let (page, cookie) = frame(
        &state,
        &headers,
        account.as_deref(),
        "Flows",
        Section::Flows,
    )
    .await;
    Ok(html(baton_console::flows_page(&page, &views), cookie))
}

pub(super) async fn run_flow(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let input = form_field(&form, "input").unwrap_or_default();
    let id = state
        .requests
        .submit(&name, input.as_bytes(), None)
        .await?
        .id;
    Ok(Redirect::to(&format!("/status/requests/{id}")).into_response())
}

async fn version_control_view(
    state: &AppState,
    headers: &HeaderMap,
    account: Option<&Account>,
    update: Option<Result<crate::vcs::repository::UpdateReport, String>>,
) -> PageResult {
    let flow_set = state
        .store
        .flows()
        .await?
        .into_iter()
        .map(|f| (f.name, f.active.hash))
        .collect::<Vec<_>>();
    let repo = state
        .versions
        .repository()
        .await
        .map(|r| baton_console::RepoView {
            path: r.path,
            branch: r.branch,
            head: r.head.map(|h| (h.id, h.author, h.message, h.time * 1000)),
            remote: r.remote,
            ahead: r.ahead,
            behind: r.behind,
            uncommitted: r.uncommitted,
        })
        .map_err(|e| e.to_string());
    let update = update.map(|u| {
        u.map(|report| baton_console::UpdateView {
            moved: (
                report.from.unwrap_or_default(),
                report.to.unwrap_or_default(),
            ),
            flows: report
                .flows
                .into_iter()
                .map(|f| {
                    (
                        f.flow.unwrap_or(f.path),
                        f.old.unwrap_or_else(|| "(new)".into()),
                        f.new.unwrap_or_default(),
                        f.error.unwrap_or_else(|| f.warnings.join("; ")),
                    )
                })
                .collect(),
        })
    });
    let (page, cookie) = frame(
        state,
        headers,
        account,
        "Version Control",
        Section::VersionControl,
    )
    .await;
    let body = baton_console::version_control_page(
        &page,
        repo.as_ref().map_err(String::as_str),
        update.as_ref().map(|u| u.as_ref().map_err(String::as_str)),
        &flow_set,
    );
    Ok(html(body, cookie))
}

pub(super) async fn version_control(
    State(state): State<AppState>,
    account: Option<Extension<Account>>,
    headers: HeaderMap,
) -> PageResult {
    version_control_view(&state, &headers, account.as_deref(), None).await
}

pub(super) async fn update_flows(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let force = form_field(&form, "force") == Some("on");
    let report = state
        .versions
        .update(force)
        .await
        .map_err(|e| e.to_string());
    version_control_view(&state, &headers, Some(&account), Some(report)).await
}

async fn settings_view(
    state: &AppState,
    headers: &HeaderMap,
    account: Option<&Account>,
    flash: Option<String>,
) -> PageResult {
    let (page, cookie) = frame(
        state,
        headers,
        account,
        "Settings › Services › Flow",
        Section::Settings,
    )
    .await;
    let config = &state.config;
    let view = SettingsView {
        id: state.cluster.id.clone(),
        name: page.server_name.clone(),
        restart_to_apply: vec![
            ("Checkpoint connection".into(), config.database_redacted()),
            (
                "Checkpoint storage path".into(),
                config.storage.display().to_string(),
            ),
            ("Data folder".into(), config.data.display().to_string()),
            ("Listen".into(), config.listen.clone()),
            (
                "Heartbeat".into(),
                format!("{} ms", config.heartbeat.as_millis()),
            ),
            ("Lease".into(), format!("{} ms", config.lease.as_millis())),
            ("Capacity".into(), format!("{} executions", config.capacity)),
            (
                "Retention".into(),
                match config.retention {
                    Some(age) => format!("{} s", age.as_secs()),
                    None => "for ever".into(),
                },
            ),
        ],
        flash,
    };
    Ok(html(baton_console::settings_page(&page, &view), cookie))
}

pub(super) async fn settings(
    State(state): State<AppState>,
    account: Option<Extension<Account>>,
    headers: HeaderMap,
) -> PageResult {
    settings_view(&state, &headers, account.as_deref(), None).await
}

/// Settings › Services › Flow › Purge (admin): deletes (or, by default,
/// counts) the finished requests the form selects.
pub(super) async fn purge(
    State(state): State<AppState>,
    account: Option<Extension<Account>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let filter = crate::engine::retention::filter(
        form_field(&form, "older_than").unwrap_or_default(),
        form_field(&form, "status"),
        form_field(&form, "flow"),
    )
    .map_err(|why| PageError(StatusCode::BAD_REQUEST, why))?;
    let dry = form_field(&form, "dry_run") == Some("on");
    let purged = crate::engine::retention::purge(&*state.store, &[filter], dry, None).await?;
    let verb = if dry { "Would delete" } else { "Deleted" };
    settings_view(
        &state,
        &headers,
        account.as_deref(),
        Some(format!(
            "{verb} {} requests and {} blobs no row names.",
            purged.requests, purged.blobs
        )),
    )
    .await
}

pub(super) async fn rename(
    State(state): State<AppState>,
    account: Option<Extension<Account>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let name = form_field(&form, "name").unwrap_or_default().trim();
    if name.is_empty() || name.len() > 100 {
        return Err(PageError(
            StatusCode::BAD_REQUEST,
            "a server name is 1 to 100 characters".into(),
        ));
    }
    let actor = account.as_ref().map(|a| a.name.clone()).unwrap_or_default();
    state
        .store
        .rename_server(&state.cluster.id, name, &actor)
        .await?;
    settings_view(
        &state,
        &headers,
        account.as_deref(),
        Some(format!("Renamed to {name}.")),
    )
    .await
}
