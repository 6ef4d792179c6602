//! Local resources: what a flow uses besides Baton's own interfaces, and
//! which of it only exists on one server.
//!
//! A flow declares its resources (`#[flow(resources = [...])]`) as URIs:
//! `http://host[:port]`, `folder:/path`, `connection:name`. A resource is
//! local when another server would reach something else or nothing: a
//! loopback HTTP host, a folder (each server has its own disk), a connection
//! whose configured address is loopback. Per-server schedules of the flow are
//! local too. Deploying a flow with `other_server_retry = true` warns about
//! them; an attempt on a server that lacks a folder or connection the flow
//! needs ends in `error` naming the resource and the server. The runtime's
//! `Egress` makes the HTTP resources the only origins a flow may call.

use std::collections::BTreeMap;
use std::net::IpAddr;

use baton_core::FlowProperties;
use baton_core::store::ScheduleRow;

/// Whether an address names this machine only.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.ends_with(".localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// The host of a URL (`scheme://[user@]host[:port]/…`).
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return host_port.split_inclusive(']').next().unwrap_or(host_port);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

/// Why each of the flow's resources is local to one server (empty: none is).
pub fn local_resources(
    properties: &FlowProperties,
    connections: &BTreeMap<String, String>,
    schedules: &[ScheduleRow],
) -> Vec<String> {
    let mut local = Vec::new();
    for resource in &properties.resources {
        if let Some(path) = resource.strip_prefix("folder:") {
            local.push(format!("folder {path} is on each server's own disk"));
        } else if let Some(name) = resource.strip_prefix("connection:") {
            match connections.get(name) {
                Some(address) if is_loopback(url_host(address)) => {
                    local.push(format!(
                        "connection {name} points at a loopback address ({})",
                        url_host(address)
                    ));
                }
                Some(_) => {}
                None => local.push(format!("connection {name} is not defined on this server")),
            }
        } else if is_loopback(url_host(resource)) {
            local.push(format!(
                "{resource} is a loopback address: each server reaches only itself"
            ));
        }
    }
    for schedule in schedules
        .iter()
        .filter(|s| s.flow == properties.name && s.server.is_some())
    {
        local.push(format!(
            "schedule {} fires only on one server",
            schedule.name
        ));
    }
    local
}

/// Deploy-time warnings: local resources of a flow that may move.
pub fn warnings(
    properties: &FlowProperties,
    connections: &BTreeMap<String, String>,
    schedules: &[ScheduleRow],
) -> Vec<String> {
    if !properties.other_server_retry {
        return Vec::new();
    }
    local_resources(properties, connections, schedules)
        .into_iter()
        .map(|why| {
            format!(
                "flow {} may be retried on another server, but {why}",
                properties.name
            )
        })
        .collect()
}

/// The first resource the flow needs that this server lacks, said in a
/// sentence naming the resource and the server.
pub fn missing(
    properties: &FlowProperties,
    connections: &BTreeMap<String, String>,
    server: &str,
) -> Option<String> {
    properties.resources.iter().find_map(|resource| {
        let lacks = if let Some(path) = resource.strip_prefix("folder:") {
            !std::path::Path::new(path).is_dir()
        } else if let Some(name) = resource.strip_prefix("connection:") {
            !connections.contains_key(name)
        } else {
            false
        };
        lacks.then(|| {
            format!(
                "flow {} needs {resource}, which server {server} does not have",
                properties.name
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(resources: &[&str]) -> FlowProperties {
        FlowProperties {
            name: "f".into(),
            other_server_retry: true,
            resources: resources.iter().map(|r| r.to_string()).collect(),
            ..FlowProperties::default()
        }
    }

    #[test]
    fn loopback_hosts_folders_and_local_connections_are_local() {
        let connections = BTreeMap::from([
            (
                "local-db".to_owned(),
                "postgres://u:p@127.0.0.1:5432/x".to_owned(),
            ),
            (
                "shared-db".to_owned(),
                "postgres://db.internal/x".to_owned(),
            ),
        ]);
        let properties = flow(&[
            "http://localhost:9000",
            "http://[::1]:80",
            "https://api.example.com",
            "folder:/var/data",
            "connection:local-db",
            "connection:shared-db",
        ]);
        let local = local_resources(&properties, &connections, &[]);
        assert_eq!(local.len(), 4, "{local:?}");
        assert!(local[0].contains("localhost:9000") && local[1].contains("[::1]"));
        assert!(local[2].contains("/var/data") && local[3].contains("local-db"));
        assert!(
            warnings(
                &FlowProperties {
                    other_server_retry: false,
                    ..properties.clone()
                },
                &connections,
                &[]
            )
            .is_empty()
        );
        assert_eq!(warnings(&properties, &connections, &[]).len(), 4);
    }

    #[test]
    fn a_missing_folder_or_connection_is_named_with_the_server() {
        let properties = flow(&["folder:/definitely/not/here", "connection:db"]);
        let why = missing(&properties, &BTreeMap::new(), "s1").unwrap();
        assert_eq!(
            why,
            "flow f needs folder:/definitely/not/here, which server s1 does not have"
        );
        assert!(missing(&flow(&["folder:/tmp"]), &BTreeMap::new(), "s1").is_none());
    }
}
