//! The console's routes: gather data from the store, render with
//! `baton-console`, and guard every state-changing form.
//!
//! CSRF: a random token lives in an HttpOnly, SameSite=Strict cookie and in
//! every form (double submit); a POST must carry both, equal, and must not
//! come from another site (`Sec-Fetch-Site`, `Origin`). Every response gets a
//! Content-Security-Policy without inline script, `frame-ancestors 'none'`
//! and `nosniff`.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use baton_console::{
    AccountView, CheckpointView, EventView, Filters, FlowView, Page, PayloadView, RequestDetail,
    RequestView, Section, ServerView, SettingsView,
};
use baton_core::{RequestStatus, Role};
use baton_store::{RequestFilter, RequestRow, StoreError, StoredPayload};

use crate::http::accounts::{self, AccountError};
use crate::http::auth::{Account, cookie};
use crate::http::credentials;
use crate::http::state::AppState;
use crate::http::status::HttpStatus;
use crate::requests::DetailQuery;

const PAGE_SIZE: i64 = 50;
const PREVIEW: usize = 4096;
/// The largest payload a page reads for its preview.
const PREVIEW_LOAD_MAX: usize = 1 << 20;

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
            "/assets/console.css",
            get(|| async { asset("text/css", baton_console::assets::CSS) }),
        )
        .route("/status/servers", get(servers))
        .route("/status/servers/rows", get(server_rows))
        .route("/status/requests", get(requests))
        .route("/status/requests/rows", get(request_rows))
        .route("/status/requests/actions", post(bulk_action))
        .route("/status/requests/{id}", get(request_detail))
        .route("/status/requests/{id}/input", get(download_input))
        .route("/status/requests/{id}/output", get(download_output))
        .route("/status/requests/{id}/reexecute", post(reexecute))
        .route("/status/requests/{id}/cancel", post(cancel))
        .route("/status/version-control", get(version_control))
        .route("/status/version-control/update", post(update_flows))
        .route("/flows", get(flows))
        .route("/flows/{name}/run", post(run_flow))
        .route("/settings/flow", get(settings))
        .route("/settings/flow/name", post(rename))
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

async fn login_form(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let (page, cookie) = frame(&state, &headers, None, "Log in", Section::Servers).await;
    Ok(html(baton_console::login_page(&page, None), cookie))
}

/// The largest login form accepted: a name, a password and the CSRF token.
const LOGIN_BODY_MAX: usize = 4096;

