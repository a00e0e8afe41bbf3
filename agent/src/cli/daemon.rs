//! `agent run` and the commands that talk to the running agent: `ps`, `status`, `inspect`,
//! `events`, `apply`.
//!
//! The client commands find the agent through its socket and state directory as every command
//! does ([`super::settings`]: flag, `AGENT_*` environment, config file, default). When nothing
//! listens there, `ps`, `status`, `inspect` and `events` read the store under the state
//! directory instead and say so on stderr; `apply` needs the
//! running agent. While an agent is starting (it holds the state directory's lock, its socket
//! does not listen yet) they wait for its socket, up to 10 s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Outcome, OutputFormat};
use crate::api::ClientError;
use crate::api::types::{self, FileStatus, Inspect, PassReport, PsRow, StatusReport};
use crate::daemon::config::{Config, Overrides};
use crate::daemon::logging::LogSettings;
use crate::daemon::sdnotify::Notifier;
use crate::store::{Event, StateLock, Store};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Directory of manifest files [env: AGENT_MANIFESTS_DIR; default: `manifests_dir` of the
    /// config, /etc/agent.d].
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// State directory [env: AGENT_STATE_DIR; default: `state_dir` of the config,
    /// /var/lib/agent].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Configuration file [env: AGENT_CONFIG; default: /etc/agent/config.toml, if it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// API socket [env: AGENT_SOCKET; default: `socket` of the config, /run/agent/agent.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Stop every container when the agent exits (default: leave them running).
    #[arg(long)]
    pub stop_containers_on_exit: bool,
    /// Remove the containers and container layers found on disk that the store does not
    /// account for (state.db lost or replaced), instead of refusing to start (empty store) or
    /// leaving them alone. Their writable layers are deleted.
    #[arg(long)]
    pub remove_orphans: bool,
}

pub use super::settings::ClientOpts;

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Only containers that match (repeatable, as `docker ps --filter`): `name=TEXT` (the name
    /// contains TEXT), `state=STATE` (running, exited, failed, ...), `label=KEY` (has the label)
    /// or `label=KEY=VALUE`. Several `name=` or `state=` filters: any may match; several
    /// `label=` filters: all must; different keys: all must.
    #[arg(short, long = "filter", value_name = "KEY=VALUE", value_parser = parse_ps_filter)]
    pub filter: Vec<PsFilter>,
    /// Only the names, one per line.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub client: ClientOpts,
    /// Output format: `text` (a table or lines) or `json`.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// One `agent ps --filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PsFilter {
    /// The name contains this text.
    Name(String),
    /// The state is this one.
    State(String),
    /// Has the label (with this value).
    Label(String, Option<String>),
}
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Output format: `text` (a table or lines) or `json`.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The container's name.
    pub name: String,
    #[command(flatten)]
    pub client: ClientOpts,
}
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Keep printing new events as they happen.
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the newest events to print first (0: none; with -f, only new ones)
    /// [default: 100, or every one in the --since/--until window].
    #[arg(short = 'n', long)]
    pub limit: Option<usize>,
    /// Only events at or after this time: RFC 3339 (2024-05-01T12:00:00Z), Unix seconds, or a
    /// duration before now (10m, 1h30m), as `docker events --since`.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only events at or before this time (same forms as --since); with -f, following ends at
    /// the first event after it.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    #[command(flatten)]
    pub client: ClientOpts,
    /// Output format: `text` (a table or lines) or `json`.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    /// Give up waiting after this long (`30s`, `5m`; default: wait until the pass has ended):
    /// the changes still in flight are listed and the exit code is 1. They go on in the agent.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<crate::manifest::units::Duration>,
    /// Output format: `text` (a table or lines) or `json`.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Logging for the command about to run: `agent run` follows its config, the rest keep plain
