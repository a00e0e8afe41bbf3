//! `agent monitor`, `agent logs`, `agent exec`, `agent kill`.
//!
//! These commands work on the exec driver's state directly (`<state-dir>/exec/`, the state
//! directory resolved as by every command: [`super::settings`]), with or without a running
//! agent: NAME is a container's name or id as recorded there (`agent kill` goes through
//! the agent when it runs, to record its event). `agent logs` takes any
//! number of names (none: every container), prefixes each line with its container's name when it
//! shows more than one, merges their past by time and follows them all at once with `-f`. (`agent stop` and
//! `agent start` go through the agent: see [`super::container`].) None of them starts
//! an async runtime: `monitor` and `exec` must stay single-threaded (libcontainer forks).

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use super::Outcome;
use crate::driver::exec::{self, ExecConfig, ExecDriver, ExecRequest, MonitorDriver, logs, paths};

const DEFAULT_STATE_DIR: &str = "/var/lib/agent";

#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// The agent's state directory (the agent passes its own).
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// The container's id.
    pub id: String,
    /// Internal: the waiting half after re-exec, with the container's init pid.
    #[arg(long, hide = true, requires = "wait_fds")]
    pub wait_pid: Option<i32>,
    /// Internal: inherited descriptors (stdout pipe, stderr pipe, lock).
    #[arg(long, hide = true, value_delimiter = ',')]
    pub wait_fds: Vec<i32>,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The containers' names (or ids); none: every container. With more than one, each line
    /// starts with the container's name (as `docker compose logs`).
    pub names: Vec<String>,
    /// Keep printing new output until the containers stop.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of each container (`all`: every line).
    #[arg(long, default_value = "all")]
    pub tail: String,
    /// Only lines since a time: RFC 3339 (2024-05-01T12:00:00Z), Unix seconds, or a duration
    /// before now (10m, 1h30m).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only lines before a time (same forms as --since); with -f, following ends at that time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Prefix each line with its time.
    #[arg(short, long)]
    pub timestamps: bool,
    /// No `name | ` prefix, even for several containers.
    #[arg(long)]
    pub no_log_prefix: bool,
    #[command(flatten)]
    pub client: super::daemon::ClientOpts,
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The container's name (or id).
    pub name: String,
    /// Pass the terminal's input to the command (input from a file or a pipe is always passed;
    /// without -i a terminal's is not, and the command reads /dev/null).
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Run as this user (name, uid, user:group, uid:gid); default: the container's user.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container; default: the container's.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Extra environment, KEY=VALUE (repeatable).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// The state directory (`--state-dir`), and the agent's socket, asked only to say whether a
    /// container that does not run is restarting.
    #[command(flatten)]
    pub client: super::daemon::ClientOpts,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// The containers' names (or ids).
    #[arg(required = true)]
    pub name: Vec<String>,
    /// The signal: a name (SIGTERM, TERM) or a number.
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[command(flatten)]
    pub client: super::daemon::ClientOpts,
}

fn driver(state_dir: &std::path::Path) -> MonitorDriver {
    MonitorDriver::new(ExecConfig::new(state_dir))
}

pub fn monitor(args: MonitorArgs) -> crate::Result<Outcome> {
    let code = match args.wait_pid {
        Some(pid) => exec::monitor::resume(&args.state_dir, &args.id, pid, &args.wait_fds)?,
        None => exec::monitor::run(&args.state_dir, &args.id)?,
    };
    Ok(Outcome(code.clamp(0, 255) as u8))
}

/// One container whose logs are shown, and the prefix of its lines.
struct LogSource {
    id: String,
    prefix: String,
}

