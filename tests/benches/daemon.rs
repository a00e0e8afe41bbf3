//! Daemon benchmark (run by `bench/run-all.sh`, as root): the whole agent, driven through
//! manifest files only, on the busybox test image. Prints figures and writes them as TSV; asserts
//! nothing beyond "it got there".
//!
//! Measured, each over `ROUNDS` rounds (median, min, max):
//! - file-to-running latency of one container: the manifest file is written (atomic rename) and
//!   the clock runs until the container's process has created its marker file in a volume shared
//!   with the host. `NETWORK_MODE` is `none` (default) or `bridge` (the agent's default network:
//!   veth, address, firewall rules set up before the process starts). The figure includes the watcher's debounce (200 ms) and settle check (150 ms). The workload
//!   (`sh`, pid 1 of its container) exits on SIGTERM, so tear-down does not wait out the grace
//!   period as it would for a bare `sleep` (pid 1 ignores signals it has no handler for).
//! - the same for N containers (`COUNTS`, default 1,10,50): N files written at once, until all N
//!   markers exist ("bring-up");
//! - bare `runc run --detach` on the same root filesystem (the test image's unpacked rootfs,
//!   read-only, the marker directory bind-mounted, a new network namespace), N runs one after the
//!   other, until all N markers exist;
//! - a no-op reconcile with the largest N running: `agent apply` (CLI round trip; the pass
//!   rescans the directory, which includes the 150 ms settle check) and the pass's own duration;
//! - tear-down of N: the files are removed; until `agent ps` lists no container;
//! - once, with the largest N running: the agent's CPU time and RSS over `IDLE_SECONDS`
//!   (default 30), and each monitor's private memory (`Private_Dirty`, smaps_rollup).
//!
//! Output: lines on stdout, and `BENCH_TSV` (default `bench/results/daemon.tsv`) with one row per
//! figure: `metric  n  median  min  max  unit  rounds`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_e2e::daemon::Daemon;
use serde_json::{Value, json};

const IMAGE: &str = "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: busybox\nspec:\n  dockerArchive:\n    path: /var/lib/agent-test-images/docker.tar\n";
const VOLUME: &str =
    "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: marks\nspec:\n  reclaim: retain\n";
const ROOTFS: &str = "/var/lib/agent-test-images/rootfs";

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median, min, max.
fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

struct Results {
    rows: Vec<(String, usize, Vec<f64>, &'static str)>,
}

impl Results {
    fn add(&mut self, metric: &str, n: usize, values: Vec<f64>, unit: &'static str) {
        let (med, min, max) = stats(&values);
        println!(
            "  {metric:<28} n={n:<3} median {med:>9.1} {unit}  (min {min:.1}, max {max:.1}, {} rounds)",
            values.len()
        );
        self.rows.push((metric.to_string(), n, values, unit));
    }

    fn tsv(&self) -> String {
        let mut out = String::from("metric\tn\tmedian\tmin\tmax\tunit\trounds\n");
        for (metric, n, values, unit) in &self.rows {
            let (med, min, max) = stats(values);
            let _ = writeln!(
                out,
                "{metric}\t{n}\t{med:.1}\t{min:.1}\t{max:.1}\t{unit}\t{}",
                values.len()
            );
        }
        out
    }
}

fn container(name: &str, mode: &str) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: busybox\n  command: [\"/bin/sh\", \"-c\", \"touch $M/$NAME; trap 'exit 0' TERM; sleep 1000000 & wait\"]\n  env: {{NAME: {name}, M: /m}}\n  networkMode: {mode}\n  volumes:\n    - {{volume: marks, target: /m}}\n  restart: always\n  stopGracePeriod: 1s\n"
    )
}

