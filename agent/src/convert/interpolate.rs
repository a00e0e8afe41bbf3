//! Compose's variable interpolation, applied to every string value of the parsed file (not to
//! keys), before anything is mapped, as Compose does.
//!
//! Grammar (the Compose spec's): `$$` is a literal `$`; `$NAME` and `${NAME}` take the variable;
//! `${NAME:-default}` the default when it is unset or empty, `${NAME-default}` only when unset;
//! `${NAME:?message}` / `${NAME?message}` stop the conversion with the message when it is unset
//! or empty / unset; `${NAME:+other}` / `${NAME+other}` give `other` when it is set and non-empty
//! / set. Defaults and alternatives may themselves hold variables. Any other `$` is an error, as
//! in Compose.
//!
//! Values come from the environment of `agent convert` first, then from the `.env` file beside
//! the compose file (the dotenv grammar of [`crate::manifest::envfile`]), as Compose's precedence
//! has it. An unset variable without a default becomes the empty string (Compose warns; so does
//! the report). Every substitution is recorded ([`Use`]) with where it was and where the value
//! came from, never the value itself: the report says what was interpolated.

use std::collections::BTreeMap;

use crate::manifest::node::{Node, NodeKind};

/// Where a variable's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum From {
    /// The environment `agent convert` ran in.
    Environment,
    /// The `.env` file beside the compose file.
    DotEnv,
    /// Unset or empty: the default (or alternative) written in the file was used.
    Default,
    /// Unset and without a default: replaced by the empty string.
    Unset,
}

impl std::fmt::Display for From {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            From::Environment => "the environment",
            From::DotEnv => ".env",
            From::Default => "the default in the file",
            From::Unset => "nowhere: unset, replaced by an empty string",
        })
    }
}

/// One substitution: variable `name` at `line`:`col` of compose file `file`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Use {
    pub file: std::path::PathBuf,
    pub line: u32,
    pub col: u32,
    pub name: String,
    pub from: From,
}

/// The variables interpolation reads: the environment first, then `.env`.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    pub env: BTreeMap<String, String>,
    pub dotenv: BTreeMap<String, String>,
}

impl Vars {
    /// The value of `name` and where it came from, if set.
    pub fn get(&self, name: &str) -> Option<(&str, From)> {
        if let Some(v) = self.env.get(name) {
            return Some((v, From::Environment));
        }
        self.dotenv.get(name).map(|v| (v.as_str(), From::DotEnv))
    }
}

