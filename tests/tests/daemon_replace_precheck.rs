//! End-to-end: the checks before a running container is replaced (`reconcile::precheck`) that
//! depend on the host. A `ulimits` hard limit above what the agent may set (its own hard limit, which
//! it lacks CAP_SYS_RESOURCE to raise). A new container fails at create with an error naming
//! the ulimit and the bound; a replacement of a running container is refused before the running
//! one is stopped, which is kept (it was stopped and removed before, and the new one failed);
//! `agent validate` warns. The same for an `oomScoreAdj` below the agent's own (the kernel
//! lets only CAP_SYS_RESOURCE lower it), and for a host device node that is gone (unplugged).
//! docs/security.md and `reconcile::precheck` say why.
//!
//! The agent inherits the test's own rlimits, so the bound is the test's hard `nofile`. Skipped,
//! with the reason printed, where the test holds CAP_SYS_RESOURCE (the agent could raise it).

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

/// Our own hard `nofile` limit when we cannot raise it, `None` (with the reason printed) when
/// the test cannot run here.
fn bound(test: &str) -> Option<u64> {
    let cap_eff = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    // CAP_SYS_RESOURCE is capability 24.
    if cap_eff & (1 << 24) != 0 {
        eprintln!("skipping {test}: this process holds CAP_SYS_RESOURCE, the agent could raise it");
        return None;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1_048_576);
    if lim.rlim_max >= nr_open {
        eprintln!("skipping {test}: our hard nofile limit is not below fs.nr_open");
        return None;
    }
    Some(lim.rlim_max)
}

fn sleeper(name: &str, hard: u64) -> String {
    container_manifest(
        name,
        "exec sleep 100000",
        &format!("  ulimits:\n    nofile: {{soft: 1024, hard: {hard}}}\n"),
    )
}

fn running(d: &Daemon, name: &str) -> Option<serde_json::Value> {
    d.try_ps_row(name).filter(|r| r["state"] == "running")
}

