//! The loop: one task that owns the agent's decisions, turns every trigger into works, and hands
//! them to the work queue ([`super::queue`]). It never waits for an effect.
//!
//! What wakes it, and what it does:
//! - files changed, `agent apply`, start-up, resync, a retry, or works that waited for a busy
//!   object ([`Trigger::Deferred`]): a *full pass*: load the manifests (only changed files are
//!   parsed), record each file's status, plan against the store, and submit the planned works
//!   (see [`super::work`] for their order and for deferral while an object is busy);
//! - a container's exit (its state file written, [`super::exits`]) or health change: a check of
//!   that container alone: its exit recorded, the restart policy's decision turned into a
//!   deadline, an unhealthy container's stop submitted. No parse, no plan;
//! - `agent stop` / `agent start` / `agent volume rm`: a work each, answered when it ends;
//! - a work's end ([`Done`]): the report of the pass that submitted it, the answer to a user,
//!   the next backoff of a failed restart;
//! - its one timer: restarts whose delay is over (a [`Change::RestartContainer`] work each),
//!   the end of a failed object's backoff (see [`super::failing`]: a failed change waits out its
//!   own object's backoff; other passes report it held and never try it early; other objects
//!   never wait for it), the retry of a pass that failed outside any change, the periodic
//!   resync. Each pass returns when it next wants to
//!   run by leaving a deadline in [`Timers`]; there is no other clock and no poll.
//!
//! `agent apply` waits for the report of a pass that started after its request; that report is
//! complete when every work the pass submitted has ended, and when the pass had to defer works
//! (their object was busy) the waiters move on to the pass that plans them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use super::apply::Applier;
use super::failing::Failing;
use super::pass;
use super::prober::Prober;
use super::queue::{Done, Queue};
use super::report::{ActionReport, Board, Failure, InFlight, PassReport};
use super::request::{Action, RequestError, Requests};
use super::restart::{Backoff, Occasion};
use super::supervise::{Finding, Supervisor};
use super::timers::{Due, Timers};
use super::translate::network::{SharedStore, lock};
use super::trigger::{Batch, Trigger, TriggerQueue, Triggers};
use super::work::{self, Cause, Relations, Work};
use crate::daemon::config::Config;
use crate::driver::exec::spec::build::AgentLimits;
use crate::manifest::Kind;
use crate::manifest::source::Watcher;
use crate::plan::{Change, Step};

mod cancel;
mod housekeeping;

/// A pass whose works have not all ended.
struct OpenReport {
    report: PassReport,
    outstanding: HashSet<u64>,
    waiters: Vec<oneshot::Sender<PassReport>>,
    /// The files it planned, recorded applied once all its works succeeded.
    desired: Option<pass::Desired>,
    deferred: usize,
    /// Objects with a failed or skipped work in this pass: a later skipped work of the same
    /// object does not replace the first one's failure on the board.
    failed_objects: HashSet<String>,
    /// Failures of its works and works held by their object's backoff (the others in
    /// `report.failed` are the pass's own: they retry the whole pass).
    object_failed: usize,
    /// Skipped works' objects and the object whose failure they were skipped for: they show the
    /// same next try.
    skipped_by: Vec<(String, String)>,
}

/// Parts of the engine made by the composition root.
pub struct Parts {
    pub config: Config,
    pub store: SharedStore,
    pub watcher: Arc<Watcher>,
    pub events: watch::Sender<i64>,
    pub supervisor: Supervisor,
    pub prober: Prober,
    pub applier: Option<Arc<Applier>>,
    pub requests: Requests,
    pub triggers: Triggers<PassReport>,
    pub stopping: Arc<AtomicBool>,
    /// The changes in flight and host problems, for `agent status`.
    pub board: Board,
}

/// Everything the loop owns: what the composition root gave it, and its own state.
pub struct Engine {
    pub p: Parts,
    queue: Queue,
    done_rx: mpsc::UnboundedReceiver<Done>,
    timers: Timers,
    retry: Backoff,
    /// Objects whose last change failed, with their backoff.
    failing: Failing,
    /// What the manifests asked of each object at the last plan ([`super::failing`]).
    fingerprints: HashMap<String, u64>,
    passes: u64,
    open: Vec<OpenReport>,
    /// `agent apply` waiters whose pass deferred works: the next full pass answers them.
    carried: Vec<oneshot::Sender<PassReport>>,
    /// Works were deferred: a full pass is wanted once a busy object is free.
    deferred: bool,
    /// The busy objects that works were deferred for: the end of the last work on one of them
    /// runs that pass (the end of other works does not).
    deferred_on: HashSet<String>,
    /// The works submitted and not ended, by id: a pass that plans the same change again joins
    /// the one pending instead of deferring it.
    pending: HashMap<u64, (String, Change)>,
    /// Pending pulls this loop cancelled ([`cancel`]).
    cancelled: HashSet<u64>,
    /// Files whose last good version was not applied completely yet.
    unapplied: pass::Unapplied,
    /// Containers found running without their monitor (reported once each, until repaired).
    unmonitored: Vec<String>,
    /// The host's forwarding problems last found.
    forward_problems: Vec<String>,
    /// Containers whose exit or health change arrived while a work on them was in flight:
    /// checked when it ends (the work's own stop is not an exit for the restart policy).
    recheck: HashSet<String>,
    /// Work id -> the user's request it serves.
    replies: HashMap<u64, (Action, oneshot::Sender<Result<ActionReport, RequestError>>)>,
    /// Object key -> the manifest file that declares it (from the last full pass), for the
    /// failures on the board.
    files_of: HashMap<String, String>,
    /// Start conditions (`dependsOn`, [`crate::plan::depends`]): the containers the last plan
    /// held back, with why, and the dependencies whose health, exit or start plans again.
    plan_waiting: Vec<crate::plan::depends::Waiting>,
    watched: HashSet<String>,
    /// Restarts of the restart policy (after a reboot: all at once) held back by their
    /// dependencies' conditions: name -> (why, the dependencies it waits for).
    waiting_restarts: HashMap<String, (String, Vec<String>)>,
}

