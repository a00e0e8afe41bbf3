//! Crashes in the middle of an apply: `kill -9` of the agent half-way through a container
//! create and through a recreate, and SIGTERM in the middle of a pass. The agent is slowed down
//! with `AGENT_DEBUG_STEP_DELAY_MS` (every container step pauses half-way, after the runtime was
//! changed and before the store recorded it), killed there, restarted without the delay, and
//! must converge: every container running once with the wanted config, no orphan or duplicate
//! runtime container, nothing restarted that was not touched. Driven through files and the CLI.
//! The first test applies one change at a time (`workers = 1`), so that exactly one step is
//! half-applied at each kill; the second kills it with several creates in flight at once
//! (default workers), half of them attaching a bridge network; torture_kill9 kills it at random
//! moments with many changes in flight.

use std::collections::BTreeSet;
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};
use agent_e2e::network::links_with_prefix;
use agent_e2e::torture::{ip_allocations, monitors, open_intents};

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

/// `n` containers `p0`.. (`restart: always`, sleeping); the odd ones on the default bridge.
fn write_parallel(d: &Daemon, n: usize) {
    for i in 0..n {
        let name = format!("p{i}");
        let text = container_manifest(&name, "exec sleep 1000", "  restart: always\n");
        let text = if !i.is_multiple_of(2) {
            text.replace("  networkMode: none\n", "")
        } else {
            text
        };
        d.write(&format!("{name}.yaml"), &text);
    }
}

#[test]
fn kill_9_with_parallel_creates_in_flight_converges() {
    if !require_root("kill_9_with_parallel_creates_in_flight_converges") {
        return;
    }
    require_images();
    const N: usize = 6;
    // Default workers: the six creates run at once, each pausing 3 s half-way.
    let mut d = Daemon::prepare_with("crashpar", "", false);
    d.env("AGENT_DEBUG_STEP_DELAY_MS", "3000");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    write_parallel(&d, N);
    wait_pauses(&d, "create", N);
    d.stop_with(libc::SIGKILL);

    // The store (read without the agent): every row still `removing`, each with its runtime
    // container made.
    let cut: BTreeSet<String> = d
        .cli_json(&["ps"])
        .as_array()
        .expect("ps rows")
        .iter()
        .filter(|r| r["state"] == "removing")
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    assert!(
        cut.len() >= 2,
        "several creates should have been cut short at once: {cut:?}\n{}",
        d.log_tail()
    );
    let before: BTreeSet<String> = d.runtime_ids().into_iter().collect();
    assert!(cut.is_subset(&before), "{cut:?} not all in {before:?}");
    println!(
        "kill -9 with {} of {N} creates half-way ({} runtime containers made)",
        cut.len(),
        before.len()
    );

    d.clear_env();
    d.start();
    let names: Vec<String> = (0..N).map(|i| format!("p{i}")).collect();
    let ids = d.wait_for("all running once", Duration::from_secs(90), || {
        let _ = d.cli(&["apply"]);
        let rows = d.cli_json(&["ps"]);
        let rows = rows.as_array()?;
        let ok = rows.len() == N
            && rows
                .iter()
                .all(|r| r["state"] == "running" && r["id"].as_str().is_some_and(|id| d.runs(id)));
        ok.then(|| {
            rows.iter()
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect::<BTreeSet<String>>()
        })
    });
    // Exactly one runtime container per row: the half-made ones were removed, not kept beside.
    assert_eq!(ids.len(), N);
    let runtime: BTreeSet<String> = d.runtime_ids().into_iter().collect();
    assert_eq!(
        runtime, ids,
        "runtime containers other than the recorded ones"
    );
    assert!(
        ids.is_disjoint(&cut),
        "a half-made container was kept: {:?}",
        ids.intersection(&cut).collect::<Vec<_>>()
    );
    // Every one cut short was recreated, once, and none restarted.
    let recreated: BTreeSet<String> = half_made(&d)
        .iter()
        .filter_map(|e| {
            e["object"]
                .as_str()?
                .strip_prefix("container/")
                .map(str::to_string)
        })
        .collect();
    assert_eq!(half_made(&d).len(), cut.len(), "{:?}", half_made(&d));
    assert_eq!(recreated.len(), cut.len(), "{recreated:?}");
    for n in &names {
        assert_eq!(d.ps_row(n)["restarts"], 0, "{n}");
    }
    // Nothing left of the half-made ones: one veth and address per bridged container, one
    // monitor per container, no open intent.
    let bridged = N / 2;
    d.wait_for("no leak", Duration::from_secs(30), || {
        let veths = links_with_prefix(&d.net.veth_prefix).len();
        let (ips, distinct) = ip_allocations(&d);
        (veths == bridged
            && ips == bridged as i64
            && distinct == ips
            && d.netns().len() == bridged
            && monitors(&d) == N
            && open_intents(&d, i64::MAX).1 == 0)
            .then_some(())
    });

    d.remove_all_and_wait(Duration::from_secs(60));
    assert!(d.runtime_ids().is_empty());
    d.wait_for("nothing left", Duration::from_secs(30), || {
        (links_with_prefix(&d.net.veth_prefix).is_empty()
            && ip_allocations(&d).0 == 0
            && d.netns().is_empty()
            && monitors(&d) == 0)
            .then_some(())
    });
}

