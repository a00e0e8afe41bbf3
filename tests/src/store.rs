//! Helpers for the store's end-to-end tests: child processes made by re-running the current test
//! binary in a "role" (selected by an environment variable), line-based signalling over their
//! stdout, and databases left as an older release would have left them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use agent::store::{self, schema};

/// Environment variable naming the role a re-run test binary plays.
pub const ROLE_ENV: &str = "AGENT_E2E_STORE_ROLE";
/// Environment variable naming the state directory of a child.
pub const DIR_ENV: &str = "AGENT_E2E_STORE_DIR";

/// The role this process was started in, if it is a child.
pub fn role() -> Option<(String, PathBuf)> {
    let role = std::env::var(ROLE_ENV).ok()?;
    let dir = std::env::var_os(DIR_ENV)?;
    Some((role, PathBuf::from(dir)))
}

/// A child process: this test binary re-run with only `test` selected, in `role`, on `dir`.
pub struct ChildProc {
    pub child: Child,
    lines: Receiver<String>,
}

impl ChildProc {
    /// Starts the child; its stdout lines arrive through [`ChildProc::wait_line`].
    pub fn spawn(test: &str, role: &str, dir: &Path) -> std::io::Result<ChildProc> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .env(DIR_ENV, dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("child has no stdout"))?;
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(ChildProc { child, lines: rx })
    }

    /// The pid of the child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for a line containing `marker`; returns what follows the marker
    /// (earlier lines are passed to `seen`). `None` on timeout or when the child closed its
    /// stdout. (The test harness writes `test NAME ... ` before the test's own first line.)
    pub fn wait_line(
        &self,
        marker: &str,
        timeout: Duration,
        mut seen: impl FnMut(&str),
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => match after(&line, marker) {
                    Some(rest) => return Some(rest.to_string()),
                    None => seen(&line),
                },
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Every line the child wrote until it closed its stdout (after it died).
    pub fn drain(&self) -> Vec<String> {
        self.lines.iter().collect()
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What follows `marker` in `line`, if it contains it.
pub fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

/// A fresh private state directory under `parent`.
pub fn state_dir(parent: &Path) -> PathBuf {
    parent.join("state")
}

/// Creates `dir/state.db` at schema version `version`, as the release that shipped that
/// version would have, and returns a raw connection to it (no lock, no agent code above the
/// migrations).
pub fn create_db_at_version(
    dir: &Path,
    version: u32,
) -> Result<rusqlite::Connection, store::Error> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
        .map_err(|source| store::Error::Io {
            op: "create directory",
            path: dir.to_path_buf(),
            source,
        })?;
    let path = dir.join(store::DB_FILE);
    let mut conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    schema::migrate_to(&mut conn, &path, version)?;
    Ok(conn)
}

/// A raw connection to `dir/state.db` (for checks independent of the store's code).
pub fn raw(dir: &Path) -> rusqlite::Result<rusqlite::Connection> {
    rusqlite::Connection::open(dir.join(store::DB_FILE))
}

/// Names of the indexes of `table`.
pub fn indexes(conn: &rusqlite::Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 ORDER BY name",
    )?;
    let rows = stmt.query_map([table], |r| r.get(0))?;
    rows.collect()
}

/// Names of the columns of `table`.
pub fn columns(conn: &rusqlite::Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let rows = stmt.query_map([table], |r| r.get(0))?;
    rows.collect()
}

/// A small xorshift generator seeded from the clock and pid (no `rand` dependency for tests).
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng(t ^ (u64::from(std::process::id()) << 32) | 1)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

impl Default for Rng {
    fn default() -> Self {
        Rng::new()
    }
}