impl Engine {
    pub fn new(p: Parts) -> Engine {
        let apply = apply_fn(p.applier.clone(), p.store.clone());
        let (queue, done_rx) = Queue::new(apply, p.config.workers);
        let mut timers = Timers::default();
        timers.set(Due::Resync, Instant::now() + p.config.resync_interval);
        Engine {
            p,
            queue,
            done_rx,
            timers,
            retry: Backoff::default(),
            failing: Failing::default(),
            fingerprints: HashMap::new(),
            passes: 0,
            open: Vec::new(),
            carried: Vec::new(),
            deferred: false,
            deferred_on: HashSet::new(),
            pending: HashMap::new(),
            cancelled: HashSet::new(),
            unapplied: pass::Unapplied::default(),
            recheck: HashSet::new(),
            unmonitored: Vec::new(),
            forward_problems: Vec::new(),
            replies: HashMap::new(),
            files_of: HashMap::new(),
            plan_waiting: Vec::new(),
            watched: HashSet::new(),
            waiting_restarts: HashMap::new(),
        }
    }

    /// Runs until the trigger queue closes (SIGTERM/SIGINT); then lets the works in flight end.
    pub async fn run(&mut self, mut triggers: TriggerQueue<PassReport>) {
        loop {
            let next = self.timers.next();
            tokio::select! {
                batch = triggers.next_batch() => match batch {
                    Some(b) => {
                        guarded("a pass", || self.on_batch(b));
                        if self.queue.in_flight() == 0 {
                            self.release_memory();
                        }
                    }
                    None => break,
                },
                Some(done) = self.done_rx.recv() => {
                    guarded("the end of a change", || self.on_done(done));
                    if self.queue.in_flight() == 0 {
                        self.release_memory();
                    }
                }
                _ = sleep_until(next) => guarded("a timer", || self.on_timer()),
            }
        }
        self.drain().await;
    }

    /// Idle: the store's page cache and what the works freed go back to the kernel
    /// (docs/daemon.md, Memory).
    fn release_memory(&self) {
        if let Err(e) = lock(&self.p.store).release_memory() {
            tracing::debug!(error = %e, "could not release the store's page cache");
        }
        crate::daemon::alloc::trim();
    }

