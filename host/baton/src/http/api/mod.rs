//! The HTTP JSON API (SPEC §7), `/healthz` and `/metrics`: the routes and
//! how an error is answered here; the handlers are by resource in
//! `requests`, `flows` (versions, schedules, the flows repository),
//! `accounts` and `servers`.

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use baton_core::store::StoreError;

use crate::http::accounts::AccountError;
use crate::http::state::AppState;
use crate::http::status::HttpStatus;
use crate::requests::{SendError, SubmitError};
use crate::vcs::deploy::DeployError;
use crate::vcs::repository::SyncError;

mod accounts;
pub mod dto;
mod flows;
mod requests;
mod servers;
mod statistics;

use accounts::{
    change_password, create_account, delete_account, disable_account, enable_account, issue_token,
    list_accounts, reset_password, revoke_token, revoke_tokens, set_role,
};
use flows::{
    delete_schedule, deploy_flow, list_flows, list_schedules, put_schedule, repository,
    update_flows,
};
use requests::{
    bundle, cancel, export_csv, export_json_lines, hold, list_requests, purge, reexecute, resume,
    send_event, show_request, start_request,
};
use servers::{list_servers, metrics, rename_server};

pub use requests::IDEMPOTENCY_KEY;

/// A failed API call: a status and a plain sentence, sent as `{"error": …}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds for a `Retry-After` header (a `429`).
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, "{}", self.message);
        }
        let mut response = (
            self.status,
            axum::Json(dto::ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        Self {
            status: e.http_status(),
            retry_after: e.retry_after(),
            message: e.to_string(),
        }
    }
}

/// A typed error as the API answers it: [`HttpStatus`]'s status, the
/// error's sentence.
macro_rules! api_error_from {
    ($($error:ty),*) => {$(
        impl From<$error> for ApiError {
            fn from(e: $error) -> Self {
                Self::new(e.http_status(), e.to_string())
            }
        }
    )*};
}

api_error_from!(StoreError, SubmitError, SendError, DeployError, SyncError);

type ApiResult<T> = Result<T, ApiError>;

/// The JSON API's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/flows", post(deploy_flow).get(list_flows))
        .route("/api/flows/{name}/requests", post(start_request))
        .route("/api/requests", get(list_requests))
        .route("/api/requests.csv", get(export_csv))
        .route("/api/requests.jsonl", get(export_json_lines))
        .route("/api/requests/{id}", get(show_request))
        .route("/api/requests/{id}/reexecute", post(reexecute))
        .route("/api/requests/{id}/cancel", post(cancel))
        .route("/api/requests/{id}/hold", post(hold))
        .route("/api/requests/{id}/resume", post(resume))
        .route("/api/requests/{id}/bundle", get(bundle))
        .route("/api/purge", post(purge))
        .route("/api/statistics", get(statistics::statistics))
        .route("/api/requests/{id}/events/{name}", post(send_event))
        .route("/api/schedules", post(put_schedule).get(list_schedules))
        .route(
            "/api/schedules/{name}",
            axum::routing::delete(delete_schedule),
        )
        .route("/api/version-control", get(repository))
        .route("/api/version-control/update", post(update_flows))
        .route("/api/accounts", post(create_account).get(list_accounts))
        .route(
            "/api/accounts/{name}",
            axum::routing::delete(delete_account),
        )
        .route(
            "/api/accounts/{name}/tokens",
            post(issue_token).delete(revoke_tokens),
        )
        .route("/api/accounts/{name}/password", post(reset_password))
        .route("/api/accounts/{name}/disable", post(disable_account))
        .route("/api/accounts/{name}/enable", post(enable_account))
        .route("/api/accounts/{name}/role", post(set_role))
        .route("/api/password", post(change_password))
        .route("/api/tokens/revoke", post(revoke_token))
        .route("/api/servers", get(list_servers))
        .route("/api/servers/{id}/name", post(rename_server))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
}

/// The answer to a route that does not exist.
pub async fn no_such_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

/// A JSON body of type `T`, or a `400` saying what was expected.
fn body_of<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("expected {expected}: {e}")))
}
