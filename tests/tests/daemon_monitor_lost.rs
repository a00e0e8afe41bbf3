//! End-to-end (root): a container whose `agent monitor` is killed with -9 is noticed and
//! supervised again (issue 20 item 1). Before, it ran on with init as parent, `agent ps` said
//! `running`, and its output and exit code were lost for good.
//!
//! - killed while the agent runs: noticed at once (the agent holds a pidfd of every monitor),
//!   warned in the log, event `container.monitor-lost`, `agent ps` shows it; the repair (a
//!   `repair-monitor` change, cause `monitor lost`) stops the container with its real exit status
//!   (the TERM trap's `exit 3`, read as its tracer: not 143), records it, and starts it again
//!   under a new monitor: its new output reaches `agent logs`, a later `exit 7` is recorded by
//!   the new monitor and the restart policy (`on-failure`) restarts it;
//! - killed while the agent is down: found at start-up and repaired the same way;
//! - the agent killed -9 between the repair's stop and its start: the next start-up's recovery
//!   starts it (the start intent taken before the stop), under a monitor.

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};
use serde_json::Value;

/// Prints `start`, then a numbered line every 0.2 s; on SIGTERM prints `got-term`, takes a
/// second and exits 3; exits 7 once `/tmp/quit` exists (removing it: the restart keeps /tmp).
const SCRIPT: &str = "trap 'echo got-term; sleep 1; exit 3' TERM; echo start; n=0; \
                      while true; do n=$((n+1)); echo line-$n; \
                      if [ -f /tmp/quit ]; then rm /tmp/quit; echo quitting; exit 7; fi; sleep 0.2; done";

fn manifest() -> String {
    container_manifest("tick", SCRIPT, "  restart: on-failure\n")
        .replace("stopGracePeriod: 1s", "stopGracePeriod: 10s")
}

fn inspect(d: &Daemon) -> Value {
    serde_json::from_str(&d.cli_ok(&["inspect", "tick"])).expect("inspect tick")
}

