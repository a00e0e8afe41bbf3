//! `agent monitor <id>`: one small process per container, the container's parent for its whole
//! life (containerd's shim and Docker's libcontainer exec driver in one).
//!
//! Life of a monitor:
//! 1. The driver runs `agent monitor --state-dir D <id>` with stdout on a pipe and stderr on
//!    `<dir>/monitor.log`. The monitor forks at once: the first process exits (the driver reaps
//!    it right away), the second calls `setsid` and carries on, so it is in its own session and
//!    no child of the agent: the agent can stop, crash or be upgraded while it runs.
//! 2. It takes `<dir>/monitor.lock` (flock, held until it exits; a second monitor for the same
//!    container is refused, and the driver tests the lock to know whether a monitor is alive).
//! 3. It creates and starts the container with libcontainer (systemd cgroups off) from the bundle
//!    in `<dir>`, with stdin on /dev/null and stdout/stderr on pipes, records `running` with the
//!    pids in `state.json`, writes `ok <pid>` to the driver's pipe (or `error: ...` and records
//!    `failed`), and puts /dev/null on its own stdio.
//! 4. It execs the waiting half, [`WAIT_BIN`] (`agent-monitor-wait monitor --wait-pid P
//!    --wait-fds OUT,ERR,LOCK`, `agent/src/bin/agent-monitor-wait.rs`) from the directory of
//!    the running `agent` (same pid, so still the parent; pipes and lock inherited). It starts
//!    from a clean heap and stack and waits in `poll(2)` on the two pipes and a pidfd of the
//!    container's init, writing output to the rotated JSON log ([`super::logs`]). If that
//!    executable is missing the monitor warns and re-executes `agent monitor --wait-pid ...`
//!    (same code, the whole binary); if that fails too it waits in this process.
//! 5. When init exits: it reaps it, drains the pipes, reads the OOM-kill count of the cgroup,
//!    deletes libcontainer's state and the cgroup, records `exited` with code, signal, OOM kill
//!    and time atomically, and exits.
//!
//! A full disk: log records that cannot be written are dropped and counted, and writing resumes
//! with a marker record when space returns ([`super::logs`]); the exit record uses the space
//! reserved for it and is retried until it is written ([`super::state`]); if the `running`
//! record cannot be written the container is killed rather than left to run unrecorded. Nothing
//! in the monitor prints with `eprintln!`/`println!` (they panic when the write fails): warnings
//! go through [`warn`], which drops what it cannot write.
//!
//! Single-threaded: no async runtime, no threads; libcontainer clones without exec and changes the
//! caller's process attributes (cwd for the notify socket, dumpable), which is why it runs here and
//! never in the multi-threaded agent. Signal dispositions: an ignored signal survives `execve`,
//! and the monitor can inherit ignored signals (Rust ignores SIGPIPE at start-up; an agent started
//! under `nohup` ignores SIGHUP, one started with `&` from a script SIGINT and SIGQUIT), so every
//! ignored signal is reset to default before libcontainer clones the container's init
//! ([`default_signal_dispositions`]; a container's `trap ... HUP` would otherwise silently do
//! nothing); only after that does the monitor ignore SIGPIPE, SIGHUP, SIGINT and SIGTERM for
//! itself (stop and kill signal the container, never the monitor).
//!
//! Memory: the waiting half is a fresh image (step 4), it gives back unused stack pages and calls
//! `malloc_trim` before it waits. It is a separate, small executable because both binaries are
//! position-independent (ASLR kept): the dynamic loader writes the relocated read-only data
//! (`.data.rel.ro`, GOT) of the whole image in every process, which for the full agent is ~800 KiB
//! of private memory per monitor; `agent-monitor-wait` links only [`resume`] and what it calls
//! (this wait loop, logs, state, cgroup reads, libcontainer's delete), ~90 KiB of it. So [`resume`]
//! and `watch` must not reach the agent's async runtime, CLI or manifest code, and read only
//! the `log` field of `spec.json`. bench/exec.sh prints the private memory and where it goes.
//! The waiting half's warnings go through `tracing` in `agent` and straight to stderr (the
//! container's `monitor.log`) in `agent-monitor-wait`, which has no subscriber.
//!
//! `monitor.log` stays small: the monitor logs at [`LOG_FILTER`] (no line at all for a start that
//! goes well), and the driver rotates the file when a start finds it above
//! [`super::paths::MONITOR_LOG_CAP`] ([`super::paths::open_monitor_log`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use super::cgroups;
use super::logs::{LogWriter, Stream};
use super::spec::{ContainerSpec, LogConfig};
use super::state::{ContainerState, Status, process_start};
use super::{Error, paths};

