//! Logging in and out of the console.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use baton_console::Section;

use super::{PageError, PageResult, check_csrf, form_field, frame, html};
use crate::http::auth::{ClientAddress, cookie};
use crate::http::credentials;
use crate::http::state::AppState;

pub(super) async fn login_form(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let (page, cookie) = frame(&state, &headers, None, "Log in", Section::Servers).await;
    Ok(html(baton_console::login_page(&page, None), cookie))
}

/// The largest login form accepted: a name, a password and the CSRF token.
pub(super) const LOGIN_BODY_MAX: usize = 4096;

pub(super) async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> PageResult {
    check_csrf(&state, &headers, &form)?;
    let field = |name: &str| form_field(&form, name).unwrap_or_default().to_owned();
    let (username, password) = (field("username"), field("password"));
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

pub(super) async fn logout(
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
pub(super) fn too_many_failures(wait: std::time::Duration) -> Response {
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
