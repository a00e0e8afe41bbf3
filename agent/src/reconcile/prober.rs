//! The health prober: runs each running container's health-check command (through the exec
//! driver, inside the container) on its schedule and feeds the results to the
//! [`super::health::Health`] state machine.
//!
//! One task sleeps until the earliest probe is due (a deadline queue: no fixed tick; a change of
//! the probed set or a finished probe wakes it) and starts the probes that are due, each on the
//! blocking pool with its timeout. A probe that exceeds its timeout counts as a failure and is killed, as Docker
//! does: the exec driver runs it as an `agent exec` child of this process, so [`kill_probe`]
//! SIGKILLs that child and every process under it (the command inside the container and what it
//! started), found through `/proc` by parent pid, and the prober waits for it to go before the
//! next probe of that container can start. Timed-out probes never pile up. A status change is written to the store
//! (`containers.health_status`, a `container.health` event) and fires
//! [`Trigger::Health`](super::trigger::Trigger): the next pass stops an `unhealthy` container whose
//! restart policy restarts (every policy but `no`) unless its `healthcheck.onUnhealthy` is `none`
//! (then it is only reported, as Docker does), and the exit is then handled like any other.
//! The set of probed containers is refreshed by every pass ([`Prober::sync`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::health::{Health, HealthStatus, HealthTiming, ProbeResult};
use super::pass::{event, now_ms};
use super::trigger::{Trigger, Triggers};
use crate::driver::exec::{AnyExecDriver, ExecDriver, ExecRequest, ExecStdio};
use crate::manifest;
use crate::reconcile::report::PassReport;
use crate::store::{self, ContainerState, Store};

/// The health check in a stored effective config (`live.healthcheck`).
pub fn healthcheck_of(config: &Value) -> Option<(Vec<String>, HealthTiming)> {
    let h = config.get("live")?.get("healthcheck")?;
    let h: manifest::Healthcheck = serde_json::from_value(h.clone()).ok()?;
    if h.command.is_empty() {
        return None;
    }
    Some((
        h.command,
        // Clamped: a config stored by an older version may hold any duration, and the
        // deadlines are `Instant + Duration`.
        HealthTiming {
            interval: h.interval.0.min(manifest::units::MAX_DURATION),
            timeout: h.timeout.0.min(manifest::units::MAX_DURATION),
            retries: h.retries,
            start_period: h.start_period.0.min(manifest::units::MAX_DURATION),
        },
    ))
}

struct Target {
    id: String,
    started_at: Option<i64>,
    command: Vec<String>,
    health: Health,
    running: bool,
}

/// The probed containers, shared by the passes and the prober task.
#[derive(Clone, Default)]
pub struct Prober {
    targets: Arc<Mutex<HashMap<String, Target>>>,
    /// Wakes the prober task: the probed set changed, or a probe ended.
    wake: Arc<tokio::sync::Notify>,
}

impl Prober {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Target>> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the probed set equal to the running containers with a health check. A container
    /// that (re)started since the last sync starts over in `starting`.
    pub fn sync(&self, store: &mut Store) -> store::Result<()> {
        let containers = store.transaction(|tx| tx.containers())?;
        let mut targets = self.lock();
        let mut keep = Vec::new();
        for c in containers {
            if c.state != ContainerState::Running {
                continue;
            }
            let Some((command, timing)) = healthcheck_of(&c.config) else {
                continue;
            };
            keep.push(c.name.clone());
            let fresh = targets
                .get(&c.name)
                .is_none_or(|t| t.id != c.id || t.started_at != c.started_at);
            if fresh {
                // The monotonic start: now minus how long ago the store says it started.
                let ago = c
                    .started_at
                    .map(|s| Duration::from_millis((now_ms() - s).max(0).unsigned_abs()))
                    .unwrap_or_default();
                let started = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
                targets.insert(
                    c.name.clone(),
                    Target {
                        id: c.id.clone(),
                        started_at: c.started_at,
                        command,
                        health: Health::new(timing, started),
                        running: false,
                    },
                );
                if c.health != Some(store::HealthStatus::Starting) {
                    let mut rec = c.clone();
                    rec.health = Some(store::HealthStatus::Starting);
                    store.transaction(|tx| tx.upsert_container(&rec))?;
                }
            } else if let Some(t) = targets.get_mut(&c.name) {
                t.health.set_timing(timing, Instant::now());
                t.command = command;
            }
        }
        targets.retain(|name, _| keep.contains(name));
        drop(targets);
        self.wake.notify_one();
        Ok(())
    }

    /// When the earliest probe that is not running is due; `None` without one.
    fn next_due(&self) -> Option<Instant> {
        self.lock()
            .values()
            .filter(|t| !t.running)
            .map(|t| t.health.next_probe_at())
            .min()
    }

