//! The vfs driver: `containers/<id>/rootfs` is a full copy of the image's layers applied in
//! order (whiteouts delete, opaque directories are emptied first), for kernels or file systems
//! without overlay. Mounting is a no-op. The diff walks the copy against the layers' combined
//! view and reports new or changed entries (type, mode, owner, size, mtime, link target) and
//! removed ones as whiteouts, as Docker's naive diff does.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::super::Error;
use super::super::digest::Digest;
use super::super::unpack::fsops;
use super::tarwrite::{TarOut, children, is_opaque, is_whiteout, join_rel};
use super::{ContainerLayer, DriverKind, GraphDriver};

#[derive(Debug, Clone)]
pub struct Vfs {
    root: PathBuf,
}

impl Vfs {
    pub fn new(root: &Path) -> Self {
        Vfs {
            root: root.to_path_buf(),
        }
    }

    fn rootfs(&self, id: &str) -> PathBuf {
        self.root.join(id).join("rootfs")
    }
}

fn ioe(op: &'static str, p: &Path) -> impl FnOnce(io::Error) -> Error + use<> {
    let p = p.to_path_buf();
    move |e| Error::Io {
        op,
        path: p,
        source: e,
    }
}

fn remove_any(p: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).map_err(ioe("remove", p)),
        Ok(_) => fs::remove_file(p).map_err(ioe("remove", p)),
        Err(_) => Ok(()),
    }
}

/// Copies owner, mode, xattrs (not overlay's) and mtime of `md`/`src` onto `dst` (not a symlink).
fn copy_meta(src: &Path, md: &Metadata, dst: &Path) -> Result<(), Error> {
    let flags =
        libc::O_NOFOLLOW | libc::O_NONBLOCK | if md.is_dir() { libc::O_DIRECTORY } else { 0 };
    let open = |p: &Path| File::options().read(true).custom_flags(flags).open(p);
    let d = open(dst).map_err(ioe("open", dst))?;
    fsops::fchown(d.as_raw_fd(), md.uid(), md.gid()).map_err(ioe("chown", dst))?;
    fsops::fchmod(d.as_raw_fd(), md.mode() & 0o7777).map_err(ioe("chmod", dst))?;
    if md.is_dir() || md.is_file() {
        let s = open(src).map_err(ioe("open", src))?;
        for n in fsops::flistxattr(s.as_raw_fd()).map_err(ioe("list xattrs", src))? {
            if n.as_bytes().starts_with(b"trusted.overlay.") {
                continue;
            }
            if let Some(v) = fsops::fgetxattr(s.as_raw_fd(), &n).map_err(ioe("read xattr", src))? {
                fsops::fsetxattr(d.as_raw_fd(), &n, &v).map_err(ioe("set xattr", dst))?;
            }
        }
    }
    set_times(&d, md, dst)
}