pub fn logs(args: LogsArgs) -> crate::Result<Outcome> {
    let state_dir = args.client.settings()?.state_dir;
    let d = driver(&state_dir);
    let mut named: Vec<(String, String)> = Vec::new();
    if args.names.is_empty() {
        for info in d.list()? {
            named.push((info.name, info.id));
        }
    } else {
        for name in &args.names {
            let id = paths::resolve_name(&state_dir, name)?;
            if !named.iter().any(|(_, i)| *i == id) {
                named.push((name.clone(), id));
            }
        }
    }
    let prefixed = !args.no_log_prefix && args.names.len() != 1;
    let width = named.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let sources: Vec<LogSource> = named
        .into_iter()
        .map(|(name, id)| LogSource {
            id,
            prefix: if prefixed {
                format!("{name:<width$} | ")
            } else {
                String::new()
            },
        })
        .collect();
    let tail = match args.tail.as_str() {
        "all" | "-1" => None,
        n => Some(n.parse::<usize>().map_err(|_| {
            crate::Error::Usage(format!("--tail {n:?}: use a number of lines or `all`"))
        })?),
    };
    let time = |flag: &str, value: &Option<String>| match value {
        Some(s) => exec::time::parse_since(s, SystemTime::now())
            .map(Some)
            .ok_or_else(|| {
                crate::Error::Usage(format!("{flag} {s:?}: {}", exec::time::SINCE_HELP))
            }),
        None => Ok(None),
    };
    let since = time("--since", &args.since)?;
    let until = time("--until", &args.until)?;
    let filter = logs::Filter { tail, since, until };
    let timestamps = args.timestamps;
    // One whole line per write, so that lines of several containers never mix.
    let print = move |prefix: &str, r: &logs::Record| -> bool {
        let mut text = String::with_capacity(prefix.len() + r.log.len() + 40);
        text.push_str(prefix);
        if timestamps {
            text.push_str(&r.time);
            text.push(' ');
        }
        text.push_str(&r.log);
        if !prefix.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        match r.stream {
            logs::Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .is_ok()
            }
            logs::Stream::Stderr => std::io::stderr().lock().write_all(text.as_bytes()).is_ok(),
        }
    };
    // The past: of several containers, merged by time (RFC 3339 in UTC sorts as text).
    let mut past: Vec<(&str, logs::Record)> = Vec::new();
    for src in &sources {
        let dir = paths::container_dir(&state_dir, &src.id);
        past.extend(
            logs::read(&dir, &filter)?
                .into_iter()
                .map(|r| (src.prefix.as_str(), r)),
        );
    }
    if sources.len() > 1 {
        past.sort_by(|a, b| a.1.time.cmp(&b.1.time));
    }
    for (prefix, r) in &past {
        if !print(prefix, r) {
            return Ok(Outcome::OK);
        }
    }
    if !args.follow || until.is_some_and(|u| u <= SystemTime::now()) {
        return Ok(Outcome::OK);
    }
    // Then each container on its own thread until it stops or --until passes (the last one
    // ends the command).
    let follow_filter = logs::Filter {
        tail: None,
        since,
        until,
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .iter()
            .map(|src| {
                let d = d.clone();
                let dir = paths::container_dir(&state_dir, &src.id);
                let f = &follow_filter;
                scope.spawn(move || {
                    logs::follow(
                        &dir,
                        f,
                        |r| print(&src.prefix, r),
                        || {
                            until.is_some_and(|u| u < SystemTime::now())
                                || d.state(&src.id)
                                    .map(|i| !i.status.is_running())
                                    .unwrap_or(true)
                        },
                    )
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(r) => r?,
                Err(_) => {
                    return Err(crate::Error::Failed("following a log failed".into()));
                }
            }
        }
        Ok(Outcome::OK)
    })
}

/// `agent exec`'s exit code when the agent itself failed (no such container, not running, a
/// runtime error): Docker's 125. 126 and 127 are the command's "cannot execute" and "not
/// found" ([`exec::tenant::EXIT_NOT_FOUND`]); anything else is the command's own exit code.
pub const EXEC_FAILED: u8 = 125;

pub fn exec(args: ExecArgs) -> crate::Result<Outcome> {
    let (client, state) = match args.client.resolve() {
        Ok(v) => v,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "agent: {e}");
            return Ok(Outcome(EXEC_FAILED));
        }
    };
    match exec_inner(args, &state) {
        Ok(o) => Ok(o),
        Err(e @ crate::Error::Usage(_)) => Err(e),
        Err(crate::Error::Exec(exec::Error::ExecNotRunning { container, detail })) => {
            let msg = match restarting(&client, &container) {
                Some(row) => format!(
                    "container {container} is restarting (restart {} by its restart policy; its \
                     process exited{}); try again once `agent ps` shows it running",
                    row.restarts,
                    row.exit_code
                        .map(|c| format!(" with code {c}"))
                        .unwrap_or_default()
                ),
                None => format!("container {container} is not running: {detail}"),
            };
            let _ = writeln!(std::io::stderr(), "agent: {msg}");
            Ok(Outcome(EXEC_FAILED))
        }
        Err(e) => {
            // Not `eprintln!`: it panics when stderr is a closed pipe.
            let _ = writeln!(std::io::stderr(), "agent: {e}");
            Ok(Outcome(EXEC_FAILED))
        }
    }
}

