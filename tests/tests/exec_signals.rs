//! Containers start with every signal at its default disposition and none blocked, whatever the
//! agent inherited: an agent run under `nohup` ignores SIGHUP, one started with `&` from a script
//! ignores SIGINT and SIGQUIT, and an ignored signal survives `execve` (a container's
//! `trap ... HUP` would then silently do nothing). This test ignores them in its own process, which
//! the monitors it starts inherit; it is the only test of this binary because dispositions are
//! process-wide.

use std::time::Duration;

use agent::driver::exec::ExecDriver;
use agent_e2e::exec::{Fixture, exited, require_root};

/// The `SigIgn` / `SigBlk` mask of a `/proc/<pid>/status` text.
fn mask(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{status}"))
}

#[test]
fn containers_do_not_inherit_ignored_signals() {
    if !require_root("containers_do_not_inherit_ignored_signals") {
        return;
    }
    for sig in [
        nix::sys::signal::Signal::SIGHUP,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGQUIT,
        nix::sys::signal::Signal::SIGUSR1,
    ] {
        // SAFETY: ignoring a signal has no preconditions; this binary runs no other test.
        unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigIgn) }
            .unwrap_or_else(|e| panic!("{sig}: {e}"));
    }
    let ours = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    assert_ne!(mask(&ours, "SigIgn:"), 0, "the test's own ignores are set");

    let mut f = Fixture::new("signals");
    // `cat` as the init process shows what it got from execve, with no shell in between.
    let s = f.spec("status");
    let (st, log) = f.run_to_end(s, &["/bin/cat", "/proc/self/status"]);
    assert_eq!(exited(&st, "status"), (0, None, false), "{log}");
    assert_eq!(
        mask(&log, "SigIgn:"),
        0,
        "container init inherited ignored signals:\n{log}"
    );
    assert_eq!(
        mask(&log, "SigBlk:"),
        0,
        "container init inherited blocked signals:\n{log}"
    );

    // The case that shows it: a trap on SIGHUP works, so a stop with SIGHUP ends it cleanly.
    let mut s = f.spec("hup");
    s.stop_signal = Some("SIGHUP".into());
    s.command = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "trap 'echo got-hup; exit 3' HUP; echo ready; while true; do sleep 0.1; done".into(),
    ]);
    let id = f.run(&s);
    f.wait_log(&id, "ready");
    let info = f
        .driver
        .stop(&id, Some(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exited(&info.status, "hup"), (3, None, false));

    // `agent exec` processes too.
    let mut s = f.spec("idle");
    s.command = Some(vec!["sleep".into(), "1000".into()]);
    let idle = f.run(&s);
    let out = f.agent(&["exec", &idle, "--", "/bin/cat", "/proc/self/status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        mask(&text, "SigIgn:"),
        0,
        "exec'd process inherited ignored signals:\n{text}"
    );
    f.driver
        .stop(&idle, Some(Duration::from_millis(100)))
        .unwrap_or_else(|e| panic!("{e}"));
}
