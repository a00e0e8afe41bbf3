//! A container's recorded state: `<state>/exec/<id>/state.json`, format version 1.
//!
//! Writers: the driver writes `created`; from then on only the container's monitor writes
//! (`running` with the pids, then `exited` with code, signal, OOM kill and times), so there is a
//! single writer at any time. The one exception: when the monitor is gone (killed from outside)
//! the driver's stop records the exit itself, holding the monitor's lock ([`super::orphan`]). Every write is atomic (temporary file, fsync, rename, fsync of the
//! directory), so a power cut leaves the old or the new state, never a torn one.
//!
//! A file with a newer version is refused (an older agent must not half-understand it); version
//! 1 is the first, so there is nothing older to convert.
//!
//! The exit record must not be lost to a full disk (the monitor is the only one who knows the
//! exit code): the monitor keeps [`RESERVE_FILE`] (16 KiB) in the container's directory while the
//! container runs, and [`ContainerState::save_until_done`] deletes it to make room when the write
//! fails, then keeps retrying (with a growing pause, up to 5 s) until the record is saved or the
//! container's directory is gone.
//!
//! Process identity: a pid alone can be reused after a reboot or wrap-around, so the start time
//! of the process (`/proc/<pid>/stat` field 22, clock ticks since boot) is recorded next to it
//! and compared before the pid is trusted or signalled.

use std::path::{Path, PathBuf};

use super::Error;
use super::bundle::write_atomic;

/// Version of `state.json`.
pub const STATE_VERSION: u32 = 1;

/// Where the container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Bundle written, not started.
    Created,
    /// The monitor started it.
    Running,
    /// It ran and ended (see the exit fields).
    Exited,
    /// Starting failed (see `error`).
    Failed,
}

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerState {
    pub version: u32,
    pub id: String,
    pub name: String,
    pub status: Status,
    #[serde(default)]
    pub monitor_pid: Option<i32>,
    #[serde(default)]
    pub monitor_start: Option<u64>,
    /// The container's init process (host pid).
    #[serde(default)]
    pub pid: Option<i32>,
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// RFC 3339.
    pub created_at: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Exit code as a shell reports it: the code, or 128 + the signal number.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    #[serde(default)]
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed a process of the container.
    #[serde(default)]
    pub oom_killed: bool,
    /// Why starting failed.
    #[serde(default)]
    pub error: Option<String>,
    /// The bundle's `linux.cgroupsPath`, recorded at create so that status checks need not
    /// parse `config.json` (absent in records of older agents: read it from there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroups_path: Option<String>,
    /// How the exit was learnt when not by the monitor (the driver stopped a container whose
    /// monitor was gone: see [`super::orphan`]); absent in the monitor's own records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_note: Option<String>,
}

/// The exit code recorded when the real one cannot be known (as Docker's 255).
pub const LOST_EXIT_CODE: i32 = 255;

impl ContainerState {
    pub fn new(id: &str, name: &str) -> Self {
        ContainerState {
            version: STATE_VERSION,
            id: id.into(),
            name: name.into(),
            status: Status::Created,
            monitor_pid: None,
            monitor_start: None,
            pid: None,
            pid_start: None,
            created_at: super::time::format(std::time::SystemTime::now()),
            started_at: None,
            finished_at: None,
            exit_code: None,
            signal: None,
            oom_killed: false,
            error: None,
            cgroups_path: None,
            exit_note: None,
        }
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    /// Reads `<dir>/state.json`; `None` when there is none.
    pub fn load(dir: &Path) -> Result<Option<ContainerState>, Error> {
        let path = Self::path(dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        let s: ContainerState = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        if s.version > STATE_VERSION {
            return Err(Error::StateVersion {
                path,
                found: s.version,
                supported: STATE_VERSION,
            });
        }
        Ok(Some(s))
    }

    /// Writes `<dir>/state.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        let path = Self::path(dir);
        let json = serde_json::to_vec_pretty(self).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &json)
    }
}

/// Space set aside for the exit record (see the module docs).
pub const RESERVE_FILE: &str = "state.reserve";

/// Size of [`RESERVE_FILE`]: a few pages, several times the size of a record.
const RESERVE_SIZE: usize = 16 * 1024;

/// Writes [`RESERVE_FILE`] into `dir`. Best effort: on a disk already full it holds what fitted.
pub fn reserve_space(dir: &Path) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::File::create(dir.join(RESERVE_FILE)) {
        let _ = f.write_all(&[0u8; RESERVE_SIZE]);
        let _ = f.sync_all();
    }
}

