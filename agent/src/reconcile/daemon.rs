//! `agent run`: the long-running agent.
//!
//! Start-up order: open the store (takes the state-directory lock), recover, start the watcher,
//! bind the API socket, tell systemd `READY=1`, run the start-up pass; then one pass per batch of
//! triggers until SIGTERM/SIGINT.
//!
//! Shutdown: no new pass starts; the pass in progress finishes its current change and skips the
//! rest of its plan (the next start plans it again); the API socket is removed. Containers keep running (their monitors are separate processes in their own
//! sessions, and the systemd unit uses `KillMode=process`) unless `stop_containers_on_exit`.
//!
//! Threads: a small multi-thread tokio runtime (2 workers) for the API and timers; passes run on
//! the blocking pool, one at a time; the watcher has its own thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Error;
use super::config::Config;
use super::pass;
use super::restart::Occasion;
use super::sdnotify::Notifier;
use super::supervise::{Finding, Supervisor};
use super::trigger::{self, Batch, Trigger, Triggers};
use crate::api::server::{self, ApiState};
use crate::api::types::PassReport;
use crate::manifest::source::{WatchTiming, Watcher};
use crate::store::{self, Store};

/// Runs the agent until a termination signal. Builds its own runtime.
pub fn run(config: Config, notifier: Notifier) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("agent")
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(e.to_string()))?;
    rt.block_on(run_async(config, notifier))
}

/// Everything a pass needs; lives on the blocking pool while a pass runs.
pub struct PassContext {
    pub config: Config,
    pub store: Arc<Mutex<Store>>,
    pub watcher: Arc<Watcher>,
    pub events: watch::Sender<i64>,
    pub supervisor: Supervisor,
    pub prober: super::prober::Prober,
    pub applier: Option<super::apply::Applier>,
    /// Backoff of passes whose changes failed.
    pub retry: super::restart::Backoff,
    pub passes: u64,
    /// Restart timers already scheduled, so that each is scheduled once.
    pub scheduled: HashMap<String, Instant>,
    /// `agent stop` / `agent start` requests from the API.
    pub requests: super::request::Requests,
    /// Set by SIGTERM/SIGINT: the pass in progress stops after its current change.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl PassContext {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells event followers about new events.
    fn bump_events(&self) {
        let newest = self
            .store()
            .transaction(|tx| tx.recent_events(None, 1))
            .ok()
            .and_then(|v| v.last().map(|e| e.id));
        if let Some(id) = newest {
            self.events.send_if_modified(|cur| {
                let changed = *cur != id;
                *cur = id;
                changed
            });
        }
    }