/// kill -9 half-way through an `agent start` (the process started, the store not yet told):
/// the next start-up records the container running. Before `agent start` was journalled, the
/// container stayed recorded `stopped-by-user` while its process ran (`unless-stopped` keeps a
/// stopped-by-user container down at start-up), and every later `agent start` failed with
/// "container u is already running" (found by torture_kill9_supervision).
#[test]
fn kill_9_mid_user_start_records_it_running() {
    if !require_root("kill_9_mid_user_start_records_it_running") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare_with("crashstart", "", false);
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write(
        "u.yaml",
        &container_manifest("u", "exec sleep 1000", "  restart: unless-stopped\n"),
    );
    d.wait_for("u running", Duration::from_secs(60), || {
        (d.try_ps_row("u")?["state"] == "running").then_some(())
    });
    let id = d.ps_row("u")["id"].as_str().expect("id").to_string();
    d.cli_ok(&["stop", "-t", "0", "u"]);
    assert_eq!(d.ps_row("u")["state"], "stopped-by-user");
    assert!(!d.runs(&id));

    // A slow agent: `agent start` pauses after the process started.
    d.stop_with(libc::SIGKILL);
    d.env("AGENT_DEBUG_STEP_DELAY_MS", "3000");
    d.start();
    let mut start = std::process::Command::new(agent_e2e::agent_bin())
        .args(["start", "u", "--socket"])
        .arg(&d.socket)
        .arg("--state-dir")
        .arg(&d.state)
        .arg("--config")
        .arg(&d.config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn agent start");
    wait_pauses(&d, "start", 1);
    d.stop_with(libc::SIGKILL);
    let answered = start.wait().expect("agent start");
    assert!(!answered.success(), "the kill cut `agent start` short");
    assert!(d.runs(&id), "the process was started before the kill");

    d.clear_env();
    d.start();
    d.wait_for("u recorded running", Duration::from_secs(30), || {
        let row = d.try_ps_row("u")?;
        (row["state"] == "running").then_some(())
    });
    assert_eq!(d.ps_row("u")["id"], id.as_str());
    assert_eq!(d.runtime_ids(), std::slice::from_ref(&id), "started twice?");
    // The user's requests work as for any running container.
    d.cli_ok(&["start", "u"]);
    d.cli_ok(&["stop", "-t", "0", "u"]);
    assert_eq!(d.ps_row("u")["state"], "stopped-by-user");
    assert!(!d.runs(&id));
    d.cli_ok(&["start", "u"]);
    assert_eq!(d.ps_row("u")["state"], "running");
    assert!(d.runs(&id));
    assert!(
        !d.log_text().contains("is already running"),
        "{}",
        d.log_tail()
    );

    d.remove_all_and_wait(Duration::from_secs(60));
    assert!(d.runtime_ids().is_empty());
}

/// kill -9 half-way through a restart by policy (the process started, the restart not yet
/// counted) of a container that exits at once: the run must count. Recovery counts a restart
/// intent whose process started and exited (before the fix it left the row `restarting` with the
/// old count, and `on-failure` with `maxRetries: 1` ran three times).
#[test]
fn kill_9_mid_restart_counts_the_restart() {
    if !require_root("kill_9_mid_restart_counts_the_restart") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare_with("crashrestart", "", false);
    d.env("AGENT_DEBUG_STEP_DELAY_MS", "3000");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    let f = container_manifest(
        "f",
        "echo run >> /data/runs; exit 3",
        "  restart: {policy: on-failure, maxRetries: 1}\n  volumes:\n    - {volume: vf, target: /data}\n",
    );
    d.write(
        "f.yaml",
        &format!(
            "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: vf\nspec:\n  reclaim: retain\n---\n{f}"
        ),
    );
    // The first start (plan) pauses, then the restart by policy pauses: kill in the second.
    wait_pauses(&d, "start", 2);
    d.stop_with(libc::SIGKILL);
    d.clear_env();
    d.start();
    d.wait_for("f gave up", Duration::from_secs(60), || {
        let row = d.try_ps_row("f")?;
        (row["state"] == "exited").then_some(())
    });
    // Nothing restarts it any more.
    std::thread::sleep(Duration::from_secs(2));
    let runs = std::fs::read_to_string(d.state.join("volumes/vf/_data/runs"))
        .unwrap_or_default()
        .lines()
        .count();
    let row = d.ps_row("f");
    assert_eq!(row["restarts"], 1, "{row}");
    assert_eq!(
        runs, 2,
        "maxRetries 1: one run and one restart, counted ({row})"
    );
    d.remove_all_and_wait(Duration::from_secs(60));
}
