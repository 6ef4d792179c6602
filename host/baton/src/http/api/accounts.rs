//! Accounts, passwords and API tokens.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::http::accounts::{self};
use crate::http::auth::{Account, ClientAddress};
use crate::http::credentials;
use crate::http::state::AppState;

use super::dto::{
    AccountView, Deleted, IssuedToken, NewAccount, PasswordChange, PasswordReset, Revoked,
    RevokedTokens, RoleChange, TokenRevocation,
};
use super::{ApiError, ApiResult, body_of};

pub(super) async fn create_account(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let new: NewAccount = body_of(&body, "{\"name\", \"password\", \"role\"}")?;
    let role = accounts::create(&state, &account, &new.name, new.password, &new.role).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(AccountView {
            name: new.name,
            role: Some(role.as_str().to_owned()),
            disabled: None,
        }),
    ))
}

pub(super) async fn list_accounts(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
) -> ApiResult<axum::Json<Vec<AccountView>>> {
    let accounts = accounts::list(&state, &account).await?;
    Ok(axum::Json(
        accounts
            .into_iter()
            .map(|a| AccountView {
                name: a.name,
                role: Some(a.role),
                disabled: Some(a.disabled),
            })
            .collect(),
    ))
}

pub(super) async fn issue_token(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    if state.store.account(&name).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("there is no account {name}"),
        ));
    }
    let token = credentials::secret();
    state
        .store
        .create_token(
            &credentials::secret_hash(&token),
            &name,
            "issued through the API",
            state.config.token_ttl_ms,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(IssuedToken {
            account: name,
            token,
        }),
    ))
}

/// The caller changes their own password; their console sessions end. A
/// wrong current password is throttled like a failed login.
pub(super) async fn change_password(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ClientAddress(address): ClientAddress,
    body: Bytes,
) -> ApiResult<axum::Json<AccountView>> {
    let change: PasswordChange = body_of(&body, "{\"current\", \"password\"}")?;
    accounts::change_own_password(&state, &account, address, change.current, change.password)
        .await?;
    Ok(axum::Json(AccountView {
        name: account.name,
        role: None,
        disabled: None,
    }))
}

/// An admin sets an account's password; its console sessions end.
pub(super) async fn reset_password(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<axum::Json<AccountView>> {
    let reset: PasswordReset = body_of(&body, "{\"password\"}")?;
    accounts::reset_password(&state, &account, &name, reset.password).await?;
    Ok(axum::Json(AccountView {
        name,
        role: None,
        disabled: None,
    }))
}

/// An admin gives an account another role.
pub(super) async fn set_role(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<axum::Json<AccountView>> {
    let change: RoleChange = body_of(&body, "{\"role\"}")?;
    let role = accounts::set_role(&state, &account, &name, &change.role).await?;
    Ok(axum::Json(AccountView {
        name,
        role: Some(role.as_str().to_owned()),
        disabled: None,
    }))
}

pub(super) async fn disable_account(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<AccountView>> {
    accounts::set_disabled(&state, &account, &name, true).await?;
    Ok(axum::Json(AccountView {
        name,
        role: None,
        disabled: Some(true),
    }))
}

pub(super) async fn enable_account(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<AccountView>> {
    accounts::set_disabled(&state, &account, &name, false).await?;
    Ok(axum::Json(AccountView {
        name,
        role: None,
        disabled: Some(false),
    }))
}

pub(super) async fn delete_account(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Deleted>> {
    accounts::delete(&state, &account, &name).await?;
    Ok(axum::Json(Deleted {
        name,
        deleted: true,
    }))
}

/// An admin revokes every token of an account.
pub(super) async fn revoke_tokens(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<RevokedTokens>> {
    let revoked = accounts::revoke_tokens(&state, &account, &name).await?;
    Ok(axum::Json(RevokedTokens {
        account: name,
        revoked,
    }))
}

/// Whoever holds a token may revoke it (their own one included).
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    body: Bytes,
) -> ApiResult<axum::Json<Revoked>> {
    let revocation: TokenRevocation = body_of(&body, "{\"token\"}")?;
    if !state
        .store
        .revoke_token(&credentials::secret_hash(revocation.token.trim()))
        .await?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such token (already revoked or expired?)",
        ));
    }
    Ok(axum::Json(Revoked { revoked: true }))
}
