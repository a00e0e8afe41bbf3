//! Start conditions (`dependsOn`, issue 17 item 7) through the real binary: a dependent waits,
//! and says so in `agent ps`, `agent status` and `agent plan`, until its dependency is healthy
//! (the test makes it healthy with `agent exec`), has completed with code 0 (a job that exits 1
//! keeps it waiting, with the reason), or has started; the same conditions order the restarts
//! after a reboot. The order is read from the event log.

use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};
use serde_json::Value;

const LONG: &str = "exec sleep 1000";

/// The event ids of `kind` events of container `name`.
fn event_ids(d: &Daemon, name: &str, kind: &str) -> Vec<i64> {
    d.events_of(name, kind)
        .iter()
        .map(|e| e["id"].as_i64().unwrap_or(0))
        .collect()
}

/// The id of the first `container.health` event of `name` with status `status` after `after`.
fn health_event(d: &Daemon, name: &str, status: &str, after: i64) -> Option<i64> {
    d.events_of(name, "container.health")
        .iter()
        .filter(|e| e["message"]["status"] == status)
        .map(|e| e["id"].as_i64().unwrap_or(0))
        .find(|id| *id > after)
}

/// `agent plan` of the fixture's manifests against its store.
fn plan_text(d: &Daemon) -> String {
    let out = std::process::Command::new(agent_e2e::agent_bin())
        .arg("plan")
        .arg(&d.manifests)
        .arg("--state-dir")
        .arg(&d.state)
        .env("RUST_LOG", "off")
        .output()
        .unwrap_or_else(|e| panic!("agent plan: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn healthy_holds_the_dependent_until_its_database_answers() {
    if !require_root("healthy_holds_the_dependent_until_its_database_answers") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("dephealthy", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    // The "database" answers once /tmp/ready exists; it reports unhealthy meanwhile and keeps
    // running (onUnhealthy: none).
    let db = container_manifest(
        "db",
        "rm -f /tmp/ready; exec sleep 1000",
        "  healthcheck:\n    command: [\"/bin/sh\", \"-c\", \"test -f /tmp/ready\"]\n    interval: 300ms\n    timeout: 2s\n    retries: 2\n    onUnhealthy: none\n",
    );
    // Name order is not dependency order.
    let app = container_manifest("app", LONG, "  dependsOn:\n    db: {condition: healthy}\n");
    d.write("db.yaml", &db);
    d.write("app.yaml", &app);
    d.wait_for("db running", Duration::from_secs(60), || {
        (d.ps_row("db")["state"] == "running").then_some(())
    });
    let ps = d.wait_for("app waiting", Duration::from_secs(30), || {
        let r = d.ps_row("app");
        (r["state"] == "waiting").then_some(r)
    });
    let why = ps["waiting"].as_str().unwrap_or_default().to_string();
    assert!(
        why.contains("db not healthy yet") || why.contains("db is unhealthy"),
        "{ps}"
    );
    // It is held, not failing: nothing of it exists, and it stays so while db does not answer.
    d.wait_for("db unhealthy", Duration::from_secs(30), || {
        (d.ps_row("db")["health"] == "unhealthy").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let r = d.ps_row("app");
    assert_eq!(r["state"], "waiting", "{r}");
    assert_eq!(r["id"], "", "{r}");
    assert!(event_ids(&d, "app", "container.create").is_empty());
    let ps_text = text(&d, &["ps"]);
    assert!(
        ps_text.contains("waiting (db is unhealthy)"),
        "agent ps:\n{ps_text}"
    );
    let status = text(&d, &["status"]);
    assert!(
        status.contains("waiting: app: db is unhealthy"),
        "agent status:\n{status}"
    );
    let plan = plan_text(&d);
    assert!(
        plan.contains("create app: waits: db is unhealthy"),
        "agent plan:\n{plan}"
    );

    // The database answers: app is created and started, after db became healthy.
    let db_id = d.ps_row("db")["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(d.sh_in(&db_id, "touch /tmp/ready"));
    d.wait_for("app running", Duration::from_secs(30), || {
        (d.ps_row("app")["state"] == "running").then_some(())
    });
    let healthy = health_event(&d, "db", "healthy", 0).expect("db healthy event");
    let created = event_ids(&d, "app", "container.create");
    assert!(
        created.first().is_some_and(|c| *c > healthy),
        "app created ({created:?}) before db was healthy ({healthy})"
    );
    assert!(d.ps_row("app")["waiting"].is_null());
    let status = text(&d, &["status"]);
    assert!(!status.contains("waiting:"), "{status}");
}

#[test]
fn completed_waits_for_exit_code_zero() {
    if !require_root("completed_waits_for_exit_code_zero") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("depdone", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    // A one-shot job that succeeds (after a moment), one that fails.
    d.write(
        "migrate.yaml",
        &container_manifest("migrate", "sleep 1; exit 0", "  restart: \"no\"\n"),
    );
    d.write(
        "broken.yaml",
        &container_manifest("broken", "exit 1", "  restart: \"no\"\n"),
    );
    d.write(
        "api.yaml",
        &container_manifest(
            "api",
            LONG,
            "  dependsOn:\n    migrate: {condition: completed}\n",
        ),
    );
    d.write(
        "worker.yaml",
        &container_manifest(
            "worker",
            LONG,
            "  dependsOn:\n    broken: {condition: completed}\n",
        ),
    );
    // The same failed job as an optional dependency: its dependent goes on, and says why.
    d.write(
        "extra.yaml",
        &container_manifest(
            "extra",
            LONG,
            "  dependsOn:\n    broken: {condition: completed, required: false}\n",
        ),
    );
    d.wait_for("api running", Duration::from_secs(60), || {
        (d.ps_row("api")["state"] == "running").then_some(())
    });
    let exit = event_ids(&d, "migrate", "container.exit");
    let created = event_ids(&d, "api", "container.create");
    assert!(
        !exit.is_empty() && created.first().is_some_and(|c| *c > exit[0]),
        "api created ({created:?}) before migrate exited ({exit:?})"
    );
    assert_eq!(d.ps_row("migrate")["exit_code"], 0);
    // The failed job keeps its dependent from starting, and says why.
    let r = d.wait_for(
        "worker waits on the failure",
        Duration::from_secs(30),
        || {
            let r = d.ps_row("worker");
            (r["state"] == "waiting"
                && r["waiting"]
                    .as_str()
                    .is_some_and(|w| w.contains("broken failed (exit code 1)")))
            .then_some(r)
        },
    );
    assert_eq!(r["id"], "", "{r}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.ps_row("worker")["state"], "waiting");
    assert!(event_ids(&d, "worker", "container.create").is_empty());
    let ps_text = text(&d, &["ps"]);
    assert!(
        ps_text.contains("waiting (broken failed (exit code 1))"),
        "{ps_text}"
    );
    d.wait_for("extra running", Duration::from_secs(30), || {
        (d.ps_row("extra")["state"] == "running").then_some(())
    });
    let create = d.events_of("extra", "container.create");
    let said = create.first().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        said.contains(
            "optional dependency broken failed (exit code 1) (required: false): going on without it"
        ),
        "{said}"
    );
}

#[test]
fn started_orders_bring_up_and_a_change_of_depends_on_does_not_recreate() {
    if !require_root("started_orders_bring_up_and_a_change_of_depends_on_does_not_recreate") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("depstart", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    // Written in one file, the dependent first; name order is not dependency order.
    let both = |deps: &str| {
        format!(
            "{}---\n{}",
            container_manifest("aaa", LONG, deps),
            container_manifest("zzz", LONG, "")
        )
    };
    d.write("both.yaml", &both("  dependsOn: [zzz]\n"));
    d.wait_for("both running", Duration::from_secs(60), || {
        (d.ps_row("aaa")["state"] == "running" && d.ps_row("zzz")["state"] == "running")
            .then_some(())
    });
    let zzz = event_ids(&d, "zzz", "container.start");
    let aaa = event_ids(&d, "aaa", "container.create");
    assert!(
        !zzz.is_empty() && aaa.first().is_some_and(|a| *a > zzz[0]),
        "aaa created ({aaa:?}) before zzz started ({zzz:?})"
    );
    let id = d.ps_row("aaa")["id"].clone();
    // Ordering only: a change of the condition is an in-place update, and its reason says so
    // (read from the event log: the agent applies the edit on its own, `agent plan` would race).
    d.write(
        "both.yaml",
        &both("  dependsOn:\n    zzz: {condition: started, restart: true}\n"),
    );
    let update = d.wait_for("aaa updated", Duration::from_secs(30), || {
        d.events_of("aaa", "container.update").into_iter().next()
    });
    assert!(
        update.to_string().contains(
            "dependsOn.zzz started -> started, restart (start order only: the container is not recreated)"
        ),
        "{update}"
    );
    d.cli_ok(&["apply"]);
    assert_eq!(d.ps_row("aaa")["id"], id);
    assert_eq!(d.ps_row("aaa")["state"], "running");
    let plan = plan_text(&d);
    assert!(plan.contains("No changes"), "{plan}");
}

#[test]
fn after_a_reboot_a_dependent_starts_once_its_dependency_is_healthy() {
    if !require_root("after_a_reboot_a_dependent_starts_once_its_dependency_is_healthy") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare_with("depboot", "", false);
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    // db is healthy a moment after each start.
    d.write(
        "db.yaml",
        &container_manifest(
            "db",
            "rm -f /tmp/ready; sleep 2; touch /tmp/ready; exec sleep 1000",
            "  restart: always\n  healthcheck:\n    command: [\"/bin/sh\", \"-c\", \"test -f /tmp/ready\"]\n    interval: 300ms\n    timeout: 2s\n    retries: 1000\n",
        ),
    );
    d.write(
        "app.yaml",
        &container_manifest(
            "app",
            LONG,
            "  restart: always\n  dependsOn:\n    db: {condition: healthy}\n",
        ),
    );
    d.wait_for("both running", Duration::from_secs(60), || {
        (d.ps_row("app")["state"] == "running").then_some(())
    });
    let last_event = d
        .events()
        .last()
        .map(|e| e["id"].as_i64().unwrap_or(0))
        .unwrap_or(0);

    d.stop_with(libc::SIGKILL);
    d.simulate_reboot();
    d.start();
    let after = |ids: Vec<i64>| ids.into_iter().find(|i| *i > last_event);
    d.wait_for("app back", Duration::from_secs(60), || {
        (after(event_ids(&d, "app", "container.restart")).is_some()
            && d.ps_row("app")["state"] == "running")
            .then_some(())
    });
    let db_back = after(event_ids(&d, "db", "container.restart")).expect("db restarted");
    let app_back = after(event_ids(&d, "app", "container.restart")).expect("app restarted");
    let healthy = health_event(&d, "db", "healthy", db_back).expect("db healthy again");
    assert!(
        db_back < healthy && healthy < app_back,
        "db restart {db_back}, db healthy {healthy}, app restart {app_back}"
    );
    let log: Value = d.log_text().into();
    assert!(
        log.as_str()
            .is_some_and(|l| l.contains("restart waits for its dependencies")),
        "{log}"
    );
}

/// A db that is healthy a moment after each start (its check looks for /tmp/ready).
fn healthy_db(extra: &str) -> String {
    container_manifest(
        "db",
        "rm -f /tmp/ready; sleep 1; touch /tmp/ready; exec sleep 1000",
        &format!(
            "  healthcheck:\n    command: [\"/bin/sh\", \"-c\", \"test -f /tmp/ready\"]\n    interval: 300ms\n    timeout: 2s\n    retries: 1000\n{extra}"
        ),
    )
}

#[test]
fn restart_true_restarts_the_dependent_once_its_recreated_dependency_is_healthy() {
    if !require_root("restart_true_restarts_the_dependent_once_its_recreated_dependency_is_healthy")
    {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("deprestart", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("db.yaml", &healthy_db(""));
    d.write(
        "web.yaml",
        &container_manifest(
            "web",
            LONG,
            "  dependsOn:\n    db: {condition: healthy, restart: true}\n",
        ),
    );
    // Same condition without restart: left alone.
    d.write(
        "other.yaml",
        &container_manifest(
            "other",
            LONG,
            "  dependsOn:\n    db: {condition: healthy}\n",
        ),
    );
    d.wait_for("web and other running", Duration::from_secs(60), || {
        (d.ps_row("web")["state"] == "running" && d.ps_row("other")["state"] == "running")
            .then_some(())
    });
    let web_id = d.ps_row("web")["id"].clone();
    let other_id = d.ps_row("other")["id"].clone();
    assert!(event_ids(&d, "web", "container.stop").is_empty());

    // The agent recreates db (its manifest changed).
    d.write("db.yaml", &healthy_db("  env: {V: \"2\"}\n"));
    let recreated = d.wait_for("db recreated", Duration::from_secs(60), || {
        event_ids(&d, "db", "container.recreate").first().copied()
    });
    let restarted = d.wait_for("web started again", Duration::from_secs(60), || {
        event_ids(&d, "web", "container.start")
            .into_iter()
            .find(|i| *i > recreated)
    });
    let healthy = health_event(&d, "db", "healthy", recreated).expect("db healthy again");
    assert!(
        healthy < restarted,
        "web started again ({restarted}) before the new db was healthy ({healthy})"
    );
    let stop = d.events_of("web", "container.stop");
    let why = stop.last().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        why.contains("restart: true: db started again after it"),
        "{why}"
    );
    // A restart, not a recreate; it runs; the one without restart: true was not touched.
    d.wait_for("web running", Duration::from_secs(30), || {
        (d.ps_row("web")["state"] == "running").then_some(())
    });
    assert_eq!(d.ps_row("web")["id"], web_id);
    assert_eq!(d.ps_row("other")["id"], other_id);
    assert!(event_ids(&d, "other", "container.stop").is_empty());
    assert_eq!(event_ids(&d, "other", "container.start").len(), 1);
    // Once only: the plan is settled.
    d.cli_ok(&["apply"]);
    assert_eq!(
        event_ids(&d, "web", "container.start").len(),
        2,
        "{:?}",
        d.events_of("web", "container.start")
    );

    // A crash of db that its restart policy mends restarts web too (docs/manifest.md: unlike
    // Compose, every start the agent makes counts).
    d.write(
        "db.yaml",
        &healthy_db("  env: {V: \"2\"}\n  restart: always\n"),
    );
    d.cli_ok(&["apply"]);
    let before = d
        .events()
        .last()
        .map(|e| e["id"].as_i64().unwrap_or(0))
        .unwrap_or(0);
    d.cli_ok(&["kill", "db"]);
    let db_back = d.wait_for(
        "db restarted by its policy",
        Duration::from_secs(60),
        || {
            event_ids(&d, "db", "container.restart")
                .into_iter()
                .find(|i| *i > before)
        },
    );
    let again = d.wait_for("web started a third time", Duration::from_secs(60), || {
        event_ids(&d, "web", "container.start")
            .into_iter()
            .find(|i| *i > db_back)
    });
    let healthy = health_event(&d, "db", "healthy", db_back).expect("db healthy after its crash");
    assert!(healthy < again, "{healthy} {again}");
    assert_eq!(d.ps_row("web")["id"], web_id);
}

#[test]
fn an_agent_restart_while_a_dependent_waits_keeps_it_waiting_then_starts_it() {
    if !require_root("an_agent_restart_while_a_dependent_waits_keeps_it_waiting_then_starts_it") {
        return;
    }
    require_images();
    // Containers outlive the agent (the default).
    let mut d = Daemon::prepare_with("depagent", "", false);
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write(
        "db.yaml",
        &container_manifest(
            "db",
            "rm -f /tmp/ready; exec sleep 1000",
            "  healthcheck:\n    command: [\"/bin/sh\", \"-c\", \"test -f /tmp/ready\"]\n    interval: 300ms\n    timeout: 2s\n    retries: 1000\n",
        ),
    );
    d.write(
        "app.yaml",
        &container_manifest("app", LONG, "  dependsOn:\n    db: {condition: healthy}\n"),
    );
    d.wait_for("app waiting", Duration::from_secs(60), || {
        let r = d.ps_row("app");
        (r["state"] == "waiting" && d.ps_row("db")["state"] == "running").then_some(())
    });
    let db_id = d.ps_row("db")["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // The agent goes away mid-wait and comes back.
    d.stop_with(libc::SIGKILL);
    d.start();
    let r = d.wait_for("app waiting again", Duration::from_secs(30), || {
        let r = d.ps_row("app");
        (r["state"] == "waiting").then_some(r)
    });
    assert!(
        r["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("db not healthy yet")),
        "{r}"
    );
    assert_eq!(d.ps_row("db")["id"], db_id.as_str(), "db kept running");
    assert!(event_ids(&d, "app", "container.create").is_empty());
    let status = text(&d, &["status"]);
    assert!(
        status.contains("waiting: app: db not healthy yet"),
        "{status}"
    );

    // The new agent lets it go when db answers.
    assert!(d.sh_in(&db_id, "touch /tmp/ready"));
    d.wait_for("app running", Duration::from_secs(30), || {
        (d.ps_row("app")["state"] == "running").then_some(())
    });
    let healthy = health_event(&d, "db", "healthy", 0).expect("db healthy");
    let created = event_ids(&d, "app", "container.create");
    assert!(
        created.first().is_some_and(|c| *c > healthy),
        "{created:?} {healthy}"
    );
}

#[test]
fn a_cycle_is_refused_and_stops_nothing_that_runs() {
    if !require_root("a_cycle_is_refused_and_stops_nothing_that_runs") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("depcycle", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write(
        "a.yaml",
        &container_manifest("a", LONG, "  dependsOn: [b]\n"),
    );
    d.write("b.yaml", &container_manifest("b", LONG, ""));
    d.wait_for("a and b running", Duration::from_secs(60), || {
        (d.ps_row("a")["state"] == "running" && d.ps_row("b")["state"] == "running").then_some(())
    });
    let (a_id, b_id) = (d.ps_row("a")["id"].clone(), d.ps_row("b")["id"].clone());

    // b now depends on a: a cycle.
    d.write(
        "b.yaml",
        &container_manifest("b", LONG, "  env: {V: \"2\"}\n  dependsOn: [a]\n"),
    );
    let out = std::process::Command::new(agent_e2e::agent_bin())
        .arg("validate")
        .arg(&d.manifests)
        .env("RUST_LOG", "off")
        .output()
        .unwrap_or_else(|e| panic!("agent validate: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    let b_path = d.path("b.yaml").to_string_lossy().into_owned();
    assert!(
        said.contains(&format!("{b_path}:11:"))
            && said
                .contains("dependency cycle through links, volumesFrom, networkMode or dependsOn")
            && (said.contains("a -> b -> a") || said.contains("b -> a -> b")),
        "{said}"
    );
    // The agent refuses it too, keeps b's last good version, and stops nothing.
    let st = d.wait_for("b.yaml refused", Duration::from_secs(30), || {
        d.file_status("b.yaml").filter(|s| s["status"] == "error")
    });
    assert!(
        st["error"]
            .as_str()
            .is_some_and(|e| e.contains("dependency cycle")),
        "{st}"
    );
    // A pass now applies nothing, and says why (exit 1: a manifest error).
    let out = d.cli(&["apply"]);
    let applied = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{applied}");
    assert!(
        applied.contains("0 change(s) applied") && applied.contains("dependency cycle"),
        "{applied}"
    );
    assert_eq!(d.ps_row("a")["id"], a_id);
    assert_eq!(d.ps_row("b")["id"], b_id);
    assert_eq!(d.ps_row("a")["state"], "running");
    assert_eq!(d.ps_row("b")["state"], "running");
    for n in ["a", "b"] {
        assert!(event_ids(&d, n, "container.stop").is_empty(), "{n} stopped");
        assert!(
            event_ids(&d, n, "container.recreate").is_empty(),
            "{n} recreated"
        );
    }
}
