//! Named network namespaces: a namespace kept alive by a bind mount of its nsfs file, as
//! `ip netns add` does, so that the exec driver can put the path into the OCI spec and
//! `ip netns exec` works for debugging.
//!
//! The namespace directory is made a shared mount point (again as iproute2 does), so that
//! unmounting a namespace also releases copies of the mount that other mount namespaces hold;
//! otherwise the namespace and its veth would outlive its removal.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::statfs::{NSFS_MAGIC, statfs};

use super::{Error, netlink};

fn ns_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(nix::Error) -> Error + 'a {
    move |e| Error::Netns {
        path: path.to_path_buf(),
        op,
        reason: e.to_string(),
    }
}

/// Creates `dir` and makes it a shared mount point (bind-mounting it onto itself first if it is
/// not a mount point yet).
pub fn prepare_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| Error::Netns {
        path: dir.to_path_buf(),
        op: "creating",
        reason: e.to_string(),
    })?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, dir, None::<&str>, shared, None::<&str>) {
        Ok(()) => Ok(()),
        Err(nix::Error::EINVAL) => {
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(ns_err(dir, "bind-mounting"))?;
            mount(None::<&str>, dir, None::<&str>, shared, None::<&str>)
                .map_err(ns_err(dir, "making shared"))
        }
        Err(e) => Err(ns_err(dir, "making shared")(e)),
    }
}

/// True when `path` is a mounted network namespace.
pub fn is_mounted(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Creates the namespace at `path` with loopback up. An existing namespace there is reused.
pub fn create(path: &Path) -> Result<(), Error> {
    if is_mounted(path) {
        return Ok(());
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o444)
        .open(path)
        .map_err(|e| Error::Netns {
            path: path.to_path_buf(),
            op: "creating",
            reason: e.to_string(),
        })?;
    let target: PathBuf = path.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("agent-netns".into())
        .spawn(move || -> Result<(), Error> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(ns_err(&target, "unsharing"))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(ns_err(&target, "bind-mounting"))
        })
        .map_err(|e| Error::Netns {
            path: path.to_path_buf(),
            op: "starting thread for",
            reason: e.to_string(),
        })?;
    let created = thread.join().map_err(|_| Error::Netns {
        path: path.to_path_buf(),
        op: "creating",
        reason: "thread panicked".into(),
    })?;
    if let Err(e) = created {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    if let Err(e) = netlink::run_in(
        Some(path),
        |h| async move { netlink::loopback_up(&h).await },
    ) {
        let _ = delete(path);
        return Err(e);
    }
    Ok(())
}

/// Unmounts and removes the namespace at `path`; a missing one is success.
pub fn delete(path: &Path) -> Result<(), Error> {
    if is_mounted(path) {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(ns_err(path, "unmounting")(e)),
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Netns {
            path: path.to_path_buf(),
            op: "removing",
            reason: e.to_string(),
        }),
    }
}
