//! Who is calling: a console session or an API bearer token names an
//! account, and each route needs a role (passwords, secrets and the login
//! throttle are in [`credentials`](crate::http::credentials)).
//!
//! Roles: `viewer` reads; `operator` also runs flows, re-executes and
//! cancels; `admin` also deploys and changes settings. `/healthz`,
//! `/metrics`, `/login` and the static assets are open.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use baton_core::Role;
use baton_core::store::AccountRow;

use crate::http::credentials::secret_hash;
use crate::http::state::AppState;

/// The authenticated caller, in the request's extensions.
#[derive(Debug, Clone)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
}

impl From<AccountRow> for Account {
    fn from(row: AccountRow) -> Self {
        Self {
            role: Role::parse(&row.role).unwrap_or(Role::Viewer),
            name: row.name,
        }
    }
}

/// The role a route needs; `None` for open routes. `/metrics` is open unless
/// `protect_metrics` is set.
fn required(method: &Method, path: &str, protect_metrics: bool) -> Option<Role> {
    let open = path == "/healthz"
        || (path == "/metrics" && !protect_metrics)
        || path == "/login"
        || path.starts_with("/assets/");
    if open {
        return None;
    }
    // Accounts: admins manage them, everyone changes their own password.
    if let Some(role) = route_role(path) {
        return Some(role);
    }
    if method == Method::GET || method == Method::HEAD || path == "/logout" {
        return Some(Role::Viewer);
    }
    let admin = (path == "/api/flows")
        || path.starts_with("/api/schedules")
        || path == "/api/purge"
        || path.starts_with("/api/version-control")
        || path == "/status/version-control/update"
        || (path.starts_with("/api/servers/") && path.ends_with("/name"))
        || path.starts_with("/settings/");
    Some(if admin { Role::Admin } else { Role::Operator })
}

/// Resolves the caller (bearer token, or for console routes a session
/// cookie) and enforces the route's role. The API answers 401/403 in JSON; the console redirects to
/// the login page.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let Some(needed) = required(request.method(), &path, state.config.protect_metrics) else {
        return next.run(request).await;
    };
    let api = path.starts_with("/api/");
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    // The JSON API takes a bearer token only: a browser attaches the session
    // cookie to any request a page of a sibling origin makes, and the API has
    // no CSRF token, so a cookie there would let such a page act as the user.
    let session = if api {
        None
    } else {
        cookie(headers, state.config.cookies().session())
    };
    let found = match (bearer, session) {
        (Some(token), _) => state.store.token_account(&secret_hash(&token)).await,
        (None, Some(session)) => state.store.session_account(&secret_hash(&session)).await,
        (None, None) => Ok(None),
    };
    let account: Account = match found {
        Ok(Some(row)) => row.into(),
        Ok(None) if api => {
            return deny(
                StatusCode::UNAUTHORIZED,
                "this API needs an Authorization: Bearer <token> header with a valid token",
            );
        }
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(e) => return deny(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    if account.role < needed {
        return deny(
            StatusCode::FORBIDDEN,
            &format!(
                "the account {} is a {}; this needs {}",
                account.name,
                account.role.as_str(),
                needed.as_str()
            ),
        );
    }
    request.extensions_mut().insert(account);
    next.run(request).await
}

fn deny(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// A cookie's value.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The role the account routes need, for the API and the console alike;
/// `None` for every other route. Admins manage accounts; every account may
/// change its own password and revoke a token it holds.
pub fn route_role(path: &str) -> Option<Role> {
    if path.starts_with("/api/accounts") || path.starts_with("/settings/accounts") {
        Some(Role::Admin)
    } else if path == "/api/password" || path == "/account/password" || path == "/api/tokens/revoke"
    {
        Some(Role::Viewer)
    } else if path.starts_with("/api/requests/") && path.ends_with("/bundle") {
        // The checkpoints' values, which the pages never show.
        Some(Role::Operator)
    } else {
        None
    }
}

/// The address a request comes from, as the login throttle counts it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(Self(client_address(
            peer,
            &parts.headers,
            &state.config.trusted_proxies,
        )))
    }
}

