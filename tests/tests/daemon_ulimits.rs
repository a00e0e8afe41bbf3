//! End-to-end: the default open-file limit of a container (issue 19 item 5). It was 1024:1024
//! in every container (MariaDB shrank its table cache, Redis its maxclients); now soft 1024 and a
//! hard limit as high as the host allows the agent (docs/exec.md "Open files"), for the
//! container's process and for `agent exec`. A manifest's `ulimits.nofile` still wins.

use std::process::Command;
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

/// The hard limit the agent started by this test gives (the rule of `default_nofile`): 1048576,
/// bounded by `fs.nr_open` and, without CAP_SYS_RESOURCE, by our own hard limit (the agent
/// inherits it).
fn expected_hard() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let cap_eff = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    // CAP_SYS_RESOURCE is capability 24
    let can_raise = cap_eff & (1 << 24) != 0;
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1_048_576);
    let mut hard = 1_048_576u64.min(nr_open);
    if !can_raise {
        hard = hard.min(lim.rlim_max);
    }
    hard
}

fn logs(d: &Daemon, name: &str) -> String {
    let out = Command::new(agent_e2e::agent_bin())
        .args(["logs", name, "--state-dir"])
        .arg(&d.state)
        .output()
        .unwrap_or_else(|e| panic!("agent logs: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_container_gets_a_high_open_file_hard_limit() {
    if !require_root("a_container_gets_a_high_open_file_hard_limit") {
        return;
    }
    require_images();
    let hard = expected_hard();
    assert!(
        hard > 1024,
        "this host allows no more than {hard} open files"
    );
    let mut d = Daemon::prepare("nofile", "");
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    let script = "echo nofile=$(ulimit -Sn):$(ulimit -Hn); sleep 1000";
    d.write("dflt.yaml", &container_manifest("dflt", script, ""));
    d.write(
        "set.yaml",
        &container_manifest(
            "set",
            script,
            "  ulimits:\n    nofile: {soft: 2048, hard: 4096}\n",
        ),
    );
    d.start();
    for (name, want) in [
        ("dflt", format!("nofile=1024:{hard}\n")),
        ("set", "nofile=2048:4096\n".to_string()),
    ] {
        let text = d.wait_for(&format!("{name}'s output"), Duration::from_secs(60), || {
            let t = logs(&d, name);
            (!t.is_empty()).then_some(t)
        });
        assert_eq!(text, want, "{name}");
    }
    // `agent exec` runs with the container's limits, and the soft limit can be raised to the hard
    let out = Command::new(agent_e2e::agent_bin())
        .args(["exec", "dflt", "--state-dir"])
        .arg(&d.state)
        .args([
            "--",
            "/bin/sh",
            "-c",
            "ulimit -Hn; ulimit -Sn $(ulimit -Hn) && ulimit -Sn",
        ])
        .output()
        .unwrap_or_else(|e| panic!("agent exec: {e}"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{hard}\n{hard}\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
