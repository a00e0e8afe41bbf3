//! `envFiles`: dotenv files whose variables a container gets (Compose's `env_file`).
//!
//! - Grammar: the `dotenvy` crate's (the dotenv format Compose reads): `KEY=VALUE` lines,
//!   `export KEY=VALUE`, `#` comments, single quotes (literal), double quotes (escapes, several
//!   lines), `$VAR` / `${VAR}` substituted from the agent's own environment first, then from the
//!   lines above in the same file (dotenvy's order; Compose substitutes from its shell). A
//!   leading UTF-8 BOM is skipped. A key given twice: the later line wins. A NUL byte anywhere,
//!   or a `KEY=VALUE` longer than the kernel takes in one `execve` string
//!   ([`super::validate::object::MAX_ARG_STRLEN`]), fails the file: the container could never
//!   be created with it, and a replacement found that out only after its predecessor stopped.
//! - Read at intake ([`super::source::load_files`], every full pass, so a changed file is
//!   noticed at the next pass even when it lies outside the watched directory), from an open
//!   file that must pass the permission rule ([`super::source::perms::check_env_file`]: not
//!   writable by group or others, not readable by others), at most [`MAX_ENV_FILE_SIZE`].
//! - Values never leave memory through this module: [`EnvFileData`]'s `Debug` shows keys only,
//!   errors name the file and line, never the line's text. What is kept beside the container's
//!   record is a digest of the variables ([`digest`]) and their keys.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest env file read (bytes).
pub const MAX_ENV_FILE_SIZE: u64 = 1024 * 1024;

/// What intake read from one `envFiles` entry.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct EnvFileData {
    /// As written in the manifest.
    pub path: String,
    /// Resolved against the manifest's directory.
    pub resolved: PathBuf,
    /// [`digest`] of `vars`.
    pub digest: String,
    /// The variables (a later line wins over an earlier one with the same key).
    pub vars: BTreeMap<String, String>,
}

impl fmt::Debug for EnvFileData {
    /// Keys only: the values may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvFileData")
            .field("path", &self.path)
            .field("resolved", &self.resolved)
            .field("digest", &self.digest)
            .field("keys", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `path` as written, resolved against `manifest_dir` when relative.
pub fn resolve(manifest_dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        manifest_dir.join(p)
    }
}

/// `sha256:<hex>` over the variables, sorted by key (`KEY\0VALUE\0` each): a comment or an
/// order change is no change of the container.
pub fn digest(vars: &BTreeMap<String, String>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (k, v) in vars {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Parses dotenv text. Errors name the line (1-based), never its content.
pub fn parse(bytes: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        format!("line {line}: not UTF-8")
    })?;
    if let Some(at) = text.find('\0') {
        let line = text[..at].bytes().filter(|&b| b == b'\n').count() + 1;
        return Err(format!(
            "line {line}: a NUL byte (no environment variable can hold one: the kernel ends the \
             string there)"
        ));
    }
    let mut vars = BTreeMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((k, v)) => {
                let len = k.len() + 1 + v.len();
                if len >= crate::manifest::validate::object::MAX_ARG_STRLEN {
                    return Err(format!(
                        "variable {k} is {len} bytes long with its name: the kernel takes at most \
                         {} bytes in one KEY=VALUE string (MAX_ARG_STRLEN)",
                        crate::manifest::validate::object::MAX_ARG_STRLEN - 1
                    ));
                }
                vars.insert(k, v);
            }
            Err(dotenvy::Error::LineParse(line, index)) => {
                let at = text.find(line.as_str()).map_or(0, |start| {
                    text[..start].bytes().filter(|&b| b == b'\n').count() + 1
                });
                let line_no = if at == 0 {
                    String::new()
                } else {
                    format!("line {at}, ")
                };
                return Err(format!(
                    "{line_no}column {}: not a dotenv line (KEY=VALUE, `export KEY=VALUE`, \
                     a `#` comment or empty)",
                    index + 1
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(vars)
}

/// Reads and parses the env file at `resolved` (named `path` in the manifest), checking the
/// permission rule on the open file. The error says what is wrong and how to fix it, without
/// the path (the caller names it: [`describe`]).
pub fn read(path: &str, resolved: &Path) -> Result<EnvFileData, String> {
    let file = std::fs::File::open(resolved).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => e.to_string(),
    })?;
    super::source::perms::check_env_file(resolved, &file).map_err(|e| e.about(resolved))?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_ENV_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_ENV_FILE_SIZE {
        return Err(format!("larger than {MAX_ENV_FILE_SIZE} bytes"));
    }
    let vars = parse(&bytes)?;
    Ok(EnvFileData {
        path: path.to_string(),
        resolved: resolved.to_path_buf(),
        digest: digest(&vars),
        vars,
    })
}

/// `env file ./db.env (/etc/agent.d/db.env)`: the path as written, and where it resolved to
/// when that differs.
pub fn describe(path: &str, resolved: &Path) -> String {
    if Path::new(path) == resolved {
        format!("env file {path}")
    } else {
        format!("env file {path} ({})", resolved.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_style_lines() {
        let text =
            b"\xEF\xBB\xBF# comment\nA=1\nexport B='two words'\nC=\"line\\nnext\"\n\nD=$A-x\nA=3\n";
        let vars = parse(text).unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("A", "3"),
                ("B", "two words"),
                ("C", "line\nnext"),
                ("D", "1-x")
            ]
        );
    }

    #[test]
    fn errors_name_the_line_not_its_content() {
        let e = parse(b"A=1\nB=2\nthis is secret garbage\n")
            .err()
            .unwrap_or_default();
        assert!(e.starts_with("line 3, column"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = parse(b"A=1\n\xff\n").err().unwrap_or_default();
        assert_eq!(e, "line 2: not UTF-8");
    }

    #[test]
    fn digest_ignores_comments_and_order_and_debug_hides_values() {
        let a = parse(b"A=1\nB=2\n").unwrap_or_default();
        let b = parse(b"# c\nB=2\nA=1\n").unwrap_or_default();
        assert_eq!(digest(&a), digest(&b));
        let c = parse(b"A=1\nB=3\n").unwrap_or_default();
        assert_ne!(digest(&a), digest(&c));
        let data = EnvFileData {
            path: "./x.env".into(),
            vars: parse(b"PASSWORD=hunter2\n").unwrap_or_default(),
            ..EnvFileData::default()
        };
        let shown = format!("{data:?}");
        assert!(
            shown.contains("PASSWORD") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