/// The monitor's log filter when `RUST_LOG` is not set. Its stderr is `monitor.log`, kept for
/// months: at `info` libcgroups wrote ~500 bytes at every start on cgroup v1 ("cgroup manager V1
/// will be used", "cgroup hugetlb not supported", ...), and libcontainer repeats at `error` what
/// the monitor reports itself (the start's error, with its causes, goes to the driver and to
/// `state.json`). Left: the monitor's own warnings and libcgroups' errors.
pub const LOG_FILTER: &str = "warn,libcontainer=off,libcgroups=error";

/// Name of libcontainer's state root inside the container directory.
pub const RUNTIME_DIR: &str = "runtime";
/// The monitor's lock file.
pub const LOCK_FILE: &str = "monitor.lock";

/// Runs the monitor for container `id` under `state_dir`. Returns only in the first process
/// (exit code 0) or when the container has ended (the container's exit code) or failed to start.
pub fn run(state_dir: &Path, id: &str) -> Result<i32, Error> {
    let dir = paths::container_dir(state_dir, id);
    if !dir.join("config.json").is_file() {
        return Err(Error::NotFound(id.to_string()));
    }
    // SAFETY: the monitor is single-threaded here (nothing has spawned a thread), so the child
    // may run arbitrary code after fork.
    match unsafe { nix::unistd::fork() }.map_err(|e| Error::Sys {
        op: "fork monitor",
        source: e,
    })? {
        nix::unistd::ForkResult::Parent { .. } => {
            // The driver reaps this process; the child carries on in its own session.
            // SAFETY: _exit skips destructors and stdio flushing that belong to the child now.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Child => {}
    }
    let _ = nix::unistd::setsid();
    let mut report = ReportPipe::stdout();
    let lock = match take_lock(&dir) {
        Ok(l) => l,
        Err(e) => {
            report.send(&format!("error: {e}"));
            return Ok(1);
        }
    };
    match start(&dir, id) {
        Ok(started) => {
            report.send(&format!("ok {}", started.pid));
            report.close_stdio();
            // Continue as a fresh image of this binary: everything starting the container
            // allocated (libcontainer, libseccomp, serde, deep stacks) is gone at once.
            let err = reexec_waiting(state_dir, id, &started, &lock);
            tracing::warn!("re-exec for waiting failed ({err}); waiting in this process");
            let code = watch(&dir, started)?;
            drop(lock);
            Ok(code)
        }
        Err(e) => {
            let msg = e.to_string();
            let mut st = ContainerState::load(&dir)
                .ok()
                .flatten()
                .unwrap_or_else(|| ContainerState::new(id, id));
            st.status = Status::Failed;
            st.error = Some(msg.clone());
            st.pid = None;
            st.finished_at = Some(super::time::format(SystemTime::now()));
            let _ = st.save(&dir);
            report.send(&format!("error: {msg}"));
            Ok(1)
        }
    }
}

/// File name of the waiting half's executable, installed beside `agent`.
pub const WAIT_BIN: &str = "agent-monitor-wait";

/// Replaces this process with the waiting half: `agent-monitor-wait monitor --state-dir D
/// --wait-pid P --wait-fds OUT,ERR,LOCK <id>` from the directory of the running `agent` (a
/// small executable, see the module docs), or, if that is missing, `agent monitor` with the
/// same arguments. Same pid (so still the container's parent), the log pipes and the lock
/// inherited. Returns only on failure.
fn reexec_waiting(state_dir: &Path, id: &str, started: &Started, lock: &File) -> std::io::Error {
    let fds = [
        started.stdout.as_raw_fd(),
        started.stderr.as_raw_fd(),
        lock.as_raw_fd(),
    ];
    for fd in fds {
        // SAFETY: clearing FD_CLOEXEC on descriptors we own so that they survive execve.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    let args = |cmd: &mut std::process::Command| {
        cmd.arg("--state-dir")
            .arg(state_dir)
            .arg("--wait-pid")
            .arg(started.pid.to_string())
            .arg("--wait-fds")
            .arg(format!("{},{},{}", fds[0], fds[1], fds[2]))
            .arg(id);
    };
    let wait_bin = wait_binary();
    let mut err = match &wait_bin {
        Some(bin) => {
            let mut cmd = std::process::Command::new(bin);
            // `monitor` first, as in `agent monitor ...`: tools find monitors by argv[1].
            cmd.arg("monitor");
            args(&mut cmd);
            let e = cmd.exec();
            tracing::warn!(
                "cannot run {} ({e}); waiting in a fresh `agent monitor` instead",
                bin.display()
            );
            e
        }
        None => {
            tracing::warn!(
                "{WAIT_BIN} is not installed beside the agent binary; waiting in a fresh \
                 `agent monitor` instead (more private memory per container)"
            );
            std::io::Error::from(std::io::ErrorKind::NotFound)
        }
    };
    if let Ok(me) = std::env::current_exe() {
        let mut cmd = std::process::Command::new(me);
        cmd.arg0("agent").arg("monitor");
        args(&mut cmd);
        err = cmd.exec();
    }
    for fd in fds {
        // SAFETY: restoring FD_CLOEXEC after the failed exec.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    err
}

/// `agent-monitor-wait` in the directory of the running executable, if it is there.
fn wait_binary() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    let bin = me.parent()?.join(WAIT_BIN);
    bin.is_file().then_some(bin)
}

/// The waiting half of the monitor, after [`reexec_waiting`]: adopts the inherited descriptors
/// and waits for the container. Returns the container's exit code.
pub fn resume(state_dir: &Path, id: &str, pid: i32, fds: &[i32]) -> Result<i32, Error> {
    let dir = paths::container_dir(state_dir, id);
    let [out, err, lock] = fds else {
        return Err(Error::Runtime {
            container: id.to_string(),
            reason: format!("monitor --wait-fds needs three descriptors, got {fds:?}"),
        });
    };
    for fd in [out, err, lock] {
        // SAFETY: fcntl(F_GETFD) only checks that the descriptor is open.
        if unsafe { libc::fcntl(*fd, libc::F_GETFD) } < 0 {
            return Err(Error::Runtime {
                container: id.to_string(),
                reason: format!("monitor --wait-fds: descriptor {fd} is not open"),
            });
        }
        // SAFETY: marking our own descriptor close-on-exec again.
        unsafe { libc::fcntl(*fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: the descriptors were inherited from the starting half and are owned by no one else
    // in this process.
    let (stdout, stderr, lock) = unsafe {
        (
            OwnedFd::from_raw_fd(*out),
            OwnedFd::from_raw_fd(*err),
            File::from_raw_fd(*lock),
        )
    };
    let started = Started {
        pid,
        stdout,
        stderr,
        log: load_log_config(&dir)?,
        cgroups_path: paths::cgroups_path_of(&dir)?,
    };
    let code = watch(&dir, started)?;
    drop(lock);
    Ok(code)
}

/// The `log` field of `<dir>/spec.json` (only it: the waiting half links no more than it needs).
fn load_log_config(dir: &Path) -> Result<LogConfig, Error> {
    #[derive(serde::Deserialize)]
    struct Partial {
        #[serde(default)]
        log: LogConfig,
    }
    let path = dir.join("spec.json");
    let bytes = std::fs::read(&path).map_err(Error::io("read", &path))?;
    let p: Partial =
        serde_json::from_slice(&bytes).map_err(|source| Error::Json { path, source })?;
    Ok(p.log)
}

/// Logs a warning through `tracing` when the process has a subscriber (the `agent` binary, whose
/// writer swallows write errors), else on stderr (`agent-monitor-wait`, whose stderr is
/// `monitor.log` too). A failed write (a full disk) is ignored: never `eprintln!`, which panics.
fn warn(msg: std::fmt::Arguments<'_>) {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!("{msg}");
    } else {
        let _ = writeln!(std::io::stderr(), "WARN monitor: {msg}");
    }
}

/// The monitor's stdout while starting: one line for the driver, then /dev/null.
struct ReportPipe;

impl ReportPipe {
    fn stdout() -> Self {
        ReportPipe
    }

    fn send(&mut self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", line.replace('\n', " "));
        let _ = out.flush();
    }

    /// Points stdin and stdout at /dev/null (stderr stays on monitor.log), which closes the pipe
    /// the driver reads to its end.
    fn close_stdio(&mut self) {
        if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
            // SAFETY: dup2 onto the standard descriptors; `null` stays valid for the call.
            unsafe {
                libc::dup2(null.as_raw_fd(), 0);
                libc::dup2(null.as_raw_fd(), 1);
            }
        }
    }
}

/// Takes `<dir>/monitor.lock` (exclusive, not waiting); held until the file is dropped. Also
/// taken by the driver to record the exit of a container whose monitor is gone.
pub(super) fn take_lock(dir: &Path) -> Result<File, Error> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io("open", &path))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Error::AlreadyRunning(
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ));
    }
    Ok(f)
}