async fn login(
    State(state): State<AppState>,
    client: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let field = |name: &str| form_field(&form, name).unwrap_or_default().to_owned();
    let (username, password) = (field("username"), field("password"));
    let address = client.map(|Extension(c)| c.0.ip());
    let hash = state
        .store
        .account(&username)
        .await?
        .map(|a| a.password_hash);
    let login = state.login.check(&username, address, password, hash).await;
    if let credentials::Login::Wait(wait) = login {
        return Ok(too_many_failures(wait));
    }
    if login == credentials::Login::Wrong {
        let (page, cookie) = frame(&state, &headers, None, "Log in", Section::Servers).await;
        let body = baton_console::login_page(&page, Some("Unknown username or wrong password."));
        let mut response = html(body, cookie);
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(response);
    }
    let session = credentials::secret();
    state
        .store
        .create_session(
            &credentials::secret_hash(&session),
            &username,
            state.config.session_ttl_ms,
        )
        .await?;
    let mut response = Redirect::to("/status/servers").into_response();
    let cookies = state.config.cookies();
    let value = cookies.set(
        cookies.session(),
        &session,
        Some(state.config.session_ttl_ms / 1000),
    );
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let cookies = state.config.cookies();
    if let Some(session) = cookie(&headers, cookies.session()) {
        state
            .store
            .delete_session(&credentials::secret_hash(&session))
            .await?;
    }
    let mut response = Redirect::to("/login").into_response();
    let expired = cookies.set(cookies.session(), "", Some(0));
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// A `429` page with `Retry-After` for a caller who must wait after too many
/// failed passwords (at `/login` or when changing their own).
fn too_many_failures(wait: std::time::Duration) -> Response {
    let seconds = crate::http::accounts::retry_after(wait);
    let mut response = PageError(
        StatusCode::TOO_MANY_REQUESTS,
        format!("Too many failed logins; try again in {seconds} seconds."),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
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

async fn server_views(state: &AppState) -> Result<Vec<ServerView>, StoreError> {
    let servers = state.store.servers().await?;
    let mine = servers
        .iter()
        .find(|s| s.id == state.cluster.id)
        .map(|s| (s.flow_set.clone(), s.flows_head.clone()));
    Ok(servers
        .into_iter()
        .map(|s| ServerView {
            drift: s.status == baton_store::ServerStatus::Running
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
            owned: s.owned,
        })
        .collect())
}

async fn servers(
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

async fn server_rows(State(state): State<AppState>) -> PageResult {
    Ok(
        Html(baton_console::server_rows(&server_views(&state).await?).into_string())
            .into_response(),
    )
}

async fn server_names(state: &AppState) -> Result<HashMap<String, String>, StoreError> {
    Ok(state.store.server_names().await?.into_iter().collect())
}

fn request_view(request: &RequestRow, names: &HashMap<String, String>) -> RequestView {
    RequestView {
        id: request.id.clone(),
        flow: request.flow.clone(),
        status: request.status.as_str().to_owned(),
        label: request.status.label().to_owned(),
        owner: request
            .owner
            .as_ref()
            .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone()))
            .unwrap_or_else(|| "(handed over)".into()),
        attempts: request.attempts,
        last_checkpoint: request.last_checkpoint.clone().unwrap_or_default(),
        created_at: request.created_at,
        updated_at: request.updated_at,
    }
}

/// Milliseconds at the start of a `YYYY-MM-DD` day (UTC).
fn day_start(date: &str) -> Option<i64> {
    let mut parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (parts.next()??, parts.next()??, parts.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400_000)
}

/// The page of rows the filters select, and the cursor of the next page.
async fn filtered(
    state: &AppState,
    filters: &Filters,
) -> Result<(Vec<RequestRow>, Option<String>), PageError> {
    let status =
        match filters.status.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(RequestStatus::parse(s).ok_or_else(|| {
                PageError(StatusCode::BAD_REQUEST, format!("unknown status {s:?}"))
            })?),
            None => None,
        };
    let filter = RequestFilter {
        status,
        flow: filters.flow.clone().filter(|s| !s.is_empty()),
        server: filters.server.clone().filter(|s| !s.is_empty()),
        after: filters.after.clone().filter(|s| !s.is_empty()),
        id_prefix: filters.id.clone().filter(|s| !s.is_empty()),
        created_from: filters.from.as_deref().and_then(day_start),
        created_before: filters
            .to
            .as_deref()
            .and_then(day_start)
            .map(|t| t + 86_400_000),
        limit: PAGE_SIZE + 1,
    };
    let mut rows = state.store.list_requests(&filter).await?;
    let older = (rows.len() as i64 > PAGE_SIZE).then(|| {
        rows.truncate(PAGE_SIZE as usize);
        rows.last().map(|r| r.id.clone())
    });
    Ok((rows, older.flatten()))
}

async fn requests(
    State(state): State<AppState>,
    account: Option<Extension<Account>>,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
) -> PageResult {
    let (page, cookie) = frame(
        &state,
        &headers,
        account.as_deref(),
        "Status List",
        Section::Requests,
    )
    .await;
    let names = server_names(&state).await?;
    let (rows, older) = filtered(&state, &filters).await?;
    let views: Vec<RequestView> = rows.iter().map(|r| request_view(r, &names)).collect();
    let statuses: Vec<(&str, &str)> = RequestStatus::ALL
        .iter()
        .map(|s| (s.as_str(), s.label()))
        .collect();
    let mut servers: Vec<(String, String)> = names.into_iter().collect();
    servers.sort();
    let body = baton_console::requests_page(
        &page,
        &filters,
        &statuses,
        &servers,
        &views,
        older.as_deref(),
        None,
    );
    Ok(html(body, cookie))
}

async fn request_rows(State(state): State<AppState>, Query(filters): Query<Filters>) -> PageResult {
    let names = server_names(&state).await?;
    let (rows, _) = filtered(&state, &filters).await?;
    let views: Vec<RequestView> = rows.iter().map(|r| request_view(r, &names)).collect();
    Ok(Html(baton_console::request_rows(&views).into_string()).into_response())
}

/// What an operator does to a request from the console.
#[derive(Debug, Clone, Copy)]
enum Action {
    Reexecute,
    Cancel,
}

impl Action {
    /// The action a form's `action` field names.
    fn parse(field: Option<&str>) -> Option<Self> {
        match field? {
            "reexecute" => Some(Self::Reexecute),
            "cancel" => Some(Self::Cancel),
            _ => None,
        }
    }
}

/// Applies re-execute or cancel as this server; answers with the outcome.
async fn act(
    state: &AppState,
    account: &Account,
    id: &str,
    action: Action,
) -> Result<(), StoreError> {
    match action {
        Action::Reexecute => state.requests.reexecute(id, &account.name).await,
        Action::Cancel => state.requests.cancel(id, &account.name).await,
    }
}

async fn bulk_action(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let action = Action::parse(form_field(&form, "action")).ok_or_else(|| {
        PageError(
            StatusCode::BAD_REQUEST,
            "choose re-execute or cancel".into(),
        )
    })?;
    let ids: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v.as_str())
        .collect();
    if ids.is_empty() {
        return Err(PageError(
            StatusCode::BAD_REQUEST,
            "select at least one request".into(),
        ));
    }
    let mut lines = Vec::new();
    for id in ids {
        match act(&state, &account, id, action).await {
            Ok(()) => lines.push(format!("{id}: done")),
            Err(e) => lines.push(format!("{id}: {e}")),
        }
    }
    let (page, cookie) = frame(
        &state,
        &headers,
        Some(&account),
        "Status List",
        Section::Requests,
    )
    .await;
    Ok(html(
        baton_console::message_page(&page, &lines.join("; ")),
        cookie,
    ))
}

