//! A change that keeps failing, end to end: it is tried again at its own object's backoff
//! rate, never at the rate of unrelated passes, and it delays no other object's changes
//! (issue 19 item 7).
//!
//! The broken container publishes a host port that a listener of the test holds on 127.0.0.1,
//! so its create fails with "in use" every time it is tried. The backoff's first delay is set
//! to 60 s, so within the test only the first try may happen: every `change.failed` event after
//! it would be a try that bypassed the backoff. Nothing is asserted about time.

use std::net::TcpListener;
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};

const SLOW_BACKOFF: &str =
    "[restart]\nstart = \"60s\"\nfactor = 2.0\ncap = \"120s\"\nreset_after = \"10s\"\n";

/// A sleeping bridge-mode container `name`; `extra` adds spec lines.
fn sleeper(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: busybox\n  command: [\"/bin/sleep\", \"100000\"]\n  stopGracePeriod: 1s\n{extra}"
    )
}

fn running(d: &Daemon, name: &str) -> Option<()> {
    (d.try_ps_row(name)?["state"] == "running").then_some(())
}

#[test]
fn a_failing_change_waits_for_its_own_backoff_and_delays_nothing_else() {
    if !require_root("a_failing_change_waits_for_its_own_backoff_and_delays_nothing_else") {
        return;
    }
    require_images();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen on 127.0.0.1");
    let port = listener.local_addr().expect("local addr").port();
    let mut d = Daemon::prepare("backoff", SLOW_BACKOFF);
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("ok0.yaml", &sleeper("ok0", ""));
    d.wait_for("ok0 running", Duration::from_secs(90), || {
        running(&d, "ok0")
    });
    d.write(
        "broken.yaml",
        &sleeper(
            "broken",
            &format!("  ports: [\"127.0.0.1:{port}:80/tcp\"]\n"),
        ),
    );
    let failed = || d.events_of("broken", "change.failed");
    let first = d.wait_for("broken's first failure", Duration::from_secs(30), || {
        failed().into_iter().next()
    });
    assert!(
        first.to_string().contains("in use"),
        "the failure names the port in use: {first}"
    );

    // Unrelated edits, each a full pass: every one applies, none tries broken again.
    for i in 1..=4 {
        let name = format!("ok{i}");
        d.write(&format!("{name}.yaml"), &sleeper(&name, ""));
        d.wait_for(&format!("{name} running"), Duration::from_secs(30), || {
            running(&d, &name)
        });
    }
    // An edit of a running container (a recreate) applies too.
    let id0 = d.try_ps_row("ok0").expect("ok0")["id"].clone();
    d.write("ok0.yaml", &sleeper("ok0", "  env: {EDITED: \"1\"}\n"));
    d.wait_for("ok0 recreated", Duration::from_secs(30), || {
        let row = d.try_ps_row("ok0")?;
        (row["state"] == "running" && row["id"] != id0).then_some(())
    });
    let tries = failed();
    assert_eq!(
        tries.len(),
        1,
        "broken was tried again by unrelated passes, before its backoff was over: {tries:?}"
    );
    assert!(running(&d, "broken").is_none());

    // Its desired config changes (another port): its backoff ends and the change applies at
    // the next pass, not after the 60 s delay.
    drop(listener);
    d.write(
        "broken.yaml",
        &sleeper("broken", "  ports: [\"127.0.0.1::80/tcp\"]\n"),
    );
    d.wait_for("broken running once fixed", Duration::from_secs(30), || {
        running(&d, "broken")
    });
    assert_eq!(failed().len(), 1);
}

#[test]
fn a_recreate_whose_port_is_taken_keeps_the_running_container() {
    if !require_root("a_recreate_whose_port_is_taken_keeps_the_running_container") {
        return;
    }
    require_images();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen on 127.0.0.1");
    let port = listener.local_addr().expect("local addr").port();
    let mut d = Daemon::prepare("portclash", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("web.yaml", &sleeper("web", ""));
    d.wait_for("web running", Duration::from_secs(90), || {
        running(&d, "web")
    });
    let id = d.try_ps_row("web").expect("web")["id"].clone();
    assert_eq!(d.cli(&["status"]).status.code(), Some(0));

    // The edit publishes the port the test's listener holds: the check before the teardown
    // refuses it, names the port, and the running container stays.
    d.write(
        "web.yaml",
        &sleeper("web", &format!("  ports: [\"127.0.0.1:{port}:80/tcp\"]\n")),
    );
    let failure = d.wait_for("the clash reported", Duration::from_secs(30), || {
        d.events_of("web", "change.failed").into_iter().next()
    });
    assert!(
        failure
            .to_string()
            .contains(&format!("127.0.0.1:{port}/tcp is in use")),
        "{failure}"
    );
    let row = d.try_ps_row("web").expect("web is still listed");
    assert_eq!(row["state"], "running", "{row}");
    assert_eq!(
        row["id"], id,
        "the running container was not replaced: {row}"
    );
    assert!(
        d.events_of("web", "container.stop").is_empty()
            && d.events_of("web", "container.remove").is_empty(),
        "nothing was torn down: {:?}",
        d.events()
    );
    let status = d.cli(&["status"]);
    assert_ne!(
        status.status.code(),
        Some(0),
        "status reports the failure: {}",
        String::from_utf8_lossy(&status.stdout)
    );
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("in use"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    // The port freed: `agent apply` tries again at once and the replacement goes through.
    drop(listener);
    d.cli_ok(&["apply"]);
    d.wait_for("web replaced", Duration::from_secs(30), || {
        let row = d.try_ps_row("web")?;
        (row["state"] == "running" && row["id"] != id).then_some(())
    });
    d.wait_for("status ok", Duration::from_secs(30), || {
        (d.cli(&["status"]).status.code() == Some(0)).then_some(())
    });
}
