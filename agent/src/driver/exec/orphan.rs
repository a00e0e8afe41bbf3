//! Stopping a container whose monitor is gone (killed from outside): its init runs on with the
//! host's init (or a subreaper) as parent, so nothing would reap it for us, log its output or
//! record its exit.
//!
//! Only a process's parent can `wait` for it, and the parent of an orphaned container is not
//! the agent. To still record the real exit status of the stop, the driver attaches to the
//! container's init as its tracer (`PTRACE_SEIZE` with `PTRACE_O_TRACEEXIT`, which does not
//! stop it) before it sends the stop signal: a tracer is told the tracee's exit status, at
//! `PTRACE_EVENT_EXIT` (`PTRACE_GETEVENTMSG`) and in its own `waitpid`, whoever the parent is.
//! Signals the tracee receives meanwhile are passed on unchanged, a group stop is kept
//! (`PTRACE_LISTEN`). The stop signal, the grace period and SIGKILL are those of a normal stop.
//!
//! Where the kernel refuses the attach (Yama `ptrace_scope` 3, a tracer already attached) the
//! exit is recorded as the signal that ended it (128 + the stop signal, or 137 after SIGKILL)
//! and the record says so ([`OrphanExit::how`]), as containerd records 137 for a task it
//! deleted after its shim died. Everything here runs in the calling thread: the trace belongs to
//! it, and ends with the process (or with the thread, if the process outlives SIGKILL).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::Error;
use super::state::is_same_process;

const PTRACE_CONT: libc::c_long = 7;
const PTRACE_DETACH: libc::c_long = 17;
const PTRACE_GETEVENTMSG: libc::c_long = 0x4201;
const PTRACE_SEIZE: libc::c_long = 0x4206;
const PTRACE_LISTEN: libc::c_long = 0x4208;
const PTRACE_O_TRACEEXIT: libc::c_long = 0x40;
const PTRACE_EVENT_EXIT: i32 = 6;
const PTRACE_EVENT_STOP: i32 = 128;

/// How long a process may take to go after SIGKILL before the stop fails.
const AFTER_KILL: Duration = Duration::from_secs(10);

/// How an orphaned container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanExit {
    /// As a shell reports it: the code, or 128 + the signal.
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// How the status was learnt, for the record: read as its tracer, or inferred.
    pub how: String,
}

fn ptrace(req: libc::c_long, pid: i32, data: libc::c_long) -> libc::c_long {
    // SAFETY: the raw ptrace syscall with requests that take no pointer (SEIZE, CONT, LISTEN,
    // DETACH); GETEVENTMSG goes through `event_msg`.
    unsafe { libc::syscall(libc::SYS_ptrace, req, pid as libc::c_long, 0, data) }
}

fn event_msg(pid: i32) -> Option<libc::c_ulong> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: PTRACE_GETEVENTMSG writes one unsigned long to the address given in `data`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ptrace,
            PTRACE_GETEVENTMSG,
            pid as libc::c_long,
            0,
            &mut msg as *mut libc::c_ulong,
        )
    };
    (r == 0).then_some(msg)
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: the kernel just gave us this descriptor.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process behind `pidfd` (or `pid`, without one) has ended.
fn ended(pidfd: Option<&OwnedFd>, pid: i32, start: Option<u64>) -> bool {
    match pidfd {
        Some(fd) => {
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no timeout.
            unsafe { libc::poll(&mut p, 1, 0) > 0 }
        }
        None => !is_same_process(pid, start),
    }
}

fn send(pidfd: Option<&OwnedFd>, pid: i32, sig: i32) -> Result<(), Error> {
    // SAFETY: pidfd_send_signal on our descriptor (no siginfo), or kill(2) on a pid whose start
    // time the caller verified.
    let r = unsafe {
        match pidfd {
            Some(fd) => libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            ) as i32,
            None => libc::kill(pid, sig),
        }
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(Error::Sys {
                op: "signal the container whose monitor is gone",
                source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            });
        }
    }
    Ok(())
}

/// The exit code and signal in a wait status.
fn decode(status: i32) -> (i32, Option<i32>) {
    if libc::WIFSIGNALED(status) {
        let s = libc::WTERMSIG(status);
        (128 + s, Some(s))
    } else {
        (libc::WEXITSTATUS(status), None)
    }
}

