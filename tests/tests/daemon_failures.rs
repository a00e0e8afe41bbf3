//! Failures show where users look (issue 16 item 3): a container whose create keeps failing
//! (its host port is taken by another process) is listed by `agent ps` as `failed` with the
//! error and the next try, `agent status` marks its file `failing` and exits 1, and the start
//! that depended on the failed create is reported skipped because of it, not as a second
//! error ("no such container"). Containers waiting for an image whose import fails are listed
//! `pending` with the import's error. Driven through files and the CLI.

use std::net::TcpListener;
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};
use serde_json::Value;

/// Short retries: the pass after a failure comes within about a second.
const QUICK_RETRY: &str =
    "[restart]\nstart = \"500ms\"\nfactor = 1.0\ncap = \"1s\"\nreset_after = \"10s\"\n";

fn web(port: u16) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  image: busybox\n  command: [\"/bin/sh\", \"-c\", \"exec httpd -f -p 8080\"]\n  ports: [\"127.0.0.1:{port}:8080/tcp\"]\n  stopGracePeriod: 1s\n"
    )
}

fn events_text(d: &Daemon) -> String {
    d.events()
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_container_whose_create_fails_is_listed_failed_and_its_file_failing() {
    if !require_root("a_container_whose_create_fails_is_listed_failed_and_its_file_failing") {
        return;
    }
    require_images();
    // Another process holds the port.
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port();
    let mut d = Daemon::prepare("failed", QUICK_RETRY);
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("web.yaml", &web(port));

    let row = d.wait_for("web listed failed", Duration::from_secs(60), || {
        let r = d.ps_row("web");
        (r["state"] == "failed" && r["retry_at"].is_i64()).then_some(r)
    });
    let error = row["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("create web failed:") && error.contains("in use"),
        "{row}"
    );
    let text = d.cli_ok(&["ps"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("web ") && l.contains("failed") && l.contains("next try")),
        "{text}"
    );
    assert!(text.contains("web: create web failed:"), "{text}");

    // status: the file is failing, the command fails.
    let out = d.cli(&["status"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let web_path = d.path("web.yaml").to_string_lossy().into_owned();
    assert!(
        stdout.contains(&format!("{web_path}: failing")) && stdout.contains("create web failed:"),
        "{stdout}"
    );
    let st = d.file_status("web.yaml").expect("web.yaml in status");
    assert_eq!(st["status"], "failing", "{st}");
    assert_eq!(d.file_status("image.yaml").expect("image")["status"], "ok");

    // One error per cause: the start after the failed create is skipped because of it, never
    // its own "no such container" error.
    d.wait_for("a skipped start", Duration::from_secs(30), || {
        d.events_of("web", "change.skipped").into_iter().find(|e| {
            e["message"]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("start web"))
                && e["message"]["because"]
                    .as_str()
                    .is_some_and(|b| b.starts_with("create web failed:"))
        })
    });
    let events = events_text(&d);
    assert!(!events.contains("no such container"), "{events}");
    let failed: Vec<Value> = d.events_of("web", "change.failed");
    assert!(
        failed.iter().all(|e| e["message"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("create web"))),
        "{failed:?}"
    );
    assert!(
        !d.log_text().contains("no such container"),
        "{}",
        d.log_tail()
    );

    // The port is freed: the retry creates it, the failure is gone.
    drop(holder);
    d.wait_for("web running", Duration::from_secs(60), || {
        let r = d.ps_row("web");
        (r["state"] == "running" && r["error"].is_null()).then_some(())
    });
    d.wait_for("status ok", Duration::from_secs(30), || {
        (d.cli(&["status"]).status.code() == Some(0)).then_some(())
    });
    d.remove_all_and_wait(Duration::from_secs(60));
}

#[test]
fn containers_of_an_image_whose_import_fails_are_pending() {
    if !require_root("containers_of_an_image_whose_import_fails_are_pending") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("pending", QUICK_RETRY);
    d.start();
    // A root filesystem tarball that is not a tar archive.
    let junk = d.dir.path().join("junk.tar");
    std::fs::write(&junk, "this is not a tar archive\n").expect("write junk");
    d.write(
        "image.yaml",
        &format!(
            "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: busybox\nspec:\n  rootfsTar:\n    path: {}\n",
            junk.display()
        ),
    );
    d.write(
        "app.yaml",
        &container_manifest("app", "exec sleep 1000", ""),
    );
    let row = d.wait_for("app listed pending", Duration::from_secs(60), || {
        let r = d.ps_row("app");
        (r["state"] == "pending" && r["retry_at"].is_i64()).then_some(r)
    });
    let error = row["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("create app skipped: import ") && error.contains("junk.tar"),
        "{row}"
    );
    let out = d.cli(&["status"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        d.file_status("image.yaml").expect("image")["status"],
        "failing"
    );
    assert_eq!(d.file_status("app.yaml").expect("app")["status"], "failing");
    assert!(!stdout.contains(": ok (last applied never)"), "{stdout}");

    // The image is fixed: everything comes up, nothing is failing any more.
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.wait_for("app running", Duration::from_secs(60), || {
        let r = d.ps_row("app");
        (r["state"] == "running" && r["error"].is_null()).then_some(())
    });
    d.wait_for("status ok", Duration::from_secs(30), || {
        (d.cli(&["status"]).status.code() == Some(0)).then_some(())
    });
    d.remove_all_and_wait(Duration::from_secs(60));
}
