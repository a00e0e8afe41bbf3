//! Thin, symlink-safe file system calls relative to a directory fd (the seam between the layer
//! unpacker and the kernel).
//!
//! Every path is walked one component at a time with `openat(O_NOFOLLOW | O_DIRECTORY)`: a
//! single-component name opened with `O_NOFOLLOW` cannot leave its directory, `..` never reaches
//! here (names are normalised and rejected first), and a symlink or non-directory where a parent
//! directory should be is an error (`ELOOP`/`ENOTDIR`), never followed. This is the component-wise
//! equivalent of `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, and it can also create missing
//! parents as it goes, which `openat2` cannot.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub(crate) fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in name"))
}

/// Opens a directory (the layer root) by absolute path.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str().as_bytes())?;
    // SAFETY: c is a valid NUL-terminated string; the returned fd is owned by us.
    let fd = cvt(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fd was just returned by open and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens one directory component below `dir` without following symlinks.
pub fn open_child_dir(dir: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: name is NUL-terminated; dir is a valid fd for the call's duration.
    let fd = cvt(unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fd was just returned by openat.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Walks `components` below `root`, creating missing directories (mode 0755, root-owned) when
/// `create`; returns the fd of the last one.
pub fn walk_dirs(root: &OwnedFd, components: &[&[u8]], create: bool) -> io::Result<OwnedFd> {
    let mut cur = root.try_clone()?;
    for comp in components {
        let name = cstr(comp)?;
        let next = match open_child_dir(cur.as_raw_fd(), &name) {
            Ok(fd) => fd,
            Err(e) if create && e.raw_os_error() == Some(libc::ENOENT) => {
                mkdirat(cur.as_raw_fd(), &name, 0o755)?;
                open_child_dir(cur.as_raw_fd(), &name)?
            }
            Err(e) => return Err(e),
        };
        cur = next;
    }
    Ok(cur)
}

/// `lstat` of `name` in `dir`; `None` when it does not exist.
pub fn lstat_at(dir: RawFd, name: &CStr) -> io::Result<Option<libc::stat>> {
    // SAFETY: zeroed stat is a valid out-parameter; name is NUL-terminated.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(st))
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn mkdirat(dir: RawFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall on valid arguments.
    cvt(unsafe { libc::mkdirat(dir, name.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// Removes `name` from `dir`: a file, symlink or device with `unlinkat`, a directory recursively
/// (each level opened with `O_NOFOLLOW`, so the removal cannot wander outside). Missing is fine.
pub fn remove_all_at(dir: RawFd, name: &CStr) -> io::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if is_dir(&st) {
        let sub = open_child_dir(dir, name)?;
        for child in list_dir(&sub)? {
            remove_all_at(sub.as_raw_fd(), &child)?;
        }
        // SAFETY: plain syscall.
        cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) }).map(drop)
    } else {
        // SAFETY: plain syscall.
        cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), 0) }).map(drop)
    }
}

/// The names in a directory, without `.` and `..`.
pub fn list_dir(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let mut out = Vec::new();
    for e in std::fs::read_dir(path)? {
        out.push(cstr(e?.file_name().as_bytes())?);
    }
    Ok(out)
}

/// Creates a new regular file (`O_EXCL | O_NOFOLLOW`), never opening an existing one.
pub fn create_file(dir: RawFd, name: &CStr) -> io::Result<File> {
    // SAFETY: plain syscall; the fd is wrapped into a File that owns it.
    let fd = cvt(unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    })?;
    // SAFETY: fd was just returned by openat.
    Ok(unsafe { File::from_raw_fd(fd) })
}

pub fn symlinkat(target: &CStr, dir: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) }).map(drop)
}

/// Hard-links `src_dir/src_name` (not following a symlink there) as `dir/name`.
pub fn linkat(src_dir: RawFd, src_name: &CStr, dir: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: plain syscall; flags 0 = do not follow a symlink source.
    cvt(unsafe { libc::linkat(src_dir, src_name.as_ptr(), dir, name.as_ptr(), 0) }).map(drop)
}

pub fn mknodat(dir: RawFd, name: &CStr, mode: u32, dev: libc::dev_t) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::mknodat(dir, name.as_ptr(), mode as libc::mode_t, dev) }).map(drop)
}

/// `lchown` relative to `dir`.
pub fn chown_at(dir: RawFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::fchownat(dir, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
        .map(drop)
}

pub fn fchown(fd: RawFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::fchown(fd, uid, gid) }).map(drop)
}

pub fn fchmod(fd: RawFd, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::fchmod(fd, mode as libc::mode_t) }).map(drop)
}

/// Sets atime and mtime of `dir/name` (not following a symlink) to `mtime` seconds.
pub fn set_mtime_at(dir: RawFd, name: &CStr, mtime: i64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    // SAFETY: times points to two valid timespecs.
    cvt(unsafe {
        libc::utimensat(
            dir,
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn fsetxattr(fd: RawFd, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: value pointer/length describe a valid slice.
    cvt(unsafe { libc::fsetxattr(fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
        .map(drop)
}

/// Reads an xattr of an open file; `None` when it is not set.
pub fn fgetxattr(fd: RawFd, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: buf is a valid writable buffer of the given length.
    let n = unsafe { libc::fgetxattr(fd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
            _ => Err(e),
        };
    }
    buf.truncate(n as usize);
    Ok(Some(buf))
}

/// Lists the xattr names of an open file.
pub fn flistxattr(fd: RawFd) -> io::Result<Vec<CString>> {
    let mut buf = vec![0u8; 65536];
    // SAFETY: buf is a valid writable buffer of the given length.
    let n = unsafe { libc::flistxattr(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOTSUP) {
            Ok(Vec::new())
        } else {
            Err(e)
        };
    }
    buf.truncate(n as usize);
    buf.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(cstr)
        .collect()
}
