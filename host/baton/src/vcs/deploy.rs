//! Deploying flows: building a flow crate into a component, inspecting it,
//! storing it by content hash and switching the flow's active version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use baton_core::store::{Store, StoreError, VersionRow};
use baton_runtime::{AttemptError, Runtime};

use crate::engine::checkpoint::AttemptJournal;

/// What flow components are built for.
const GUEST_TARGET: &str = "wasm32-wasip2";

/// The last lines of cargo's messages a failed repository build reports.
const BUILD_ERROR_LINES: usize = 60;

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
    /// The replay check found requests whose journals the component would
    /// not replay.
    #[error(
        "not activated: this version leaves the journal of {} request(s): {}; deploy with --force to activate it anyway",
        .0.len(),
        .0.join("; ")
    )]
    Diverges(Vec<String>),
}

/// The replay check a deploy asks for: the journals of every unfinished
/// request of the flow and of its `last` finished ones, replayed against
/// the new version before it is activated.
#[derive(Debug, Clone, Copy)]
pub struct ReplayCheck {
    /// How many finished requests to replay, newest first.
    pub last: usize,
    /// Activate even when some would diverge (they are listed as warnings).
    pub force: bool,
}

/// Stores a component and makes it its flow's active version. The blob is
/// written before the version row, so any server that sees the version can
/// load it.
pub async fn deploy(
    store: &dyn Store,
    runtime: &Runtime<AttemptJournal>,
    bytes: Vec<u8>,
    connections: &BTreeMap<String, String>,
    check: Option<ReplayCheck>,
) -> Result<Deployed, DeployError> {
    let size = bytes.len() as i64;
    let blob = bytes.clone();
    let (hash, properties) = runtime.inspect(bytes).await?;
    let mut diverging = Vec::new();
    if let Some(check) = check {
        diverging =
            crate::engine::replay::gate(store, &properties.name, blob.clone(), check.last).await?;
        if !diverging.is_empty() && !check.force {
            return Err(DeployError::Diverges(diverging));
        }
    }
    store.put_blob(&blob)?;
    let previous = store
        .deploy(&VersionRow {
            hash: hash.clone(),
            flow: properties.name.clone(),
            size,
            properties: properties.clone(),
            deployed_at: 0,
        })
        .await?;
    tracing::info!(flow = %properties.name, version = %hash, "deployed");
    let mut warnings =
        crate::resources::warnings(&properties, connections, &store.schedules().await?);
    warnings.extend(
        diverging
            .into_iter()
            .map(|d| format!("activated although it leaves a journal: {d}")),
    );
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

/// Who wrote the flow crate cargo builds, and so how cargo runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Builder {
    /// An admin deploying a folder of their own: cargo runs with their
    /// environment, as they would run it by hand.
    Admin,
    /// Whoever can push to the flows repository: cargo runs with a clean
    /// environment, Baton's own toolchain, `--locked` and no network, from
    /// `/` with `--manifest-path` so that no `.cargo/config.toml` of the
    /// repository (or of a folder above it) is read, and builds into
    /// `target_dir`, outside the checkout.
    Repository {
        /// Cargo's build folder.
        target_dir: PathBuf,
    },
}

/// The component bytes at `path`: a `.wasm` file as is, or every flow
/// component a crate (or workspace) folder builds to, via cargo.
pub async fn component_bytes(
    path: &Path,
    builder: &Builder,
) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
    let files = if path.is_dir() {
        build(path, builder).await?
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

/// The toolchain Baton itself is built with, from its `rust-toolchain.toml`:
/// the one that builds flows repositories, whatever toolchain file they carry.
pub fn baton_toolchain() -> String {
    let file: toml::Table = toml::from_str(include_str!("../../../../rust-toolchain.toml"))
        .expect("Baton's rust-toolchain.toml parses");
    file["toolchain"]["channel"]
        .as_str()
        .expect("Baton's rust-toolchain.toml names a channel")
        .to_owned()
}

/// A command for `builder`: for a repository's crate, an environment with
/// only where the tools and their caches are, the toolchain pinned to
/// Baton's own and cargo's network off.
fn command(program: &str, dir: &Path, builder: &Builder) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    if let Builder::Repository { target_dir } = builder {
        command.current_dir("/").env_clear();
        for name in ["PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME"] {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command
            .env("RUSTUP_TOOLCHAIN", baton_toolchain())
            .env("CARGO_NET_OFFLINE", "true")
            .env("CARGO_TARGET_DIR", target_dir);
    } else {
        command.current_dir(dir);
    }
    command
}

/// The path dependencies of the crate in `dir` whose folder is outside
/// `root` (the repository), as `name (folder)`. Cargo hashes such a folder's
/// absolute path into the build (its symbol names), so two servers whose
/// checkouts sit at different paths build different components from the
/// same commit; a path inside the repository, git or a registry does not.
pub fn path_dependencies_outside(
    dir: &Path,
    builder: &Builder,
    root: &Path,
) -> anyhow::Result<Vec<String>> {
    let manifest = dir.join("Cargo.toml");
    let output = command("cargo", dir, builder)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .arg("--manifest-path")
        .arg(&manifest)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "reading the packages of {} failed (cargo's messages are above)",
            manifest.display()
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing cargo metadata")?;
    let mut outside = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        // A path package has no source.
        if !package["source"].is_null() {
            continue;
        }
        let (Some(name), Some(folder)) = (
            package["name"].as_str(),
            package["manifest_path"]
                .as_str()
                .map(Path::new)
                .and_then(Path::parent),
        ) else {
            continue;
        };
        if !folder.starts_with(root) {
            outside.push(format!("{name} ({})", folder.display()));
        }
    }
    Ok(outside)
}

