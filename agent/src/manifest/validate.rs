//! Checks beyond what the types enforce: per object ([`check_object`]) and across all files
//! ([`check_across`]).

use super::load::{Loaded, Object};
use super::node::Step;
use std::collections::HashMap;

use super::types::Kind;
use super::{Diagnostic, Related};

/// Whether `name` is a DNS label: 1-63 characters of `a-z`, `0-9`, `-`, starting and ending with
/// a letter or digit.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn diag(obj: &Object, path: &[Step<'_>], message: String) -> Diagnostic {
    let (line, column) = obj.locate(path);
    Diagnostic {
        file: obj.source.file.clone(),
        line,
        column,
        field: field_path(path),
        message,
        related: None,
    }
}

/// `spec.ports[1]` from steps.
pub fn field_path(path: &[Step<'_>]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Checks one object on its own.
pub fn check_object(obj: &Object) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let name = obj.name();
    if !is_dns_label(name) {
        out.push(diag(
            obj,
            &[Step::Key("metadata"), Step::Key("name")],
            format!("invalid name {name:?}: a name is a DNS label: 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"),
        ));
    }
    out
}

/// Checks all valid files together; a file with a problem becomes a failing file holding those
/// problems.
pub fn check_across(loaded: &mut Loaded) {
    let mut found: Vec<Diagnostic> = Vec::new();
    duplicate_names(loaded, &mut found);
    if found.is_empty() {
        return;
    }
    for file in &mut loaded.files {
        let mine: Vec<Diagnostic> = found
            .iter()
            .filter(|d| d.file == file.path)
            .cloned()
            .collect();
        if !mine.is_empty() {
            file.outcome = Err(mine);
        }
    }
}

/// A name used twice for the same kind: reported at the second use (in path order), naming the
/// first.
fn duplicate_names(loaded: &Loaded, out: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<(Kind, &str), &Object> = HashMap::new();
    for obj in loaded.objects() {
        let name_path = [Step::Key("metadata"), Step::Key("name")];
        match seen.get(&(obj.kind(), obj.name())) {
            Some(first) => {
                let (line, column) = first.locate(&name_path);
                let mut d = diag(
                    obj,
                    &name_path,
                    format!(
                        "duplicate {} name {:?}: already defined at {}:{line}:{column}; names must be unique per kind across all files",
                        obj.kind(),
                        obj.name(),
                        first.source.file.display()
                    ),
                );
                d.related = Some(Related {
                    file: first.source.file.clone(),
                    line,
                    column,
                });
                out.push(d);
            }
            None => {
                seen.insert((obj.kind(), obj.name()), obj);
            }
        }
    }
}
