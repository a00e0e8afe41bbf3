//! The [`ExecDriver`] trait the reconciler calls, its one implementation [`MonitorDriver`]
//! (a monitor process per container, libcontainer inside it), the closed set [`AnyExecDriver`]
//! and the selector [`select`].
//!
//! Every method blocks (file I/O, waiting for a monitor, a stop grace period): an async caller runs
//! them with `tokio::task::spawn_blocking`. None of them calls libcontainer code that clones or
//! changes process attributes in the calling process: start spawns `agent monitor`, exec spawns
//! `agent exec`; pause/unpause only write freezer files, update only writes cgroup limit files,
//! kill only signals a verified pid. So the driver is safe to use from the multi-threaded agent.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cgroups::{self, CgroupVersion, Stats};
use super::monitor::{self, RUNTIME_DIR};
use super::spec::{self, ContainerSpec, HostInfo, Resources};
use super::state::{ContainerState, Status, is_same_process};
use super::{Error, bundle, paths};

/// The longest stop grace period `stop` waits (24h, the manifests' maximum); a longer one, from
/// a store or bundle written by an older version, is clamped to it.
pub const MAX_STOP_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Settings of the exec driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// The agent's state directory; containers live in `<state_dir>/exec/<id>/`.
    pub state_dir: PathBuf,
    /// The `agent` binary the monitors and exec helpers run.
    pub agent_binary: PathBuf,
    /// Parent cgroup of every container (`/agent`, or `<unit>/containers` under systemd on
    /// cgroup v2: [`super::delegate`]).
    pub cgroup_parent: String,
    /// CDI spec directories, later ones winning ([`super::cdi`]).
    pub cdi_dirs: Vec<PathBuf>,
}

impl ExecConfig {
    /// Defaults: this executable, cgroup parent [`super::delegate::container_parent`].
    pub fn new(state_dir: impl Into<PathBuf>) -> ExecConfig {
        ExecConfig {
            state_dir: state_dir.into(),
            agent_binary: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("agent")),
            cgroup_parent: super::delegate::container_parent(),
            cdi_dirs: super::cdi::DEFAULT_DIRS.iter().map(PathBuf::from).collect(),
        }
    }
}

/// A container's state as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum ContainerStatus {
    /// Created, never started.
    Created,
    Running {
        pid: i32,
        /// Whether its monitor is alive (logs are written, the exit will be recorded).
        monitored: bool,
    },
    /// Frozen by `pause`.
    Paused { pid: i32 },
    Exited {
        exit_code: i32,
        signal: Option<i32>,
        oom_killed: bool,
    },
    /// Starting failed.
    Failed { error: String },
    /// The record and the host disagree (e.g. a monitor killed before it recorded the exit).
    Unknown { reason: String },
}

impl ContainerStatus {
    pub fn is_running(&self) -> bool {
        matches!(
            self,
            ContainerStatus::Running { .. } | ContainerStatus::Paused { .. }
        )
    }
}

/// A container as `list` and `state` report it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub status: ContainerStatus,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// How the exit was learnt when its monitor could not record it ([`super::orphan`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_note: Option<String>,
    /// The `agent monitor` process of its current or last run, as its state records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor_pid: Option<i32>,
}

impl ContainerInfo {
    /// The monitor of a running container (`None` when it is not running).
    pub fn running_monitor(&self) -> Option<i32> {
        match self.status {
            ContainerStatus::Running {
                monitored: true, ..
            }
            | ContainerStatus::Paused { .. } => self.monitor_pid,
            _ => None,
        }
    }
}

/// A command to run in a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    /// Added to the container's environment (same key: this wins).
    pub env: BTreeMap<String, String>,
    /// Default: the container's working directory.
    pub workdir: Option<String>,
    /// Default: the container's user. Resolved against the container's `/etc/passwd`.
    pub user: Option<String>,
    /// Allocate a terminal (needs a terminal on the caller's stdin).
    pub tty: bool,
}

/// Where an exec'd command's stdio goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecStdio {
    /// The caller's stdin, stdout and stderr.
    Inherit,
    /// stdin from /dev/null, stdout and stderr captured: the last [`MAX_CAPTURE`] bytes of
    /// each (the rest is read and dropped, so that a command in a container that prints
    /// without end costs the agent no more memory than that).
    Capture,
}

