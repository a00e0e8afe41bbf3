//! Which directory entries are manifest files, and the listing the watcher compares.
//!
//! The rule: a name counts when it ends in `.yaml` or `.yml` (any case) after a non-empty stem
//! and does not start with `.` or `#`. So vim's `.x.yaml.swp` and `x.yaml~`, emacs' `#x.yaml#`
//! and `.#x.yaml`, `x.yaml.bak`, `x.yaml.tmp`, vim's `4913` probe file and Kubernetes' `..data`
//! directory are all ignored. Directories are never descended into, also when their name ends in
//! `.yaml`. Top-level symlinks are followed (Kubernetes' `x.yaml -> ..data/x.yaml`); a dangling
//! one is listed, so that it is reported as unreadable rather than silently skipped.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Whether a directory entry named `name` is a manifest file.
pub fn is_manifest_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let stem = lower
        .strip_suffix(".yaml")
        .or_else(|| lower.strip_suffix(".yml"));
    !name.starts_with('.') && !name.starts_with('#') && stem.is_some_and(|s| !s.is_empty())
}

/// What identifies one version of a file without reading it: its metadata after following
/// symlinks (size, mtime, ctime, inode, device, mode, owner) and the owner and mode of the
/// directory that really holds it. Equal keys mean "same content, same permission verdict" for
/// every writer that goes through the file system (a chmod or chown changes the ctime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKey {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
    pub dev: u64,
    pub mode: u32,
    pub uid: u32,
    /// (uid, mode, inode) of the directory really holding the file.
    pub parent: Option<(u32, u32, u64)>,
}

impl FileKey {
    /// The key of `path` (following symlinks); `None` when it is not a regular file or cannot
    /// be examined.
    pub fn of(path: &Path) -> Option<FileKey> {
        let m = std::fs::metadata(path).ok()?;
        if !m.is_file() {
            return None;
        }
        let parent = std::fs::canonicalize(path)
            .ok()
            .and_then(|real| real.parent().and_then(|p| std::fs::metadata(p).ok()))
            .map(|p| (p.uid(), p.mode(), p.ino()));
        Some(FileKey {
            size: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
            mode: m.mode(),
            uid: m.uid(),
            parent,
        })
    }
}

/// Every counted name of a directory with its key (`None`: not a regular file, e.g. a dangling
/// symlink or a FIFO; reading it reports why).
pub type Listing = BTreeMap<String, Option<FileKey>>;

/// Lists the manifest files of `dir` (not recursive).
pub fn list(dir: &Path) -> std::io::Result<Listing> {
    let mut out = Listing::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_manifest_name(&name) {
            continue;
        }
        let path = entry.path();
        let key = FileKey::of(&path);
        // Directories named *.yaml are not files.
        if key.is_none() && path.is_dir() {
            continue;
        }
        out.insert(name, key);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a.yaml",
            "web.yml",
            "0-db.yaml",
            "a.b.yaml",
            "Web.YAML",
            "x.Yml",
        ] {
            assert!(is_manifest_name(ok), "{ok}");
        }
        for no in [
            ".a.yaml",
            ".a.yaml.swp",
            "a.yaml.swp",
            "a.yaml~",
            "#a.yaml#",
            "#a.yaml",
            ".#a.yaml",
            "a.yaml.bak",
            "a.yaml.tmp",
            "4913",
            "..data",
            "a.json",
            ".yaml",
            "yaml",
            "a",
            "a.yaml___jb_tmp___",
        ] {
            assert!(!is_manifest_name(no), "{no}");
        }
    }

    #[test]
    fn listing_skips_directories_and_keeps_dangling_links() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path();
        std::fs::write(p.join("a.yaml"), "a").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(p.join("a.yaml~"), "a").unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(p.join("sub.yaml")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("missing", p.join("gone.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let l = list(p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.keys().collect::<Vec<_>>(), ["a.yaml", "gone.yaml"]);
        assert!(l["a.yaml"].is_some_and(|k| k.size == 1));
        assert!(l["gone.yaml"].is_none());
    }
}
