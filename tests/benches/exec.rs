//! Exec driver benchmark (run by `bench/exec.sh`, as root): prints figures, asserts nothing.
//!
//! 1. Start latency, "spec written -> process running": the bundle (config.json) is written
//!    once; each round deletes the marker, starts the container and waits until the workload has
//!    created `/tmp/started` in the root filesystem. Ours: `ExecDriver::start` (spawns
//!    `agent monitor`, which creates and starts the container with libcontainer). Bare runc:
//!    `runc run --detach` on the same bundle directory. Rounds alternate; medians are printed.
//!    The workload does not fork: runc reads the seccomp `clone` rule's MASKED_EQ fields the other
//!    way round than libcontainer (see the seccomp module), which would block fork under runc.
//! 2. Monitor memory: several idle containers; for each monitor, `Private_Dirty` (and Rss, Pss)
//!    from `/proc/<pid>/smaps_rollup` while it waits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use agent::driver::exec::state::ContainerState;
use agent::driver::exec::{ExecDriver, paths};
use agent_e2e::exec::Fixture;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn wait_for(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

fn smaps_kib(pid: i32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Private_Dirty per mapping of `pid`, largest first.
fn dirty_mappings(pid: i32) -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut out = Vec::new();
    let mut name = String::new();
    for l in text.lines() {
        let first = l.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            let f: Vec<&str> = l.split_whitespace().collect();
            name = format!(
                "{} {}",
                f.get(1).unwrap_or(&""),
                f.get(5).unwrap_or(&"[anon]")
            );
        } else if let Some(v) = l.strip_prefix("Private_Dirty:") {
            let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            if kib > 0 {
                out.push((kib, name.clone()));
            }
        }
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    out
}

fn runc(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("runc {args:?}: {e}"))
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench exec: needs root");
        std::process::exit(1);
    }
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut f = Fixture::new("bench");
    let mut s = f.spec("lat");
    s.command = Some(vec!["/bin/touch".into(), "/tmp/started".into()]);
    let id = s.id.clone();
    let marker: PathBuf = s.rootfs.join("tmp/started");
    f.driver
        .create(&s)
        .unwrap_or_else(|e| panic!("create: {e}"));
    let bundle = paths::container_dir(&f.state, &id);
    let runc_root = f.state.join("runc-root");
    let have_runc = Command::new("runc").arg("--version").output().is_ok();

    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for round in 0..rounds {
        let _ = std::fs::remove_file(&marker);
        let t = Instant::now();
        f.driver.start(&id).unwrap_or_else(|e| panic!("start: {e}"));
        assert!(
            wait_for(&marker, Duration::from_secs(10)),
            "workload never ran"
        );
        ours.push(t.elapsed().as_secs_f64() * 1000.0);
        f.wait_exit(&id, Duration::from_secs(10));

        if have_runc {
            let _ = std::fs::remove_file(&marker);
            let rid = format!("runc-bench-{}-{round}", std::process::id());
            let t = Instant::now();
            let out = Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["run", "--detach", "--bundle"])
                .arg(&bundle)
                .arg(&rid)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .output()
                .unwrap_or_else(|e| panic!("runc: {e}"));
            assert!(
                out.status.success(),
                "runc run: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                wait_for(&marker, Duration::from_secs(10)),
                "runc workload never ran"
            );
            bare.push(t.elapsed().as_secs_f64() * 1000.0);
            let _ = runc(&runc_root, &["delete", "--force", &rid]);
        }
    }
    println!("start latency, spec written -> process running ({rounds} rounds each, same bundle):");
    println!(
        "  agent (monitor + libcontainer): median {:.1} ms",
        median(&mut ours)
    );
    if have_runc {
        println!(
            "  bare `runc run --detach`:      median {:.1} ms",
            median(&mut bare)
        );
    } else {
        println!("  bare runc: not installed (apt-get install runc)");
    }

    let n: usize = std::env::var("MONITORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut ids = Vec::new();
    for i in 0..n {
        let mut s = f.spec(&format!("idle{i}"));
        s.command = Some(vec!["sleep".into(), "1000".into()]);
        ids.push(f.run(&s));
    }
    // let them settle into their wait
    std::thread::sleep(Duration::from_millis(500));
    println!("monitor memory while waiting ({n} monitors, /proc/<pid>/smaps_rollup):");
    let mut dirty = Vec::new();
    for id in &ids {
        let st = ContainerState::load(&paths::container_dir(&f.state, id))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no state for {id}"));
        let pid = st.monitor_pid.unwrap_or_else(|| panic!("no monitor pid"));
        let pd = smaps_kib(pid, "Private_Dirty").unwrap_or(0);
        let rss = smaps_kib(pid, "Rss").unwrap_or(0);
        let pss = smaps_kib(pid, "Pss").unwrap_or(0);
        println!("  monitor {pid}: Private_Dirty {pd} KiB, Rss {rss} KiB, Pss {pss} KiB");
        dirty.push(pd as f64);
    }
    if let Some(first) = ids.first()
        && let Some(pid) = ContainerState::load(&paths::container_dir(&f.state, first))
            .ok()
            .flatten()
            .and_then(|s| s.monitor_pid)
    {
        println!("  where the first monitor's private dirty memory is (KiB, mapping):");
        for (kib, name) in dirty_mappings(pid).into_iter().take(8) {
            println!("    {kib:6} {name}");
        }
    }
    let med = median(&mut dirty);
    println!(
        "  median Private_Dirty {med:.0} KiB ({}target: under 1024 KiB)",
        if med < 1024.0 { "" } else { "ABOVE " }
    );
    for id in &ids {
        let _ = f.driver.stop(id, Some(Duration::from_millis(100)));
    }
}
