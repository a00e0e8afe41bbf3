//! A service's `extends: {service, file?}` (or `extends: NAME`), as `docker compose` resolves it
//! (compose-go's `loader/extends.go`): the service named is taken from the same file, or from
//! `file` (relative to the file that names it), its own `extends` resolved first (recursively; a
//! service met again on the way is a cycle and refused), and the extending service merged over
//! it by the merge rules ([`super::merge`]). Within each file, before the files are merged: an
//! `extends` names a service of its own file or of `file`, not one of another `-f` file.
//!
//! A service taken from another file has its relative paths (`build`, `env_file`,
//! `label_file`, bind sources of `volumes`) made absolute against that file's directory, as
//! Compose resolves them there; the project's own files keep theirs relative to the project
//! directory.

use std::path::{Path, PathBuf};

use crate::manifest::node::{Key, Node, NodeKind};

use super::load::Loader;
use super::{Error, lexical, merge, value};

/// Most services one `extends` chain goes through (Compose has no limit; this keeps the
/// recursion's stack small whatever the files).
const MAX_DEPTH: usize = 64;

/// Resolves the `extends` of every service of `root`, the tree of `file`.
pub fn resolve_file(ld: &mut Loader, root: &mut Node, file: &Path) -> Result<(), Error> {
    let Some(services) = services_mut(root) else {
        return Ok(());
    };
    let names: Vec<String> = services.iter().map(|(k, _)| k.name.clone()).collect();
    for name in names {
        resolve(ld, services, &name, file, &mut Vec::new())?;
    }
    Ok(())
}

fn services_mut(root: &mut Node) -> Option<&mut Vec<(Key, Node)>> {
    let NodeKind::Map(entries) = &mut root.kind else {
        return None;
    };
    let (_, services) = entries.iter_mut().find(|(k, _)| k.name == "services")?;
    match &mut services.kind {
        NodeKind::Map(list) => Some(list),
        _ => None,
    }
}

/// Service `name` of `services` (the services of `file`) with its `extends` resolved, also
/// written back into `services`. `stack` holds the services being resolved, for cycles.
fn resolve(
    ld: &mut Loader,
    services: &mut [(Key, Node)],
    name: &str,
    file: &Path,
    stack: &mut Vec<(PathBuf, String)>,
) -> Result<Node, Error> {
    let Some(i) = services.iter().position(|(k, _)| k.name == name) else {
        return Err(Error::Invalid(format!(
            "service {name:?} vanished from {}",
            file.display()
        )));
    };
    let service = services[i].1.clone();
    let Some((key, spec)) = service.entry("extends") else {
        return Ok(service);
    };
    let (key, spec) = (key.clone(), spec.clone());
    let at = (key.line, key.col);
    let (target, other) = match &spec.kind {
        NodeKind::Map(_) => {
            let target = match spec.get("service").map(value::text) {
                Some(Ok(s)) => s,
                Some(Err(e)) => return Err(err(ld, at, format!("extends.service: {e}"))),
                None => {
                    return Err(err(
                        ld,
                        at,
                        "extends: `service` is required (the service to extend)".into(),
                    ));
                }
            };
            let other = match spec.get("file").map(value::text) {
                Some(Ok(f)) => Some(f),
                Some(Err(e)) => return Err(err(ld, at, format!("extends.file: {e}"))),
                None => None,
            };
            (target, other)
        }
        _ => match value::scalar(&spec) {
            Some(s) => (s, None),
            None => {
                return Err(err(
                    ld,
                    at,
                    format!(
                        "extends: expected a service name or {{service, file}}, found {}",
                        spec.describe()
                    ),
                ));
            }
        },
    };
    let me = (file.to_path_buf(), name.to_string());
    if let Some(first) = stack.iter().position(|s| *s == me) {
        let chain: Vec<String> = stack[first..]
            .iter()
            .chain(std::iter::once(&me))
            .map(|(f, s)| format!("{} ({})", s, ld.shown(f).display()))
            .collect();
        return Err(err(
            ld,
            at,
            format!("`extends` goes round in a cycle: {}", chain.join(" -> ")),
        ));
    }
    if stack.len() >= MAX_DEPTH {
        return Err(err(
            ld,
            at,
            format!("`extends` chains more than {MAX_DEPTH} services"),
        ));
    }
    stack.push(me);
    let base = match other {
        Some(f) => {
            let dir = file.parent().unwrap_or(Path::new("/"));
            let path = lexical(&dir.join(&f));
            // Named in messages as the file naming it is, with `f` beside it.
            let shown = ld.shown(file).parent().map(|p| p.join(&f));
            ld.name(&path, &shown.unwrap_or_else(|| PathBuf::from(&f)));
            let mut root = ld.read(&path).map_err(|e| match e {
                Error::Read { source, .. } => err(
                    ld,
                    at,
                    format!(
                        "extends.file: cannot read {}: {source}",
                        ld.shown(&path).display()
                    ),
                ),
                other => other,
            })?;
            let Some(theirs) = services_mut(&mut root) else {
                return Err(err(
                    ld,
                    at,
                    format!(
                        "extends: {} has no `services` mapping",
                        ld.shown(&path).display()
                    ),
                ));
            };
            if !theirs.iter().any(|(k, _)| k.name == target) {
                return Err(err(
                    ld,
                    at,
                    format!(
                        "extends: no service {target:?} in {} (it has {})",
                        ld.shown(&path).display(),
                        names(theirs)
                    ),
                ));
            }
            let base = resolve(ld, theirs, &target, &path, stack)?;
            rebase(base, path.parent().unwrap_or(Path::new("/")))
        }
        None => {
            if !services.iter().any(|(k, _)| k.name == target) {
                return Err(err(
                    ld,
                    at,
                    format!(
                        "extends: no service {target:?} in {} (it has {})",
                        ld.shown(file).display(),
                        names(services)
                    ),
                ));
            }
            resolve(ld, services, &target, file, stack)?
        }
    };
    stack.pop();
    let mut own = service;
    if let NodeKind::Map(entries) = &mut own.kind {
        entries.retain(|(k, _)| k.name != "extends");
    }
    let base = merge::strip(base, &ld.tags);
    let merged = merge::service(base, own, &ld.tags)
        .map_err(|(line, col, message)| ld.error(line, col, message))?;
    services[i].1 = merged.clone();
    Ok(merged)
}

