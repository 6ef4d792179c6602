//! The server's modules depend on each other one way only: no import
//! circle, neither between files nor between the top-level domains
//! (`engine`, `http`, `requests`, `vcs`, …). Read from the source: every
//! `crate::…` and `super::…` path names a module. A module's use of its
//! own ancestors (a `mod.rs` sharing helpers with the files under it) is a
//! tree, not a circle, and is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Every module of the server's library, by file.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut folders = vec![src.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let relative = path.strip_prefix(src).unwrap();
            if path.extension().is_none_or(|e| e != "rs") || relative == Path::new("main.rs") {
                continue;
            }
            let mut module: Module = relative
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module
                .last()
                .is_some_and(|last| last == "mod" || last == "lib")
            {
                module.pop();
            }
            found.insert(module, path);
        }
    }
    found
}

/// The modules `text` (the source of `module`) names by path.
fn references(module: &Module, text: &str, known: &BTreeSet<Module>) -> BTreeSet<Module> {
    let mut named = BTreeSet::new();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    for (anchor, base) in [("crate::", Vec::new()), ("super::", parent(module))] {
        for (at, _) in text.match_indices(anchor) {
            if text[..at].ends_with(ident) {
                continue;
            }
            // The path's segments, then those inside one level of braces.
            let rest = &text[at + anchor.len()..];
            let mut path = base.clone();
            let mut tail = rest;
            loop {
                let end = tail.find(|c: char| !ident(c)).unwrap_or(tail.len());
                if end == 0 {
                    break;
                }
                path.push(tail[..end].to_owned());
                tail = &tail[end..];
                match tail.strip_prefix("::") {
                    Some(next) => tail = next,
                    None => break,
                }
            }
            let mut paths = vec![path.clone()];
            if let Some(group) = tail.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for item in group.split(',') {
                    let first = item.trim().split("::").next().unwrap_or("");
                    if !first.is_empty() && first != "self" {
                        let mut inner = path.clone();
                        inner.push(first.to_owned());
                        paths.push(inner);
                    }
                }
            }
            for mut path in paths {
                while !path.is_empty() && !known.contains(&path) {
                    path.pop();
                }
                if !path.is_empty() && !module.starts_with(&path) {
                    named.insert(path);
                }
            }
        }
    }
    named
}

fn parent(module: &Module) -> Module {
    module[..module.len().saturating_sub(1)].to_vec()
}

/// A circle in `edges`, as the modules along it, if there is one.
fn circle<T: Ord + Clone>(edges: &BTreeMap<T, BTreeSet<T>>) -> Option<Vec<T>> {
    fn visit<T: Ord + Clone>(
        node: &T,
        edges: &BTreeMap<T, BTreeSet<T>>,
        path: &mut Vec<T>,
        done: &mut BTreeSet<T>,
    ) -> Option<Vec<T>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.clone());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, edges, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn the_servers_modules_depend_on_each_other_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = modules(&src);
    let known: BTreeSet<Module> = files.keys().cloned().collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let named = references(module, &text, &known);
        edges.entry(module.clone()).or_default().extend(named);
    }
    assert!(
        edges[&vec!["http".to_owned(), "console".to_owned()]]
            .contains(&vec!["http".to_owned(), "state".to_owned()]),
        "the reader finds the console's use of the state: {edges:?}"
    );
    let show = |modules: &[Module]| {
        modules
            .iter()
            .map(|m| format!("crate::{}", m.join("::")))
            .collect::<Vec<_>>()
            .join(" -> ")
    };
    if let Some(found) = circle(&edges) {
        panic!("an import circle between files: {}", show(&found));
    }

    // The same between the top-level domains, inside ones aside.
    let mut domains: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in &edges {
        let Some(from) = from.first() else { continue };
        for to in tos.iter().filter_map(|to| to.first()) {
            if to != from {
                domains.entry(from.clone()).or_default().insert(to.clone());
            }
        }
    }
    if let Some(found) = circle(&domains) {
        panic!("an import circle between domains: {}", found.join(" -> "));
    }
}

#[test]
fn the_reader_sees_a_circle_when_there_is_one() {
    let edge = |from: &str, to: &[&str]| {
        (
            from.to_owned(),
            to.iter().map(|t| (*t).to_owned()).collect::<BTreeSet<_>>(),
        )
    };
    let circular = BTreeMap::from([edge("a", &["b"]), edge("b", &["c"]), edge("c", &["a"])]);
    assert_eq!(
        circle(&circular),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let one_way = BTreeMap::from([edge("a", &["b", "c"]), edge("b", &["c"])]);
    assert_eq!(circle(&one_way), None);

    let known: BTreeSet<Module> = [vec!["http".into()], vec!["http".into(), "state".into()]]
        .into_iter()
        .collect();
    let named = references(
        &vec!["http".into(), "api".into()],
        "use crate::http::{self, state::AppState};\nuse super::state;",
        &known,
    );
    assert_eq!(named, BTreeSet::from([vec!["http".into(), "state".into()]]));
}
