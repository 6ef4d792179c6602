//! `GET /api/statistics`: the statistics of a window.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use baton_core::statistics::Report;
use serde::Deserialize;

use super::{ApiError, ApiResult};
use crate::http::state::AppState;
use crate::statistics::{Window, report};

#[derive(Deserialize)]
pub(super) struct StatisticsQuery {
    from: Option<i64>,
    to: Option<i64>,
    flow: Option<String>,
}

/// The window `from`..`to` (ms; default: the last hour), of one flow or
/// of all (viewer).
pub(super) async fn statistics(
    State(state): State<AppState>,
    Query(query): Query<StatisticsQuery>,
) -> ApiResult<axum::Json<Report>> {
    let now = state.store.now_ms().await?;
    let window = Window::new(query.from, query.to, now)
        .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, why))?;
    let flow = query.flow.filter(|f| !f.is_empty());
    Ok(axum::Json(
        report(&*state.store, window, flow.as_deref()).await?,
    ))
}
