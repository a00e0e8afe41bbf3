//! Image names as the local index stores them: `name[:tag]`, normalised to carry a tag.
//!
//! Registry references (`host:port/repo:tag@sha256:..`) are parsed by the registry client; here a
//! local name is validated (the characters Docker allows), Docker Hub names are shortened as
//! Docker shows them (`docker.io/library/busybox` -> `busybox`), and a name gets `:latest` when it
//! has neither a tag nor a digest, so `busybox` and `busybox:latest` are the same image.

use super::Error;

/// Normalises a local image name: validates it and appends `:latest` when no tag is given.
pub fn normalize(name: &str) -> Result<String, Error> {
    let bad = |reason: &str| Error::BadReference {
        value: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad("must be 1-255 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:@".contains(&b))
    {
        return Err(bad(
            "allowed characters: a-z 0-9 . _ - / : @ (lowercase only)",
        ));
    }
    if name.starts_with(['/', ':', '@', '.', '-']) || name.ends_with(['/', ':', '@']) {
        return Err(bad("must not start or end with a separator"));
    }
    let name = familiar(name);
    if name.contains('@') {
        return Ok(name.to_string());
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        Ok(name.to_string())
    } else {
        Ok(format!("{name}:latest"))
    }
}

/// Docker Hub names in their short form, as Docker shows them: `docker.io/library/busybox:1`
/// -> `busybox:1`, `docker.io/sk/app` -> `sk/app` (skopeo and `docker save` write the long form).
fn familiar(name: &str) -> &str {
    let rest = ["docker.io/", "index.docker.io/", "registry-1.docker.io/"]
        .iter()
        .find_map(|p| name.strip_prefix(p));
    match rest {
        Some(r) => match r.strip_prefix("library/") {
            Some(short) if !short.contains('/') => short,
            _ => r,
        },
        None => name,
    }
}

/// The tag part of a normalised name (`latest` for `busybox:latest`), if any.
pub fn tag(name: &str) -> Option<&str> {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split_once(':').map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(normalize("busybox").ok().as_deref(), Some("busybox:latest"));
        assert_eq!(
            normalize("localhost:5000/a/b").ok().as_deref(),
            Some("localhost:5000/a/b:latest")
        );
        assert_eq!(
            normalize("localhost:5000/a/b:1.2").ok().as_deref(),
            Some("localhost:5000/a/b:1.2")
        );
        assert_eq!(tag("localhost:5000/a/b:1.2"), Some("1.2"));
        for (long, short) in [
            ("docker.io/library/busybox", "busybox:latest"),
            ("docker.io/sk/app:1", "sk/app:1"),
            ("index.docker.io/library/a/b:2", "library/a/b:2"),
        ] {
            assert_eq!(normalize(long).ok().as_deref(), Some(short));
        }
        for bad in ["", "UPPER", "a b", "/abs", "x:", "a/../b\n"] {
            assert!(normalize(bad).is_err(), "{bad:?} accepted");
        }
    }
}