async fn single_action(
    state: AppState,
    account: Account,
    headers: HeaderMap,
    id: String,
    form: Vec<(String, String)>,
    action: Action,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    act(&state, &account, &id, action).await?;
    Ok(Redirect::to(&format!("/status/requests/{id}")).into_response())
}

async fn reexecute(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    single_action(state, account, headers, id, form, Action::Reexecute).await
}

async fn cancel(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    single_action(state, account, headers, id, form, Action::Cancel).await
}

/// An escaped, pretty preview of a payload. One larger than
/// [`PREVIEW_LOAD_MAX`] is not read at all (it can be 64 MiB): the page
/// links to its download instead.
async fn preview(state: &AppState, payload: &StoredPayload, download: String) -> PayloadView {
    if payload.size as usize > PREVIEW_LOAD_MAX {
        return PayloadView {
            preview: format!("({} bytes, too large to preview)", payload.size),
            truncated: true,
            download,
        };
    }
    let text = match state.store.read_payload(payload.clone()).await {
        Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_default(),
            Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
        },
        Err(e) => format!("({e})"),
    };
    let truncated = text.len() > PREVIEW;
    let mut cut = PREVIEW.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    PayloadView {
        preview: text[..cut].to_owned(),
        truncated,
        download,
    }
}

async fn request_detail(
    State(state): State<AppState>,
    account: Option<Extension<Account>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> PageResult {
    let request = state
        .store
        .request(&id)
        .await?
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, format!("there is no request {id}")))?;
    let names = server_names(&state).await?;
    let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_owned());
    let page = query.page(&state.store, &id).await?;
    let more = |checkpoints: Option<i64>, events: Option<i64>| {
        format!(
            "/status/requests/{id}?checkpoints_after={}&events_after={}",
            checkpoints.unwrap_or(-1),
            events.unwrap_or(-1)
        )
    };
    let checkpoints_more = page
        .checkpoints_next
        .map(|next| more(Some(next), query.events_after));
    let events_more = page
        .events_next
        .map(|next| more(query.checkpoints_after, Some(next)));
    let checkpoints = page
        .checkpoints
        .into_iter()
        .map(|c| CheckpointView {
            generation: c.generation,
            seq: c.seq,
            name: c.name,
            server: name(&c.server),
            epoch: c.epoch,
            at: c.at,
            size: c.payload.size,
        })
        .collect();
    let events = page
        .events
        .into_iter()
        .map(|e| EventView {
            at: e.at,
            kind: e.kind,
            server: e.server.as_deref().map(name).unwrap_or_default(),
            epoch: e.epoch,
            detail: e.detail.unwrap_or_default(),
        })
        .collect();
    let detail = RequestDetail {
        request: request_view(&request, &names),
        version: request.version.clone(),
        epoch: request.epoch,
        checkpoints,
        checkpoints_more,
        events,
        events_more,
        input: preview(
            &state,
            &request.input,
            format!("/status/requests/{id}/input"),
        )
        .await,
        output: match &request.output {
            Some(output) => {
                Some(preview(&state, output, format!("/status/requests/{id}/output")).await)
            }
            None => None,
        },
        error: request.error.clone(),
    };
    let (page, cookie) = frame(
        &state,
        &headers,
        account.as_deref(),
        &format!("Request {id}"),
        Section::Requests,
    )
    .await;
    Ok(html(baton_console::request_page(&page, &detail), cookie))
}

