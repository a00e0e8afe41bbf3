//! Hostile-input-safe layer unpacking: one layer tar into one empty directory.
//!
//! Guarantees, whatever the tar contains:
//! - nothing is created, changed or removed outside `dest`: names with `..` or a leading `/` are
//!   rejected, every parent directory is walked with `O_NOFOLLOW` (see [`fsops`]) so a symlink
//!   planted by an earlier entry is never followed, hard links may only point at non-directories
//!   already unpacked in this layer, files are always created fresh (`O_EXCL`), never opened;
//! - character and block device nodes are skipped (counted in [`Stats::devices_skipped`], the
//!   first names kept for a warning) unless [`Options::allow_devices`]: root filesystem
//!   tarballs from debootstrap/mmdebstrap carry `./dev/console`, `./dev/null`..., which the
//!   runtime's own `/dev` hides anyway, while a device node anywhere else would give a container
//!   the host's device wherever no device cgroup guards it (cgroup v2 here); a hard link to a
//!   skipped device is skipped too;
//! - extension headers are size-limited and a PAX `size` disagreeing with the header is refused;
//! - OCI whiteouts become overlay whiteouts: `.wh.<name>` a character device 0:0, `.wh..wh..opq`
//!   the `trusted.overlay.opaque=y` xattr on its directory; `trusted.overlay.*` xattrs in the tar
//!   itself are refused (they would change what lower layers show);
//! - owners, modes (incl. setuid/sticky), mtimes, xattrs and hard links inside the layer are kept;
//! - with [`Options::min_free`] and [`Options::min_free_inodes`], the unpack stops (a storage
//!   error, ENOSPC) before the file system under `dest` has less than that free: a tar bomb
//!   cannot take a host's last blocks or inodes.
//!
//! The first unsafe entry aborts the unpack with [`Error::UnsafeEntry`]; the caller removes the
//! half-written directory (it is a temporary directory until the layer is committed).

pub mod fsops;
pub mod headers;

use std::ffi::CString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use tar::EntryType;

use super::Error;
use headers::{MAX_LONG_NAME, MAX_PAX, Pending};

/// What the unpacker may create.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Create character and block device nodes from the tar (off: such entries are refused).
    pub allow_devices: bool,
    /// Stop with [`Error::Storage`] (ENOSPC) once the file system under `dest` has fewer free
    /// bytes than this (checked every quarter of it written, at most every
    /// [`FLOOR_CHECK_EVERY`] bytes); 0: no floor. A layer that unpacks to far more than its
    /// compressed size (a tar bomb) then leaves the host this much room instead of filling its
    /// disk to the last block while it is written.
    pub min_free: u64,
    /// The same for free inodes (checked every quarter of it in entries): a layer of millions
    /// of empty files is a bomb too. 0, or a file system without an inode count: no floor.
    pub min_free_inodes: u64,
}

/// At most how many bytes of file data (entries count as 512 each) are written between two
/// checks of [`Options::min_free`].
pub const FLOOR_CHECK_EVERY: u64 = 8 << 20;

/// The free-space floor of one unpack.
struct Floor {
    min_free: u64,
    min_inodes: u64,
    bytes: u64,
    entries: u64,
}

impl Floor {
    /// Counts `bytes` and `entries` written under the directory `fd`; past a quarter of a
    /// floor (at most [`FLOOR_CHECK_EVERY`] bytes), checks the free space there.
    fn wrote(&mut self, fd: &OwnedFd, bytes: u64, entries: u64) -> Result<(), Error> {
        self.bytes += bytes;
        self.entries += entries;
        let bytes_due = self.min_free > 0
            && self.bytes >= (self.min_free / 4).clamp(64 << 10, FLOOR_CHECK_EVERY);
        let entries_due =
            self.min_inodes > 0 && self.entries >= (self.min_inodes / 4).clamp(1, 4096);
        if !bytes_due && !entries_due {
            return Ok(());
        }
        self.bytes = 0;
        self.entries = 0;
        let st = match nix::sys::statvfs::fstatvfs(fd) {
            Ok(st) => st,
            Err(e) => return Err(Error::storage("checking free space", "", e.into())),
        };
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
        let (free, files, inodes) = (
            (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64),
            st.files() as u64,
            st.files_available() as u64,
        );
        let stop = |what: String| Error::Storage {
            op: format!("stopped with {what} while unpacking"),
            dir: std::path::PathBuf::new(),
            needed: None,
            available: Some(free),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        if self.min_free > 0 && free < self.min_free {
            return Err(stop(format!(
                "{free} bytes free, below the {} bytes the agent keeps free",
                self.min_free
            )));
        }
        if self.min_inodes > 0 && files > 0 && inodes < self.min_inodes {
            return Err(stop(format!(
                "{inodes} inodes free, below the {} inodes the agent keeps free",
                self.min_inodes
            )));
        }
        Ok(())
    }
}

/// The floor [`Options::min_free`] (or [`Options::min_free_inodes`]) the graph driver uses on
/// a file system of `total` bytes (or inodes): 2% of it, at most 1 GiB (or 1 Mi inodes).
pub fn default_min_free(total: u64) -> u64 {
    (total / 50).min(1 << 30)
}

/// See [`default_min_free`].
pub fn default_min_free_inodes(total: u64) -> u64 {
    (total / 50).min(1 << 20)
}

/// Counts of what a layer held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    /// Sum of regular file sizes.
    pub bytes: u64,
    /// Device nodes (and hard links to them) not created (see the module docs).
    pub devices_skipped: u64,
    /// The first [`MAX_SKIPPED_NAMES`] of them, for the warning.
    pub skipped_names: Vec<String>,
}

