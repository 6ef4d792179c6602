//! Settings › Accounts for admins and `/account/password` for everyone.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use baton_console::{AccountView, Section};
use baton_core::Role;

use super::session::too_many_failures;
use super::{PageError, PageResult, check_csrf, form_field, frame, html};
use crate::http::accounts::{self, AccountError};
use crate::http::auth::{Account, ClientAddress};
use crate::http::state::AppState;
use crate::http::status::HttpStatus;

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

pub(super) async fn accounts(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
) -> PageResult {
    accounts_view(&state, &headers, &account, None).await
}

pub(super) async fn create_account(
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
pub(super) async fn confirm_account_action(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
) -> PageResult {
    confirm_page(&state, &headers, &account, &name, &action, None).await
}

pub(super) async fn account_action(
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

pub(super) async fn password_form(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    headers: HeaderMap,
) -> PageResult {
    Ok(password_page(&state, &headers, &account, StatusCode::OK, None).await)
}

/// The logged-in account changes its own password. A wrong current
/// password counts as a failed login (the same throttle as `/login`).
pub(super) async fn change_password(
    State(state): State<AppState>,
    Extension(account): Extension<Account>,
    ClientAddress(address): ClientAddress,
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
