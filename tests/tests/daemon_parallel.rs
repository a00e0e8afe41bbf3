//! The reconcile core's work queue, end to end: independent changes run at once, dependency
//! order still holds, at most one change per container, and nothing waits for a slow change
//! on another object (a stop in its grace period, a pull from a registry that sends a byte a
//! second, a change that panics).
//!
//! Parallelism is shown structurally, never by timing: each container whose PID 1 traps SIGTERM
//! writes a marker into a shared directory and keeps running for its grace period, so "all four
//! markers written while their processes still run" can only happen when the four stops were in
//! their grace periods together (one after the other, each marker appears only after the
//! previous container was killed).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};

/// A container whose PID 1 writes `/m/<name>.term` on SIGTERM and goes on running (SIGKILL
/// after `grace` ends it); `extra` adds spec lines.
fn trapping(name: &str, marks: &Path, grace: &str, extra: &str) -> String {
    let script = format!(
        "trap 'echo > /m/{name}.term' TERM; echo up > /m/{name}.up; while true; do sleep 1; done"
    );
    format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: busybox\n  command: [\"/bin/sh\", \"-c\", {script:?}]\n  networkMode: none\n  stopGracePeriod: {grace}\n  volumes:\n    - {{bind: {}, target: /m}}\n{extra}",
        marks.display()
    )
}

fn marks_dir(d: &Daemon) -> PathBuf {
    let dir = d.path("../marks");
    std::fs::create_dir_all(&dir).expect("mkdir marks");
    std::fs::canonicalize(&dir).expect("marks dir")
}

/// SIGKILLs the container with runtime id `id` (as a crash would).
fn kill(d: &Daemon, id: &str) {
    let state = std::fs::canonicalize(d.path("../state")).expect("state dir");
    let out = std::process::Command::new(agent_e2e::agent_bin())
        .args(["kill", "-s", "KILL", "--state-dir"])
        .arg(state)
        .arg(id)
        .output()
        .expect("agent kill");
    assert!(out.status.success(), "{out:?}");
}

fn running_ids(d: &Daemon, names: &[&str]) -> Vec<String> {
    d.wait_for(
        &format!("{names:?} running"),
        Duration::from_secs(120),
        || {
            names
                .iter()
                .map(|n| {
                    let r = d.try_ps_row(n)?;
                    (r["state"] == "running")
                        .then(|| r["id"].as_str().map(str::to_string))
                        .flatten()
                })
                .collect::<Option<Vec<String>>>()
        },
    )
}

#[test]
fn stops_run_together_in_dependency_order_and_nothing_waits_for_them() {
    if !require_root("stops_run_together_in_dependency_order_and_nothing_waits_for_them") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("parallel", "");
    d.start();
    let m = marks_dir(&d);
    d.write("image.yaml", BUSYBOX_IMAGE);
    // db is a volumesFrom source of web: it starts before web and stops after it.
    d.write("db.yaml", &trapping("db", &m, "3s", ""));
    d.write(
        "web.yaml",
        &trapping("web", &m, "3s", "  volumesFrom: [db]\n"),
    );
    let slow = ["a1", "a2", "a3", "a4"];
    for n in slow {
        d.write(&format!("{n}.yaml"), &trapping(n, &m, "20s", ""));
    }
    let mut all: Vec<&str> = vec!["db", "web"];
    all.extend(slow);
    let ids = running_ids(&d, &all);
    let id = |n: &str| ids[all.iter().position(|x| *x == n).expect("name")].clone();

    // Start order: db's start recorded before web's.
    let start_event = |n: &str| {
        d.events_of(n, "container.start")
            .first()
            .and_then(|e| e["id"].as_i64())
            .unwrap_or_else(|| panic!("no container.start event of {n}"))
    };
    assert!(
        start_event("db") < start_event("web"),
        "db started after web"
    );

    // Remove them all at once.
    for n in &all {
        d.remove(&format!("{n}.yaml"));
    }
    // The four slow stops are in their grace periods together.
    d.wait_for(
        "the TERM markers of a1..a4",
        Duration::from_secs(60),
        || {
            slow.iter()
                .all(|n| m.join(format!("{n}.term")).exists())
                .then_some(())
        },
    );
    let still: Vec<&str> = slow.iter().copied().filter(|n| d.runs(&id(n))).collect();
    assert!(
        still.len() >= 2,
        "when the last of a1..a4 got SIGTERM only {still:?} still ran: the stops ran one after the other"
    );

    // The API answers while they stop (the store is not locked across a stop).
    let rows = d.cli_json(&["ps"]);
    assert!(rows.as_array().is_some_and(|r| !r.is_empty()), "{rows}");
    // A new manifest is applied while they stop.
    d.write("fresh.yaml", &trapping("fresh", &m, "1s", ""));
    running_ids(&d, &["fresh"]);
    let during: Vec<&str> = slow.iter().copied().filter(|n| d.runs(&id(n))).collect();
    assert!(
        !during.is_empty(),
        "fresh only ran once all the 20 s stops were over: it waited for them"
    );

    // Dependency order of the stops: db got its SIGTERM only once web was gone.
    d.wait_for("db's TERM marker", Duration::from_secs(60), || {
        m.join("db.term").exists().then_some(())
    });
    assert!(
        m.join("web.term").exists() && !d.runs(&id("web")),
        "db was stopped while web, which takes volumes from it, still ran"
    );

    d.remove("fresh.yaml");
    d.remove_all_and_wait(Duration::from_secs(90));
    assert!(d.runtime_ids().is_empty(), "{:?}", d.runtime_ids());
}

