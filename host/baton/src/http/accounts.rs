//! The credential life cycle, one copy of its rules for the JSON API and the
//! console: what a name, a role and a password must be, who may act on which account, and the actions
//! themselves. The API handlers and the console's form handlers only parse
//! their input and render the outcome.
//!
//! The store keeps the one rule that must hold across servers: one enabled
//! admin always remains (checked in the transaction that would take it
//! away, see `Store::set_disabled`).

use std::net::IpAddr;
use std::time::Duration;

use baton_core::Role;
use baton_core::store::{AccountRow, AccountSummary, StoreError};

use crate::http::auth::Account;
use crate::http::credentials::{self, Login};
use crate::http::state::AppState;

/// The shortest password an account may be given.
pub const PASSWORD_MIN: usize = 8;
/// The longest account name.
pub const NAME_MAX: usize = 64;

/// Why an account action was refused; the API answers it as JSON, the
/// console as a page, with the same status and sentence.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The input breaks a rule (400).
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this, or proved nothing (403).
    #[error("{0}")]
    Forbidden(String),
    /// There is no such account (404).
    #[error("there is no account {0}")]
    NotFound(String),
    /// The accounts' state does not allow it (409).
    #[error("{0}")]
    Conflict(String),
    /// Too many failed passwords: try again after this long (429).
    #[error("too many failed passwords; try again in {} seconds", .0.as_secs() + 1)]
    Wait(Duration),
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AccountError {
    /// The `Retry-After` seconds of a [`AccountError::Wait`].
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Wait(wait) => Some(retry_after(*wait)),
            _ => None,
        }
    }
}

/// Whole seconds to wait, rounded up so that a client that waits them is
/// let in.
pub fn retry_after(wait: Duration) -> u64 {
    wait.as_secs() + 1
}

type Result<T> = std::result::Result<T, AccountError>;

/// A role by its name; anything but `admin`, `operator` and `viewer` is
/// refused.
pub fn parse_role(role: &str) -> Result<Role> {
    Role::ALL
        .into_iter()
        .find(|r| r.as_str() == role)
        .ok_or_else(|| AccountError::Invalid("role must be admin, operator or viewer".into()))
}

/// An account name: 1 to [`NAME_MAX`] letters, digits, `.`, `_`, `-` or
/// `@`, so that it reads the same in a URL path, a page and a log line.
pub fn check_name(name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty()
        || name.len() > NAME_MAX
        || !name.chars().all(allowed)
        || name.chars().all(|c| c == '.')
    {
        return Err(AccountError::Invalid(format!(
            "an account name is 1 to {NAME_MAX} letters, digits, '.', '_', '-' or '@'"
        )));
    }
    Ok(())
}

/// A new password: at least [`PASSWORD_MIN`] characters.
pub fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < PASSWORD_MIN {
        return Err(AccountError::Invalid(format!(
            "a password needs at least {PASSWORD_MIN} characters"
        )));
    }
    Ok(())
}

/// Only admins manage accounts (the routes say so too; this holds for any
/// caller of these functions).
fn must_manage(actor: &Account) -> Result<()> {
    if actor.role < Role::Admin {
        return Err(AccountError::Forbidden(format!(
            "the account {} is a {}; managing accounts needs admin",
            actor.name,
            actor.role.as_str()
        )));
    }
    Ok(())
}

/// An admin may not lock themselves out: they cannot disable, demote or
/// delete the account they act as.
fn not_yourself(actor: &Account, name: &str) -> Result<()> {
    if actor.name == name {
        return Err(AccountError::Conflict(
            "you may not disable, demote or delete the account you are signed in as".into(),
        ));
    }
    Ok(())
}

fn found(name: &str, found: bool) -> Result<()> {
    if found {
        Ok(())
    } else {
        Err(AccountError::NotFound(name.to_owned()))
    }
}

/// Every account, for the admin's list.
pub async fn list(state: &AppState, actor: &Account) -> Result<Vec<AccountSummary>> {
    must_manage(actor)?;
    Ok(state.store.account_overview().await?)
}