    /// Starts the prober task.
    pub fn spawn(
        &self,
        exec: Arc<AnyExecDriver>,
        store: Arc<Mutex<Store>>,
        triggers: Triggers<PassReport>,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                match me.next_due() {
                    Some(at) if at > Instant::now() => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(at.into()) => {}
                            _ = me.wake.notified() => {}
                        }
                    }
                    Some(_) => {}
                    None => me.wake.notified().await,
                }
                let now = Instant::now();
                let due: Vec<(String, String, Vec<String>, Duration)> = {
                    let mut targets = me.lock();
                    targets
                        .iter_mut()
                        .filter(|(_, t)| !t.running && t.health.next_probe_at() <= now)
                        .map(|(n, t)| {
                            t.running = true;
                            (
                                n.clone(),
                                t.id.clone(),
                                t.command.clone(),
                                t.health.timeout(),
                            )
                        })
                        .collect()
                };
                for (name, id, command, timeout) in due {
                    let (me, exec, store, triggers) =
                        (me.clone(), exec.clone(), store.clone(), triggers.clone());
                    tokio::spawn(async move {
                        let start = Instant::now();
                        let (result, leftover) = probe(exec, id, command, timeout).await;
                        // A timed-out probe is recorded at once (its event is not held up by
                        // the killed probe's end); the next probe waits until it is gone.
                        me.record(&name, result, start, &store, &triggers);
                        if let Some(job) = leftover {
                            let _ = tokio::time::timeout(Duration::from_secs(5), job).await;
                        }
                        me.release(&name);
                    });
                }
            }
        });
    }

    /// The probe of `name` is over: the next one may start.
    fn release(&self, name: &str) {
        if let Some(t) = self.lock().get_mut(name) {
            t.running = false;
        }
        self.wake.notify_one();
    }

    fn record(
        &self,
        name: &str,
        result: ProbeResult,
        start: Instant,
        store: &Arc<Mutex<Store>>,
        triggers: &Triggers<PassReport>,
    ) {
        let changed = {
            let mut targets = self.lock();
            let Some(t) = targets.get_mut(name) else {
                return;
            };
            t.health.record(result.clone(), start, Instant::now())
        };
        let Some(status) = changed else {
            return;
        };
        let st = match status {
            HealthStatus::Starting => store::HealthStatus::Starting,
            HealthStatus::Healthy => store::HealthStatus::Healthy,
            HealthStatus::Unhealthy => store::HealthStatus::Unhealthy,
        };
        let detail = match &result {
            ProbeResult::Passed => json!({"status": status}),
            ProbeResult::Failed { exit_code, output } => {
                json!({"status": status, "exitCode": exit_code, "output": output})
            }
            ProbeResult::TimedOut => json!({"status": status, "error": "timed out"}),
            ProbeResult::Error(e) => json!({"status": status, "error": e}),
        };
        let mut s = store.lock().unwrap_or_else(|e| e.into_inner());
        let res = s.transaction(|tx| {
            if let Some(mut c) = tx.container(name)? {
                c.health = Some(st);
                tx.upsert_container(&c)?;
            }
            event(tx, "container.health", &format!("container/{name}"), detail)
        });
        drop(s);
        if let Err(e) = res {
            tracing::warn!(container = name, error = %e, "cannot record health");
        }
        tracing::info!(container = name, status = %status, "health changed");
        triggers.fire(Trigger::Health(name.to_string()));
    }
}

/// The probe's result, and for a probe over its timeout its job (the killed exec), to be
/// waited for before the next probe of the container starts.
async fn probe(
    exec: Arc<AnyExecDriver>,
    id: String,
    command: Vec<String>,
    timeout: Duration,
) -> (
    ProbeResult,
    Option<
        tokio::task::JoinHandle<
            Result<crate::driver::exec::ExecOutput, crate::driver::exec::Error>,
        >,
    >,
) {
    let req = ExecRequest {
        argv: command,
        ..ExecRequest::default()
    };
    let target = id.clone();
    let mut job = tokio::task::spawn_blocking(move || exec.exec(&id, &req, ExecStdio::Capture));
    let result = match tokio::time::timeout(timeout, &mut job).await {
        Err(_) => {
            let killed = tokio::task::spawn_blocking(move || kill_probe(&target))
                .await
                .unwrap_or(0);
            tracing::debug!(killed, "health probe timed out; its processes were killed");
            // The exec returns once its process is gone; the caller waits (bounded) for that
            // before the next probe, so probes never pile up.
            return (ProbeResult::TimedOut, Some(job));
        }
        Ok(Err(e)) => ProbeResult::Error(e.to_string()),
        Ok(Ok(Err(e))) => ProbeResult::Error(e.to_string()),
        Ok(Ok(Ok(out))) if out.exit_code == 0 => ProbeResult::Passed,
        Ok(Ok(Ok(out))) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let tail: String = text
                .chars()
                .rev()
                .take(400)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            ProbeResult::Failed {
                exit_code: out.exit_code,
                output: tail,
            }
        }
    };
    (result, None)
}

