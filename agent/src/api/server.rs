//! The API server: axum on the agent's Unix socket.
//!
//! | method, path                       | answer                                           |
//! |------------------------------------|--------------------------------------------------|
//! | `GET /v1/ps`                       | `[PsRow]`                                        |
//! | `GET /v1/status`                   | `StatusReport`                                   |
//! | `GET /v1/containers/{name}`        | `Inspect`, 404 if there is no such container     |
//! | `GET /v1/events?after=&limit=&follow=` | JSON lines (`application/x-ndjson`) of `Event`; with `follow=true` the stream stays open and new events follow |
//! | `POST /v1/apply`                   | `PassReport` of a pass that started after the request |
//! | `POST /v1/containers/{name}/stop?time=SECS` | `ActionReport`; `agent stop` (stopped-by-user), `time` (0 to 86400 seconds, else 400) overrides the grace period |
//! | `POST /v1/containers/{name}/start` | `ActionReport`; `agent start`                    |
//! | `POST /v1/containers/{name}/kill?signal=SIG` | `ActionReport`; `agent kill`: the signal (name or number, else 400) is sent at once and a `container.kill` event recorded |
//! | `GET /v1/volumes`                  | `[VolumeRow]` (named and anonymous volumes; [`super::disk`]) |
//! | `POST /v1/volumes/{name}/remove`   | `ActionReport` (state `removed`); `agent volume rm`: 404 no such volume, 409 in use or declared (the error says by what) |
//! | `GET /v1/system/df`                | `[DfRow]` (disk use by kind; [`super::disk`])    |
//! | `GET /v1/stats`                    | `StatsReport`: every container's cgroup and network use ([`crate::metrics::sample`]) |
//! | `GET /v1/containers/{name}/top`    | `Top`: the processes in its cgroup ([`crate::metrics::top`]); 409 when it does not run |
//! | `GET /metrics`                     | Prometheus text ([`crate::metrics`]); also on `[metrics] listen` over TCP ([`serve_metrics`], this route only) |
//!
//! Stop, start and volume removal are served by the pass loop between two passes (see
//! [`crate::reconcile::request`]); the answer comes once the container is stopped or started,
//! the volume removed.
//!
//! Errors are `{"error": "..."}` with a 4xx/5xx status. The socket is created `0600` (root only):
//! whoever can talk to it can make the agent run containers. Under socket activation
//! (`agent.socket`, [`adopt`]) systemd creates it, with the unit's `SocketMode=0600`. Each
//! connection's peer is checked too (`SO_PEERCRED`): one from a user other than root or the
//! agent's own is closed unanswered, with a warning, whatever the socket's mode says.
//!
//! Limits ([`serve`]): at most [`MAX_CONNECTIONS`] open connections (one more is closed as soon
//! as it is accepted), and a connection that does not send a complete request head within
//! [`HEADER_READ_TIMEOUT`] (a slow-loris, or an idle keep-alive connection) is closed. Long
//! answers are not cut: `events?follow=true` streams for as long as the client reads.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::UnixListener;
use tokio::sync::watch;

use super::Error;
use super::types::{self, ErrorBody, PassReport, StatusReport};
use crate::reconcile::request::{Action, RequestError, Requests};
use crate::reconcile::trigger::{Trigger, Triggers};
use crate::store::Store;

/// What the handlers need from the running agent.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Mutex<Store>>,
    pub triggers: Triggers<PassReport>,
    /// `agent stop` / `agent start` requests, served by the pass loop.
    pub requests: Requests,
    /// The newest event id; bumped by the agent whenever it appends events.
    pub events: watch::Receiver<i64>,
    /// Set to true when the agent shuts down: open event streams end.
    pub shutdown: watch::Receiver<bool>,
    /// The manifest directory's own error, if it cannot be read.
    pub dir_error: Arc<dyn Fn() -> Option<String> + Send + Sync>,
    /// The changes in flight (written by the loop).
    pub board: crate::reconcile::report::Board,
    /// The state directory (`inspect` reads the monitors' state files there; `agent kill`
    /// signals through the exec driver's records there).
    pub state_dir: std::path::PathBuf,
}