fn set_times(f: &File, md: &Metadata, p: &Path) -> Result<(), Error> {
    let ts = libc::timespec {
        tv_sec: md.mtime() as libc::time_t,
        tv_nsec: md.mtime_nsec() as libc::c_long,
    };
    let times = [ts, ts];
    // SAFETY: times points to two valid timespecs; the fd is open.
    if unsafe { libc::futimens(f.as_raw_fd(), times.as_ptr()) } < 0 {
        return Err(ioe("set times", p)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Copies the directory tree `src` (its entries, then the directory's own owner, mode, xattrs
/// and mtime) onto the existing directory `dst`: regular files, directories, symlinks (as
/// symlinks, never followed), hard links within the tree, fifos and device nodes, with owners,
/// modes, `user.*`/`security.*` xattrs and mtimes. Used to fill a new volume from the image
/// directory it is mounted over (Docker's copy-up). `src` must be a real directory, not a
/// symlink (the caller resolves it inside the root filesystem).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), Error> {
    let md = fs::symlink_metadata(src).map_err(ioe("stat", src))?;
    if !md.is_dir() {
        return Err(ioe("copy", src)(io::Error::from_raw_os_error(
            libc::ENOTDIR,
        )));
    }
    apply_layer(src, dst, &mut HashMap::new())?;
    copy_meta(src, &md, dst)
}

/// Applies one unpacked layer directory onto `dst`.
fn apply_layer(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), Error> {
    for name in children(src)? {
        let s = src.join(&name);
        let d = dst.join(&name);
        let md = fs::symlink_metadata(&s).map_err(ioe("stat", &s))?;
        let ft = md.file_type();
        if is_whiteout(&md) {
            remove_any(&d)?;
            continue;
        }
        if ft.is_dir() {
            match fs::symlink_metadata(&d) {
                Ok(m) if m.is_dir() => {
                    if is_opaque(&s) {
                        for c in children(&d)? {
                            remove_any(&d.join(c))?;
                        }
                    }
                }
                Ok(_) => {
                    remove_any(&d)?;
                    fs::create_dir(&d).map_err(ioe("mkdir", &d))?;
                }
                Err(_) => fs::create_dir(&d).map_err(ioe("mkdir", &d))?,
            }
            apply_layer(&s, &d, links)?;
            copy_meta(&s, &md, &d)?;
            continue;
        }
        remove_any(&d)?;
        if md.nlink() > 1
            && let Some(first) = links.get(&(md.dev(), md.ino()))
        {
            fs::hard_link(first, &d).map_err(ioe("hard link", &d))?;
            continue;
        }
        if ft.is_symlink() {
            let t = fs::read_link(&s).map_err(ioe("readlink", &s))?;
            std::os::unix::fs::symlink(&t, &d).map_err(ioe("symlink", &d))?;
            std::os::unix::fs::lchown(&d, Some(md.uid()), Some(md.gid()))
                .map_err(ioe("chown", &d))?;
        } else if ft.is_file() {
            let mut from = File::options()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&s)
                .map_err(ioe("open", &s))?;
            let mut to = File::options()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&d)
                .map_err(ioe("create", &d))?;
            io::copy(&mut from, &mut to).map_err(ioe("copy", &d))?;
            drop(to);
            copy_meta(&s, &md, &d)?;
        } else {
            let c = fsops::cstr(d.as_os_str().as_bytes()).map_err(ioe("mknod", &d))?;
            // SAFETY: plain syscall with a valid path.
            if unsafe {
                libc::mknod(
                    c.as_ptr(),
                    md.mode() as libc::mode_t,
                    md.rdev() as libc::dev_t,
                )
            } < 0
            {
                return Err(ioe("mknod", &d)(io::Error::last_os_error()));
            }
            std::os::unix::fs::lchown(&d, Some(md.uid()), Some(md.gid()))
                .map_err(ioe("chown", &d))?;
        }
        if md.nlink() > 1 {
            links.insert((md.dev(), md.ino()), d);
        }
    }
    Ok(())
}

/// The lower layers seen as one tree (what overlay would show without an upper).
struct LowerView<'a> {
    layers: &'a [PathBuf],
}

impl LowerView<'_> {
    /// The top-most layer entry for `rel`, unless whited out or hidden by an opaque directory.
    fn lookup(&self, rel: &Path) -> Option<(PathBuf, Metadata)> {
        for layer in self.layers.iter().rev() {
            let p = layer.join(rel);
            if let Ok(md) = fs::symlink_metadata(&p) {
                return if is_whiteout(&md) {
                    None
                } else {
                    Some((p, md))
                };
            }
            // Hidden below this layer if an ancestor here is opaque, whited out or not a dir.
            let mut anc = rel.parent();
            while let Some(a) = anc {
                if a.as_os_str().is_empty() {
                    break;
                }
                if let Ok(md) = fs::symlink_metadata(layer.join(a)) {
                    if !md.is_dir() || is_opaque(&layer.join(a)) {
                        return None;
                    }
                    break;
                }
                anc = a.parent();
            }
        }
        None
    }

    /// The names visible in directory `rel`.
    fn names(&self, rel: &Path) -> BTreeSet<OsString> {
        let mut seen = BTreeSet::new();
        let mut hidden = BTreeSet::new();
        for layer in self.layers.iter().rev() {
            let p = layer.join(rel);
            match fs::symlink_metadata(&p) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => break,
                Err(_) => continue,
            }
            for n in children(&p).unwrap_or_default() {
                let is_wh = fs::symlink_metadata(p.join(&n))
                    .map(|m| is_whiteout(&m))
                    .unwrap_or(false);
                if is_wh {
                    hidden.insert(n);
                } else if !hidden.contains(&n) {
                    seen.insert(n);
                }
            }
            if is_opaque(&p) {
                break;
            }
        }
        seen
    }
}

