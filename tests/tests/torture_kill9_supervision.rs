//! Torture: kill -9 the agent while it supervises containers (root): restarts by policy, stops
//! of unhealthy containers, `agent stop` / `agent start` requests in flight.
//!
//! Seven containers from the busybox image, none of them ever changed by a manifest:
//!
//! | name    | restart                    | does                                   | network |
//! |---------|----------------------------|----------------------------------------|---------|
//! | `loop1` | `always`                   | `sleep 0.3; exit 1`                    | bridge  |
//! | `loop2` | `always`                   | `exit 1`                               | none    |
//! | `fail1` | `on-failure`               | `sleep 0.2; exit 3`                    | none    |
//! | `fmax`  | `on-failure`, maxRetries 8 | counts its runs in a volume, `exit 3`  | none    |
//! | `sick`  | `always`                   | healthy for 1 s, then its check fails  | bridge  |
//! | `keep1` | `unless-stopped`           | sleeps, exits on SIGTERM               | bridge  |
//! | `keep2` | `unless-stopped`           | sleeps as PID 1 (SIGTERM ignored: 1 s grace, SIGKILL) | none |
//!
//! Backoff 100 ms doubling up to 400 ms, so the crash loops restart all the time and `sick` is
//! stopped as unhealthy (and restarted) every few seconds. Then `TORTURE_KILL9_SUP_CYCLES`
//! cycles (default 10; `TORTURE_LONG=1`: 100), each one life of the agent: start it (every other
//! life, at random, with `AGENT_DEBUG_STEP_DELAY_MS=400`, which pauses every container start
//! half-way: after the process started, before the store recorded it), check that it converged
//! from the previous kill, fire zero to two `agent stop` / `agent start` at `keep1`, `keep2` and
//! `loop1` from threads at random moments, and SIGKILL the agent: at a random moment, just after
//! `sick` began its unhealthy stop (within its 1 s grace), or (slow lives) just after a start
//! paused half-way. What must hold:
//! - every store row has exactly one runtime container and there is no other one; no container
//!   is ever recreated (its id never changes: nothing here asks for a new one);
//! - no intent left by a kill outlives the next start-up (recovery settles them all);
//! - a container whose `agent stop` was answered stays `stopped-by-user` (`unless-stopped`)
//!   across every later kill, and no process of it runs; one whose `agent start` was answered
//!   runs; one whose request got no answer (the kill cut it) ends in one of the two states,
//!   consistently (never recorded stopped while a process runs);
//! - restart counts never go down, except through an `agent start` (which resets them, as
//!   `docker start` does); `fmax` never counts more than 8 restarts, gives up at 8 and stays
//!   given up across later kills;
//! - no start is refused with "is already running" (the error of a start loop on a container
//!   that runs, or of a start the store did not record);
//! - no leak: at most one veth and one network namespace per bridge-mode container, exactly one
//!   IP allocation each (distinct), one root filesystem mount per container, at most one
//!   monitor per container, no cgroup of a user-stopped container; at the end, after every
//!   manifest is removed: no runtime container, veth, namespace, allocation, monitor, mount,
//!   cgroup or intent left.
//!
//! The random choices are seeded from the pid (printed; `TORTURE_SEED` replays them; the timing
//! of the agent itself is not replayable).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};
use agent_e2e::network::links_with_prefix;
use agent_e2e::torture::{
    self, Rng, already_running_errors, cgroup_dirs, env_num, ip_allocations, monitors, now_ms,
    open_intents, overlay_available, rootfs_mounts,
};
use serde_json::Value;

const MAX_RETRIES: u64 = 8;
/// `AGENT_DEBUG_STEP_DELAY_MS` of the slow lives.
const STEP_DELAY_MS: u64 = 400;

struct Spec {
    name: &'static str,
    restart: &'static str,
    script: &'static str,
    bridged: bool,
    health: bool,
    volume: bool,
}

