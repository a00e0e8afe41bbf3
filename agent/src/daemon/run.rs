//! `agent run`: the long-running agent (the composition root of the daemon).
//!
//! Start-up order: take a socket passed by socket activation ([`super::activation`]), open the
//! store (takes the state-directory lock), start the watcher, bind the API socket or serve the
//! activated one (and the metrics TCP listener of `[metrics] listen`, whose bind failure stops
//! the start like the socket's), tell systemd `READY=1`, then the loop
//! ([`crate::reconcile::engine`]) runs the start-up pass (recovery, adoption, the first plan) and
//! everything after it until SIGTERM/SIGINT.
//!
//! Shutdown: no new change starts; the changes in flight finish (a stop in its grace period is
//! not cut short); the ones not started are planned again at the next start; the API socket is
//! removed if it is still the file the agent bound (an activated one is left to systemd, which
//! keeps listening on it, and so is one systemd put at the path meanwhile). Containers keep
//! running (their monitors are separate processes in their own sessions, and the systemd unit
//! uses `KillMode=process`) unless `stop_containers_on_exit`.
//!
//! Threads: a small multi-thread tokio runtime (2 workers) for the loop, the API and the work
//! queue's tasks; effects run on the blocking pool (at most `workers` at once); the manifest
//! watcher and the exit watcher have a thread each. glibc may keep two malloc arenas, and the
//! loop gives freed memory back when its queue empties ([`super::alloc`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::Error;
use super::config::Config;
use super::sdnotify::Notifier;
use crate::api::server::{self, ApiState};
use crate::manifest::source::{WatchTiming, Watcher};
use crate::reconcile::engine::{Engine, Parts};
use crate::reconcile::report::PassReport;
use crate::reconcile::supervise::Supervisor;
use crate::reconcile::trigger::{self, Trigger, Triggers};
use crate::store::{self, Store};

/// Runs the agent until a termination signal. Builds its own runtime.
pub fn run(config: Config, notifier: Notifier) -> Result<(), Error> {
    // SAFETY: no thread has been started yet (the runtime is built below).
    let activated = unsafe { super::activation::take_from_env() }?;
    // Under systemd on cgroup v2, started in the leaf of the unit's delegated cgroup: gather what
    // else runs in the unit's cgroup into the leaf, before any monitor starts (containers then go
    // below the unit, on v1 too: crate::driver::exec::delegate).
    match crate::driver::exec::delegate::enter_leaf() {
        Ok(Some(unit)) => tracing::info!(
            unit_cgroup = %unit,
            "delegated cgroup: the agent runs in {unit}/{}, containers below {unit}/{}",
            crate::driver::exec::delegate::LEAF,
            crate::driver::exec::delegate::CONTAINERS
        ),
        Ok(None) => {
            // cgroup v1 or hybrid: nothing moves; a delegated unit still takes the containers.
            let parent = crate::driver::exec::delegate::container_parent();
            if parent != crate::driver::exec::delegate::DEFAULT_PARENT {
                tracing::info!("delegated cgroup: containers' cgroups below {parent}");
            }
        }
        Err(e) => tracing::warn!(
            error = %e,
            "containers go below {}, outside the unit's delegated cgroup",
            crate::driver::exec::delegate::DEFAULT_PARENT
        ),
    }
    super::alloc::tune();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("agent")
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(e.to_string()))?;
    let result = rt.block_on(run_async(config, notifier, activated));
    // A pull still downloading is not waited for: it resumes at the next start.
    rt.shutdown_timeout(Duration::from_millis(500));
    result
}

