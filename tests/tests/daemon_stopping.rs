//! Stopping is visible (issue 16 item 7): while a container runs out its grace period, `agent
//! ps` says `stopping` (with the grace period), the agent's log said so when the stop began,
//! and `agent events -f` has already shown the stop beginning (`container.stopping`) and, for an
//! unhealthy container, its `unhealthy` health event: events reach followers when they happen,
//! not when the stop has ended. The containers' processes ignore SIGTERM (pid 1 without a
//! handler), so each stop lasts its whole grace period.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};
use serde_json::Value;

/// `agent events -f -o json`, its lines collected by a thread; killed on drop.
struct Follower {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Follower {
    fn start(d: &Daemon) -> Follower {
        let mut child = Command::new(agent_e2e::agent_bin())
            .args(["events", "-f", "-n", "1", "-o", "json", "--socket"])
            .arg(&d.socket)
            .arg("--config")
            .arg(&d.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent events -f");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    l.lock().unwrap_or_else(|e| e.into_inner()).push(v);
                }
            }
        });
        Follower { child, lines }
    }

    /// The first event seen of `kind` about container `name` whose message matches `f`.
    fn seen(&self, name: &str, kind: &str, f: impl Fn(&Value) -> bool) -> Option<Value> {
        let object = format!("container/{name}");
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|e| e["kind"] == kind && e["object"] == object.as_str() && f(&e["message"]))
            .cloned()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A container whose pid 1 ignores SIGTERM, with an 8 s grace period; `extra` goes into spec.
fn stubborn(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: busybox\n  command: [\"/bin/sleep\", \"1000\"]\n  networkMode: none\n  stopGracePeriod: 8s\n{extra}"
    )
}

fn log_says_stopping(d: &Daemon, name: &str) -> bool {
    d.log_text().lines().any(|l| {
        l.contains(&format!("\"container\":\"{name}\"")) && l.contains("stopping: stop signal sent")
    })
}

#[test]
fn a_stop_in_its_grace_period_shows_stopping() {
    if !require_root("a_stop_in_its_grace_period_shows_stopping") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("stopping", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("slow.yaml", &stubborn("slow", "  restart: \"no\"\n"));
    d.wait_for("slow running", Duration::from_secs(60), || {
        (d.ps_row("slow")["state"] == "running").then_some(())
    });
    let follower = Follower::start(&d);
    let mut stop = Command::new(agent_e2e::agent_bin())
        .args(["stop", "slow", "--socket"])
        .arg(&d.socket)
        .arg("--config")
        .arg(&d.config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("agent stop");

    let row = d.wait_for("slow stopping", Duration::from_secs(20), || {
        let r = d.ps_row("slow");
        (r["state"] == "stopping").then_some(r)
    });
    assert_eq!(row["grace_ms"], 8000, "{row}");
    assert!(row["stopping_since"].is_i64(), "{row}");
    let text = d.cli_ok(&["ps"]);
    assert!(
        text.lines().any(|l| l.starts_with("slow ")
            && l.contains("stopping")
            && l.contains("SIGKILL after 8s")),
        "{text}"
    );
    // The log and the event stream told of the stop when it began: the stop has not ended.
    assert!(log_says_stopping(&d, "slow"), "{}", d.log_tail());
    let ev = d.wait_for(
        "container.stopping followed",
        Duration::from_secs(5),
        || follower.seen("slow", "container.stopping", |_| true),
    );
    assert_eq!(ev["message"]["reason"], "agent stop", "{ev}");
    assert_eq!(ev["message"]["graceMs"], 8000, "{ev}");
    assert_eq!(d.ps_row("slow")["state"], "stopping");

    let st = stop.wait().expect("agent stop");
    assert!(st.success(), "agent stop: {st}");
    assert_eq!(d.ps_row("slow")["state"], "stopped-by-user");
    d.remove_all_and_wait(Duration::from_secs(60));
}

#[test]
fn unhealthy_is_told_before_its_stop_ends() {
    if !require_root("unhealthy_is_told_before_its_stop_ends") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("unhstop", "");
    d.start();
    let follower = Follower::start(&d);
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write(
        "sick.yaml",
        &stubborn(
            "sick",
            "  restart: always\n  healthcheck:\n    command: [\"/bin/false\"]\n    interval: 500ms\n    timeout: 2s\n    retries: 1\n",
        ),
    );
    // The unhealthy stop runs out its 8 s grace period; meanwhile ps says stopping, and the
    // follower has seen the unhealthy event and the stop's beginning.
    d.wait_for("sick stopping", Duration::from_secs(60), || {
        (d.ps_row("sick")["state"] == "stopping").then_some(())
    });
    let seen = d.wait_for("events followed", Duration::from_secs(5), || {
        let h = follower.seen("sick", "container.health", |m| m["status"] == "unhealthy")?;
        let s = follower.seen("sick", "container.stopping", |_| true)?;
        Some((h, s))
    });
    assert_eq!(seen.1["message"]["reason"], "unhealthy", "{}", seen.1);
    assert!(seen.0["id"].as_i64() < seen.1["id"].as_i64());
    assert_eq!(d.ps_row("sick")["state"], "stopping");
    assert!(log_says_stopping(&d, "sick"), "{}", d.log_tail());
    assert!(
        follower.seen("sick", "container.exit", |_| true).is_none(),
        "the stop has not ended yet"
    );
    d.remove_all_and_wait(Duration::from_secs(90));
}