/// `inspect`, or `None` while there is no such container yet.
fn try_inspect(d: &Daemon) -> Option<Value> {
    let out = d.cli(&["inspect", "tick"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn logs(d: &Daemon) -> String {
    let out = std::process::Command::new(agent_e2e::agent_bin())
        .args(["logs", "tick", "--state-dir"])
        .arg(&d.state)
        .output()
        .expect("agent logs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The running monitor's pid, once `inspect` says it is alive.
fn live_monitor(d: &Daemon) -> i32 {
    d.wait_for(
        "tick running with its monitor",
        Duration::from_secs(60),
        || {
            let i = try_inspect(d)?;
            (i["container"]["state"] == "running" && i["monitor_alive"] == true)
                .then(|| i["monitor_pid"].as_i64())
                .flatten()
                .map(|p| p as i32)
        },
    )
}

fn kill9(pid: i32) {
    // SAFETY: kill(2) of a monitor of this test's agent (found through its inspect).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
}

fn starts_in_logs(d: &Daemon) -> usize {
    logs(d).lines().filter(|l| l.trim_end() == "start").count()
}

/// After a repair: supervised again (a new, live monitor), new output in `agent logs`, and a
/// later exit recorded with its code and handled by the restart policy.
fn supervised_again(d: &Daemon, old_monitor: i32, starts_before: usize) {
    let new_monitor = live_monitor(d);
    assert_ne!(new_monitor, old_monitor);
    // The store records the new monitor too (`containers.monitor_pid`) once the repair ends.
    d.wait_for(
        "the new monitor in the store",
        Duration::from_secs(20),
        || (inspect(d)["container"]["runtime"]["monitor_pid"] == new_monitor).then_some(()),
    );
    let id = inspect(d)["container"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // Its output since the repair reaches the log: the new run's `start` and lines after it.
    d.wait_for(
        "output of the repaired run",
        Duration::from_secs(20),
        || {
            let text = logs(d);
            let after = text.rsplit("start\n").next().unwrap_or("");
            (starts_in_logs(d) > starts_before && after.contains("line-3")).then_some(())
        },
    );
    // A later exit is recorded by the new monitor, with its code; on-failure restarts it.
    assert!(d.sh_in(&id, "touch /tmp/quit"), "touch /tmp/quit in {id}");
    let exit = d.wait_for("the exit with code 7", Duration::from_secs(20), || {
        d.events_of("tick", "container.exit")
            .into_iter()
            .find(|e| e["message"]["exitCode"] == 7)
    });
    assert!(exit["message"].get("lost").is_none(), "{exit}");
    d.wait_for("the restart by policy", Duration::from_secs(30), || {
        let r = d.ps_row("tick");
        (r["state"] == "running" && r["restarts"] == 1).then_some(())
    });
    assert!(
        d.events_of("tick", "container.restart").len() == 1,
        "{:?}",
        d.events_of("tick", "container.restart")
    );
}

#[test]
fn a_monitor_killed_while_the_agent_runs_is_repaired() {
    if !require_root("a_monitor_killed_while_the_agent_runs_is_repaired") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("monlost", "");
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    d.write("tick.yaml", &manifest());
    d.start();
    let monitor = live_monitor(&d);
    d.wait_for("first output", Duration::from_secs(20), || {
        logs(&d).contains("line-2").then_some(())
    });
    let starts = starts_in_logs(&d);
    assert_eq!(starts, 1);
    kill9(monitor);
    // Noticed: event, warning, and `ps` while it lasts (the stop takes a second: the trap).
    let lost = d.wait_for("the monitor-lost event", Duration::from_secs(10), || {
        d.events_of("tick", "container.monitor-lost").pop()
    });
    assert_eq!(lost["message"]["cause"], "monitor lost", "{lost}");
    let row = d.wait_for(
        "ps showing the lost monitor",
        Duration::from_secs(10),
        || {
            let r = d.ps_row("tick");
            r["error"]
                .as_str()
                .is_some_and(|e| e.contains("monitor process is gone"))
                .then_some(r)
        },
    );
    assert!(
        row["state"] == "monitor-lost" || row["state"] == "stopping",
        "{row}"
    );
    assert!(
        d.log_text().contains("its monitor process is gone"),
        "no warning in the agent log:\n{}",
        d.log_tail()
    );
    // Repaired: the stop's real exit status (the trap's exit 3) recorded with the cause.
    let stop = d.wait_for("the repair's exit", Duration::from_secs(20), || {
        d.events_of("tick", "container.exit")
            .into_iter()
            .find(|e| e["message"]["cause"] == "monitor lost")
    });
    assert_eq!(stop["message"]["exitCode"], 3, "{stop}");
    assert!(
        stop["message"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("tracer")),
        "{stop}"
    );
    d.wait_for("the repair", Duration::from_secs(20), || {
        d.events_of("tick", "container.monitor-repaired").pop()
    });
    supervised_again(&d, monitor, starts);
    // Nothing left to warn about, no intent left open.
    let status = d.cli_json(&["status"]);
    assert!(
        status["warnings"].as_array().is_none_or(|w| w.is_empty()),
        "{status}"
    );
    assert_eq!(d.monitor_pids().len(), 1, "{:?}", d.monitor_pids());
    assert_eq!(d.ps_row("tick")["restarts"], 1);
    d.remove_all_and_wait(Duration::from_secs(60));
}

#[test]
fn a_monitor_killed_while_the_agent_is_down_is_repaired_at_start_up() {
    if !require_root("a_monitor_killed_while_the_agent_is_down_is_repaired_at_start_up") {
        return;
    }
    require_images();
    // Containers stay when the agent stops.
    let mut d = Daemon::prepare_with("monlostdown", "", false);
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    d.write("tick.yaml", &manifest());
    d.start();
    let monitor = live_monitor(&d);
    d.wait_for("first output", Duration::from_secs(20), || {
        logs(&d).contains("line-2").then_some(())
    });
    let starts = starts_in_logs(&d);
    d.stop();
    kill9(monitor);
    d.start();
    let lost = d.wait_for("the monitor-lost event", Duration::from_secs(20), || {
        d.events_of("tick", "container.monitor-lost").pop()
    });
    assert_eq!(lost["message"]["cause"], "monitor lost", "{lost}");
    let stop = d.wait_for("the repair's exit", Duration::from_secs(30), || {
        d.events_of("tick", "container.exit")
            .into_iter()
            .find(|e| e["message"]["cause"] == "monitor lost")
    });
    assert_eq!(stop["message"]["exitCode"], 3, "{stop}");
    supervised_again(&d, monitor, starts);
    d.remove_all_and_wait(Duration::from_secs(60));
    d.stop();
}

#[test]
fn the_agent_killed_in_the_middle_of_the_repair_finishes_it_at_start_up() {
    if !require_root("the_agent_killed_in_the_middle_of_the_repair_finishes_it_at_start_up") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare_with("monlostcrash", "", false);
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    d.write("tick.yaml", &manifest());
    d.start();
    let monitor = live_monitor(&d);
    d.wait_for("first output", Duration::from_secs(20), || {
        logs(&d).contains("line-2").then_some(())
    });
    let starts = starts_in_logs(&d);
    // A life of the agent that pauses every start and the repair half-way.
    d.stop();
    d.env("AGENT_DEBUG_STEP_DELAY_MS", "4000");
    d.start();
    kill9(monitor);
    // The repair has stopped the container (its exit recorded) and pauses before the start.
    d.wait_for(
        "the repair paused after its stop",
        Duration::from_secs(30),
        || {
            d.log_text()
                .lines()
                .any(|l| l.contains("pausing half-way") && l.contains("monitor-repair"))
                .then_some(())
        },
    );
    d.stop_with(libc::SIGKILL);
    d.clear_env();
    d.start();
    let done = d.wait_for("recovery of the repair", Duration::from_secs(30), || {
        d.events_of("tick", "recovery.finish")
            .into_iter()
            .find(|e| {
                e["message"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("repair of the lost monitor"))
            })
    });
    assert!(
        done["message"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("exit code 3")),
        "{done}"
    );
    supervised_again(&d, monitor, starts);
    d.remove_all_and_wait(Duration::from_secs(60));
    d.stop();
}
