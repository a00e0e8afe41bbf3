//! Crashes in the middle of an apply: `kill -9` of the agent half-way through a container
//! create and through a recreate, and SIGTERM in the middle of a pass. The agent is slowed down
//! with `AGENT_DEBUG_STEP_DELAY_MS` (every container step pauses half-way, after the runtime was
//! changed and before the store recorded it), killed there, restarted without the delay, and
//! must converge: every container running once with the wanted config, no orphan or duplicate
//! runtime container, nothing restarted that was not touched. Driven through files and the CLI.
//! The agent applies one change at a time here (`workers = 1`), so that exactly one step is
//! half-applied at each kill; torture_kill9 kills it with many changes in flight.

use std::collections::BTreeSet;
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

const NAMES: [&str; 4] = ["c1", "c2", "c3", "c4"];

fn write_all(d: &Daemon, version: u32) {
    for n in NAMES {
        d.write(
            &format!("{n}.yaml"),
            &container_manifest(
                n,
                "exec sleep 1000",
                &format!("  restart: always\n  env: {{V: \"{version}\"}}\n"),
            ),
        );
    }
}

/// Log lines of the half-way pauses of `step` so far.
fn pauses(d: &Daemon, step: &str) -> usize {
    d.log_text()
        .lines()
        .filter(|l| l.contains("pausing half-way") && l.contains(&format!("\"step\":\"{step}\"")))
        .count()
}

fn wait_pauses(d: &Daemon, step: &str, n: usize) {
    d.wait_for(
        &format!("{n} {step} pauses"),
        Duration::from_secs(60),
        || (pauses(d, step) >= n).then_some(()),
    );
}

/// Every container running with `V=version`, each exactly once in the runtime, no other
/// runtime container; returns the ids.
fn converged(d: &Daemon, version: u32) -> BTreeSet<String> {
    d.wait_for(
        &format!("all running with V={version}"),
        Duration::from_secs(90),
        || {
            let _ = d.cli(&["apply"]);
            let rows = d.cli_json(&["ps"]);
            let rows = rows.as_array()?;
            let ok = rows.len() == NAMES.len()
                && rows.iter().all(|r| {
                    r["state"] == "running"
                        && r["id"]
                            .as_str()
                            .is_some_and(|id| d.sh_in(id, &format!("test \"$V\" = {version}")))
                });
            ok.then_some(())
        },
    );
    let ids: BTreeSet<String> = d
        .cli_json(&["ps"])
        .as_array()
        .expect("ps rows")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), NAMES.len());
    let runtime: BTreeSet<String> = d.runtime_ids().into_iter().collect();
    assert_eq!(
        runtime, ids,
        "runtime containers other than the recorded ones"
    );
    ids
}

/// Recreates of containers whose create or removal a crash cut short.
fn half_made(d: &Daemon) -> Vec<serde_json::Value> {
    d.events()
        .into_iter()
        .filter(|e| {
            e["kind"] == "container.recreate"
                && e["message"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("teardown did not finish"))
        })
        .collect()
}

fn recovery_events(d: &Daemon) -> Vec<serde_json::Value> {
    d.events()
        .into_iter()
        .filter(|e| {
            e["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("recovery."))
        })
        .collect()
}

#[test]
fn kill_9_mid_apply_and_sigterm_mid_pass_converge() {
    if !require_root("kill_9_mid_apply_and_sigterm_mid_pass_converge") {
        return;
    }
    require_images();
    // One change at a time: the test cuts single steps short (the parallel case is
    // torture_kill9's).
    let mut d = Daemon::prepare_with("crash", "workers = 1\n", false);
    d.env("AGENT_DEBUG_STEP_DELAY_MS", "1500");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    write_all(&d, 1);

    // 1. kill -9 half-way through the second create: its runtime container exists, its row
    //    says `removing`.
    wait_pauses(&d, "create", 2);
    d.stop_with(libc::SIGKILL);
    d.clear_env();
    d.start();
    let first = converged(&d, 1);
    // The container cut short in its create was recorded `removing` first: recreated.
    assert_eq!(half_made(&d).len(), 1, "{:?}", half_made(&d));
    for n in NAMES {
        assert_eq!(d.ps_row(n)["restarts"], 0, "{n}");
    }

    // 2. kill -9 in the middle of a recreate: the old container removed, the new one created
    //    but not recorded as such.
    d.stop_with(libc::SIGKILL);
    d.env("AGENT_DEBUG_STEP_DELAY_MS", "1500");
    d.start();
    let creates = pauses(&d, "create");
    write_all(&d, 2);
    wait_pauses(&d, "create", creates + 1);
    d.stop_with(libc::SIGKILL);
    d.clear_env();
    d.start();
    let second = converged(&d, 2);
    assert!(
        first.is_disjoint(&second),
        "recreated containers keep no old id"
    );
    assert_eq!(half_made(&d).len(), 2, "{:?}", half_made(&d));

    // 3. SIGTERM in the middle of a pass: the current change is finished, the rest of the plan
    //    is left for the next start (no step begins after the signal, nothing is half-applied).
    d.stop_with(libc::SIGKILL);
    d.env("AGENT_DEBUG_STEP_DELAY_MS", "1500");
    d.start();
    let steps = ["remove", "create", "start"];
    let before: Vec<usize> = steps.iter().map(|s| pauses(&d, s)).collect();
    write_all(&d, 3);
    // The first recreate (remove, create, start of one container) has begun.
    wait_pauses(&d, "remove", before[0] + 1);
    let status = d.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let after: Vec<usize> = steps.iter().map(|s| pauses(&d, s)).collect();
    assert_eq!(
        after,
        before.iter().map(|n| n + 1).collect::<Vec<_>>(),
        "(remove, create, start) pauses: the recreate in progress is finished, no other begins"
    );
    assert!(d.log_text().contains("left for the next start"));
    let recoveries = recovery_events(&d).len();
    d.clear_env();
    d.start();
    converged(&d, 3);
    assert_eq!(
        recovery_events(&d).len(),
        recoveries,
        "a graceful stop left something half-applied"
    );

    d.remove_all_and_wait(Duration::from_secs(60));
    assert!(d.runtime_ids().is_empty());
}
