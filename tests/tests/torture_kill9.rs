//! Torture: kill -9 the agent at random moments while it applies changes (root).
//!
//! `TORTURE_KILL9_CONTAINERS` containers (default 20) on the agent's default bridge network, each
//! with a published port (random host port on 127.0.0.1), a link to the previous one (chains of
//! five) and a volume of its own holding a sentinel file the test wrote from the host. Then
//! `TORTURE_KILL9_CYCLES` cycles (default 10; `TORTURE_LONG=1`: 200): change three random
//! containers (a new `GEN` in their environment: recreate), start the agent, SIGKILL it after a
//! random 0-2.5 s (mid-pass: while stopping, removing, creating, attaching), start it again and
//! let it converge. After every cycle:
//! - every container runs its newest `GEN` (its process writes it into its volume);
//! - exactly one veth, one network namespace, one IP allocation (distinct addresses), one monitor
//!   process and one root filesystem mount per container; as many firewall rules as after the
//!   first bring-up (no leaked or missing port rules);
//! - every volume's sentinel file is intact.
//!
//! At the end every file is removed: no veth, namespace, allocation, mount or monitor is left.
//! The random sequence is seeded from the pid (printed; `TORTURE_SEED` replays one).

use std::time::{Duration, Instant};

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};
use agent_e2e::network::links_with_prefix;
use agent_e2e::torture::{
    self, Rng, env_num, firewall_rules, ip_allocations, monitors, overlay_available, rootfs_mounts,
};

fn files(i: usize, gen_: u64) -> String {
    let link = if i.is_multiple_of(5) {
        String::new()
    } else {
        format!("  links: [{{container: c{}, alias: prev}}]\n", i - 1)
    };
    format!(
        "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: v{i}\nspec:\n  reclaim: retain\n---\napiVersion: agent/v1\nkind: Container\nmetadata:\n  name: c{i}\nspec:\n  image: busybox\n  command: [\"/bin/sh\", \"-c\", \"echo $GEN > /data/gen; trap 'exit 0' TERM; sleep 100000 & wait\"]\n  env: {{GEN: \"{gen_}\"}}\n  ports: [\"127.0.0.1::80/tcp\"]\n{link}  volumes:\n    - {{volume: v{i}, target: /data}}\n  restart: always\n  stopGracePeriod: 1s\n"
    )
}

/// What is wrong with the host after convergence, if anything.
fn leaks(d: &Daemon, n: usize, rules: Option<usize>) -> Option<String> {
    let veths = links_with_prefix(&d.net.veth_prefix);
    // One host-side veth per container (the peer lives in the container's namespace).
    if veths.len() != n {
        return Some(format!("{} veths, expected {n}: {veths:?}", veths.len()));
    }
    let ns = d.netns().len();
    if ns != n {
        return Some(format!("{ns} network namespaces, expected {n}"));
    }
    let (ips, distinct) = ip_allocations(d);
    if ips != n as i64 || distinct != ips {
        return Some(format!(
            "{ips} IP allocations ({distinct} distinct), expected {n}"
        ));
    }
    let m = monitors(d);
    if m != n {
        return Some(format!("{m} monitors, expected {n}"));
    }
    let mounts = rootfs_mounts(d.dir.path());
    if mounts != if overlay_available() { n } else { 0 } {
        return Some(format!("{mounts} root filesystem mounts, expected {n}"));
    }
    if let Some(r) = rules {
        let now = firewall_rules(d);
        if now != r {
            return Some(format!("{now} firewall rule lines, expected {r}"));
        }
    }
    None
}

/// Waits until every container runs its expected GEN and nothing leaks.
fn converge(d: &Daemon, gens: &[u64], rules: Option<usize>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let why = (|| {
            let ps = d.cli_json(&["ps"]);
            let rows = ps.as_array().cloned().unwrap_or_default();
            for (i, g) in gens.iter().enumerate() {
                let name = format!("c{i}");
                let running = rows
                    .iter()
                    .any(|r| r["name"] == name.as_str() && r["state"] == "running");
                if !running {
                    return Some(format!("{name} not running"));
                }
                let data = d.state.join(format!("volumes/v{i}/_data/gen"));
                let got = std::fs::read_to_string(&data).unwrap_or_default();
                if got.trim() != g.to_string() {
                    return Some(format!("{name} runs GEN {:?}, expected {g}", got.trim()));
                }
            }
            leaks(d, gens.len(), rules)
        })();
        let Some(why) = why else {
            return;
        };
        if Instant::now() > deadline {
            panic!("{what}: not converged after 180 s: {why}\n{}", d.log_tail());
        }
        let _ = d.cli(&["apply"]);
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn check_sentinels(d: &Daemon, n: usize) {
    for i in 0..n {
        let p = d.state.join(format!("volumes/v{i}/_data/sentinel"));
        let got = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(
            got,
            format!("sentinel of v{i}\n"),
            "{} changed",
            p.display()
        );
    }
}

#[test]
fn kill9_during_apply_cycles_converges_without_leaks() {
    if !require_root("kill9_during_apply_cycles_converges_without_leaks") {
        return;
    }
    require_images();
    let long = torture::long();
    let n = env_num("TORTURE_KILL9_CONTAINERS").unwrap_or(20) as usize;
    let cycles = env_num("TORTURE_KILL9_CYCLES").unwrap_or(if long { 200 } else { 10 });
    let seed = torture::seed();
    println!("kill -9 torture: {n} containers, {cycles} cycles, seed {seed}");
    let mut rng = Rng(seed);

    let mut d = Daemon::prepare("kill9", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    let mut gens = vec![0u64; n];
    for i in 0..n {
        d.write(&format!("c{i}.yaml"), &files(i, 0));
    }
    let t = Instant::now();
    converge(&d, &gens, None, "first bring-up");
    println!("{n} containers up in {:.1} s", t.elapsed().as_secs_f64());
    for i in 0..n {
        let p = d.state.join(format!("volumes/v{i}/_data/sentinel"));
        std::fs::write(&p, format!("sentinel of v{i}\n")).expect("write sentinel");
    }
    let rules = firewall_rules(&d);

    let mut kills = 0;
    let mut mid_pass = 0;
    let t = Instant::now();
    for cycle in 1..=cycles {
        for _ in 0..3 {
            let i = (rng.next_u64() % n as u64) as usize;
            gens[i] = cycle;
            d.write(&format!("c{i}.yaml"), &files(i, cycle));
        }
        // The agent is running: it has started on the changes. Kill it mid-way.
        let wait = Duration::from_millis(rng.next_u64() % 2500);
        std::thread::sleep(wait);
        d.stop_with(libc::SIGKILL);
        kills += 1;
        // Did the kill interrupt a pass? (its last "pass starts" has no "pass done")
        let log = d.log_text();
        if log.rfind("\"message\":\"pass starts\"") > log.rfind("\"message\":\"pass done\"") {
            mid_pass += 1;
        }
        d.start();
        converge(&d, &gens, Some(rules), &format!("cycle {cycle}"));
        check_sentinels(&d, n);
    }
    println!(
        "{cycles} cycles with {kills} kill -9 ({mid_pass} in the middle of a pass) in {:.1} s: converged every time, no leaks, sentinels intact",
        t.elapsed().as_secs_f64()
    );

    d.remove_all_manifests();
    d.wait_for("everything removed", Duration::from_secs(120), || {
        let _ = d.cli(&["apply"]);
        let empty = d.cli_json(&["ps"]).as_array()?.is_empty();
        (empty && leaks(&d, 0, None).is_none()).then_some(())
    });
}