/// How many skipped device names [`Stats::skipped_names`] keeps.
pub const MAX_SKIPPED_NAMES: usize = 5;

/// Device entries skipped so far (names as split components joined with `/`).
#[derive(Default)]
struct Skipped(std::collections::HashSet<Vec<u8>>);

/// Compression of a layer stream, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Wraps `reader` in the decompressor its magic bytes call for.
pub fn decompress<'a>(reader: impl Read + 'a) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    let head = buf.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((
            Compression::Gzip,
            Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        ))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok((
            Compression::Zstd,
            Box::new(zstd::stream::read::Decoder::with_buffer(buf)?),
        ))
    } else {
        Ok((Compression::None, Box::new(buf)))
    }
}

fn unsafe_entry(entry: &[u8], reason: impl Into<String>) -> Error {
    Error::UnsafeEntry {
        entry: String::from_utf8_lossy(entry).into_owned(),
        reason: reason.into(),
    }
}

/// Classifies a failed file system call for entry `name`: the state directory's disk filling up
/// or failing is [`Error::Storage`] (not the layer's fault); a symlink or non-directory where a
/// parent should be, and everything else the entry asked for and could not get, is
/// [`Error::UnsafeEntry`].
fn entry_io_error(name: &[u8], what: &str, e: io::Error) -> Error {
    let entry = String::from_utf8_lossy(name).into_owned();
    if super::is_storage_errno(&e) {
        return Error::storage(format!("{what} for layer entry {entry:?}"), "", e);
    }
    if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) {
        return Error::UnsafeEntry {
            entry,
            reason: format!("{what}: a parent is a symlink or not a directory"),
        };
    }
    Error::UnsafeEntry {
        entry,
        reason: format!("{what}: {e}"),
    }
}

fn tar_err(e: io::Error) -> Error {
    if super::is_storage_errno(&e) {
        return Error::storage("reading the layer", "", e);
    }
    Error::Tar(e.to_string())
}