    /// One pass: load, record file status, (plan, apply).
    pub fn pass(
        &mut self,
        batch_desc: &str,
        triggers: Vec<String>,
        rescan: bool,
        startup: bool,
    ) -> PassReport {
        self.passes += 1;
        let mut report = PassReport {
            pass: self.passes,
            triggers,
            started_at: pass::now_ms(),
            ..PassReport::default()
        };
        let span = tracing::info_span!("pass", n = self.passes);
        let _g = span.enter();
        tracing::debug!(triggers = batch_desc, "pass starts");
        self.recover(&mut report, startup);
        self.serve_requests(&mut report);
        if rescan {
            self.watcher.rescan_and_wait();
        }
        if startup {
            self.network_startup(&mut report);
        }
        let snapshot = self.watcher.snapshot();
        let loaded = pass::load_snapshot(&snapshot);
        let desired = {
            let mut store = self.store();
            pass::record_files(&mut store, &snapshot, &loaded)
        };
        match desired {
            Ok(desired) => {
                pass::report_errors(&mut report, &desired);
                self.plan_and_apply(&desired, &mut report);
                if report.failed.is_empty() {
                    let mut store = self.store();
                    if let Err(e) = pass::mark_applied(&mut store, &desired) {
                        report.failed.push(format!("recording applied files: {e}"));
                    }
                    if let Err(e) = pass::forget_removed(&mut store, &desired.removed_files) {
                        report.failed.push(format!("forgetting removed files: {e}"));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record manifest status");
                report
                    .failed
                    .push(format!("recording manifest status: {e}"));
            }
        }
        if rescan || startup {
            self.network_repair(&mut report);
        }
        self.supervise(&mut report, startup);
        self.bump_events();
        report.finished_at = pass::now_ms();
        tracing::debug!(
            applied = report.applied.len(),
            failed = report.failed.len(),
            "pass done"
        );
        report
    }
}

impl PassContext {
    /// Settles the intents a failed step or a crash left (and, at start-up, orphans): see
    /// [`super::recover`].
    fn recover(&mut self, report: &mut PassReport, startup: bool) {
        let Some(applier) = self.applier.as_mut() else {
            return;
        };
        // Not locked here: the network driver takes the store's lock itself.
        let store = &self.store;
        let mut r = super::recover::Recovered::default();
        if startup {
            r = super::recover::remount(applier, store);
        }
        let i = super::recover::intents(applier, store);
        r.done.extend(i.done);
        r.failed.extend(i.failed);
        if startup {
            let o = super::recover::sweep_orphans(applier, store, self.config.remove_orphans);
            r.done.extend(o.done);
            r.failed.extend(o.failed);
        }
        report.applied.extend(r.done);
        report.failed.extend(r.failed);
    }

    /// Serves the queued `agent stop` / `agent start` requests, before the plan (which then sees
    /// their result).
    fn serve_requests(&mut self, report: &mut PassReport) {
        for p in self.requests.take() {
            let result = {
                let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
                super::request::serve(&mut store, self.supervisor.exec(), &p.action)
            };
            if result.as_ref().is_ok_and(|r| r.changed) {
                // A pending restart is cancelled; a start begins a fresh backoff.
                self.supervisor.forget(p.action.name());
            }
            match &result {
                Ok(r) => report.applied.push(format!(
                    "{} {}: {}",
                    match p.action {
                        super::request::Action::Stop { .. } => "agent stop",
                        super::request::Action::Start { .. } => "agent start",
                    },
                    r.name,
                    r.state
                )),
                Err(e) => tracing::warn!(error = %e, "request failed"),
            }
            let _ = p.reply.send(result);
        }
    }

    /// Plans against the store and applies every step; a failed step is reported and does not
    /// stop the others (steps that depend on it fail on their own, with their own error).
    fn plan_and_apply(&mut self, desired: &pass::Desired, report: &mut PassReport) {
        let store = self.store.clone();
        // Locked for planning only: applying locks it per transaction (the network driver's
        // records live in the same store).
        let actual = match crate::plan::store::actual_from_store(&mut super::network::lock(&store))
        {
            Ok(a) => a,
            Err(e) => {
                report.failed.push(format!("reading the actual state: {e}"));
                return;
            }
        };
        let wanted = crate::plan::Desired::build(desired.inputs(), &actual.resolutions());
        let plan = crate::plan::plan(&wanted, &actual);
        if plan.steps.is_empty() {
            return;
        }
        let Some(applier) = self.applier.as_mut() else {
            report
                .failed
                .push("the graph driver could not be opened; see the agent's log".into());
            return;
        };
        for (done, step) in plan.steps.iter().enumerate() {
            if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                let left = plan.steps.len() - done;
                tracing::info!(
                    left,
                    "shutting down after the current change; {left} change(s) left for the next start"
                );
                report.failed.push(format!(
                    "shutting down: {left} change(s) left for the next start"
                ));
                break;
            }
            match applier.apply(&store, step) {
                Ok(line) => {
                    tracing::info!(change = %line, "applied");
                    if step.change.kind() == crate::manifest::Kind::Container {
                        self.supervisor.forget(step.change.name());
                    }
                    report.applied.push(line);
                }
                Err(e) => {
                    let line = format!("{}: {e}", step.summary());
                    tracing::warn!(change = %line, "change failed; it is retried with backoff");
                    let _ = super::network::lock(&store).transaction(|tx| {
                        pass::event(
                            tx,
                            "change.failed",
                            &format!(
                                "{}/{}",
                                format!("{:?}", step.change.kind()).to_lowercase(),
                                step.change.name()
                            ),
                            serde_json::json!({"reason": step.summary(), "error": e.to_string()}),
                        )
                    });
                    report.failed.push(line);
                }
            }
        }
    }

    /// Start-up: the network driver removes what no recorded container accounts for.
    fn network_startup(&mut self, report: &mut PassReport) {
        let Some(Ok(net)) = self.applier.as_ref().map(|a| a.net.clone()) else {
            return;
        };
        let r = net.startup(&self.store);
        for line in &r.removed {
            tracing::info!(removed = %line, "network start-up cleanup");
        }
        report.applied.extend(
            r.removed
                .into_iter()
                .map(|l| format!("network cleanup: removed {l}")),
        );
        report.failed.extend(
            r.failures
                .into_iter()
                .map(|l| format!("network cleanup: {l}")),
        );
    }

    /// Drift: the network of every running bridge-mode container checked and repaired.
    fn network_repair(&mut self, report: &mut PassReport) {
        let Some(applier) = self.applier.as_ref() else {
            return;
        };
        let Ok(net) = &applier.net else {
            return;
        };
        let (done, failed) = net.repair(&self.store, &applier.state_dir, &applier.exec);
        for line in &done {
            tracing::warn!(repair = %line, "network drift repaired");
        }
        if !done.is_empty() {
            let _ = super::network::lock(&self.store).transaction(|tx| {
                for line in &done {
                    pass::event(
                        tx,
                        "network.repair",
                        "network/drift",
                        serde_json::json!({"reason": line}),
                    )?;
                }
                Ok::<_, crate::store::Error>(())
            });
        }
        report.applied.extend(done);
        report.failed.extend(failed);
    }

    /// Attaches bridge-mode containers whose restart is due, if they are not attached.
    fn network_before_restarts(&mut self, report: &mut PassReport) {
        let Some(applier) = self.applier.as_ref() else {
            return;
        };
        let Ok(net) = &applier.net else {
            return;
        };
        let now = Instant::now();
        let due: Vec<String> = self
            .supervisor
            .due()
            .filter(|(_, t)| *t <= now)
            .map(|(n, _)| n.to_string())
            .collect();
        for name in due {
            let rec = super::network::lock(&self.store).transaction(|tx| tx.container(&name));
            let Ok(Some(rec)) = rec else {
                continue;
            };
            if rec.state != crate::store::ContainerState::Restarting {
                continue;
            }
            let Ok(config) = serde_json::from_value::<crate::plan::EffectiveContainer>(rec.config)
            else {
                continue;
            };
            match net.ensure_attached(&self.store, &applier.state_dir, &rec.id, &config) {
                Ok(Some(what)) => report.applied.push(format!("network of {name}: {what}")),
                Ok(None) => {}
                Err(e) => report.failed.push(format!("network of {name}: {e}")),
            }
        }
    }

    /// Exits, restart policies and due restarts (see [`super::supervise`]).
    fn supervise(&mut self, report: &mut PassReport, startup: bool) {
        let occasion = if startup {
            Occasion::AgentStart
        } else {
            Occasion::Exited
        };
        let store = self.store.clone();
        let mut findings = match self
            .supervisor
            .check(&mut super::network::lock(&store), occasion)
        {
            Ok(f) => f,
            Err(e) => {
                report.failed.push(format!("checking containers: {e}"));
                Vec::new()
            }
        };
        // Containers about to be restarted need their network (detached by a stop, or gone
        // with a reboot); the store is not locked meanwhile.
        self.network_before_restarts(report);
        let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
        match self.supervisor.restart_due(&mut store) {
            Ok(f) => findings.extend(f),
            Err(e) => report.failed.push(format!("restarting containers: {e}")),
        }
        match self.supervisor.stop_unhealthy(&mut store) {
            Ok(stopped) => report.applied.extend(
                stopped
                    .into_iter()
                    .map(|n| format!("stopped unhealthy {n}")),
            ),
            Err(e) => report
                .failed
                .push(format!("stopping unhealthy containers: {e}")),
        }
        if let Err(e) = self.prober.sync(&mut store) {
            report.failed.push(format!("health checks: {e}"));
        }
        for f in findings {
            match f {
                Finding::Exited {
                    name,
                    exit_code,
                    reason,
                    ..
                } => report.applied.push(format!(
                    "recorded exit of {name} (code {exit_code}): {reason}"
                )),
                Finding::Restarted { name } => report.applied.push(format!("restarted {name}")),
                Finding::RestartFailed { name, error } => {
                    report.failed.push(format!("restart {name}: {error}"))
                }
            }
        }
    }

    /// Restart timers not scheduled yet.
    fn unscheduled(&mut self) -> Vec<(String, Instant)> {
        let due: Vec<(String, Instant)> = self
            .supervisor
            .due()
            .map(|(n, t)| (n.to_string(), t))
            .collect();
        self.scheduled
            .retain(|n, _| due.iter().any(|(d, _)| d == n));
        let mut out = Vec::new();
        for (n, t) in due {
            if self.scheduled.get(&n) != Some(&t) {
                self.scheduled.insert(n.clone(), t);
                out.push((n, t));
            }
        }
        out
    }
}

/// Watches the exec driver's container states every second and fires `ContainerExit` for each
/// container that stopped running. Cheap: one small state file per container. A container that
/// was started again and exited between two ticks (a crash loop's quick exits) is caught by its
/// changed start time: it was never seen running, but it did stop again.
fn spawn_exit_watcher(exec: crate::driver::exec::AnyExecDriver, triggers: Triggers<PassReport>) {
    use crate::driver::exec::ExecDriver;
    let exec = Arc::new(exec);
    tokio::spawn(async move {
        // id -> (name, running, started_at) at the last tick.
        let mut seen: HashMap<String, (String, bool, Option<String>)> = HashMap::new();
        let mut first = true;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let e = exec.clone();
            let Ok(Ok(list)) = tokio::task::spawn_blocking(move || e.list()).await else {
                continue;
            };
            let now: HashMap<String, (String, bool, Option<String>)> = list
                .into_iter()
                .map(|c| {
                    let running = c.status.is_running();
                    (c.id, (c.name, running, c.started_at))
                })
                .collect();
            for (id, (name, was_running, started)) in &seen {
                let stopped = match now.get(id) {
                    None => *was_running,
                    Some((_, true, _)) => false,
                    Some((_, false, started_now)) => *was_running || started_now != started,
                };
                if stopped {
                    triggers.fire(Trigger::ContainerExit(name.clone()));
                }
            }
            // New since the last tick and already stopped: started and exited in between.
            if !first {
                for (id, (name, running, started)) in &now {
                    if !seen.contains_key(id) && !running && started.is_some() {
                        triggers.fire(Trigger::ContainerExit(name.clone()));
                    }
                }
            }
            first = false;
            seen = now;
        }
    });
}

