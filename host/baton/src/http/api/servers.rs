//! The cluster's servers and this server's metrics.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use baton_core::store::ServerStatus;

use crate::http::auth::Account;
use crate::http::state::AppState;

use super::dto::{ServerName, ServerView};
use super::{ApiError, ApiResult};

pub(super) async fn list_servers(
    State(state): State<AppState>,
) -> ApiResult<axum::Json<Vec<ServerView>>> {
    let servers = state.store.servers_with_owned().await?;
    Ok(axum::Json(
        servers
            .into_iter()
            .map(|server| ServerView::of(server, &state.cluster.id))
            .collect(),
    ))
}

pub(super) async fn rename_server(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<axum::Json<ServerName>> {
    let rename: ServerName = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"name\": \"…\"}}: {e}"),
        )
    })?;
    let name = rename.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a server name is 1 to 100 characters",
        ));
    }
    state.store.rename_server(&id, name, &account.name).await?;
    Ok(axum::Json(ServerName {
        id: Some(id),
        name: name.to_owned(),
    }))
}

pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut snapshot = crate::metrics::Snapshot {
        running: state.executor.running(),
        heartbeats: Vec::new(),
        connections: Some(state.store.connections()),
    };
    // With the database away the scrape still answers, without the
    // heartbeats.
    if let Ok(servers) = state.store.servers().await {
        snapshot.heartbeats = servers
            .into_iter()
            .filter(|server| server.status == ServerStatus::Running)
            .map(|server| {
                let age = server.heartbeat_age_ms.max(0) as u64;
                (server.name, std::time::Duration::from_millis(age))
            })
            .collect();
    }
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(&snapshot),
    )
}