/// Whether a monitor holds `<dir>/monitor.lock` now.
pub fn monitor_alive(dir: &Path) -> bool {
    let Ok(f) = File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; a shared lock we get is released right away.
    let got = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
    if got {
        // SAFETY: as above.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
    }
    !got
}

/// The kernel's `struct sigaction` (x86_64, aarch64; larger than the kernel's where it has no
/// `sa_restorer`, which only matters for reading fields after `handler`).
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Sets every ignored signal of this process back to its default disposition and unblocks
/// every signal, so that a process it starts (through `execve`) begins in the standard state.
/// Handlers are left alone (`execve` resets them anyway). Raw `rt_sigaction`, because glibc's
/// `sigaction` refuses its internal signals 32 and 33, which glibc's `posix_spawn` (how the
/// agent's `Command` starts the monitor) leaves ignored in the new program. Call it only from a
/// single-threaded process (the monitor, `agent exec`).
pub(crate) fn default_signal_dispositions() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let mut old = KernelSigaction::default();
        // SAFETY: rt_sigaction with no new action only writes `old`, which is at least as large
        // as the kernel's struct; 8 is the size of the kernel's signal set.
        let got = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                std::ptr::null::<KernelSigaction>(),
                &mut old as *mut KernelSigaction,
                8usize,
            )
        };
        if got == 0 && old.handler == libc::SIG_IGN {
            let default = KernelSigaction::default();
            // SAFETY: as above; an all-zero action is SIG_DFL with no flags and an empty mask.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &default as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                )
            };
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