async fn download(state: &AppState, id: &str, output: bool) -> PageResult {
    let request = state
        .store
        .request(id)
        .await?
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, format!("there is no request {id}")))?;
    let payload = if output {
        request.output
    } else {
        Some(request.input)
    };
    let payload = payload.ok_or_else(|| {
        PageError(
            StatusCode::NOT_FOUND,
            "the request has no output yet".into(),
        )
    })?;
    let bytes = state.store.read_payload(payload).await?;
    let name = format!(
        "attachment; filename=\"{id}-{}.json\"",
        if output { "output" } else { "input" }
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        Body::from(bytes),
    )
        .into_response())
}

async fn download_input(State(state): State<AppState>, Path(id): Path<String>) -> PageResult {
    download(&state, &id, false).await
}

async fn download_output(State(state): State<AppState>, Path(id): Path<String>) -> PageResult {
    download(&state, &id, true).await
}

async fn flows(
    State(state): State<AppState>,
    account: Option<Extension<Account>>,
    headers: HeaderMap,
) -> PageResult {
    let mut views = Vec::new();
    let schedules = state.store.schedules().await?;
    for flow in state.store.flows().await? {
        let versions = state.store.versions(&flow.name).await?.len();
        let properties = &flow.active.properties;
        views.push(FlowView {
            name: flow.name,
            version: flow.active.hash,
            versions,
            properties: vec![
                (
                    "other_server_retry".into(),
                    properties.other_server_retry.to_string(),
                ),
                (
                    "begin_checkpoint".into(),
                    if properties.begin_checkpoint {
                        "use"
                    } else {
                        "not use"
                    }
                    .into(),
                ),
                ("max_retries".into(), properties.max_retries.to_string()),
                (
                    "retry_interval".into(),
                    format!("{} ms", properties.retry_interval_ms),
                ),
                ("backoff".into(), format!("×{}", properties.backoff_factor)),
                (
                    "max_retry_interval".into(),
                    properties
                        .max_retry_interval_ms
                        .map(|ms| format!("{ms} ms"))
                        .unwrap_or_else(|| "none".into()),
                ),
            ],
            warnings: crate::resources::warnings(properties, &state.config.connections, &schedules),
        });
    }
    let (page, cookie) = frame(
        &state,
        &headers,
        account.as_deref(),
        "Flows",
        Section::Flows,
    )
    .await;
    Ok(html(baton_console::flows_page(&page, &views), cookie))
}

