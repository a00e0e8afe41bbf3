//! Huge durations never panic the agent (issue 15 item 8). `agent stop -t 1e19` is refused by
//! the CLI; the API answers 400 for `?time=1e19` and `?time=1e20` (before: the first ended the
//! daemon, an `Instant + Duration` overflow, the second panicked the handler); a manifest with
//! `stopGracePeriod: 3000000000000000h` is refused with its line and column; and a grace period
//! of that size stored by an older version (in the container's row and its bundle) is clamped
//! when read, so removing that container at start-up works (before: a panic at every start).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

/// Exits at once on SIGTERM (a grace period is then never waited out).
const SCRIPT: &str = "trap 'exit 0' TERM; while true; do sleep 0.2; done";

/// One raw HTTP request on the agent's socket; returns the whole answer (empty if the
/// connection was closed without one).
fn http(d: &Daemon, method: &str, path: &str) -> String {
    let mut s = UnixStream::connect(&d.socket).expect("connect to the API socket");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: agent\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn alive(d: &Daemon, when: &str) {
    let out = d.cli(&["ps"]);
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("not running"),
        "{when}: the agent no longer answers:\n{}",
        d.log_tail()
    );
}

#[test]
fn huge_durations_are_refused_or_clamped_never_panic() {
    if !require_root("huge_durations_are_refused_or_clamped_never_panic") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare_with("durations", "", false);
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("c1.yaml", &container_manifest("c1", SCRIPT, ""));
    d.wait_for("c1 running", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        (d.ps_row("c1")["state"] == "running").then_some(())
    });

    // The CLI refuses the value and says what is allowed.
    let out = d.cli(&["stop", "-t", "1e19", "c1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "agent stop -t 1e19 succeeded");
    assert!(err.contains("0 to 86400"), "{err}");
    alive(&d, "after agent stop -t 1e19");

    // The API answers 400 with the allowed range; the agent lives on.
    for t in ["1e19", "1e20", "-1", "NaN", "86400.5"] {
        let answer = http(&d, "POST", &format!("/v1/containers/c1/stop?time={t}"));
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "?time={t}: {answer:?}\n{}",
            d.log_tail()
        );
        assert!(answer.contains("0 to 86400"), "?time={t}: {answer}");
        alive(&d, &format!("after ?time={t}"));
    }
    assert_eq!(
        d.ps_row("c1")["state"],
        "running",
        "a refused stop stopped c1"
    );

    // A manifest asking for it is refused where it says so.
    d.write(
        "huge.yaml",
        &container_manifest("huge", SCRIPT, "")
            .replace("stopGracePeriod: 1s", "stopGracePeriod: 3000000000000000h"),
    );
    let status = d.wait_for("huge.yaml refused", Duration::from_secs(30), || {
        let _ = d.cli(&["apply"]);
        let s = d.file_status("huge.yaml")?;
        s.to_string().contains("too long").then_some(s)
    });
    let text = status.to_string();
    assert!(
        text.contains("at most 24h") && text.contains(":9:20"),
        "{text}"
    );
    assert!(d.try_ps_row("huge").is_none(), "huge was created");
    alive(&d, "after the huge manifest");
    d.remove("huge.yaml");

    // A grace of 3000000000000000h stored by an older version, in the row and in the bundle;
    // the manifest is gone, so the next start removes c1 with that grace.
    let id = d.ps_row("c1")["id"].as_str().expect("id").to_string();
    d.stop();
    {
        let db = rusqlite::Connection::open(d.state.join("state.db")).expect("open state.db");
        let n = db
            .execute(
                "UPDATE containers SET config = json_set(config, '$.live.stopGracePeriod', \
                 '3000000000000000h') WHERE name = 'c1'",
                [],
            )
            .expect("update the stored config");
        assert_eq!(n, 1);
    }
    let spec_path = d.state.join("exec").join(&id).join("spec.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&spec_path).expect("read spec.json"))
            .expect("spec.json");
    spec["stop_grace"] = serde_json::json!(1.08e19);
    std::fs::write(&spec_path, serde_json::to_vec(&spec).expect("json")).expect("write spec");
    d.remove("c1.yaml");
    d.start();
    d.wait_for("c1 removed", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        d.try_ps_row("c1").is_none().then_some(())
    });
    alive(&d, "after removing c1 with a huge stored grace");
    assert!(
        !d.log_text().contains("panicked"),
        "the agent panicked:\n{}",
        d.log_tail()
    );
}