/// Longest pause between two attempts of [`ContainerState::save_until_done`].
const MAX_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

impl ContainerState {
    /// [`ContainerState::save`] that does not give up: on failure it frees [`RESERVE_FILE`] and
    /// tries again at once, then every 0.1 s, 0.2 s, ... up to every 5 s, until the write succeeds
    /// (then the reserve, if still there, is removed) or `dir` no longer exists (the container
    /// was deleted: that error is returned). `on_error` sees each failure and its attempt number
    /// (from 1).
    pub fn save_until_done(
        &self,
        dir: &Path,
        mut on_error: impl FnMut(&Error, u32),
    ) -> Result<(), Error> {
        let mut pause = std::time::Duration::from_millis(100);
        let mut attempt = 0u32;
        loop {
            let err = match self.save(dir) {
                Ok(()) => {
                    let _ = std::fs::remove_file(dir.join(RESERVE_FILE));
                    return Ok(());
                }
                Err(e) => e,
            };
            attempt = attempt.saturating_add(1);
            on_error(&err, attempt);
            if !dir.is_dir() {
                return Err(err);
            }
            match std::fs::remove_file(dir.join(RESERVE_FILE)) {
                Ok(()) => continue,
                Err(_) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
            }
        }
    }
}

/// Start time of `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22), `None` if the
/// process does not exist.
pub fn process_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is alive and is the process that started at `start` (zombies count as gone).
pub fn is_same_process(pid: i32, start: Option<u64>) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let mut fields = stat[close + 1..].split_whitespace();
    if fields.next() == Some("Z") {
        return false;
    }
    match start {
        Some(s) => process_start(pid) == Some(s),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_and_version_guard() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ContainerState::load(d.path()).ok(), Some(None));
        let mut s = ContainerState::new("c1", "web");
        s.status = Status::Exited;
        s.exit_code = Some(137);
        s.signal = Some(9);
        s.oom_killed = true;
        s.save(d.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ContainerState::load(d.path()).ok().flatten(),
            Some(s.clone())
        );
        // no temporary files left behind
        let names: Vec<_> = std::fs::read_dir(d.path())
            .map(|r| r.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        s.version = STATE_VERSION + 1;
        s.save(d.path()).unwrap_or_else(|e| panic!("{e}"));
        let e = ContainerState::load(d.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("version 2"), "{e}");
    }

    #[test]
    fn save_until_done_removes_the_reserve_and_gives_up_only_without_a_directory() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        reserve_space(d.path());
        assert!(d.path().join(RESERVE_FILE).is_file());
        let s = ContainerState::new("c1", "web");
        let mut failures = 0;
        s.save_until_done(d.path(), |_, _| failures += 1)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(failures, 0);
        assert!(!d.path().join(RESERVE_FILE).exists());
        assert!(ContainerState::load(d.path()).ok().flatten().is_some());
        // The container's directory is gone: one failure, then the error.
        let gone = d.path().join("gone");
        let e = s
            .save_until_done(&gone, |_, n| failures = n)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(failures, 1);
        assert!(e.contains("gone"), "{e}");
    }

    #[test]
    fn save_until_done_frees_the_reserve_then_retries_until_it_can_write() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        reserve_space(d.path());
        // The temporary file's name taken by a directory: every write fails (EISDIR).
        let blocker = d
            .path()
            .join(format!(".state.json.tmp-{}", std::process::id()));
        std::fs::create_dir(&blocker).unwrap_or_else(|e| panic!("{e}"));
        let mut s = ContainerState::new("c1", "web");
        s.status = Status::Exited;
        s.exit_code = Some(7);
        let mut attempts = 0;
        s.save_until_done(d.path(), |_, n| {
            attempts = n;
            // The first failure frees the reserve (no help here); the third clears the way.
            if n == 1 {
                assert!(d.path().join(RESERVE_FILE).exists());
            }
            if n == 2 {
                assert!(!d.path().join(RESERVE_FILE).exists());
            }
            if n == 3 {
                let _ = std::fs::remove_dir(&blocker);
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(attempts, 3);
        assert_eq!(
            ContainerState::load(d.path())
                .ok()
                .flatten()
                .and_then(|s| s.exit_code),
            Some(7)
        );
    }

    #[test]
    fn process_identity() {
        let me = std::process::id() as i32;
        let start = process_start(me);
        assert!(start.is_some());
        assert!(is_same_process(me, start));
        assert!(!is_same_process(me, start.map(|s| s + 1)));
        assert!(!is_same_process(i32::MAX, None));
    }
}
