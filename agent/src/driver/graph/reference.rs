//! Image names as the local index stores them: `name[:tag]`, normalised to carry a tag.
//!
//! Registry references (`host:port/repo:tag@sha256:..`) are parsed by the registry client; here a
//! local name is validated (the characters Docker allows) and given `:latest` when it has neither
//! a tag nor a digest, so `busybox` and `busybox:latest` are the same image.

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
        for bad in ["", "UPPER", "a b", "/abs", "x:", "a/../b\n"] {
            assert!(normalize(bad).is_err(), "{bad:?} accepted");
        }
    }
}