/// Creates the socket at `path` (its directory `0755` if missing), refusing when another agent
/// answers on it and replacing a stale one.
pub async fn bind(path: &Path) -> Result<UnixListener, Error> {
    let io = |op: &'static str, source: std::io::Error| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(|e| io("create directory for", e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io("chmod directory of", e))?;
    }
    if std::fs::symlink_metadata(path).is_ok() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(Error::SocketInUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(|e| io("remove stale socket", e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| io("bind", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io("chmod", e))?;
    Ok(listener)
}

/// Serves on a listening socket passed by socket activation ([`crate::daemon::activation`])
/// instead of binding one: the socket and its file belong to the service manager, which keeps
/// them across restarts of the agent (connections made meanwhile wait in its backlog). A socket
/// at another path than `expected` (the `socket` of the config, where the CLI looks) is
/// served all the same, with a warning.
pub fn adopt(
    listener: std::os::unix::net::UnixListener,
    expected: &Path,
) -> Result<UnixListener, Error> {
    let io = |op: &'static str, source: std::io::Error| Error::Io {
        op,
        path: expected.to_path_buf(),
        source,
    };
    let local = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
    if local.as_deref() != Some(expected) {
        tracing::warn!(
            activated = %local.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "(unnamed)".into()),
            config = %expected.display(),
            "the activated API socket is not the config's `socket`; clients must be given --socket"
        );
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| io("set non-blocking the activated socket for", e))?;
    UnixListener::from_std(listener).map_err(|e| io("register the activated socket for", e))
}

/// The routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/ps", get(ps))
        .route("/v1/status", get(status))
        .route("/v1/containers/{name}", get(inspect))
        .route("/v1/events", get(events))
        .route("/v1/apply", post(apply))
        .route("/v1/containers/{name}/stop", post(stop))
        .route("/v1/containers/{name}/start", post(start))
        .route("/v1/containers/{name}/kill", post(kill))
        .route("/v1/volumes", get(volumes))
        .route("/v1/volumes/{name}/remove", post(volume_rm))
        .route("/v1/system/df", get(df))
        .route("/v1/stats", get(stats))
        .route("/v1/containers/{name}/top", get(top))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Open connections at most; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 128;
/// A connection must send a request's whole head within this time, also when it is idle
/// between requests; otherwise it is closed (a slow-loris or a forgotten client).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// After shutdown, how long open connections get to finish their answers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves until `shutdown` resolves, at most [`MAX_CONNECTIONS`] connections at a time, each
/// closed when a request head takes longer than [`HEADER_READ_TIMEOUT`]. Connections are served
/// by tasks of their own; nothing here waits for the reconciler, and the reconciler never waits
/// for the API, so a flood of connections only costs the flooders.
pub async fn serve(
    listener: UnixListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_on(Listener::Unix(listener), router(state), shutdown).await
}

/// Serves `GET /metrics` alone on the TCP listener of `[metrics] listen`, with the same
/// limits as [`serve`]. Nothing else of the API is reachable there: the metrics are read-only
/// and hold no secret, the rest of the API is root-only.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
    serve_on(Listener::Tcp(listener), app, shutdown).await
}

enum Listener {
    Unix(UnixListener),
    Tcp(tokio::net::TcpListener),
}

enum Stream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Stream> {
        match self {
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| Stream::Tcp(s)),
        }
    }
}