/// Stops process `pid` (started at `start`), the init of a container whose monitor is gone:
/// signal `sig`, up to `grace`, then SIGKILL; returns how it ended (see the module docs).
/// `Ok(None)` when it had ended already (nothing to read any more).
pub fn stop(
    pid: i32,
    start: Option<u64>,
    sig: i32,
    grace: Duration,
) -> Result<Option<OrphanExit>, Error> {
    let pidfd = pidfd_open(pid);
    if !is_same_process(pid, start) {
        return Ok(None);
    }
    let pidfd = pidfd.as_ref();
    let mut traced = ptrace(PTRACE_SEIZE, pid, PTRACE_O_TRACEEXIT) == 0;
    let refused = (!traced).then(std::io::Error::last_os_error);
    let mut status: Option<i32> = None;
    let mut killed = false;
    send(pidfd, pid, sig)?;
    let mut deadline = Instant::now() + grace;
    loop {
        if traced {
            let mut s: libc::c_int = 0;
            // SAFETY: waitpid on our tracee, writing into `s`.
            let r = unsafe { libc::waitpid(pid, &mut s, libc::WNOHANG | libc::__WALL) };
            if r == pid {
                if libc::WIFEXITED(s) || libc::WIFSIGNALED(s) {
                    status = status.or(Some(s));
                    break;
                } else if libc::WIFSTOPPED(s) {
                    let event = (s >> 16) & 0xffff;
                    let stopsig = libc::WSTOPSIG(s);
                    if event == PTRACE_EVENT_EXIT {
                        if let Some(m) = event_msg(pid) {
                            status = i32::try_from(m).ok();
                        }
                        // It is on its way out: let it go and wait for it below.
                        ptrace(PTRACE_DETACH, pid, 0);
                        traced = false;
                    } else if event == PTRACE_EVENT_STOP {
                        ptrace(PTRACE_LISTEN, pid, 0);
                    } else {
                        // A signal for it: deliver it as if we were not there.
                        ptrace(PTRACE_CONT, pid, libc::c_long::from(stopsig));
                    }
                    continue;
                }
            } else if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    traced = false;
                }
            }
        }
        if !traced && ended(pidfd, pid, start) {
            break;
        }
        if Instant::now() >= deadline {
            if killed {
                return Err(Error::Runtime {
                    container: pid.to_string(),
                    reason: format!(
                        "process {pid} (its monitor is gone) still runs {} s after SIGKILL",
                        AFTER_KILL.as_secs()
                    ),
                });
            }
            send(pidfd, pid, libc::SIGKILL)?;
            killed = true;
            deadline = Instant::now() + AFTER_KILL;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let sig_name = |s: i32| {
        nix::sys::signal::Signal::try_from(s)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| format!("signal {s}"))
    };
    let sent = if killed {
        format!("{} then SIGKILL after the grace period", sig_name(sig))
    } else {
        sig_name(sig)
    };
    Ok(Some(match status {
        Some(s) => {
            let (exit_code, signal) = decode(s);
            OrphanExit {
                exit_code,
                signal,
                how: format!("stopped by the agent ({sent}); exit status read as its tracer"),
            }
        }
        None => {
            let s = if killed { libc::SIGKILL } else { sig };
            OrphanExit {
                exit_code: 128 + s,
                signal: Some(s),
                how: format!(
                    "stopped by the agent ({sent}); its exit status could not be read ({}), \
                     recorded as the signal that ended it",
                    refused
                        .map(|e| format!("ptrace refused: {e}"))
                        .unwrap_or_else(|| "the trace was lost".into())
                ),
            }
        }
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::driver::exec::state::process_start;

    /// A process that is not our child (its parent, a `sh`, exits at once: it goes to init or
    /// a subreaper) with a TERM trap that exits 7: the status read must be 7, not 143.
    #[test]
    fn reads_the_real_status_of_a_process_that_is_not_a_child() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("sh -c 'trap \"exit 7\" TERM; while :; do sleep 0.05; done' >/dev/null 2>&1 & echo $!")
            .output()
            .unwrap();
        let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let start = process_start(pid);
        let exit = stop(pid, start, libc::SIGTERM, Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert!(!is_same_process(pid, start));
        if exit.how.contains("tracer") {
            assert_eq!((exit.exit_code, exit.signal), (7, None), "{exit:?}");
        } else {
            // ptrace not allowed here (not root, Yama): inferred from the signal.
            assert_eq!(exit.exit_code, 143, "{exit:?}");
        }
        // Gone already: nothing to read.
        assert_eq!(
            stop(pid, start, libc::SIGTERM, Duration::ZERO).unwrap(),
            None
        );
    }

    #[test]
    fn sigkill_after_the_grace_period() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("sh -c 'trap \"\" TERM; while :; do sleep 0.05; done' >/dev/null 2>&1 & echo $!")
            .output()
            .unwrap();
        let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let start = process_start(pid);
        let exit = stop(pid, start, libc::SIGTERM, Duration::from_millis(300))
            .unwrap()
            .unwrap();
        assert_eq!((exit.exit_code, exit.signal), (137, Some(9)), "{exit:?}");
        assert!(exit.how.contains("SIGKILL"), "{exit:?}");
    }
}