/// The client behind `peer`: the peer itself, unless it is one of the
/// `trusted` proxies; then the last address of `X-Forwarded-For` that is
/// not one. Each proxy appends the address it saw, so the entries to the
/// right of the client are the proxies' own, and whatever a client put to
/// the left is never read. An entry that is not an address ends the walk
/// at the peer.
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    for entry in forwarded.iter().rev() {
        match entry.parse::<IpAddr>() {
            Ok(address) if trusted.contains(&address) => continue,
            Ok(address) => return Some(address),
            Err(_) => break,
        }
    }
    Some(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_the_right_role() {
        assert_eq!(required(&Method::GET, "/healthz", false), None);
        assert_eq!(required(&Method::GET, "/metrics", false), None);
        assert_eq!(required(&Method::GET, "/metrics", true), Some(Role::Viewer));
        // A bundle holds the checkpoints' values, which viewers never see.
        assert_eq!(
            required(&Method::GET, "/api/requests/r/bundle", false),
            Some(Role::Operator)
        );
        assert_eq!(required(&Method::POST, "/login", false), None);
        assert_eq!(
            required(&Method::GET, "/status/requests", false),
            Some(Role::Viewer)
        );
        assert_eq!(
            required(&Method::POST, "/api/requests/x/cancel", false),
            Some(Role::Operator)
        );
        assert_eq!(
            required(&Method::POST, "/status/requests/x/reexecute", false),
            Some(Role::Operator)
        );
        assert_eq!(
            required(&Method::POST, "/api/requests/x/hold", false),
            Some(Role::Operator)
        );
        assert_eq!(
            required(&Method::POST, "/status/requests/x/resume", false),
            Some(Role::Operator)
        );
        assert_eq!(
            required(&Method::POST, "/api/flows", false),
            Some(Role::Admin)
        );
        assert_eq!(
            required(&Method::POST, "/api/purge", false),
            Some(Role::Admin)
        );
        assert_eq!(
            required(&Method::POST, "/settings/flow/name", false),
            Some(Role::Admin)
        );
        assert_eq!(
            required(&Method::GET, "/settings/accounts", false),
            Some(Role::Admin)
        );
        assert_eq!(
            required(&Method::POST, "/account/password", false),
            Some(Role::Viewer)
        );
    }

    #[test]
    fn account_routes_need_their_role() {
        assert_eq!(route_role("/api/accounts/x/disable"), Some(Role::Admin));
        assert_eq!(route_role("/settings/accounts"), Some(Role::Admin));
        assert_eq!(route_role("/settings/accounts/x/delete"), Some(Role::Admin));
        assert_eq!(route_role("/account/password"), Some(Role::Viewer));
        assert_eq!(route_role("/api/password"), Some(Role::Viewer));
        assert_eq!(route_role("/settings/flow"), None);
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_names_it() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let inner: IpAddr = "10.0.0.2".parse().unwrap();
        let forwarded = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", value.parse().unwrap());
            headers
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let headers = forwarded("1.2.3.4, 5.6.7.8");
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(
            client_address(ip("9.9.9.9"), &headers, &[proxy]),
            ip("9.9.9.9")
        );
        assert_eq!(client_address(Some(proxy), &headers, &[]), Some(proxy));
        // Behind a trusted proxy, the last entry that is not a proxy.
        assert_eq!(
            client_address(Some(proxy), &headers, &[proxy]),
            ip("5.6.7.8")
        );
        let chain = forwarded("1.2.3.4, 5.6.7.8, 10.0.0.2");
        assert_eq!(
            client_address(Some(proxy), &chain, &[proxy, inner]),
            ip("5.6.7.8")
        );
        // No header, or a broken entry before any client: the proxy itself.
        assert_eq!(
            client_address(Some(proxy), &HeaderMap::new(), &[proxy]),
            Some(proxy)
        );
        assert_eq!(
            client_address(Some(proxy), &forwarded("1.2.3.4, junk"), &[proxy]),
            Some(proxy)
        );
        assert_eq!(client_address(None, &headers, &[proxy]), None);
    }
}
