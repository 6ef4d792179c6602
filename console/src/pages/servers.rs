//! Status › Flow › Server List.

use maud::{Markup, html};

use crate::{Page, layout};

/// One server of the Server List.
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
    /// Incarnation.
    pub incarnation: i64,
    /// Heartbeat age in milliseconds.
    pub heartbeat_age_ms: i64,
    /// Unfinished requests owned, as shown (a count, or "10000+").
    pub owned: String,
    /// Is this the server serving the page?
    pub current: bool,
    /// Hash over the active versions it has loaded.
    pub flow_set: String,
    /// Its flows repository's HEAD (short).
    pub flows_head: String,
    /// Whether its flow-set or HEAD differs from the current server's.
    pub drift: bool,
    /// Who renamed it last, when.
    pub renamed: String,
}

/// Status › Flow › Server List.
pub fn servers_page(page: &Page, servers: &[ServerView]) -> Markup {
    layout(
        page,
        html! {
            table {
                thead { tr { th { span.visually-hidden { "This server" } } th { "Name" } th { "ID" } th { "Status" } th { "Address" } th { "Heartbeat" } th { "Requests" } th { "Flow-set" } th { "Flows HEAD" } } }
                tbody #servers hx-ext="sse" sse-connect="/status/servers/live" sse-swap="servers" hx-get="/status/servers/rows" hx-trigger="every 30s" hx-swap="innerHTML" {
                    (server_rows(servers))
                }
            }
        },
    )
}

/// The Server List's rows (the live fragment).
pub fn server_rows(servers: &[ServerView]) -> Markup {
    html! {
        @for server in servers {
            tr.server.drift[server.drift] data-status=(server.status) {
                td { @if server.current { span title="the server you are logged into" aria-label="the server you are logged into" { "★" } } }
                td.name title=(server.renamed) { (server.name) @if !server.renamed.is_empty() { br; small { (server.renamed) } } }
                td { code { (server.id) } }
                td class=(server.status) { span class={"dot " (server.status)} {} (server.status) }
                td { (server.address) }
                td { (server.heartbeat_age_ms) " ms ago" }
                td { (server.owned) }
                td { code { (server.flow_set) } @if server.drift { " ⚠ differs" } }
                td { code { (server.flows_head) } }
            }
        }
    }
}
