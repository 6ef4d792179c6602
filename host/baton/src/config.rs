//! Server configuration: a TOML file, environment variables and flags, in
//! increasing precedence; defaults give one server on embedded SQLite.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

/// Settings as read from the TOML file; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data folder.
    pub data: Option<PathBuf>,
    /// Listen address.
    pub listen: Option<String>,
    /// Checkpoint connection (database URL).
    pub database: Option<String>,
    /// Checkpoint storage path.
    pub storage: Option<PathBuf>,
    /// Server name.
    pub name: Option<String>,
    /// Heartbeat interval in milliseconds.
    pub heartbeat_ms: Option<u64>,
    /// Lease timeout in milliseconds.
    pub lease_ms: Option<u64>,
    /// Executions at once.
    pub capacity: Option<usize>,
    /// Memory limit per instance, MiB.
    pub memory_limit_mib: Option<usize>,
    /// Guest execution time per attempt, seconds.
    pub time_limit_s: Option<f64>,
    /// Wall-clock time per attempt, seconds.
    pub attempt_wall_limit_s: Option<u64>,
    /// The largest answer body a flow's HTTP call may receive, MiB.
    pub http_body_limit_mib: Option<usize>,
    /// Named connections flows may declare (`connection:NAME`): name → address.
    #[serde(default)]
    pub connections: std::collections::BTreeMap<String, String>,
    /// The flows git repository (a local path) that Update fast-forwards.
    pub flows_repo: Option<PathBuf>,
    /// Whether Update builds the flow crates that changed with cargo
    /// (default), running the repository's code on the server, or deploys
    /// the prebuilt `dist/*.wasm` components committed in it.
    pub build_flows: Option<bool>,
    /// Cargo's build folder for Update's builds (default `<data>/flows-build`).
    pub flows_build_dir: Option<PathBuf>,
    /// Require a token for `/metrics` too (default: open to scrapers).
    pub protect_metrics: Option<bool>,
    /// Attempts in a row a request may be postponed for an outage (database
    /// or storage folder away) before the next one counts as its error.
    pub max_postponements: Option<u32>,
    /// The URL people open the console at; `https://…` makes its cookies
    /// `Secure` with the `__Host-` prefix.
    pub public_url: Option<String>,
    /// The OTLP/HTTP collector that receives the requests' traces (e.g.
    /// `http://127.0.0.1:4318`); default: none, nothing is recorded.
    pub otlp_endpoint: Option<String>,
    /// Addresses of reverse proxies whose `X-Forwarded-For` names the
    /// client (default: none; the peer is the client).
    pub trusted_proxies: Option<Vec<std::net::IpAddr>>,
    /// How long a console session lasts, seconds; 0: until logout.
    pub session_ttl_s: Option<u64>,
    /// How long an API token issued through the API lasts, seconds; 0:
    /// until revoked.
    pub token_ttl_s: Option<u64>,
    /// How long a finished request is kept before the cluster's purge
    /// deletes it (`"30d"`, `"12h"`); default: kept for ever.
    pub retention: Option<Age>,
    /// Per flow, a retention that overrides `retention`.
    #[serde(default)]
    pub flow_retention: std::collections::BTreeMap<String, Age>,
}

/// A length of time written as a number and a unit: `500ms`, `45s`,
/// `90m`, `12h`, `30d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Age(pub Duration);

impl std::str::FromStr for Age {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => 0,
        };
        match number.parse::<u64>() {
            Ok(number) if unit_ms > 0 => number
                .checked_mul(unit_ms)
                .map(|ms| Self(Duration::from_millis(ms)))
                .ok_or_else(|| format!("{text:?} is too long")),
            _ => Err(format!(
                "{text:?} is not a length of time: write a number and a unit, as 500ms, 45s, 90m, 12h or 30d"
            )),
        }
    }
}

