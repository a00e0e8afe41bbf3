//! End-to-end tests of the state store on disk: reopening, migrating an older database, refusing
//! a newer one, and the state-directory lock held by another process.

use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use agent::store::{
    ContainerRecord, ContainerState, Error, HealthStatus, LinkRecord, NetworkRecord, NewEvent,
    NewIntent, PortBinding, Protocol, Store, schema,
};
use agent_e2e::store::{ChildProc, columns, create_db_at_version, indexes, raw, role, state_dir};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn container(name: &str, t: i64) -> ContainerRecord {
    ContainerRecord::new(
        name,
        format!("id-{name}"),
        json!({"image": "shop-web", "env": {"LOG_LEVEL": "info"}}),
        format!("hash-{name}"),
        "sha256:ab12",
        t,
    )
}

#[test]
fn everything_written_is_there_after_reopen() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = state_dir(tmp.path());
    {
        let mut s = Store::open(&dir)?;
        s.transaction(|tx| {
            tx.upsert_network(&NetworkRecord {
                name: "shop".into(),
                bridge: "br-shop".into(),
                subnet: "10.66.0.0/24".into(),
                gateway: Some(IpAddr::from([10, 66, 0, 1])),
                config: json!({}),
                created_at: 1,
            })?;
            let mut web = container("web", 2);
            web.state = ContainerState::Running;
            web.health = Some(HealthStatus::Healthy);
            tx.upsert_container(&web)?;
            tx.upsert_container(&container("db", 3))?;
            tx.allocate_ip(
                "shop",
                "web",
                (2..10).map(|i| IpAddr::from([10, 66, 0, i])),
                4,
            )?;
            tx.bind_port(&PortBinding {
                container: "web".into(),
                host_ip: IpAddr::from([127, 0, 0, 1]),
                host_port: 8080,
                proto: Protocol::Tcp,
                container_port: 80,
            })?;
            tx.add_link(&LinkRecord {
                parent: "web".into(),
                child: "db".into(),
                alias: "db".into(),
            })?;
            tx.record_manifest_loaded("/etc/agent.d/shop.yaml", "h1", &json!(["web", "db"]), 5)?;
            tx.begin_intent(
                &NewIntent {
                    kind: "start".into(),
                    object: "container/web".into(),
                    payload: json!({}),
                },
                6,
            )?;
            tx.append_event(&NewEvent {
                time: 7,
                kind: "container.start".into(),
                object: "container/web".into(),
                message: json!({"reason": "created"}),
            })
        })?;
    }
    let mut s = Store::open(&dir)?;
    assert!(s.check_integrity()?.is_empty());
    s.transaction(|tx| {
        let web = tx.container("web")?.ok_or("web missing")?;
        assert_eq!(web.state, ContainerState::Running);
        assert_eq!(web.health, Some(HealthStatus::Healthy));
        assert_eq!(tx.container_ips("web")?[0].ip, IpAddr::from([10, 66, 0, 2]));
        assert_eq!(tx.container_ports("web")?.len(), 1);
        assert_eq!(tx.links_to("db")?.len(), 1);
        assert_eq!(
            tx.manifest_file("/etc/agent.d/shop.yaml")?
                .and_then(|m| m.content_hash)
                .as_deref(),
            Some("h1")
        );
        assert_eq!(tx.pending_intents()?.len(), 1);
        assert_eq!(tx.events_after(None, 10)?.len(), 1);
        // Cascades work on the reopened file too.
        tx.delete_container("web")?;
        assert!(tx.ip_allocations("shop")?.is_empty());
        assert!(tx.port_bindings()?.is_empty());
        assert!(tx.links()?.is_empty());
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

#[test]
fn a_v1_database_is_migrated_to_the_current_schema() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = state_dir(tmp.path());
    {
        let conn = create_db_at_version(&dir, 1)?;
        assert!(!columns(&conn, "containers")?.contains(&"health_status".to_string()));
        conn.execute(
            "INSERT INTO containers (name, id, config, config_hash, image_digest, container_pid,
                state, exit_code, restart_count, started_at, created_at)
             VALUES ('web', 'c0ffee', '{\"image\":\"web\"}', 'h1', 'sha256:ab12', 4242,
                'exited', 3, 2, 100, 50)",
            [],
        )?;
        conn.execute(
            "INSERT INTO events (time, kind, object, message)
             VALUES (60, 'container.exit', 'container/web', '{\"code\":3}')",
            [],
        )?;
        let v: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        assert_eq!(v, 1);
    }
    let mut s = Store::open(&dir)?;
    assert_eq!(s.schema_version()?, schema::CURRENT_VERSION);
    let web = s.transaction(|tx| tx.container("web"))?.ok_or("web lost")?;
    assert_eq!(web.id, "c0ffee");
    assert_eq!(web.config, json!({"image": "web"}));
    assert_eq!(web.runtime.container_pid, Some(4242));
    assert_eq!(
        (web.state, web.exit_code, web.restart_count),
        (ContainerState::Exited, Some(3), 2)
    );
    assert_eq!(web.health, None, "a v1 row has no health status yet");
    let events = s.transaction(|tx| tx.recent_events(Some("container/web"), 5))?;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].message, json!({"code": 3}));

    // The later schema is really there: new column usable, new indexes and table present.
    s.transaction(|tx| {
        tx.update_container("web", |c| c.health = Some(HealthStatus::Starting))?;
        tx.put_network_attachment("c0ffee", &json!({"complete": true}), 70)
    })?;
    drop(s);
    let conn = raw(&dir)?;
    assert!(columns(&conn, "containers")?.contains(&"health_status".to_string()));
    assert!(indexes(&conn, "containers")?.contains(&"containers_image_digest".to_string()));
    assert!(indexes(&conn, "events")?.contains(&"events_object".to_string()));
    assert_eq!(
        columns(&conn, "network_attachments")?,
        ["container_id", "record", "updated_at"],
        "v3 table"
    );
    let health: String = conn.query_row(
        "SELECT health_status FROM containers WHERE name = 'web'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(health, "starting");
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    assert_eq!(check, "ok");
    Ok(())
}