    /// Shutdown: nothing new starts; the works running end (a stop in its grace period is
    /// finished, not cut short); the requests still queued are answered "shutting down". Pulls
    /// are cancelled and not waited for beyond a moment: what they downloaded is kept, and the
    /// next start resumes them.
    async fn drain(&mut self) {
        self.queue.stop();
        self.p.requests.close();
        self.cancel_all_pulls();
        let pulls_end = Instant::now() + Duration::from_secs(2);
        loop {
            let others = self.queue.in_flight_where(|k| !k.starts_with("image/"));
            if others == 0 && (self.queue.in_flight() == 0 || Instant::now() >= pulls_end) {
                break;
            }
            let next = if others == 0 {
                match tokio::time::timeout_at(pulls_end.into(), self.done_rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            } else {
                self.done_rx.recv().await
            };
            match next {
                Some(done) => tokio::task::block_in_place(|| self.on_done(done)),
                None => break,
            }
        }
        for o in self.open.drain(..) {
            drop(o.waiters);
        }
    }

    fn bump_events(&self) {
        let newest = lock(&self.p.store)
            .transaction(|tx| tx.recent_events(None, 1))
            .ok()
            .and_then(|v| v.last().map(|e| e.id));
        if let Some(id) = newest {
            self.p.events.send_if_modified(|cur| {
                let changed = *cur != id;
                *cur = id;
                changed
            });
        }
    }

    fn on_batch(&mut self, mut batch: Batch<PassReport>) {
        let full = batch.triggers.iter().any(|t| {
            matches!(
                t,
                Trigger::Startup
                    | Trigger::Files
                    | Trigger::Api
                    | Trigger::Resync
                    | Trigger::Retry
                    | Trigger::Deferred
                    | Trigger::Dependency(_)
            )
        });
        let startup = batch.triggers.contains(&Trigger::Startup);
        let resync = batch.triggers.contains(&Trigger::Resync);
        self.serve_requests();
        let waiters = batch.take_waiters();
        if full {
            if batch.triggers.contains(&Trigger::Api) {
                // `agent apply`: the operator asks to try again now.
                self.failing.release_all(Instant::now());
            }
            let rescan = batch
                .triggers
                .iter()
                .any(|t| matches!(t, Trigger::Resync | Trigger::Api | Trigger::Retry));
            let desc = batch.describe();
            let triggers: Vec<String> = batch.triggers.iter().map(ToString::to_string).collect();
            self.full_pass(&desc, triggers, waiters, rescan, startup, resync);
        } else {
            // Container triggers answer no one; waiters (none expected) get an empty report.
            for w in waiters {
                let _ = w.send(PassReport::default());
            }
            for t in &batch.triggers {
                match t {
                    Trigger::ContainerExit(name)
                    | Trigger::RestartDue(name)
                    | Trigger::Health(name) => {
                        if self.queue.busy(&work::key(Kind::Container, name)) {
                            self.recheck.insert(name.clone());
                            continue;
                        }
                        self.check(Occasion::Exited, Some(name));
                        if !matches!(t, Trigger::RestartDue(_)) {
                            // After its exit was recorded.
                            self.dependency_changed(name);
                        }
                        if matches!(t, Trigger::Health(_)) {
                            self.health(name);
                        }
                        if matches!(t, Trigger::ContainerExit(_)) {
                            self.repair_monitors(Some(name));
                        }
                    }
                    _ => {}
                }
            }
        }
        self.sync_prober();
        self.bump_events();
    }

    /// Turns the queued `agent stop` / `agent start` requests into works.
    fn serve_requests(&mut self) {
        for p in self.p.requests.take() {
            let name = p.action.name().to_string();
            if let Err(e) = p.action.check(&self.p.store, &self.p.config.state_dir) {
                let _ = p.reply.send(Err(e));
                continue;
            }
            if p.action.on_container() {
                // A stop cancels a pending restart; a start begins a fresh backoff.
                self.timers.cancel(&Due::Restart(name.clone()));
                self.p.supervisor.forget(&name);
                if self.waiting_restarts.remove(&name).is_some() {
                    self.post_waiting();
                }
            }
            let id = self.submit_one(p.action.work());
            self.replies.insert(id, (p.action, p.reply));
        }
    }

    fn full_pass(
        &mut self,
        desc: &str,
        triggers: Vec<String>,
        mut waiters: Vec<oneshot::Sender<PassReport>>,
        rescan: bool,
        startup: bool,
        resync: bool,
    ) {
        self.passes += 1;
        waiters.append(&mut self.carried);
        self.deferred = false;
        self.deferred_on.clear();
        let mut report = PassReport {
            pass: self.passes,
            triggers,
            started_at: pass::now_ms(),
            ..PassReport::default()
        };
        let span = tracing::info_span!("pass", pass = self.passes);
        let _g = span.enter();
        tracing::debug!(triggers = desc, "pass starts");
        if startup {
            self.recover(&mut report);
            self.network_startup(&mut report);
        }
        if rescan {
            self.p.watcher.rescan_and_wait();
        }
        let snapshot = self.p.watcher.snapshot();
        let loaded = pass::load_snapshot(&snapshot, &self.p.config.state_dir);
        let desired = pass::record_files(
            &mut lock(&self.p.store),
            &snapshot,
            &loaded,
            &mut self.unapplied,
        );
        let mut open = OpenReport {
            report,
            outstanding: HashSet::new(),
            waiters,
            desired: None,
            deferred: 0,
            failed_objects: HashSet::new(),
            object_failed: 0,
            skipped_by: Vec::new(),
        };
        match desired {
            Ok(desired) => {
                pass::report_errors(&mut open.report, &desired);
                self.plan_and_submit(&desired, &mut open);
                open.desired = Some(desired);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record manifest status");
                open.report
                    .failed
                    .push(format!("recording manifest status: {e}"));
            }
        }
        if rescan || startup {
            self.network_repair(&mut open);
        }
        if startup {
            self.check(Occasion::AgentStart, None);
        } else if resync {
            self.check(Occasion::Exited, None);
            self.timers
                .set(Due::Resync, Instant::now() + self.p.config.resync_interval);
        }
        if open.outstanding.is_empty() {
            self.close(open);
        } else {
            self.open.push(open);
        }
        // After the report went out: they feed `agent status`, not the report, and the host
        // check runs iptables twice (20-35 ms on a busy host), which a no-op `agent apply`
        // would otherwise wait for.
        if rescan || startup {
            self.host_warnings();
            self.repair_monitors(None);
        }
    }

    /// Plans against the store and submits the works that can start now.
    fn plan_and_submit(&mut self, desired: &pass::Desired, open: &mut OpenReport) {
        let mut actual = match crate::plan::store::actual_from_store(&mut lock(&self.p.store)) {
            Ok(a) => a,
            Err(e) => {
                open.report
                    .failed
                    .push(format!("reading the actual state: {e}"));
                return;
            }
        };
        let mut wanted = crate::plan::Desired::build(desired.inputs(), &actual.resolutions());
        // Sources rebuilt in place or tags moved by `agent image pull` (apply::sources).
        if let Some(applier) = &self.p.applier {
            actual.changed_images =
                super::apply::sources::changed(&applier.graph, &wanted, &actual);
            if !actual.changed_images.is_empty() {
                wanted = crate::plan::Desired::build(desired.inputs(), &actual.resolutions());
            }
        }
        self.files_of = files_of(&wanted);
        self.fingerprints = super::failing::fingerprints(&wanted);
        self.failing.forget_changed(&self.fingerprints);
        let plan = crate::plan::plan(&wanted, &actual);
        self.cancel_unplanned_pulls(&plan.steps);
        self.plan_waiting = plan.waiting.clone();
        self.watched = plan
            .waiting
            .iter()
            .flat_map(|w| w.on.iter().cloned())
            .chain(wanted.containers.values().flat_map(|c| {
                c.value
                    .config
                    .live
                    .depends_on
                    .iter()
                    .filter(|(_, d)| d.restart)
                    .map(|(n, _)| n.clone())
            }))
            .collect();
        for w in &plan.waiting {
            tracing::info!(container = %w.name, action = w.action, reason = %w.reason, "waits for its dependencies");
        }
        self.post_waiting();
        // A failure the plan no longer repeats is over (fixed by hand, or no longer wanted).
        let planned: HashSet<String> = plan
            .steps
            .iter()
            .map(|s| work::key(s.change.kind(), s.change.name()))
            .collect();
        self.p
            .board
            .retain_failures(|f| f.cause != Cause::Plan.to_string() || planned.contains(&f.object));
        if plan.steps.is_empty() {
            return;
        }
        if self.p.applier.is_none() {
            open.report
                .failed
                .push("the graph driver could not be opened; see the agent's log".into());
            return;
        }
        let mut rel = Relations::default();
        for c in wanted.containers.values() {
            rel.add_container(&c.value.config);
        }
        for c in actual.containers.values() {
            if let Some(cfg) = &c.config {
                rel.add_container(cfg);
            }
        }
        let works: Vec<Work> = plan.steps.into_iter().map(Work::planned).collect();
        let waits = work::order(&works, &rel);
        // A change already queued or running for its object (planned again by a pass that ran
        // meanwhile) is joined: this pass's report waits for that work.
        let mut joined: Vec<Option<u64>> = vec![None; works.len()];
        for (i, w) in works.iter().enumerate() {
            let k = w.key();
            joined[i] = self
                .pending
                .iter()
                .filter(|(_, (pk, pc))| *pk == k && *pc == w.step.change)
                .map(|(id, _)| *id)
                .max();
        }
        let queue = &self.queue;
        let mut deferred = vec![false; works.len()];
        for (i, w) in works.iter().enumerate() {
            if joined[i].is_some() {
                continue;
            }
            let k = w.key();
            let mut on: Vec<&String> = rel.related(&k).filter(|r| queue.busy(r)).collect();
            if queue.busy(&k) {
                on.push(&k);
            }
            let after_deferred = waits[i].iter().any(|&j| deferred[j]);
            deferred[i] = !on.is_empty() || after_deferred;
            self.deferred_on.extend(on.into_iter().cloned());
        }
        // Running containers that would be replaced but could not be (a host port in use): all
        // their works fail before anything is stopped.
        let busy: Vec<bool> = (0..works.len())
            .map(|i| deferred[i] || joined[i].is_some())
            .collect();
        self.precheck(&works, &actual, &busy);
        // Works of objects on a backoff, and works that wait for those, are held.
        let now = Instant::now();
        let mut held: Vec<Option<(String, Instant)>> = vec![None; works.len()];
        for (i, w) in works.iter().enumerate() {
            if busy[i] {
                continue;
            }
            let k = w.key();
            held[i] = match self.failing.held(&k, now) {
                Some(h) => Some((
                    format!(
                        "held: failed {} time(s), next try in {:.1}s: {}",
                        h.failures,
                        h.left.as_secs_f64(),
                        h.error
                    ),
                    now + h.left,
                )),
                None => waits[i].iter().find_map(|&j| {
                    let (_, until) = held[j].as_ref()?;
                    Some((
                        format!("held: waits for {}, which is held", works[j].key()),
                        *until,
                    ))
                }),
            };
            if let Some((_, until)) = &held[i] {
                self.timers.set(Due::Backoff(k.clone()), *until);
                self.p.board.set_retry_of(&k, board_time(*until));
            }
        }
        // Submit the rest with their order (indices renumbered to the submitted works).
        let mut index = vec![None; works.len()];
        let mut go = Vec::new();
        let mut go_waits = Vec::new();
        for (i, w) in works.into_iter().enumerate() {
            if let Some(id) = joined[i] {
                tracing::debug!(change = %w.summary(), "joined: the same change is pending");
                open.outstanding.insert(id);
                continue;
            }
            if deferred[i] {
                tracing::debug!(change = %w.summary(), "deferred: its object is busy");
                open.deferred += 1;
                continue;
            }
            if let Some((why, _)) = &held[i] {
                tracing::debug!(change = %w.summary(), "{why}");
                open.report.failed.push(format!("{}: {why}", w.summary()));
                open.object_failed += 1;
                continue;
            }
            index[i] = Some(go.len());
            go_waits.push(waits[i].iter().filter_map(|&j| index[j]).collect());
            go.push(w);
        }
        if open.deferred > 0 {
            self.deferred = true;
        }
        for id in self.submit(go, &go_waits) {
            open.outstanding.insert(id);
        }
    }

    /// Checks the preconditions of every replacement of a running container in `works` (see
    /// [`super::precheck`]); a container that fails them is recorded failed, so that all its
    /// works are held and the running one is kept.
    fn precheck(&mut self, works: &[Work], actual: &crate::plan::Actual, deferred: &[bool]) {
        let now = Instant::now();
        let mut bindings = None;
        // The agent's own rlimit bounds (read when a replacement is first checked).
        let mut limits = None;
        for (i, w) in works.iter().enumerate() {
            let config = match &w.step.change {
                Change::CreateContainer { config, .. }
                | Change::RecreateContainer { config, .. } => config,
                _ => continue,
            };
            let k = w.key();
            let Some(have) = actual.containers.get(&config.name) else {
                continue;
            };
            if deferred[i]
                || !matches!(
                    have.state,
                    crate::store::ContainerState::Running
                        | crate::store::ContainerState::Restarting
                )
                || self.failing.held(&k, now).is_some()
            {
                continue;
            }
            let bindings = bindings.get_or_insert_with(|| {
                lock(&self.p.store)
                    .transaction(|tx| tx.port_bindings())
                    .unwrap_or_default()
            });
            let limits = limits.get_or_insert_with(AgentLimits::detect);
            if let Err(e) = super::precheck::replacement(
                config,
                have.config.as_ref(),
                bindings,
                &crate::driver::network::ports::probe_bind,
                limits,
                &|p| crate::driver::exec::devices::node(p, "/dev/probe").map(drop),
            ) {
                self.refused(w, &e);
            }
        }
    }

    /// A work that failed before it was tried (its preconditions): reported like a failed
    /// change (event, board, the object's backoff).
    fn refused(&mut self, w: &Work, error: &str) {
        let k = w.key();
        tracing::warn!(change = %w.summary(), error, "change refused before anything was stopped");
        let _ = lock(&self.p.store).transaction(|tx| {
            pass::event(
                tx,
                "change.failed",
                &k,
                json!({"reason": w.summary(), "cause": w.cause.to_string(), "error": error, "precondition": true}),
            )
        });
        self.p.board.fail(Failure {
            object: k.clone(),
            error: format!(
                "{} {} failed: {error}",
                w.step.change.action(),
                w.step.change.name()
            ),
            skipped: false,
            cause: w.cause.to_string(),
            file: self.files_of.get(&k).cloned(),
            since: pass::now_ms(),
            attempts: 1,
            retry_at: None,
        });
        let until = self.failing.failed(
            &k,
            self.fingerprints.get(&k).copied(),
            error,
            &self.p.config.restart,
            Instant::now(),
        );
        self.timers.set(Due::Backoff(k.clone()), until);
        self.p.board.set_retry_of(&k, board_time(until));
    }

    /// Ends a pass's report: records the files applied when everything succeeded, schedules the
    /// retry when something failed, answers (or carries) the waiters.
    fn close(&mut self, mut open: OpenReport) {
        if open.report.failed.is_empty()
            && open.report.skipped.is_empty()
            && open.deferred == 0
            && let Some(desired) = &open.desired
        {
            let mut store = lock(&self.p.store);
            if let Err(e) = pass::mark_applied(&mut store, desired, &mut self.unapplied) {
                open.report
                    .failed
                    .push(format!("recording applied files: {e}"));
            }
            if let Err(e) = pass::forget_removed(&mut store, &desired.removed_files) {
                open.report
                    .failed
                    .push(format!("forgetting removed files: {e}"));
            }
        }
        if open.report.failed.len() <= open.object_failed {
            // Failed works retry on their own object's backoff.
            self.retry.reset();
        } else {
            let delay = self
                .retry
                .next_delay(&self.p.config.restart, Duration::ZERO);
            self.timers.set(Due::Retry, Instant::now() + delay);
            self.p.board.set_retry(
                &Cause::Plan.to_string(),
                pass::now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            );
        }
        for (k, root) in &open.skipped_by {
            if let Some(until) = self.failing.until(root) {
                self.p.board.set_retry_of(k, board_time(until));
            }
        }
        open.report.finished_at = pass::now_ms();
        crate::metrics::global().pass_done(std::time::Duration::from_millis(
            u64::try_from(open.report.finished_at - open.report.started_at).unwrap_or(0),
        ));
        tracing::debug!(
            pass = open.report.pass,
            applied = open.report.applied.len(),
            failed = open.report.failed.len(),
            deferred = open.deferred,
            "pass done"
        );
        if open.deferred > 0 {
            self.carried.append(&mut open.waiters);
            // A later full pass answers them, also when the pass that planned the deferred
            // works started before this one closed (it took no waiters from here then).
            if !self.carried.is_empty() {
                self.deferred = true;
            }
            if self.queue.in_flight() == 0 {
                self.p.triggers.fire(Trigger::Deferred);
            }
        } else {
            for w in open.waiters {
                let _ = w.send(open.report.clone());
            }
        }
    }

    /// Submits works to the queue and posts them on the board.
    fn submit(&mut self, works: Vec<Work>, waits: &[Vec<usize>]) -> Vec<u64> {
        let items: Vec<(InFlight, String, Change)> = works
            .iter()
            .map(|w| (in_flight(w), w.key(), w.step.change.clone()))
            .collect();
        let ids = self.queue.submit(works, waits);
        for (id, (item, key, change)) in ids.iter().zip(items) {
            self.p.board.add(*id, item);
            self.pending.insert(*id, (key, change));
        }
        ids
    }

    fn submit_one(&mut self, work: Work) -> u64 {
        let item = in_flight(&work);
        let (key, change) = (work.key(), work.step.change.clone());
        let id = self.queue.submit_one(work);
        self.p.board.add(id, item);
        self.pending.insert(id, (key, change));
        id
    }

    fn on_done(&mut self, done: Done) {
        self.queue.finish(&done);
        self.pending.remove(&done.id);
        self.p.board.remove(done.id);
        let cancelled = self.was_cancelled(&done);
        let name = done.work.step.change.name().to_string();
        let is_container = done.work.step.change.kind() == Kind::Container;
        let change = format!("{} {name}", done.work.step.change.action());
        let failure = |error: String, skipped: bool| Failure {
            object: done.key.clone(),
            error,
            skipped,
            cause: done.work.cause.to_string(),
            file: self.files_of.get(&done.key).cloned(),
            since: pass::now_ms(),
            attempts: 1,
            retry_at: None,
        };
        let first_in_pass = match self
            .open
            .iter_mut()
            .find(|o| o.outstanding.contains(&done.id))
        {
            Some(o) if done.result.is_err() && !cancelled => {
                o.failed_objects.insert(done.key.clone())
            }
            _ => true,
        };
        if let Some(first) = &done.skipped
            && let Some(o) = self
                .open
                .iter_mut()
                .find(|o| o.outstanding.contains(&done.id))
        {
            o.skipped_by.push((done.key.clone(), first.key.clone()));
        }
        if let Some(first) = &done.skipped {
            // One error per cause: the first failure was logged and recorded on its own.
            tracing::info!(change = %done.work.summary(), because = %first, "skipped: a change it depends on failed");
            if first_in_pass {
                self.p
                    .board
                    .fail(failure(format!("{change} skipped: {first}"), true));
            }
            let _ = lock(&self.p.store).transaction(|tx| {
                pass::event(
                    tx,
                    "change.skipped",
                    &done.key,
                    json!({"reason": done.work.summary(), "because": first.to_string()}),
                )
            });
        } else if let Err(e) = &done.result
            && e != super::queue::LEFT
            && !cancelled
        {
            self.p
                .board
                .fail(failure(format!("{change} failed: {e}"), false));
        }
        let kind = format!("{:?}", done.work.step.change.kind()).to_lowercase();
        match &done.result {
            Err(_) if done.skipped.is_some() => {}
            Err(_) if cancelled => self.on_cancelled(&done),
            Ok(a) => {
                crate::metrics::global().change(done.work.step.change.action(), &kind, true);
                self.p.board.succeeded(&done.key);
                // An in-place update may change what an unhealthy container's health means
                // (`healthcheck.onUnhealthy`, its restart policy): decide again.
                if matches!(done.work.step.change, Change::UpdateContainer { .. }) {
                    self.recheck.insert(name.clone());
                }
                tracing::info!(change = %a.line, cause = %done.work.cause, container = is_container.then_some(name.as_str()), "applied");
                self.failing.succeeded(&done.key);
                self.timers.cancel(&Due::Backoff(done.key.clone()));
                if is_container
                    && matches!(done.work.cause, Cause::Plan)
                    && !matches!(done.work.step.change, Change::RestartContainer { .. })
                {
                    self.p.supervisor.forget(&name);
                }
            }
            Err(e) => {
                crate::metrics::global().change(done.work.step.change.action(), &kind, false);
                let line = format!("{}: {e}", done.work.summary());
                tracing::warn!(change = %line, container = is_container.then_some(name.as_str()), "change failed");
                let object = format!(
                    "{}/{}",
                    format!("{:?}", done.work.step.change.kind()).to_lowercase(),
                    name
                );
                let _ = lock(&self.p.store).transaction(|tx| {
                    pass::event(
                        tx,
                        "change.failed",
                        &object,
                        json!({"reason": done.work.summary(), "cause": done.work.cause.to_string(), "error": e}),
                    )
                });
                if backs_off(&done.work.cause) && !self.p.stopping.load(Ordering::SeqCst) {
                    let until = self.failing.failed(
                        &done.key,
                        self.fingerprints.get(&done.key).copied(),
                        e,
                        &self.p.config.restart,
                        Instant::now(),
                    );
                    self.timers.set(Due::Backoff(done.key.clone()), until);
                    self.p.board.set_retry_of(&done.key, board_time(until));
                }
                if matches!(done.work.step.change, Change::RestartContainer { .. })
                    && !self.p.stopping.load(Ordering::SeqCst)
                {
                    let delay = self.p.supervisor.failed_restart_delay(&name);
                    let _ = lock(&self.p.store).transaction(|tx| {
                        pass::event(
                            tx,
                            "container.restart-failed",
                            &format!("container/{name}"),
                            json!({"error": e, "retryInMs": u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)}),
                        )
                    });
                    self.timers
                        .set(Due::Restart(name.clone()), Instant::now() + delay);
                    self.p.board.set_retry_of(
                        &done.key,
                        pass::now_ms()
                            .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
                    );
                }
            }
        }
        if let Some((action, reply)) = self.replies.remove(&done.id) {
            let _ = reply.send(action.answer(&self.p.store, &done.result));
        }
        // The passes that submitted or joined it.
        let mut i = 0;
        while i < self.open.len() {
            if !self.open[i].outstanding.contains(&done.id) {
                i += 1;
                continue;
            }
            let o = &mut self.open[i];
            o.outstanding.remove(&done.id);
            match &done.result {
                Err(e) if done.skipped.is_some() || cancelled => o
                    .report
                    .skipped
                    .push(format!("{}: {e}", done.work.summary())),
                Ok(a) => o.report.applied.push(a.line.clone()),
                Err(e) => {
                    o.report
                        .failed
                        .push(format!("{}: {e}", done.work.summary()));
                    o.object_failed += 1;
                }
            }
            if o.outstanding.is_empty() {
                let o = self.open.remove(i);
                self.close(o);
            } else {
                i += 1;
            }
        }
        if self.deferred
            && !self.p.stopping.load(Ordering::SeqCst)
            && !self.queue.busy(&done.key)
            && self.deferred_on.contains(&done.key)
        {
            self.p.triggers.fire(Trigger::Deferred);
        }
        if is_container && !self.queue.busy(&done.key) && self.recheck.remove(&name) {
            self.check(Occasion::Exited, Some(&name));
            self.dependency_changed(&name);
            self.health(&name);
            self.repair_monitors(Some(&name));
        } else if matches!(done.work.step.change, Change::RepairMonitor { .. })
            && !self.queue.busy(&done.key)
        {
            // Monitored again (or not: then it is repaired again, after its backoff if failed).
            self.repair_monitors(Some(&name));
        }
        if is_container
            && done.result.is_ok()
            && matches!(
                done.work.step.change,
                Change::StartContainer { .. }
                    | Change::RestartContainer { .. }
                    | Change::RecreateContainer { .. }
                    | Change::RepairMonitor { .. }
            )
        {
            self.dependency_changed(&name);
        }
        if is_container {
            self.sync_prober();
        }
        self.bump_events();
    }

