//! A lost, emptied, corrupt or older state store must never cost a running container or its
//! writable layer (issue 15 item 7). With containers on disk and a store that records none
//! (`state.db` deleted or truncated), `agent run` refuses to start and names the file, what it
//! found and the ways out; the containers keep running with the files written inside them. A
//! corrupt store is refused naming the file. A store restored from an older backup (it records
//! some containers, not all) starts, and the unknown container is left running
//! (`recovery.orphan-kept`). `agent run --remove-orphans` is the explicit way out: the unknown
//! containers go and the manifests create them anew.
//!
//! On the old code the first restart after deleting `state.db` started and removed both
//! containers (the start-up sweep took them for orphans), so the test fails at the first
//! refusal.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

/// `echo kept > /kept` then sleep: the file lives in the writable layer only.
const SCRIPT: &str = "echo kept > /kept; exec sleep 1000";

/// Runs `agent run` for this fixture (extra `args`) and waits for it to exit, at most 30 s;
/// returns its exit success and its output. Panics (after killing it) if it keeps running.
fn run_expecting_exit(d: &Daemon, args: &[&str]) -> (bool, String) {
    let mut child = Command::new(agent_e2e::agent_bin())
        .args(["run", "--manifests"])
        .arg(&d.manifests)
        .arg("--state-dir")
        .arg(&d.state)
        .arg("--socket")
        .arg(&d.socket)
        .arg("--config")
        .arg(&d.config)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agent run");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait agent");
            panic!(
                "agent run kept running (it should have refused to start):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("wait agent");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn remove_db(state: &Path) {
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(state.join(f));
    }
}

/// The ids of `names`, once each runs (from `agent ps`).
fn running_ids(d: &Daemon, names: &[&str]) -> Vec<String> {
    d.wait_for("containers running", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        names
            .iter()
            .map(|n| {
                let row = d.try_ps_row(n)?;
                (row["state"] == "running")
                    .then(|| row["id"].as_str().map(str::to_string))
                    .flatten()
            })
            .collect::<Option<Vec<String>>>()
    })
}

fn assert_alive_with_file(d: &Daemon, ids: &[String], when: &str) {
    for id in ids {
        assert!(
            d.sh_in(id, "test \"$(cat /kept)\" = kept"),
            "{when}: container {id} is gone or lost its /kept file"
        );
    }
}

#[test]
fn lost_store_never_deletes_running_containers() {
    if !require_root("lost_store_never_deletes_running_containers") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare_with("loststore", "", false);
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("c1.yaml", &container_manifest("c1", SCRIPT, ""));
    let c1 = running_ids(&d, &["c1"]);
    // A backup of a store that knows c1 only (the agent stopped: the WAL is checkpointed).
    d.stop();
    let backup = d.dir.path().join("state.db.backup");
    std::fs::copy(d.state.join("state.db"), &backup).expect("backup state.db");
    d.start();
    d.write("c2.yaml", &container_manifest("c2", SCRIPT, ""));
    let ids = running_ids(&d, &["c1", "c2"]);
    assert_eq!(ids[0], c1[0]);
    assert_alive_with_file(&d, &ids, "before");
    d.stop();
    let db = d.state.join("state.db");
    let db_text = db.display().to_string();

    // 1. state.db deleted: refused, twice (the first refusal leaves an empty store behind).
    remove_db(&d.state);
    for attempt in ["state.db deleted", "state.db deleted, second start"] {
        let (ok, out) = run_expecting_exit(&d, &[]);
        assert!(!ok, "{attempt}: agent run started:\n{out}");
        for want in [
            db_text.as_str(),
            "records no containers",
            "2 container bundle(s)",
            "2 running",
            "--remove-orphans",
            "backup",
        ] {
            assert!(out.contains(want), "{attempt}: {want:?} missing in:\n{out}");
        }
        assert_alive_with_file(&d, &ids, attempt);
    }

    // 2. state.db truncated to zero bytes: the same.
    std::fs::write(&db, b"").expect("truncate state.db");
    let (ok, out) = run_expecting_exit(&d, &[]);
    assert!(
        !ok && out.contains("records no containers") && out.contains(&db_text),
        "{out}"
    );
    assert_alive_with_file(&d, &ids, "state.db truncated");

    // 3. A corrupt (non-empty) state.db: refused, naming the file.
    remove_db(&d.state);
    std::fs::write(&db, vec![0x5a; 8192]).expect("corrupt state.db");
    let (ok, out) = run_expecting_exit(&d, &[]);
    assert!(!ok, "corrupt store accepted:\n{out}");
    assert!(
        out.contains(&db_text),
        "the message does not name {db_text}:\n{out}"
    );
    assert_alive_with_file(&d, &ids, "corrupt state.db");

    // 4. An older backup (knows c1, not c2): the agent starts; c2's runtime container is left
    //    running and reported, never removed.
    remove_db(&d.state);
    std::fs::copy(&backup, &db).expect("restore backup");
    d.start();
    d.wait_for("orphan-kept event", Duration::from_secs(30), || {
        d.events()
            .iter()
            .any(|e| {
                e["kind"] == "recovery.orphan-kept" && e["object"] == format!("runtime/{}", ids[1])
            })
            .then_some(())
    });
    let _ = d.cli(&["apply"]);
    assert_alive_with_file(&d, &ids, "older backup restored");
    assert!(
        !d.events()
            .iter()
            .any(|e| e["kind"] == "recovery.orphan-removed"),
        "something was removed as an orphan"
    );
    d.stop();

    // 5. The explicit way out: an empty store and `--remove-orphans`. Every container the store
    //    does not name goes; the manifests create c1 and c2 anew.
    remove_db(&d.state);
    d.args(&["--remove-orphans"]);
    d.start();
    let fresh = running_ids(&d, &["c1", "c2"]);
    let runtime = d.runtime_ids();
    for old in &ids {
        assert!(!fresh.contains(old), "{old} was adopted, not removed");
        assert!(
            !runtime.contains(old),
            "{old} is still in the runtime: {runtime:?}"
        );
    }
    let removed = d
        .events()
        .iter()
        .filter(|e| e["kind"] == "recovery.orphan-removed")
        .count();
    assert!(
        removed >= 2,
        "expected orphan-removed events, got {removed}"
    );
    d.remove_all_and_wait(Duration::from_secs(60));
}