/// Splits an entry name into checked components: no `..`, not absolute, no empty result except
/// the root itself (`.` or `./`, returned as no components).
pub fn split_name(name: &[u8]) -> Result<Vec<&[u8]>, Error> {
    if name.first() == Some(&b'/') {
        return Err(unsafe_entry(name, "absolute path"));
    }
    if name.len() > 4096 {
        return Err(unsafe_entry(
            &name[..64],
            format!("name of {} bytes (limit 4096)", name.len()),
        ));
    }
    let mut out = Vec::new();
    for comp in name.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return Err(unsafe_entry(name, "'..' path component")),
            c if c.len() > 255 => {
                return Err(unsafe_entry(name, "path component longer than 255 bytes"));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Unpacks the (already decompressed) layer tar `reader` into the existing empty directory `dest`.
///
/// Failures of the file system under `dest` (full, read-only, I/O errors) are
/// [`Error::Storage`] naming `dest`; what the tar itself asks for and may not have is
/// [`Error::UnsafeEntry`].
pub fn unpack_layer(reader: impl Read, dest: &Path, opts: Options) -> Result<Stats, Error> {
    unpack_inner(reader, dest, opts).map_err(|e| match e {
        Error::Storage {
            op,
            dir,
            needed,
            available,
            source,
        } if dir.as_os_str().is_empty() => Error::Storage {
            op,
            dir: dest.to_path_buf(),
            needed,
            available,
            source,
        },
        other => other,
    })
}

fn unpack_inner(reader: impl Read, dest: &Path, opts: Options) -> Result<Stats, Error> {
    let root = fsops::open_dir(dest).map_err(Error::io("open layer directory", dest))?;
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(tar_err)?.raw(true);
    let mut pending = Pending::default();
    let mut stats = Stats::default();
    let mut skipped = Skipped::default();
    let mut floor = Floor {
        min_free: opts.min_free,
        min_inodes: opts.min_free_inodes,
        bytes: 0,
        entries: 0,
    };
    for entry in entries {
        let mut entry = entry.map_err(tar_err)?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        let size = entry.size();
        match kind {
            EntryType::GNULongName => {
                let body = headers::read_limited(&mut entry, size, MAX_LONG_NAME, "GNU long name")?;
                pending.long_name = Some(headers::gnu_name(body));
                continue;
            }
            EntryType::GNULongLink => {
                let body = headers::read_limited(&mut entry, size, MAX_LONG_NAME, "GNU long link")?;
                pending.long_link = Some(headers::gnu_name(body));
                continue;
            }
            EntryType::XHeader => {
                let body = headers::read_limited(&mut entry, size, MAX_PAX, "PAX")?;
                pending.pax.extend(headers::parse_pax(&body)?);
                continue;
            }
            EntryType::XGlobalHeader => {
                headers::read_limited(&mut entry, size, MAX_PAX, "PAX global")?;
                continue;
            }
            _ => {}
        }
        let ext = std::mem::take(&mut pending);
        let name: Vec<u8> = match (&ext.long_name, ext.pax_value("path")) {
            (_, Some(p)) => p.to_vec(),
            (Some(n), None) => n.clone(),
            (None, None) => header.path_bytes().into_owned(),
        };
        let link: Option<Vec<u8>> = match (&ext.long_link, ext.pax_value("linkpath")) {
            (_, Some(p)) => Some(p.to_vec()),
            (Some(n), None) => Some(n.clone()),
            (None, None) => header.link_name_bytes().map(|c| c.into_owned()),
        };
        let shown = String::from_utf8_lossy(&name).into_owned();
        if let Some(pax_size) = ext.pax_u64("size", &shown)?
            && pax_size != size
        {
            return Err(unsafe_entry(
                &name,
                format!("PAX size {pax_size} disagrees with header size {size}"),
            ));
        }
        let meta = Meta::from_header(&header, &ext, &name)?;
        stats.entries += 1;
        if kind.is_file() || kind == EntryType::Continuous {
            stats.bytes += size;
        }
        let comps = split_name(&name)?;
        if skip_device(kind, link.as_deref(), &comps, opts, &mut skipped) {
            stats.devices_skipped += 1;
            if stats.skipped_names.len() < MAX_SKIPPED_NAMES {
                stats.skipped_names.push(shown);
            }
            continue;
        }
        floor.wrote(&root, 512, 1)?;
        apply_entry(
            &root,
            &comps,
            &name,
            kind,
            link.as_deref(),
            &meta,
            &mut entry,
            &mut floor,
        )?;
    }
    if !pending.is_empty() {
        return Err(Error::Tar(
            "extension header at the end of the archive describes no entry".into(),
        ));
    }
    Ok(stats)
}

/// Whether the entry is a device node not to create (or a hard link to one skipped earlier);
/// records skipped devices in `skipped`. Traversal in the name was refused before.
fn skip_device(
    kind: EntryType,
    link: Option<&[u8]>,
    comps: &[&[u8]],
    opts: Options,
    skipped: &mut Skipped,
) -> bool {
    match kind {
        EntryType::Char | EntryType::Block if !opts.allow_devices => {
            skipped.0.insert(comps.join(&b'/'));
            true
        }
        EntryType::Link => link
            .and_then(|t| split_name(t).ok())
            .is_some_and(|t| skipped.0.contains(&t.join(&b'/'))),
        _ => false,
    }
}

/// Owner, mode, mtime and xattrs of one entry.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    dev: (u32, u32),
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Meta {
    fn from_header(h: &tar::Header, ext: &Pending, name: &[u8]) -> Result<Self, Error> {
        let shown = String::from_utf8_lossy(name).into_owned();
        let id = |v: u64, what: &str| {
            u32::try_from(v)
                .map_err(|_| unsafe_entry(name, format!("{what} {v} does not fit 32 bits")))
        };
        let uid = ext
            .pax_u64("uid", &shown)?
            .map_or_else(|| numeric(h.uid(), &h.as_old().uid), Ok)?;
        let gid = ext
            .pax_u64("gid", &shown)?
            .map_or_else(|| numeric(h.gid(), &h.as_old().gid), Ok)?;
        let mtime = ext
            .pax_u64("mtime", &shown)?
            .map_or_else(|| numeric(h.mtime(), &h.as_old().mtime), Ok)?;
        let mut xattrs = Vec::new();
        for (k, v) in &ext.pax {
            if let Some(x) = k.strip_prefix("SCHILY.xattr.") {
                if x.starts_with("trusted.overlay.") {
                    return Err(unsafe_entry(name, format!("overlay xattr {x} in the tar")));
                }
                let c = fsops::cstr(x.as_bytes())
                    .map_err(|_| unsafe_entry(name, "xattr name with NUL"))?;
                xattrs.push((c, v.clone()));
            }
        }
        let major = h.device_major().ok().flatten().unwrap_or(0);
        let minor = h.device_minor().ok().flatten().unwrap_or(0);
        Ok(Meta {
            uid: id(uid, "uid")?,
            gid: id(gid, "gid")?,
            mode: h.mode().map_err(tar_err)? & 0o7777,
            mtime: i64::try_from(mtime).unwrap_or(0),
            dev: (major, minor),
            xattrs,
        })
    }
}

/// A numeric header field; an empty one (all NUL or spaces, as some writers leave it) is 0.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> Result<u64, Error> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        Err(e) => Err(tar_err(e)),
    }
}