/// Polls until every path exists; the elapsed time since `t0` in ms.
fn wait_all(paths: &[PathBuf], t0: Instant, timeout: Duration, what: &str) -> f64 {
    let mut left: Vec<&PathBuf> = paths.iter().collect();
    loop {
        left.retain(|p| !p.exists());
        if left.is_empty() {
            return t0.elapsed().as_secs_f64() * 1000.0;
        }
        assert!(
            t0.elapsed() < timeout,
            "{what}: {} of {} not there after {timeout:?} (first: {})",
            left.len(),
            paths.len(),
            left[0].display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn ps_names(d: &Daemon) -> Vec<(String, String)> {
    let v = d.cli_json(&["ps"]);
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["name"].as_str().unwrap_or("").to_string(),
                        r["state"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn clear_markers(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Writes N container files at once; returns ms until all N processes ran.
fn bring_up(d: &Daemon, marks: &Path, names: &[String], mode: &str) -> f64 {
    clear_markers(marks);
    let paths: Vec<PathBuf> = names.iter().map(|n| marks.join(n)).collect();
    let t0 = Instant::now();
    for n in names {
        d.write(&format!("{n}.yaml"), &container(n, mode));
    }
    let ms = wait_all(&paths, t0, Duration::from_secs(300), "bring-up");
    // The agent must see them running too before anything else is measured.
    d.wait_for("all running in ps", Duration::from_secs(120), || {
        let running = ps_names(d)
            .iter()
            .filter(|(n, s)| s == "running" && names.contains(n))
            .count();
        (running == names.len()).then_some(())
    });
    ms
}

/// Removes the files; returns ms until `agent ps` lists none of them.
fn tear_down(d: &Daemon, names: &[String]) -> f64 {
    let t0 = Instant::now();
    for n in names {
        d.remove(&format!("{n}.yaml"));
    }
    loop {
        let left = ps_names(d)
            .iter()
            .filter(|(n, _)| names.contains(n))
            .count();
        if left == 0 {
            return t0.elapsed().as_secs_f64() * 1000.0;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "tear-down: {left} containers left after 300 s\n{}",
            d.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs runc; its output goes to a file, not a pipe: `runc run --detach` hands its stdio to the
/// container's process, which would hold a pipe open for as long as it runs.
fn runc(args: &[&str]) -> std::process::Output {
    let log = std::env::temp_dir().join(format!("bench-runc-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).expect("create runc log");
    let status = Command::new("runc")
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup"))
        .stderr(file)
        .status()
        .unwrap_or_else(|e| panic!("runc {args:?}: {e}"));
    let stderr = std::fs::read(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    std::process::Output {
        status,
        stdout: Vec::new(),
        stderr,
    }
}

/// A runc bundle on the test image's rootfs (read-only) with `marks` bind-mounted at /tmp.
fn runc_bundle(dir: &Path, marks: &Path) -> PathBuf {
    let bundle = dir.join("runc-bundle");
    std::fs::create_dir_all(&bundle).expect("mkdir bundle");
    let out = runc(&["spec", "--bundle", &bundle.to_string_lossy()]);
    assert!(
        out.status.success(),
        "runc spec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = bundle.join("config.json");
    let mut spec: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read config.json")).expect("json");
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["/bin/sh", "-c", "touch $M/$NAME; exec sleep 1000000"]);
    spec["root"] = json!({"path": ROOTFS, "readonly": true});
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        // /tmp exists in the image: a read-only rootfs cannot get a new mount point.
        mounts.push(json!({"destination": "/tmp", "type": "bind",
            "source": marks.to_string_lossy(), "options": ["rbind", "rw"]}));
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).expect("json")).expect("write spec");
    bundle
}

/// Starts N runc containers one after the other; ms until all markers exist. Deletes them after.
fn runc_bring_up(bundle: &Path, root: &Path, marks: &Path, n: usize, round: usize) -> f64 {
    clear_markers(marks);
    let ids: Vec<String> = (0..n)
        .map(|i| format!("bench-runc-{}-{round}-{i}", std::process::id()))
        .collect();
    let paths: Vec<PathBuf> = ids.iter().map(|i| marks.join(i)).collect();
    let spec_path = bundle.join("config.json");
    let spec: Value =
        serde_json::from_slice(&std::fs::read(&spec_path).expect("read")).expect("json");
    // One config per container (the marker name is in its environment): prepared before the
    // clock starts, like the agent's manifests.
    let bundles: Vec<PathBuf> = ids
        .iter()
        .map(|id| {
            let b = bundle.with_file_name(format!("b-{id}"));
            std::fs::create_dir_all(&b).expect("mkdir");
            let mut s = spec.clone();
            if let Some(env) = s["process"]["env"].as_array_mut() {
                env.push(json!(format!("NAME={id}")));
                env.push(json!("M=/tmp"));
            }
            std::fs::write(b.join("config.json"), serde_json::to_vec(&s).expect("json"))
                .expect("write");
            b
        })
        .collect();
    let root_s = root.to_string_lossy().into_owned();
    let t0 = Instant::now();
    for (id, b) in ids.iter().zip(&bundles) {
        let out = runc(&[
            "--root",
            &root_s,
            "run",
            "--detach",
            "--bundle",
            &b.to_string_lossy(),
            id,
        ]);
        assert!(
            out.status.success(),
            "runc run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ms = wait_all(&paths, t0, Duration::from_secs(120), "runc bring-up");
    for (id, b) in ids.iter().zip(&bundles) {
        let _ = runc(&["--root", &root_s, "delete", "--force", id]);
        let _ = std::fs::remove_dir_all(b);
    }
    ms
}

/// Pids of the `agent monitor` processes of this state directory.
fn monitor_pids(state: &Path) -> Vec<i32> {
    let state = state.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.get(1).map(String::as_str) == Some("monitor") && args.contains(&state) {
            out.push(pid);
        }
    }
    out
}

fn smaps_kib(pid: i32, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

fn status_kib(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench daemon: needs root");
        std::process::exit(1);
    }
    assert!(
        Path::new("/var/lib/agent-test-images/docker.tar").exists(),
        "test images missing: run scripts/build-test-images.sh"
    );
    let rounds: usize = env_or("ROUNDS", 5);
    let idle_secs: u64 = env_or("IDLE_SECONDS", 30);
    let counts: Vec<usize> = std::env::var("COUNTS")
        .unwrap_or_else(|_| "1,10,50".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect::<BTreeSet<usize>>()
        .into_iter()
        .collect();
    let max_n = counts.last().copied().unwrap_or(1);
    let have_runc = Command::new("runc").arg("--version").output().is_ok();
    let mode = std::env::var("NETWORK_MODE").unwrap_or_else(|_| "none".into());
    assert!(
        mode == "none" || mode == "bridge",
        "NETWORK_MODE must be none or bridge, not {mode:?}"
    );

    let mut d = Daemon::prepare("bench", "");
    // The helper's config logs at debug level; a benchmark runs at the default (info).
    let config = std::fs::read_to_string(&d.config).expect("read config");
    std::fs::write(
        &d.config,
        config.replace("level = \"debug\"", "level = \"info\""),
    )
    .expect("write config");
    d.start();
    d.write("image.yaml", IMAGE);
    d.write("volume.yaml", VOLUME);
    d.cli_ok(&["apply"]);
    let marks = d.state.join("volumes/marks/_data");
    assert!(
        marks.is_dir(),
        "volume directory {} missing",
        marks.display()
    );
    let runc_marks = d.dir.path().join("runc-marks");
    std::fs::create_dir_all(&runc_marks).expect("mkdir");
    std::fs::set_permissions(&runc_marks, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let runc_root = d.dir.path().join("runc-root");
    let bundle = have_runc.then(|| runc_bundle(d.dir.path(), &runc_marks));

    let mut res = Results { rows: Vec::new() };
    let mut up: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    let mut down: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    let mut bare: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    let mut noop_cli = Vec::new();
    let mut noop_pass = Vec::new();
    let mut idle: Option<(f64, f64, f64, Vec<f64>)> = None;

    println!(
        "daemon bench: {rounds} rounds, counts {counts:?}, network mode {mode}, agent {}",
        agent_e2e::agent_bin().display()
    );
    for round in 0..rounds {
        for (ci, &n) in counts.iter().enumerate() {
            let names: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
            let ms = bring_up(&d, &marks, &names, &mode);
            up[ci].push(ms);
            eprintln!("round {round}: {n} up in {ms:.0} ms");
            if n == max_n {
                for _ in 0..3 {
                    let t = Instant::now();
                    let v = d.cli_json(&["apply"]);
                    noop_cli.push(t.elapsed().as_secs_f64() * 1000.0);
                    let applied = v["applied"].as_array().map_or(0, Vec::len);
                    assert_eq!(applied, 0, "no-op reconcile applied changes: {v}");
                    let (s, f) = (v["started_at"].as_f64(), v["finished_at"].as_f64());
                    if let (Some(s), Some(f)) = (s, f) {
                        noop_pass.push(f - s);
                    }
                }
                if idle.is_none() {
                    idle = Some(measure_idle(&d, idle_secs));
                }
            }
            let ms = tear_down(&d, &names);
            down[ci].push(ms);
            eprintln!("round {round}: {n} down in {ms:.0} ms");
            if let Some(b) = &bundle {
                bare[ci].push(runc_bring_up(b, &runc_root, &runc_marks, n, round));
            }
        }
    }

    println!("results (ms unless noted):");
    for (ci, &n) in counts.iter().enumerate() {
        res.add("agent_file_to_running", n, up[ci].clone(), "ms");
        if have_runc {
            res.add("runc_run_sequential", n, bare[ci].clone(), "ms");
        }
        res.add("agent_teardown", n, down[ci].clone(), "ms");
    }
    res.add("agent_noop_apply_cli", max_n, noop_cli, "ms");
    res.add("agent_noop_pass", max_n, noop_pass, "ms");
    if let Some((cpu_pct, rss, hwm, monitors)) = idle {
        res.add("agent_idle_cpu", max_n, vec![cpu_pct], "% of one core");
        res.add("agent_idle_rss", max_n, vec![rss / 1024.0], "MiB");
        res.add("agent_peak_rss", max_n, vec![hwm / 1024.0], "MiB");
        res.add("monitor_private_dirty", max_n, monitors, "KiB");
    }
    let tsv = std::env::var_os("BENCH_TSV")
        .map(PathBuf::from)
        .unwrap_or_else(|| agent_e2e::workspace_root().join("bench/results/daemon.tsv"));
    if let Some(p) = tsv.parent() {
        std::fs::create_dir_all(p).expect("mkdir results");
    }
    std::fs::write(&tsv, res.tsv()).expect("write tsv");
    println!("wrote {}", tsv.display());
    d.remove("volume.yaml");
    d.remove("image.yaml");
    let _ = d.cli(&["apply"]);
}

/// Agent CPU (% of one core) and RSS/peak (KiB) over `secs` idle, and each monitor's
/// Private_Dirty (KiB).
fn measure_idle(d: &Daemon, secs: u64) -> (f64, f64, f64, Vec<f64>) {
    let pid = d.pid().expect("agent pid");
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let before = agent_e2e::cpu_ticks(pid);
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let used = (agent_e2e::cpu_ticks(pid) - before) as f64 / ticks;
    let cpu_pct = used / t.elapsed().as_secs_f64() * 100.0;
    let rss = status_kib(pid, "VmRSS");
    let hwm = status_kib(pid, "VmHWM");
    let monitors: Vec<f64> = monitor_pids(&d.state)
        .into_iter()
        .filter_map(|p| smaps_kib(p, "Private_Dirty"))
        .collect();
    println!(
        "idle {secs} s: agent CPU {:.0} ms ({cpu_pct:.3}% of one core), RSS {:.1} MiB (peak {:.1}), {} monitors",
        used * 1000.0,
        rss / 1024.0,
        hwm / 1024.0,
        monitors.len()
    );
    (cpu_pct, rss, hwm, monitors)
}