/// A process seen in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Proc {
    pid: i32,
    ppid: i32,
    args: Vec<String>,
}

fn processes() -> Vec<Proc> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let ppid = rest.split(' ').nth(1)?.parse().ok()?;
            let args = std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some(Proc { pid, ppid, args })
        })
        .collect()
}

/// The probe processes of container `id` among `procs`: this process's `agent exec` children for
/// that container and all their descendants, deepest first (so nothing is re-parented away).
fn probe_tree(procs: &[Proc], me: i32, id: &str) -> Vec<i32> {
    let roots: Vec<i32> = procs
        .iter()
        .filter(|p| {
            p.ppid == me
                && p.args.iter().any(|a| a == "exec")
                && p.args.iter().any(|a| a == id)
                && p.args.iter().any(|a| a == "--")
        })
        .map(|p| p.pid)
        .collect();
    let mut order = Vec::new();
    let mut frontier = roots;
    while !frontier.is_empty() {
        order.extend(frontier.iter().copied());
        frontier = procs
            .iter()
            .filter(|p| frontier.contains(&p.ppid) && !order.contains(&p.pid))
            .map(|p| p.pid)
            .collect();
    }
    order.reverse();
    order
}

/// SIGKILLs the running probe of container `id` and everything it started; returns how many
/// processes were signalled.
pub fn kill_probe(id: &str) -> usize {
    let me = std::process::id() as i32;
    let pids = probe_tree(&processes(), me, id);
    for pid in &pids {
        // SAFETY: kill(2) of a process found above as a descendant of our own probe child.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    pids.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32, args: &str) -> Proc {
        Proc {
            pid,
            ppid,
            args: args.split(' ').map(String::from).collect(),
        }
    }

    #[test]
    fn probe_tree_is_our_exec_child_and_its_descendants() {
        let procs = [
            p(100, 1, "agent run"),
            p(200, 100, "agent exec --state-dir /s web-1 -- sh -c sleep"),
            p(201, 200, "sh -c sleep"),
            p(202, 201, "sleep 30"),
            p(300, 100, "agent exec --state-dir /s db-1 -- true"),
            p(301, 300, "true"),
            p(400, 1, "agent exec --state-dir /s web-1 -- sh"),
            p(500, 100, "agent monitor --state-dir /s web-1"),
        ];
        assert_eq!(probe_tree(&procs, 100, "web-1"), [202, 201, 200]);
        assert_eq!(probe_tree(&procs, 100, "db-1"), [301, 300]);
        assert!(probe_tree(&procs, 100, "nope").is_empty());
    }

    #[test]
    fn kill_probe_kills_a_real_child_tree() {
        // A stand-in for `agent exec ... ID -- ...`: a shell whose argv matches, with a child.
        let id = format!("probe-test-{}", std::process::id());
        let mut child = std::process::Command::new("/bin/sh")
            // `wait $!` ends with the sleep's status (137) if the shell outlives it.
            .args(["-c", "sleep 30 & wait $!", "exec", &id, "--"])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while probe_tree(&processes(), std::process::id() as i32, &id).len() < 2 {
            assert!(Instant::now() < deadline, "child tree did not appear");
            std::thread::sleep(Duration::from_millis(20));
        }
        let t = Instant::now();
        assert_eq!(kill_probe(&id), 2);
        let status = child.wait().unwrap();
        assert!(!status.success(), "{status:?}");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the sleep was not killed"
        );
        std::thread::sleep(Duration::from_millis(100));
        assert!(probe_tree(&processes(), std::process::id() as i32, &id).is_empty());
    }

    #[test]
    fn healthcheck_from_stored_config() {
        let c = json!({"live": {"healthcheck": {"command": ["/bin/true"], "interval": "2s", "timeout": "1s", "retries": 2, "startPeriod": "5s"}}});
        let (cmd, t) = healthcheck_of(&c).unwrap();
        assert_eq!(cmd, ["/bin/true"]);
        assert_eq!(t.interval, Duration::from_secs(2));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!(t.retries, 2);
        assert_eq!(t.start_period, Duration::from_secs(5));
        assert!(healthcheck_of(&json!({"live": {}})).is_none());
    }
}
