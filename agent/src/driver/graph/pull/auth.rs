//! Registry credentials from a Docker-style `config.json` (`{"auths": {"host:port": {"auth":
//! base64("user:password")}}}`, or `username`/`password` fields), the file `docker login` and
//! `skopeo login` write.
//!
//! The file is `--registry-config` when given (it must exist), else `$DOCKER_CONFIG/config.json`,
//! else `$HOME/.docker/config.json` (a missing default file means anonymous access). Keys are
//! matched on the host (and port) alone: `https://host:5000/v2/` and `host:5000` are the same
//! registry, and Docker Hub's names (`docker.io`, `index.docker.io`, `registry-1.docker.io`,
//! `https://index.docker.io/v1/`) are one. Credential helpers (`credsStore`, `credHelpers`) are
//! not run: an agent should not execute programs named in a user's config file; put the
//! credentials in `auths` instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::super::Error;

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The config file to read: `explicit`, or the Docker default locations.
pub fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// The credentials for `registry` (a `host[:port]` as in the image reference), if any.
/// `explicit` is a file the user named: it must exist. A default file that does not exist means
/// no credentials.
pub fn lookup(explicit: Option<&Path>, registry: &str) -> Result<Option<Credentials>, Error> {
    let Some(path) = config_path(explicit) else {
        return Ok(None);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(None);
        }
        Err(e) => return Err(Error::io("read registry credentials", &path)(e)),
    };
    let file: ConfigFile = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
        path: path.clone(),
        source: e,
    })?;
    let want = normalize_host(registry);
    let Some((key, entry)) = file.auths.iter().find(|(k, _)| normalize_host(k) == want) else {
        return Ok(None);
    };
    decode(entry).map(Some).map_err(|reason| Error::Format {
        source_name: path.display().to_string(),
        reason: format!("auths.{key:?}: {reason}"),
    })
}

fn decode(entry: &AuthEntry) -> Result<Credentials, String> {
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| format!("\"auth\" is not base64: {e}"))?;
        let text = String::from_utf8(raw).map_err(|_| "\"auth\" is not UTF-8".to_string())?;
        let (user, pass) = text
            .split_once(':')
            .ok_or("\"auth\" must be base64 of \"user:password\"")?;
        return Ok(Credentials {
            username: user.to_string(),
            password: pass.to_string(),
        });
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Credentials {
            username: u.clone(),
            password: p.clone(),
        }),
        _ => {
            Err("needs \"auth\" (base64 of user:password) or \"username\" and \"password\"".into())
        }
    }
}

/// `https://Host:5000/v2/` -> `host:5000`; Docker Hub aliases -> `docker.io`.
pub fn normalize_host(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("config.json");
        std::fs::write(&p, body).unwrap_or_else(|e| panic!("{e}"));
        p
    }

    #[test]
    fn reads_auths_by_host() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // "alice:s3cr:et" base64, password containing a colon.
        let p = write(
            d.path(),
            r#"{"auths":{"https://127.0.0.1:5000/v2/":{"auth":"YWxpY2U6czNjcjpldA=="},
                "https://index.docker.io/v1/":{"username":"bob","password":"pw"}}}"#,
        );
        let c = lookup(Some(&p), "127.0.0.1:5000").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c,
            Some(Credentials {
                username: "alice".into(),
                password: "s3cr:et".into()
            })
        );
        let hub = lookup(Some(&p), "index.docker.io").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hub.map(|c| c.username).as_deref(), Some("bob"));
        assert_eq!(lookup(Some(&p), "other:5000").ok(), Some(None));
        assert!(!format!("{c:?}").contains("s3cr"), "password printed");
    }

    #[test]
    fn bad_entries_and_missing_files_are_clear() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = write(d.path(), r#"{"auths":{"h:1":{"auth":"!!notbase64"}}}"#);
        let e = lookup(Some(&p), "h:1")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("config.json") && e.contains("base64"), "{e}");
        let missing = d.path().join("nope.json");
        let e = lookup(Some(&missing), "h:1")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("nope.json"), "{e}");
    }
}