/// How much of each of stdout and stderr [`ExecStdio::Capture`] keeps (the end of it).
pub const MAX_CAPTURE: usize = 64 * 1024;

/// Reads `r` to its end, keeping only its last `limit` bytes.
fn read_tail(mut r: impl Read, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.extend_from_slice(&buf[..n]);
        if out.len() > 2 * limit {
            out.drain(..out.len() - limit);
        }
    }
}

/// `cmd.output()` with each stream cut to its last `limit` bytes ([`read_tail`]).
fn output_tail(cmd: &mut Command, limit: usize) -> std::io::Result<std::process::Output> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let err = child
        .stderr
        .take()
        .map(|e| std::thread::spawn(move || read_tail(e, limit)));
    let stdout = match child.stdout.take() {
        Some(o) => read_tail(o, limit),
        None => Ok(Vec::new()),
    };
    let stderr = match err {
        Some(t) => t.join().unwrap_or_else(|_| Ok(Vec::new())),
        None => Ok(Vec::new()),
    };
    let status = child.wait()?;
    let (mut stdout, mut stderr) = (stdout?, stderr?);
    for v in [&mut stdout, &mut stderr] {
        if v.len() > limit {
            v.drain(..v.len() - limit);
        }
    }
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}

/// What an exec'd command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    /// Captured output (empty with [`ExecStdio::Inherit`]).
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// What the reconciler needs from a container runtime. All methods block (see module docs);
/// ids are the `ContainerSpec::id`s. Deleting or stopping what is already gone succeeds.
pub trait ExecDriver {
    /// Writes the container's bundle (OCI spec, `/etc` files) and records it as created.
    fn create(&self, spec: &ContainerSpec) -> Result<(), Error>;
    /// Starts its monitor, which creates and starts the container; returns the init pid once the
    /// process runs (errors from creating it are returned here).
    fn start(&self, id: &str) -> Result<i32, Error>;
    /// Sends the stop signal, waits `grace` (default: the spec's), then SIGKILL; returns the
    /// final state.
    fn stop(&self, id: &str, grace: Option<Duration>) -> Result<ContainerInfo, Error>;
    /// Sends `signal` (a number) to the container's init process.
    fn kill(&self, id: &str, signal: i32) -> Result<(), Error>;
    /// Freezes every process of the container.
    fn pause(&self, id: &str) -> Result<(), Error>;
    fn unpause(&self, id: &str) -> Result<(), Error>;
    /// Removes a container that is not running (its state, bundle, logs and cgroup), once its
    /// monitor and its `agent exec`s in flight have ended (each waited for at most 5 s).
    fn delete(&self, id: &str) -> Result<(), Error>;
    fn state(&self, id: &str) -> Result<ContainerInfo, Error>;
    /// Runs a command in the running container (its namespaces, cgroup, user, capabilities,
    /// seccomp profile and rlimits) and returns its exit code.
    fn exec(&self, id: &str, req: &ExecRequest, stdio: ExecStdio) -> Result<ExecOutput, Error>;
    /// Every container under the state directory (for adoption at start-up).
    fn list(&self) -> Result<Vec<ContainerInfo>, Error>;
    /// Current resource use.
    fn stats(&self, id: &str) -> Result<Stats, Error>;
    /// Changes what can change without recreating the container: its cgroup limits (applied at
    /// once if it runs) and stop settings. Recorded in its bundle, so a restart keeps them.
    fn update(&self, id: &str, update: &LiveUpdate) -> Result<(), Error>;
}

/// What [`ExecDriver::update`] changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveUpdate {
    pub resources: Resources,
    pub stop_signal: Option<String>,
    pub stop_grace: Duration,
}

/// The closed set of exec drivers.
#[derive(Debug, Clone)]
pub enum AnyExecDriver {
    Monitor(MonitorDriver),
}

/// Picks the exec driver for this host. There is one (libcontainer handles cgroup v1 and v2);
/// the selector checks that the host can run containers at all.
pub fn select(config: ExecConfig) -> Result<AnyExecDriver, Error> {
    if !Path::new("/sys/fs/cgroup").is_dir() {
        return Err(Error::Unsupported(
            "/sys/fs/cgroup is missing: the exec driver needs cgroups".into(),
        ));
    }
    Ok(AnyExecDriver::Monitor(MonitorDriver::new(config)))
}

