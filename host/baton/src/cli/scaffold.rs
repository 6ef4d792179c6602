//! `baton new NAME`: a flow crate that builds, tests and runs as it is, in
//! a flows workspace (`flows/` by default), added to the workspace's
//! members.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// The arguments of `baton new`.
#[derive(clap::Args)]
pub struct NewArgs {
    /// The flow's name: lowercase letters, digits and `-`, starting with a
    /// letter (`invoice-sync`); the crate, its folder and the flow share it.
    pub name: String,
    /// The flows workspace to add the crate to: a folder whose Cargo.toml
    /// has a `[workspace]` with `baton-guest` in its dependencies.
    #[arg(long, default_value = "flows")]
    pub dir: PathBuf,
}

/// Words a flow's function cannot be named, and crate names cargo refuses.
const RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "alloc",
    "core",
    "std",
    "test",
    "proc-macro",
];

/// `baton new`.
pub fn new_flow(args: NewArgs) -> anyhow::Result<()> {
    let NewArgs { name, dir } = args;
    check_name(&name)?;
    let manifest = dir.join("Cargo.toml");
    let workspace = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "reading {} (baton new adds the flow to a flows workspace; pass --dir)",
            manifest.display()
        )
    })?;
    let members = with_member(&workspace, &name)
        .with_context(|| format!("adding {name:?} to the members of {}", manifest.display()))?;
    let crate_dir = dir.join(&name);
    if crate_dir.exists() {
        bail!("{} already exists", crate_dir.display());
    }
    for (path, text) in files(&name) {
        let path = crate_dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a file in the crate"))
            .with_context(|| format!("creating {}", crate_dir.display()))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::write(&manifest, members)
        .with_context(|| format!("writing {}", manifest.display()))?;
    let shown = crate_dir.display();
    println!("created the flow {name} in {shown}; next:");
    println!("  (cd {shown} && cargo test)");
    println!("  baton deploy {shown}");
    println!("  baton run {name} --input '{{}}' --wait");
    Ok(())
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let shape = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !shape {
        bail!(
            "{name:?} is not a flow name: lowercase letters, digits and single `-` between \
             them, starting with a letter, at most 64 characters (e.g. invoice-sync)"
        );
    }
    if RESERVED.contains(&name) {
        bail!("{name:?} is a Rust keyword or a reserved crate name; choose another name");
    }
    Ok(())
}

/// The workspace manifest `text` with `name` added to `workspace.members`,
/// the array rewritten on one line. Refuses a manifest that is not a flows
/// workspace (no `workspace.dependencies.baton-guest`, which the new
/// crate's own manifest names).
fn with_member(text: &str, name: &str) -> anyhow::Result<String> {
    let parsed: toml::Table = text.parse().context("the manifest is not valid TOML")?;
    let workspace = parsed
        .get("workspace")
        .and_then(toml::Value::as_table)
        .context("it has no [workspace]")?;
    if workspace
        .get("dependencies")
        .and_then(|d| d.get("baton-guest"))
        .is_none()
    {
        bail!("its [workspace.dependencies] has no baton-guest for the new crate to use");
    }
    let mut members: Vec<String> = match workspace.get("members") {
        None => Vec::new(),
        Some(members) => members
            .as_array()
            .context("workspace.members is not an array")?
            .iter()
            .map(|m| m.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .context("workspace.members holds something else than paths")?,
    };
    if members.iter().any(|m| m == name) {
        bail!("it already has a member {name:?}");
    }
    members.push(name.to_owned());
    let array = toml::Value::Array(members.into_iter().map(toml::Value::String).collect());
    let line = format!("members = {array}");
    let section = section_span(text, "workspace").context("it has no [workspace] header")?;
    let updated = match key_span(&text[section.clone()], "members") {
        Some(span) => {
            let (start, end) = (section.start + span.start, section.start + span.end);
            format!("{}{line}{}", &text[..start], &text[end..])
        }
        None => {
            let at = text[section.clone()]
                .find('\n')
                .map_or(text.len(), |i| section.start + i + 1);
            format!("{}{line}\n{}", &text[..at], &text[at..])
        }
    };
    // What was written is what was meant, or nothing is written.
    let check: toml::Table = updated.parse().context("the rewritten manifest")?;
    let written = check["workspace"]["members"].as_array().map(|m| m.len());
    if written != Some(array.as_array().map_or(0, Vec::len)) {
        bail!("could not rewrite workspace.members; add {name:?} to it by hand");
    }
    Ok(updated)
}

/// The byte range of the table `[name]`: from its header to the next header.
fn section_span(text: &str, name: &str) -> Option<std::ops::Range<usize>> {
    let header = format!("[{name}]");
    let mut offset = 0;
    let mut start = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if start.is_some() && trimmed.starts_with('[') {
            return start.map(|s| s..offset);
        }
        if trimmed == header {
            start = Some(offset);
        }
        offset += line.len();
    }
    start.map(|s| s..text.len())
}