/// warnings on stderr.
pub fn log_settings(cli: &super::Cli) -> LogSettings {
    match &cli.command {
        super::Command::Run(args) => {
            let (path, required) = super::settings::config_path(args.config.as_deref());
            // A broken config is reported by `run` itself; log with defaults meanwhile.
            let cfg = Config::load(&path, required).unwrap_or_default();
            LogSettings {
                level: cfg.log.level,
                format: cfg.log.format,
                daemon: true,
            }
        }
        super::Command::Monitor(_) => LogSettings {
            level: crate::driver::exec::monitor::LOG_FILTER.into(),
            ..LogSettings::default()
        },
        _ => LogSettings::default(),
    }
}

pub fn run(args: RunArgs) -> crate::Result<Outcome> {
    let s = super::settings::resolve(
        args.config.as_deref(),
        args.socket.as_deref(),
        args.state_dir.as_deref(),
        args.manifests.as_deref(),
    )?;
    let mut cfg = s.config;
    cfg.apply_overrides(Overrides {
        manifests_dir: Some(absolute(s.manifests_dir)?),
        state_dir: Some(absolute(s.state_dir)?),
        socket: Some(absolute(s.socket)?),
        stop_containers_on_exit: args.stop_containers_on_exit,
        remove_orphans: args.remove_orphans,
    });
    // SAFETY: no thread has been started yet; the runtime is built inside `daemon::run`.
    let notifier = unsafe { Notifier::from_env() };
    crate::daemon::run::run(cfg, notifier)?;
    Ok(Outcome::OK)
}

fn absolute(p: PathBuf) -> crate::Result<PathBuf> {
    std::path::absolute(&p).map_err(|source| crate::Error::Io {
        context: format!("resolving {}", p.display()),
        source,
    })
}

/// How long a CLI call waits for the socket of an agent that is starting (it holds the state
/// directory's lock but does not listen yet: opening the store, checking it, starting the
/// watcher take a fraction of a second, and up to 3 s more while another command reads the
/// store).
const STARTUP_WAIT: Duration = Duration::from_secs(10);

