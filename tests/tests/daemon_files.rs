//! The running agent and its manifest files, through files and the CLI only: per-file status,
//! broken files keeping their last good version, refused permissions, the CLI's fallback to the
//! store, signals, the config file, and systemd notifications.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

const VOLUME: &str =
    "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: data\nspec:\n  reclaim: retain\n";
const BROKEN: &str = "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: data\nspec:\n  reclaim: retain\n  sise: 1Gi\n";

fn status_of(d: &Daemon, name: &str) -> Option<(String, Option<String>)> {
    let f = d.file_status(name)?;
    Some((
        f["status"].as_str()?.to_string(),
        f["error"].as_str().map(str::to_string),
    ))
}

#[test]
fn file_status_follows_add_break_fix_remove() {
    if !require_root("file_status_follows_add_break_fix_remove") {
        return;
    }
    let mut d = Daemon::prepare("files", "");
    d.start();
    d.write("data.yaml", VOLUME);
    d.wait_for("data.yaml ok", Duration::from_secs(10), || {
        (status_of(&d, "data.yaml")?.0 == "ok").then_some(())
    });

    // Break it: the error names file:line:col and the field; exit code 1.
    d.write("data.yaml", BROKEN);
    let err = d.wait_for("data.yaml error", Duration::from_secs(10), || {
        let (st, err) = status_of(&d, "data.yaml")?;
        (st == "error").then_some(err?)
    });
    let path = d.path("data.yaml");
    assert!(
        err.contains(&format!("{}:7:3: spec.sise", path.display())),
        "{err}"
    );
    let out = d.cli(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("error (its last good version stays in force"),
        "{text}"
    );
    assert!(text.contains(":7:3:"), "{text}");

    // Fix it.
    d.write("data.yaml", VOLUME);
    d.wait_for("data.yaml ok again", Duration::from_secs(10), || {
        (status_of(&d, "data.yaml")?.0 == "ok").then_some(())
    });
    assert_eq!(d.cli(&["status"]).status.code(), Some(0));

    // Remove it: the file is forgotten once its removal was applied.
    d.remove("data.yaml");
    d.wait_for("data.yaml gone", Duration::from_secs(10), || {
        d.file_status("data.yaml").is_none().then_some(())
    });
    let kinds: Vec<String> = d
        .events()
        .iter()
        .filter(|e| {
            e["object"]
                .as_str()
                .is_some_and(|o| o.ends_with("data.yaml"))
        })
        .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "manifest.loaded",
            "manifest.error",
            "manifest.loaded",
            "manifest.removed"
        ]
    );
}

