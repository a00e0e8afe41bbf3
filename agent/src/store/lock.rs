//! The state-directory lock: an exclusive, non-blocking `flock` on `<state>/lock`.
//!
//! `flock` is released by the kernel when the holder dies (even by SIGKILL), so a stale lock file
//! never blocks a restart. The holder writes its pid into the file so that the next opener can
//! say who holds it; the pid is informative only (it may be missing if the holder died between
//! locking and writing it).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::{Error, LOCK_FILE, Result};

/// Holds the exclusive lock on a state directory until dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock of state directory `dir` or fails with [`Error::Locked`] at once.
    pub fn acquire(dir: &Path) -> Result<StateLock> {
        let path = dir.join(LOCK_FILE);
        let io = |op| {
            let path = path.clone();
            move |source| Error::Io { op, path, source }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io("open"))?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                    pid: read_pid(&mut file),
                });
            }
            Err((_, errno)) => return Err(io("flock")(std::io::Error::from(errno))),
        };
        file.set_len(0).map_err(io("truncate"))?;
        file.seek(SeekFrom::Start(0)).map_err(io("seek"))?;
        writeln!(file, "{}", std::process::id()).map_err(io("write"))?;
        Ok(StateLock { _file: file, path })
    }

    /// Whether some process holds the lock of state directory `dir` now (an agent, or a CLI
    /// command reading the store). Creates nothing and takes nothing: a missing or unreadable
    /// lock file counts as not held.
    pub fn is_held(dir: &Path) -> bool {
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(dir.join(LOCK_FILE))
        else {
            return false;
        };
        matches!(
            Flock::lock(file, FlockArg::LockSharedNonblock),
            Err((_, Errno::EWOULDBLOCK))
        )
    }

    /// Path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_pid(file: &mut File) -> Option<i32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_held_sees_the_holder_and_creates_nothing() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|source| Error::Io {
            op: "tempdir",
            path: PathBuf::new(),
            source,
        })?;
        assert!(!StateLock::is_held(dir.path()));
        assert!(!dir.path().join(LOCK_FILE).exists());
        let lock = StateLock::acquire(dir.path())?;
        assert!(StateLock::is_held(dir.path()));
        drop(lock);
        assert!(!StateLock::is_held(dir.path()));
        Ok(())
    }

    #[test]
    fn second_lock_in_the_same_process_is_refused_and_names_the_pid() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|source| Error::Io {
            op: "tempdir",
            path: PathBuf::new(),
            source,
        })?;
        let held = StateLock::acquire(dir.path())?;
        match StateLock::acquire(dir.path()) {
            Err(Error::Locked { dir: d, pid }) => {
                assert_eq!(d, dir.path());
                assert_eq!(pid, Some(std::process::id() as i32));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(held);
        let again = StateLock::acquire(dir.path())?;
        assert_eq!(again.path(), dir.path().join(LOCK_FILE));
        Ok(())
    }
}