/// The agent's `ps` row of `name` when the agent runs and says it is restarting.
fn restarting(client: &crate::api::Client, name: &str) -> Option<crate::api::types::PsRow> {
    let rows: Vec<crate::api::types::PsRow> = client.call(false, "/v1/ps").ok()?;
    rows.into_iter()
        .find(|r| r.name == name && r.state == "restarting")
}

fn exec_inner(args: ExecArgs, state_dir: &std::path::Path) -> crate::Result<Outcome> {
    let id = paths::resolve_name(state_dir, &args.name)?;
    let env = exec::tenant::parse_env(&args.env)?;
    let stdin_is_terminal = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if args.tty && !stdin_is_terminal {
        return Err(crate::Error::Usage(
            "-t needs a terminal on stdin (run without -t to pipe input)".into(),
        ));
    }
    // Without -i a terminal's input is not passed (as `docker exec`: the command would compete
    // with the shell for it); input from a file or a pipe is (`agent exec db -- mariadb <
    // dump.sql`).
    if !args.interactive
        && stdin_is_terminal
        && let Ok(null) = std::fs::File::open("/dev/null")
    {
        // SAFETY: dup2 onto stdin from a descriptor that stays valid for the call.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0) };
    }
    let req = ExecRequest {
        argv: args.command,
        env: env.into_iter().collect(),
        workdir: args.workdir,
        user: args.user,
        tty: args.tty,
    };
    // libcontainer and libcgroups log in this process, whose stderr is the command's stderr:
    // nothing of theirs is shown (their errors reach the message `agent exec` prints) unless
    // RUST_LOG asks for it.
    let wanted = std::env::var("RUST_LOG").unwrap_or_default();
    let mut directives = if wanted.is_empty() {
        "error".to_string()
    } else {
        wanted.clone()
    };
    for lib in ["libcontainer", "libcgroups"] {
        if !wanted.contains(lib) {
            directives.push_str(&format!(",{lib}=off"));
        }
    }
    let filter = tracing_subscriber::EnvFilter::builder().parse_lossy(directives);
    let quiet = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .finish();
    let code =
        tracing::subscriber::with_default(quiet, || exec::tenant::run(state_dir, &id, &req))?;
    Ok(Outcome(code.clamp(0, 255) as u8))
}

/// `agent kill`: through the agent when it runs (it signals and records a `container.kill`
/// event), else on the store and the exec driver directly (the same, the event included); a
/// container only the exec driver knows is signalled without an event.
pub fn kill(args: KillArgs) -> crate::Result<Outcome> {
    let sig = paths::parse_signal(&args.signal)?;
    let (client, state) = args.client.resolve()?;
    let mut failed = false;
    for name in &args.name {
        let path = format!(
            "/v1/containers/{}/kill?signal={sig}",
            super::daemon::url_escape(name)
        );
        let result = match super::daemon::wait_for_starting_agent(&state, || {
            client.call::<crate::reconcile::report::ActionReport>(true, &path)
        }) {
            Ok(_) => Ok(()),
            Err(crate::api::ClientError::NotRunning(_)) => kill_offline(&state, name, sig),
            // An agent that does not know it (another state directory's agent on the default
            // socket): a container of the exec driver alone is signalled directly.
            Err(e @ crate::api::ClientError::Api(_)) => match paths::resolve_name(&state, name) {
                Ok(id) => driver(&state).kill(&id, sig).map_err(Into::into),
                Err(_) => Err(crate::api::Error::from(e).into()),
            },
            Err(e) => Err(crate::api::Error::from(e).into()),
        };
        match result {
            Ok(()) => println!("{name}"),
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "agent: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { Outcome::FAILED } else { Outcome::OK })
}

fn kill_offline(state: &std::path::Path, name: &str, sig: i32) -> crate::Result<()> {
    use crate::reconcile::request::{self, RequestError};
    let d = driver(state);
    // The store when it can be had: an agent holding it but answering on another socket than
    // the one asked leaves the exec driver alone.
    let store = if state.join(crate::store::DB_FILE).exists() {
        match crate::store::Store::open(state) {
            Ok(s) => Some(s),
            Err(crate::store::Error::Locked { .. }) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    if let Some(store) = store {
        let store = std::sync::Mutex::new(store);
        match request::kill(&store, &d, name, sig) {
            Err(RequestError::NotFound(_)) => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(crate::Error::Failed(e.to_string())),
        }
    }
    let id = paths::resolve_name(state, name)?;
    d.kill(&id, sig)?;
    Ok(())
}