async fn run_flow(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let input = form_field(&form, "input").unwrap_or_default();
    let id = state
        .requests
        .submit(&name, input.as_bytes(), None)
        .await?
        .id;
    Ok(Redirect::to(&format!("/status/requests/{id}")).into_response())
}

async fn version_control_view(
    state: &AppState,
    headers: &HeaderMap,
    account: Option<&Account>,
    update: Option<Result<crate::vcs::repository::UpdateReport, String>>,
) -> PageResult {
    let flow_set = state
        .store
        .flows()
        .await?
        .into_iter()
        .map(|f| (f.name, f.active.hash))
        .collect::<Vec<_>>();
    let path = state.config.flows_repo.clone();
    let repo = tokio::task::spawn_blocking(move || crate::vcs::repository::state(path.as_deref()))
        .await
        .map_err(|e| PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map(|r| baton_console::RepoView {
            path: r.path,
            branch: r.branch,
            head: r.head.map(|h| (h.id, h.author, h.message, h.time * 1000)),
            remote: r.remote,
            ahead: r.ahead,
            behind: r.behind,
            uncommitted: r.uncommitted,
        })
        .map_err(|e| e.to_string());
    let update = update.map(|u| {
        u.map(|report| baton_console::UpdateView {
            moved: (
                report.from.unwrap_or_default(),
                report.to.unwrap_or_default(),
            ),
            flows: report
                .flows
                .into_iter()
                .map(|f| {
                    (
                        f.flow.unwrap_or(f.path),
                        f.old.unwrap_or_else(|| "(new)".into()),
                        f.new.unwrap_or_default(),
                        f.error.unwrap_or_default(),
                    )
                })
                .collect(),
        })
    });
    let (page, cookie) = frame(
        state,
        headers,
        account,
        "Version Control",
        Section::VersionControl,
    )
    .await;
    let body = baton_console::version_control_page(
        &page,
        repo.as_ref().map_err(String::as_str),
        update.as_ref().map(|u| u.as_ref().map_err(String::as_str)),
        &flow_set,
    );
    Ok(html(body, cookie))
}

async fn version_control(
    State(state): State<AppState>,
    account: Option<Extension<Account>>,
    headers: HeaderMap,
) -> PageResult {
    version_control_view(&state, &headers, account.as_deref(), None).await
}

async fn update_flows(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let report = crate::vcs::repository::update(
        state.config.flows_repo.as_deref(),
        state.config.build_flows,
        &state.store,
        state.executor.runtime(),
        &state.config.connections,
    )
    .await
    .map_err(|e| e.to_string());
    version_control_view(&state, &headers, Some(&account), Some(report)).await
}

async fn settings_view(
    state: &AppState,
    headers: &HeaderMap,
    account: Option<&Account>,
    flash: Option<String>,
) -> PageResult {
    let (page, cookie) = frame(
        state,
        headers,
        account,
        "Settings › Services › Flow",
        Section::Settings,
    )
    .await;
    let config = &state.config;
    let view = SettingsView {
        id: state.cluster.id.clone(),
        name: page.server_name.clone(),
        restart_to_apply: vec![
            ("Checkpoint connection".into(), config.database_redacted()),
            (
                "Checkpoint storage path".into(),
                config.storage.display().to_string(),
            ),
            ("Data folder".into(), config.data.display().to_string()),
            ("Listen".into(), config.listen.clone()),
            (
                "Heartbeat".into(),
                format!("{} ms", config.heartbeat.as_millis()),
            ),
            ("Lease".into(), format!("{} ms", config.lease.as_millis())),
            ("Capacity".into(), format!("{} executions", config.capacity)),
        ],
        flash,
    };
    Ok(html(baton_console::settings_page(&page, &view), cookie))
}

async fn settings(
    State(state): State<AppState>,
    account: Option<Extension<Account>>,
    headers: HeaderMap,
) -> PageResult {
    settings_view(&state, &headers, account.as_deref(), None).await
}

async fn rename(
    State(state): State<AppState>,
    account: Option<Extension<Account>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let name = form_field(&form, "name").unwrap_or_default().trim();
    if name.is_empty() || name.len() > 100 {
        return Err(PageError(
            StatusCode::BAD_REQUEST,
            "a server name is 1 to 100 characters".into(),
        ));
    }
    let actor = account.as_ref().map(|a| a.name.clone()).unwrap_or_default();
    state
        .store
        .rename_server(&state.cluster.id, name, &actor)
        .await?;
    settings_view(
        &state,
        &headers,
        account.as_deref(),
        Some(format!("Renamed to {name}.")),
    )
    .await
}

/// Settings › Accounts with an optional message.
async fn accounts_view(
    state: &AppState,
    headers: &HeaderMap,
    account: &Account,
    flash: Option<String>,
) -> PageResult {
    let views: Vec<AccountView> = accounts::list(state, account)
        .await?
        .into_iter()
        .map(|a| AccountView {
            you: a.name == account.name,
            name: a.name,
            role: a.role,
            disabled: a.disabled,
            created_at: a.created_at,
            tokens: a.tokens,
            sessions: a.sessions,
        })
        .collect();
    let (page, cookie) = frame(
        state,
        headers,
        Some(account),
        "Settings › Accounts",
        Section::Accounts,
    )
    .await;
    let roles = Role::ALL.map(Role::as_str);
    Ok(html(
        baton_console::accounts_page(
            &page,
            &views,
            &roles,
            accounts::PASSWORD_MIN,
            flash.as_deref(),
        ),
        cookie,
    ))
}

async fn accounts(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
) -> PageResult {
    accounts_view(&state, &headers, &account, None).await
}

async fn create_account(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let field = |name: &str| form_field(&form, name).unwrap_or_default();
    let name = field("name");
    let role = accounts::create(
        &state,
        &account,
        name,
        field("password").to_owned(),
        field("role"),
    )
    .await?;
    let flash = format!("Created the {} account {name}.", role.as_str());
    accounts_view(&state, &headers, &account, Some(flash)).await
}

/// What a destructive action asks before it is done: the question and the
/// button.
fn confirmation(action: &str, name: &str) -> Option<(String, &'static str)> {
    match action {
        "delete" => Some((
            format!(
                "Delete the account {name} with its sessions and API tokens? This cannot be undone."
            ),
            "Delete the account",
        )),
        "revoke-tokens" => Some((
            format!(
                "Revoke every API token of {name}? Scripts and CLIs using them will be refused."
            ),
            "Revoke its tokens",
        )),
        _ => None,
    }
}

async fn confirm_page(
    state: &AppState,
    headers: &HeaderMap,
    account: &Account,
    name: &str,
    action: &str,
    notice: Option<&str>,
) -> PageResult {
    let Some((question, button)) = confirmation(action, name) else {
        return Err(PageError(
            StatusCode::NOT_FOUND,
            format!("{action:?} asks no confirmation; use its button on Settings › Accounts"),
        ));
    };
    if !accounts::exists(state, name).await? {
        return Err(AccountError::NotFound(name.to_owned()).into());
    }
    let (page, cookie) = frame(
        state,
        headers,
        Some(account),
        "Settings › Accounts",
        Section::Accounts,
    )
    .await;
    Ok(html(
        baton_console::confirm_page(&page, name, action, &question, button, notice),
        cookie,
    ))
}

/// The confirmation page of a destructive action (a link, so no script is
/// needed to ask).
async fn confirm_account_action(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
) -> PageResult {
    confirm_page(&state, &headers, &account, &name, &action, None).await
}

async fn account_action(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let confirmed = form_field(&form, "confirm") == Some("yes");
    if confirmation(&action, &name).is_some() && !confirmed {
        let notice = "Nothing was done: tick the box to confirm.";
        return confirm_page(&state, &headers, &account, &name, &action, Some(notice)).await;
    }
    let field = |key: &str| form_field(&form, key).unwrap_or_default();
    let flash = match action.as_str() {
        "disable" => {
            accounts::set_disabled(&state, &account, &name, true).await?;
            format!(
                "Disabled {name}: it cannot log in, its sessions ended and its tokens are refused."
            )
        }
        "enable" => {
            accounts::set_disabled(&state, &account, &name, false).await?;
            format!("Enabled {name}.")
        }
        "password" => {
            accounts::reset_password(&state, &account, &name, field("password").to_owned()).await?;
            format!("Set the password of {name}; its sessions ended.")
        }
        "role" => {
            let role = accounts::set_role(&state, &account, &name, field("role")).await?;
            format!("{name} is now a {}.", role.as_str())
        }
        "revoke-tokens" => {
            let revoked = accounts::revoke_tokens(&state, &account, &name).await?;
            format!("Revoked {revoked} API tokens of {name}.")
        }
        "delete" => {
            accounts::delete(&state, &account, &name).await?;
            format!("Deleted {name} with its sessions and tokens.")
        }
        _ => {
            return Err(PageError(
                StatusCode::NOT_FOUND,
                format!("there is no account action {action:?}"),
            ));
        }
    };
    accounts_view(&state, &headers, &account, Some(flash)).await
}

async fn password_page(
    state: &AppState,
    headers: &HeaderMap,
    account: &Account,
    status: StatusCode,
    notice: Option<&str>,
) -> Response {
    let (page, cookie) = frame(state, headers, Some(account), "Password", Section::Password).await;
    let mut response = html(
        baton_console::password_page(&page, accounts::PASSWORD_MIN, notice),
        cookie,
    );
    *response.status_mut() = status;
    response
}

async fn password_form(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
) -> PageResult {
    Ok(password_page(&state, &headers, &account, StatusCode::OK, None).await)
}

/// The logged-in account changes its own password. A wrong current
/// password counts as a failed login (the same throttle as `/login`).
async fn change_password(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    client: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let field = |key: &str| form_field(&form, key).unwrap_or_default().to_owned();
    let (password, again) = (field("password"), field("password2"));
    if password != again {
        let notice = "The new password and its repetition differ; nothing was changed.";
        return Ok(password_page(
            &state,
            &headers,
            &account,
            StatusCode::BAD_REQUEST,
            Some(notice),
        )
        .await);
    }
    let address = client.map(|Extension(c)| c.0.ip());
    match accounts::change_own_password(&state, &account, address, field("current"), password).await
    {
        Ok(()) => {
            let (page, cookie) = frame(
                &state,
                &headers,
                None,
                "Password changed",
                Section::Password,
            )
            .await;
            let message = "Your password is changed and your sessions have ended.";
            Ok(html(
                baton_console::notice_page(&page, message, "/login", "Log in again"),
                cookie,
            ))
        }
        Err(AccountError::Wait(wait)) => Ok(too_many_failures(wait)),
        Err(e @ (AccountError::Invalid(_) | AccountError::Forbidden(_))) => {
            let notice = format!("{e}; nothing was changed.");
            Ok(password_page(&state, &headers, &account, e.http_status(), Some(&notice)).await)
        }
        Err(e) => Err(e.into()),
    }
}