impl AnyExecDriver {
    fn inner(&self) -> &dyn ExecDriver {
        match self {
            AnyExecDriver::Monitor(d) => d,
        }
    }
}

impl ExecDriver for AnyExecDriver {
    fn create(&self, spec: &ContainerSpec) -> Result<(), Error> {
        self.inner().create(spec)
    }
    fn start(&self, id: &str) -> Result<i32, Error> {
        self.inner().start(id)
    }
    fn stop(&self, id: &str, grace: Option<Duration>) -> Result<ContainerInfo, Error> {
        self.inner().stop(id, grace)
    }
    fn kill(&self, id: &str, signal: i32) -> Result<(), Error> {
        self.inner().kill(id, signal)
    }
    fn pause(&self, id: &str) -> Result<(), Error> {
        self.inner().pause(id)
    }
    fn unpause(&self, id: &str) -> Result<(), Error> {
        self.inner().unpause(id)
    }
    fn delete(&self, id: &str) -> Result<(), Error> {
        self.inner().delete(id)
    }
    fn state(&self, id: &str) -> Result<ContainerInfo, Error> {
        self.inner().state(id)
    }
    fn exec(&self, id: &str, req: &ExecRequest, stdio: ExecStdio) -> Result<ExecOutput, Error> {
        self.inner().exec(id, req, stdio)
    }
    fn list(&self) -> Result<Vec<ContainerInfo>, Error> {
        self.inner().list()
    }
    fn stats(&self, id: &str) -> Result<Stats, Error> {
        self.inner().stats(id)
    }
    fn update(&self, id: &str, update: &LiveUpdate) -> Result<(), Error> {
        self.inner().update(id, update)
    }
}

/// Containers run by `agent monitor` processes.
#[derive(Debug, Clone)]
pub struct MonitorDriver {
    config: ExecConfig,
}

impl MonitorDriver {
    pub fn new(config: ExecConfig) -> Self {
        MonitorDriver { config }
    }

    pub fn config(&self) -> &ExecConfig {
        &self.config
    }

    fn dir(&self, id: &str) -> Result<PathBuf, Error> {
        paths::check_id(id)?;
        Ok(paths::container_dir(&self.config.state_dir, id))
    }

    fn load(&self, id: &str) -> Result<(PathBuf, ContainerState), Error> {
        let dir = self.dir(id)?;
        match ContainerState::load(&dir)? {
            Some(s) => Ok((dir, s)),
            None => Err(Error::NotFound(id.to_string())),
        }
    }

    fn info(&self, dir: &Path, st: ContainerState) -> ContainerInfo {
        let (status, st) = status_of(dir, st);
        ContainerInfo {
            id: st.id,
            name: st.name,
            status,
            created_at: st.created_at,
            started_at: st.started_at,
            finished_at: st.finished_at,
            exit_note: st.exit_note,
            monitor_pid: st.monitor_pid,
        }
    }