#[test]
fn a_database_from_a_newer_agent_is_refused_untouched() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = state_dir(tmp.path());
    drop(Store::open(&dir)?);
    let newer = schema::CURRENT_VERSION + 1;
    raw(&dir)?.pragma_update(None, "user_version", newer)?;

    let err = Store::open(&dir)
        .err()
        .ok_or("a newer database was opened")?;
    let text = err.to_string();
    assert!(
        matches!(err, Error::SchemaTooNew { found, supported, .. } if found == newer && supported == schema::CURRENT_VERSION),
        "{err:?}"
    );
    assert!(
        text.contains(&dir.join("state.db").display().to_string()),
        "{text}"
    );
    assert!(
        text.contains(&format!("schema version {newer} is newer")),
        "{text}"
    );
    let v: u32 = raw(&dir)?.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    assert_eq!(v, newer, "the refused database was not modified");
    Ok(())
}

/// The parent opens a state directory that a child process holds; the child (this same test
/// re-run with [`ROLE_ENV`](agent_e2e::store::ROLE_ENV) set) keeps it until its stdin closes.
#[test]
fn a_second_agent_process_is_locked_out() -> TestResult {
    if let Some((role, dir)) = role() {
        assert_eq!(role, "hold-lock");
        let store = Store::open(&dir)?;
        println!("LOCKED {}", std::process::id());
        std::io::stdout().flush()?;
        // Hold the lock until the parent closes our stdin.
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink)? > 0 {}
        drop(store);
        return Ok(());
    }

    let tmp = tempfile::tempdir()?;
    let dir = state_dir(tmp.path());
    let mut holder = ChildProc::spawn("a_second_agent_process_is_locked_out", "hold-lock", &dir)?;
    let line = holder
        .wait_line("LOCKED ", Duration::from_secs(60), |_| {})
        .ok_or("the child never took the lock")?;
    let child_pid: i32 = line.trim().parse()?;
    assert_eq!(child_pid as u32, holder.pid());

    let err = Store::open(&dir).err().ok_or("second open succeeded")?;
    let text = err.to_string();
    match err {
        Error::Locked { dir: d, pid } => {
            assert_eq!(d, dir);
            assert_eq!(pid, Some(child_pid));
        }
        other => return Err(format!("expected Locked, got {other:?}").into()),
    }
    assert_eq!(
        text,
        format!(
            "state directory {} is in use by another agent (pid {child_pid}); stop it or use another --state-dir",
            dir.display()
        )
    );

    // Closing its stdin lets the holder exit; the lock is then free.
    drop(holder.child.stdin.take());
    let status = holder.child.wait()?;
    assert!(status.success(), "holder exited with {status}");
    let s = Store::open(&dir)?;
    assert_eq!(
        std::fs::read_to_string(dir.join("lock"))?.trim(),
        std::process::id().to_string()
    );
    drop(s);
    Ok(())
}