impl TryFrom<String> for Age {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl FileConfig {
    /// Reads a config file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The resolved settings of one server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data folder: server ID, lock, compiled components, SQLite file.
    pub data: PathBuf,
    /// Listen address of the console and API.
    pub listen: String,
    /// Checkpoint connection.
    pub database: String,
    /// Checkpoint storage path.
    pub storage: PathBuf,
    /// Name to set; `None` keeps the recorded one.
    pub name: Option<String>,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Lease timeout.
    pub lease: Duration,
    /// Executions at once.
    pub capacity: usize,
    /// Memory limit per instance in bytes.
    pub memory_limit: usize,
    /// Guest execution time per attempt.
    pub time_limit: Duration,
    /// Wall-clock time per attempt: waiting in a host call past it ends it.
    pub wall_limit: Duration,
    /// The largest answer body a flow's HTTP call may receive, bytes.
    pub http_body_limit: usize,
    /// Named connections defined in this server's configuration.
    pub connections: std::collections::BTreeMap<String, String>,
    /// The flows git repository.
    pub flows_repo: Option<PathBuf>,
    /// Whether Update runs cargo on the repository's flow crates, or
    /// deploys its committed `dist/*.wasm` components.
    pub build_flows: bool,
    /// Cargo's build folder for Update's builds: outside the checkout, so
    /// builds neither dirty it nor start cold after each pull.
    pub flows_build_dir: PathBuf,
    /// Whether `/metrics` needs a token.
    pub protect_metrics: bool,
    /// Postponements in a row before a request ends in `error`.
    pub max_postponements: u32,
    /// The URL people open the console at.
    pub public_url: Option<String>,
    /// Where traces are exported; `None`: they are not recorded.
    pub otlp_endpoint: Option<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How long a console session lasts, ms.
    pub session_ttl_ms: i64,
    /// How long an issued API token lasts, ms; `None`: until revoked.
    pub token_ttl_ms: Option<i64>,
    /// How long a finished request is kept; `None`: for ever.
    pub retention: Option<Duration>,
    /// Per flow, a retention that overrides `retention`.
    pub flow_retention: std::collections::BTreeMap<String, Duration>,
}

impl ServerConfig {
    /// How long a finished request of `flow` is kept; `None`: for ever.
    /// The operator's `[flow_retention]` entry first, then what the flow
    /// declares (`#[flow(retention = …)]`), then `retention`.
    pub fn retention_of(&self, flow: &str, declared: Option<Duration>) -> Option<Duration> {
        self.flow_retention
            .get(flow)
            .copied()
            .or(declared)
            .or(self.retention)
    }
}

/// What "never expires" stands for where an expiry time is required: a
/// century.
const NEVER_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// Seconds to milliseconds; 0 is `None` (never), and anything past a
/// century is a century.
fn ttl_ms(seconds: u64) -> Option<i64> {
    match seconds {
        0 => None,
        s => Some(i64::try_from(s.saturating_mul(1000)).map_or(NEVER_MS, |ms| ms.min(NEVER_MS))),
    }
}

impl ServerConfig {
    /// Fills what flags and environment left open from the file, then defaults.
    pub fn resolve(file: FileConfig, flags: FileConfig) -> Self {
        let data = flags
            .data
            .or(file.data)
            .unwrap_or_else(|| PathBuf::from("baton-data"));
        let database = flags
            .database
            .or(file.database)
            .unwrap_or_else(|| format!("sqlite://{}", data.join("baton.db").display()));
        let storage = flags
            .storage
            .or(file.storage)
            .unwrap_or_else(|| data.join("store"));
        Self {
            listen: flags
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
            name: flags.name.or(file.name),
            heartbeat: Duration::from_millis(
                flags.heartbeat_ms.or(file.heartbeat_ms).unwrap_or(1000),
            ),
            lease: Duration::from_millis(flags.lease_ms.or(file.lease_ms).unwrap_or(5000)),
            capacity: flags.capacity.or(file.capacity).unwrap_or(64).max(1),
            memory_limit: flags
                .memory_limit_mib
                .or(file.memory_limit_mib)
                .unwrap_or(64)
                << 20,
            http_body_limit: flags
                .http_body_limit_mib
                .or(file.http_body_limit_mib)
                .unwrap_or(16)
                << 20,
            public_url: flags.public_url.or(file.public_url),
            otlp_endpoint: flags.otlp_endpoint.or(file.otlp_endpoint),
            trusted_proxies: flags
                .trusted_proxies
                .or(file.trusted_proxies)
                .unwrap_or_default(),
            session_ttl_ms: ttl_ms(
                flags
                    .session_ttl_s
                    .or(file.session_ttl_s)
                    .unwrap_or(12 * 3600),
            )
            .unwrap_or(NEVER_MS),
            token_ttl_ms: ttl_ms(flags.token_ttl_s.or(file.token_ttl_s).unwrap_or(0)),
            connections: file.connections,
            retention: flags.retention.or(file.retention).map(|age| age.0),
            flow_retention: file
                .flow_retention
                .into_iter()
                .map(|(flow, age)| (flow, age.0))
                .collect(),
            flows_repo: flags.flows_repo.or(file.flows_repo),
            build_flows: flags.build_flows.or(file.build_flows).unwrap_or(true),
            flows_build_dir: flags
                .flows_build_dir
                .or(file.flows_build_dir)
                .unwrap_or_else(|| data.join("flows-build")),
            protect_metrics: flags
                .protect_metrics
                .or(file.protect_metrics)
                .unwrap_or(false),
            max_postponements: flags
                .max_postponements
                .or(file.max_postponements)
                .unwrap_or(60),
            time_limit: Duration::from_secs_f64(
                flags.time_limit_s.or(file.time_limit_s).unwrap_or(60.0),
            ),
            wall_limit: Duration::from_secs(
                flags
                    .attempt_wall_limit_s
                    .or(file.attempt_wall_limit_s)
                    .unwrap_or(300),
            ),
            data,
            database,
            storage,
        }
    }

    /// The checkpoint connection with any password replaced by `***`.
    pub fn database_redacted(&self) -> String {
        baton_runtime::redact_url(&self.database)
    }