#[test]
fn a_new_container_above_the_agents_hard_limit_fails_by_name() {
    let test = "a_new_container_above_the_agents_hard_limit_fails_by_name";
    if !require_root(test) {
        return;
    }
    let Some(own) = bound(test) else { return };
    require_images();
    let mut d = Daemon::prepare("ulimitnew", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("big.yaml", &sleeper("big", own + 1));
    let failure = d.wait_for("the create failure", Duration::from_secs(90), || {
        d.events_of("big", "change.failed").into_iter().next()
    });
    let text = failure.to_string();
    assert!(
        text.contains(&format!(
            "ulimit nofile: hard limit {} is above the agent's own hard limit {own}",
            own + 1
        )) && text.contains("CAP_SYS_RESOURCE")
            && text.contains(&format!("use at most {own}")),
        "{failure}"
    );
    assert!(running(&d, "big").is_none());
}

#[test]
fn a_replacement_above_the_agents_hard_limit_keeps_the_running_container() {
    let test = "a_replacement_above_the_agents_hard_limit_keeps_the_running_container";
    if !require_root(test) {
        return;
    }
    let Some(own) = bound(test) else { return };
    require_images();
    let mut d = Daemon::prepare("ulimitkeep", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("web.yaml", &sleeper("web", own));
    let row = d.wait_for("web running", Duration::from_secs(90), || {
        running(&d, "web")
    });
    let id = row["id"].clone();

    // `agent validate` warns about the edit and does not refuse it.
    let edited = sleeper("web", own + 1);
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("web.yaml"), &edited).expect("write");
    std::fs::write(tmp.path().join("image.yaml"), BUSYBOX_IMAGE).expect("write");
    let (code, out, err) = agent_e2e::manifest::validate(&[tmp.path()]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("warning: ")
            && out.contains("spec.ulimits.nofile")
            && out.contains(&format!("use at most {own}")),
        "{out}"
    );

    // The agent refuses the replacement before it stops anything.
    d.write("web.yaml", &edited);
    let failure = d.wait_for("the refusal reported", Duration::from_secs(60), || {
        d.events_of("web", "change.failed").into_iter().next()
    });
    assert!(
        failure.to_string().contains("ulimit nofile")
            && failure.to_string().contains("the running one is kept"),
        "{failure}"
    );
    let row = d.try_ps_row("web").expect("web is still listed");
    assert_eq!(row["state"], "running", "{row}");
    assert_eq!(row["id"], id, "the running container was replaced: {row}");
    assert!(
        d.events_of("web", "container.stop").is_empty()
            && d.events_of("web", "container.remove").is_empty(),
        "something was torn down: {:?}",
        d.events()
    );
    let status = d.cli(&["status"]);
    assert_ne!(status.status.code(), Some(0), "status reports the failure");
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("ulimit nofile"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
}

#[test]
fn a_replacement_below_the_agents_oom_score_adj_keeps_the_running_container() {
    let test = "a_replacement_below_the_agents_oom_score_adj_keeps_the_running_container";
    if !require_root(test) {
        return;
    }
    // The capability is what matters here, not the nofile limit.
    if bound(test).is_none() {
        return;
    }
    let own: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("our oom_score_adj");
    if own <= -1000 {
        eprintln!("skipping {test}: our oom_score_adj is -1000, nothing is below it");
        return;
    }
    require_images();
    let mut d = Daemon::prepare("oomkeep", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    let web = |adj: i32| {
        container_manifest(
            "web",
            "exec sleep 100000",
            &format!("  oomScoreAdj: {adj}\n"),
        )
    };
    d.write("web.yaml", &web(own));
    let row = d.wait_for("web running", Duration::from_secs(90), || {
        running(&d, "web")
    });
    let id = row["id"].clone();
    d.write("web.yaml", &web(own - 1));
    let failure = d.wait_for("the refusal reported", Duration::from_secs(60), || {
        d.events_of("web", "change.failed").into_iter().next()
    });
    assert!(
        failure.to_string().contains(&format!(
            "oomScoreAdj {} is below the agent's own oom_score_adj ({own})",
            own - 1
        )) && failure.to_string().contains("the running one is kept"),
        "{failure}"
    );
    let row = d.try_ps_row("web").expect("web is still listed");
    assert_eq!(row["state"], "running", "{row}");
    assert_eq!(row["id"], id, "the running container was replaced: {row}");
    assert!(
        d.events_of("web", "container.stop").is_empty()
            && d.events_of("web", "container.remove").is_empty(),
        "something was torn down: {:?}",
        d.events()
    );
}

#[test]
fn a_replacement_whose_device_is_gone_keeps_the_running_container() {
    let test = "a_replacement_whose_device_is_gone_keeps_the_running_container";
    if !require_root(test) {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("devgone", "");
    // A device node of our own (the numbers of /dev/null), "unplugged" by removing it.
    let node = d.dir.path().join("usb0");
    let made = std::process::Command::new("mknod")
        .arg(&node)
        .args(["c", "1", "3"])
        .status()
        .expect("run mknod");
    assert!(made.success(), "mknod {}", node.display());
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    let web = |extra: &str| {
        container_manifest(
            "web",
            "exec sleep 100000",
            &format!("  devices: [\"{}:/dev/usb0\"]\n{extra}", node.display()),
        )
    };
    d.write("web.yaml", &web(""));
    let row = d.wait_for("web running", Duration::from_secs(90), || {
        running(&d, "web")
    });
    let id = row["id"].clone();
    std::fs::remove_file(&node).expect("remove the node");
    d.write("web.yaml", &web("  env: {A: b}\n"));
    let failure = d.wait_for("the refusal reported", Duration::from_secs(60), || {
        d.events_of("web", "change.failed").into_iter().next()
    });
    assert!(
        failure.to_string().contains(&format!(
            "devices: device {} does not exist on this host",
            node.display()
        )) && failure.to_string().contains("the running one is kept"),
        "{failure}"
    );
    let row = d.try_ps_row("web").expect("web is still listed");
    assert_eq!(row["state"], "running", "{row}");
    assert_eq!(row["id"], id, "the running container was replaced: {row}");
    assert!(
        d.events_of("web", "container.stop").is_empty()
            && d.events_of("web", "container.remove").is_empty(),
        "something was torn down: {:?}",
        d.events()
    );
}