struct Started {
    pid: i32,
    stdout: OwnedFd,
    stderr: OwnedFd,
    log: LogConfig,
    cgroups_path: String,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Sys {
        op: "pipe",
        source: e,
    })
}

/// Formats an error with its sources (libcontainer's top-level messages are terse).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn start(dir: &Path, id: &str) -> Result<Started, Error> {
    let spec_path = dir.join("spec.json");
    let spec: ContainerSpec =
        serde_json::from_slice(&std::fs::read(&spec_path).map_err(Error::io("read", &spec_path))?)
            .map_err(|source| Error::Json {
                path: spec_path.clone(),
                source,
            })?;
    let cgroups_path = paths::cgroups_path_of(dir)?;
    let runtime = dir.join(RUNTIME_DIR);
    std::fs::create_dir_all(&runtime).map_err(Error::io("create directory", &runtime))?;
    // Leftovers of an earlier run (a monitor killed before it cleaned up): remove them.
    if runtime.join(id).exists() {
        if let Ok(mut c) = Container::load(runtime.join(id)) {
            let _ = c.delete(true);
        }
        let _ = std::fs::remove_dir_all(runtime.join(id));
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let null = File::open("/dev/null").map_err(Error::io("open", "/dev/null"))?;
    let lc = |e: libcontainer::error::LibcontainerError| Error::Runtime {
        container: spec.name.clone(),
        reason: chain(&e),
    };
    // The container's processes must not inherit ignored signals (see the module docs).
    default_signal_dispositions();
    // libcontainer writes the spec's oomScoreAdj to our own /proc/self/oom_score_adj before it
    // clones the container's init; the monitor takes its own value back afterwards.
    let own_oom = std::fs::read_to_string("/proc/self/oom_score_adj").ok();
    let built = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
        .with_root_path(&runtime)
        .map_err(lc)?
        .with_stdin(OwnedFd::from(null))
        .with_stdout(out_w)
        .with_stderr(err_w)
        .validate_id()
        .map_err(lc)?
        .as_init(dir)
        .with_systemd(false)
        .with_detach(true)
        .build();
    if let Some(v) = own_oom {
        let _ = std::fs::write("/proc/self/oom_score_adj", v.trim());
    }
    let mut container = match built {
        Ok(c) => c,
        Err(e) => {
            // The container's init logs the real cause on its stderr (our pipe): add it.
            let detail = init_errors(&err_r);
            let mut err = lc(e);
            if let Error::Runtime { reason, .. } = &mut err
                && !detail.is_empty()
            {
                reason.push_str(": ");
                reason.push_str(&detail);
            }
            return Err(err);
        }
    };
    for sig in [
        Signal::SIGPIPE,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGTERM,
    ] {
        // SAFETY: ignoring a signal has no preconditions.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let pid = container
        .pid()
        .map(|p| p.as_raw())
        .ok_or_else(|| Error::Runtime {
            container: spec.name.clone(),
            reason: "libcontainer did not report the init pid".into(),
        })?;
    // Space for the exit record, whatever fills the disk later.
    super::state::reserve_space(dir);
    if let Err(e) = container.start() {
        let _ = container.delete(true);
        return Err(lc(e));
    }
    let mut st = ContainerState::load(dir)
        .ok()
        .flatten()
        .unwrap_or_else(|| ContainerState::new(id, &spec.name));
    let me = std::process::id() as i32;
    st.status = Status::Running;
    st.monitor_pid = Some(me);
    st.monitor_start = process_start(me);
    st.pid = Some(pid);
    st.pid_start = process_start(pid);
    st.started_at = Some(super::time::format(SystemTime::now()));
    st.finished_at = None;
    st.exit_code = None;
    st.signal = None;
    st.oom_killed = false;
    st.error = None;
    st.exit_note = None;
    if let Err(e) = st.save(dir) {
        // Unrecorded, it would run where nothing sees it (a full disk): end it instead.
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = reap(pid);
        let _ = container.delete(true);
        return Err(e);
    }
    drop(container);
    Ok(Started {
        pid,
        stdout: out_r,
        stderr: err_r,
        log: spec.log,
        cgroups_path,
    })
}

/// The ERROR lines libcontainer's init wrote to the container's stderr before it failed.
fn init_errors(err_r: &OwnedFd) -> String {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(err_r.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(err_r.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while all.len() < 64 * 1024 {
        // SAFETY: read into our buffer.
        let r = unsafe { libc::read(err_r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r <= 0 {
            break;
        }
        all.extend_from_slice(&buf[..r as usize]);
    }
    let text = String::from_utf8_lossy(&all);
    let lines: Vec<String> = text
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(|l| {
            // drop ANSI colours and the timestamp/target prefix
            let plain: String = strip_ansi(l);
            plain
                .split_once(": ")
                .map(|(_, m)| m.to_string())
                .unwrap_or(plain)
        })
        .collect();
    lines.join("; ")
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c2 in chars.by_ref() {
                if c2.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Creating the container ran deep call chains (libcontainer, serde, libseccomp) whose stack pages
/// stay dirty although nothing below the current frame is live: hand them back to the kernel
/// (`MADV_DONTNEED`; they read as zero if ever touched again). 16 KiB below the current stack
/// pointer are kept for the wait loop's own calls. Only the main thread's stack, in this
/// single-threaded process, with no signal handlers installed.
#[inline(never)]
fn release_unused_stack() {
    let here = 0u8;
    let sp = std::ptr::addr_of!(here) as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Some(range) = maps
        .lines()
        .find(|l| l.ends_with("[stack]"))
        .and_then(|l| l.split_whitespace().next())
    else {
        return;
    };
    let Some((lo, _)) = range.split_once('-') else {
        return;
    };
    let Ok(lo) = usize::from_str_radix(lo, 16) else {
        return;
    };
    let page = 4096;
    let keep = 16 * 1024;
    let top = sp.saturating_sub(keep) & !(page - 1);
    if top > lo {
        // SAFETY: the range lies in this thread's stack strictly below the live frames (sp
        // minus a margin); its contents are dead.
        unsafe { libc::madvise(lo as *mut libc::c_void, top - lo, libc::MADV_DONTNEED) };
    }
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        None
    } else {
        // SAFETY: the kernel just gave us this descriptor.
        Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

/// Waits for the container, logging its output; records its end. Returns its exit code.
fn watch(dir: &Path, started: Started) -> Result<i32, Error> {
    let Started {
        pid,
        stdout,
        stderr,
        log,
        cgroups_path,
    } = started;
    let mut writer = LogWriter::open(dir, log);
    let pidfd = pidfd_open(pid);
    // Give back what creating the container allocated before the long wait.
    release_unused_stack();
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    let mut open = [Some(stdout), Some(stderr)];
    let mut buf = [0u8; 8192];
    let mut exited: Option<WaitStatus> = None;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(3);
        let mut which: Vec<usize> = Vec::with_capacity(3);
        for (i, f) in open.iter().enumerate() {
            if let Some(f) = f {
                fds.push(libc::pollfd {
                    fd: f.as_fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                which.push(i);
            }
        }
        if exited.is_none()
            && let Some(p) = &pidfd
        {
            fds.push(libc::pollfd {
                fd: p.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            which.push(2);
        }
        if fds.is_empty() && exited.is_some() {
            break;
        }
        // Without a pidfd (old kernels) poll with a timeout and check with WNOHANG.
        let timeout = match (exited.is_some(), pidfd.is_some()) {
            (true, _) => 200,
            (false, true) => -1,
            (false, false) => 500,
        };
        // SAFETY: fds is a valid array of pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("poll", dir)(e));
        }
        for (pfd, &w) in fds.iter().zip(&which) {
            if pfd.revents == 0 {
                continue;
            }
            if w == 2 {
                exited = Some(reap(pid)?);
                drain_deadline = Some(Instant::now() + Duration::from_secs(2));
                continue;
            }
            let stream = if w == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            let Some(f) = &open[w] else { continue };
            // SAFETY: reading into our buffer from a descriptor we own.
            let r = unsafe { libc::read(f.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if r > 0 {
                let before = writer.dropped();
                writer.feed(stream, &buf[..r as usize]);
                if before == 0 && writer.dropped() > 0 {
                    warn(format_args!(
                        "cannot write the log of {}: dropping log lines until it can",
                        dir.display()
                    ));
                }
            } else if r == 0 {
                writer.flush_stream(stream);
                open[w] = None;
            }
        }
        if exited.is_none() && pidfd.is_none() {
            match nix::sys::wait::waitpid(
                Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            ) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(ws) => {
                    exited = Some(ws);
                    drain_deadline = Some(Instant::now() + Duration::from_secs(2));
                }
                Err(_) => {
                    exited = Some(WaitStatus::StillAlive);
                    drain_deadline = Some(Instant::now());
                }
            }
        }
        if let Some(d) = drain_deadline
            && Instant::now() >= d
        {
            break;
        }
    }
    writer.flush_stream(Stream::Stdout);
    writer.flush_stream(Stream::Stderr);
    let lost = writer.finish();
    if lost > 0 {
        warn(format_args!(
            "{lost} log lines of {} were dropped and could not be reported in the log",
            dir.display()
        ));
    }
    let status = exited.unwrap_or(WaitStatus::StillAlive);
    let (code, sig) = match status {
        WaitStatus::Exited(_, c) => (c, None),
        WaitStatus::Signaled(_, s, _) => (128 + s as i32, Some(s as i32)),
        _ => (255, None),
    };
    let oom = cgroups::oom_kills(cgroups::version(), &cgroups_path).is_some_and(|n| n > 0);
    let runtime = dir.join(RUNTIME_DIR);
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // An unreadable record is replaced: the exit must be recorded whatever the old one says.
    let mut st = ContainerState::load(dir)
        .ok()
        .flatten()
        .unwrap_or_else(|| ContainerState::new(&id, &id));
    match Container::load(runtime.join(&id)) {
        Ok(mut c) => {
            if let Err(e) = c.delete(true) {
                warn(format_args!(
                    "deleting the runtime state of {id}: {}",
                    chain(&e)
                ));
            }
        }
        Err(e) => warn(format_args!(
            "loading the runtime state of {id}: {}",
            chain(&e)
        )),
    }
    st.status = Status::Exited;
    st.exit_code = Some(code);
    st.signal = sig;
    st.oom_killed = oom;
    st.finished_at = Some(super::time::format(SystemTime::now()));
    st.save_until_done(dir, |e, attempt| {
        if attempt == 1 {
            warn(format_args!(
                "cannot record the exit ({code}) yet, retrying until it is recorded: {e}"
            ));
        }
    })?;
    Ok(code)
}

fn reap(pid: i32) -> Result<WaitStatus, Error> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(ws @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Ok(ws),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::Sys {
                    op: "waitpid",
                    source: e,
                });
            }
        }
    }
}

/// Where libcontainer keeps the container's runtime state.
pub fn runtime_root(dir: &Path) -> PathBuf {
    dir.join(RUNTIME_DIR)
}
