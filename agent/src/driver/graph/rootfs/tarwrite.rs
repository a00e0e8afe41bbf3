//! Writing file trees as tar streams: whole root filesystems (export) and layer diffs (overlay
//! upper directories with their whiteouts turned back into OCI `.wh.` entries, or the changes
//! the vfs driver found). Symlinks are never followed; files are opened with `O_NOFOLLOW`.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use tar::{EntryType, Header};

use super::super::Error;
use super::super::unpack::fsops;

/// A tar stream being written, remembering hard links by (device, inode).
pub struct TarOut<'w> {
    b: tar::Builder<&'w mut dyn Write>,
    links: HashMap<(u64, u64), String>,
}

fn werr(e: io::Error) -> Error {
    Error::Io {
        op: "write tar",
        path: "<output>".into(),
        source: e,
    }
}

impl<'w> TarOut<'w> {
    pub fn new(w: &'w mut dyn Write) -> Self {
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        TarOut {
            b,
            links: HashMap::new(),
        }
    }

    pub fn finish(self) -> Result<(), Error> {
        let w = self.b.into_inner().map_err(werr)?;
        w.flush().map_err(werr)
    }

    fn base_header(kind: EntryType, md: &Metadata) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(md.uid() as u64);
        h.set_gid(md.gid() as u64);
        h.set_mtime(md.mtime().max(0) as u64);
        h.set_size(0);
        h
    }

    /// Appends the entry at `abs` as `rel` (no leading `/`).
    pub fn append(&mut self, abs: &Path, rel: &str) -> Result<(), Error> {
        let md = fs::symlink_metadata(abs).map_err(Error::io("stat", abs))?;
        let ft = md.file_type();
        self.append_xattrs(abs, &md)?;
        if ft.is_dir() {
            let mut h = Self::base_header(EntryType::Directory, &md);
            return self
                .b
                .append_data(&mut h, format!("{rel}/"), io::empty())
                .map_err(werr);
        }
        if ft.is_symlink() {
            let target = fs::read_link(abs).map_err(Error::io("readlink", abs))?;
            let mut h = Self::base_header(EntryType::Symlink, &md);
            return self.b.append_link(&mut h, rel, target).map_err(werr);
        }
        if md.nlink() > 1 && !ft.is_dir() {
            if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                let mut h = Self::base_header(EntryType::Link, &md);
                let first = first.clone();
                return self.b.append_link(&mut h, rel, first).map_err(werr);
            }
            self.links.insert((md.dev(), md.ino()), rel.to_string());
        }
        if ft.is_file() {
            let f = File::options()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(abs)
                .map_err(Error::io("open", abs))?;
            let mut h = Self::base_header(EntryType::Regular, &md);
            h.set_size(md.len());
            return self
                .b
                .append_data(&mut h, rel, io::Read::take(f, md.len()))
                .map_err(werr);
        }
        let kind = if ft.is_fifo() {
            EntryType::Fifo
        } else if ft.is_char_device() {
            EntryType::Char
        } else if ft.is_block_device() {
            EntryType::Block
        } else {
            return Ok(()); // sockets are not archived (as GNU tar)
        };
        let mut h = Self::base_header(kind, &md);
        let rdev = md.rdev();
        h.set_device_major(libc::major(rdev)).map_err(werr)?;
        h.set_device_minor(libc::minor(rdev)).map_err(werr)?;
        self.b.append_data(&mut h, rel, io::empty()).map_err(werr)
    }

    /// Emits `SCHILY.xattr.*` PAX records for the next entry (overlay's own xattrs left out).
    fn append_xattrs(&mut self, abs: &Path, md: &Metadata) -> Result<(), Error> {
        if md.file_type().is_symlink() {
            return Ok(());
        }
        if !(md.is_file() || md.is_dir()) {
            return Ok(()); // fifos/devices: opening could block; their xattrs are not archived
        }
        let f = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(abs)
            .map_err(Error::io("open", abs))?;
        let names = fsops::flistxattr(f.as_raw_fd()).map_err(Error::io("list xattrs", abs))?;
        let mut recs: Vec<(String, Vec<u8>)> = Vec::new();
        for n in names {
            let key = String::from_utf8_lossy(n.as_bytes()).into_owned();
            if key.starts_with("trusted.overlay.") {
                continue;
            }
            if let Some(v) =
                fsops::fgetxattr(f.as_raw_fd(), &n).map_err(Error::io("read xattr", abs))?
            {
                recs.push((format!("SCHILY.xattr.{key}"), v));
            }
        }
        if !recs.is_empty() {
            self.b
                .append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(werr)?;
        }
        Ok(())
    }

    /// Appends an empty `.wh.<name>` whiteout in directory `rel_dir` ("" for the root).
    pub fn whiteout(&mut self, rel_dir: &str, name: &[u8]) -> Result<(), Error> {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        let n = format!("{}.wh.{}", prefix(rel_dir), String::from_utf8_lossy(name));
        self.b.append_data(&mut h, n, io::empty()).map_err(werr)
    }
}