    fn on_timer(&mut self) {
        let due = self.timers.take_due(Instant::now());
        let mut restarts = Vec::new();
        for d in due {
            match d {
                Due::Restart(name) => restarts.push(name),
                Due::Retry | Due::Backoff(_) => self.p.triggers.fire(Trigger::Retry),
                Due::Resync => self.p.triggers.fire(Trigger::Resync),
            }
        }
        self.submit_restarts(restarts);
    }

    /// Submits restart works, in dependency order when there are several (after a reboot all
    /// come back at once: link targets, volumesFrom sources and `container:` network peers
    /// start before their users).
    fn submit_restarts(&mut self, mut names: Vec<String>) {
        if names.is_empty() || self.p.stopping.load(Ordering::SeqCst) {
            return;
        }
        self.hold_restarts(&mut names);
        if names.is_empty() {
            return;
        }
        let records = Supervisor::restarting(&self.p.store).unwrap_or_default();
        let mut rel = Relations::default();
        for r in &records {
            if let Ok(cfg) =
                serde_json::from_value::<crate::plan::EffectiveContainer>(r.config.clone())
            {
                rel.add_container(&cfg);
            }
        }
        let levels = super::supervise::dependency_levels(&records);
        names.sort_by_key(|n| (levels.get(n).copied().unwrap_or(0), n.clone()));
        let works: Vec<Work> = names
            .into_iter()
            .map(|name| {
                Work::container(
                    Change::RestartContainer { name },
                    Cause::RestartPolicy,
                    "restart policy: its restart delay is over",
                )
            })
            .collect();
        let waits = work::order(&works, &rel);
        self.submit(works, &waits);
    }

