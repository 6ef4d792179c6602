//! CLI commands that talk to a running server over its JSON API.

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::http::api::dto::ErrorBody;
use crate::http::credentials::ADMIN_TOKEN_FILE;

/// A client of one server's API.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// The API token to use: `token` (from `--token` or `BATON_TOKEN`), else,
/// when `server` is on this machine, the admin token the local server wrote
/// to `<data>/admin.token` (`BATON_DATA`, default `./baton-data`). The local
/// admin token is never sent to another host.
pub fn token(token: Option<String>, server: &str) -> Option<String> {
    token_for(token, server, &local_data())
}

/// The data folder of a server on this machine: `BATON_DATA`, default
/// `./baton-data`.
fn local_data() -> std::path::PathBuf {
    std::env::var_os("BATON_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "baton-data".into())
}

/// Where the local server's admin token is read.
fn local_token_path() -> std::path::PathBuf {
    local_data().join(ADMIN_TOKEN_FILE)
}

fn token_for(token: Option<String>, server: &str, data: &std::path::Path) -> Option<String> {
    token.filter(|t| !t.is_empty()).or_else(|| {
        is_loopback(server)
            .then(|| std::fs::read_to_string(data.join(ADMIN_TOKEN_FILE)).ok())
            .flatten()
            .map(|t| t.trim().to_owned())
    })
}

/// Whether the URL's host is this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback(server: &str) -> bool {
    match url::Url::parse(server)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl Client {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3600))
                .build()
                .expect("HTTP client"),
        }
    }

    /// Sends `request` and reads its answer as a `T`, or the server's
    /// error sentence.
    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("could not reach the Baton server at {}", self.base))?;
        let status = response.status();
        let url = response.url().path().to_owned();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {}{url}", self.base))?;
        if status == reqwest::StatusCode::UNAUTHORIZED && self.token.is_none() {
            bail!(
                "{} wants an API token and none was found: give --token or BATON_TOKEN, \
                 or run this on the server's machine, where the server's admin token is read \
                 from {} (its data folder: BATON_DATA, default ./baton-data)",
                self.base,
                local_token_path().display()
            );
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| "no explanation given".into());
            bail!("{message} (HTTP {})", status.as_u16());
        }
        serde_json::from_slice(&body).with_context(|| {
            format!(
                "the answer of {}{url} is not what this baton expects (another version?)",
                self.base
            )
        })
    }

    /// GET a route and copy its body to `out` as it comes (an export of
    /// millions of rows is never held whole).
    pub async fn download(&self, path: &str, out: &mut impl std::io::Write) -> anyhow::Result<()> {
        let request = self.http.get(format!("{}{path}", self.base));
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let mut response = request
            .send()
            .await
            .with_context(|| format!("could not reach the Baton server at {}", self.base))?;
        if !response.status().is_success() {
            // The error's own answer, read as `call` reads it.
            return self
                .call::<serde_json::Value>(self.http.get(format!("{}{path}", self.base)))
                .await
                .map(drop);
        }
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("reading {}{path} (the export was cut short)", self.base))?
        {
            out.write_all(&chunk)?;
        }
        out.flush()?;
        Ok(())
    }

    /// GET a JSON route.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// POST bytes to a route.
    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> anyhow::Result<T> {
        self.call(self.http.post(format!("{}{path}", self.base)).body(body))
            .await
    }

    /// POST a JSON body to a route.
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.post(path, serde_json::to_vec(body)?).await
    }

    /// POST bytes to a route with an idempotency key: a retry with the
    /// same key and body answers what the first call started.
    pub async fn post_keyed<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
        key: &str,
    ) -> anyhow::Result<T> {
        self.call(
            self.http
                .post(format!("{}{path}", self.base))
                .header(crate::http::api::IDEMPOTENCY_KEY, key)
                .body(body),
        )
        .await
    }

    /// DELETE a route.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(self.http.delete(format!("{}{path}", self.base)))
            .await
    }
}

/// Prints rows as aligned columns of their fields named `columns`, or
/// the JSON itself.
pub fn print_table<T: Serialize>(rows: &[T], columns: &[&str], json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(rows).unwrap_or_default());
        return;
    }
    let cell = |row: &Value, column: &str| match &row[column] {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| serde_json::to_value(row).unwrap_or_default())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!(
        "{}",
        line(columns.iter().map(|c| c.to_uppercase()).collect())
    );
    for row in &rows {
        println!("{}", line(columns.iter().map(|c| cell(row, c)).collect()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_admin_token_goes_only_to_this_machine() {
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("admin.token"), "local-secret\n").unwrap();
        let local = |server: &str| token_for(None, server, data.path());
        for server in [
            "http://127.0.0.1:8080",
            "http://localhost:8080/",
            "http://LOCALHOST",
            "http://127.1.2.3:9",
            "http://[::1]:8080",
        ] {
            assert_eq!(local(server).as_deref(), Some("local-secret"), "{server}");
        }
        for server in [
            "http://baton.example.com:8080",
            "http://127.0.0.1.example.com",
            "http://localhost.example.com",
            "http://127.0.0.1@example.com",
            "http://example.com/127.0.0.1",
            "http://10.0.0.1:8080",
            "127.0.0.1:8080",
        ] {
            assert_eq!(local(server), None, "{server}");
        }
        assert_eq!(
            token_for(Some("given".into()), "http://example.com", data.path()).as_deref(),
            Some("given")
        );
    }
}
