//! `agent-init`: the small init a container with `init: true` runs as its PID 1 (Docker's
//! `--init`, which runs tini; Podman's catatonit). Usage: `agent-init -- COMMAND [ARG...]`.
//!
//! - It starts COMMAND as its one child, in a process group of its own (as tini does), with
//!   every signal unblocked and at its default disposition.
//! - It forwards every signal it receives to the child (SIGCHLD excepted): the stop signal, a
//!   `agent kill -s HUP`, ... As PID 1 of its namespace it would otherwise ignore them, because
//!   the kernel drops signals PID 1 has no handler for.
//! - It reaps every process that ends up as its child (orphans reparented to PID 1 included), so
//!   no zombie stays in the container's process table.
//! - When the child exits it exits with the child's code (128 + N when a signal N ended it);
//!   the kernel then ends whatever is left in the container.
//! - A COMMAND that cannot be run: a message on stderr and exit code 127 (not found) or 126
//!   (any other error), as shells do.
//!
//! Not PID 1 (a shared PID namespace), it makes itself the child subreaper instead.
//!
//! It is built by `agent/build.rs` as a static executable (`-C target-feature=+crt-static`:
//! glibc's `libc.a`) because the container's root filesystem may have no C library, embedded in
//! the `agent` binary and written to `<state>/bin/agent-init` by the exec driver, which
//! bind-mounts it read-only at `/sbin/agent-init`. It uses only `std` and a few libc calls
//! declared here (no crates), so that build.rs can compile it with a plain `rustc` call.

use std::ffi::c_int;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// glibc's `sigset_t`: 1024 bits.
#[repr(C)]
struct SigSet([u64; 16]);

unsafe extern "C" {
    fn sigfillset(set: *mut SigSet) -> c_int;
    fn sigdelset(set: *mut SigSet, sig: c_int) -> c_int;
    fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn sigwaitinfo(set: *const SigSet, info: *mut u8) -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn getpid() -> c_int;
    fn prctl(option: c_int, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> c_int;
}

const SIG_SETMASK: c_int = 2;
const SIGCHLD: c_int = 17;
const WNOHANG: c_int = 1;
const PR_SET_CHILD_SUBREAPER: c_int = 36;
/// Signals the kernel raises for a fault of this process itself: left unblocked.
const SYNCHRONOUS: [c_int; 7] = [4, 5, 6, 7, 8, 11, 31]; // ILL TRAP ABRT BUS FPE SEGV SYS

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--") {
        args.remove(0);
    }
    if args.is_empty() {
        eprintln!("agent-init: usage: agent-init -- COMMAND [ARG...]");
        std::process::exit(2);
    }
    // Every signal but the synchronous ones: blocked, then taken with sigwaitinfo.
    let mut all = SigSet([0; 16]);
    // SAFETY: plain libc calls on a sigset we own.
    unsafe {
        if getpid() != 1 {
            prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        sigfillset(&mut all);
        for s in SYNCHRONOUS {
            sigdelset(&mut all, s);
        }
        sigprocmask(SIG_SETMASK, &all, std::ptr::null_mut());
    }
    // std puts SIGPIPE back to its default in the child, but keeps the signal mask: the
    // command must start with none blocked (busybox sh does not unblock them itself).
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]).process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only calls sigprocmask,
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let none = SigSet([0; 16]);
            sigprocmask(SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c.id() as c_int,
        Err(e) => {
            eprintln!("agent-init: cannot run {}: {e}", args[0]);
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            std::process::exit(code);
        }
    };
    loop {
        if let Some(code) = reap(child) {
            std::process::exit(code);
        }
        // SAFETY: waits for one of the blocked signals; no siginfo wanted.
        let sig = unsafe { sigwaitinfo(&all, std::ptr::null_mut()) };
        if sig > 0 && sig != SIGCHLD {
            // SAFETY: signalling our own child; it may be gone already (ESRCH is fine).
            unsafe { kill(child, sig) };
        }
    }
}

/// Reaps every child that has ended; the exit code of `child` if it was one of them.
fn reap(child: c_int) -> Option<i32> {
    let mut code = None;
    loop {
        let mut status: c_int = 0;
        // SAFETY: waitpid writes the status of a reaped child into `status`.
        let pid = unsafe { waitpid(-1, &mut status, WNOHANG) };
        if pid <= 0 {
            return code;
        }
        if pid == child {
            let signal = status & 0x7f;
            code = Some(if signal == 0 {
                (status >> 8) & 0xff
            } else {
                128 + signal
            });
        }
    }
}