    /// Waits until the recorded state is no longer running, at most `timeout`.
    fn wait_exit(&self, id: &str, timeout: Duration) -> Result<Option<ContainerInfo>, Error> {
        // No deadline when it would overflow (`Instant + Duration` panics).
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let info = self.state(id)?;
            if !info.status.is_running() {
                return Ok(Some(info));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn running_pid(&self, id: &str) -> Result<(PathBuf, ContainerState, i32), Error> {
        let (dir, st) = self.load(id)?;
        match (st.status, st.pid) {
            (Status::Running, Some(pid)) if is_same_process(pid, st.pid_start) => {
                Ok((dir, st, pid))
            }
            _ => Err(Error::NotRunning(st.name)),
        }
    }

    fn libcontainer(
        &self,
        dir: &Path,
        id: &str,
    ) -> Result<libcontainer::container::Container, Error> {
        libcontainer::container::Container::load(dir.join(RUNTIME_DIR).join(id)).map_err(|e| {
            Error::Runtime {
                container: id.to_string(),
                reason: monitor::chain(&e),
            }
        })
    }
}

impl MonitorDriver {
    /// [`ExecDriver::stop`] of a container whose monitor is gone ([`super::orphan`]): stopped
    /// with its real exit status read as its tracer, and the exit recorded here, since no
    /// monitor will. The monitor's lock is taken for the write (no monitor starts meanwhile),
    /// and libcontainer's state and the cgroup are removed as the monitor would have.
    fn stop_unmonitored(
        &self,
        dir: &Path,
        st: ContainerState,
        pid: i32,
        sig: i32,
        grace: Duration,
    ) -> Result<ContainerInfo, Error> {
        tracing::info!(container = %st.name, pid, "stopping a container whose monitor is gone");
        let exit = super::orphan::stop(pid, st.pid_start, sig, grace).map_err(|e| match e {
            Error::Runtime { reason, .. } => Error::Runtime {
                container: st.name.clone(),
                reason,
            },
            e => e,
        })?;
        let _lock = monitor::take_lock(dir)?;
        let mut rec = ContainerState::load(dir)?.unwrap_or(st);
        if rec.status == Status::Running {
            let (code, signal, how) = match exit {
                Some(e) => (e.exit_code, e.signal, e.how),
                None => (
                    super::state::LOST_EXIT_CODE,
                    None,
                    "it ended before the agent could stop it; its monitor was gone, so its \
                     exit code is lost"
                        .to_string(),
                ),
            };
            rec.status = Status::Exited;
            rec.exit_code = Some(code);
            rec.signal = signal;
            rec.oom_killed = paths::cgroups_path_of(dir)
                .ok()
                .and_then(|cg| cgroups::oom_kills(cgroups::version(), &cg))
                .is_some_and(|n| n > 0);
            rec.finished_at = Some(super::time::format(std::time::SystemTime::now()));
            rec.exit_note = Some(how);
            rec.save(dir)?;
        }
        let id = rec.id.clone();
        if dir.join(RUNTIME_DIR).join(&id).exists()
            && let Ok(mut c) = self.libcontainer(dir, &id)
        {
            let _ = c.delete(true);
        }
        let _ = std::fs::remove_file(dir.join(super::state::RESERVE_FILE));
        Ok(self.info(dir, rec))
    }
}

/// How long [`ExecDriver::delete`] waits for a container's monitor to end, for its execs in
/// flight to end, and for its cgroup to empty (each).
const DELETE_WAIT: Duration = Duration::from_secs(5);

/// Polls `done` every 10 ms until it is true or `limit` has passed.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The status from the record, checked against the host, and the record it comes from (a newer
/// one when the monitor was recording the exit at that moment).
fn status_of(dir: &Path, st: ContainerState) -> (ContainerStatus, ContainerState) {
    let status = match st.status {
        Status::Created => ContainerStatus::Created,
        Status::Failed => ContainerStatus::Failed {
            error: st.error.clone().unwrap_or_default(),
        },
        Status::Exited => ContainerStatus::Exited {
            exit_code: st.exit_code.unwrap_or(255),
            signal: st.signal,
            oom_killed: st.oom_killed,
        },
        Status::Running => {
            let monitored = monitor::monitor_alive(dir);
            match st.pid {
                Some(pid) if is_same_process(pid, st.pid_start) => {
                    if frozen(dir, &st) {
                        ContainerStatus::Paused { pid }
                    } else {
                        ContainerStatus::Running { pid, monitored }
                    }
                }
                _ if monitored => {
                    // The monitor is recording the exit right now; the next read has it.
                    match reread_exited(dir) {
                        Some(s) => return status_of(dir, s),
                        None => ContainerStatus::Unknown {
                            reason: "the process has ended; its monitor has not recorded the \
                                     exit yet"
                                .into(),
                        },
                    }
                }
                _ => ContainerStatus::Unknown {
                    reason: "the process has ended but its monitor died before recording the \
                             exit; the exit code is lost"
                        .into(),
                },
            }
        }
    };
    (status, st)
}

fn reread_exited(dir: &Path) -> Option<ContainerState> {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(s)) = ContainerState::load(dir)
            && s.status != Status::Running
        {
            return Some(s);
        }
        if !monitor::monitor_alive(dir) {
            return ContainerState::load(dir)
                .ok()
                .flatten()
                .filter(|s| s.status != Status::Running);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Whether the container's freezer says frozen.
/// The container's cgroups path: from its state record, else from its bundle.
fn cgroups_path(dir: &Path, st: &ContainerState) -> Result<String, Error> {
    match &st.cgroups_path {
        Some(p) => Ok(p.clone()),
        None => paths::cgroups_path_of(dir),
    }
}

fn frozen(dir: &Path, st: &ContainerState) -> bool {
    let Ok(cg) = cgroups_path(dir, st) else {
        return false;
    };
    let v = cgroups::version();
    let Some(d) = cgroups::dir(v, "freezer", &cg) else {
        return false;
    };
    match v {
        CgroupVersion::V1 => std::fs::read_to_string(d.join("freezer.state"))
            .map(|s| s.trim() == "FROZEN")
            .unwrap_or(false),
        CgroupVersion::V2 => std::fs::read_to_string(d.join("cgroup.freeze"))
            .map(|s| s.trim() == "1")
            .unwrap_or(false),
    }
}

fn signal_pid(pid: i32, sig: i32) -> Result<(), Error> {
    // SAFETY: kill(2) with a pid verified by start time just before.
    if unsafe { libc::kill(pid, sig) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(Error::Sys {
            op: "kill",
            source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        });
    }
    Ok(())
}

impl ExecDriver for MonitorDriver {
    fn create(&self, spec: &ContainerSpec) -> Result<(), Error> {
        let dir = self.dir(&spec.id)?;
        if let Some(st) = ContainerState::load(&dir)? {
            let info = self.info(&dir, st);
            if info.status.is_running() {
                return Err(Error::AlreadyRunning(spec.name.clone()));
            }
        }
        if let Some(other) = self
            .list()?
            .into_iter()
            .find(|c| c.name == spec.name && c.id != spec.id)
        {
            return Err(Error::NameInUse {
                name: spec.name.clone(),
                id: other.id,
            });
        }
        let mut host = HostInfo::detect(&self.config.cgroup_parent);
        if spec.init {
            host.init_binary = Some(super::init::ensure(&self.config.state_dir)?);
        }
        let oci = bundle::write(&dir, spec, &host, &self.config.cdi_dirs)?;
        let mut st = ContainerState::new(&spec.id, &spec.name);
        st.cgroups_path = oci
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy().into_owned());
        st.save(&dir)
    }

    fn start(&self, id: &str) -> Result<i32, Error> {
        let (dir, st) = self.load(id)?;
        if self.info(&dir, st.clone()).status.is_running() {
            return Err(Error::AlreadyRunning(st.name));
        }
        // The last run's monitor records the exit, then releases its lock and goes: a start in
        // between (a restart right after the exit event) waits for it rather than failing.
        let deadline = Instant::now() + Duration::from_secs(5);
        while monitor::monitor_alive(&dir) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // What the last run left of the cgroup: libcontainer removes it only when it has no
        // child cgroups, and on v1 a cgroup with children refuses the new start (`devices.deny`).
        if let Ok(cg) = cgroups_path(&dir, &st) {
            for line in cgroups::remove_leftovers(cgroups::version(), &cg) {
                tracing::warn!(container = id, cgroup = %line, "cgroup left behind");
            }
        }
        let log_path = dir.join("monitor.log");
        let log = paths::open_monitor_log(&dir)?;
        let mut child = Command::new(&self.config.agent_binary)
            .arg("monitor")
            .arg("--state-dir")
            .arg(&self.config.state_dir)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .current_dir("/")
            .spawn()
            .map_err(Error::io("spawn monitor", &self.config.agent_binary))?;
        let mut out = String::new();
        if let Some(mut so) = child.stdout.take() {
            let _ = so.read_to_string(&mut out);
        }
        let _ = child.wait();
        let line = out.lines().next().unwrap_or("").trim();
        if let Some(pid) = line.strip_prefix("ok ") {
            return pid.parse().map_err(|_| Error::Runtime {
                container: st.name.clone(),
                reason: format!("monitor reported {line:?}"),
            });
        }
        let reason = match line.strip_prefix("error: ") {
            Some(r) => r.to_string(),
            None => {
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                format!(
                    "the monitor exited without reporting (monitor.log: {})",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )
            }
        };
        Err(Error::StartFailed {
            container: st.name,
            reason,
        })
    }

    fn stop(&self, id: &str, grace: Option<Duration>) -> Result<ContainerInfo, Error> {
        let (dir, st) = self.load(id)?;
        let info = self.info(&dir, st.clone());
        let pid = match info.status {
            ContainerStatus::Running { pid, .. } | ContainerStatus::Paused { pid } => pid,
            _ => return Ok(info),
        };
        let spec = paths::load_spec(&dir)?;
        let sig = paths::parse_signal(&paths::stop_signal_of(&spec).0)?;
        // Clamped: a grace stored by an older version may be anything up to u64 seconds.
        let grace = grace.unwrap_or(spec.stop_grace).min(MAX_STOP_GRACE);
        if matches!(
            info.status,
            ContainerStatus::Running {
                monitored: false,
                ..
            }
        ) {
            return self.stop_unmonitored(&dir, st, pid, sig, grace);
        }
        if is_same_process(pid, st.pid_start) {
            signal_pid(pid, sig)?;
        }
        if matches!(info.status, ContainerStatus::Paused { .. }) {
            // A frozen process cannot act on the signal: thaw it.
            let _ = self.unpause(id);
        }
        if let Some(done) = self.wait_exit(id, grace)? {
            return Ok(done);
        }
        if is_same_process(pid, st.pid_start) {
            signal_pid(pid, libc::SIGKILL)?;
        }
        match self.wait_exit(id, Duration::from_secs(10))? {
            Some(done) => Ok(done),
            None => Err(Error::Runtime {
                container: st.name,
                reason: "still running 10 s after SIGKILL".into(),
            }),
        }
    }

    fn kill(&self, id: &str, signal: i32) -> Result<(), Error> {
        let (_, _, pid) = self.running_pid(id)?;
        signal_pid(pid, signal)
    }

    fn pause(&self, id: &str) -> Result<(), Error> {
        let (dir, st, _) = self.running_pid(id)?;
        let mut c = self.libcontainer(&dir, id)?;
        c.pause().map_err(|e| Error::Runtime {
            container: st.name,
            reason: monitor::chain(&e),
        })
    }

    fn unpause(&self, id: &str) -> Result<(), Error> {
        let (dir, st, _) = self.running_pid(id)?;
        let mut c = self.libcontainer(&dir, id)?;
        c.resume().map_err(|e| Error::Runtime {
            container: st.name,
            reason: monitor::chain(&e),
        })
    }

    fn delete(&self, id: &str) -> Result<(), Error> {
        let dir = self.dir(id)?;
        let st = match ContainerState::load(&dir) {
            Ok(Some(s)) => Some(s),
            Ok(None) if !dir.exists() => return Ok(()),
            Ok(None) => None,
            Err(e) => return Err(e),
        };
        if let Some(st) = st {
            let info = self.info(&dir, st);
            if info.status.is_running() {
                return Err(Error::StillRunning(info.name));
            }
        }
        // Its monitor may still be going (a status read as ended while the monitor records the
        // exit): wait for it to remove libcontainer's state and the cgroup and release its lock.
        // Then for the `agent exec`s in flight, which may make the cgroup again after that
        // ([`super::tenant::in_flight`]). Both are bounded: a wedged process must not block the
        // removal, whose cleanup below then does what it can.
        wait_until(DELETE_WAIT, || !monitor::monitor_alive(&dir));
        wait_until(DELETE_WAIT, || super::tenant::in_flight(&dir).is_empty());
        // A monitor that died before cleaning up leaves libcontainer's state and the cgroup.
        if dir.join(RUNTIME_DIR).join(id).exists()
            && let Ok(mut c) = self.libcontainer(&dir, id)
        {
            let _ = c.delete(true);
        }
        // And what libcontainer could not remove (its state unreadable, a late exec): the cgroup
        // directories, retried while a process that is exiting still holds one (EBUSY).
        if let Ok(cg) = paths::cgroups_path_of(&dir) {
            for line in cgroups::remove_leftovers_within(cgroups::version(), &cg, DELETE_WAIT) {
                tracing::warn!(container = id, cgroup = %line, "cgroup left behind");
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &dir)(e)),
        }
    }

    fn state(&self, id: &str) -> Result<ContainerInfo, Error> {
        let (dir, st) = self.load(id)?;
        Ok(self.info(&dir, st))
    }

    fn exec(&self, id: &str, req: &ExecRequest, stdio: ExecStdio) -> Result<ExecOutput, Error> {
        let (_, st, _) = self.running_pid(id)?;
        if req.argv.is_empty() {
            return Err(Error::InvalidSpec {
                container: st.name,
                field: "exec".into(),
                reason: "no command given".into(),
            });
        }
        let mut cmd = Command::new(&self.config.agent_binary);
        cmd.arg("exec")
            .arg("--state-dir")
            .arg(&self.config.state_dir);
        if stdio == ExecStdio::Inherit {
            cmd.arg("--interactive");
            if req.tty {
                cmd.arg("--tty");
            }
        }
        if let Some(u) = &req.user {
            cmd.arg("--user").arg(u);
        }
        if let Some(w) = &req.workdir {
            cmd.arg("--workdir").arg(w);
        }
        for (k, v) in &req.env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.arg(id).arg("--").args(&req.argv);
        let out = match stdio {
            ExecStdio::Inherit => {
                let status = cmd
                    .status()
                    .map_err(Error::io("spawn exec", &self.config.agent_binary))?;
                ExecOutput {
                    exit_code: exit_code_of(status),
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                }
            }
            ExecStdio::Capture => {
                let o = output_tail(cmd.stdin(Stdio::null()), MAX_CAPTURE)
                    .map_err(Error::io("spawn exec", &self.config.agent_binary))?;
                ExecOutput {
                    exit_code: exit_code_of(o.status),
                    stdout: o.stdout,
                    stderr: o.stderr,
                }
            }
        };
        Ok(out)
    }

    fn list(&self) -> Result<Vec<ContainerInfo>, Error> {
        let root = paths::exec_root(&self.config.state_dir);
        let rd = match std::fs::read_dir(&root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &root)(e)),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let dir = e.path();
            if let Ok(Some(st)) = ContainerState::load(&dir) {
                out.push(self.info(&dir, st));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn stats(&self, id: &str) -> Result<Stats, Error> {
        let (dir, _, _) = self.running_pid(id)?;
        Ok(cgroups::stats(
            cgroups::version(),
            &paths::cgroups_path_of(&dir)?,
        ))
    }

    fn update(&self, id: &str, update: &LiveUpdate) -> Result<(), Error> {
        let (dir, st) = self.load(id)?;
        let old = paths::load_spec(&dir)?;
        let mut new = old.clone();
        new.resources = update.resources.clone();
        new.stop_signal = update.stop_signal.clone();
        new.stop_grace = update.stop_grace;
        if new == old {
            return Ok(());
        }
        let host = HostInfo::detect(&self.config.cgroup_parent);
        let built = spec::build::resources(&new, &host)?;
        let config_path = dir.join("config.json");
        let mut oci = oci_spec::runtime::Spec::load(&config_path).map_err(|e| Error::Runtime {
            container: st.name.clone(),
            reason: format!("reading {}: {e}", config_path.display()),
        })?;
        let running = self.info(&dir, st.clone()).status.is_running();
        if running && new.resources != old.resources {
            let cgroups_path = cgroups_path(&dir, &st)?;
            if let Err(reason) =
                cgroups::update(&cgroups_path, &built, &old.resources, &new.resources)
            {
                // Put back what was there: some controllers may have taken the new limits.
                if let Ok(before) = spec::build::resources(&old, &host) {
                    let _ = cgroups::update(&cgroups_path, &before, &new.resources, &old.resources);
                }
                return Err(Error::Runtime {
                    container: st.name,
                    reason: format!("changing the limits of the running container: {reason}"),
                });
            }
        }
        if let Some(linux) = oci.linux_mut() {
            linux.set_resources(Some(built));
        }
        bundle::write_json(&config_path, &oci)?;
        bundle::write_json(&dir.join("spec.json"), &new)
    }
}

fn exit_code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 255,
    }
}
