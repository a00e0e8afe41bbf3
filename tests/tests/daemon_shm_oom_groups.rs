//! End-to-end: `shmSize`, `oomScoreAdj` and `groupAdd` (issue 17 item 5) reach the container's
//! process: the size of its `/dev/shm`, its `/proc/self/oom_score_adj` and the supplementary
//! groups in `/proc/self/status` (a name from the image's `/etc/group` and a bare gid). A change
//! of one of them recreates the container, with the field in the reason. A value below the
//! agent's own `oom_score_adj` is refused at apply, naming the field, when the agent lacks
//! CAP_SYS_RESOURCE (as root does on the test machine).

use std::process::Command;
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

fn logs(d: &Daemon, name: &str) -> String {
    let out = Command::new(agent_e2e::agent_bin())
        .args(["logs", name, "--state-dir"])
        .arg(&d.state)
        .output()
        .unwrap_or_else(|e| panic!("agent logs: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const SCRIPT: &str = "grep ' /dev/shm ' /proc/mounts | tr ',' '\\n' | grep '^size='; \
                      echo oom=$(cat /proc/self/oom_score_adj); \
                      grep '^Groups:' /proc/self/status; sleep 1000";

fn own_oom_score_adj() -> i32 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn has_cap_sys_resource() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|bits| bits & (1 << 24) != 0)
}

#[test]
fn shm_size_oom_score_adj_and_group_add_reach_the_process() {
    if !require_root("shm_size_oom_score_adj_and_group_add_reach_the_process") {
        return;
    }
    require_images();
    let own = own_oom_score_adj();
    let adj = (own + 500).min(1000);
    let mut d = Daemon::prepare("shmoom", "");
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    let extra = |shm: &str| {
        format!("  shmSize: {shm}\n  oomScoreAdj: {adj}\n  groupAdd: [nogroup, 4242]\n")
    };
    d.write("f.yaml", &container_manifest("f", SCRIPT, &extra("16Mi")));
    d.start();
    let text = d.wait_for("f's output", Duration::from_secs(60), || {
        let t = logs(&d, "f");
        t.contains("Groups:").then_some(t)
    });
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().next(),
        Some("size=16384k"),
        "{text}"
    );
    assert_eq!(lines[1], format!("oom={adj}"), "{text}");
    let mut groups: Vec<&str> = lines[2]
        .trim_start_matches("Groups:")
        .split_whitespace()
        .collect();
    groups.sort_unstable();
    assert_eq!(groups, ["4242", "65534"], "{text}");
    // The monitor took its own oom_score_adj back after creating the container.
    for pid in d.monitor_pids() {
        let v = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap_or_default();
        assert_eq!(v.trim(), own.to_string(), "monitor {pid}");
    }

    // A change of shmSize recreates the container, with the field in the reason.
    let id = d.ps_row("f")["id"].clone();
    d.write("f.yaml", &container_manifest("f", SCRIPT, &extra("32Mi")));
    d.wait_for("f recreated", Duration::from_secs(60), || {
        let r = d.try_ps_row("f")?;
        (r["state"] == "running" && r["id"] != id).then_some(())
    });
    let text = d.wait_for("f's new output", Duration::from_secs(60), || {
        let t = logs(&d, "f");
        t.contains("size=32768k").then_some(t)
    });
    assert!(text.contains("size=32768k"), "{text}");
    let reason = d
        .events_of("f", "container.recreate")
        .last()
        .map(|e| {
            e["message"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default();
    assert!(reason.contains("shmSize 16Mi -> 32Mi"), "{reason}");

    // Below the agent's own value without CAP_SYS_RESOURCE: refused, naming the field.
    if own > -1000 && !has_cap_sys_resource() {
        d.write(
            "low.yaml",
            &container_manifest(
                "low",
                "sleep 1000",
                &format!("  oomScoreAdj: {}\n", own - 1),
            ),
        );
        let failed = d.wait_for("low refused", Duration::from_secs(60), || {
            d.events_of("low", "change.failed").into_iter().next()
        });
        let text = failed.to_string();
        assert!(
            text.contains("oomScoreAdj") && text.contains("CAP_SYS_RESOURCE"),
            "{text}"
        );
    }
}
