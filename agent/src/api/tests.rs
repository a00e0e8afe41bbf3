//! The server and the client together, on a temporary socket and an in-memory store.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use super::server::{self, ApiState};
use super::types::{Inspect, PassReport, PsRow, StatusReport};
use super::{Client, ClientError};
use crate::reconcile::trigger;
use crate::store::{ContainerRecord, ContainerState, NewEvent, PortBinding, Protocol, Store};

struct Running {
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    store: Arc<Mutex<Store>>,
    events_tx: watch::Sender<i64>,
    shutdown_tx: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn seed(store: &mut Store) {
    store
        .transaction(|tx| {
            let mut c = ContainerRecord::new("web", "web-1", json!({}), "h1", "sha256:ab", 1);
            c.state = ContainerState::Running;
            c.started_at = Some(1000);
            c.restart_count = 2;
            tx.upsert_container(&c)?;
            tx.bind_port(&PortBinding {
                container: "web".into(),
                host_ip: "127.0.0.1".parse().unwrap(),
                host_port: 8080,
                proto: Protocol::Tcp,
                container_port: 80,
            })?;
            tx.record_manifest_loaded("/m/web.yaml", "abc", &json!([]), 5)?;
            tx.record_manifest_error("/m/bad.yaml", "/m/bad.yaml:3:1: unknown field", 6)?;
            for i in 0..3 {
                tx.append_event(&NewEvent {
                    time: i,
                    kind: "container.start".into(),
                    object: "container/web".into(),
                    message: json!({"reason": format!("start {i}")}),
                })?;
            }
            Ok::<_, crate::store::Error>(())
        })
        .unwrap();
}

/// Starts the server on its own runtime; a fake reconcile loop answers apply requests.
fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/agent.sock");
    let mut store = Store::open_in_memory().unwrap();
    seed(&mut store);
    let store = Arc::new(Mutex::new(store));
    let (events_tx, events_rx) = watch::channel(3i64);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (triggers, mut queue) = trigger::channel::<PassReport>();
    let state = ApiState {
        store: store.clone(),
        triggers: triggers.clone(),
        requests: crate::reconcile::request::Requests::default(),
        board: crate::reconcile::report::Board::default(),
        events: events_rx,
        shutdown: shutdown_rx.clone(),
        dir_error: Arc::new(|| None),
        state_dir: dir.path().to_path_buf(),
    };
    let sock = socket.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = server::bind(&sock).await.unwrap();
            ready_tx.send(()).unwrap();
            let mut n = 0;
            tokio::spawn(async move {
                while let Some(batch) = queue.next_batch().await {
                    n += 1;
                    let report = PassReport {
                        pass: n,
                        triggers: batch.triggers.iter().map(|t| t.to_string()).collect(),
                        ..PassReport::default()
                    };
                    batch.complete(report);
                }
            });
            let mut sd = shutdown_rx;
            server::serve(listener, state, async move {
                let _ = sd.wait_for(|v| *v).await;
                triggers.close();
            })
            .await
            .unwrap();
        });
    });
    ready_rx.recv().unwrap();
    Running {
        _dir: dir,
        socket,
        store,
        events_tx,
        shutdown_tx,
        thread: Some(thread),
    }
}