const SPECS: &[Spec] = &[
    Spec {
        name: "loop1",
        restart: "always",
        script: "sleep 0.3; exit 1",
        bridged: true,
        health: false,
        volume: false,
    },
    Spec {
        name: "loop2",
        restart: "always",
        script: "exit 1",
        bridged: false,
        health: false,
        volume: false,
    },
    Spec {
        name: "fail1",
        restart: "on-failure",
        script: "sleep 0.2; exit 3",
        bridged: false,
        health: false,
        volume: false,
    },
    Spec {
        name: "fmax",
        restart: "{policy: on-failure, maxRetries: 8}",
        script: "echo run >> /data/runs; exit 3",
        bridged: false,
        health: false,
        volume: true,
    },
    Spec {
        name: "sick",
        restart: "always",
        script: "touch /tmp/ok; sleep 1; rm -f /tmp/ok; exec sleep 100000",
        bridged: true,
        health: true,
        volume: false,
    },
    Spec {
        name: "keep1",
        restart: "unless-stopped",
        script: "trap 'exit 0' TERM; sleep 100000 & wait",
        bridged: true,
        health: false,
        volume: false,
    },
    Spec {
        name: "keep2",
        restart: "unless-stopped",
        script: "exec sleep 100000",
        bridged: false,
        health: false,
        volume: false,
    },
];

/// Containers the test sends `agent stop` / `agent start`.
const TARGETS: [&str; 3] = ["keep1", "keep2", "loop1"];

fn manifest(s: &Spec) -> String {
    let mut m = String::new();
    if s.volume {
        m.push_str(&format!(
            "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: v{}\nspec:\n  reclaim: retain\n---\n",
            s.name
        ));
    }
    m.push_str(&format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {}\nspec:\n  image: busybox\n  command: [\"/bin/sh\", \"-c\", {:?}]\n  restart: {}\n  stopGracePeriod: 1s\n",
        s.name, s.script, s.restart
    ));
    if !s.bridged {
        m.push_str("  networkMode: none\n");
    }
    if s.volume {
        m.push_str(&format!(
            "  volumes:\n    - {{volume: v{}, target: /data}}\n",
            s.name
        ));
    }
    if s.health {
        m.push_str("  healthcheck:\n    command: [\"/bin/sh\", \"-c\", \"test -f /tmp/ok\"]\n    interval: 300ms\n    timeout: 2s\n    retries: 2\n");
    }
    m
}

/// What the answered requests say a target must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Running,
    Stopped,
    /// The last request got no answer: either, as long as the record and the process agree.
    Either,
}

/// What the test knows, across the agent's lives.
struct Track {
    /// Runtime ids at bring-up: they never change.
    ids: BTreeMap<String, String>,
    /// The `unless-stopped` targets.
    want: HashMap<String, Want>,
    /// Lowest restart count each container may show (the highest seen since its last
    /// `agent start`).
    floor: HashMap<String, u64>,
}

fn ps(d: &Daemon) -> BTreeMap<String, Value> {
    d.cli_json(&["ps"])
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| Some((r["name"].as_str()?.to_string(), r)))
        .collect()
}

fn bridged() -> usize {
    SPECS.iter().filter(|s| s.bridged).count()
}

/// Checks what must hold at every moment; panics with the log when it does not. `recovered`:
/// the start-up has settled the intents the kill left (until then a start the kill cut short
/// may show its old record: the API answers before the first pass).
fn invariants(
    d: &Daemon,
    t: &mut Track,
    rows: &BTreeMap<String, Value>,
    recovered: bool,
    what: &str,
) {
    let fail = |why: String| -> ! { panic!("{what}: {why}\n{}", about(d, &why)) };
    let names: BTreeSet<&str> = rows.keys().map(String::as_str).collect();
    let want_names: BTreeSet<&str> = SPECS.iter().map(|s| s.name).collect();
    if names != want_names {
        fail(format!("containers {names:?}, expected {want_names:?}"));
    }
    for (name, row) in rows {
        let id = row["id"].as_str().unwrap_or_default();
        if t.ids.get(name).map(String::as_str) != Some(id) {
            fail(format!(
                "{name} has id {id}, had {:?}: recreated",
                t.ids.get(name)
            ));
        }
        let count = row["restarts"].as_u64().unwrap_or(0);
        let floor = t.floor.entry(name.clone()).or_insert(0);
        if count < *floor {
            fail(format!(
                "{name}: restart count {count}, it was {floor} (reset without `agent start`)"
            ));
        }
        *floor = count;
        if name == "fmax" && count > MAX_RETRIES {
            fail(format!(
                "fmax restarted {count} times, maxRetries is {MAX_RETRIES}"
            ));
        }
    }
    let runtime: BTreeSet<String> = d.runtime_ids().into_iter().collect();
    let recorded: BTreeSet<String> = t.ids.values().cloned().collect();
    if runtime != recorded {
        fail(format!(
            "runtime containers {runtime:?}, recorded {recorded:?} (duplicates or orphans)"
        ));
    }
    for (name, want) in &t.want {
        let row = &rows[name];
        let state = row["state"].as_str().unwrap_or_default();
        if *want == Want::Stopped && state != "stopped-by-user" {
            fail(format!(
                "{name} is {state}; its `agent stop` was answered and nothing started it"
            ));
        }
        if recovered && state == "stopped-by-user" && d.runs(row["id"].as_str().unwrap_or_default())
        {
            fail(format!(
                "{name} is recorded stopped-by-user but its process runs"
            ));
        }
    }
}