/// An error at the `extends` key.
fn err(ld: &Loader, (line, col): (u32, u32), message: String) -> Error {
    ld.error(line, col, message)
}

fn names(services: &[(Key, Node)]) -> String {
    let names: Vec<&str> = services.iter().map(|(k, _)| k.name.as_str()).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The relative paths of service `n` made absolute against `dir`.
fn rebase(mut n: Node, dir: &Path) -> Node {
    let NodeKind::Map(entries) = &mut n.kind else {
        return n;
    };
    for (k, v) in entries.iter_mut() {
        match k.name.as_str() {
            "build" => match &mut v.kind {
                NodeKind::Map(_) => {
                    if let Some(c) = field_mut(v, "context") {
                        absolute(c, dir, is_local);
                    }
                }
                _ => absolute(v, dir, is_local),
            },
            "env_file" | "label_file" => each(v, |item| match &item.kind {
                NodeKind::Map(_) => {
                    if let Some(p) = field_mut(item, "path") {
                        absolute(p, dir, is_local);
                    }
                }
                _ => absolute(item, dir, is_local),
            }),
            "volumes" => each(v, |item| match &mut item.kind {
                NodeKind::Str(s) => {
                    if let Some((source, rest)) = s.split_once(':')
                        && is_dot_path(source)
                    {
                        *s = format!("{}:{rest}", lexical(&dir.join(source)).display());
                    }
                }
                NodeKind::Map(_) => {
                    let bind = item.get("type").and_then(Node::as_str) == Some("bind");
                    if let Some(src) = field_mut(item, "source") {
                        absolute(src, dir, |s| is_dot_path(s) || (bind && is_local(s)));
                    }
                }
                _ => {}
            }),
            _ => {}
        }
    }
    n
}

fn each(n: &mut Node, mut f: impl FnMut(&mut Node)) {
    match &mut n.kind {
        NodeKind::Seq(items) => items.iter_mut().for_each(f),
        _ => f(n),
    }
}

fn field_mut<'a>(n: &'a mut Node, name: &str) -> Option<&'a mut Node> {
    match &mut n.kind {
        NodeKind::Map(entries) => entries
            .iter_mut()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v),
        _ => None,
    }
}

/// A string value that `relative` says is a relative path, made absolute against `dir`.
fn absolute(n: &mut Node, dir: &Path, relative: impl Fn(&str) -> bool) {
    if let NodeKind::Str(s) = &mut n.kind
        && relative(s)
    {
        *s = lexical(&dir.join(&*s)).display().to_string();
    }
}

/// A relative local path (not absolute, not `~`, not a URL or git address).
fn is_local(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('/')
        && !s.starts_with('~')
        && !s.contains("://")
        && !s.starts_with("git@")
}

/// A path as the short volume syntax tells one from a volume name: starting with `.`.
fn is_dot_path(s: &str) -> bool {
    s == "." || s == ".." || s.starts_with("./") || s.starts_with("../")
}

#[cfg(test)]
#[path = "extends_tests.rs"]
mod tests;