    /// The console's cookie names and attributes.
    pub fn cookies(&self) -> Cookies {
        Cookies::new(self.public_url.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config an operator deploys with documents every key with its
    /// true default: with each `# key = value` line uncommented, it parses
    /// (unknown keys are refused) and resolves to what no file gives.
    #[test]
    fn the_example_config_shows_the_defaults() {
        let text = include_str!("../../../deploy/baton.toml");
        let uncommented: String = text
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| {
                line.split_once(" = ")
                    .is_some_and(|(key, _)| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let keys = uncommented.lines().count();
        let file: FileConfig = toml::from_str(&uncommented).expect("the example parses");
        assert_eq!(
            format!("{:?}", ServerConfig::resolve(file, FileConfig::default())),
            format!(
                "{:?}",
                ServerConfig::resolve(FileConfig::default(), FileConfig::default())
            )
        );
        assert!(keys >= 18, "{uncommented}");
        // Every key the file may hold is there, as a default or an example:
        // serde names them all when refusing an unknown one.
        let refusal = toml::from_str::<FileConfig>("no_such_key = 1")
            .unwrap_err()
            .to_string();
        let fields: Vec<&str> = refusal
            .split("expected one of")
            .nth(1)
            .expect("serde lists the fields")
            .split('`')
            .skip(1)
            .step_by(2)
            .collect();
        assert!(fields.len() > 20, "{refusal}");
        for field in fields {
            assert!(
                text.contains(&format!("{field} = ")) || text.contains(&format!("[{field}]")),
                "deploy/baton.toml does not document {field}"
            );
        }
    }

    #[test]
    fn retention_reads_ages_and_a_flow_overrides_the_default() {
        let file: FileConfig =
            toml::from_str("retention = \"30d\"\n[flow_retention]\norder = \"12h\"\n").unwrap();
        let config = ServerConfig::resolve(file, FileConfig::default());
        let day = Some(Duration::from_secs(86_400));
        assert_eq!(
            config.retention_of("order", day),
            Some(Duration::from_secs(12 * 3600))
        );
        assert_eq!(
            config.retention_of("hello", None),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(
            config.retention_of("hello", day),
            day,
            "the flow's beats the default"
        );
        let kept = ServerConfig::resolve(FileConfig::default(), FileConfig::default());
        assert_eq!(kept.retention_of("hello", None), None);
        assert_eq!(kept.retention_of("hello", day), day);
        let refused = toml::from_str::<FileConfig>("retention = \"soon\"")
            .unwrap_err()
            .to_string();
        assert!(refused.contains("is not a length of time"), "{refused}");
        assert_eq!("250ms".parse::<Age>(), Ok(Age(Duration::from_millis(250))));
        assert!("10".parse::<Age>().is_err() && "d".parse::<Age>().is_err());
    }

    #[test]
    fn flags_beat_the_file_and_defaults_fill_the_rest() {
        let file = FileConfig {
            listen: Some("127.0.0.1:9000".into()),
            lease_ms: Some(2000),
            ..Default::default()
        };
        let flags = FileConfig {
            listen: Some("127.0.0.1:9100".into()),
            data: Some("/tmp/x".into()),
            ..Default::default()
        };
        let config = ServerConfig::resolve(file, flags);
        assert_eq!(config.listen, "127.0.0.1:9100");
        assert_eq!(config.lease, Duration::from_secs(2));
        assert_eq!(config.database, "sqlite:///tmp/x/baton.db");
        assert_eq!(config.storage, PathBuf::from("/tmp/x/store"));
    }
}

/// The cookie that carries a console session served over plain HTTP.
pub const SESSION_COOKIE: &str = "baton_session";

/// The console's cookies. Served over HTTPS (`public_url = "https://…"`)
/// they are `Secure` and carry the `__Host-` prefix, which the browser
/// accepts only from a secure origin for this exact host, so a plain-HTTP
/// page or a sibling subdomain can neither read nor plant them.
#[derive(Debug, Clone, Copy)]
pub struct Cookies {
    secure: bool,
}

impl Cookies {
    /// The cookies of a console whose public URL is `public_url`.
    pub fn new(public_url: Option<&str>) -> Self {
        Self {
            secure: public_url.is_some_and(|u| {
                u.get(..8)
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
            }),
        }
    }

    /// The session cookie's name.
    pub fn session(self) -> &'static str {
        if self.secure {
            "__Host-baton_session"
        } else {
            SESSION_COOKIE
        }
    }

    /// The CSRF cookie's name.
    pub fn csrf(self) -> &'static str {
        if self.secure {
            "__Host-baton_csrf"
        } else {
            "baton_csrf"
        }
    }

    /// A `Set-Cookie` value for `name` (one of these cookies).
    pub fn set(self, name: &str, value: &str, max_age_s: Option<i64>) -> String {
        let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
        if let Some(age) = max_age_s {
            cookie.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure {
            cookie.push_str("; Secure");
        }
        cookie
    }
}
