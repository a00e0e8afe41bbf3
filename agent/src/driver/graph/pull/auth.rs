//! Registry credentials from a Docker-style `config.json` (`{"auths": {"host:port": {"auth":
//! base64("user:password")}}}`, or `username`/`password` fields, or an `identitytoken`), the file
//! `docker login` and `skopeo login` write, and from the credential helpers it names.
//!
//! The file is `--registry-config` when given (it must exist), else `$DOCKER_CONFIG/config.json`,
//! else `$HOME/.docker/config.json` (a missing default file means anonymous access). Keys are
//! matched on the host (and port) alone: `https://host:5000/v2/` and `host:5000` are the same
//! registry, and Docker Hub's names (`docker.io`, `index.docker.io`, `registry-1.docker.io`,
//! `https://index.docker.io/v1/`) are one.
//!
//! Credential helpers, in Docker's order: `credHelpers` for that host, else `credsStore`, then
//! `auths` when the helper has nothing for it. A helper runs only when its name is listed in
//! the agent's `config.toml` (`registries.credential_helpers`, see [`super::helper`]); a helper
//! the file names but the operator did not allow is an error that says where to allow it.

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
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

/// What to authenticate with at one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Nothing stored: anonymous access.
    Nothing,
    /// A user name and password.
    Basic(Credentials),
    /// An identity token (a refresh token), traded for an access token ([`super::identity`]).
    IdentityToken(Redacted),
}

/// A secret that never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<redacted>")
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
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

/// The credentials for `registry` (a `host[:port]` as in the image reference): credential
/// helpers first (`credHelpers`, `credsStore`; only those named in `allowed`), then `auths`.
/// `explicit` is a file the user named: it must exist. A default file that does not exist means
/// no credentials.
pub fn find(explicit: Option<&Path>, registry: &str, allowed: &[String]) -> Result<Found, Error> {
    let Some(path) = config_path(explicit) else {
        return Ok(Found::Nothing);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(Found::Nothing);
        }
        Err(e) => return Err(Error::io("read registry credentials", &path)(e)),
    };
    let file: ConfigFile = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
        path: path.clone(),
        source: e,
    })?;
    let want = normalize_host(registry);
    let fail = |reason: String| Error::Format {
        source_name: path.display().to_string(),
        reason,
    };
    let helper = file
        .cred_helpers
        .iter()
        .find(|(k, _)| normalize_host(k) == want)
        .map(|(k, v)| (format!("credHelpers.{k:?}"), v))
        .or_else(|| {
            file.creds_store
                .as_ref()
                .filter(|s| !s.is_empty())
                .map(|s| ("credsStore".to_string(), s))
        });
    if let Some((key, name)) = helper {
        if !allowed.iter().any(|a| a == name) {
            return Err(fail(format!(
                "{key} names the credential helper {name:?} (docker-credential-{name}), which the \
                 agent runs only when its config.toml allows it: add {name:?} to \
                 registries.credential_helpers in the agent's config.toml (allowed now: {}), or \
                 put the credentials for {want} in \"auths\"",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        match super::helper::get(name, &want).map_err(|e| fail(format!("{key}: {e}")))? {
            super::helper::HelperAnswer::Basic { username, secret } => {
                return Ok(Found::Basic(Credentials {
                    username,
                    password: secret,
                }));
            }
            super::helper::HelperAnswer::IdentityToken(t) => {
                return Ok(Found::IdentityToken(Redacted(t)));
            }
            super::helper::HelperAnswer::NotFound => {}
        }
    }
    let Some((key, entry)) = file.auths.iter().find(|(k, _)| normalize_host(k) == want) else {
        return Ok(Found::Nothing);
    };
    if let Some(t) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Found::IdentityToken(Redacted(t.to_string())));
    }
    if entry.auth.as_deref().is_none_or(str::is_empty)
        && entry.username.is_none()
        && entry.password.is_none()
    {
        // `{}`: what `docker login` leaves in auths when a credential store holds the secret.
        return Ok(Found::Nothing);
    }
    decode(entry)
        .map(Found::Basic)
        .map_err(|reason| fail(format!("auths.{key:?}: {reason}")))
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

    fn lookup(p: Option<&Path>, registry: &str) -> Result<Option<Credentials>, Error> {
        find(p, registry, &[]).map(|f| match f {
            Found::Basic(c) => Some(c),
            _ => None,
        })
    }

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

    #[test]
    fn helpers_run_only_when_allowed_and_empty_entries_mean_nothing() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = write(
            d.path(),
            r#"{"auths":{"h:1":{}},"credsStore":"desktop","credHelpers":{"h:2":"pass"}}"#,
        );
        let e = find(Some(&p), "h:1", &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("credsStore")
                && e.contains("docker-credential-desktop")
                && e.contains("registries.credential_helpers")
                && e.contains("config.toml")
                && e.contains("allowed now: none"),
            "{e}"
        );
        let e = find(Some(&p), "h:2", &["desktop".into()])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("credHelpers.\"h:2\"") && e.contains("\"pass\""),
            "{e}"
        );
        let p = write(
            d.path(),
            r#"{"auths":{"h:1":{},"h:3":{"identitytoken":"rt"}}}"#,
        );
        assert_eq!(find(Some(&p), "h:1", &[]).ok(), Some(Found::Nothing));
        assert_eq!(
            find(Some(&p), "h:3", &[]).ok(),
            Some(Found::IdentityToken(Redacted("rt".into())))
        );
    }
}
