//! End-to-end: CLI commands run while the agent starts (issue 20 item 4). The agent takes the
//! state directory's lock before its socket listens; a command run in between found neither and
//! failed with "state directory ... is in use by another agent". Now it waits for the socket.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

/// `agent ps` in a loop on another thread while `start` runs; returns every failed call.
fn ps_during(d: &mut Daemon, start: impl FnOnce(&mut Daemon)) -> (usize, Vec<String>) {
    let done = Arc::new(AtomicBool::new(false));
    let (socket, state, config) = (d.socket.clone(), d.state.clone(), d.config.clone());
    let flag = done.clone();
    let asker = std::thread::spawn(move || {
        let mut calls = 0;
        let mut failures = Vec::new();
        while !flag.load(Ordering::SeqCst) {
            let out = Command::new(agent_e2e::agent_bin())
                .args(["ps", "--socket"])
                .arg(&socket)
                .arg("--state-dir")
                .arg(&state)
                .arg("--config")
                .arg(&config)
                .output()
                .unwrap_or_else(|e| panic!("agent ps: {e}"));
            calls += 1;
            if !out.status.success() {
                failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
            }
        }
        (calls, failures)
    });
    start(d);
    done.store(true, Ordering::SeqCst);
    asker
        .join()
        .unwrap_or_else(|_| panic!("the ps thread panicked"))
}

#[test]
fn ps_answers_while_the_agent_starts() {
    if !require_root("ps_answers_while_the_agent_starts") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("startcli", "");
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    d.write("a.yaml", &container_manifest("a", "sleep 1000", ""));
    d.start();
    d.wait_for("a running", Duration::from_secs(60), || {
        (d.try_ps_row("a")?["state"] == "running").then_some(())
    });
    d.stop();
    // Several starts, each with a store and containers to recover: every `agent ps` run
    // meanwhile answers (from the store before the agent locked it, from the agent after).
    let mut total = 0;
    for round in 0..3 {
        let (calls, failures) = ps_during(&mut d, Daemon::start);
        assert!(
            failures.is_empty(),
            "start {round}: {} of {calls} `agent ps` failed, first: {}",
            failures.len(),
            failures[0]
        );
        total += calls;
        d.stop();
    }
    assert!(total >= 3, "only {total} calls");
}
