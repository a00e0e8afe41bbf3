//! Restart policies and backoff in the running agent, with real containers (the exec driver and
//! the busybox test image). The containers are created through the exec driver and recorded in
//! the store before the agent starts, as a finished plan would have left them; the agent then
//! supervises them: exits are recorded, policies decide, backoff delays are in the event log.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use agent::driver::exec::ExecDriver;
use agent::store::{ContainerRecord, ContainerState, Store};
use agent_e2e::daemon::Daemon;
use agent_e2e::exec::{Fixture, require_root};
use serde_json::{Value, json};

/// Creates and starts a container running `sh -c script` and records it in the store as
/// running with `restart` as its policy.
fn container(fx: &mut Fixture, name: &str, script: &str, restart: Value) -> String {
    let mut spec = fx.spec(name);
    spec.command = Some(vec!["/bin/sh".into(), "-c".into(), script.into()]);
    let id = fx.run(&spec);
    std::fs::set_permissions(&fx.state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let mut store = Store::open(&fx.state).expect("open store");
    store
        .transaction(|tx| {
            let mut c = ContainerRecord::new(
                name,
                &id,
                json!({"name": name, "live": {"restart": restart, "stopGracePeriod": "1s"}}),
                "sha256:test",
                "sha256:img",
                1,
            );
            c.state = ContainerState::Running;
            c.started_at = Some(agent::reconcile::pass::now_ms());
            tx.upsert_container(&c)
        })
        .expect("record container");
    id
}

fn daemon(fx: &Fixture, tag: &str) -> Daemon {
    std::fs::set_permissions(&fx.state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    // Short backoff cap and reset so the test sees growth, the cap and the reset quickly.
    let mut d = Daemon::prepare(
        tag,
        "[restart]\nstart = \"100ms\"\nfactor = 2.0\ncap = \"800ms\"\nreset_after = \"1500ms\"\n",
    );
    // Containers here are the fixture's; its Drop removes them.
    let text = std::fs::read_to_string(&d.config).expect("config");
    std::fs::write(
        &d.config,
        text.replace(
            "stop_containers_on_exit = true",
            "stop_containers_on_exit = false",
        ),
    )
    .expect("config");
    d.state = fx.state.clone();
    d
}

fn events_of(d: &Daemon, name: &str, kind: &str) -> Vec<Value> {
    d.events()
        .into_iter()
        .filter(|e| e["object"] == format!("container/{name}") && e["kind"] == kind)
        .collect()
}

fn ps_row(d: &Daemon, name: &str) -> Value {
    let v = d.cli_json(&["ps"]);
    v.as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn policies_backoff_growth_cap_and_reset() {
    if !require_root("policies_backoff_growth_cap_and_reset") {
        return;
    }
    let mut fx = Fixture::new("drestart");
    container(&mut fx, "crash", "exit 3", json!("always"));
    container(&mut fx, "slow", "sleep 2; exit 1", json!("always"));
    container(
        &mut fx,
        "twice",
        "exit 1",
        json!({"policy": "on-failure", "maxRetries": 2}),
    );
    container(&mut fx, "clean", "exit 0", json!({"policy": "on-failure"}));
    container(&mut fx, "never", "exit 1", json!("no"));
    container(&mut fx, "unless", "exit 7", json!("unless-stopped"));
    let mut d = daemon(&fx, "restart");
    d.start();

    // crash: always, quick exits. It exited before the agent started, so start-up brings it
    // back at once (delay 0, as after a reboot); then the delays double up to the cap.
    let delays = d.wait_for("7 restarts of crash", Duration::from_secs(30), || {
        let ev = events_of(&d, "crash", "container.restart-scheduled");
        (ev.len() >= 7).then(|| {
            ev.iter()
                .map(|e| e["message"]["delayMs"].as_u64())
                .collect::<Vec<_>>()
        })
    });
    assert_eq!(
        delays[..7],
        [
            Some(0),
            Some(100),
            Some(200),
            Some(400),
            Some(800),
            Some(800),
            Some(800)
        ]
    );
    assert!(ps_row(&d, "crash")["restarts"].as_u64().unwrap_or(0) >= 5);

    // slow: each run lasts 2 s >= reset_after: the delay stays at the start.
    let delays = d.wait_for("3 restarts of slow", Duration::from_secs(30), || {
        let ev = events_of(&d, "slow", "container.restart-scheduled");
        (ev.len() >= 3).then(|| {
            ev.iter()
                .map(|e| e["message"]["delayMs"].as_u64())
                .collect::<Vec<_>>()
        })
    });
    assert_eq!(delays[..3], [Some(100), Some(100), Some(100)]);

    // twice: on-failure:2 restarts exactly twice, then gives up.
    let stays = d.wait_for("twice gives up", Duration::from_secs(30), || {
        let ev = events_of(&d, "twice", "container.stays-exited");
        ev.first().cloned()
    });
    assert!(
        stays["message"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("gave up after 2 restart(s)")),
        "{stays}"
    );
    assert_eq!(events_of(&d, "twice", "container.restart").len(), 2);
    let row = ps_row(&d, "twice");
    assert_eq!(row["state"], "exited");
    assert_eq!(row["exit_code"], 1);
    assert_eq!(row["restarts"], 2);

    // clean: on-failure and exit 0: not restarted. never: policy no.
    for (name, code, why) in [
        ("clean", 0, "exited with code 0"),
        ("never", 1, "restart policy is no"),
    ] {
        let stays = d.wait_for(name, Duration::from_secs(20), || {
            events_of(&d, name, "container.stays-exited")
                .first()
                .cloned()
        });
        assert!(
            stays["message"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains(why)),
            "{stays}"
        );
        let row = ps_row(&d, name);
        assert_eq!(row["state"], "exited");
        assert_eq!(row["exit_code"], code);
        assert_eq!(row["restarts"], 0);
    }

    // unless-stopped restarts like always.
    d.wait_for("unless restarted", Duration::from_secs(20), || {
        (events_of(&d, "unless", "container.restart").len() >= 2).then_some(())
    });
    let status = d.stop().expect("agent exit");
    assert!(status.success());
}

#[test]
fn agent_restart_adopts_running_and_records_exits_while_down() {
    if !require_root("agent_restart_adopts_running_and_records_exits_while_down") {
        return;
    }
    let mut fx = Fixture::new("dadopt");
    let long = container(&mut fx, "long", "sleep 1000", json!("always"));
    let brief = container(&mut fx, "brief", "sleep 2; exit 5", json!("always"));
    let norestart = container(&mut fx, "once", "sleep 2; exit 6", json!("no"));
    let _ = (&brief, &norestart);
    let pid_before = match fx.driver.state(&long).expect("state").status {
        agent::driver::exec::ContainerStatus::Running { pid, .. } => pid,
        other => panic!("long not running: {other:?}"),
    };
    let mut d = daemon(&fx, "adopt");
    d.start();
    // kill -9 the agent: the monitors live on.
    d.stop_with(libc::SIGKILL);
    // While it is down, brief and once exit.
    fx.wait_exit(&brief, Duration::from_secs(20));
    fx.wait_exit(&norestart, Duration::from_secs(20));
    d.start();
    // long was adopted: same process, no restart, no exit recorded.
    d.wait_for("exits recorded", Duration::from_secs(20), || {
        (!events_of(&d, "brief", "container.exit").is_empty()
            && !events_of(&d, "once", "container.exit").is_empty())
        .then_some(())
    });
    match fx.driver.state(&long).expect("state").status {
        agent::driver::exec::ContainerStatus::Running { pid, .. } => assert_eq!(pid, pid_before),
        other => panic!("long not running: {other:?}"),
    }
    assert!(events_of(&d, "long", "container.exit").is_empty());
    assert_eq!(ps_row(&d, "long")["restarts"], 0);
    assert_eq!(ps_row(&d, "long")["state"], "running");
    // brief (always) came back; once (no) stays exited with its code.
    let exit = &events_of(&d, "brief", "container.exit")[0];
    assert_eq!(exit["message"]["exitCode"], 5);
    d.wait_for("brief restarted", Duration::from_secs(20), || {
        (!events_of(&d, "brief", "container.restart").is_empty()).then_some(())
    });
    let row = ps_row(&d, "once");
    assert_eq!(row["state"], "exited");
    assert_eq!(row["exit_code"], 6);
    d.stop();
}
