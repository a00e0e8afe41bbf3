//! A container whose health check prints without end (here: 512 MiB, then it fails): the
//! command runs in the container, whose files the container controls, so it is the container
//! that decides how much it prints. The agent keeps only the end of a probe's output; before,
//! it held all of it in memory (about 1 GiB a second, until the probe's timeout).

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};

/// The agent's peak resident memory (VmHWM), in KiB.
fn peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_health_check_that_prints_without_end_costs_the_agent_no_memory() {
    if !require_root("a_health_check_that_prints_without_end_costs_the_agent_no_memory") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("hcflood", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write(
        "c.yaml",
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: flood\nspec:\n  image: busybox\n  \
         command: [\"sleep\", \"1000\"]\n  networkMode: none\n  stopGracePeriod: 1s\n  \
         healthcheck:\n    command: [\"/bin/sh\", \"-c\", \"head -c 536870912 /dev/zero; echo the-end; exit 3\"]\n    \
         interval: 1s\n    timeout: 120s\n    retries: 1\n",
    );
    d.wait_for("flood running", Duration::from_secs(60), || {
        (d.try_ps_row("flood")?["state"] == "running").then_some(())
    });
    let pid = d.pid().expect("agent pid");
    let before = peak_kib(pid);
    let row = d.wait_for("flood unhealthy", Duration::from_secs(120), || {
        let r = d.try_ps_row("flood")?;
        r.to_string().contains("unhealthy").then_some(r)
    });
    let after = peak_kib(pid);
    println!("agent peak RSS: {before} KiB before the probe, {after} KiB after; {row}");
    assert!(
        after < before + 128 * 1024,
        "the agent's peak RSS grew from {before} KiB to {after} KiB reading a probe's output"
    );
    // The end of the output is what is kept.
    let inspect = d.cli_ok(&["inspect", "flood"]);
    assert!(
        inspect.contains("the-end"),
        "the output's end is not shown: {inspect}"
    );
}