/// A version that loaded while its container was busy (its recreate deferred behind the one in
/// flight), then a broken save: the container ends on that last good version, not on the one it
/// ran before. (The broken file's objects are frozen as last applied only once its last good
/// version was applied.)
#[test]
fn broken_save_after_a_deferred_change_runs_the_last_good_version() {
    if !require_root("broken_save_after_a_deferred_change_runs_the_last_good_version") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("lastgood", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("volume.yaml", VOLUME);
    // Ignores SIGTERM: each stop takes its whole grace (3 s), so the container stays busy.
    let version = |v: u32| {
        container_manifest(
            "lg",
            "echo $V > /d/v; trap '' TERM; while true; do sleep 1; done",
            &format!("  env: {{V: \"{v}\"}}\n  volumes:\n    - {{volume: data, target: /d}}\n"),
        )
        .replace("stopGracePeriod: 1s", "stopGracePeriod: 3s")
    };
    let mark = d.state.join("volumes/data/_data/v");
    let runs = |v: &str| {
        std::fs::read_to_string(&mark)
            .is_ok_and(|t| t.trim() == v)
            .then_some(())
    };
    d.write("lg.yaml", &version(1));
    d.wait_for("version 1 running", Duration::from_secs(30), || runs("1"));

    // Version 2: its recreate stops the container for 3 s.
    d.write("lg.yaml", &version(2));
    d.wait_for(
        "the recreate to version 2 in flight",
        Duration::from_secs(10),
        || {
            let status = d.cli_json(&["status"]);
            status["in_flight"]
                .as_array()?
                .iter()
                .any(|w| w["object"] == "container/lg")
                .then_some(())
        },
    );
    // Version 3 loads while that recreate runs: its own recreate waits.
    let deferred_before = d.log_text().matches("deferred: its object is busy").count();
    d.write("lg.yaml", &version(3));
    d.wait_for(
        "the recreate to version 3 deferred",
        Duration::from_secs(10),
        || {
            (d.log_text().matches("deferred: its object is busy").count() > deferred_before)
                .then_some(())
        },
    );
    // Then a broken save.
    d.write("lg.yaml", &version(4).replace("  image:", "  imagee:"));
    d.wait_for("lg.yaml error", Duration::from_secs(10), || {
        (status_of(&d, "lg.yaml")?.0 == "error").then_some(())
    });
    d.wait_for(
        "version 3 (the last good one) running",
        Duration::from_secs(30),
        || runs("3"),
    );
    d.remove_all_and_wait(Duration::from_secs(30));
}

#[test]
fn writable_manifest_is_refused() {
    if !require_root("writable_manifest_is_refused") {
        return;
    }
    let mut d = Daemon::prepare("perms", "");
    d.start();
    d.write("data.yaml", VOLUME);
    d.wait_for("ok", Duration::from_secs(10), || {
        (status_of(&d, "data.yaml")?.0 == "ok").then_some(())
    });
    std::fs::set_permissions(d.path("data.yaml"), std::fs::Permissions::from_mode(0o666))
        .expect("chmod");
    // A chmod alone makes no inotify event the directory watch sees: `agent apply` rescans.
    let err = d.wait_for("refused", Duration::from_secs(10), || {
        let _ = d.cli(&["apply"]);
        let (st, err) = status_of(&d, "data.yaml")?;
        (st == "error").then_some(err?)
    });
    assert!(
        err.contains("refused: mode 0666 lets group and others change it"),
        "{err}"
    );
    assert!(err.contains("chmod go-w"), "{err}");
}

#[test]
fn cli_reads_the_store_when_the_agent_is_down() {
    if !require_root("cli_reads_the_store_when_the_agent_is_down") {
        return;
    }
    let mut d = Daemon::prepare("fallback", "");
    d.start();
    d.write("data.yaml", VOLUME);
    d.wait_for("ok", Duration::from_secs(10), || {
        (status_of(&d, "data.yaml")?.0 == "ok").then_some(())
    });
    let status = d.stop().expect("agent exit status");
    assert!(
        status.success(),
        "agent exited with {status}:\n{}",
        d.log_tail()
    );
    assert!(!d.socket.exists(), "socket left behind");

    let out = d.cli(&["status", "-o", "json"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the agent is not running"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["agent_running"], false);
    assert_eq!(v["files"][0]["status"], "ok");
    let events = d.events();
    assert!(events.iter().any(|e| e["kind"] == "manifest.loaded"));
    assert!(d.cli(&["ps"]).status.success());

    let out = d.cli(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("start it with `agent run`"), "{stderr}");
    let out = d.cli(&["events", "-f"]);
    assert!(!out.status.success());
}

#[test]
fn second_agent_on_the_same_state_is_refused() {
    if !require_root("second_agent_on_the_same_state_is_refused") {
        return;
    }
    let mut d = Daemon::prepare("twice", "");
    d.start();
    let out = std::process::Command::new(agent_e2e::agent_bin())
        .args(["run", "--manifests"])
        .arg(&d.manifests)
        .arg("--state-dir")
        .arg(&d.state)
        .arg("--socket")
        .arg(d.dir.path().join("other.sock"))
        .arg("--config")
        .arg(&d.config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is in use by another agent"), "{stderr}");
    // And the same socket with another state directory.
    let out = std::process::Command::new(agent_e2e::agent_bin())
        .args(["run", "--manifests"])
        .arg(&d.manifests)
        .arg("--state-dir")
        .arg(d.dir.path().join("state2"))
        .arg("--socket")
        .arg(&d.socket)
        .arg("--config")
        .arg(&d.config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already listening"), "{stderr}");
    // The first one still answers.
    d.cli_ok(&["ps"]);
}

#[test]
fn bad_config_is_reported_with_file_and_line() {
    let d = Daemon::prepare("config", "[restart]\nstrat = \"1s\"\n");
    let out = std::process::Command::new(agent_e2e::agent_bin())
        .args(["run", "--config"])
        .arg(&d.config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!("{}:", d.config.display());
    assert!(stderr.contains(&want), "{stderr}");
    assert!(
        stderr.contains("unknown key `strat`; did you mean `start`?"),
        "{stderr}"
    );
}

#[test]
fn systemd_ready_and_watchdog() {
    if !require_root("systemd_ready_and_watchdog") {
        return;
    }
    let mut d = Daemon::prepare("notify", "");
    let sock_path = d.dir.path().join("notify.sock");
    let rx = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    rx.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    d.env("NOTIFY_SOCKET", sock_path.to_str().expect("utf-8"));
    d.env("WATCHDOG_USEC", "400000");
    d.start();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let start = Instant::now();
    while got
        .iter()
        .filter(|m: &&String| m.as_str() == "WATCHDOG=1")
        .count()
        < 2
    {
        let n = rx.recv(&mut buf).expect("notification");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        assert!(start.elapsed() < Duration::from_secs(10), "{got:?}");
    }
    assert!(got[0].starts_with("READY=1"), "{got:?}");
    d.stop();
    let n = rx.recv(&mut buf).expect("stopping");
    let mut last = String::from_utf8_lossy(&buf[..n]).into_owned();
    while last == "WATCHDOG=1" {
        let n = rx.recv(&mut buf).expect("stopping");
        last = String::from_utf8_lossy(&buf[..n]).into_owned();
    }
    assert!(last.starts_with("STOPPING=1"), "{last}");
}