#[test]
fn a_panicking_change_fails_alone() {
    if !require_root("a_panicking_change_fails_alone") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("panic", "");
    d.env("AGENT_DEBUG_PANIC_CONTAINER", "boom");
    d.start();
    let m = marks_dir(&d);
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("boom.yaml", &trapping("boom", &m, "1s", ""));
    d.write(
        "ok.yaml",
        &trapping("ok", &m, "1s", "  restart: {policy: always}\n"),
    );
    let ok = running_ids(&d, &["ok"]).remove(0);
    let failed = d.wait_for("boom's failure", Duration::from_secs(60), || {
        d.events_of("boom", "change.failed").into_iter().next()
    });
    let error = failed["message"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("panic"), "{failed}");
    assert!(d.pid().is_some(), "the agent died");
    // The agent goes on: `ok` is restarted after a kill, and an edit of it is applied.
    kill(&d, &ok);
    d.wait_for("ok restarted", Duration::from_secs(60), || {
        (!d.events_of("ok", "container.restart").is_empty()).then_some(())
    });
    d.write(
        "ok.yaml",
        &trapping(
            "ok",
            &m,
            "1s",
            "  restart: {policy: always}\n  env: {V: \"2\"}\n",
        ),
    );
    d.wait_for("ok recreated", Duration::from_secs(60), || {
        let r = d.try_ps_row("ok")?;
        (r["state"] == "running" && r["id"].as_str() != Some(ok.as_str())).then_some(())
    });
    // boom is retried with backoff and keeps failing; nothing else is held up.
    assert!(d.try_ps_row("boom").is_none_or(|r| r["state"] != "running"));
    d.remove_all_and_wait(Duration::from_secs(60));
}

/// A "registry" on 127.0.0.1 that answers every request with a header promising a large body
/// and then sends one byte a second, until the test ends.
struct SlowRegistry {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl SlowRegistry {
    fn start() -> SlowRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            let mut buf = [0u8; 4096];
                            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                            let _ = conn.read(&mut buf);
                            let _ = conn.write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 100000\r\n\r\n",
                            );
                            while !s.load(Ordering::SeqCst) {
                                if conn.write_all(b" ").is_err() {
                                    return;
                                }
                                std::thread::sleep(Duration::from_secs(1));
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        SlowRegistry { port, stop }
    }
}

