//! The flows repository: its state for the Version Control page, and
//! Update: fetch, fast-forward only, then build and deploy the flow crates
//! that changed, or, with `build_flows = false`, deploy the prebuilt
//! components committed under `dist/` folders.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use baton_core::store::Store;
use baton_runtime::Runtime;
use git2::{BranchType, Repository, StatusOptions};

use crate::engine::checkpoint::AttemptJournal;
use crate::vcs::deploy::Builder;

/// Why the repository could not be read or updated.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No repository is configured.
    #[error("no flows repository is configured (flows_repo in the config file, or --flows-repo)")]
    NotConfigured,
    /// The update would lose work or needs a person.
    #[error("{0}")]
    Refused(String),
    /// git failed.
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

/// One commit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitInfo {
    /// Full id.
    pub id: String,
    /// Author name and email.
    pub author: String,
    /// First line of the message.
    pub message: String,
    /// Commit time, seconds since the Unix epoch.
    pub time: i64,
}

/// What the Version Control page shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepoState {
    /// The repository's path.
    pub path: String,
    /// Checked-out branch.
    pub branch: String,
    /// HEAD.
    pub head: Option<CommitInfo>,
    /// The branch's upstream remote URL.
    pub remote: Option<String>,
    /// Commits on the branch not on its upstream.
    pub ahead: usize,
    /// Commits on the upstream not on the branch.
    pub behind: usize,
    /// Files with uncommitted changes.
    pub uncommitted: usize,
}

/// The outcome of Update for one flow crate or prebuilt component.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FlowUpdate {
    /// The crate folder or `.wasm` file, relative to the repository.
    pub path: String,
    /// Flow name, once built.
    pub flow: Option<String>,
    /// The version active before.
    pub old: Option<String>,
    /// The version deployed now.
    pub new: Option<String>,
    /// The build or deploy error.
    pub error: Option<String>,
    /// What deployed but should be known: a path dependency outside the
    /// repository makes the version depend on where the checkout is.
    pub warnings: Vec<String>,
}

/// What Update did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UpdateReport {
    /// HEAD before.
    pub from: Option<String>,
    /// HEAD after.
    pub to: Option<String>,
    /// Per changed flow crate.
    pub flows: Vec<FlowUpdate>,
}

fn commit_info(commit: &git2::Commit<'_>) -> CommitInfo {
    let author = commit.author();
    CommitInfo {
        id: commit.id().to_string(),
        author: format!(
            "{} <{}>",
            author.name().unwrap_or("?"),
            author.email().unwrap_or("?")
        ),
        message: commit
            .summary()
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_owned(),
        time: commit.time().seconds(),
    }
}

fn open(path: Option<&Path>) -> Result<Repository, SyncError> {
    Ok(Repository::open(path.ok_or(SyncError::NotConfigured)?)?)
}

/// The repository's branch, HEAD, remote, divergence and local changes.
pub fn state(path: Option<&Path>) -> Result<RepoState, SyncError> {
    let repo = open(path)?;
    let head = repo.head().ok();
    let branch = head
        .as_ref()
        .and_then(|h| h.shorthand().ok().map(str::to_owned))
        .unwrap_or_else(|| "(detached)".into());
    let head_commit = head.as_ref().and_then(|h| h.peel_to_commit().ok());
    let upstream = repo
        .find_branch(&branch, BranchType::Local)
        .ok()
        .and_then(|b| b.upstream().ok());
    let (ahead, behind) = match (
        &head_commit,
        upstream.as_ref().and_then(|u| u.get().target()),
    ) {
        (Some(local), Some(remote)) => repo.graph_ahead_behind(local.id(), remote)?,
        _ => (0, 0),
    };
    let remote = repo
        .branch_upstream_remote(&format!("refs/heads/{branch}"))
        .ok()
        .and_then(|name| name.as_str().ok().map(str::to_owned))
        .and_then(|name| {
            repo.find_remote(&name)
                .ok()
                .and_then(|r| r.url().ok().map(baton_runtime::redact_url))
        });
    let mut options = StatusOptions::new();
    options.include_untracked(true).include_ignored(false);
    let uncommitted = repo.statuses(Some(&mut options))?.len();
    Ok(RepoState {
        path: repo.workdir().unwrap_or(repo.path()).display().to_string(),
        branch,
        head: head_commit.as_ref().map(commit_info),
        remote,
        ahead,
        behind,
        uncommitted,
    })
}

/// What changed in a fast-forward that Update deploys: flow crates (folders
/// with a Cargo.toml) to build, or prebuilt `.wasm` files under a `dist/`
/// folder.
fn changed(workdir: &Path, files: &BTreeSet<PathBuf>, build_flows: bool) -> BTreeSet<PathBuf> {
    if !build_flows {
        return files
            .iter()
            .filter(|file| {
                file.extension().is_some_and(|e| e == "wasm")
                    && file.parent().is_some_and(|dir| dir.ends_with("dist"))
                    && workdir.join(file).is_file()
            })
            .cloned()
            .collect();
    }
    let mut crates = BTreeSet::new();
    for file in files {
        // The nearest folder above the file with a Cargo.toml is its crate.
        let mut dir = file.parent();
        while let Some(candidate) = dir {
            if !candidate.as_os_str().is_empty()
                && workdir.join(candidate).join("Cargo.toml").exists()
            {
                crates.insert(candidate.to_owned());
                break;
            }
            dir = candidate.parent();
        }
    }
    crates
}