/// Runs `call` (one request to the agent); while nothing listens on the socket but an agent holds
/// the lock of `state` (it is starting), tries again until [`STARTUP_WAIT`] has passed. Without
/// this, a command run right after `agent run` started found neither the socket nor the store
/// (locked) and failed.
pub(super) fn wait_for_starting_agent<T>(
    state: &Path,
    mut call: impl FnMut() -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    let deadline = Instant::now() + STARTUP_WAIT;
    loop {
        match call() {
            Err(ClientError::NotRunning(_))
                if Instant::now() < deadline && StateLock::is_held(state) =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Asks the agent; when it is not running, reads the store with `offline`.
pub(super) fn ask<T: serde::de::DeserializeOwned>(
    opts: &ClientOpts,
    path: &str,
    offline: impl FnOnce(&mut Store) -> crate::Result<T>,
) -> crate::Result<T> {
    let (client, state) = opts.resolve()?;
    let deadline = Instant::now() + STARTUP_WAIT;
    loop {
        let socket = match wait_for_starting_agent(&state, || client.call::<T>(false, path)) {
            Ok(v) => return Ok(v),
            Err(ClientError::NotRunning(socket)) => socket,
            Err(e) => return Err(crate::api::Error::from(e).into()),
        };
        if !state.join(crate::store::DB_FILE).exists() {
            return Err(crate::Error::Failed(format!(
                "the agent is not running (nothing listens on {}) and {} holds no state",
                socket.display(),
                state.display()
            )));
        }
        let mut store = match Store::open(&state) {
            Ok(store) => store,
            // An agent took the lock after the socket was tried: it is starting; ask it.
            Err(crate::store::Error::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        eprintln!(
            "agent: the agent is not running (nothing listens on {}); showing the state recorded in {}",
            socket.display(),
            state.display()
        );
        return offline(&mut store);
    }
}

pub(super) fn print_json<T: serde::Serialize>(v: &T) -> crate::Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| crate::Error::Failed(e.to_string()))?;
    // A closed pipe (`agent ps -o json | head`) is not an error.
    let _ = writeln!(std::io::stdout().lock(), "{text}");
    Ok(())
}

/// "3s", "5m", "2h", "4d".
pub fn short_duration(ms: i64) -> String {
    let s = (ms / 1000).max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn status_text(r: &PsRow, now: i64) -> String {
    match (r.state.as_str(), r.started_at, r.finished_at) {
        ("stopping", _, _) => {
            let so_far = short_duration(now - r.stopping_since.unwrap_or(now));
            let grace = r.grace_ms.map_or("?".into(), |g| {
                short_duration(i64::try_from(g).unwrap_or(i64::MAX))
            });
            format!("stopping for {so_far} (SIGKILL after {grace})")
        }
        ("waiting", _, _) => format!("waiting ({})", r.waiting.as_deref().unwrap_or("?")),
        ("failed" | "pending", _, _) => match r.retry_at {
            Some(at) if at > now => format!("next try in {}", short_duration(at - now + 999)),
            Some(_) => "next try now".into(),
            None => "next try at the next pass".into(),
        },
        ("running", Some(start), _) => format!("up {}", short_duration(now - start)),
        ("exited" | "stopped-by-user" | "restarting" | "dead", _, Some(end)) => format!(
            "{} ({}) {} ago",
            r.state,
            r.exit_code.map_or("?".to_string(), |c| c.to_string()),
            short_duration(now - end)
        ),
        (state, _, _) => state.to_string(),
    }
}

pub(super) fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn short_digest(d: &str) -> String {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    hex.chars().take(12).collect()
}

/// `name=TEXT`, `state=STATE`, `label=KEY[=VALUE]`.
fn parse_ps_filter(s: &str) -> Result<PsFilter, String> {
    let usage = || {
        format!(
            "unsupported filter {s:?}: use name=TEXT, state=STATE, label=KEY or label=KEY=VALUE"
        )
    };
    let (key, value) = s.split_once('=').ok_or_else(usage)?;
    if value.is_empty() || value.starts_with('=') {
        return Err(usage());
    }
    Ok(match key {
        "name" => PsFilter::Name(value.to_string()),
        "state" | "status" => PsFilter::State(value.to_string()),
        "label" => match value.split_once('=') {
            Some((k, v)) => PsFilter::Label(k.to_string(), Some(v.to_string())),
            None => PsFilter::Label(value.to_string(), None),
        },
        _ => return Err(usage()),
    })
}

/// Docker's rule: filters of one key are alternatives (`name=a`, `name=b`: either), except
/// labels, which must all match; different keys must all match.
fn ps_matches(filters: &[PsFilter], r: &PsRow) -> bool {
    let names: Vec<&str> = filters
        .iter()
        .filter_map(|f| match f {
            PsFilter::Name(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    let states: Vec<&str> = filters
        .iter()
        .filter_map(|f| match f {
            PsFilter::State(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    (names.is_empty() || names.iter().any(|n| r.name.contains(n)))
        && (states.is_empty() || states.contains(&r.state.as_str()))
        && filters.iter().all(|f| match f {
            PsFilter::Label(k, Some(v)) => r.labels.get(k) == Some(v),
            PsFilter::Label(k, None) => r.labels.contains_key(k),
            _ => true,
        })
}

pub fn ps(args: PsArgs) -> crate::Result<Outcome> {
    let mut rows: Vec<PsRow> = ask(&args.client, "/v1/ps", |s| Ok(s.transaction(types::ps)?))?;
    rows.retain(|r| ps_matches(&args.filter, r));
    if args.quiet {
        let mut out = std::io::stdout().lock();
        for r in &rows {
            if writeln!(out, "{}", r.name).is_err() {
                break;
            }
        }
        return Ok(Outcome::OK);
    }
    if args.output == OutputFormat::Json {
        print_json(&rows)?;
        return Ok(Outcome::OK);
    }
    let now = crate::reconcile::pass::now_ms();
    let mut t = vec![
        [
            "NAME", "STATE", "HEALTH", "IMAGE", "PORTS", "STATUS", "RESTARTS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in &rows {
        t.push(vec![
            r.name.clone(),
            r.state.clone(),
            r.health.clone().unwrap_or_else(|| "-".into()),
            short_digest(&r.image_digest),
            if r.ports.is_empty() {
                "-".into()
            } else {
                r.ports.join(",")
            },
            status_text(r, now),
            r.restarts.to_string(),
        ]);
    }
    let mut out = table(&t);
    // The reasons below the table: they are long, and a column would stretch every line.
    for r in &rows {
        if let Some(e) = &r.error {
            out.push_str(&format!("{}: {e}\n", r.name));
        }
        if let Some(w) = r.waiting.as_ref().filter(|_| r.state != "waiting") {
            out.push_str(&format!("{}: its change waits ({w})\n", r.name));
        }
    }
    let _ = write!(std::io::stdout().lock(), "{out}");
    Ok(Outcome::OK)
}

fn time_text(ms: Option<i64>) -> String {
    match ms {
        Some(ms) if ms > 0 => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.unsigned_abs());
            crate::driver::exec::time::format_seconds(t)
        }
        _ => "never".into(),
    }
}

pub fn status(args: StatusArgs) -> crate::Result<Outcome> {
    let report: StatusReport = ask(&args.client, "/v1/status", |s| {
        Ok(StatusReport {
            in_flight: Vec::new(),
            warnings: Vec::new(),
            failures: Vec::new(),
            agent_running: false,
            files: s.transaction(types::files)?,
            dir_error: None,
            waiting: Default::default(),
        })
    })?;
    let broken = report.files.iter().any(|f| f.status != "ok")
        || report.dir_error.is_some()
        || !report.failures.is_empty();
    if args.output == OutputFormat::Json {
        print_json(&report)?;
    } else {
        if let Some(e) = &report.dir_error {
            println!(
                "manifest directory: error: {e}\n  (nothing is removed while it cannot be read)"
            );
        }
        if report.files.is_empty() {
            println!("no manifest files");
        }
        let now = crate::reconcile::pass::now_ms();
        for f in &report.files {
            print_file_status(f, now);
        }
        for f in &report.failures {
            println!("failing: {}", failure_text(f, now));
        }
        for (name, why) in &report.waiting {
            println!("waiting: {name}: {why}");
        }
        for w in &report.warnings {
            println!("warning: {w}");
        }
        if !report.in_flight.is_empty() {
            let now = crate::reconcile::pass::now_ms();
            println!("in flight:");
            for w in &report.in_flight {
                let secs = (now - w.since).max(0) / 1000;
                println!("  {} ({}, {secs} s)", w.change, w.cause);
            }
        }
    }
    Ok(if broken { Outcome::FAILED } else { Outcome::OK })
}

/// `create web failed: ... (3 times since 2m; next try in 8s)`.
fn failure_text(f: &types::Failure, now: i64) -> String {
    let mut s = f.error.clone();
    let times = if f.attempts > 1 {
        format!(
            "{} times in a row since {} ago; ",
            f.attempts,
            short_duration(now - f.since)
        )
    } else {
        String::new()
    };
    let next = match f.retry_at {
        Some(at) if at > now => format!("next try in {}", short_duration(at - now + 999)),
        Some(_) => "next try now".into(),
        None => "next try at the next pass".into(),
    };
    s.push_str(&format!(" ({times}{next})"));
    s
}

fn print_file_status(f: &FileStatus, now: i64) {
    if f.error.is_none() && !f.failing.is_empty() {
        println!(
            "{}: failing (it loads, but changes of its objects fail; last applied {})",
            f.path,
            time_text(f.applied_at)
        );
        for x in &f.failing {
            println!("  {}", failure_text(x, now));
        }
        return;
    }
    match &f.error {
        None => println!("{}: ok (last applied {})", f.path, time_text(f.applied_at)),
        Some(e) => {
            println!(
                "{}: error (its last good version stays in force; last applied {})",
                f.path,
                time_text(f.applied_at)
            );
            for line in e.lines() {
                println!("  {line}");
            }
        }
    }
}

pub fn inspect(args: InspectArgs) -> crate::Result<Outcome> {
    let name = args.name.clone();
    let path = format!("/v1/containers/{}", url_escape(&args.name));
    let (_, state_dir) = args.client.resolve()?;
    let i: Inspect = ask(&args.client, &path, move |s| {
        let mut i = s
            .transaction(|tx| types::inspect(tx, &name))?
            .ok_or_else(|| {
                crate::Error::Failed(format!("no such container: {name} (see `agent ps`)"))
            })?;
        types::inspect_monitor(&mut i, &state_dir);
        Ok(i)
    })?;
    // The effective stop signal (manifest, image or default), from the exec driver's record of
    // the container: the store keeps only the manifest's.
    let (_, state) = args.client.resolve()?;
    let dir = crate::driver::exec::paths::container_dir(&state, &i.container.id);
    let mut v = serde_json::to_value(&i).map_err(|e| crate::Error::Failed(e.to_string()))?;
    if let (Ok(spec), Some(obj)) = (
        crate::driver::exec::paths::load_spec(&dir),
        v.as_object_mut(),
    ) {
        let (signal, from) = crate::driver::exec::paths::stop_signal_of(&spec);
        obj.insert(
            "stopSignal".into(),
            serde_json::json!({"signal": signal, "from": from}),
        );
    }
    print_json(&v)?;
    Ok(Outcome::OK)
}

/// Every byte but RFC 3986's unreserved characters is escaped in a path segment.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `s` percent-encoded for a URL path segment (unreserved characters kept).
pub(super) fn url_escape(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, PATH_SEGMENT).to_string()
}

fn print_event(e: &Event, output: OutputFormat) -> bool {
    let mut out = std::io::stdout().lock();
    let ok = match output {
        OutputFormat::Json => serde_json::to_string(e)
            .map(|s| writeln!(out, "{s}"))
            .is_ok(),
        OutputFormat::Text => {
            let msg = match &e.message {
                serde_json::Value::Object(m) if m.len() == 1 && m.contains_key("reason") => {
                    m["reason"].as_str().map(str::to_owned).unwrap_or_default()
                }
                serde_json::Value::Object(m) if m.is_empty() => String::new(),
                v => v.to_string(),
            };
            writeln!(
                out,
                "{} {} {} {}",
                time_text(Some(e.time)),
                e.kind,
                e.object,
                msg
            )
            .is_ok()
        }
    };
    // Stop following when stdout is gone (`agent events -f | head`).
    ok && out.flush().is_ok()
}

/// The most events one request returns (the API's bound; the log keeps `event_cap`, 10 000 by
/// default).
const EVENTS_MAX: usize = 10_000;

/// `--since`/`--until` as Unix milliseconds.
fn event_time(flag: &str, value: Option<&str>) -> crate::Result<Option<i64>> {
    let Some(v) = value else { return Ok(None) };
    let t = crate::driver::exec::time::parse_since(v, std::time::SystemTime::now()).ok_or_else(
        || {
            crate::Error::Usage(format!(
                "{flag} {v:?}: {}",
                crate::driver::exec::time::SINCE_HELP
            ))
        },
    )?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Ok(Some(ms))
}

pub fn events(args: EventsArgs) -> crate::Result<Outcome> {
    let since = event_time("--since", args.since.as_deref())?;
    let until = event_time("--until", args.until.as_deref())?;
    let window = since.is_some() || until.is_some();
    let in_window =
        |e: &Event| since.is_none_or(|s| e.time >= s) && until.is_none_or(|u| e.time <= u);
    // How many to print of the backlog, and how many to ask for (the window is cut here).
    let limit = args.limit.unwrap_or(if window { EVENTS_MAX } else { 100 });
    let ask_for = if window {
        EVENTS_MAX
    } else {
        limit.clamp(1, EVENTS_MAX)
    };
    let (client, state) = args.client.resolve()?;
    let output = args.output;

    let path = format!("/v1/events?limit={ask_for}");
    let mut backlog: Vec<Event> = Vec::new();
    let fetched = wait_for_starting_agent(&state, || {
        backlog.clear();
        client.lines(&path, |line| {
            if let Ok(e) = serde_json::from_str::<Event>(line) {
                backlog.push(e);
            }
            true
        })
    });
    match fetched {
        Ok(()) => {}
        Err(ClientError::NotRunning(socket)) => {
            if args.follow {
                return Err(crate::Error::Failed(format!(
                    "cannot follow events: the agent is not running (nothing listens on {})",
                    socket.display()
                )));
            }
            backlog = ask(&args.client, "/v1/events", |s| {
                Ok(s.transaction(|tx| tx.recent_events(None, ask_for))?)
            })?;
        }
        Err(e) => return Err(crate::api::Error::from(e).into()),
    }
    // Followed events come after the newest one there is now, in or out of the window.
    let newest = backlog.last().map_or(0, |e| e.id);
    let shown: Vec<&Event> = backlog.iter().filter(|e| in_window(e)).collect();
    for e in &shown[shown.len().saturating_sub(limit)..] {
        if !print_event(e, output) {
            return Ok(Outcome::OK);
        }
    }
    let now = crate::reconcile::pass::now_ms();
    if !args.follow || until.is_some_and(|u| u < now) {
        return Ok(Outcome::OK);
    }
    let path = format!("/v1/events?after={newest}&limit={EVENTS_MAX}&follow=true");
    let followed = client.lines(&path, |line| match serde_json::from_str::<Event>(line) {
        Ok(e) if until.is_some_and(|u| e.time > u) => false,
        Ok(e) if in_window(&e) => print_event(&e, output),
        _ => true,
    });
    match followed {
        Ok(()) => Ok(Outcome::OK),
        Err(e) => Err(crate::api::Error::from(e).into()),
    }
}

pub fn apply(args: ApplyArgs) -> crate::Result<Outcome> {
    let (client, state) = args.client.resolve()?;
    let not_running = |e| match e {
        ClientError::NotRunning(s) => crate::Error::Failed(format!(
            "the agent is not running (nothing listens on {}); start it with `agent run`",
            s.display()
        )),
        e => crate::api::Error::from(e).into(),
    };
    let report: PassReport = match args.timeout {
        None => wait_for_starting_agent(&state, || client.call(true, "/v1/apply"))
            .map_err(not_running)?,
        Some(limit) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let (c, st) = (client.clone(), state.clone());
            std::thread::spawn(move || {
                let _ = tx.send(wait_for_starting_agent(&st, || c.call(true, "/v1/apply")));
            });
            match rx.recv_timeout(limit.0) {
                Ok(r) => r.map_err(not_running)?,
                Err(_) => return Ok(still_applying(&client, limit)),
            }
        }
    };
    let failed = !report.failed.is_empty() || !report.file_errors.is_empty();
    if args.output == OutputFormat::Json {
        print_json(&report)?;
    } else {
        println!(
            "pass {}: {} change(s) applied, {} failed, {} skipped, {} manifest error(s)",
            report.pass,
            report.applied.len(),
            report.failed.len(),
            report.skipped.len(),
            report.file_errors.len()
        );
        for a in &report.applied {
            println!("  applied: {a}");
        }
        for f in &report.failed {
            println!("  failed: {f}");
        }
        for f in &report.skipped {
            println!("  skipped: {f}");
        }
        for f in &report.file_errors {
            println!("  manifest error: {f}");
        }
    }
    Ok(if failed { Outcome::FAILED } else { Outcome::OK })
}

/// `agent apply --timeout` ran out: what is still in flight, on stderr; exit code 1.
fn still_applying(
    client: &crate::api::client::Client,
    limit: crate::manifest::units::Duration,
) -> Outcome {
    eprintln!("agent apply: the pass has not ended after {limit}; the agent goes on with it");
    if let Ok(status) = client.call::<StatusReport>(false, "/v1/status") {
        let now = crate::reconcile::pass::now_ms();
        for w in &status.in_flight {
            let secs = (now - w.since).max(0) / 1000;
            eprintln!("  in flight: {} ({}, {secs} s)", w.change, w.cause);
        }
    }
    Outcome::FAILED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(short_duration(5_000), "5s");
        assert_eq!(short_duration(125_000), "2m");
        assert_eq!(short_duration(7_200_000), "2h");
        assert_eq!(short_duration(3 * 86_400_000), "3d");
        assert_eq!(short_duration(-5), "0s");
    }

    #[test]
    fn table_aligns() {
        let t = table(&[
            vec!["A".into(), "BB".into(), "C".into()],
            vec!["aaa".into(), "b".into(), "c".into()],
        ]);
        assert_eq!(t, "A    BB  C\naaa  b   c\n");
    }

    fn row(name: &str, state: &str, labels: serde_json::Value) -> PsRow {
        serde_json::from_value(serde_json::json!({
            "name": name, "id": name, "state": state, "health": null, "image_digest": "",
            "ports": [], "started_at": null, "finished_at": null, "exit_code": null,
            "restarts": 0, "labels": labels,
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn ps_names(filters: &[&str], rows: &[PsRow]) -> Vec<String> {
        let f: Vec<PsFilter> = filters
            .iter()
            .map(|f| parse_ps_filter(f).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        rows.iter()
            .filter(|r| ps_matches(&f, r))
            .map(|r| r.name.clone())
            .collect()
    }

    /// Docker's rule: one key's filters are alternatives (labels excepted), keys combine.
    #[test]
    fn ps_filters() {
        let rows = [
            row("web-1", "running", serde_json::json!({"app": "shop"})),
            row(
                "web-2",
                "exited",
                serde_json::json!({"app": "shop", "tier": "web"}),
            ),
            row("db", "running", serde_json::json!({"app": "db"})),
        ];
        assert_eq!(ps_names(&["name=web"], &rows), ["web-1", "web-2"]);
        assert_eq!(ps_names(&["name=web-1", "name=db"], &rows), ["web-1", "db"]);
        assert_eq!(ps_names(&["state=running"], &rows), ["web-1", "db"]);
        assert_eq!(
            ps_names(&["state=running", "state=exited"], &rows),
            ["web-1", "web-2", "db"]
        );
        assert_eq!(ps_names(&["name=web", "state=running"], &rows), ["web-1"]);
        assert_eq!(ps_names(&["label=app=shop"], &rows), ["web-1", "web-2"]);
        assert_eq!(ps_names(&["label=app", "label=tier"], &rows), ["web-2"]);
        assert_eq!(
            ps_names(&["label=app=shop", "state=exited", "name=web"], &rows),
            ["web-2"]
        );
        assert!(ps_names(&["name=nope"], &rows).is_empty());
        for bad in ["name=", "label==x", "color=red", "name"] {
            assert!(parse_ps_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(url_escape("web-1.a_b"), "web-1.a_b");
        assert_eq!(url_escape("a/b c"), "a%2Fb%20c");
        assert_eq!(
            url_escape("db:/var/lib?x#y%"),
            "db%3A%2Fvar%2Flib%3Fx%23y%25"
        );
        assert_eq!(url_escape("é~"), "%C3%A9~");
    }
}
