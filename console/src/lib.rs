//! Baton's operator console: server-rendered pages (maud) with htmx.
//!
//! This crate owns presentation only: plain view structs in, HTML out. The
//! server gathers the data, serves the routes and checks CSRF tokens. All
//! text goes through maud's escaping; nothing user-supplied is emitted raw,
//! and pages carry no inline script (htmx is served from the binary), so a
//! strict Content-Security-Policy holds.
//!
//! # Layout
//!
//! - [`layout`]: the page shell with the Status / Settings / Tools navigation.
//! - `pages`: one function per page and per live fragment, a file per console section.
//! - [`assets`]: the vendored htmx (2.0.11, BSD-2-Clause, `assets/htmx.LICENSE`) and the stylesheet.

mod pages;

use maud::{DOCTYPE, Markup, html};

pub use pages::*;

/// Files served under `/assets/`.
pub mod assets {
    /// htmx 2.0.11 from the `htmx.org` npm package, `dist/htmx.min.js`.
    pub const HTMX: &[u8] = include_bytes!("../assets/htmx.min.js");
    /// htmx's licence.
    pub const HTMX_LICENSE: &[u8] = include_bytes!("../assets/htmx.LICENSE");
    /// htmx's Server-Sent Events extension 2.2.4 from the `htmx-ext-sse`
    /// npm package, `dist/sse.min.js`.
    pub const HTMX_SSE: &[u8] = include_bytes!("../assets/htmx-sse.min.js");
    /// The extension's licence (0BSD).
    pub const HTMX_SSE_LICENSE: &[u8] = include_bytes!("../assets/htmx-sse.LICENSE");
    /// The console's stylesheet.
    pub const CSS: &[u8] = include_bytes!("../assets/console.css");
}

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Status › Flow › Server List.
    Servers,
    /// Status › Flow › Status List (and request detail).
    Requests,
    /// Status › Statistics.
    Statistics,
    /// Status › Version Control.
    VersionControl,
    /// Settings › Services › Flow.
    Settings,
    /// Settings › Accounts.
    Accounts,
    /// The account's own password.
    Password,
    /// Tools › Flows.
    Flows,
}

/// What every page needs besides its body.
#[derive(Debug, Clone)]
pub struct Page {
    /// Title.
    pub title: String,
    /// Navigation entry.
    pub section: Section,
    /// Name of the server serving the page.
    pub server_name: String,
    /// The CSRF token to embed in forms.
    pub csrf: String,
    /// The logged-in account (empty on the login page).
    pub account: String,
    /// Whether the logged-in account is an admin (the navigation then
    /// leads to the admin-only pages).
    pub admin: bool,
}

fn link(page: &Page, section: Section, href: &str, text: &str) -> Markup {
    html! { a href=(href) class=[(page.section == section).then_some("here")] { (text) } }
}

/// The page shell.
pub fn layout(page: &Page, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
                title { (page.title) " · Baton" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/htmx.min.js" defer {}
                script src="/assets/htmx-sse.min.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    strong { "Baton" }
                    nav {
                        div.group {
                            span { "Status" }
                            (link(page, Section::Servers, "/status/servers", "Server List"))
                            (link(page, Section::Requests, "/status/requests", "Status List"))
                            (link(page, Section::Statistics, "/status/statistics", "Statistics"))
                            (link(page, Section::VersionControl, "/status/version-control", "Version Control"))
                        }
                        div.group {
                            span { "Settings" }
                            (link(page, Section::Settings, "/settings/flow", "Flow"))
                            @if page.admin {
                                (link(page, Section::Accounts, "/settings/accounts", "Accounts"))
                            }
                        }
                        div.group {
                            span { "Tools" }
                            (link(page, Section::Flows, "/flows", "Flows"))
                        }
                    }
                    span.me title="the server you are logged into" { "★ " (page.server_name) }
                    @if !page.account.is_empty() {
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(page.csrf);
                            (page.account) " "
                            (link(page, Section::Password, "/account/password", "Password"))
                            " " button { "Log out" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (page.title) }
                    (body)
                }
            }
        }
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmm` (UTC).
pub fn time(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(at) => at.strftime("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        Err(_) => format!("{ms} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00.000");
        assert_eq!(time(1_795_000_000_123), "2026-11-18 11:06:40.123");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00.000");
    }
}