#[allow(clippy::too_many_arguments)]
fn apply_entry(
    root: &OwnedFd,
    comps: &[&[u8]],
    name: &[u8],
    kind: EntryType,
    link: Option<&[u8]>,
    meta: &Meta,
    data: &mut impl Read,
    floor: &mut Floor,
) -> Result<(), Error> {
    let Some((last, parents)) = comps.split_last() else {
        // The layer root itself: only a directory may describe it.
        if kind != EntryType::Directory {
            return Err(unsafe_entry(
                name,
                "a non-directory entry for the layer root",
            ));
        }
        return set_fd_meta(root, meta, name);
    };
    let io_err = |what: &str| {
        let what = what.to_string();
        move |e: io::Error| entry_io_error(name, &what, e)
    };
    let parent =
        fsops::walk_dirs(root, parents, true).map_err(io_err("creating parent directories"))?;
    let pfd = parent.as_raw_fd();

    // Whiteouts.
    if let Some(rest) = last.strip_prefix(b".wh.") {
        if rest == b".wh..opq" {
            let c = fsops::cstr(b"trusted.overlay.opaque").map_err(io_err("opaque"))?;
            return fsops::fsetxattr(pfd, &c, b"y").map_err(io_err("marking directory opaque"));
        }
        if rest.starts_with(b".wh.") {
            return Ok(()); // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless here
        }
        if rest.is_empty() || rest == b"." || rest == b".." {
            return Err(unsafe_entry(name, "whiteout of an invalid name"));
        }
        let target = fsops::cstr(rest).map_err(io_err("whiteout"))?;
        fsops::remove_all_at(pfd, &target).map_err(io_err("replacing existing entry"))?;
        return fsops::mknodat(pfd, &target, libc::S_IFCHR, 0).map_err(io_err("creating whiteout"));
    }

    let cname = fsops::cstr(last).map_err(io_err("name"))?;
    let existing = fsops::lstat_at(pfd, &cname).map_err(io_err("stat"))?;
    match existing {
        Some(st) if fsops::is_dir(&st) && kind == EntryType::Directory => {}
        Some(_) => fsops::remove_all_at(pfd, &cname).map_err(io_err("replacing existing entry"))?,
        None => {}
    }

    match kind {
        EntryType::Directory => {
            if existing.is_none_or(|st| !fsops::is_dir(&st)) {
                fsops::mkdirat(pfd, &cname, 0o700).map_err(io_err("mkdir"))?;
            }
            let dir = fsops::open_child_dir(pfd, &cname).map_err(io_err("open directory"))?;
            set_fd_meta(&dir, meta, name)?;
        }
        EntryType::Regular | EntryType::Continuous => {
            let mut f = fsops::create_file(pfd, &cname).map_err(io_err("create file"))?;
            let mut buf = [0u8; 64 * 1024];
            loop {
                let n = match data.read(&mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => r.map_err(io_err("write file"))?,
                };
                if n == 0 {
                    break;
                }
                f.write_all(&buf[..n]).map_err(io_err("write file"))?;
                floor.wrote(root, n as u64, 0)?;
            }
            set_fd_meta(&f, meta, name)?;
        }
        EntryType::Symlink => {
            let target = link.ok_or_else(|| unsafe_entry(name, "symlink without target"))?;
            if target.is_empty() {
                return Err(unsafe_entry(name, "symlink with an empty target"));
            }
            let t = fsops::cstr(target).map_err(io_err("symlink target"))?;
            fsops::symlinkat(&t, pfd, &cname).map_err(io_err("symlink"))?;
            fsops::chown_at(pfd, &cname, meta.uid, meta.gid).map_err(io_err("chown"))?;
            fsops::set_mtime_at(pfd, &cname, meta.mtime).map_err(io_err("set mtime"))?;
        }
        EntryType::Link => {
            let target = link.ok_or_else(|| unsafe_entry(name, "hard link without target"))?;
            let tcomps = split_name(target).map_err(|_| {
                unsafe_entry(
                    name,
                    format!(
                        "hard link to {:?} outside the layer",
                        String::from_utf8_lossy(target)
                    ),
                )
            })?;
            let Some((tlast, tparents)) = tcomps.split_last() else {
                return Err(unsafe_entry(name, "hard link to the layer root"));
            };
            let tdir =
                fsops::walk_dirs(root, tparents, false).map_err(io_err("hard link target"))?;
            let tname = fsops::cstr(tlast).map_err(io_err("hard link target"))?;
            match fsops::lstat_at(tdir.as_raw_fd(), &tname).map_err(io_err("hard link target"))? {
                None => return Err(unsafe_entry(name, "hard link to a file not in this layer")),
                Some(st) if fsops::is_dir(&st) => {
                    return Err(unsafe_entry(name, "hard link to a directory"));
                }
                Some(_) => {}
            }
            fsops::linkat(tdir.as_raw_fd(), &tname, pfd, &cname).map_err(io_err("hard link"))?;
        }
        EntryType::Fifo => {
            fsops::mknodat(pfd, &cname, libc::S_IFIFO | 0o600, 0).map_err(io_err("mkfifo"))?;
            set_path_meta(pfd, &cname, meta, name)?;
        }
        EntryType::Char | EntryType::Block => {
            // Only reached with `Options::allow_devices` (see `skip_device`).
            let t = if kind == EntryType::Char {
                libc::S_IFCHR
            } else {
                libc::S_IFBLK
            };
            let dev = libc::makedev(meta.dev.0, meta.dev.1);
            fsops::mknodat(pfd, &cname, t | 0o600, dev).map_err(io_err("mknod"))?;
            set_path_meta(pfd, &cname, meta, name)?;
        }
        other => {
            return Err(unsafe_entry(
                name,
                format!("unsupported tar entry type {:?}", other.as_byte() as char),
            ));
        }
    }
    Ok(())
}

