//! The console's routes: gather data from the store, render with `baton-console`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, Redirect};
use axum::routing::get;
use baton_console::{RequestView, ServerView};
use baton_store::RequestFilter;

use crate::api::{ApiError, AppState};

/// Console pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/status/servers") }))
        .route("/status/servers", get(servers))
        .route("/status/requests", get(requests))
}

async fn servers(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let servers = state.store.servers().await?;
    let views: Vec<ServerView> = servers
        .into_iter()
        .map(|s| ServerView {
            current: s.id == state.cluster.id,
            id: s.id,
            name: s.name,
            status: s.status.as_str().to_owned(),
            address: s.address,
            heartbeat_age_ms: s.heartbeat_age_ms,
            owned: s.owned,
        })
        .collect();
    Ok(Html(baton_console::servers_page(&views).into_string()))
}

async fn requests(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let names: HashMap<String, String> = state
        .store
        .servers()
        .await?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    let requests = state
        .store
        .list_requests(&RequestFilter {
            limit: 100,
            ..Default::default()
        })
        .await?;
    let views: Vec<RequestView> = requests
        .into_iter()
        .map(|r| RequestView {
            owner: r
                .owner
                .map(|id| names.get(&id).cloned().unwrap_or(id))
                .unwrap_or_default(),
            id: r.id,
            flow: r.flow,
            status: r.status.label().to_owned(),
            attempts: r.attempts,
            last_checkpoint: r.last_checkpoint.unwrap_or_default(),
            error: r.error.unwrap_or_default(),
        })
        .collect();
    Ok(Html(baton_console::requests_page(&views).into_string()))
}
