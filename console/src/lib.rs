//! Baton's operator console: server-rendered pages (maud).
//!
//! This crate owns presentation only: it turns plain view structs into HTML.
//! The server gathers the data and serves the routes. Everything rendered
//! goes through maud's escaping; nothing user-supplied is emitted raw.
//!
//! # Layout
//!
//! - [`layout`]: the page shell with the Status / Settings / Tools navigation.
//! - [`servers_page`], [`requests_page`]: the Status pages.

use maud::{DOCTYPE, Markup, html};

/// One row of the Server List.
#[derive(Debug, Clone)]
pub struct ServerView {
    /// Server ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// `running`, `terminated` or `stopped`.
    pub status: String,
    /// Listen address.
    pub address: String,
    /// Heartbeat age in milliseconds.
    pub heartbeat_age_ms: i64,
    /// Unfinished requests owned.
    pub owned: i64,
    /// Is this the server serving the page?
    pub current: bool,
}

/// One row of the Status List.
#[derive(Debug, Clone)]
pub struct RequestView {
    /// Request ID.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// Plain status label.
    pub status: String,
    /// Owner server name or ID.
    pub owner: String,
    /// Attempts started.
    pub attempts: i64,
    /// Last checkpoint name.
    pub last_checkpoint: String,
    /// Last error.
    pub error: String,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#222}\
nav{background:#1f2937;padding:.6rem 1rem}nav a{color:#e5e7eb;margin-right:1.2rem;text-decoration:none}\
main{padding:1rem}table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.3rem .7rem;text-align:left}\
.running{color:#15803d}.terminated{color:#b91c1c}.stopped{color:#6b7280}";

/// The page shell.
pub fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · Baton" }
                style { (STYLE) }
            }
            body {
                nav {
                    a href="/status/servers" { "Status › Server List" }
                    a href="/status/requests" { "Status › Status List" }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// Status › Flow › Server List.
pub fn servers_page(servers: &[ServerView]) -> Markup {
    layout(
        "Server List",
        html! {
            table {
                tr { th { "" } th { "Name" } th { "ID" } th { "Status" } th { "Address" } th { "Heartbeat" } th { "Requests" } }
                @for server in servers {
                    tr {
                        td { @if server.current { span title="the server you are on" { "★" } } }
                        td { (server.name) }
                        td { code { (server.id) } }
                        td class=(server.status) { (server.status) }
                        td { (server.address) }
                        td { (server.heartbeat_age_ms) " ms ago" }
                        td { (server.owned) }
                    }
                }
            }
        },
    )
}

/// Status › Flow › Status List.
pub fn requests_page(requests: &[RequestView]) -> Markup {
    layout(
        "Status List",
        html! {
            table {
                tr { th { "ID" } th { "Flow" } th { "Status" } th { "Server" } th { "Attempts" } th { "Last checkpoint" } th { "Error" } }
                @for request in requests {
                    tr {
                        td { code { (request.id) } }
                        td { (request.flow) }
                        td { (request.status) }
                        td { (request.owner) }
                        td { (request.attempts) }
                        td { (request.last_checkpoint) }
                        td { (request.error) }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped() {
        let page = requests_page(&[RequestView {
            id: "1".into(),
            flow: "<script>alert(1)</script>".into(),
            status: "Error".into(),
            owner: "a".into(),
            attempts: 1,
            last_checkpoint: String::new(),
            error: "\"><img src=x onerror=alert(1)>".into(),
        }])
        .into_string();
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(!page.contains("<img"));
    }
}