async fn serve_on(
    listener: Listener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_full_warning: Option<tokio::time::Instant> = None;
    let mut last_refused_warning: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and the like: the limit frees up as connections close; don't spin.
                tracing::warn!(error = %e, "API: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                tracing::warn!(
                    limit = MAX_CONNECTIONS,
                    "API: too many open connections; new ones are closed until some end"
                );
                last_full_warning = Some(tokio::time::Instant::now());
            }
            drop(stream);
            continue;
        };
        match stream {
            Stream::Unix(s) => {
                if let Err(who) = peer_allowed(&s) {
                    if last_refused_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        tracing::warn!(
                            peer = %who,
                            "API: connection refused: only root (or the agent's own user) may use the socket; check its mode"
                        );
                        last_refused_warning = Some(tokio::time::Instant::now());
                    }
                    drop((s, slot));
                    continue;
                }
                spawn_connection(s, app.clone(), stop_rx.clone(), slot)
            }
            Stream::Tcp(s) => spawn_connection(s, app.clone(), stop_rx.clone(), slot),
        }
    }
    let _ = stop_tx.send(true);
    // Every slot back means every connection has ended.
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE * 2, slots.acquire_many(all)).await;
    Ok(())
}

/// Whether the process at the other end of an API connection may use the API: root or the
/// agent's own user, by the kernel's `SO_PEERCRED`. The socket's `0600` mode is the first guard;
/// this one holds when the mode is wrong (a unit's `SocketMode=0666`, a `chmod` by hand, a
/// client that connected in the instant between `bind` and `chmod`). Otherwise `Err` describes
/// the peer.
fn peer_allowed(s: &tokio::net::UnixStream) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    match s.peer_cred() {
        Ok(c) if c.uid() == 0 || c.uid() == me => Ok(()),
        Ok(c) => Err(format!(
            "uid {} (pid {})",
            c.uid(),
            c.pid().map_or_else(|| "?".into(), |p| p.to_string())
        )),
        Err(e) => Err(format!("unknown ({e})")),
    }
}

/// Serves one connection on a task of its own until it ends or the server stops.
fn spawn_connection<S>(
    stream: S,
    app: Router,
    mut stop: watch::Receiver<bool>,
    slot: tokio::sync::OwnedSemaphorePermit,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    tokio::spawn(async move {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "API connection ended");
                }
            }
            _ = async { stop.wait_for(|v| *v).await.is_ok() } => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
            }
        }
        drop(slot);
    });
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ErrorBody { error: msg.into() })).into_response()
}