/// The byte range of `key = [ ... ]` in `section`, the array possibly over
/// several lines (member paths hold no brackets).
fn key_span(section: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let mut offset = 0;
    for line in section.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            let start = offset + (line.len() - trimmed.len());
            let close = section[start..].find(']')?;
            return Some(start..start + close + 1);
        }
        offset += line.len();
    }
    None
}

/// The crate's files, by path inside its folder.
fn files(name: &str) -> [(&'static str, String); 3] {
    let function = name.replace('-', "_");
    let manifest = format!(
        r#"[package]
name = "{name}"
version.workspace = true
edition.workspace = true
rust-version.workspace = true
license.workspace = true

[lib]
crate-type = ["cdylib"]

[dependencies]
baton-guest.workspace = true
serde.workspace = true

[dev-dependencies]
baton-guest = {{ workspace = true, features = ["testing"] }}
serde_json.workspace = true
"#
    );
    let source = format!(
        r#"//! The {name} flow.

use baton_guest::prelude::*;

#[derive(Deserialize)]
struct Input {{
    /// Who to greet; the input `{{}}` greets the world.
    #[serde(default = "world")]
    name: String,
}}

fn world() -> String {{
    "world".to_owned()
}}

#[derive(Serialize)]
struct Output {{
    greeting: String,
}}

/// Each `ctx.checkpoint` step runs once per request: its result is
/// committed, and a retry (after a crash, on any server) replays it.
#[flow(max_retries = 3, retry_interval = "10s")]
fn {function}(ctx: &mut Ctx, input: Input) -> Result<Output, FlowError> {{
    let greeting: String =
        ctx.checkpoint("greet", |_step| Ok(format!("Hello, {{}}!", input.name)))?;
    ctx.log(&greeting);
    Ok(Output {{ greeting }})
}}

#[cfg(test)]
mod tests {{
    use baton_guest::testing::Harness;
    use serde_json::json;

    use super::*;

    #[test]
    fn greets_the_world_even_when_cut_at_any_checkpoint() {{
        let run = Harness::new().crash_at_every_checkpoint({function}, &json!({{}}));
        assert_eq!(run.output.unwrap().greeting, "Hello, world!");
    }}
}}
"#
    );
    let readme = format!(
        r#"# {name}

A Baton flow. Test it natively (the harness runs it on an in-memory journal,
and once more cut at every checkpoint and resumed):

```sh
cargo test
```

Deploy it to a running server and start a request:

```sh
baton deploy .
baton run {name} --input '{{}}' --wait
```
"#
    );
    [
        ("Cargo.toml", manifest),
        ("src/lib.rs", source),
        ("README.md", readme),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOWS: &str = "# Example flows.\n[workspace]\nresolver = \"3\"\nmembers = [\"hello\",\n  \"order\"]\n\n[workspace.dependencies]\nbaton-guest = { path = \"../guest-sdk\" }\n";

    #[test]
    fn a_member_is_added_and_the_rest_kept() {
        let updated = with_member(FLOWS, "invoice-sync").unwrap();
        assert!(updated.starts_with("# Example flows.\n[workspace]\nresolver = \"3\"\n"));
        assert!(updated.contains("members = [\"hello\", \"order\", \"invoice-sync\"]\n"));
        assert!(updated.ends_with("baton-guest = { path = \"../guest-sdk\" }\n"));

        let without = FLOWS.replace("members = [\"hello\",\n  \"order\"]\n", "");
        let added = with_member(&without, "a").unwrap();
        let parsed: toml::Table = added.parse().unwrap();
        assert_eq!(
            parsed["workspace"]["members"],
            toml::Value::Array(vec!["a".into()])
        );
    }

    #[test]
    fn a_duplicate_or_a_workspace_without_the_sdk_is_refused() {
        assert!(with_member(FLOWS, "hello").is_err());
        let plain = "[workspace]\nmembers = []\n";
        assert!(with_member(plain, "a").is_err());
        assert!(with_member("[package]\nname = \"x\"\n", "a").is_err());
    }

    #[test]
    fn names_are_checked() {
        for good in ["a", "invoice-sync", "step2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "Invoice", "2fa", "a--b", "a-", "a_b", "match", "test", "a b",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