async fn run_async(config: Config, notifier: Notifier) -> Result<(), Error> {
    let options = store::Options {
        event_cap: u32::try_from(config.event_cap).unwrap_or(u32::MAX),
        ..store::Options::default()
    };
    // A CLI command reading the store while no agent runs holds the lock for milliseconds: wait
    // for it a little. Another agent holds it for good: give up after 3 s with its pid.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let store = loop {
        match Store::open_with(&config.state_dir, options) {
            Err(store::Error::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other?,
        }
    };
    let mut store = store;
    super::recover::refuse_lost_store(&config.state_dir, &mut store, config.remove_orphans)
        .map_err(Error::Refused)?;
    let store = Arc::new(Mutex::new(store));
    let (triggers, mut queue) = trigger::channel::<PassReport>();

    let t = triggers.clone();
    let watcher = Arc::new(Watcher::spawn(
        &config.manifests_dir,
        WatchTiming::default(),
        move |_| t.fire(Trigger::Files),
    ));

    let newest = store
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .transaction(|tx| tx.recent_events(None, 1))?
        .last()
        .map(|e| e.id)
        .unwrap_or(0);
    let (events_tx, events_rx) = watch::channel(newest);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let listener = server::bind(&config.socket).await?;
    let w = watcher.clone();
    let requests = super::request::Requests::default();
    let api = ApiState {
        store: store.clone(),
        triggers: triggers.clone(),
        requests: requests.clone(),
        events: events_rx,
        shutdown: shutdown_rx.clone(),
        dir_error: Arc::new(move || w.snapshot().dir_error.clone()),
    };
    let mut sd = shutdown_rx.clone();
    let api_task = tokio::spawn(server::serve(listener, api, async move {
        let _ = sd.wait_for(|v| *v).await;
    }));

    // Periodic resync: a pass that rescans the directory and repairs drift.
    let t = triggers.clone();
    let interval = config.resync_interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            t.fire(Trigger::Resync);
        }
    });

    let exec_config = crate::driver::exec::ExecConfig::new(&config.state_dir);
    let exec = crate::driver::exec::select(exec_config.clone())
        .map_err(|e| Error::Runtime(format!("exec driver: {e}")))?;
    spawn_exit_watcher(
        crate::driver::exec::select(exec_config)
            .map_err(|e| Error::Runtime(format!("exec driver: {e}")))?,
        triggers.clone(),
    );
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    spawn_signal_handler(triggers.clone(), stopping.clone())?;

    tracing::info!(
        manifests = %config.manifests_dir.display(),
        state = %config.state_dir.display(),
        socket = %config.socket.display(),
        "agent started"
    );
    notifier.ready();
    // Watchdog keep-alives at half the interval systemd asked for.
    if let Some(period) = notifier.watchdog() {
        let n = notifier.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + period / 2, period / 2);
            loop {
                tick.tick().await;
                n.keep_alive();
            }
        });
    }

    triggers.fire(Trigger::Startup);

    let socket = config.socket.clone();
    let applier = match crate::driver::graph::Graph::open(
        &config.state_dir,
        config.graph.driver.to_driver_kind(),
    ) {
        Ok(graph) => Some(super::apply::Applier {
            state_dir: config.state_dir.clone(),
            graph,
            exec: crate::driver::exec::select(crate::driver::exec::ExecConfig::new(
                &config.state_dir,
            ))
            .map_err(|e| Error::Runtime(format!("exec driver: {e}")))?,
            insecure_registries: config.registries.insecure.clone(),
            net: super::network::Net::open(&config, store.clone())
                .map(Arc::new)
                .inspect_err(|e| {
                    tracing::error!(error = %e, "network driver unavailable; bridge-mode containers cannot be created");
                }),
        }),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the graph driver; no changes can be applied");
            None
        }
    };
    let supervisor = Supervisor::new(exec, config.restart.clone());
    let prober = super::prober::Prober::default();
    prober.spawn(
        Arc::new(
            crate::driver::exec::select(crate::driver::exec::ExecConfig::new(&config.state_dir))
                .map_err(|e| Error::Runtime(format!("exec driver: {e}")))?,
        ),
        store.clone(),
        triggers.clone(),
    );
    let mut ctx = PassContext {
        config,
        store: store.clone(),
        watcher,
        events: events_tx,
        supervisor,
        prober,
        applier,
        retry: super::restart::Backoff::default(),
        passes: 0,
        scheduled: HashMap::new(),
        requests,
        stopping,
    };
    while let Some(batch) = queue.next_batch().await {
        let (next, failed) = run_batch(ctx, batch).await?;
        ctx = next;
        if failed {
            let delay = ctx.retry.next_delay(&ctx.config.restart, Duration::ZERO);
            triggers.fire_at(Trigger::Retry, tokio::time::Instant::now() + delay);
        } else {
            ctx.retry.reset();
        }
        for (name, at) in ctx.unscheduled() {
            triggers.fire_at(Trigger::RestartDue(name), at.into());
        }
    }
    ctx.requests.close();
    if ctx.config.stop_containers_on_exit {
        let ctx2 = tokio::task::spawn_blocking(move || {
            ctx.stop_all();
            ctx
        })
        .await
        .map_err(|e| Error::Runtime(format!("stopping containers: {e}")))?;
        drop(ctx2);
    }

    tracing::info!("shutting down");
    notifier.stopping();
    let _ = shutdown_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(5), api_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "API server"),
        Err(_) => tracing::warn!("API server did not stop within 5s"),
        _ => {}
    }
    let _ = std::fs::remove_file(&socket);
    tracing::info!("agent stopped; containers keep running");
    Ok(())
}

