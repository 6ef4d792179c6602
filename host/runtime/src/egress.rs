//! Which HTTP origins a flow may call: the `http://` and `https://`
//! resources it declares, enforced on every call.
//!
//! A declaration is `scheme://host[:port]`; the host may start with `*.`
//! (any subdomain) and the port may be `*` (any port). A call is allowed
//! only to a declared origin, and only to public addresses unless the
//! declaration names exactly the host called: a loopback, private or
//! link-local address is reached only by a flow that says so. The address
//! checked is the one connected to (the name is resolved once, here), and
//! redirects are not followed, so neither DNS nor a redirect can lead a
//! call elsewhere.

use std::net::{IpAddr, SocketAddr};

use reqwest::Url;

/// The origins one flow may call.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    flow: String,
    allowed: Vec<Origin>,
}

#[derive(Debug, Clone)]
struct Origin {
    scheme: String,
    host: HostPattern,
    /// `None`: any port.
    port: Option<u16>,
}

#[derive(Debug, Clone)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`, kept as `.example.com`.
    Subdomain(String),
}

/// Where an allowed call connects.
#[derive(Debug)]
pub(crate) struct Destination {
    pub(crate) url: Url,
    /// The checked address to connect to, when the host is a name.
    pub(crate) pinned: Option<(String, SocketAddr)>,
}

impl Egress {
    /// The policy of flow `flow` declaring `resources`; resources that are
    /// not HTTP origins allow no call.
    pub fn new(flow: &str, resources: &[String]) -> Self {
        Self {
            flow: flow.to_owned(),
            allowed: resources.iter().filter_map(|r| Origin::parse(r)).collect(),
        }
    }

    /// Checks a call to `url`: declared origin, then the addresses its host
    /// resolves to. The error is a sentence naming the URL and the flow.
    pub(crate) async fn check(&self, url: &str) -> Result<Destination, String> {
        let shown = crate::redact_url(url);
        let refuse = |why: String| format!("flow {} may not call {shown}: {why}", self.flow);
        let parsed = Url::parse(url).map_err(|e| refuse(format!("it is not a valid URL ({e})")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(refuse(format!("{} is not HTTP", parsed.scheme())));
        }
        let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
            return Err(refuse("it names no host".into()));
        };
        let host = host.to_ascii_lowercase();
        let Some(origin) = self
            .allowed
            .iter()
            .find(|o| o.matches(parsed.scheme(), &host, port))
        else {
            return Err(refuse(format!(
                "{}://{host}:{port} is not among the HTTP resources the flow declares",
                parsed.scheme()
            )));
        };
        let explicit = matches!(&origin.host, HostPattern::Exact(_));
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let (addresses, pinned) = match bare.parse::<IpAddr>() {
            Ok(ip) => (vec![SocketAddr::new(ip, port)], false),
            Err(_) => {
                let found: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
                    .await
                    .map_err(|e| refuse(format!("{host} does not resolve: {e}")))?
                    .collect();
                (found, true)
            }
        };
        let Some(first) = addresses.first().copied() else {
            return Err(refuse(format!("{host} resolves to no address")));
        };
        if let Some(inner) = internal(explicit, &addresses) {
            return Err(refuse(format!(
                "{host} resolves to {inner}, a loopback, private or link-local address, which only a resource naming exactly this host allows"
            )));
        }
        Ok(Destination {
            pinned: pinned.then(|| (bare.to_owned(), first)),
            url: parsed,
        })
    }
}

impl Origin {
    fn parse(resource: &str) -> Option<Self> {
        let (scheme, rest) = resource.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let rest = rest.trim_end_matches('/');
        let (rest, any_port) = match rest.strip_suffix(":*") {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let (rest, subdomains) = match rest.strip_prefix("*.") {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let url = Url::parse(&format!("{scheme}://{rest}")).ok()?;
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            return None;
        }
        let host = url.host_str()?.to_ascii_lowercase();
        Some(Self {
            port: (!any_port).then(|| url.port_or_known_default()).flatten(),
            host: if subdomains {
                HostPattern::Subdomain(format!(".{host}"))
            } else {
                HostPattern::Exact(host)
            },
            scheme,
        })
    }

    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme == scheme
            && self.port.is_none_or(|p| p == port)
            && match &self.host {
                HostPattern::Exact(exact) => exact == host,
                HostPattern::Subdomain(suffix) => host.ends_with(suffix.as_str()),
            }
    }
}

/// The first internal address among `addresses` that a declaration which
/// is not `explicit` (a glob) may not reach.
fn internal(explicit: bool, addresses: &[SocketAddr]) -> Option<IpAddr> {
    if explicit {
        return None;
    }
    addresses
        .iter()
        .map(SocketAddr::ip)
        .find(|ip| is_internal(*ip))
}

/// Addresses inside a machine or a private network: loopback, private,
/// link-local (cloud metadata lives there), unspecified, shared CGNAT space
/// and their IPv4-mapped IPv6 forms.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xffc0) == 0xfe80
                || (first & 0xfe00) == 0xfc00
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_internal(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress(resources: &[&str]) -> Egress {
        Egress::new(
            "f",
            &resources
                .iter()
                .map(|r| (*r).to_owned())
                .collect::<Vec<_>>(),
        )
    }

    fn run<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn only_declared_origins_are_called() {
        let policy = egress(&[
            "https://*.example.com",
            "http://127.0.0.1:9000",
            "http://10.1.2.3",
            "folder:/tmp",
        ]);
        for allowed in [
            "http://127.0.0.1:9000/step/1",
            "http://10.1.2.3/x",
            "http://10.1.2.3:80/x",
        ] {
            assert!(run(policy.check(allowed)).is_ok(), "{allowed}");
        }
        for refused in [
            "http://127.0.0.1:9001/",
            "https://127.0.0.1:9000/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:9000/",
            "https://example.com.evil.net/",
            "http://10.1.2.3:8080/",
            "file:///etc/passwd",
            "not a url",
        ] {
            let error = run(policy.check(refused)).unwrap_err();
            assert!(
                error.starts_with(&format!("flow f may not call {refused}")),
                "{refused}: {error}"
            );
        }
        let error = run(policy.check("http://169.254.169.254/")).unwrap_err();
        assert!(
            error.contains("flow f may not call http://169.254.169.254/"),
            "{error}"
        );
    }

    #[test]
    fn only_an_exact_declaration_reaches_an_internal_address() {
        let inside: SocketAddr = "10.0.0.7:80".parse().unwrap();
        let outside: SocketAddr = "93.184.216.34:80".parse().unwrap();
        assert_eq!(internal(false, &[outside, inside]), Some(inside.ip()));
        assert_eq!(internal(true, &[inside]), None);
        assert_eq!(internal(false, &[outside]), None);
        assert!(is_internal("::ffff:10.0.0.1".parse().unwrap()));
        assert!(is_internal("fe80::1".parse().unwrap()));
        assert!(is_internal("169.254.169.254".parse().unwrap()));
        assert!(!is_internal("93.184.216.34".parse().unwrap()));
    }
}
