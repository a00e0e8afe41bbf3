//! Docker credential helpers: `docker-credential-<name> get`, the registry's server URL on its
//! standard input, `{"ServerURL": .., "Username": .., "Secret": ..}` on its standard output.
//!
//! Decisions (kubelet's credential-provider model):
//! - A helper named by a user's `config.json` (`credsStore`, `credHelpers`) runs only when the
//!   agent's own `config.toml` lists its name under `registries.credential_helpers`. A
//!   `config.json` is often written by tools and people other than the operator; running a program
//!   it names, as root, is the operator's decision, not the file's. An unlisted helper is an error
//!   that names both files and the key, never a silent anonymous pull.
//! - The program is `docker-credential-<name>`, found on the agent's `PATH` (as Docker finds it).
//!   Names are plain (`[A-Za-z0-9._-]`), so a name can never be a path.
//! - The helper gets [`HELPER_TIMEOUT`] to answer, then it is killed: a helper waiting for a
//!   keyring unlock must not hang the pull. Its standard error is kept for the message.
//! - A helper that exits non-zero saying `credentials not found` means "no credentials": the pull
//!   goes on anonymously, as Docker's. Any other failure is an error.
//! - `Username: "<token>"` means `Secret` is an identity token (an OAuth2 refresh token), traded
//!   for an access token at the registry's token endpoint ([`super::identity`]).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a helper may take to answer.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// The `Username` that marks `Secret` as an identity token.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

/// What a helper answered.
#[derive(Clone, PartialEq, Eq)]
pub enum HelperAnswer {
    /// No credentials stored for that server.
    NotFound,
    /// A user name and a password.
    Basic { username: String, secret: String },
    /// An identity token (`Username: "<token>"`).
    IdentityToken(String),
}

impl std::fmt::Debug for HelperAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelperAnswer::NotFound => write!(f, "NotFound"),
            HelperAnswer::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            HelperAnswer::IdentityToken(_) => write!(f, "IdentityToken(<redacted>)"),
        }
    }
}

/// Whether `name` may be a helper name: non-empty, `[A-Za-z0-9._-]` only, not `.`/`..`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// The server URL Docker hands the helper for `registry` (`host[:port]`, already normalized):
/// Docker Hub is `https://index.docker.io/v1/`, any other registry its host.
pub fn server_url(registry: &str) -> String {
    if registry == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Parses what a helper printed (exit status `ok`).
pub fn parse_answer(ok: bool, stdout: &[u8], stderr: &[u8]) -> Result<HelperAnswer, String> {
    if !ok {
        let out = String::from_utf8_lossy(stdout);
        let err = String::from_utf8_lossy(stderr);
        if out.contains("credentials not found") || err.contains("credentials not found") {
            return Ok(HelperAnswer::NotFound);
        }
        let said = [out.trim(), err.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let said: String = said.chars().take(500).collect();
        return Err(format!(
            "failed: {}",
            if said.is_empty() { "no output" } else { &said }
        ));
    }
    let a: Answer = serde_json::from_slice(stdout)
        .map_err(|e| format!("printed no JSON {{\"Username\", \"Secret\"}}: {e}"))?;
    if a.secret.is_empty() {
        return Err("answered with an empty \"Secret\"".into());
    }
    if a.username == IDENTITY_TOKEN_USER {
        return Ok(HelperAnswer::IdentityToken(a.secret));
    }
    Ok(HelperAnswer::Basic {
        username: a.username,
        secret: a.secret,
    })
}

/// Runs `docker-credential-<name> get` for `registry` (normalized host) and returns its answer.
/// The error text says which program failed and why; it never contains the secret.
pub fn get(name: &str, registry: &str) -> Result<HelperAnswer, String> {
    let program = format!("docker-credential-{name}");
    if !valid_name(name) {
        return Err(format!(
            "{program:?} is not a credential helper name (letters, digits, '.', '_', '-')"
        ));
    }
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program} get: cannot run it ({e}); is it on the agent's PATH?"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading gives EPIPE: its exit status tells the rest.
        let _ = stdin.write_all(server_url(registry).as_bytes());
    }
    // Both pipes are read on threads so that a chatty helper cannot block on a full pipe.
    let pipe = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = p {
                let _ = p.by_ref().take(1 << 20).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = pipe(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = pipe(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + HELPER_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} get: no answer within {}s; killed",
                    HELPER_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("{program} get: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    parse_answer(status.success(), &stdout, &stderr).map_err(|e| format!("{program} get: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["pass", "ecr-login", "gcloud", "a.b_c-1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "/bin/sh", "a b", "x;y"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(server_url("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(server_url("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn answers() {
        let basic = parse_answer(
            true,
            br#"{"ServerURL":"h","Username":"alice","Secret":"s3"}"#,
            b"",
        );
        assert_eq!(
            basic,
            Ok(HelperAnswer::Basic {
                username: "alice".into(),
                secret: "s3".into()
            })
        );
        let token = parse_answer(true, br#"{"Username":"<token>","Secret":"rt"}"#, b"");
        assert_eq!(token, Ok(HelperAnswer::IdentityToken("rt".into())));
        assert!(!format!("{token:?}").contains("rt\""), "{token:?}");
        assert_eq!(
            parse_answer(false, b"credentials not found in native keychain\n", b""),
            Ok(HelperAnswer::NotFound)
        );
        let e = parse_answer(false, b"", b"gpg: decryption failed")
            .err()
            .unwrap_or_default();
        assert!(e.contains("gpg: decryption failed"), "{e}");
        let e = parse_answer(true, b"not json", b"")
            .err()
            .unwrap_or_default();
        assert!(e.contains("Username"), "{e}");
        let e = parse_answer(true, br#"{"Username":"u","Secret":""}"#, b"")
            .err()
            .unwrap_or_default();
        assert!(e.contains("empty"), "{e}");
    }
}
