//! Settings › Accounts and the password page.

use maud::{Markup, html};

use super::{csrf_field, encode};
use crate::{Page, layout, time};

/// An account on Settings › Accounts.
#[derive(Debug, Clone)]
pub struct AccountView {
    /// Login name.
    pub name: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Whether it is disabled.
    pub disabled: bool,
    /// Created, ms.
    pub created_at: i64,
    /// Unexpired API tokens.
    pub tokens: i64,
    /// Unexpired console sessions.
    pub sessions: i64,
    /// Whether it is the account viewing the page.
    pub you: bool,
}

/// Where an account's action posts to.
fn account_action(name: &str, action: &str) -> String {
    format!("/settings/accounts/{}/{action}", encode(name))
}

/// Settings › Accounts: every account with its actions, and a form for a
/// new one. Destructive actions (delete, revoke tokens) lead to a
/// confirmation page first.
pub fn accounts_page(
    page: &Page,
    accounts: &[AccountView],
    roles: &[&str],
    password_min: usize,
    flash: Option<&str>,
) -> Markup {
    layout(
        page,
        html! {
            @if let Some(flash) = flash { p.flash { (flash) } }
            table.accounts {
                thead { tr { th { "Name" } th { "Role" } th { "Status" } th { "API tokens" } th { "Sessions" } th { "Created" } th { "Password" } th { span.visually-hidden { "Actions" } } } }
                tbody {
                    @for account in accounts {
                        tr.account data-name=(account.name) data-role=(account.role) data-disabled=(account.disabled) data-tokens=(account.tokens) {
                            td.name { (account.name) @if account.you { " (you)" } }
                            td {
                                form.inline method="post" action=(account_action(&account.name, "role")) {
                                    (csrf_field(page))
                                    select name="role" aria-label="Role" {
                                        @for role in roles {
                                            option value=(role) selected[*role == account.role] { (role) }
                                        }
                                    }
                                    " " button { "Set role" }
                                }
                            }
                            td {
                                @if account.disabled {
                                    "disabled "
                                    form.inline method="post" action=(account_action(&account.name, "enable")) { (csrf_field(page)) button { "Enable" } }
                                } @else {
                                    "enabled "
                                    @if !account.you {
                                        form.inline method="post" action=(account_action(&account.name, "disable")) { (csrf_field(page)) button { "Disable" } }
                                    }
                                }
                            }
                            td.tokens {
                                (account.tokens)
                                @if account.tokens > 0 { " " a href=(account_action(&account.name, "revoke-tokens")) { "Revoke…" } }
                            }
                            td { (account.sessions) }
                            td { (time(account.created_at)) }
                            td {
                                form.inline method="post" action=(account_action(&account.name, "password")) {
                                    (csrf_field(page))
                                    input type="password" name="password" aria-label={"New password for " (account.name)} autocomplete="new-password" minlength=(password_min) required;
                                    " " button { "Reset" }
                                }
                            }
                            td { @if !account.you { a.delete href=(account_action(&account.name, "delete")) { "Delete…" } } }
                        }
                    }
                }
            }
            h2 { "New account" }
            form.new-account method="post" action="/settings/accounts" {
                (csrf_field(page))
                p { label { "Name " input name="name" required maxlength="64" pattern="[A-Za-z0-9._@-]+" autocomplete="off"; } }
                p { label { "Role " select name="role" {
                    @for role in roles { option value=(role) selected[*role == "viewer"] { (role) } }
                } } }
                p { label { "Password " input type="password" name="password" autocomplete="new-password" minlength=(password_min) required; } " at least " (password_min) " characters" }
                button { "Create" }
            }
        },
    )
}

/// Asks before a destructive action on an account: the form posts
/// `confirm=yes` only with its box ticked, without any script.
pub fn confirm_page(
    page: &Page,
    name: &str,
    action: &str,
    question: &str,
    button: &str,
    notice: Option<&str>,
) -> Markup {
    layout(
        page,
        html! {
            @if let Some(notice) = notice { p.notice { (notice) } }
            form.confirm method="post" action=(account_action(name, action)) {
                (csrf_field(page))
                p { (question) }
                p { label { input type="checkbox" name="confirm" value="yes" required; " Yes, I am sure" } }
                button { (button) }
                " "
                a href="/settings/accounts" { "Cancel" }
            }
        },
    )
}

/// The logged-in account changes its own password.
pub fn password_page(page: &Page, password_min: usize, notice: Option<&str>) -> Markup {
    layout(
        page,
        html! {
            @if let Some(notice) = notice { p.notice { (notice) } }
            form.password method="post" action="/account/password" {
                (csrf_field(page))
                p { label { "Current password " input type="password" name="current" autocomplete="current-password" required; } }
                p { label { "New password " input type="password" name="password" autocomplete="new-password" minlength=(password_min) required; } " at least " (password_min) " characters" }
                p { label { "New password again " input type="password" name="password2" autocomplete="new-password" minlength=(password_min) required; } }
                button { "Change password" }
            }
            p { "Changing it ends every session of your account, this one too: log in again afterwards." }
        },
    )
}
