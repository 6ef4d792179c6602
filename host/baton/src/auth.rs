//! Who is calling: accounts with Argon2id passwords, console sessions, API
//! bearer tokens, and the role each route needs.
//!
//! Roles: `viewer` reads; `operator` also runs flows, re-executes and
//! cancels; `admin` also deploys and changes settings. `/healthz`,
//! `/metrics`, `/login` and the static assets are open.

use std::path::Path;

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use baton_store::{AccountRow, Store, StoreError};

use crate::api::AppState;

/// The cookie that carries a console session.
pub const SESSION_COOKIE: &str = "baton_session";
/// How long a console session lasts.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// What an account may do, in increasing power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also runs flows, re-executes and cancels.
    Operator,
    /// Also deploys and changes settings.
    Admin,
}

impl Role {
    fn parse(s: &str) -> Self {
        match s {
            "admin" => Self::Admin,
            "operator" => Self::Operator,
            _ => Self::Viewer,
        }
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

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
            role: Role::parse(&row.role),
            name: row.name,
        }
    }
}

/// A new random secret (256 bits, hex).
pub fn secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a secret is stored: its blake3 hash.
pub fn secret_hash(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// An Argon2id PHC string for a password.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password")
        .to_string()
}

/// Checks a password against its PHC string (slow on purpose: off the runtime).
pub async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

/// First start: creates `admin` (password from `BATON_ADMIN_PASSWORD`, or a
/// generated one logged once) when the cluster has no account, and makes
/// sure `<data>/admin.token` (mode 0600) holds a valid admin API token, which
/// the CLI uses by default.
pub async fn bootstrap(store: &Store, data: &Path) -> anyhow::Result<()> {
    if !store.has_accounts().await? {
        let (password, generated) = match std::env::var("BATON_ADMIN_PASSWORD") {
            Ok(password) if !password.is_empty() => (password, false),
            _ => (secret()[..20].to_owned(), true),
        };
        let created = store
            .create_account(&AccountRow {
                name: "admin".into(),
                password_hash: hash_password(&password),
                role: "admin".into(),
            })
            .await;
        match created {
            Ok(()) if generated => tracing::warn!(
                "created the account admin with password {password} (shown only this once)"
            ),
            Ok(()) => tracing::info!(
                "created the account admin with the password from BATON_ADMIN_PASSWORD"
            ),
            // Another server of the cluster created it at the same moment.
            Err(StoreError::Refused(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let path = data.join("admin.token");
    if let Ok(token) = std::fs::read_to_string(&path)
        && store
            .token_account(&secret_hash(token.trim()))
            .await?
            .is_some()
    {
        return Ok(());
    }
    let token = secret();
    store
        .create_token(&secret_hash(&token), "admin", "admin.token")
        .await?;
    write_private(&path, &token)?;
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
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
    if path.starts_with("/api/accounts") {
        return Some(Role::Admin);
    }
    if method == Method::GET || method == Method::HEAD || path == "/logout" {
        return Some(Role::Viewer);
    }
    let admin = (path == "/api/flows")
        || path.starts_with("/api/schedules")
        || path.starts_with("/api/accounts")
        || path.starts_with("/api/version-control")
        || path == "/status/version-control/update"
        || (path.starts_with("/api/servers/") && path.ends_with("/name"))
        || path.starts_with("/settings/");
    Some(if admin { Role::Admin } else { Role::Operator })
}

/// Resolves the caller (bearer token or session cookie) and enforces the
/// route's role. The API answers 401/403 in JSON; the console redirects to
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
    let found = match (bearer, crate::console::cookie(headers, SESSION_COOKIE)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_the_right_role() {
        assert_eq!(required(&Method::GET, "/healthz", false), None);
        assert_eq!(required(&Method::GET, "/metrics", false), None);
        assert_eq!(required(&Method::GET, "/metrics", true), Some(Role::Viewer));
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
            required(&Method::POST, "/api/flows", false),
            Some(Role::Admin)
        );
        assert_eq!(
            required(&Method::POST, "/settings/flow/name", false),
            Some(Role::Admin)
        );
    }

    #[test]
    fn passwords_verify_only_themselves() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(runtime.block_on(verify_password("correct horse".into(), hash.clone())));
        assert!(!runtime.block_on(verify_password("wrong".into(), hash)));
    }
}
