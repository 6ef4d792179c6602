//! Deploying flows: building a flow crate into a component, inspecting it,
//! storing it by content hash and switching the flow's active version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use baton_runtime::{AttemptError, Runtime};
use baton_store::{Store, StoreError, VersionRow};

use crate::checkpoint::AttemptJournal;

/// What flow components are built for.
const GUEST_TARGET: &str = "wasm32-wasip2";

/// A deployed version.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Deployed {
    /// Flow name.
    pub name: String,
    /// Component hash.
    pub version: String,
    /// The version that was active before, if another.
    pub previous: Option<String>,
    /// Server-local resources of a flow that may move between servers.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Why a deploy failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The bytes are not a usable flow component.
    #[error(transparent)]
    Invalid(#[from] AttemptError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores a component and makes it its flow's active version. The blob is
/// written before the version row, so any server that sees the version can
/// load it.
pub async fn deploy(
    store: &Store,
    runtime: &Runtime<AttemptJournal>,
    bytes: Vec<u8>,
    connections: &BTreeMap<String, String>,
) -> Result<Deployed, DeployError> {
    let size = bytes.len() as i64;
    let blob = bytes.clone();
    let (hash, properties) = runtime.inspect(bytes).await?;
    store.blobs().put(&blob)?;
    let previous = store
        .deploy(&VersionRow {
            hash: hash.clone(),
            flow: properties.name.clone(),
            size,
            properties: serde_json::to_string(&properties).expect("properties serialize"),
            deployed_at: 0,
        })
        .await?;
    tracing::info!(flow = %properties.name, version = %hash, "deployed");
    let warnings = crate::resources::warnings(&properties, connections, &store.schedules().await?);
    for warning in &warnings {
        tracing::warn!(flow = %properties.name, "{warning}");
    }
    Ok(Deployed {
        warnings,
        previous: previous.filter(|previous| *previous != hash),
        name: properties.name,
        version: hash,
    })
}

/// The component bytes at `path`: a `.wasm` file as is, or every flow
/// component a crate (or workspace) folder builds to, via cargo.
pub async fn component_bytes(path: &Path) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
    let files = if path.is_dir() {
        build(path).await?
    } else {
        vec![path.to_owned()]
    };
    let mut components = Vec::new();
    for file in files {
        let bytes = tokio::fs::read(&file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        components.push((file, bytes));
    }
    Ok(components)
}

/// Builds the crate or workspace in `dir` for `wasm32-wasip2` and returns
/// the `.wasm` files it produced.
async fn build(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let workspace = dir.to_owned();
    tokio::task::spawn_blocking(move || ensure_guest_target(&workspace)).await??;
    tracing::info!(path = %dir.display(), "building flow components");
    let output =
        tokio::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--release",
                "--target",
                GUEST_TARGET,
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(dir)
            .stderr(std::process::Stdio::inherit())
            .output()
            .await
            .with_context(|| format!("running cargo in {}", dir.display()))?;
    if !output.status.success() {
        bail!(
            "building the flow in {} failed (cargo's messages are above)",
            dir.display()
        );
    }
    let mut files = Vec::new();
    for line in output.stdout.split(|b| *b == b'\n') {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        for file in message["filenames"].as_array().into_iter().flatten() {
            if let Some(file) = file.as_str().filter(|f| f.ends_with(".wasm")) {
                files.push(PathBuf::from(file));
            }
        }
    }
    if files.is_empty() {
        bail!(
            "{} built no .wasm component (is it a cdylib crate?)",
            dir.display()
        );
    }
    Ok(files)
}

/// Makes sure the toolchain that builds in `dir` has the guest target.
/// rustup fetches it with a toolchain it installs from `rust-toolchain.toml`,
/// but not into a toolchain that was already there; then it is added here.
pub fn ensure_guest_target(dir: &Path) -> anyhow::Result<()> {
    let libdir = std::process::Command::new("rustc")
        .args(["--print", "target-libdir", "--target", GUEST_TARGET])
        .current_dir(dir)
        .output()
        .context("running rustc to find the guest target")?;
    if PathBuf::from(String::from_utf8_lossy(&libdir.stdout).trim()).is_dir() {
        return Ok(());
    }
    tracing::info!(target = GUEST_TARGET, "adding the guest target with rustup");
    let status = std::process::Command::new("rustup")
        .args(["target", "add", GUEST_TARGET])
        .current_dir(dir)
        .status()
        .context("running rustup to add the wasm32-wasip2 target (is rustup installed?)")?;
    if !status.success() {
        bail!("`rustup target add {GUEST_TARGET}` failed (its messages are above)");
    }
    Ok(())
}
