//! The Server List.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse};
use baton_console::{Section, ServerView};
use baton_core::store::{OWNED_COUNTED_UP_TO, StoreError};

use super::{PageResult, frame, html};
use crate::http::auth::Account;
use crate::http::state::AppState;

async fn server_views(state: &AppState) -> Result<Vec<ServerView>, StoreError> {
    let servers = state.store.servers_with_owned().await?;
    let mine = servers
        .iter()
        .find(|s| s.id == state.cluster.id)
        .map(|s| (s.flow_set.clone(), s.flows_head.clone()));
    Ok(servers
        .into_iter()
        .map(|s| ServerView {
            drift: s.status == baton_core::store::ServerStatus::Running
                && mine
                    .as_ref()
                    .is_some_and(|(set, head)| s.flow_set != *set || s.flows_head != *head),
            flow_set: s.flow_set.clone().unwrap_or_default(),
            flows_head: s
                .flows_head
                .as_deref()
                .map(|h| h[..h.len().min(12)].to_owned())
                .unwrap_or_default(),
            renamed: s
                .renamed
                .as_ref()
                .map(|(by, at)| format!("renamed by {by} at {}", baton_console::time(*at)))
                .unwrap_or_default(),
            current: s.id == state.cluster.id,
            id: s.id,
            name: s.name,
            status: s.status.as_str().to_owned(),
            address: s.address,
            incarnation: s.incarnation,
            heartbeat_age_ms: s.heartbeat_age_ms,
            owned: match s.owned.unwrap_or_default() {
                n if n > OWNED_COUNTED_UP_TO => format!("{OWNED_COUNTED_UP_TO}+"),
                n => n.to_string(),
            },
        })
        .collect())
}

pub(super) async fn servers(
    State(state): State<AppState>,
    account: Option<Extension<Account>>,
    headers: HeaderMap,
) -> PageResult {
    let (page, cookie) = frame(
        &state,
        &headers,
        account.as_deref(),
        "Server List",
        Section::Servers,
    )
    .await;
    Ok(html(
        baton_console::servers_page(&page, &server_views(&state).await?),
        cookie,
    ))
}

/// The Server List's rows, as the fragment the page swaps in.
async fn rows_fragment(state: &AppState) -> Result<String, StoreError> {
    Ok(baton_console::server_rows(&server_views(state).await?).into_string())
}

pub(super) async fn server_rows(State(state): State<AppState>) -> PageResult {
    Ok(Html(rows_fragment(&state).await?).into_response())
}

/// `GET /status/servers/live`: the Server List's rows, pushed as the
/// cluster changes.
pub(super) async fn live_servers(State(state): State<AppState>) -> axum::response::Response {
    let feed = state.live.clone();
    crate::http::live::stream(&feed, "servers", move || {
        let state = state.clone();
        async move { rows_fragment(&state).await.ok() }
    })
    .into_response()
}

pub(super) async fn server_names(state: &AppState) -> Result<HashMap<String, String>, StoreError> {
    Ok(state.store.server_names().await?.into_iter().collect())
}