/// Creates an account; its role as parsed.
pub async fn create(
    state: &AppState,
    actor: &Account,
    name: &str,
    password: String,
    role: &str,
) -> Result<Role> {
    must_manage(actor)?;
    let role = parse_role(role)?;
    check_name(name)?;
    check_password(&password)?;
    let password_hash = credentials::hash_password_off_thread(password).await;
    state
        .store
        .create_account(&AccountRow {
            name: name.to_owned(),
            password_hash,
            role: role.as_str().to_owned(),
        })
        .await
        .map_err(|e| match e {
            StoreError::Refused(why) => AccountError::Conflict(why),
            e => e.into(),
        })?;
    Ok(role)
}

/// Sets an account's password; its sessions end.
pub async fn reset_password(
    state: &AppState,
    actor: &Account,
    name: &str,
    password: String,
) -> Result<()> {
    must_manage(actor)?;
    check_password(&password)?;
    let hash = credentials::hash_password_off_thread(password).await;
    found(name, state.store.set_password(name, &hash).await?)
}

/// Gives an account another role; refused for the actor's own account and
/// for the last enabled admin.
pub async fn set_role(state: &AppState, actor: &Account, name: &str, role: &str) -> Result<Role> {
    must_manage(actor)?;
    let role = parse_role(role)?;
    if role < Role::Admin {
        not_yourself(actor, name)?;
    }
    found(
        name,
        refused_as_conflict(state.store.set_role(name, role.as_str()).await)?,
    )?;
    Ok(role)
}

/// Disables an account (no login, sessions end, tokens refused) or enables
/// it again; disabling is refused for the actor's own account and for the
/// last enabled admin.
pub async fn set_disabled(
    state: &AppState,
    actor: &Account,
    name: &str,
    disabled: bool,
) -> Result<()> {
    must_manage(actor)?;
    if disabled {
        not_yourself(actor, name)?;
    }
    found(
        name,
        refused_as_conflict(state.store.set_disabled(name, disabled).await)?,
    )
}

/// Deletes an account with its sessions and tokens; refused for the
/// actor's own account and for the last enabled admin.
pub async fn delete(state: &AppState, actor: &Account, name: &str) -> Result<()> {
    must_manage(actor)?;
    not_yourself(actor, name)?;
    found(
        name,
        refused_as_conflict(state.store.delete_account(name).await)?,
    )
}

/// Revokes every API token of an account; how many there were.
pub async fn revoke_tokens(state: &AppState, actor: &Account, name: &str) -> Result<u64> {
    must_manage(actor)?;
    let revoked = state.store.revoke_tokens(name).await?;
    if revoked == 0 && !exists(state, name).await? {
        return Err(AccountError::NotFound(name.to_owned()));
    }
    Ok(revoked)
}

/// Whether an account of that name exists, disabled or not.
pub async fn exists(state: &AppState, name: &str) -> Result<bool> {
    Ok(state
        .store
        .account_overview()
        .await?
        .iter()
        .any(|a| a.name == name))
}

/// The caller changes their own password, proving the current one; their
/// sessions end. A wrong current password counts as a failed login of the
/// account from `address` and is throttled exactly like `/login`: past the
/// allowance every try, the right password included, must wait.
pub async fn change_own_password(
    state: &AppState,
    actor: &Account,
    address: Option<IpAddr>,
    current: String,
    password: String,
) -> Result<()> {
    check_password(&password)?;
    let hash = state
        .store
        .account(&actor.name)
        .await?
        .map(|row| row.password_hash);
    match state.login.check(&actor.name, address, current, hash).await {
        Login::Ok => {}
        Login::Wrong => {
            return Err(AccountError::Forbidden(
                "the current password is wrong".into(),
            ));
        }
        Login::Wait(wait) => return Err(AccountError::Wait(wait)),
    }
    let hash = credentials::hash_password_off_thread(password).await;
    found(
        &actor.name,
        state.store.set_password(&actor.name, &hash).await?,
    )
}

/// The store's refusals (the last enabled admin) are conflicts.
fn refused_as_conflict<T>(result: std::result::Result<T, StoreError>) -> Result<T> {
    result.map_err(|e| match e {
        StoreError::Refused(why) => AccountError::Conflict(why),
        e => e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roles_and_passwords_follow_one_rule() {
        for good in ["admin", "ops-1", "a.b_c@example.com", &"x".repeat(NAME_MAX)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a/b",
            "a b",
            "..",
            "é",
            "a%2F",
            &"x".repeat(NAME_MAX + 1),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_role("operator").unwrap(), Role::Operator);
        assert!(parse_role("root").is_err() && parse_role("Admin").is_err());
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
    }
}
