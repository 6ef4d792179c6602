//! One function per page and per live fragment, by console section.

use maud::{Markup, html};

use crate::{Page, layout};

mod accounts;
mod flows;
mod requests;
mod servers;
mod statistics;

pub use accounts::*;
pub use flows::*;
pub use requests::*;
pub use servers::*;
pub use statistics::*;

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn csrf_field(page: &Page) -> Markup {
    html! { input type="hidden" name="csrf" value=(page.csrf); }
}

/// A sentence with one link onwards.
pub fn notice_page(page: &Page, message: &str, href: &str, link: &str) -> Markup {
    layout(
        page,
        html! { p.flash { (message) } p { a href=(href) { (link) } } },
    )
}

/// The login form; it posts `username` and `password` to `/login`.
pub fn login_page(page: &Page, error: Option<&str>) -> Markup {
    layout(
        page,
        html! {
            @if let Some(error) = error { p.notice { (error) } }
            form method="post" action="/login" {
                (csrf_field(page))
                p { label { "Username " input name="username" autocomplete="username" required; } }
                p { label { "Password " input type="password" name="password" autocomplete="current-password" required; } }
                button { "Log in" }
            }
        },
    )
}

/// A refusal or error shown as a page.
pub fn message_page(page: &Page, message: &str) -> Markup {
    layout(
        page,
        html! { p.notice { (message) } p { a href="/status/requests" { "Back to the Status List" } } },
    )
}
