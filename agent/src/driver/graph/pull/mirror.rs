//! Registry mirrors (`config.toml`: `[registries.mirrors] "docker.io" = ["http://127.0.0.1:5000"]`).
//!
//! Decisions (as containerd's `hosts.toml` mirrors and Docker's `registry-mirrors`):
//! - A registry's mirrors are tried in the order written, then the registry itself. The first one
//!   that serves the whole image (manifest, config and layers, every digest verified) wins; a
//!   mirror that fails in any way (unreachable, 404, a bad digest, refused credentials) is logged
//!   and the next one is tried. Only a full disk stops the walk: it would fail everywhere.
//! - A mirror gets one retry per request, not the registry's five: falling back is faster than
//!   waiting for a mirror that is down.
//! - The image keeps its own name and source (`docker.io/library/busybox@sha256:..`): a mirror
//!   serves the same content, which the digests prove. Which endpoint served it is logged.
//! - A mirror is `http://host[:port]` (plain HTTP) or `https://host[:port]` (TLS), without a path;
//!   keys are registries as written in references (`docker.io`, `registry:5000`), Docker Hub's
//!   aliases being one key. Credentials for a mirror are looked up under the mirror's own host.

use std::collections::BTreeMap;

use super::auth::normalize_host;

/// One mirror endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `http://host:port` or `https://host`, as written (without a trailing `/`).
    pub url: String,
    /// `host[:port]`.
    pub host: String,
    /// Plain HTTP (`http://`).
    pub plain_http: bool,
}

/// Parses a mirror URL; the error says how to write one.
pub fn parse(url: &str) -> Result<Mirror, String> {
    let bad = |why: &str| {
        format!("{url:?} {why}; write a mirror as http://host[:port] or https://host[:port]")
    };
    let (plain_http, rest) = if let Some(r) = url.strip_prefix("http://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (false, r)
    } else {
        return Err(bad("has no http:// or https://"));
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    if host.contains('/') {
        return Err(bad("has a path (mirrors are served at /v2/ of their host)"));
    }
    if host.contains(['@', '?', '#', ' ']) {
        return Err(bad("is not a plain host"));
    }
    let scheme = if plain_http { "http" } else { "https" };
    Ok(Mirror {
        url: format!("{scheme}://{host}"),
        host: host.to_ascii_lowercase(),
        plain_http,
    })
}

/// Checks a mirrors key (a registry as written in references).
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.contains('/') || key.contains("://") || key.contains(' ') {
        return Err(format!(
            "{key:?} is not a registry; write the registry as in image references, e.g. \
             \"docker.io\" or \"registry.example:5000\""
        ));
    }
    Ok(())
}

/// Checks the whole table: keys and URLs (used when `config.toml` is loaded).
pub fn check(mirrors: &BTreeMap<String, Vec<String>>) -> Result<(), String> {
    for (key, urls) in mirrors {
        check_key(key)?;
        for u in urls {
            parse(u).map_err(|e| format!("{key:?}: {e}"))?;
        }
    }
    Ok(())
}

/// The mirrors of `registry` (as in the reference), in order.
pub fn for_registry(
    mirrors: &BTreeMap<String, Vec<String>>,
    registry: &str,
) -> Result<Vec<Mirror>, String> {
    let want = normalize_host(registry);
    let mut out = Vec::new();
    for (key, urls) in mirrors {
        if normalize_host(key) == want {
            for u in urls {
                out.push(parse(u).map_err(|e| format!("registries.mirrors {key:?}: {e}"))?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mirror_urls() {
        assert_eq!(
            parse("http://127.0.0.1:5000/"),
            Ok(Mirror {
                url: "http://127.0.0.1:5000".into(),
                host: "127.0.0.1:5000".into(),
                plain_http: true
            })
        );
        assert_eq!(
            parse("https://Mirror.example").map(|m| m.host),
            Ok("mirror.example".into())
        );
        for bad in [
            "127.0.0.1:5000",
            "ftp://x",
            "http://",
            "https://m/v2/",
            "http://u@h",
        ] {
            let e = parse(bad).err().unwrap_or_default();
            assert!(e.contains("http://host[:port]"), "{bad}: {e}");
        }
    }

    #[test]
    fn mirrors_of_a_registry_in_order_docker_hub_aliases_alike() {
        let mut m = BTreeMap::new();
        m.insert(
            "docker.io".to_string(),
            vec![
                "http://127.0.0.1:5000".to_string(),
                "https://m2".to_string(),
            ],
        );
        m.insert(
            "other:5000".to_string(),
            vec!["http://127.0.0.1:6000".to_string()],
        );
        let urls =
            |r: &str| for_registry(&m, r).map(|v| v.into_iter().map(|m| m.url).collect::<Vec<_>>());
        assert_eq!(
            urls("index.docker.io"),
            Ok(vec!["http://127.0.0.1:5000".into(), "https://m2".into()])
        );
        assert_eq!(urls("docker.io").map(|v| v.len()), Ok(2));
        assert_eq!(urls("other:5000"), Ok(vec!["http://127.0.0.1:6000".into()]));
        assert_eq!(urls("third"), Ok(vec![]));
        assert!(check(&m).is_ok());
        m.insert("https://x".into(), vec![]);
        assert!(check(&m).err().unwrap_or_default().contains("docker.io"));
    }
}