async fn run_async(
    config: Config,
    notifier: Notifier,
    activated: Option<std::os::unix::net::UnixListener>,
) -> Result<(), Error> {
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
    crate::reconcile::recover::refuse_lost_store(
        &config.state_dir,
        &mut store,
        config.remove_orphans,
    )
    .map_err(Error::Refused)?;
    let store = Arc::new(Mutex::new(store));
    let (triggers, queue) = trigger::channel::<PassReport>();

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
    // Every committed event wakes the followers at once, whoever wrote it.
    let hook_tx = events_tx.clone();
    store
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .set_event_hook(Arc::new(move |id| {
            hook_tx.send_if_modified(|cur| {
                let newer = id > *cur;
                if newer {
                    *cur = id;
                }
                newer
            });
        }));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    // An activated socket (agent.socket) is systemd's: served, never replaced nor removed. A
    // bound one is removed at exit only if the file is still the one bound (its device and
    // inode): `systemctl enable --now agent.socket` puts systemd's socket at the same path
    // while this agent runs.
    let (listener, bound) = match activated {
        Some(l) => (server::adopt(l, &config.socket)?, None),
        None => {
            let l = server::bind(&config.socket).await?;
            (l, file_id(&config.socket))
        }
    };
    let w = watcher.clone();
    let requests = crate::reconcile::request::Requests::default();
    let board = crate::reconcile::report::Board::default();
    let api = ApiState {
        store: store.clone(),
        triggers: triggers.clone(),
        requests: requests.clone(),
        events: events_rx,
        shutdown: shutdown_rx.clone(),
        board: board.clone(),
        state_dir: config.state_dir.clone(),
        dir_error: Arc::new(move || w.snapshot().dir_error.clone()),
    };
    if let Some(addr) = config.metrics.listen {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Runtime(format!("metrics.listen {addr}: {e}")))?;
        let mut sd = shutdown_rx.clone();
        tokio::spawn(server::serve_metrics(tcp, api.clone(), async move {
            let _ = sd.wait_for(|v| *v).await;
        }));
    }
    let mut sd = shutdown_rx.clone();
    let api_task = tokio::spawn(server::serve(listener, api, async move {
        let _ = sd.wait_for(|v| *v).await;
    }));

    let exec_config = crate::driver::exec::ExecConfig::new(&config.state_dir);
    let exec = crate::driver::exec::select(exec_config.clone())
        .map_err(|e| Error::Runtime(format!("exec driver: {e}")))?;
    // Exits as events: the monitors' state files, watched with inotify.
    let t = triggers.clone();
    if let Err(e) = crate::reconcile::exits::spawn(
        crate::driver::exec::paths::exec_root(&config.state_dir),
        crate::driver::exec::select(exec_config)
            .map_err(|e| Error::Runtime(format!("exec driver: {e}")))?,
        move |name| t.fire(Trigger::ContainerExit(name)),
    ) {
        tracing::warn!(error = %e, "cannot watch container exits; they are noticed at each resync");
    }
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
        Ok(graph) => Some(crate::reconcile::apply::Applier {
            board: board.clone(),
            state_dir: config.state_dir.clone(),
            graph,
            exec: crate::driver::exec::select(crate::driver::exec::ExecConfig {
                cdi_dirs: config.cdi_spec_dirs.clone(),
                ..crate::driver::exec::ExecConfig::new(&config.state_dir)
            })
            .map_err(|e| Error::Runtime(format!("exec driver: {e}")))?,
            registries: config.registries.clone(),
            container_logs: config.container_logs.clone(),
            pulls: Default::default(),
            net: crate::reconcile::translate::network::Net::open(&config, store.clone())
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
    let prober = crate::reconcile::prober::Prober::default();
    prober.spawn(
        Arc::new(
            crate::driver::exec::select(crate::driver::exec::ExecConfig::new(&config.state_dir))
                .map_err(|e| Error::Runtime(format!("exec driver: {e}")))?,
        ),
        store.clone(),
        triggers.clone(),
    );
    let mut engine = Engine::new(Parts {
        config,
        store: store.clone(),
        watcher,
        events: events_tx,
        supervisor,
        prober,
        applier: applier.map(Arc::new),
        requests,
        triggers: triggers.clone(),
        stopping,
        board,
    });
    engine.run(queue).await;
    let stop_all = engine.p.config.stop_containers_on_exit;
    if stop_all {
        engine.stop_all().await;
    }

    tracing::info!("shutting down");
    notifier.stopping();
    let _ = shutdown_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(5), api_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "API server"),
        Err(_) => tracing::warn!("API server did not stop within 5s"),
        _ => {}
    }
    if bound.is_some() && file_id(&socket) == bound {
        let _ = std::fs::remove_file(&socket);
    }
    if stop_all {
        tracing::info!("agent stopped; containers stopped (stop_containers_on_exit)");
    } else {
        tracing::info!("agent stopped; containers keep running");
    }
    Ok(())
}

/// The device and inode of the file at `path` (not following a symlink).
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
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