#[test]
fn socket_is_root_only_and_single() {
    let r = start();
    let mode = std::fs::metadata(&r.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt
        .block_on(server::bind(&r.socket))
        .unwrap_err()
        .to_string();
    assert!(e.contains("already listening"), "{e}");
}

#[test]
fn stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.sock");
    drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
    assert!(p.exists());
    assert!(matches!(
        Client::new(&p).call::<Vec<PsRow>>(false, "/v1/ps"),
        Err(ClientError::NotRunning(_))
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(server::bind(&p)).unwrap();
}

#[test]
fn ps_status_inspect() {
    let r = start();
    let c = Client::new(&r.socket);
    let rows: Vec<PsRow> = c.call(false, "/v1/ps").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, "web");
    assert_eq!(rows[0].state, "running");
    assert_eq!(rows[0].ports, ["127.0.0.1:8080->80/tcp"]);
    assert_eq!(rows[0].restarts, 2);
    let st: StatusReport = c.call(false, "/v1/status").unwrap();
    assert!(st.agent_running);
    assert_eq!(st.files.len(), 2);
    assert_eq!(st.files[0].path, "/m/bad.yaml");
    assert_eq!(st.files[0].status, "error");
    assert_eq!(st.files[1].status, "ok");
    let i: Inspect = c.call(false, "/v1/containers/web").unwrap();
    assert_eq!(i.container.id, "web-1");
    assert_eq!(i.events.len(), 3);
    let e = c.call::<Inspect>(false, "/v1/containers/nope").unwrap_err();
    assert_eq!(e.to_string(), "no such container: nope (see `agent ps`)");
}

#[test]
fn apply_waits_for_a_pass() {
    let r = start();
    let c = Client::new(&r.socket);
    let a: PassReport = c.call(true, "/v1/apply").unwrap();
    assert_eq!(a.triggers, ["API request"]);
    let b: PassReport = c.call(true, "/v1/apply").unwrap();
    assert!(b.pass > a.pass);
}

#[test]
fn events_backlog_and_follow() {
    let r = start();
    let c = Client::new(&r.socket);
    let mut seen = Vec::new();
    c.lines("/v1/events?limit=2", |l| {
        seen.push(l.to_string());
        true
    })
    .unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].contains("start 2"), "{seen:?}");

    // Follow: the backlog after id 1, then an event appended later.
    let store = r.store.clone();
    let tx = r.events_tx.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let id = store
            .lock()
            .unwrap()
            .transaction(|t| {
                t.append_event(&NewEvent {
                    time: 9,
                    kind: "container.exit".into(),
                    object: "container/web".into(),
                    message: json!({"exitCode": 3}),
                })
            })
            .unwrap();
        tx.send(id).unwrap();
    });
    let mut followed = Vec::new();
    let started = std::time::Instant::now();
    c.lines("/v1/events?after=1&follow=true", |l| {
        followed.push(serde_json::from_str::<crate::store::Event>(l).unwrap());
        followed.len() < 3
    })
    .unwrap();
    writer.join().unwrap();
    assert_eq!(followed.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 3, 4]);
    assert_eq!(followed[2].kind, "container.exit");
    // Woken by the notification, not by the 2 s poll.
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[test]
fn follow_ends_at_shutdown() {
    let r = start();
    let socket = r.socket.clone();
    let follower = std::thread::spawn(move || {
        let mut n = 0;
        Client::new(&socket)
            .lines("/v1/events?follow=true&limit=1", |_| {
                n += 1;
                true
            })
            .map(|()| n)
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(r);
    let n = follower.join().unwrap().unwrap();
    assert_eq!(n, 1);
}

#[test]
fn not_running_is_recognised() {
    let e = Client::new(Path::new("/nonexistent/agent.sock"))
        .call::<Vec<PsRow>>(false, "/v1/ps")
        .unwrap_err();
    assert!(matches!(e, ClientError::NotRunning(_)), "{e}");
}

#[test]
fn stop_time_is_bounded() {
    use super::server::grace_secs;
    assert_eq!(grace_secs(0.0).unwrap(), Duration::ZERO);
    assert_eq!(grace_secs(1.5).unwrap(), Duration::from_millis(1500));
    assert_eq!(grace_secs(86400.0).unwrap(), Duration::from_secs(86400));
    for bad in [86400.001, 1e19, 1e20, -1.0, f64::NAN, f64::INFINITY] {
        let e = grace_secs(bad).unwrap_err();
        assert!(e.contains("0 to 86400"), "{bad}: {e}");
    }
}
