//! Running a command inside a running container (`agent exec`), in the calling process.
//!
//! Only the single-threaded `agent exec` process calls [`run`] (the driver's `exec` spawns it),
//! because libcontainer's tenant builder clones without exec and changes the caller's working
//! directory. The command joins the container's namespaces and cgroup and runs with the
//! container's user (or `--user`, resolved against the container's `/etc/passwd`), capabilities,
//! rlimits and no-new-privileges, all written into a `process.json` that libcontainer uses
//! whole.
//!
//! Seccomp: libcontainer 0.7.0 drops `linux.seccomp` when it builds the spec of an exec'd
//! process, so the container's profile is loaded by our own [`SeccompExecutor`] as the last step
//! before `execvp` (after capabilities are dropped and no-new-privileges is set, which loading a
//! filter without CAP_SYS_ADMIN requires). Without no-new-privileges the filter cannot be loaded
//! by an unprivileged process, so such exec requests fail with a clear error instead of running
//! unfiltered.
//!
//! Terminal (`-t`): libcontainer opens the pty inside the container and passes the master over a
//! console socket; this process puts its own terminal in raw mode, copies both ways and restores
//! the terminal at the end.
//!
//! Exit codes and signals (docs/exec.md "Exec"): a command that cannot be run ends the exec'd
//! process with a shell's 127/126 and one line ([`SeccompExecutor`]); the catchable signals
//! `agent exec` gets are passed on to the command, and the command dies with `agent exec` if
//! that is killed outright (`PR_SET_PDEATHSIG`). A failure because the container's process ended
//! meanwhile is reported as "not running", whatever libcontainer met on the way.
//!
//! In flight: `<dir>/exec-<pid>.json` exists from before the container's state is read until
//! `agent exec` ends, so that deleting the container waits for it and then removes the cgroup
//! that libcontainer's tenant may have made again after the container's end ([`in_flight`]).

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::{LinuxSeccomp, Process, Spec, UserBuilder};
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use super::driver::ExecRequest;
use super::monitor::{RUNTIME_DIR, chain};
use super::state::{ContainerState, Status, is_same_process};
use super::{Error, paths};

/// The last steps inside the container before the command runs: dies with `agent exec`
/// (`PR_SET_PDEATHSIG`), takes the caller's terminal size (`-t`), loads the container's seccomp
/// filter, then `execvp`. A command that cannot be run ends this process the way a shell does:
/// one line on stderr, exit 127 (not found) or 126 (found, not executable), which `agent exec`
/// passes on as its own exit code (Docker's codes).
#[derive(Clone)]
pub struct SeccompExecutor {
    seccomp: Option<LinuxSeccomp>,
    /// Rows and columns of the caller's terminal, set on the container's pty before the command
    /// starts (libcontainer 0.7.0 ignores `process.consoleSize`).
    winsize: Option<(u16, u16)>,
}

/// Exit code of a command that was not found (a shell's, Docker's).
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit code of a command that was found but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;

impl Executor for SeccompExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        // The command ends with `agent exec`, even one killed by SIGKILL (its catchable signals
        // are forwarded, see `catch_signals`). The parent is `agent exec` itself: libcontainer
        // clones the process with CLONE_PARENT.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        if let Some((rows, cols)) = self.winsize {
            set_winsize(0, rows, cols);
        }
        let args: Vec<String> = spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default();
        let Some(cmd) = args.first() else {
            return Err(ExecutorError::InvalidArg);
        };
        let cstrings: Result<Vec<CString>, _> =
            args.iter().map(|a| CString::new(a.as_bytes())).collect();
        let Ok(cstrings) = cstrings else {
            fail(
                EXIT_CANNOT_EXECUTE,
                &format!("{cmd:?}: the command contains a NUL byte"),
            );
        };
        if let Some(s) = &self.seccomp {
            libcontainer::seccomp::initialize_seccomp(s).map_err(|e| {
                ExecutorError::Other(format!(
                    "loading the container's seccomp profile: {}",
                    chain(&e)
                ))
            })?;
        }
        let errno = match nix::unistd::execvp(&cstrings[0], &cstrings) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        let where_ = if cmd.contains('/') {
            "in the container"
        } else {
            "in the container's $PATH"
        };
        match errno {
            nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => fail(
                EXIT_NOT_FOUND,
                &format!("{cmd:?}: executable file not found {where_}"),
            ),
            e => fail(
                EXIT_CANNOT_EXECUTE,
                &format!("{cmd:?}: cannot execute: {}", e.desc()),
            ),
        }
    }

    fn validate(&self, _spec: &Spec) -> Result<(), ExecutorValidationError> {
        // libcontainer's check runs before the process is reported started and fails the whole
        // exec with its own error chain; `exec` above reports a missing or unusable command
        // itself, with the shell's exit codes.
        Ok(())
    }
}

