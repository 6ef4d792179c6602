//! Status › Statistics.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use baton_console::{Section, StatisticsView, WINDOWS};

use super::servers::server_names;
use super::{PageError, PageResult, frame, html};
use crate::http::auth::Account;
use crate::http::state::AppState;
use crate::statistics::{Window, report};

#[derive(serde::Deserialize)]
pub(super) struct StatisticsQuery {
    window: Option<String>,
    flow: Option<String>,
}

pub(super) async fn statistics(
    State(state): State<AppState>,
    account: Option<Extension<Account>>,
    headers: HeaderMap,
    Query(query): Query<StatisticsQuery>,
) -> PageResult {
    let chosen = query.window.unwrap_or_else(|| WINDOWS[0].0.to_owned());
    let Some((_, _, length)) = WINDOWS.iter().find(|(value, _, _)| *value == chosen) else {
        return Err(PageError(
            StatusCode::BAD_REQUEST,
            format!("there is no window {chosen:?}: choose 1h, 6h, 24h or 7d"),
        ));
    };
    let now = state.store.now_ms().await?;
    let window = Window::new(Some(now - length), None, now)
        .map_err(|why| PageError(StatusCode::BAD_REQUEST, why))?;
    let flow = query.flow.filter(|f| !f.is_empty());
    let mut report = report(&*state.store, window, flow.as_deref()).await?;
    let names = server_names(&state).await?;
    for server in &mut report.servers {
        if let Some(name) = names.get(&server.name) {
            server.name = name.clone();
        }
    }
    let flows = state
        .store
        .flows()
        .await?
        .into_iter()
        .map(|f| f.name)
        .collect();
    let view = StatisticsView {
        report,
        window: chosen,
        flow: flow.unwrap_or_default(),
        flows,
    };
    let (page, cookie) = frame(
        &state,
        &headers,
        account.as_deref(),
        "Statistics",
        Section::Statistics,
    )
    .await;
    Ok(html(baton_console::statistics_page(&page, &view), cookie))
}