/// Replaces the variables in every string of `node` (recursively), recording each use. The first
/// error (`${X:?message}` with X unset, a bad `$`) is returned with its line and column.
pub fn tree(node: &mut Node, vars: &Vars, uses: &mut Vec<Use>) -> Result<(), (u32, u32, String)> {
    let (line, col) = (node.line, node.col);
    match &mut node.kind {
        NodeKind::Str(s) if s.contains('$') => {
            let mut found = Vec::new();
            let out = string(s, vars, &mut found).map_err(|e| (line, col, e))?;
            uses.extend(found.into_iter().map(|(name, from)| Use {
                file: Default::default(),
                line,
                col,
                name,
                from,
            }));
            *s = out;
        }
        NodeKind::Seq(items) => {
            for item in items {
                tree(item, vars, uses)?;
            }
        }
        NodeKind::Map(entries) => {
            for (_, v) in entries {
                tree(v, vars, uses)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// Interpolates one string; `found` gets each variable used and where its value came from.
pub fn string(s: &str, vars: &Vars, found: &mut Vec<(String, From)>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let end = closing_brace(&chars, i + 2).ok_or_else(|| {
                    format!("invalid interpolation in {s:?}: `${{` without its `}}`")
                })?;
                let inner: String = chars[i + 2..end].iter().collect();
                out.push_str(&braced(&inner, s, vars, found)?);
                i = end + 1;
            }
            Some(&n) if is_name_start(n) => {
                let mut j = i + 1;
                while j < chars.len() && is_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                out.push_str(&lookup(&name, vars, found));
                i = j;
            }
            _ => {
                return Err(format!(
                    "invalid interpolation in {s:?}: a `$` must start a variable (`$NAME`, `${{NAME}}`); write `$$` for a literal `$`"
                ));
            }
        }
    }
    Ok(out)
}

/// The index of the `}` that closes a `${` whose content starts at `from`, nested `${..}` skipped.
fn closing_brace(chars: &[char], from: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            '$' if chars.get(i + 1) == Some(&'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn lookup(name: &str, vars: &Vars, found: &mut Vec<(String, From)>) -> String {
    match vars.get(name) {
        Some((v, from)) => {
            found.push((name.to_string(), from));
            v.to_string()
        }
        None => {
            found.push((name.to_string(), From::Unset));
            String::new()
        }
    }
}

/// `NAME`, `NAME:-default`, `NAME-default`, `NAME:?msg`, `NAME?msg`, `NAME:+alt`, `NAME+alt`.
fn braced(
    inner: &str,
    whole: &str,
    vars: &Vars,
    found: &mut Vec<(String, From)>,
) -> Result<String, String> {
    let name_len = inner
        .char_indices()
        .find(|(_, c)| !is_name_char(*c))
        .map_or(inner.len(), |(i, _)| i);
    let (name, rest) = inner.split_at(name_len);
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(format!(
            "invalid interpolation in {whole:?}: `${{{inner}}}` does not start with a variable name"
        ));
    }
    if rest.is_empty() {
        return Ok(lookup(name, vars, found));
    }
    let value = vars.get(name);
    let (colon, op, arg) = match rest.strip_prefix(':') {
        Some(r) => (true, r.chars().next(), r.get(1..).unwrap_or("")),
        None => (false, rest.chars().next(), rest.get(1..).unwrap_or("")),
    };
    // With `:` an empty value counts as unset.
    let set = match value {
        Some((v, _)) => !(colon && v.is_empty()),
        None => false,
    };
    match op {
        Some('-') => {
            if set {
                Ok(lookup(name, vars, found))
            } else {
                found.push((name.to_string(), From::Default));
                string(arg, vars, found)
            }
        }
        Some('?') => {
            if set {
                Ok(lookup(name, vars, found))
            } else {
                let msg = string(arg, vars, found)?;
                let what = if value.is_some() {
                    "is empty"
                } else {
                    "is not set"
                };
                if msg.is_empty() {
                    Err(format!("required variable {name} {what}"))
                } else {
                    Err(format!("required variable {name} {what}: {msg}"))
                }
            }
        }
        Some('+') => {
            if set {
                found.push((name.to_string(), value.map_or(From::Unset, |(_, f)| f)));
                string(arg, vars, found)
            } else {
                found.push((name.to_string(), From::Default));
                Ok(String::new())
            }
        }
        _ => Err(format!(
            "invalid interpolation in {whole:?}: `${{{inner}}}`: allowed are ${{NAME}}, ${{NAME:-default}}, ${{NAME-default}}, ${{NAME:?error}}, ${{NAME?error}}, ${{NAME:+alternative}}, ${{NAME+alternative}}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::default();
        v.env.insert("USER_ENV".into(), "alice".into());
        v.env.insert("EMPTY".into(), String::new());
        v.env.insert("BOTH".into(), "from-env".into());
        v.dotenv.insert("BOTH".into(), "from-dotenv".into());
        v.dotenv.insert("PORT".into(), "8080".into());
        v
    }

    fn run(s: &str) -> (Result<String, String>, Vec<(String, From)>) {
        let mut found = Vec::new();
        let r = string(s, &vars(), &mut found);
        (r, found)
    }

    #[test]
    fn forms_and_sources() {
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, From)]);
        let cases: [Case; 14] = [
            ("no vars", "no vars", &[]),
            ("$$HOME", "$HOME", &[]),
            ("$USER_ENV-x", "alice-x", &[("USER_ENV", From::Environment)]),
            ("${PORT}:80", "8080:80", &[("PORT", From::DotEnv)]),
            ("${BOTH}", "from-env", &[("BOTH", From::Environment)]),
            ("${NOPE}", "", &[("NOPE", From::Unset)]),
            ("${NOPE:-5432}", "5432", &[("NOPE", From::Default)]),
            ("${EMPTY:-d}", "d", &[("EMPTY", From::Default)]),
            ("${EMPTY-d}", "", &[("EMPTY", From::Environment)]),
            ("${NOPE-d}", "d", &[("NOPE", From::Default)]),
            ("${PORT:+set}", "set", &[("PORT", From::DotEnv)]),
            ("${NOPE:+set}", "", &[("NOPE", From::Default)]),
            (
                "${NOPE:-${PORT}}",
                "8080",
                &[("NOPE", From::Default), ("PORT", From::DotEnv)],
            ),
            (
                "a${USER_ENV}b$${PORT}",
                "aaliceb${PORT}",
                &[("USER_ENV", From::Environment)],
            ),
        ];
        for (input, want, uses) in cases {
            let (got, found) = run(input);
            assert_eq!(got.as_deref(), Ok(want), "{input}");
            let want_uses: Vec<(String, From)> =
                uses.iter().map(|(n, f)| (n.to_string(), *f)).collect();
            assert_eq!(found, want_uses, "{input}");
        }
    }

    #[test]
    fn required_and_invalid() {
        let (r, _) = run("${NOPE:?set NOPE first}");
        let e = r.expect_err("required");
        assert!(e.contains("NOPE") && e.contains("set NOPE first"), "{e}");
        // Without a message, nothing dangles; `:?` also refuses the empty value, and says so.
        assert_eq!(
            run("${EMPTY:?}").0,
            Err("required variable EMPTY is empty".to_string())
        );
        assert_eq!(
            run("${NOPE?}").0,
            Err("required variable NOPE is not set".to_string())
        );
        assert_eq!(run("${PORT:?x}").0.as_deref(), Ok("8080"));
        assert!(run("${EMPTY?x}").0.is_ok());
        assert!(run("${EMPTY:?x}").0.is_err());
        for bad in ["$", "a $ b", "${", "${9X}", "${A%b}", "${}"] {
            assert!(run(bad).0.is_err(), "{bad}");
        }
    }

    #[test]
    fn tree_interpolates_values_not_keys_and_records_where() {
        let mut docs =
            crate::manifest::node::parse_documents("a:\n  ${PORT}: x\n  b: [\"${PORT}\", 3]\n")
                .expect("yaml");
        let mut uses = Vec::new();
        tree(&mut docs[0], &vars(), &mut uses).expect("ok");
        let a = docs[0].get("a").expect("a");
        assert!(a.get("${PORT}").is_some(), "keys stay");
        let b = a.find(&[
            crate::manifest::node::Step::Key("b"),
            crate::manifest::node::Step::Index(0),
        ]);
        assert_eq!(b.as_str(), Some("8080"));
        assert_eq!(uses.len(), 1);
        assert_eq!(
            (uses[0].line, uses[0].col, uses[0].from),
            (3, 7, From::DotEnv)
        );
    }
}