fn same(a: &Metadata, b: &Metadata, pa: &Path, pb: &Path) -> bool {
    if a.file_type() != b.file_type()
        || a.mode() != b.mode()
        || a.uid() != b.uid()
        || a.gid() != b.gid()
        || a.mtime() != b.mtime()
        || a.mtime_nsec() != b.mtime_nsec()
    {
        return false;
    }
    if a.is_dir() {
        return true;
    }
    if a.file_type().is_symlink() {
        return fs::read_link(pa).ok() == fs::read_link(pb).ok();
    }
    if a.file_type().is_char_device() || a.file_type().is_block_device() {
        return a.rdev() == b.rdev();
    }
    a.len() == b.len()
}

fn diff_dir(
    view: &LowerView<'_>,
    top: &Path,
    rel: &Path,
    rel_s: &str,
    out: &mut TarOut<'_>,
) -> Result<(), Error> {
    let here = top.join(rel);
    let names = children(&here)?;
    let present: BTreeSet<&OsStr> = names.iter().map(|n| n.as_os_str()).collect();
    for gone in view
        .names(rel)
        .iter()
        .filter(|n| !present.contains(n.as_os_str()))
    {
        out.whiteout(rel_s, gone.as_bytes())?;
    }
    for name in &names {
        let r = rel.join(name);
        let rs = join_rel(rel_s, name);
        let p = top.join(&r);
        let md = fs::symlink_metadata(&p).map_err(ioe("stat", &p))?;
        let lower = view.lookup(&r);
        let changed = match &lower {
            Some((lp, lmd)) => !same(&md, lmd, &p, lp),
            None => true,
        };
        if changed {
            out.append(&p, &rs)?;
        }
        if md.is_dir() {
            if lower.as_ref().is_some_and(|(_, l)| l.is_dir()) {
                diff_dir(view, top, &r, &rs, out)?;
            } else {
                // New (or replaced) directory: everything below is new.
                diff_dir(&LowerView { layers: &[] }, top, &r, &rs, out)?;
            }
        }
    }
    Ok(())
}

impl GraphDriver for Vfs {
    fn kind(&self) -> DriverKind {
        DriverKind::Vfs
    }

    fn create(
        &self,
        id: &str,
        image: &Digest,
        lowers: &[PathBuf],
    ) -> Result<ContainerLayer, Error> {
        let meta = ContainerLayer {
            version: super::CONTAINER_META_VERSION,
            id: id.to_string(),
            driver: DriverKind::Vfs,
            image: image.clone(),
            lowers: lowers.to_vec(),
        };
        super::create_dir(&self.root, &meta, &["rootfs"])?;
        let rootfs = self.rootfs(id);
        let result = (|| {
            for l in lowers {
                apply_layer(l, &rootfs, &mut HashMap::new())?;
                if let Ok(md) = fs::symlink_metadata(l) {
                    copy_meta(l, &md, &rootfs)?;
                }
            }
            super::write_meta(&self.root, &meta)
        })();
        if result.is_err() {
            let _ = super::remove_dir(&self.root, id);
        }
        result.map(|()| meta)
    }

    fn mount(&self, id: &str) -> Result<PathBuf, Error> {
        super::meta_for(&self.root, id, DriverKind::Vfs)?;
        Ok(self.rootfs(id))
    }

    fn unmount(&self, id: &str) -> Result<(), Error> {
        super::check_id(id)
    }

    fn diff(&self, id: &str, out: &mut dyn Write) -> Result<(), Error> {
        let c = super::meta_for(&self.root, id, DriverKind::Vfs)?;
        let view = LowerView { layers: &c.lowers };
        let mut t = TarOut::new(out);
        diff_dir(&view, &self.rootfs(id), Path::new(""), "", &mut t)?;
        t.finish()
    }

    fn remove(&self, id: &str) -> Result<(), Error> {
        super::remove_dir(&self.root, id)
    }

    fn is_mounted(&self, id: &str) -> Result<bool, Error> {
        super::check_id(id)?;
        Ok(super::read_meta(&self.root, id)?.is_some())
    }
}