    /// Checks exits (one container or all) and turns the restart policy's decisions into
    /// deadlines.
    fn check(&mut self, occasion: Occasion, only: Option<&str>) {
        let findings = match self.p.supervisor.check(&self.p.store, occasion, only) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "checking containers");
                return;
            }
        };
        let mut now = Vec::new();
        for Finding::Exited {
            name, restart_in, ..
        } in findings
        {
            match restart_in {
                Some(d) if d.is_zero() => now.push(name),
                Some(d) => self.timers.set(Due::Restart(name), Instant::now() + d),
                None => {}
            }
        }
        self.submit_restarts(now);
    }

    /// A health change: an unhealthy container whose policy restarts it is stopped.
    fn health(&mut self, name: &str) {
        let key = work::key(Kind::Container, name);
        if !self.queue.busy(&key) && self.p.supervisor.needs_unhealthy_stop(&self.p.store, name) {
            self.submit_one(Work {
                step: Step {
                    change: Change::StopContainer {
                        name: name.to_string(),
                    },
                    reasons: vec!["health check failing".into()],
                },
                cause: Cause::Unhealthy,
            });
        }
    }

    /// Container `name` changed (health, exit, start): when others wait for it, plan again
    /// and try the restarts held back for it.
    fn dependency_changed(&mut self, name: &str) {
        if self.p.stopping.load(Ordering::SeqCst) {
            return;
        }
        if self.watched.contains(name) {
            self.p.triggers.fire(Trigger::Dependency(name.to_string()));
        }
        if self
            .waiting_restarts
            .values()
            .any(|(_, on)| on.iter().any(|o| o == name))
        {
            let names: Vec<String> = self.waiting_restarts.keys().cloned().collect();
            self.submit_restarts(names);
        }
    }

    /// Holds back the restarts in `names` whose `dependsOn` conditions are not met (the
    /// dependencies restarted with them count as started, and are ordered first).
    fn hold_restarts(&mut self, names: &mut Vec<String>) {
        use crate::plan::depends::{self, Fact};
        let all = match lock(&self.p.store).transaction(|tx| tx.containers()) {
            Ok(all) => all,
            Err(_) => return,
        };
        let by_name: HashMap<&str, &crate::store::ContainerRecord> =
            all.iter().map(|c| (c.name.as_str(), c)).collect();
        let before = self.waiting_restarts.len();
        let batch: HashSet<String> = names.iter().cloned().collect();
        // Dependencies first, so that a held one holds its dependents.
        let levels = super::supervise::dependency_levels(&all);
        names.sort_by_key(|n| (levels.get(n).copied().unwrap_or(0), n.clone()));
        let mut held: HashSet<String> = HashSet::new();
        let mut go = Vec::new();
        for n in names.drain(..) {
            if self.waiting_restarts.contains_key(&n)
                && by_name
                    .get(n.as_str())
                    .is_none_or(|r| r.state != crate::store::ContainerState::Restarting)
            {
                // Gone, or started some other way meanwhile.
                self.waiting_restarts.remove(&n);
                continue;
            }
            let Some(cfg) = by_name.get(n.as_str()).and_then(|r| {
                serde_json::from_value::<crate::plan::EffectiveContainer>(r.config.clone()).ok()
            }) else {
                go.push(n);
                continue;
            };
            let fact = |d: &str| {
                if held.contains(d) {
                    Fact::Waiting
                } else if batch.contains(d) {
                    Fact::Starting
                } else {
                    match by_name.get(d) {
                        Some(r) => Fact::Recorded {
                            state: r.state,
                            exit_code: r.exit_code,
                            health: r.health,
                        },
                        None => Fact::Missing,
                    }
                }
            };
            match depends::blocked(&cfg, fact, |d| held.contains(d)) {
                Some((reason, on)) => {
                    if self.waiting_restarts.get(&n).map(|(r, _)| r) != Some(&reason) {
                        tracing::info!(container = %n, reason = %reason, "restart waits for its dependencies");
                    }
                    self.waiting_restarts.insert(n.clone(), (reason, on));
                    held.insert(n);
                }
                None => {
                    for note in depends::optional_failures(&cfg, fact) {
                        tracing::warn!(container = %n, "restart: {note}");
                    }
                    self.waiting_restarts.remove(&n);
                    go.push(n);
                }
            }
        }
        *names = go;
        if before != 0 || !self.waiting_restarts.is_empty() {
            self.post_waiting();
        }
    }

    /// Puts the containers that wait (the plan's and the held restarts) on the board.
    fn post_waiting(&self) {
        let mut all: std::collections::BTreeMap<String, String> = self
            .plan_waiting
            .iter()
            .map(|w| (w.name.clone(), w.reason.clone()))
            .collect();
        for (n, (reason, _)) in &self.waiting_restarts {
            all.insert(n.clone(), reason.clone());
        }
        self.p.board.set_waiting(all);
    }

    fn sync_prober(&self) {
        if let Err(e) = self.p.prober.sync(&mut lock(&self.p.store)) {
            tracing::warn!(error = %e, "health checks");
        }
    }
}

