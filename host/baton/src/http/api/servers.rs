//! The cluster's servers and this server's metrics.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::auth::Account;
use crate::http::state::AppState;

use super::{ApiError, ApiResult};

pub(super) async fn list_servers(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let servers = state.store.servers().await?;
    Ok(axum::Json(Value::Array(
        servers
            .into_iter()
            .map(|server| {
                json!({
                    "id": server.id,
                    "name": server.name,
                    "status": server.status.as_str(),
                    "address": server.address,
                    "incarnation": server.incarnation,
                    "heartbeat_age_ms": server.heartbeat_age_ms,
                    "owned": server.owned,
                    "flow_set": server.flow_set,
                    "flows_head": server.flows_head,
                    "renamed_by": server.renamed.as_ref().map(|r| &r.0),
                    "current": server.id == state.cluster.id,
                })
            })
            .collect(),
    )))
}

#[derive(Deserialize)]
pub(super) struct Rename {
    name: String,
}

pub(super) async fn rename_server(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<axum::Json<Value>> {
    let rename: Rename = serde_json::from_slice(&body).map_err(|e| {
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
    Ok(axum::Json(json!({ "id": id, "name": name })))
}

pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(state.executor.running()),
    )
}