/// chown, then chmod (chown clears setuid bits), then xattrs (security.capability after chown),
/// then times, on an open fd.
fn set_fd_meta(fd: &impl AsRawFd, meta: &Meta, name: &[u8]) -> Result<(), Error> {
    let raw = fd.as_raw_fd();
    let e = |what: &'static str| move |err: io::Error| entry_io_error(name, what, err);
    fsops::fchown(raw, meta.uid, meta.gid).map_err(e("chown"))?;
    fsops::fchmod(raw, meta.mode).map_err(e("chmod"))?;
    for (k, v) in &meta.xattrs {
        fsops::fsetxattr(raw, k, v).map_err(e("set xattr"))?;
    }
    let ts = libc::timespec {
        tv_sec: meta.mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    // SAFETY: times points to two valid timespecs; raw is a valid fd.
    if unsafe { libc::futimens(raw, times.as_ptr()) } < 0 {
        return Err(e("set mtime")(io::Error::last_os_error()));
    }
    Ok(())
}

/// The same for entries that cannot be opened (fifos, devices): via their parent.
fn set_path_meta(pfd: i32, cname: &std::ffi::CStr, meta: &Meta, name: &[u8]) -> Result<(), Error> {
    let e = |what: &'static str| move |err: io::Error| entry_io_error(name, what, err);
    fsops::chown_at(pfd, cname, meta.uid, meta.gid).map_err(e("chown"))?;
    // SAFETY: plain syscall; fchmodat does not follow symlinks for non-symlinks.
    if unsafe { libc::fchmodat(pfd, cname.as_ptr(), meta.mode as libc::mode_t, 0) } < 0 {
        return Err(e("chmod")(io::Error::last_os_error()));
    }
    fsops::set_mtime_at(pfd, cname, meta.mtime).map_err(e("set mtime"))
}

#[cfg(test)]
mod tests;