/// Why the agent has not converged yet (`None`: it has).
fn unsettled(d: &Daemon, t: &Track, rows: &BTreeMap<String, Value>, born: i64) -> Option<String> {
    let (old, _) = open_intents(d, born);
    if old > 0 {
        return Some(format!("{old} intents from before the start still open"));
    }
    for (name, want) in &t.want {
        let row = &rows[name];
        let state = row["state"].as_str().unwrap_or_default();
        let ok = match want {
            Want::Running => state == "running",
            Want::Stopped => state == "stopped-by-user",
            Want::Either => state == "running" || state == "stopped-by-user",
        };
        if !ok {
            return Some(format!("{name} is {state}, wanted {want:?}"));
        }
        if state == "running" && !d.runs(row["id"].as_str().unwrap_or_default()) {
            return Some(format!("{name} recorded running, its process is not"));
        }
        if state == "stopped-by-user" {
            let cg: Vec<String> = container_cgroup(d, &t.ids[name]).into_iter().collect();
            let left = cgroup_dirs(&cg);
            if !left.is_empty() {
                return Some(format!("{name} stopped, its cgroups are left: {left:?}"));
            }
        }
    }
    leaks(d, SPECS.len(), bridged())
}

/// Leaks with `n` containers, `b` of them in bridge mode (`None`: none).
fn leaks(d: &Daemon, n: usize, b: usize) -> Option<String> {
    let veths = links_with_prefix(&d.net.veth_prefix);
    if veths.len() > b {
        return Some(format!(
            "{} veths, at most {b} expected: {veths:?}",
            veths.len()
        ));
    }
    let ns = d.netns();
    if ns.len() > b {
        return Some(format!(
            "{} network namespaces, at most {b}: {ns:?}",
            ns.len()
        ));
    }
    let (ips, distinct) = ip_allocations(d);
    if ips != b as i64 || distinct != ips {
        return Some(format!(
            "{ips} IP allocations ({distinct} distinct), expected {b}"
        ));
    }
    let mounts = rootfs_mounts(d.dir.path());
    let want_mounts = if overlay_available() { n } else { 0 };
    if mounts != want_mounts {
        return Some(format!(
            "{mounts} root filesystem mounts, expected {want_mounts}"
        ));
    }
    let m = monitors(d);
    if m > n {
        return Some(format!("{m} monitors, at most {n}"));
    }
    None
}

/// The cgroup path of runtime container `id` (from its bundle), if it still has one.
fn container_cgroup(d: &Daemon, id: &str) -> Option<String> {
    d.container_cgroups()
        .into_iter()
        .find(|cg| cg.rsplit('/').next() == Some(id))
}