fn prefix(rel_dir: &str) -> String {
    if rel_dir.is_empty() {
        String::new()
    } else {
        format!("{rel_dir}/")
    }
}

/// Joins a relative directory and a name.
pub fn join_rel(rel_dir: &str, name: &std::ffi::OsStr) -> String {
    format!("{}{}", prefix(rel_dir), name.to_string_lossy())
}

/// Sorted children of a directory (stable archive order).
pub fn children(dir: &Path) -> Result<Vec<std::ffi::OsString>, Error> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .map_err(Error::io("list", dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(Error::io("list", dir))?;
    v.sort();
    Ok(v)
}

/// Writes the whole tree under `root` (for export): every entry, no whiteout handling.
pub fn write_tree(root: &Path, out: &mut TarOut<'_>) -> Result<(), Error> {
    fn walk(abs: &Path, rel: &str, out: &mut TarOut<'_>) -> Result<(), Error> {
        for name in children(abs)? {
            let p = abs.join(&name);
            let r = join_rel(rel, &name);
            out.append(&p, &r)?;
            if fs::symlink_metadata(&p)
                .map(|m| m.is_dir())
                .unwrap_or(false)
            {
                walk(&p, &r, out)?;
            }
        }
        Ok(())
    }
    walk(root, "", out)
}

/// Whether `md` is an overlay whiteout (character device 0:0).
pub fn is_whiteout(md: &Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

/// Whether the directory at `path` carries `trusted.overlay.opaque=y`.
pub fn is_opaque(path: &Path) -> bool {
    let Ok(f) = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(path)
    else {
        return false;
    };
    let Ok(key) = fsops::cstr(b"trusted.overlay.opaque") else {
        return false;
    };
    matches!(fsops::fgetxattr(f.as_raw_fd(), &key), Ok(Some(v)) if v == b"y")
}

/// Writes an overlay upper directory as an OCI layer: whiteout devices become `.wh.<name>`,
/// opaque directories get a `.wh..wh..opq` entry.
pub fn write_overlay_diff(upper: &Path, out: &mut TarOut<'_>) -> Result<(), Error> {
    fn walk(abs: &Path, rel: &str, out: &mut TarOut<'_>) -> Result<(), Error> {
        for name in children(abs)? {
            let p = abs.join(&name);
            let md = fs::symlink_metadata(&p).map_err(Error::io("stat", &p))?;
            if is_whiteout(&md) {
                out.whiteout(rel, name.as_bytes())?;
                continue;
            }
            let r = join_rel(rel, &name);
            out.append(&p, &r)?;
            if md.is_dir() {
                if is_opaque(&p) {
                    out.whiteout(&r, b".wh..opq")?;
                }
                walk(&p, &r, out)?;
            }
        }
        Ok(())
    }
    walk(upper, "", out)
}