/// Fetches the branch's upstream and fast-forwards to it. Returns the old
/// and new HEAD and the files that changed between them. Refuses
/// uncommitted changes and diverged history.
fn fast_forward(repo: &Repository) -> Result<(git2::Oid, git2::Oid, BTreeSet<PathBuf>), SyncError> {
    let head = repo.head()?;
    let branch = head.shorthand()?.to_owned();
    let old = head.peel_to_commit()?;
    let mut options = StatusOptions::new();
    options.include_untracked(false);
    if !repo.statuses(Some(&mut options))?.is_empty() {
        return Err(SyncError::Refused(format!(
            "the flows repository has uncommitted changes on {branch}; commit or discard them first"
        )));
    }
    let remote_name = repo.branch_upstream_remote(&format!("refs/heads/{branch}"))?;
    let remote_name = remote_name.as_str()?.to_owned();
    repo.find_remote(&remote_name)?
        .fetch(&[branch.as_str()], None, None)?;
    let upstream = repo.find_branch(&branch, BranchType::Local)?.upstream()?;
    let target = upstream.get().peel_to_commit()?;
    if target.id() == old.id() || repo.graph_descendant_of(old.id(), target.id())? {
        return Ok((old.id(), old.id(), BTreeSet::new()));
    }
    if !repo.graph_descendant_of(target.id(), old.id())? {
        let (ahead, behind) = repo.graph_ahead_behind(old.id(), target.id())?;
        return Err(SyncError::Refused(format!(
            "{branch} and {remote_name}/{branch} have diverged ({ahead} local and {behind} remote commits); \
             Update only fast-forwards: reconcile the history by hand, then update again"
        )));
    }
    let diff = repo.diff_tree_to_tree(Some(&old.tree()?), Some(&target.tree()?), None)?;
    let files = diff
        .deltas()
        .flat_map(|delta| [delta.old_file().path(), delta.new_file().path()])
        .flatten()
        .map(Path::to_owned)
        .collect();
    let mut reference = repo.find_reference(&format!("refs/heads/{branch}"))?;
    reference.set_target(target.id(), "baton update: fast-forward")?;
    repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))?;
    Ok((old.id(), target.id(), files))
}

/// Update: fast-forward, then build and deploy each changed flow crate with
/// cargo in its repository mode into the `build` folder, or, without one
/// (`build_flows = false`), deploy each changed `dist/*.wasm` and never run
/// cargo.
pub async fn update(
    path: Option<&Path>,
    build: Option<&Path>,
    store: &dyn Store,
    runtime: &Runtime<AttemptJournal>,
    connections: &std::collections::BTreeMap<String, String>,
    check: crate::vcs::deploy::ReplayCheck,
) -> Result<UpdateReport, SyncError> {
    let path = path.ok_or(SyncError::NotConfigured)?.to_owned();
    let build_flows = build.is_some();
    // git2 is blocking and its handles are not Send: finish with git first.
    let (workdir, from, to, changed) = tokio::task::spawn_blocking(move || {
        let repo = open(Some(&path))?;
        let workdir = repo.workdir().unwrap_or(repo.path()).to_owned();
        let (from, to, files) = fast_forward(&repo)?;
        let changed = changed(&workdir, &files, build_flows);
        Ok::<_, SyncError>((workdir, from, to, changed))
    })
    .await
    .map_err(|e| SyncError::Refused(format!("the git task failed: {e}")))??;
    let mut flows = Vec::new();
    for dir in changed {
        let mut report = FlowUpdate {
            path: dir.display().to_string(),
            flow: None,
            old: None,
            new: None,
            error: None,
            warnings: Vec::new(),
        };
        let components = match build {
            Some(target_dir) => {
                let builder = Builder::Repository {
                    target_dir: target_dir.to_owned(),
                };
                let (crate_dir, root, for_check) =
                    (workdir.join(&dir), workdir.clone(), builder.clone());
                let outside = tokio::task::spawn_blocking(move || {
                    crate::vcs::deploy::path_dependencies_outside(&crate_dir, &for_check, &root)
                })
                .await
                .map_err(anyhow::Error::from)
                .and_then(|outside| outside);
                match outside {
                    Ok(outside) if !outside.is_empty() => report.warnings.push(format!(
                        "depends by path on {}, outside the repository: cargo puts that path into the build, so a server whose checkout sits elsewhere builds another version of this commit (depend on it by git, a registry or a path inside the repository)",
                        outside.join(", ")
                    )),
                    Ok(_) => {}
                    Err(e) => report
                        .warnings
                        .push(format!("its path dependencies could not be checked: {e:#}")),
                }
                crate::vcs::deploy::component_bytes(&workdir.join(&dir), &builder).await
            }
            // A committed component, taken as it is.
            None => tokio::fs::read(workdir.join(&dir))
                .await
                .map(|bytes| vec![(dir.clone(), bytes)])
                .with_context(|| format!("reading {}", dir.display())),
        };
        match components {
            Err(e) => report.error = Some(format!("{e:#}")),
            Ok(components) => {
                for (_, bytes) in components {
                    match crate::vcs::deploy::deploy(
                        store,
                        runtime,
                        bytes,
                        connections,
                        Some(check),
                    )
                    .await
                    {
                        Ok(deployed) => {
                            report.old = deployed.previous.clone();
                            report.new = Some(deployed.version);
                            report.flow = Some(deployed.name);
                            report.warnings.extend(deployed.warnings);
                        }
                        Err(e) => report.error = Some(e.to_string()),
                    }
                }
            }
        }
        flows.push(report);
    }
    Ok(UpdateReport {
        from: Some(from.to_string()),
        to: Some(to.to_string()),
        flows,
    })
}