/// Ends the exec'd process (before the command ran) with `code` and one line on its stderr.
fn fail(code: i32, msg: &str) -> ! {
    write_all(2, format!("agent: {msg}\n").as_bytes());
    // SAFETY: _exit ends this (forked, single-threaded) process without running destructors.
    unsafe { libc::_exit(code) }
}

fn set_winsize(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the struct we own.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// Builds the exec'd process from the container's own process and the request.
fn process_for(
    spec: &Spec,
    req: &ExecRequest,
    rootfs: &Path,
    name: &str,
) -> Result<Process, Error> {
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(req.argv.clone()));
    p.set_terminal(Some(req.tty));
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    for (k, v) in &req.env {
        env.retain(|e| e.split_once('=').map(|(key, _)| key) != Some(k.as_str()));
        env.push(format!("{k}={v}"));
    }
    if req.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push(format!(
            "TERM={}",
            std::env::var("TERM").unwrap_or_else(|_| "xterm".into())
        ));
    }
    p.set_env(Some(env));
    if let Some(w) = &req.workdir {
        if !w.starts_with('/') {
            return Err(Error::InvalidSpec {
                container: name.into(),
                field: "workdir".into(),
                reason: format!("{w:?} is not an absolute path"),
            });
        }
        p.set_cwd(PathBuf::from(w));
    }
    if let Some(u) = &req.user {
        let r =
            super::spec::user::resolve(rootfs, Some(u)).map_err(|reason| Error::InvalidSpec {
                container: name.into(),
                field: "user".into(),
                reason,
            })?;
        p.set_user(
            UserBuilder::default()
                .uid(r.uid)
                .gid(r.gid)
                .additional_gids(r.additional_gids)
                .build()?,
        );
        // HOME follows the user unless the request sets it.
        if !req.env.contains_key("HOME")
            && let Some(env) = p.env_mut()
        {
            env.retain(|e| !e.starts_with("HOME="));
            env.push(format!("HOME={}", r.home));
        }
    }
    if req.tty
        && let Some(ws) = terminal_size()
    {
        p.set_console_size(Some(
            libcontainer::oci_spec::runtime::BoxBuilder::default()
                .height(ws.0 as u64)
                .width(ws.1 as u64)
                .build()?,
        ));
    }
    Ok(p)
}

/// Rows and columns of the caller's terminal: stdin's, or stdout's or stderr's (`-t` without
/// `-i` has stdin on /dev/null).
fn terminal_size() -> Option<(u16, u16)> {
    [0, 1, 2].into_iter().find_map(|fd| {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ fills the struct we own.
        (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0)
            .then_some((ws.ws_row, ws.ws_col))
    })
}

