//! Flows: deploy and list versions, schedules, the flows repository and
//! Update.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use baton_core::store::ScheduleRow;
use serde_json::Value;

use crate::http::state::AppState;
use crate::vcs::deploy::ReplayCheck;

use super::dto::{Deleted, FlowView, NewSchedule};
use super::{ApiError, ApiResult};

#[derive(serde::Deserialize)]
pub(super) struct DeployQuery {
    /// Replay the journals of every unfinished request of the flow and of
    /// this many finished ones against the version before activating it.
    check: Option<usize>,
    /// Activate even when some would diverge.
    #[serde(default)]
    force: bool,
}

pub(super) async fn deploy_flow(
    State(state): State<AppState>,
    Query(query): Query<DeployQuery>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let check = query.check.map(|last| ReplayCheck {
        last,
        force: query.force,
    });
    let deployed = state.versions.deploy(body.to_vec(), check).await?;
    Ok((StatusCode::CREATED, axum::Json(deployed)))
}

pub(super) async fn list_flows(
    State(state): State<AppState>,
) -> ApiResult<axum::Json<Vec<FlowView>>> {
    let flows = state.store.flows().await?;
    Ok(axum::Json(flows.into_iter().map(FlowView::from).collect()))
}

pub(super) async fn put_schedule(
    State(state): State<AppState>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let new: NewSchedule = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "expected {{\"name\", \"flow\", \"cron\", \"tz\"?, \"input\"?, \"local\"?}}: {e}"
            ),
        )
    })?;
    let tz = new.tz.unwrap_or_else(|| "UTC".to_owned());
    let cron = crate::engine::schedule::Cron::parse(&new.cron, &tz)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    if new.name.is_empty() || new.name.len() > 100 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a schedule name is 1 to 100 characters",
        ));
    }
    if state.store.active_version(&new.flow).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("there is no flow named {:?}", new.flow),
        ));
    }
    let now = state.store.now_ms().await?;
    let schedule = ScheduleRow {
        name: new.name,
        flow: new.flow,
        cron: new.cron,
        tz,
        input: new.input.unwrap_or(Value::Null).to_string(),
        server: new.local.then(|| state.cluster.id.clone()),
        next_fire_at: cron.next_after(now).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "the cron expression never fires")
        })?,
        last_fired_at: None,
    };
    state.store.put_schedule(&schedule).await?;
    Ok((StatusCode::CREATED, axum::Json(schedule)))
}

pub(super) async fn list_schedules(
    State(state): State<AppState>,
) -> ApiResult<axum::Json<Vec<ScheduleRow>>> {
    Ok(axum::Json(state.store.schedules().await?))
}

pub(super) async fn delete_schedule(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Deleted>> {
    state.store.delete_schedule(&name).await?;
    Ok(axum::Json(Deleted {
        name,
        deleted: true,
    }))
}

pub(super) async fn repository(
    State(state): State<AppState>,
) -> ApiResult<axum::Json<crate::vcs::repository::RepoState>> {
    Ok(axum::Json(state.versions.repository().await?))
}

/// `?force=true` activates a flow's new version even when some of its
/// journals would diverge from it.
#[derive(serde::Deserialize)]
pub(super) struct UpdateQuery {
    #[serde(default)]
    force: bool,
}

pub(super) async fn update_flows(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<UpdateQuery>,
) -> ApiResult<axum::Json<crate::vcs::repository::UpdateReport>> {
    Ok(axum::Json(state.versions.update(query.force).await?))
}
