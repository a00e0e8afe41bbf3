//! Torture: a crash-looping container next to healthy ones (root).
//!
//! One container exits with status 1 right after it starts (`restart: always`), three healthy
//! ones sleep, all in network mode `none` from the busybox test image. The agent runs for
//! `TORTURE_CRASHLOOP_SECONDS` (default 30 s; `TORTURE_LONG=1` makes it 300 s) with the backoff
//! `start = 100ms, factor = 2, cap = 4s` (`TORTURE_RESTART_CAP` overrides the cap). Then:
//! - backoff respected, from the event log: every `container.restart-scheduled` delay is the
//!   previous one doubled, from 100 ms up to the cap (the container never runs long enough to
//!   reset it), and every `container.restart` comes no earlier than its scheduled delay after the
//!   exit was recorded; the number of restarts is bounded by what the backoff allows;
//! - the healthy containers are untouched: same container id, same host pid (alive), started at
//!   the same time, zero restarts, still running;
//! - the agent's CPU time over the run is printed (per cent of one core), with the restart count.

use std::time::{Duration, Instant};

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};
use agent_e2e::torture::{self, env_num};
use serde_json::Value;

fn container(name: &str, script: &str) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: busybox\n  command: [\"/bin/sh\", \"-c\", {script:?}]\n  networkMode: none\n  restart: always\n  stopGracePeriod: 1s\n"
    )
}

/// (container id, host pid, started_at, restarts, state) of `name`.
fn identity(d: &Daemon, name: &str) -> (String, i64, i64, u64, String) {
    let out = d.cli_ok(&["inspect", name]);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("agent inspect {name}: not JSON ({e}): {out}"));
    let c = &v["container"];
    (
        c["id"].as_str().unwrap_or("").to_string(),
        c["runtime"]["container_pid"].as_i64().unwrap_or(-1),
        c["started_at"].as_i64().unwrap_or(-1),
        c["restart_count"].as_u64().unwrap_or(u64::MAX),
        c["state"].as_str().unwrap_or("").to_string(),
    )
}

fn events_of(events: &[Value], name: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["object"] == format!("container/{name}"))
        .cloned()
        .collect()
}

#[test]
fn crash_loop_next_to_healthy_containers() {
    if !require_root("crash_loop_next_to_healthy_containers") {
        return;
    }
    require_images();
    let long = torture::long();
    let secs = env_num("TORTURE_CRASHLOOP_SECONDS").unwrap_or(if long { 300 } else { 30 });
    let cap_ms = std::env::var("TORTURE_RESTART_CAP")
        .ok()
        .and_then(|v| v.strip_suffix("ms").map(str::to_string).or(Some(v)))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(4000);
    let mut d = Daemon::prepare(
        "crashloop",
        &format!(
            "[restart]\nstart = \"100ms\"\nfactor = 2.0\ncap = \"{cap_ms}ms\"\nreset_after = \"10s\"\n"
        ),
    );
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    let healthy = ["ok1", "ok2", "ok3"];
    for h in healthy {
        d.write(&format!("{h}.yaml"), &container(h, "exec sleep 100000"));
    }
    d.cli_ok(&["apply"]);
    d.wait_for(
        "healthy containers running",
        Duration::from_secs(60),
        || {
            healthy
                .iter()
                .all(|h| identity(&d, h).4 == "running")
                .then_some(())
        },
    );
    let before: Vec<_> = healthy.iter().map(|h| identity(&d, h)).collect();

    let pid = d.pid().expect("agent pid");
    let cpu0 = agent_e2e::cpu_ticks(pid);
    let t0 = Instant::now();
    d.write("crash.yaml", &container("crash", "exit 1"));
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(500));
        for (h, b) in healthy.iter().zip(&before) {
            assert!(
                std::path::Path::new(&format!("/proc/{}", b.1)).exists(),
                "healthy container {h} (pid {}) died during the crash loop\n{}",
                b.1,
                d.log_tail()
            );
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_s = (agent_e2e::cpu_ticks(pid) - cpu0) as f64 / ticks;

    // Healthy containers: same identity, never restarted.
    for (h, b) in healthy.iter().zip(&before) {
        let now = identity(&d, h);
        assert_eq!(&now, b, "healthy container {h} was disturbed");
        assert_eq!(now.3, 0, "{h} restarted");
    }

    // Backoff, from the event log.
    let events = d.events();
    let crash = events_of(&events, "crash");
    let scheduled: Vec<(i64, u64)> = crash
        .iter()
        .filter(|e| e["kind"] == "container.restart-scheduled")
        .map(|e| {
            (
                e["time"].as_i64().unwrap_or(0),
                e["message"]["delayMs"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let restarts: Vec<i64> = crash
        .iter()
        .filter(|e| e["kind"] == "container.restart")
        .map(|e| e["time"].as_i64().unwrap_or(0))
        .collect();
    assert!(
        scheduled.len() >= 4,
        "expected several scheduled restarts in {secs} s, got {scheduled:?}; events of crash:\n{}\nagent log:\n{}",
        crash
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        d.log_tail()
    );
    let mut expected = 100u64;
    for (i, (_, delay)) in scheduled.iter().enumerate() {
        assert_eq!(
            *delay, expected,
            "restart {i}: delay {delay} ms, expected {expected} ms (100 ms doubling, cap {cap_ms} ms); all: {scheduled:?}"
        );
        expected = (expected * 2).min(cap_ms);
    }
    // Every restart waits at least its delay after it was scheduled.
    for (i, r) in restarts.iter().enumerate() {
        let (at, delay) = scheduled[i];
        assert!(
            *r - at >= delay as i64 - 5,
            "restart {i} came {} ms after it was scheduled with a delay of {delay} ms",
            r - at
        );
    }
    // No more restarts than the backoff allows in the time the loop ran.
    let mut allowed = 0u64;
    let (mut t, mut delay) = (0u64, 100u64);
    while t <= (elapsed * 1000.0) as u64 {
        t += delay;
        delay = (delay * 2).min(cap_ms);
        allowed += 1;
    }
    assert!(
        restarts.len() as u64 <= allowed,
        "{} restarts in {elapsed:.1} s, the backoff allows {allowed}",
        restarts.len()
    );
    let gaps: Vec<i64> = restarts.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "crash loop for {elapsed:.1} s: {} restarts (backoff allows {allowed}), delays {:?} ms, gaps between restarts {gaps:?} ms",
        restarts.len(),
        scheduled.iter().map(|s| s.1).collect::<Vec<_>>()
    );
    println!(
        "agent CPU time {:.0} ms over {elapsed:.1} s = {:.2}% of one core; 3 healthy containers kept their pids",
        cpu_s * 1000.0,
        cpu_s / elapsed * 100.0
    );

    d.remove_all_and_wait(Duration::from_secs(60));
}