/// Runs `req` in the running container `id` with this process's stdio; returns the command's
/// exit code (128 + signal when a signal ended it).
pub fn run(state_dir: &Path, id: &str, req: &ExecRequest) -> Result<i32, Error> {
    let dir = paths::container_dir(state_dir, id);
    // Announced before the state is read (see [`InFlight`]): a delete that reads the exit after
    // this sees the file and waits; one that read it before, this check sees as not running.
    let process_file = exec_file(&dir, std::process::id() as i32);
    let _in_flight = InFlight::announce(&process_file, id)?;
    let st = ContainerState::load(&dir)?.ok_or_else(|| Error::NotFound(id.to_string()))?;
    match (st.status, st.pid) {
        (Status::Running, Some(pid)) if is_same_process(pid, st.pid_start) => {}
        _ => return Err(not_running(&st)),
    }
    if req.argv.is_empty() {
        return Err(Error::InvalidSpec {
            container: st.name,
            field: "exec".into(),
            reason: "no command given".into(),
        });
    }
    let config = dir.join("config.json");
    let spec = Spec::load(&config).map_err(|e| Error::Runtime {
        container: st.name.clone(),
        reason: format!("{}: {e}", config.display()),
    })?;
    let rootfs = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_default();
    let process = process_for(&spec, req, &rootfs, &st.name)?;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    if seccomp.is_some() && process.no_new_privileges() != Some(true) {
        return Err(Error::Runtime {
            container: st.name,
            reason: "exec needs no-new-privileges to apply the container's seccomp profile \
                     (libcontainer 0.7.0 does not apply it to exec'd processes itself)"
                .into(),
        });
    }
    let json = serde_json::to_vec(&process).map_err(|source| Error::Json {
        path: process_file.clone(),
        source,
    })?;
    fs::write(&process_file, json).map_err(Error::io("write", &process_file))?;
    let executor = SeccompExecutor {
        seccomp,
        winsize: if req.tty { terminal_size() } else { None },
    };
    let result = run_tenant(&dir, id, &st.name, &process_file, req.tty, executor);
    // A failure because the container's process ended meanwhile (a crash-looping container
    // between two runs) says so, not what libcontainer met on the way (a vanished /proc/<pid>,
    // a broken channel, a refused notify socket). An init that is exiting can still look alive
    // for a while (it waits for every process of its pid namespace to die, the exec'd one
    // included): one marked exiting by the kernel counts as ended, and a record that still says
    // running gets two seconds to change.
    if result.is_err() {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let still_running = || {
            ContainerState::load(&dir).ok().flatten().is_some_and(|n| {
                n.status == Status::Running
                    && n.pid == st.pid
                    && n.pid
                        .is_some_and(|p| is_same_process(p, n.pid_start) && !is_exiting(p))
            })
        };
        while still_running() {
            if std::time::Instant::now() >= deadline {
                return result;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        return Err(Error::ExecNotRunning {
            container: st.name,
            detail: format!("its process ended while the command was starting {ENDED}"),
        });
    }
    result
}

/// The process file of the `agent exec` with pid `pid` in container directory `dir`.
fn exec_file(dir: &Path, pid: i32) -> PathBuf {
    dir.join(format!("exec-{pid}.json"))
}

/// `<dir>/exec-<pid>.json` while `agent exec` runs (libcontainer's process file, written first
/// empty), removed when it ends. libcontainer's tenant adds its process to the container's
/// cgroup, and on cgroup v1 makes the cgroup's directory in every hierarchy to do so, after it
/// checked that the container runs: an exec that checked just before the container's init
/// exited makes the cgroup again after the monitor removed it, and nothing would remove that
/// empty cgroup. So [`super::driver::ExecDriver::delete`] waits for the execs this file
/// announces ([`in_flight`]) before it removes the cgroup's leftovers.
struct InFlight(PathBuf);

impl InFlight {
    fn announce(path: &Path, id: &str) -> Result<InFlight, Error> {
        match fs::write(path, b"") {
            Ok(()) => Ok(InFlight(path.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::NotFound(id.to_string()))
            }
            Err(e) => Err(Error::io("write", path)(e)),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The pids of the `agent exec` processes that run in container directory `dir` now: their
/// [`InFlight`] files whose process lives and is no zombie (a file left by an exec killed
/// outright is skipped, unless its pid was reused meanwhile).
pub fn in_flight(dir: &Path) -> Vec<i32> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let pid = name
                .to_str()?
                .strip_prefix("exec-")?
                .strip_suffix(".json")?;
            pid.parse::<i32>().ok().filter(|&p| p > 0)
        })
        .filter(|&p| {
            // Alive and not a zombie (state `Z` after the command name).
            fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|st| {
                st.rsplit_once(')')
                    .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Whether the kernel is ending process `pid` (`PF_EXITING` in its flags): an init that waits for
/// the rest of its pid namespace to die is not a zombie yet.
fn is_exiting(pid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // After the command name: state, ppid, pgrp, session, tty_nr, tpgid, flags.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(6)?.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_EXITING != 0)
}

/// Said of a container whose process ended a moment ago.
const ENDED: &str = "(it is stopping or restarting); try again once `agent ps` shows it running";

/// Why `st` cannot take an exec, in words.
fn not_running(st: &ContainerState) -> Error {
    let detail = match st.status {
        Status::Created => "it has not been started".to_string(),
        Status::Failed => format!(
            "its last start failed: {}",
            st.error.as_deref().unwrap_or("no reason recorded")
        ),
        Status::Exited => {
            let how = match (st.signal, st.exit_code) {
                (Some(sig), _) => format!(" (signal {sig})"),
                (None, Some(code)) => format!(" (code {code})"),
                (None, None) => String::new(),
            };
            let when = st
                .finished_at
                .as_deref()
                .map(|t| format!(" at {t}"))
                .unwrap_or_default();
            format!(
                "its process exited{how}{when}; if its restart policy is restarting it \
                 (`agent ps` says `restarting`), try again once it runs"
            )
        }
        Status::Running => format!("its process has ended {ENDED}"),
    };
    Error::ExecNotRunning {
        container: st.name.clone(),
        detail,
    }
}

fn run_tenant(
    dir: &Path,
    id: &str,
    name: &str,
    process_file: &Path,
    tty: bool,
    executor: SeccompExecutor,
) -> Result<i32, Error> {
    let lc = |e: libcontainer::error::LibcontainerError| Error::Runtime {
        container: name.to_string(),
        reason: chain(&e),
    };
    let console = if tty {
        let path = std::env::temp_dir().join(format!("agent-exec-{}.sock", std::process::id()));
        let _ = fs::remove_file(&path);
        let l = UnixListener::bind(&path).map_err(Error::io("listen", &path))?;
        Some((l, path))
    } else {
        None
    };
    // The exec'd process must not inherit ignored signals (Rust's SIGPIPE, an agent's nohup).
    super::monitor::default_signal_dispositions();
    catch_signals();
    let built = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
        .with_root_path(dir.join(RUNTIME_DIR))
        .map_err(lc)?
        .with_executor(executor)
        .with_console_socket(console.as_ref().map(|(_, p)| p.clone()))
        .as_tenant()
        .with_process(Some(process_file))
        .with_detach(tty)
        .build();
    let master = match (&console, &built) {
        (Some((l, _)), Ok(_)) => Some(receive_master(l)?),
        _ => None,
    };
    if let Some((_, p)) = &console {
        let _ = fs::remove_file(p);
    }
    let pid = Pid::from_raw(built.map_err(lc)?.as_raw());
    forward_to(pid);
    let status = match master {
        Some(m) => relay_terminal(m, pid)?,
        None => wait(pid)?,
    };
    Ok(match status {
        WaitStatus::Exited(_, c) => c,
        WaitStatus::Signaled(_, s, _) => 128 + s as i32,
        _ => 255,
    })
}

/// The exec'd process, for the signal handlers.
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);
/// SIGWINCH arrived: the relay copies the new terminal size to the container's pty.
static WINCH: AtomicBool = AtomicBool::new(false);

/// The signals `agent exec` passes on to the command (Ctrl-C, `timeout`, `kill`, a closed
/// terminal): the command ends when `agent exec` is told to end, and `agent exec` reports how
/// it ended. SIGKILL cannot be caught: the command's parent-death signal covers it.
const FORWARDED: [Signal; 6] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// A forwarded signal that arrived before the command's pid was known (0: none).
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    } else {
        PENDING.store(sig, Ordering::SeqCst);
    }
}

extern "C" fn winch(_: libc::c_int) {
    WINCH.store(true, Ordering::SeqCst);
}

/// Catches the [`FORWARDED`] signals (held until [`forward_to`] names the command) and
/// SIGWINCH. Called before libcontainer forks: the command's process gets its signals back at
/// their defaults when it execs (caught signals do not survive `execve`).
fn catch_signals() {
    let act = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in FORWARDED {
        // SAFETY: the handler only calls kill(2) or stores into an atomic.
        let _ = unsafe { sigaction(sig, &act) };
    }
    let act = SigAction::new(
        SigHandler::Handler(winch),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores into an atomic.
    let _ = unsafe { sigaction(Signal::SIGWINCH, &act) };
}

/// From now on the caught signals go to `pid`; one that came meanwhile goes now.
fn forward_to(pid: Pid) {
    FORWARD_TO.store(pid.as_raw(), Ordering::SeqCst);
    let sig = PENDING.swap(0, Ordering::SeqCst);
    if sig > 0 {
        // SAFETY: plain kill(2).
        unsafe { libc::kill(pid.as_raw(), sig) };
    }
}

fn wait(pid: Pid) -> Result<WaitStatus, Error> {
    loop {
        match waitpid(pid, None) {
            Ok(ws @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Ok(ws),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::Sys {
                    op: "waitpid",
                    source: e,
                });
            }
        }
    }
}

/// Accepts libcontainer's connection on the console socket and takes the pty master from it.
fn receive_master(l: &UnixListener) -> Result<OwnedFd, Error> {
    let (conn, _) = l.accept().map_err(Error::io("accept", "console socket"))?;
    let mut data = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // Room for one descriptor.
    let mut cbuf = [0u64; 8];
    // SAFETY: a zeroed msghdr is a valid value; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: recvmsg on a connected socket we own, into buffers described by msg.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(Error::io("receive pty", "console socket")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: CMSG_FIRSTHDR/CMSG_DATA walk the control buffer the kernel filled.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if !c.is_null() && (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS
        {
            let fd: RawFd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
            return Ok(OwnedFd::from_raw_fd(fd));
        }
    }
    Err(Error::io("receive pty", "console socket")(
        std::io::Error::other("no descriptor in the message"),
    ))
}

/// Restores the terminal settings when dropped.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enter() -> RawMode {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        match tcgetattr(&stdin) {
            Ok(orig) => {
                let mut raw = orig.clone();
                cfmakeraw(&mut raw);
                let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
                RawMode(Some(orig))
            }
            Err(_) => RawMode(None),
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(orig) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                orig,
            );
        }
    }
}

