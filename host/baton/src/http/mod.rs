//! Baton over HTTP: the JSON API and the console are two adapters over the
//! same use cases. They parse, authorise, call and render; the rules live
//! in `requests`, `accounts` and the store.
//!
//! Module edges go one way: `api`, `console` and `accounts` use `auth`,
//! `credentials`, `export`, `state` and `status`; none of them uses this module or each other's
//! handlers (`tests/architecture.rs` checks it).
//!
//! - [`state`]: [`AppState`], what every handler can reach.
//! - [`status`]: [`HttpStatus`](status::HttpStatus), typed errors to statuses.
//! - [`auth`]: sessions, tokens, the role each route needs.
//! - [`credentials`]: secrets, passwords, the login throttle, bootstrap.
//! - [`export`]: the requests a filter matches, streamed as CSV or JSON
//!   Lines, for the API and the Status List.
//! - [`accounts`]: the credential life cycle, shared by API and console.
//! - [`api`]: the JSON API, `/healthz`, `/metrics`.
//! - [`console`]: the HTML pages, CSRF and security headers.

use axum::Router;

pub mod accounts;
pub mod api;
pub mod auth;
pub mod console;
pub mod credentials;
pub mod export;
pub mod live;
pub mod state;
pub mod status;

pub use state::AppState;

/// The whole HTTP surface of a server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(console::routes())
        .fallback(api::no_such_route)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(console::security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
        .with_state(state)
}