/// Runs `f` on the store in a blocking thread.
async fn with_store<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(&crate::store::Tx<'_>) -> crate::store::Result<T> + Send + 'static,
) -> Result<T, Response> {
    let store = state.store.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let mut guard = store.lock().unwrap_or_else(|e| e.into_inner());
        guard.transaction(f)
    })
    .await;
    match joined {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let records = match with_store(&state, crate::metrics::sample::records).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let dir = state.state_dir.clone();
    let text = tokio::task::spawn_blocking(move || {
        let scrape = crate::metrics::sample::scrape(&dir, records);
        crate::metrics::global().render(&scrape)
    })
    .await;
    match text {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn stats(State(state): State<ApiState>) -> Response {
    let records = match with_store(&state, crate::metrics::sample::records).await {
        Ok((containers, _, _)) => containers,
        Err(r) => return r,
    };
    let dir = state.state_dir.clone();
    match tokio::task::spawn_blocking(move || crate::metrics::sample::stats_report(&dir, records))
        .await
    {
        Ok(report) => Json(report).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn top(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Response {
    let n = name.clone();
    let record = match with_store(&state, move |tx| tx.container(&n)).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no such container: {name} (see `agent ps`)"),
            );
        }
        Err(r) => return r,
    };
    let dir = state.state_dir.clone();
    match tokio::task::spawn_blocking(move || crate::metrics::top::of_container(&dir, &record))
        .await
    {
        Ok(Ok(top)) => Json(top).into_response(),
        Ok(Err(msg)) => error(StatusCode::CONFLICT, msg),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn volumes(State(state): State<ApiState>) -> Response {
    let dir = state.state_dir.clone();
    match with_store(&state, move |tx| super::disk::volumes(tx, &dir)).await {
        Ok(rows) => Json(rows).into_response(),
        Err(r) => r,
    }
}

async fn df(State(state): State<ApiState>) -> Response {
    let dir = state.state_dir.clone();
    match with_store(&state, move |tx| super::disk::df(tx, &dir)).await {
        Ok(rows) => Json(rows).into_response(),
        Err(r) => r,
    }
}

async fn ps(State(state): State<ApiState>) -> Response {
    match with_store(&state, types::ps).await {
        Ok(rows) => Json(types::ps_waiting(
            types::ps_live(
                rows,
                &state.board.failures(),
                &state.board.stopping_now(),
                &state.board.monitor_lost_now(),
            ),
            &state.board.waiting_now(),
        ))
        .into_response(),
        Err(r) => r,
    }
}

async fn status(State(state): State<ApiState>) -> Response {
    let dir_error = (state.dir_error)();
    match with_store(&state, types::files).await {
        Ok(files) => Json(StatusReport {
            failures: state
                .board
                .failures()
                .into_iter()
                .filter(|f| f.file.is_none())
                .collect(),
            in_flight: state.board.list(),
            warnings: state.board.warnings(),
            agent_running: true,
            files: types::files_live(files, &state.board.failures()),
            dir_error,
            waiting: state.board.waiting_now(),
        })
        .into_response(),
        Err(r) => r,
    }
}

async fn inspect(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Response {
    let n = name.clone();
    match with_store(&state, move |tx| types::inspect(tx, &n)).await {
        Ok(Some(mut i)) => {
            types::inspect_monitor(&mut i, &state.state_dir);
            Json(i).into_response()
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no such container: {name} (see `agent ps`)"),
        ),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    /// Only events with a larger id.
    after: Option<i64>,
    /// Without `after`: the newest `limit` events (default 100).
    limit: Option<usize>,
    #[serde(default)]
    follow: bool,
}

fn ndjson(events: &[crate::store::Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        if serde_json::to_writer(&mut out, e).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

async fn events(State(state): State<ApiState>, Query(q): Query<EventsQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let first = match q.after {
        Some(after) => with_store(&state, move |tx| tx.events_after(Some(after), limit)).await,
        None => with_store(&state, move |tx| tx.recent_events(None, limit)).await,
    };
    let first = match first {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut last = first.last().map(|e| e.id).or(q.after).unwrap_or(0);
    if !q.follow {
        return (
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            ndjson(&first),
        )
            .into_response();
    }
    if first.is_empty() && q.after.is_none() {
        // Follow from "now": the newest id, even when the backlog asked for was empty.
        last = *state.events.borrow();
    }
    let head = ndjson(&first);
    let stream = async_stream(state, last, head);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// The follow stream: the backlog, then new events as the agent appends them, until shutdown or
/// the client goes away.
fn async_stream(
    state: ApiState,
    last: i64,
    head: Vec<u8>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, Infallible>> + Send {
    struct S {
        events: watch::Receiver<i64>,
        shutdown: watch::Receiver<bool>,
        state: ApiState,
        last: i64,
        head: Option<Vec<u8>>,
    }
    futures_util::stream::unfold(
        S {
            events: state.events.clone(),
            shutdown: state.shutdown.clone(),
            state,
            last,
            head: Some(head),
        },
        |mut s| async move {
            if let Some(h) = s.head.take()
                && !h.is_empty()
            {
                return Some((Ok(h), s));
            }
            loop {
                if *s.shutdown.borrow_and_update() {
                    return None;
                }
                // Marked seen before the query: an event appended after it wakes us below.
                s.events.borrow_and_update();
                let after = s.last;
                let batch = with_store(&s.state, move |tx| tx.events_after(Some(after), 1000))
                    .await
                    .ok()?;
                if let Some(e) = batch.last() {
                    s.last = e.id;
                    return Some((Ok(ndjson(&batch)), s));
                }
                // Wait for news, with a poll as a safety net.
                tokio::select! {
                    r = s.events.changed() => {
                        if r.is_err() {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                    }
                    r = s.shutdown.changed() => {
                        if r.is_err() {
                            return None;
                        }
                    }
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        },
    )
}

async fn apply(State(state): State<ApiState>) -> Response {
    let rx = state.triggers.fire_and_wait(Trigger::Api);
    match rx.await {
        Ok(report) => Json(report).into_response(),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down; the request was not served",
        ),
    }
}

#[derive(Debug, Deserialize)]
struct StopQuery {
    /// Seconds to wait after the stop signal before SIGKILL.
    time: Option<f64>,
}

async fn request(state: &ApiState, action: Action) -> Response {
    let rx = state.requests.push(action);
    state.triggers.fire(Trigger::Request);
    let e = match rx.await {
        Ok(Ok(report)) => return Json(report).into_response(),
        Ok(Err(e)) => e,
        Err(_) => RequestError::ShuttingDown,
    };
    let status = match e {
        RequestError::NotFound(_) => StatusCode::NOT_FOUND,
        RequestError::Busy { .. } => StatusCode::CONFLICT,
        RequestError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        RequestError::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        RequestError::NoVolume(_) => StatusCode::NOT_FOUND,
        RequestError::Refused(_) => StatusCode::CONFLICT,
    };
    error(status, e.to_string())
}

async fn stop(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<StopQuery>,
) -> Response {
    let grace = match q.time.map(grace_secs).transpose() {
        Ok(g) => g,
        Err(msg) => return error(StatusCode::BAD_REQUEST, format!("time={msg}")),
    };
    request(&state, Action::Stop { name, grace }).await
}

/// A stop grace period given in seconds (`agent stop -t`, `?time=`): 0 to 86400 (24h, the
/// longest `stopGracePeriod` a manifest may ask for). The error says what is allowed.
pub fn grace_secs(t: f64) -> Result<Duration, String> {
    let max = crate::manifest::units::MAX_DURATION;
    if t.is_finite() && t >= 0.0 && t <= max.as_secs_f64() {
        Duration::try_from_secs_f64(t).map_err(|e| format!("{t}: {e}"))
    } else {
        Err(format!(
            "{t}: use a number of seconds from 0 to {} (24h)",
            max.as_secs()
        ))
    }
}

/// `agent volume rm NAME` (and each volume of `agent volume prune`): a work through the loop.
async fn volume_rm(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Response {
    request(&state, Action::RemoveVolume { name }).await
}

async fn start(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Response {
    request(&state, Action::Start { name }).await
}

#[derive(Debug, Deserialize)]
struct KillQuery {
    signal: Option<String>,
}

async fn kill(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<KillQuery>,
) -> Response {
    let text = q.signal.unwrap_or_else(|| "KILL".into());
    let signal = match crate::driver::exec::paths::parse_signal(&text) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("signal={e}")),
    };
    let store = state.store.clone();
    let exec = crate::driver::exec::MonitorDriver::new(crate::driver::exec::ExecConfig::new(
        &state.state_dir,
    ));
    let done = tokio::task::spawn_blocking(move || {
        crate::reconcile::request::kill(&store, &exec, &name, signal)
    })
    .await;
    let e = match done {
        Ok(Ok(report)) => return Json(report).into_response(),
        Ok(Err(e)) => e,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let status = match e {
        RequestError::NotFound(_) => StatusCode::NOT_FOUND,
        RequestError::Busy { .. } => StatusCode::CONFLICT,
        RequestError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        RequestError::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        RequestError::NoVolume(_) => StatusCode::NOT_FOUND,
        RequestError::Refused(_) => StatusCode::CONFLICT,
    };
    error(status, e.to_string())
}