/// Waits until the agent converged after a start (`born`: Unix ms just before it), checking
/// the invariants on every poll.
fn converge(d: &Daemon, t: &mut Track, born: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Intents first: rows read after the start-up settled them show its result.
        let recovered = open_intents(d, born).0 == 0;
        let rows = ps(d);
        invariants(d, t, &rows, recovered, what);
        let Some(why) = unsettled(d, t, &rows, born) else {
            // Unanswered requests are settled now: what the agent shows is what holds.
            for (name, want) in t.want.iter_mut() {
                if *want == Want::Either {
                    *want = if rows[name]["state"] == "running" {
                        Want::Running
                    } else {
                        Want::Stopped
                    };
                }
            }
            return;
        };
        if Instant::now() > deadline {
            panic!(
                "{what}: not converged after 60 s: {why}\n{}",
                about(d, &why)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Stop,
    Start,
}

/// One request a thread sent, and what came of it.
#[derive(Debug)]
struct Sent {
    name: &'static str,
    action: Action,
    at: Instant,
    done: Instant,
    ok: bool,
    stderr: String,
    /// For an answered stop of a container the agent keeps stopped: its state right after.
    state_after: Option<String>,
}

/// How a kill is aimed.
#[derive(Debug, Clone, Copy)]
enum Aim {
    /// At a random moment 0-2.5 s into the life.
    Random(u64),
    /// 0-0.9 s after `sick`'s next unhealthy stop began (its grace is 1 s).
    Unhealthy(u64),
    /// 0-0.35 s after the next start paused half-way (slow lives only; the pause is 0.4 s).
    StartPause(u64),
}

#[test]
fn kill9_during_restarts_unhealthy_stops_and_user_requests() {
    if !require_root("kill9_during_restarts_unhealthy_stops_and_user_requests") {
        return;
    }
    require_images();
    let cycles =
        env_num("TORTURE_KILL9_SUP_CYCLES").unwrap_or(if torture::long() { 100 } else { 10 });
    let seed = torture::seed();
    println!("kill -9 supervision torture: {cycles} cycles, seed {seed}");
    let mut rng = Rng(seed);

    let mut d = Daemon::prepare(
        "kill9sup",
        "[restart]\nstart = \"100ms\"\nfactor = 2.0\ncap = \"400ms\"\nreset_after = \"10s\"\n",
    );
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    for s in SPECS {
        d.write(&format!("{}.yaml", s.name), &manifest(s));
    }
    let t0 = Instant::now();
    let ids = d.wait_for("every container created", Duration::from_secs(90), || {
        let _ = d.cli(&["apply"]);
        let rows = ps(&d);
        let ok = rows.len() == SPECS.len()
            && ["keep1", "keep2"]
                .iter()
                .all(|n| rows[*n]["state"] == "running");
        ok.then(|| {
            rows.iter()
                .map(|(n, r)| (n.clone(), r["id"].as_str().unwrap_or_default().to_string()))
                .collect::<BTreeMap<_, _>>()
        })
    });
    println!(
        "{} containers up in {:.1} s",
        SPECS.len(),
        t0.elapsed().as_secs_f64()
    );
    let cgroups = d.container_cgroups();
    assert_eq!(cgroups.len(), SPECS.len(), "{cgroups:?}");
    let mut t = Track {
        ids,
        want: ["keep1", "keep2"]
            .iter()
            .map(|n| (n.to_string(), Want::Running))
            .collect(),
        floor: HashMap::new(),
    };
    converge(&d, &mut t, now_ms(), "bring-up");

    // Figures.
    let mut slow_lives = 0;
    let mut open_at_kill = 0;
    let mut kills_with_open_intents = 0;
    let mut kills_in_unhealthy_stop = 0;
    let mut kills_with_request_in_flight = 0;
    let mut requests_answered = 0;
    let mut requests_cut = 0;
    let mut request_errors: Vec<String> = Vec::new();
    let mut aims: BTreeMap<&str, usize> = BTreeMap::new();
    let mut stops_kept = 0;
    let mut log_from = d.log_text().len();
    // Whether the agent of this life pauses every start half-way.
    let mut slow = false;
    let started = Instant::now();

    for cycle in 1..=cycles {
        // 1. The agent of this life was started (and converged, checked) at the end of the
        //    previous cycle. Plan the requests and the kill.
        let plan: Vec<(&'static str, Vec<(u64, Action)>)> = TARGETS
            .iter()
            .map(|n| {
                let k = rng.next_u64() % 3;
                let reqs = (0..k)
                    .map(|_| {
                        let at = rng.next_u64() % 2500;
                        let a = if rng.next_u64().is_multiple_of(2) {
                            Action::Stop
                        } else {
                            Action::Start
                        };
                        (at, a)
                    })
                    .collect();
                (*n, reqs)
            })
            .collect();
        let aim = match rng.next_u64() % 3 {
            1 => Aim::Unhealthy(rng.next_u64() % 900),
            2 if slow => Aim::StartPause(rng.next_u64() % 350),
            _ => Aim::Random(rng.next_u64() % 2500),
        };
        let life = Instant::now();
        let unhealthy_before = d.events_of("sick", "container.unhealthy-stop").len();
        let pauses_before = start_pauses(&d.log_text()[log_from..]);
        let pid = d.pid().expect("agent runs") as i32;
        let mut killed_at = life;
        let mut sent: Vec<Sent> = Vec::new();
        std::thread::scope(|s| {
            let d = &d;
            let threads: Vec<_> = plan
                .iter()
                .map(|(name, reqs)| s.spawn(move || send_requests(d, name, reqs, life)))
                .collect();
            let ready = |wait: Duration, f: &dyn Fn() -> bool| {
                let until = Instant::now() + wait;
                while Instant::now() < until && !f() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            };
            let (label, after) = match aim {
                Aim::Random(ms) => ("random", ms),
                Aim::Unhealthy(ms) => {
                    ready(Duration::from_secs(10), &|| {
                        d.events_of("sick", "container.unhealthy-stop").len() > unhealthy_before
                    });
                    ("unhealthy stop", ms)
                }
                Aim::StartPause(ms) => {
                    ready(Duration::from_secs(10), &|| {
                        start_pauses(&d.log_text()[log_from..]) > pauses_before
                    });
                    ("start paused half-way", ms)
                }
            };
            *aims.entry(label).or_default() += 1;
            std::thread::sleep(Duration::from_millis(after));
            // The floor of every restart count: what the agent shows just before the kill.
            let rows = ps(d);
            for (name, row) in &rows {
                let f = t.floor.entry(name.clone()).or_insert(0);
                *f = (*f).max(row["restarts"].as_u64().unwrap_or(0));
            }
            // SAFETY: kill(2) of the agent this fixture started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed_at = Instant::now();
            for th in threads {
                sent.extend(th.join().expect("request thread"));
            }
        });
        d.stop_with(libc::SIGKILL);

        // 2. What the kill cut short.
        let (_, open) = open_intents(&d, i64::MAX);
        open_at_kill += open;
        if open > 0 {
            kills_with_open_intents += 1;
        }
        let sick_events: Vec<Value> = d
            .events()
            .into_iter()
            .filter(|e| e["object"] == "container/sick")
            .collect();
        if sick_events
            .last()
            .is_some_and(|e| e["kind"] == "container.unhealthy-stop")
        {
            kills_in_unhealthy_stop += 1;
        }
        let life_log = d.log_text()[log_from..].to_string();
        let errors = already_running_errors(&life_log);
        assert!(
            errors.is_empty(),
            "cycle {cycle} (seed {seed}): starts refused because the container runs: {errors:?}\n{}",
            d.log_tail()
        );
        // 3. The requests: what was answered holds, what was cut may or may not have happened.
        let mut in_flight = false;
        let mut by_target: BTreeMap<&str, Vec<&Sent>> = BTreeMap::new();
        for r in &sent {
            by_target.entry(r.name).or_default().push(r);
            if r.at <= killed_at && (r.done > killed_at || !r.ok) {
                in_flight = true;
            }
            if r.ok {
                requests_answered += 1;
            } else {
                requests_cut += 1;
                request_errors.push(format!("{:?} {}: {}", r.action, r.name, r.stderr.trim()));
            }
            if let Some(state) = &r.state_after {
                assert_eq!(
                    state, "stopped-by-user",
                    "cycle {cycle}: {} right after its answered `agent stop`; seed {seed}",
                    r.name
                );
            }
        }
        if in_flight {
            kills_with_request_in_flight += 1;
        }
        for (name, reqs) in by_target {
            if reqs.iter().any(|r| r.action == Action::Start) {
                // `agent start` resets the count (as `docker start` does).
                t.floor.insert(name.to_string(), 0);
            }
            let Some(want) = t.want.get_mut(name) else {
                continue;
            };
            let last = reqs.last().expect("a request");
            *want = match (last.ok, last.action) {
                (true, Action::Stop) => Want::Stopped,
                (true, Action::Start) => Want::Running,
                (false, _) => Want::Either,
            };
        }

        stops_kept += t.want.values().filter(|w| **w == Want::Stopped).count();
        // 4. Next life: slow or not, at random; it must converge from this kill.
        slow = rng.next_u64().is_multiple_of(2);
        d.clear_env();
        if slow {
            d.env("AGENT_DEBUG_STEP_DELAY_MS", &STEP_DELAY_MS.to_string());
            slow_lives += 1;
        }
        log_from = d.log_text().len();
        let born = now_ms();
        d.start();
        let asked: Vec<String> = sent
            .iter()
            .map(|r| {
                format!(
                    "{:?} {} {} ms after the kill{}",
                    r.action,
                    r.name,
                    r.at.saturating_duration_since(killed_at).as_millis() as i64
                        - killed_at.saturating_duration_since(r.at).as_millis() as i64,
                    if r.ok { "" } else { " (no answer)" }
                )
            })
            .collect();
        converge(
            &d,
            &mut t,
            born,
            &format!("cycle {cycle} (seed {seed}; requests sent: {asked:?})"),
        );
    }
    let elapsed = started.elapsed().as_secs_f64();

    // The last life runs at normal speed: fmax gives up at its limit and stays given up.
    d.stop_with(libc::SIGKILL);
    d.clear_env();
    let born = now_ms();
    d.start();
    converge(&d, &mut t, born, "last start");
    let fmax = d.wait_for("fmax gave up", Duration::from_secs(90), || {
        let rows = ps(&d);
        invariants(&d, &mut t, &rows, true, "fmax");
        let row = rows["fmax"].clone();
        (row["state"] == "exited" && row["restarts"] == MAX_RETRIES).then_some(row)
    });
    let runs = std::fs::read_to_string(d.state.join("volumes/vfmax/_data/runs"))
        .unwrap_or_default()
        .lines()
        .count();
    let errors = already_running_errors(&d.log_text());
    assert!(
        errors.is_empty(),
        "starts refused because the container runs: {errors:?}"
    );
    let rows = ps(&d);
    let restarts: BTreeMap<&String, u64> = rows
        .iter()
        .map(|(n, r)| (n, r["restarts"].as_u64().unwrap_or(0)))
        .collect();

    println!(
        "{cycles} kill -9 in {elapsed:.1} s ({slow_lives} lives slowed by AGENT_DEBUG_STEP_DELAY_MS={STEP_DELAY_MS}); aimed: {aims:?}"
    );
    println!(
        "cut short: {kills_with_open_intents} kills left {open_at_kill} journalled steps open, {kills_in_unhealthy_stop} came during an unhealthy stop, {kills_with_request_in_flight} with a request in flight; requests answered {requests_answered}, cut {requests_cut}"
    );
    println!("requests cut: {request_errors:?}");
    println!("restart counts at the end: {restarts:?}");
    println!(
        "fmax: {} restarts recorded (maxRetries {MAX_RETRIES}), {runs} runs counted by its process, exit {}",
        fmax["restarts"], fmax["exit_code"]
    );
    println!("answered `agent stop`s held across {stops_kept} kills; no \"already running\" error");
    println!("converged every time, no duplicate container, no recreate, no leak");

    // Everything removed: nothing left.
    d.remove_all_manifests();
    d.wait_for("everything removed", Duration::from_secs(120), || {
        let _ = d.cli(&["apply"]);
        let empty = d.cli_json(&["ps"]).as_array()?.is_empty();
        (empty
            && d.runtime_ids().is_empty()
            && leaks(&d, 0, 0).is_none()
            && cgroup_dirs(&cgroups).is_empty()
            && monitors(&d) == 0
            && open_intents(&d, i64::MAX).1 == 0)
            .then_some(())
    });
}

/// Half-way pauses of starts in `log`.
fn start_pauses(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("pausing half-way") && l.contains("\"step\":\"start\""))
        .count()
}

/// Sends `reqs` (milliseconds after `life`, action) to container `name` in order.
fn send_requests(
    d: &Daemon,
    name: &'static str,
    reqs: &[(u64, Action)],
    life: Instant,
) -> Vec<Sent> {
    let mut reqs = reqs.to_vec();
    reqs.sort_by_key(|r| r.0);
    let mut out = Vec::new();
    for (ms, action) in reqs {
        let at = life + Duration::from_millis(ms);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let at = Instant::now();
        let verb = match action {
            Action::Stop => "stop",
            Action::Start => "start",
        };
        let o = d.cli(&[verb, name]);
        let done = Instant::now();
        let ok = o.status.success();
        // An answered stop: the agent keeps it stopped while it lives (any policy).
        let state_after = (ok && action == Action::Stop).then(|| state_of(d, name));
        out.push(Sent {
            name,
            action,
            at,
            done,
            ok,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            state_after,
        });
    }
    out
}

/// The state `agent ps` shows for `name`. Retried while it gets no answer: right after the
/// kill the CLI may find the socket closed and the state directory still locked by the dying
/// agent.
fn state_of(d: &Daemon, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = d.cli(&["ps", "-o", "json"]);
        if let Ok(Value::Array(rows)) = serde_json::from_slice::<Value>(&out.stdout) {
            return rows
                .iter()
                .find(|r| r["name"] == name)
                .and_then(|r| r["state"].as_str())
                .unwrap_or_default()
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "agent ps: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The agent's last log lines about the container `why` starts with (or the log's tail).
fn about(d: &Daemon, why: &str) -> String {
    let name = why.split_whitespace().next().unwrap_or_default();
    let Some(spec) = SPECS.iter().find(|s| s.name == name) else {
        return d.log_tail();
    };
    let needle = format!("\"{}", spec.name);
    let text = d.log_text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&needle) || l.contains("agent started"))
        .collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