/// Copies stdin -> pty master and master -> stdout until the process ends.
fn relay_terminal(master: OwnedFd, pid: Pid) -> Result<WaitStatus, Error> {
    let _raw = RawMode::enter();
    let mut buf = [0u8; 4096];
    let mut stdin_open = true;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if stdin_open { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll on an array we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 200) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if fds[0].revents != 0 {
            // SAFETY: read into our buffer.
            let r = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                break; // EIO: the slave side is closed, the process ended
            }
            write_all(1, &buf[..r as usize]);
        }
        if fds[1].revents != 0 {
            // SAFETY: read into our buffer.
            let r = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                stdin_open = false;
            } else {
                write_all(master.as_raw_fd(), &buf[..r as usize]);
            }
        }
        if WINCH.swap(false, Ordering::SeqCst)
            && let Some((rows, cols)) = terminal_size()
        {
            set_winsize(master.as_raw_fd(), rows, cols);
        }
        if n == 0
            && let Ok(ws @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) =
                waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
        {
            return Ok(ws);
        }
    }
    wait(pid)
}

fn write_all(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: write from our buffer.
        let w = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if w <= 0 {
            return;
        }
        data = &data[w as usize..];
    }
}

/// Environment of the request parsed from `KEY=VALUE` strings.
pub fn parse_env(items: &[String]) -> Result<HashMap<String, String>, Error> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Error::InvalidSpec {
                container: String::new(),
                field: "env".into(),
                reason: format!("{kv:?} is not KEY=VALUE"),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_lists_the_announced_execs_that_live() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("true")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let zombie = child.id() as i32;
        let mut reaped = std::process::Command::new("true")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let gone = reaped.id() as i32;
        reaped.wait().unwrap_or_else(|e| panic!("{e}"));
        // Ended, not reaped yet: a zombie.
        while !fs::read_to_string(format!("/proc/{zombie}/stat")).is_ok_and(|s| s.contains(") Z")) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(in_flight(d.path()).is_empty());
        let announced =
            InFlight::announce(&exec_file(d.path(), me), "c1").unwrap_or_else(|e| panic!("{e}"));
        for p in [gone, zombie] {
            fs::write(exec_file(d.path(), p), b"").unwrap_or_else(|e| panic!("{e}"));
        }
        for other in ["exec-x.json", "exec-0.json", "exec-12.log", "state.json"] {
            fs::write(d.path().join(other), b"").unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(in_flight(d.path()), vec![me]);
        drop(announced);
        assert!(in_flight(d.path()).is_empty());
        child.wait().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(
                InFlight::announce(&exec_file(&d.path().join("gone"), me), "c1"),
                Err(Error::NotFound(id)) if id == "c1"
            ),
            "a removed container is not found"
        );
    }
}
