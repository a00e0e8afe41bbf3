//! Events and inspect say what changed (issue 16 item 9): a change of a long value names the
//! part that differs (not the same cut prefix on both sides), restart reasons are in words
//! (`on-failure:5`, not `OnFailure { max_retries: Some(5) }`), and `agent inspect` shows the
//! monitor's pid, the links (both ways) and RFC 3339 times. Driven through files and the CLI.

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};
use serde_json::Value;

fn is_rfc3339(v: &Value) -> bool {
    // 2026-12-07T01:02:03Z
    v.as_str().is_some_and(|s| {
        let b = s.as_bytes();
        s.len() == 20 && b[4] == b'-' && b[10] == b'T' && b[13] == b':' && s.ends_with('Z')
    })
}

#[test]
fn reasons_name_what_differs_and_restart_policies_in_words() {
    if !require_root("reasons_name_what_differs_and_restart_policies_in_words") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("reasons", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    // A long command whose only change is at its end.
    let long = |v: &str| {
        container_manifest(
            "long",
            &format!(
                "echo this is a rather long start-up script that goes on and on; exec sleep 1000 # {v}"
            ),
            "",
        )
    };
    d.write("long.yaml", &long("version-one"));
    d.write(
        "crash.yaml",
        &container_manifest(
            "crash",
            "exit 3",
            "  restart: {policy: on-failure, maxRetries: 5}\n",
        ),
    );
    d.wait_for("long running", Duration::from_secs(60), || {
        (d.ps_row("long")["state"] == "running").then_some(())
    });
    d.write("long.yaml", &long("version-two"));
    let ev = d.wait_for("long recreated", Duration::from_secs(60), || {
        d.events_of("long", "container.recreate").into_iter().last()
    });
    let reason = ev["message"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("# version-one") && reason.contains("# version-two"),
        "{reason}"
    );

    let ev = d.wait_for("crash restart scheduled", Duration::from_secs(60), || {
        d.events_of("crash", "container.restart-scheduled")
            .into_iter()
            .next()
    });
    let reason = ev["message"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("restart policy on-failure:5: restart in "),
        "{reason}"
    );
    let text = d.cli_ok(&["events", "-n", "1000"]);
    assert!(
        !text.contains("OnFailure") && !text.contains("max_retries"),
        "{text}"
    );
    d.remove_all_and_wait(Duration::from_secs(60));
}

#[test]
fn inspect_shows_monitor_links_and_rfc3339_times() {
    if !require_root("inspect_shows_monitor_links_and_rfc3339_times") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("inspect", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    let bridged = |name: &str, extra: &str| {
        format!(
            "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: busybox\n  command: [\"/bin/sleep\", \"1000\"]\n  stopGracePeriod: 1s\n{extra}"
        )
    };
    d.write("db.yaml", &bridged("db", ""));
    d.write(
        "web.yaml",
        &bridged("web", "  links: [{container: db, alias: database}]\n"),
    );
    d.wait_for("both running", Duration::from_secs(60), || {
        (d.ps_row("web")["state"] == "running" && d.ps_row("db")["state"] == "running")
            .then_some(())
    });
    let web: Value = serde_json::from_str(&d.cli_ok(&["inspect", "web"])).expect("inspect web");
    let links = web["links"].as_array().cloned().unwrap_or_default();
    assert!(
        links
            .iter()
            .any(|l| l["child"] == "db" && l["alias"] == "database" && l["parent"] == "web"),
        "{web}"
    );
    let db: Value = serde_json::from_str(&d.cli_ok(&["inspect", "db"])).expect("inspect db");
    assert!(
        db["linked_by"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l["parent"] == "web")),
        "{db}"
    );
    // The monitor: a live `agent monitor` process.
    let pid = web["monitor_pid"].as_i64().expect("monitor pid");
    assert_eq!(web["monitor_alive"], true, "{web}");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("monitor"),
        "pid {pid}: {}",
        String::from_utf8_lossy(&cmdline)
    );
    // Times in RFC 3339, also on its events.
    assert!(is_rfc3339(&web["created"]), "{web}");
    assert!(is_rfc3339(&web["started"]), "{web}");
    assert!(web["finished"].is_null(), "{web}");
    let events = web["events"].as_array().cloned().unwrap_or_default();
    assert!(!events.is_empty(), "{web}");
    assert!(events.iter().all(|e| is_rfc3339(&e["at"])), "{web}");
    d.remove_all_and_wait(Duration::from_secs(60));
}