/// `at` in Unix milliseconds, for the board.
fn board_time(at: Instant) -> i64 {
    let left = at.saturating_duration_since(Instant::now());
    pass::now_ms().saturating_add(i64::try_from(left.as_millis()).unwrap_or(i64::MAX))
}

/// Whether a failed work of this cause puts its object on a backoff: the plan's and drift
/// repair's (a failed restart has the restart policy's own backoff; a user's request is
/// answered with its failure).
fn backs_off(cause: &Cause) -> bool {
    matches!(
        cause,
        Cause::Plan | Cause::NetworkDrift | Cause::NetnsGone | Cause::MonitorLost
    )
}

/// How the queue applies a work: through the applier, or failing when the graph driver could
/// not be opened.
fn apply_fn(applier: Option<Arc<Applier>>, store: SharedStore) -> super::queue::ApplyFn {
    Arc::new(move |w: &Work| match &applier {
        Some(a) => a.apply_work(&store, w).map_err(|e| e.to_string()),
        None => Err("the graph driver could not be opened; see the agent's log".into()),
    })
}

/// Object key -> the file that declares it (an image by its key: `rootfs-tar:/path`, ...).
fn files_of(wanted: &crate::plan::Desired) -> HashMap<String, String> {
    fn add<T>(
        out: &mut HashMap<String, String>,
        kind: Kind,
        m: &std::collections::BTreeMap<String, crate::plan::desired::Entry<T>>,
    ) {
        for (name, e) in m {
            out.insert(
                work::key(kind, name),
                e.origin.file.to_string_lossy().into_owned(),
            );
        }
    }
    let mut out = HashMap::new();
    add(&mut out, Kind::Image, &wanted.images);
    add(&mut out, Kind::Volume, &wanted.volumes);
    add(&mut out, Kind::Network, &wanted.networks);
    add(&mut out, Kind::Container, &wanted.containers);
    out
}

fn in_flight(w: &Work) -> InFlight {
    InFlight {
        object: w.key(),
        change: w.step.summary(),
        cause: w.cause.to_string(),
        since: pass::now_ms(),
    }
}

/// Runs a step of the loop off the async workers; a panic in it (a bug) is logged and the loop
/// goes on: the next trigger plans again from the store.
fn guarded(what: &str, f: impl FnOnce()) {
    let r =
        tokio::task::block_in_place(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    if let Err(payload) = r {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(step = what, panic = %msg, "internal error (panic) in the reconcile loop; it goes on");
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