impl Drop for SlowRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_slow_pull_delays_no_restart_create_or_listing() {
    if !require_root("a_slow_pull_delays_no_restart_create_or_listing") {
        return;
    }
    require_images();
    let reg = SlowRegistry::start();
    let mut d = Daemon::prepare(
        "slowpull",
        &format!("[registries]\ninsecure = [\"127.0.0.1:{}\"]\n", reg.port),
    );
    d.start();
    let m = marks_dir(&d);
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write(
        "keep.yaml",
        &trapping("keep", &m, "1s", "  restart: {policy: always}\n"),
    );
    let keep = running_ids(&d, &["keep"]).remove(0);
    // An image from the slow registry and a container that needs it.
    d.write(
        "slow.yaml",
        &format!(
            "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: slow\nspec:\n  registry:\n    reference: 127.0.0.1:{}/slow:1\n    insecure: true\n---\n{}",
            reg.port,
            trapping("waits", &m, "1s", "").replace("image: busybox", "image: slow")
        ),
    );
    // Give the pull time to begin (not an assertion: the checks below hold either way).
    std::thread::sleep(Duration::from_secs(2));
    // Meanwhile: a killed container comes back, a new one is created, ps answers.
    kill(&d, &keep);
    d.wait_for("keep restarted", Duration::from_secs(60), || {
        (!d.events_of("keep", "container.restart").is_empty()).then_some(())
    });
    d.write("other.yaml", &trapping("other", &m, "1s", ""));
    // An import of another image is not held up by the download either.
    d.write(
        "local.yaml",
        &format!(
            "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: local\nspec:\n  ociLayout:\n    path: /var/lib/agent-test-images/oci\n---\n{}",
            trapping("imported", &m, "1s", "").replace("image: busybox", "image: local")
        ),
    );
    running_ids(&d, &["other", "keep", "imported"]);
    assert!(
        !d.events()
            .iter()
            .any(|e| e["object"] == "image/slow" && e["kind"] == "image.pull"),
        "the slow pull finished: the test proves nothing"
    );
    assert!(
        d.try_ps_row("waits")
            .is_none_or(|r| r["state"] != "running")
    );
    // `agent status` shows the pull in flight.
    let status = d.cli_json(&["status"]);
    assert!(
        pulling(&status, "slow:1"),
        "the pull is not listed in flight: {status}"
    );
    // `agent apply` waits for the pull its pass joined; with --timeout it says what is still
    // in flight and fails.
    let out = d.cli(&["apply", "--timeout", "2s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("has not ended after 2s")
            && stderr.contains("in flight: pull ")
            && stderr.contains("/slow:1"),
        "{stderr}"
    );
    // The agent stops promptly although the pull still hangs (it is not waited for).
    let status = d.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        d.log_tail()
    );
    // The pull was cancelled, not left to a thread that outlives the runtime (it panicked).
    assert!(!d.log_text().contains("panicked"), "{}", d.log_tail());
    // The next agent resumes the pull. The manifest moves to another tag: the pull of the old
    // one is cancelled (not left running for up to registries.pull_timeout) and the new one
    // starts; the manifest removed, that one is cancelled too.
    d.start();
    d.wait_for("the pull resumed", Duration::from_secs(30), || {
        pulling(&d.cli_json(&["status"]), "slow:1").then_some(())
    });
    let slow = std::fs::read_to_string(d.path("slow.yaml")).expect("slow.yaml");
    d.write("slow.yaml", &slow.replace("/slow:1", "/slow:2"));
    let cancellations = || {
        d.events()
            .into_iter()
            .filter(|e| {
                e["kind"] == "change.cancelled"
                    && e["object"].as_str().is_some_and(|o| o.contains("/slow:"))
            })
            .count()
    };
    // The first agent's shutdown cancelled its pull.
    let at_start = cancellations();
    assert_eq!(at_start, 1);
    let cancelled = |n: usize| {
        d.wait_for("the pull cancelled", Duration::from_secs(30), || {
            let status = d.cli_json(&["status"]);
            (cancellations() == at_start + n && !pulling(&status, "slow:1")).then_some(())
        })
    };
    cancelled(1);
    d.wait_for("the pull of the new tag", Duration::from_secs(30), || {
        pulling(&d.cli_json(&["status"]), "slow:2").then_some(())
    });
    d.remove("slow.yaml");
    cancelled(2);
    d.wait_for("no pull in flight", Duration::from_secs(30), || {
        (!pulling(&d.cli_json(&["status"]), "slow:")).then_some(())
    });
    // Removing everything meanwhile (the images too, whose garbage collection once waited for
    // a pull downloading, up to its 30-minute timeout) is not held up either.
    d.remove_all_and_wait(Duration::from_secs(60));
    d.wait_for("the images removed", Duration::from_secs(30), || {
        let out = std::process::Command::new(agent_e2e::agent_bin())
            .args(["image", "ls", "-q", "--state-dir"])
            .arg(&d.state)
            .output()
            .ok()?;
        (out.status.success() && out.stdout.is_empty()).then_some(())
    });
}

/// Whether `agent status` lists a pull of `…/<tag>…` in flight.
fn pulling(status: &serde_json::Value, tag: &str) -> bool {
    status["in_flight"].as_array().is_some_and(|w| {
        w.iter().any(|x| {
            x["object"]
                .as_str()
                .is_some_and(|o| o.contains(&format!("/{tag}")))
        })
    })
}

#[test]
fn a_container_whose_monitor_was_killed_is_reported() {
    if !require_root("a_container_whose_monitor_was_killed_is_reported") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("unmonitored", "");
    d.start();
    let m = marks_dir(&d);
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("lone.yaml", &trapping("lone", &m, "1s", ""));
    running_ids(&d, &["lone"]);
    let monitors = d.monitor_pids();
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    // SAFETY: kill(2) of the monitor this test's agent started.
    unsafe { libc::kill(monitors[0], libc::SIGKILL) };
    // Reported, then supervised again under a new monitor (tests/tests/daemon_monitor_lost.rs
    // checks the repair in detail).
    d.wait_for("the repair", Duration::from_secs(30), || {
        d.events_of("lone", "container.monitor-repaired")
            .pop()
            .map(|_| ())
    });
    assert_eq!(d.events_of("lone", "container.monitor-lost").len(), 1);
    d.wait_for("a new monitor", Duration::from_secs(10), || {
        let now = d.monitor_pids();
        (now.len() == 1 && now[0] != monitors[0]).then_some(())
    });
    d.cli_ok(&["apply"]);
    let status = d.cli_json(&["status"]);
    assert!(
        status["warnings"].as_array().is_none_or(|w| w.is_empty()),
        "{status}"
    );
    d.remove_all_and_wait(Duration::from_secs(60));
}
