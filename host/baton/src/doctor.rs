//! `baton doctor`: what a server needs before it starts, one line per
//! check with how to fix what is wrong. It changes nothing but a probe
//! file it writes, reads back and removes in the data and storage folders.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use baton_store::SqlStore;

use crate::config::ServerConfig;

/// How a check went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Ready.
    Ok,
    /// `baton up` will cope, or it deserves a look.
    Warn,
    /// `baton up` would fail, or the cluster would misbehave.
    Fail,
}

/// One check's line.
#[derive(Debug, Clone)]
pub struct Finding {
    /// What was checked.
    pub check: &'static str,
    /// How it went.
    pub verdict: Verdict,
    /// What was found and, when it is not ok, what to do.
    pub message: String,
}

/// Clock skew past which the check warns.
const SKEW_WARN_MS: i64 = 1_000;

/// Runs every check against `config`.
pub async fn examine(config: &ServerConfig) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut add = |check, verdict, message: String| {
        findings.push(Finding {
            check,
            verdict,
            message,
        });
    };
    let shown = config.database_redacted();
    let mut database_in_use = false;
    match SqlStore::inspect(&config.database, config.lease).await {
        Err(e) => add(
            "database",
            Verdict::Fail,
            format!("{shown} cannot be reached: {e}; is it running, and is the URL right?"),
        ),
        Ok(state) => {
            match state.applied {
                None => add(
                    "database",
                    Verdict::Warn,
                    format!("{shown} does not exist yet; baton up creates it"),
                ),
                Some(applied) if applied > state.known => add(
                    "database",
                    Verdict::Fail,
                    format!(
                        "{shown} has {applied} migrations applied, this build knows {}: it is \
                         older than the cluster's servers; upgrade it",
                        state.known
                    ),
                ),
                Some(applied) if applied < state.known && !state.older_servers.is_empty() => {
                    database_in_use = true;
                    add(
                        "database",
                        Verdict::Fail,
                        format!(
                            "{shown}: {applied} of {} migrations applied, and servers of an \
                             older build are running on it: {}; baton up does not migrate \
                             under them: stop them first",
                            state.known,
                            baton_store::name_servers(&state.older_servers)
                        ),
                    )
                }
                Some(applied) if applied < state.known => {
                    database_in_use = applied > 0;
                    add(
                        "database",
                        Verdict::Warn,
                        format!(
                            "{shown}: {applied} of {} migrations applied; baton up applies the \
                             rest (every server of the cluster must then run this build)",
                            state.known
                        ),
                    )
                }
                Some(applied) => {
                    database_in_use = true;
                    add(
                        "database",
                        Verdict::Ok,
                        format!("{shown}: reachable, {applied} of {applied} migrations applied"),
                    )
                }
            }
            if let Some(db_now) = state.now_ms {
                let local = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let skew = local - db_now;
                if skew.abs() > SKEW_WARN_MS {
                    add(
                        "clock",
                        Verdict::Warn,
                        format!(
                            "this machine's clock is {skew} ms off the database's; leases and \
                             sleeps use the database clock, but logs and the console's times \
                             will disagree: synchronise it (NTP)"
                        ),
                    );
                } else {
                    add(
                        "clock",
                        Verdict::Ok,
                        format!("within {} ms of the database's", skew.abs()),
                    );
                }
            }
        }
    }
    let (verdict, message) = folder(&config.data, "data folder");
    add("data", verdict, message);
    let (mut verdict, mut message) = folder(&config.storage, "storage folder");
    if verdict == Verdict::Ok && database_in_use && !config.storage.join("objects").is_dir() {
        verdict = Verdict::Fail;
        message = format!(
            "{} has no objects/ although the database is in use: is the cluster's shared \
             folder mounted here?",
            config.storage.display()
        );
    }
    add("storage", verdict, message);
    match std::net::TcpListener::bind(&config.listen) {
        Ok(_) => add("listen", Verdict::Ok, format!("{} is free", config.listen)),
        Err(e) => add(
            "listen",
            Verdict::Fail,
            format!(
                "{} cannot be listened on ({e}): another server on it? give another --listen",
                config.listen
            ),
        ),
    }
    if config.build_flows && config.flows_repo.is_some() {
        let libdir = std::process::Command::new("rustc")
            .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
            .output();
        match libdir {
            Ok(out) if Path::new(String::from_utf8_lossy(&out.stdout).trim()).is_dir() => add(
                "toolchain",
                Verdict::Ok,
                "rustc has the wasm32-wasip2 target for Update's builds".into(),
            ),
            Ok(_) => add(
                "toolchain",
                Verdict::Warn,
                "rustc lacks the wasm32-wasip2 target; Update adds it with rustup, or run \
                 `rustup target add wasm32-wasip2`"
                    .into(),
            ),
            Err(e) => add(
                "toolchain",
                Verdict::Fail,
                format!(
                    "Update builds flows with cargo (build_flows = true) but rustc cannot run \
                     ({e}): install rustup, or set build_flows = false"
                ),
            ),
        }
    }
    findings
}

/// A folder the server writes: there and writable (a probe file written,
/// read back and removed), or absent for `baton up` to create.
fn folder(path: &Path, what: &str) -> (Verdict, String) {
    if !path.exists() {
        return (
            Verdict::Warn,
            format!(
                "{what} {} does not exist yet; baton up creates it",
                path.display()
            ),
        );
    }
    let probe = path.join(format!(".baton-doctor-{}", std::process::id()));
    let written = std::fs::write(&probe, b"probe").and_then(|()| std::fs::read(&probe));
    let _ = std::fs::remove_file(&probe);
    match written {
        Ok(bytes) if bytes == b"probe" => (
            Verdict::Ok,
            format!("{what} {} is writable", path.display()),
        ),
        Ok(_) => (
            Verdict::Fail,
            format!("{what} {}: a probe file read back differs", path.display()),
        ),
        Err(e) => (
            Verdict::Fail,
            format!(
                "{what} {} is not writable ({e}): give the server's user write access",
                path.display()
            ),
        ),
    }
}