async fn run_batch(
    mut ctx: PassContext,
    batch: Batch<PassReport>,
) -> Result<(PassContext, bool), Error> {
    let desc = batch.describe();
    let triggers: Vec<String> = batch.triggers.iter().map(ToString::to_string).collect();
    // The timer and `agent apply` look at the directory afresh (drift, missed events).
    let rescan = batch
        .triggers
        .iter()
        .any(|t| matches!(t, Trigger::Resync | Trigger::Api | Trigger::Retry));
    let startup = batch.triggers.contains(&Trigger::Startup);
    let (ctx, report) = tokio::task::spawn_blocking(move || {
        let report = ctx.pass(&desc, triggers, rescan, startup);
        (ctx, report)
    })
    .await
    .map_err(|e| Error::Runtime(format!("reconcile pass panicked: {e}")))?;
    let failed = !report.failed.is_empty();
    batch.complete(report);
    Ok((ctx, failed))
}

fn spawn_signal_handler(
    triggers: Triggers<PassReport>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| Error::Runtime(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::Runtime(e.to_string()))?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: finishing the current change, then exiting"),
            _ = int.recv() => tracing::info!("SIGINT: finishing the current change, then exiting"),
        }
        stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        triggers.close();
    });
    Ok(())
}

impl PassContext {
    /// `stop_containers_on_exit`: stops every running container (stop signal, grace, SIGKILL)
    /// and records it exited. The restart policy decides at the next start, as after a reboot.
    fn stop_all(&mut self) {
        let stopped = self.stop_all_containers();
        // Their namespaces, veths and port rules go too (addresses stay reserved).
        if let Some(Ok(net)) = self.applier.as_ref().map(|a| &a.net) {
            for id in stopped {
                if let Err(e) = net.detach(&id) {
                    tracing::warn!(container = %id, error = %e, "cannot detach network");
                }
            }
        }
    }

