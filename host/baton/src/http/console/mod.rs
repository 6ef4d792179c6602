//! The console's routes: gather data from the store, render with
//! `baton-console`, and guard every state-changing form.
//!
//! CSRF: a random token lives in an HttpOnly, SameSite=Strict cookie and in
//! every form (double submit); a POST must carry both, equal, and must not
//! come from another site (`Sec-Fetch-Site`, `Origin`). Every response gets a
//! Content-Security-Policy without inline script, `frame-ancestors 'none'`
//! and `nosniff`.
//!
//! This module holds the routes, the page frame, errors and the CSRF check;
//! the pages are by section: `servers` (Server List), `requests` (Status
//! List, request detail, actions), `flows` (Flows, Version Control, flow
//! settings), `accounts` (Settings › Accounts, `/account/password`) and
//! `session` (login, logout).

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use baton_console::{Page, Section};
use baton_core::Role;

use crate::http::auth::{Account, cookie};
use crate::http::credentials;
use crate::http::state::AppState;
use crate::http::status::HttpStatus;

mod accounts;
mod flows;
mod requests;
mod servers;
mod session;
mod statistics;

use accounts::{
    account_action, accounts, change_password, confirm_account_action, create_account,
    password_form,
};
use flows::{flows, rename, run_flow, settings, update_flows, version_control};
use requests::{
    bulk_action, download_input, download_output, request_detail, request_rows, requests,
    send_event, single_action,
};
use servers::{server_rows, servers};
use session::{LOGIN_BODY_MAX, login, login_form, logout};

/// Console pages, fragments, actions and assets.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/status/servers") }))
        .route(
            "/assets/htmx.min.js",
            get(|| async { asset("text/javascript", baton_console::assets::HTMX) }),
        )
        .route(
            "/assets/htmx.LICENSE",
            get(|| async { asset("text/plain", baton_console::assets::HTMX_LICENSE) }),
        )
        .route(
            "/assets/htmx-sse.min.js",
            get(|| async { asset("text/javascript", baton_console::assets::HTMX_SSE) }),
        )
        .route(
            "/assets/htmx-sse.LICENSE",
            get(|| async { asset("text/plain", baton_console::assets::HTMX_SSE_LICENSE) }),
        )
        .route(
            "/assets/console.css",
            get(|| async { asset("text/css", baton_console::assets::CSS) }),
        )
        .route("/status/servers", get(servers))
        .route("/status/servers/rows", get(server_rows))
        .route("/status/servers/live", get(servers::live_servers))
        .route("/status/requests", get(requests))
        .route("/status/requests.csv", get(requests::export_csv))
        .route("/status/requests.jsonl", get(requests::export_json_lines))
        .route("/status/requests/rows", get(request_rows))
        .route("/status/requests/live", get(requests::live_requests))
        .route("/status/requests/actions", post(bulk_action))
        .route("/status/requests/{id}", get(request_detail))
        .route("/status/requests/{id}/input", get(download_input))
        .route("/status/requests/{id}/output", get(download_output))
        .route("/status/requests/{id}/events", post(send_event))
        .route("/status/requests/{id}/live", get(requests::live_request))
        .route("/status/requests/{id}/{action}", post(single_action))
        .route("/status/statistics", get(statistics::statistics))
        .route("/status/version-control", get(version_control))
        .route("/status/version-control/update", post(update_flows))
        .route("/flows", get(flows))
        .route("/flows/{name}/run", post(run_flow))
        .route("/settings/flow", get(settings))
        .route("/settings/flow/name", post(rename))
        .route("/settings/flow/purge", post(flows::purge))
        .route("/settings/accounts", get(accounts).post(create_account))
        .route(
            "/settings/accounts/{name}/{action}",
            get(confirm_account_action).post(account_action),
        )
        .route(
            "/account/password",
            get(password_form)
                .post(change_password)
                .layer(axum::extract::DefaultBodyLimit::max(LOGIN_BODY_MAX)),
        )
        .route(
            "/login",
            get(login_form)
                .post(login)
                .layer(axum::extract::DefaultBodyLimit::max(LOGIN_BODY_MAX)),
        )
        .route("/logout", post(logout))
}

fn asset(content_type: &'static str, bytes: &'static [u8]) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        bytes,
    )
}

/// Security headers on every response.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A page error: a status and a sentence, rendered as a page.
struct PageError(StatusCode, String);

impl<E: HttpStatus> From<E> for PageError {
    fn from(e: E) -> Self {
        Self(e.http_status(), e.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = Page {
            title: "Not done".into(),
            section: Section::Requests,
            server_name: String::new(),
            csrf: String::new(),
            account: String::new(),
            admin: false,
        };
        (
            self.0,
            Html(baton_console::message_page(&page, &self.1).into_string()),
        )
            .into_response()
    }
}

type PageResult = Result<Response, PageError>;

/// The page frame, and the CSRF cookie to set when the browser has none.
async fn frame(
    state: &AppState,
    headers: &HeaderMap,
    account: Option<&Account>,
    title: &str,
    section: Section,
) -> (Page, Option<String>) {
    let server_name = state
        .store
        .server(&state.cluster.id)
        .await
        .ok()
        .flatten()
        .map(|s| s.name)
        .unwrap_or_else(|| state.cluster.id.clone());
    let cookies = state.config.cookies();
    let existing = cookie(headers, cookies.csrf())
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()));
    let (csrf, new) = match existing {
        Some(token) => (token, None),
        None => {
            // From the OS generator: a token that can be guessed is no guard.
            let token = credentials::secret();
            let set = cookies.set(cookies.csrf(), &token, None);
            (token, Some(set))
        }
    };
    (
        Page {
            title: title.to_owned(),
            section,
            server_name,
            csrf,
            account: account
                .map(|a| format!("{} ({})", a.name, a.role.as_str()))
                .unwrap_or_default(),
            admin: account.is_some_and(|a| a.role == Role::Admin),
        },
        new,
    )
}

/// A page, with the `Set-Cookie` value of a new CSRF cookie if one was made.
fn html(page: maud::Markup, new_cookie: Option<String>) -> Response {
    let mut response = Html(page.into_string()).into_response();
    if let Some(cookie) = new_cookie
        && let Ok(value) = HeaderValue::from_str(&cookie)
    {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The first value of a form field.
fn form_field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Rejects a state-changing request that is cross-site or lacks the token.
fn check_csrf(
    state: &AppState,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<(), PageError> {
    let forbidden = |why: &str| Err(PageError(StatusCode::FORBIDDEN, format!("refused: {why}")));
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
        && site != "none"
    {
        return forbidden("the form was sent from another site");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if origin != format!("http://{host}") && origin != format!("https://{host}") {
            return forbidden("the form was sent from another origin");
        }
    }
    let sent = form_field(form, "csrf");
    match (cookie(headers, state.config.cookies().csrf()), sent) {
        (Some(cookie), Some(sent)) if !cookie.is_empty() && cookie == sent => Ok(()),
        _ => forbidden(
            "the form's CSRF token is missing or does not match; reload the page and try again",
        ),
    }
}
