//! The `.env` file beside the compose file, read as Compose reads it.
//!
//! The agent's dotenv grammar ([`crate::manifest::envfile`], the `dotenvy` crate) substitutes
//! `$VAR` and `${VAR}` but not the forms with an operator, which Compose's `.env` also has:
//! `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`, `${VAR:+alt}`,
//! `${VAR+alt}` (dotenvy makes them the empty string, silently). Here the file is read by that
//! grammar first; then each value written with such a form (unquoted or in double quotes, not
//! in single quotes, which are literal) is interpolated again from its text by the converter's
//! own [`super::interpolate`], from the environment, then the file's variables, as Compose does.

use std::collections::BTreeMap;

use super::interpolate::{self, Vars};

/// A value as written: its line (1-based), its text without the quotes, and the quote used.
#[derive(Debug, PartialEq, Eq)]
struct Raw {
    line: u32,
    key: String,
    text: String,
    quote: Option<char>,
}

/// Parses `.env` text (`bytes` as read) with the agent's grammar, then re-reads the values that
/// use an interpolation operator. An error names the line.
pub fn parse(
    bytes: &[u8],
    env: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, (u32, String)> {
    let mut vars = crate::manifest::envfile::parse(bytes).map_err(|e| (1, e))?;
    let text = String::from_utf8_lossy(bytes);
    for raw in raw_values(&text) {
        if raw.quote == Some('\'') || !has_operator(&raw.text) {
            continue;
        }
        let text = match raw.quote {
            // In double quotes `\$` is a literal `$`: `$$` to the interpolation.
            Some('"') => raw.text.replace("\\$", "$$"),
            _ => raw.text.clone(),
        };
        let lookup = Vars {
            env: env.clone(),
            dotenv: vars.clone(),
        };
        let mut found = Vec::new();
        let value = interpolate::string(&text, &lookup, &mut found).map_err(|e| (raw.line, e))?;
        let value = match raw.quote {
            Some('"') => unescape(&value),
            _ => value,
        };
        vars.insert(raw.key, value);
    }
    Ok(vars)
}

/// Whether `s` holds `${NAME` followed by an operator (`:`, `-`, `?`, `+`).
fn has_operator(s: &str) -> bool {
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let name_len = after
            .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
            .unwrap_or(after.len());
        if name_len > 0
            && matches!(
                after[name_len..].chars().next(),
                Some(':' | '-' | '?' | '+')
            )
        {
            return true;
        }
        rest = after;
    }
    false
}

/// The escapes of a double-quoted dotenv value.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(c @ ('"' | '\\')) => out.push(c),
            Some(c) => {
                out.push('\\');
                out.push(c);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The `KEY=VALUE` lines of dotenv text with their values as written (quotes taken off, an
/// unquoted value's ` # comment` and blanks too). Lines that are not `KEY=VALUE` are skipped:
/// the agent's grammar has judged the file already.
fn raw_values(text: &str) -> Vec<Raw> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let line = lines[i].trim_start();
        i += 1;
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().to_string();
        let value = value.trim_start();
        let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'');
        let text = match quote {
            Some(q) => {
                // Up to the closing quote, over several lines if need be.
                let mut body = value[1..].to_string();
                loop {
                    if let Some(end) = closing(&body, q) {
                        body.truncate(end);
                        break;
                    }
                    match lines.get(i) {
                        Some(next) => {
                            body.push('\n');
                            body.push_str(next);
                            i += 1;
                        }
                        None => break,
                    }
                }
                body
            }
            None => {
                let end = value.find(" #").unwrap_or(value.len());
                value[..end].trim_end().to_string()
            }
        };
        out.push(Raw {
            line: line_no,
            key,
            text,
            quote,
        });
    }
    out
}

/// The index of the quote `q` closing a value (`\"` does not close a double-quoted one).
fn closing(body: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        if q == '"' && c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        if c == q && !escaped {
            return Some(i);
        }
        escaped = false;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_are_interpolated_as_compose_does() {
        let text = "# a comment\nBASE=/srv\nexport DATA=${BASE:-/var}/data\nHOME_DIR=${SHELL_HOME:-/root}\nEMPTY=\nDASH=${EMPTY-kept}\nCOLON=${EMPTY:-dflt}\nALT=${BASE:+yes}\nSINGLE='${NOPE:-literal}'\nDOUBLE=\"${NOPE:-a b} \\$HOME\\n\"\nINLINE=${NOPE:-x} # comment\nPLAIN=${BASE}/p\nMULTI=\"line1\n${NOPE:-line2}\"\n";
        let mut env = BTreeMap::new();
        env.insert("SHELL_HOME".to_string(), "/home/me".to_string());
        let vars = parse(text.as_bytes(), &env).expect("parse");
        let get = |k: &str| vars.get(k).map(String::as_str);
        assert_eq!(get("DATA"), Some("/srv/data"));
        assert_eq!(get("HOME_DIR"), Some("/home/me"));
        assert_eq!(get("DASH"), Some(""));
        assert_eq!(get("COLON"), Some("dflt"));
        assert_eq!(get("ALT"), Some("yes"));
        assert_eq!(get("SINGLE"), Some("${NOPE:-literal}"));
        assert_eq!(get("DOUBLE"), Some("a b $HOME\n"));
        assert_eq!(get("INLINE"), Some("x"));
        // Without an operator, the agent's grammar as before.
        assert_eq!(get("PLAIN"), Some("/srv/p"));
        assert_eq!(get("MULTI"), Some("line1\nline2"));
    }

    #[test]
    fn a_required_variable_names_its_line() {
        let e = parse(b"A=1\nB=${NOPE:?set NOPE}\n", &BTreeMap::new()).expect_err("required");
        assert_eq!(e.0, 2);
        assert!(e.1.contains("NOPE") && e.1.contains("set NOPE"), "{}", e.1);
    }

    #[test]
    fn operator_detection() {
        for yes in ["${A:-b}", "x${A-b}", "${A?}", "${A:+b}", "$${A} ${B:?c}"] {
            assert!(has_operator(yes), "{yes}");
        }
        for no in ["${A}", "$A-b", "${}", "plain", "${-x}"] {
            assert!(!has_operator(no), "{no}");
        }
    }
}