    /// Stops the running containers; returns the runtime ids stopped.
    fn stop_all_containers(&mut self) -> Vec<String> {
        use crate::driver::exec::ExecDriver;
        let mut stopped = Vec::new();
        let store = self.store.clone();
        let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(containers) = store.transaction(|tx| tx.containers()) else {
            return stopped;
        };
        for mut c in containers {
            if !matches!(
                c.state,
                crate::store::ContainerState::Running | crate::store::ContainerState::Restarting
            ) {
                continue;
            }
            let grace = super::supervise::grace_of(&c.config);
            match self.supervisor.exec().stop(&c.id, grace) {
                Ok(info) => {
                    if let crate::driver::exec::ContainerStatus::Exited {
                        exit_code, signal, ..
                    } = info.status
                    {
                        c.exit_code = Some(exit_code);
                        c.signal = signal;
                    }
                    c.state = crate::store::ContainerState::Exited;
                    c.finished_at = Some(pass::now_ms());
                    c.health = None;
                    let _ = store.transaction(|tx| {
                        tx.upsert_container(&c)?;
                        pass::event(
                            tx,
                            "container.stop",
                            &format!("container/{}", c.name),
                            serde_json::json!({"reason": "agent exit (stop_containers_on_exit)"}),
                        )
                    });
                    tracing::info!(container = %c.name, "stopped (stop_containers_on_exit)");
                    stopped.push(c.id.clone());
                }
                Err(e) => tracing::warn!(container = %c.name, error = %e, "cannot stop"),
            }
        }
        stopped
    }
}
