//! Knobs and randomness shared by the torture tests (`tests/tests/torture_*.rs`): sizes and
//! durations from `TORTURE_*` variables, `TORTURE_LONG=1` for the long variants, and a seeded
//! generator whose seed the tests print so that `TORTURE_SEED` replays a run.

/// A numeric knob from the environment: `None` when unset or not a number.
pub fn env_num(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

/// Whether `TORTURE_LONG=1` asks for the long variant.
pub fn long() -> bool {
    std::env::var_os("TORTURE_LONG").is_some_and(|v| v == "1")
}

/// `TORTURE_SEED`, or one derived from the pid (never 0, which xorshift cannot leave).
pub fn seed() -> u64 {
    env_num("TORTURE_SEED").unwrap_or(u64::from(std::process::id()) | 1)
}

/// xorshift64*: small, seeded, reproducible; not for anything but picking test steps.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

// What a converged agent must not leave behind, shared by the kill -9 tests. Each counts what
// belongs to one fixture only (its state directory, network names, temporary directory).

use std::path::{Path, PathBuf};

use crate::daemon::Daemon;

/// Lines of the fixture's firewall table or chains (port rules and the fixed ones).
pub fn firewall_rules(d: &Daemon) -> usize {
    let fw = agent::driver::network::firewall::select(d.net.firewall, &d.net.instance)
        .expect("firewall backend");
    agent::driver::network::FirewallDriver::list(&fw)
        .unwrap_or_default()
        .lines()
        .count()
}

/// Container monitors of the fixture (see [`Daemon::monitor_pids`]).
pub fn monitors(d: &Daemon) -> usize {
    d.monitor_pids().len()
}

/// Overlay mounts below the fixture's directory (container root filesystems,
/// `graph/containers/<id>/merged`). None where the graph driver is vfs (no overlayfs).
pub fn rootfs_mounts(dir: &Path) -> usize {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("overlay"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&dir))
        .count()
}

/// Whether the kernel has overlayfs (else the graph driver is vfs and mounts nothing).
pub fn overlay_available() -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("\toverlay"))
}

fn store_query(d: &Daemon, sql: &str) -> (i64, i64) {
    let db = rusqlite::Connection::open_with_flags(
        d.state.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open state.db");
    db.busy_timeout(std::time::Duration::from_secs(5))
        .expect("busy timeout");
    db.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// (IP allocations, distinct addresses) in the store.
pub fn ip_allocations(d: &Daemon) -> (i64, i64) {
    store_query(d, "SELECT count(*), count(DISTINCT ip) FROM ip_allocations")
}

/// Open intents (start or remove journalled and not finished) begun before `before_ms` (Unix
/// milliseconds), and all open intents.
pub fn open_intents(d: &Daemon, before_ms: i64) -> (i64, i64) {
    store_query(
        d,
        &format!(
            "SELECT count(CASE WHEN started_at < {before_ms} THEN 1 END), count(*) FROM intents"
        ),
    )
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The mount points of the host's cgroup hierarchies (each v1 controller, the unified one).
pub fn cgroup_roots() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            matches!(f.get(2), Some(&"cgroup") | Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// The directories that exist of the cgroups `paths` (`linux.cgroupsPath` values, see
/// [`Daemon::container_cgroups`]), in every hierarchy.
pub fn cgroup_dirs(paths: &[String]) -> Vec<PathBuf> {
    let roots = cgroup_roots();
    paths
        .iter()
        .flat_map(|cg| {
            roots
                .iter()
                .map(move |r| r.join(cg.trim_start_matches('/')))
        })
        .filter(|d| d.is_dir())
        .collect()
}

/// Log lines that report a container start refused because it runs already (the exec driver's
/// "container X is already running"), not the adoptions ("already running (started before a
/// crash); adopted"): X -> count. Several for one container in one life is a start loop.
pub fn already_running_errors(log: &str) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for l in log.lines() {
        let Some(at) = l.find(" is already running") else {
            continue;
        };
        let name = l[..at].split_whitespace().last().unwrap_or("?").to_string();
        *out.entry(name).or_insert(0) += 1;
    }
    out
}