/// Cargo's home on this machine: `CARGO_HOME`, else `~/.cargo`.
fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
}

/// Builds the crate or workspace in `dir` for `wasm32-wasip2` and returns
/// the `.wasm` files it produced.
async fn build(dir: &Path, builder: &Builder) -> anyhow::Result<Vec<PathBuf>> {
    let (workspace, for_target) = (dir.to_owned(), builder.clone());
    tokio::task::spawn_blocking(move || ensure_guest_target(&workspace, &for_target)).await??;
    tracing::info!(path = %dir.display(), ?builder, "building flow components");
    let program = match builder {
        Builder::Admin => std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
        // The rustup proxy, so that RUSTUP_TOOLCHAIN chooses the binary.
        Builder::Repository { .. } => "cargo".into(),
    };
    let mut cargo = command(&program, dir, builder);
    cargo
        .args(["build", "--release", "--target", GUEST_TARGET])
        .arg("--message-format=json-render-diagnostics")
        .stdout(std::process::Stdio::piped());
    // An author deploying from a terminal sees cargo's diagnostics as they
    // come (in colour when it is a terminal); a repository build runs in
    // the server, whose report carries them instead.
    let streamed = matches!(builder, Builder::Admin);
    cargo.stderr(if streamed {
        std::process::Stdio::inherit()
    } else {
        std::process::Stdio::piped()
    });
    if let Builder::Repository { .. } = builder {
        cargo
            .args(["--locked", "--offline", "--manifest-path"])
            .arg(dir.join("Cargo.toml"));
    }
    // The build machine's cargo home ends up in a component (the source
    // paths of registry crates, in their panic messages): it is written as
    // `/cargo`, so that servers whose cargo homes differ build the same
    // bytes from the same source. (A `target.wasm32-wasip2.rustflags` in an
    // author's own cargo configuration would take precedence over it.)
    if let Some(home) = cargo_home() {
        let remap = format!("--remap-path-prefix={}=/cargo", home.display());
        cargo.arg("--config").arg(format!(
            "build.rustflags = [{}]",
            serde_json::Value::String(remap)
        ));
    }
    // `output()` would capture stderr whatever it was set to: spawn and
    // wait, which reads only the pipes asked for.
    let output = tokio::process::Command::from(cargo)
        .spawn()
        .with_context(|| format!("running cargo in {}", dir.display()))?
        .wait_with_output()
        .await
        .with_context(|| format!("running cargo in {}", dir.display()))?;
    if !output.status.success() {
        if streamed {
            bail!(
                "building the flow in {} failed (cargo's messages are above)",
                dir.display()
            );
        }
        let messages = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = messages.lines().collect();
        bail!(
            "building the flow in {} failed:\n{}",
            dir.display(),
            lines[lines.len().saturating_sub(BUILD_ERROR_LINES)..].join("\n")
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
pub fn ensure_guest_target(dir: &Path, builder: &Builder) -> anyhow::Result<()> {
    let libdir = command("rustc", dir, builder)
        .args(["--print", "target-libdir", "--target", GUEST_TARGET])
        .output()
        .context("running rustc to find the guest target")?;
    if PathBuf::from(String::from_utf8_lossy(&libdir.stdout).trim()).is_dir() {
        return Ok(());
    }
    tracing::info!(target = GUEST_TARGET, "adding the guest target with rustup");
    let status = command("rustup", dir, builder)
        .args(["target", "add", GUEST_TARGET])
        .status()
        .context("running rustup to add the wasm32-wasip2 target (is rustup installed?)")?;
    if !status.success() {
        bail!("`rustup target add {GUEST_TARGET}` failed (its messages are above)");
    }
    Ok(())
}
