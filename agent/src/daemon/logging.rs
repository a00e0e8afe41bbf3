//! Logging set-up (tracing-subscriber), chosen by where the output goes.
//!
//! - On a terminal: human-readable lines with colours.
//! - Under systemd (stderr is the journal stream named by `JOURNAL_STREAM`, `dev:inode` equal to
//!   stderr's): straight to journald over its native protocol (the `tracing-journald` crate),
//!   every field of the event and of its spans as a journal field of its own, upper-cased and
//!   without a prefix: `CONTAINER=web`, `FILE=/etc/agent.d/web.yaml`, `PASS=12` (the pass span),
//!   `ERROR=...`, besides `MESSAGE`, `PRIORITY`, `TARGET`, `CODE_FILE`/`CODE_LINE` and
//!   `SYSLOG_IDENTIFIER=agent`. So `journalctl -u agent CONTAINER=web` shows one container's
//!   lines and `journalctl -p warning` works. When the journal's socket
//!   (`/run/systemd/journal/socket`) cannot be reached, lines go to stderr instead, without a
//!   timestamp (journald adds its own) and prefixed with the syslog priority (`<3>` error ...
//!   `<7>` debug), which journald turns into the entry's priority.
//! - Anywhere else (a pipe, a file, a log shipper): one JSON object per line.
//!
//! `log.format` in the config forces one of them (`journald`: the native protocol, with the
//! same fallback). The level comes from `RUST_LOG` when it is set, else from `log.level`
//! (default `info`). Only `agent run` uses these rules; the short-lived commands keep plain
//! human-readable warnings on stderr. The choice is [`choose`], a pure function of the
//! settings and of what [`Host::detect`] found.
//!
//! A log write never fails and never panics: [`Stderr`] swallows write errors (EPIPE once the
//! reader of stderr is gone, ENOSPC on a full disk, EIO on a hung-up terminal) and counts the
//! lines it lost. tracing-subscriber would otherwise report the error with its own `eprintln!`,
//! which panics on the same dead stderr and takes down the task that logged (the signal handler
//! among them). When a write succeeds again, one line `N log lines dropped` (in the log's own
//! format) comes first. The journald layer ignores send errors the same way.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::config::LogFormat;

/// What `main` needs to set up logging.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// The filter when `RUST_LOG` is not set.
    pub level: String,
    pub format: LogFormat,
    /// `agent run`: apply [`LogFormat::Auto`]'s detection. Other commands: human-readable.
    pub daemon: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            format: LogFormat::Human,
            daemon: false,
        }
    }
}

/// What the log format depends on besides the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Host {
    /// stderr is a terminal.
    pub terminal: bool,
    /// stderr is the journal stream systemd named in `JOURNAL_STREAM`.
    pub journal: bool,
}

impl Host {
    /// Looks at this process's stderr and environment.
    pub fn detect() -> Host {
        Host {
            terminal: std::io::stderr().is_terminal(),
            journal: journal_stream_is(
                std::env::var("JOURNAL_STREAM").ok().as_deref(),
                std::fs::metadata("/proc/self/fd/2")
                    .ok()
                    .map(|m| (m.dev(), m.ino())),
            ),
        }
    }
}

/// The format `format` resolves to on `host`: `Auto` is human-readable for the short commands
/// and on a terminal, journald when stderr is the journal, JSON lines otherwise.
pub fn choose(format: LogFormat, daemon: bool, host: Host) -> LogFormat {
    match format {
        LogFormat::Auto if !daemon => LogFormat::Human,
        LogFormat::Auto if host.terminal => LogFormat::Human,
        LogFormat::Auto if host.journal => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Json,
        other => other,
    }
}

/// The format `Auto` resolves to here and now.
pub fn resolve(format: LogFormat, daemon: bool) -> LogFormat {
    choose(format, daemon, Host::detect())
}

/// Whether `JOURNAL_STREAM` (`dev:inode`, as systemd sets it) names the file `stderr`
/// (`(dev, inode)` of fd 2) is.
pub fn journal_stream_is(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let (Some(v), Some((sdev, sino))) = (journal_stream, stderr) else {
        return false;
    };
    let Some((dev, ino)) = v.trim().split_once(':') else {
        return false;
    };
    matches!((dev.parse::<u64>(), ino.parse::<u64>()), (Ok(d), Ok(i)) if d == sdev && i == sino)
}

/// Installs the global subscriber. Safe to call once; later calls do nothing.
pub fn init(settings: &LogSettings) {
    let filter = || match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::builder().parse_lossy(v),
        _ => EnvFilter::builder().parse_lossy(&settings.level),
    };
    let format = resolve(settings.format, settings.daemon);
    let mut journal_error = None;
    if format == LogFormat::Journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                use tracing_subscriber::layer::SubscriberExt;
                use tracing_subscriber::util::SubscriberInitExt;
                // Levels map to the priorities of the stderr fallback (info 6, not notice 5).
                let priorities = tracing_journald::PriorityMappings {
                    info: tracing_journald::Priority::Informational,
                    ..tracing_journald::PriorityMappings::new()
                };
                let layer = layer
                    .with_field_prefix(None)
                    .with_priority_mappings(priorities)
                    .with_syslog_identifier("agent".into());
                let _ = tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .try_init();
                return;
            }
            Err(e) => journal_error = Some(e),
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(Stderr::new(format));
    let _ = match format {
        LogFormat::Human | LogFormat::Auto => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
        LogFormat::Journald => builder
            .with_ansi(false)
            .event_format(JournaldFormat)
            .try_init(),
    };
    if let Some(e) = journal_error {
        tracing::warn!(error = %e, "cannot reach journald's socket; logging to stderr with priority prefixes");
    }
}

/// The log's writer: stderr whose write errors are swallowed and counted (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Stderr {
    format: LogFormat,
}

/// Log lines lost to failed writes since the last successful one.
static DROPPED: AtomicU64 = AtomicU64::new(0);

impl Stderr {
    pub fn new(format: LogFormat) -> Stderr {
        Stderr { format }
    }

    /// Log lines lost to failed writes and not yet reported by a marker line.
    pub fn dropped() -> u64 {
        DROPPED.load(Ordering::Relaxed)
    }
}

/// The line that says `n` log lines were lost, in the log's format.
fn dropped_marker(format: LogFormat, n: u64) -> String {
    let msg = format!("{n} log lines dropped: stderr was not writable");
    match format {
        LogFormat::Json => format!(
            "{}\n",
            serde_json::json!({"level": "WARN", "target": "agent::logging", "message": msg, "dropped": n})
        ),
        LogFormat::Journald => format!("<4>agent::logging: {msg}\n"),
        LogFormat::Human | LogFormat::Auto => format!(" WARN agent::logging: {msg}\n"),
    }
}

/// Writes one formatted log line (tracing-subscriber hands over whole lines) to `out`; on
/// failure counts it in [`DROPPED`]. Always reports success.
fn write_line(out: &mut impl Write, format: LogFormat, buf: &[u8]) {
    let pending = DROPPED.load(Ordering::Relaxed);
    if pending > 0 {
        if out
            .write_all(dropped_marker(format, pending).as_bytes())
            .is_err()
        {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        DROPPED.fetch_sub(pending, Ordering::Relaxed);
    }
    if out.write_all(buf).is_err() {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        write_line(&mut std::io::stderr().lock(), self.format, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Stderr {
        *self
    }
}

/// `<prio>target: message key=value ...` lines for journald.
pub struct JournaldFormat;

/// syslog priority of a tracing level.
pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

impl<S, N> FormatEvent<S, N> for JournaldFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        write!(
            writer,
            "<{}>{}: ",
            syslog_priority(meta.level()),
            meta.target()
        )?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                write!(writer, "{}", span.name())?;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, "{{{fields}}}")?;
                }
                write!(writer, ": ")?;
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn journald_lines_carry_the_priority() {
        let buf = Buf::default();
        let b2 = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || b2.clone())
            .with_ansi(false)
            .event_format(JournaldFormat)
            .with_max_level(Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("pass", n = 3);
            let _g = span.enter();
            tracing::warn!(container = "web", "restart failed");
            tracing::debug!("detail");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            lines[0].starts_with("<4>agent::daemon::logging::tests: pass{n=3}: "),
            "{out}"
        );
        assert!(
            lines[0].ends_with("restart failed container=\"web\""),
            "{out}"
        );
        assert!(lines[1].starts_with("<7>"), "{out}");
    }

    /// A writer that fails while `fail` is set.
    struct Flaky<'a> {
        out: &'a mut Vec<u8>,
        fail: bool,
    }
    impl Write for Flaky<'_> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.fail {
                return Err(std::io::Error::from_raw_os_error(libc::EPIPE));
            }
            self.out.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn failed_writes_are_counted_then_reported_once() {
        let mut out = Vec::new();
        let before = DROPPED.load(Ordering::Relaxed);
        {
            let mut w = Flaky {
                out: &mut out,
                fail: true,
            };
            write_line(&mut w, LogFormat::Json, b"{\"a\":1}\n");
            write_line(&mut w, LogFormat::Json, b"{\"a\":2}\n");
            assert!(Stderr::dropped() >= before + 2);
            w.fail = false;
            write_line(&mut w, LogFormat::Json, b"{\"a\":3}\n");
            write_line(&mut w, LogFormat::Json, b"{\"a\":4}\n");
        }
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let marker: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert!(marker["dropped"].as_u64().unwrap() >= 2, "{text}");
        assert_eq!(lines[1], "{\"a\":3}");
        assert_eq!(lines[2], "{\"a\":4}");
    }

    #[test]
    fn priorities() {
        assert_eq!(syslog_priority(&Level::ERROR), 3);
        assert_eq!(syslog_priority(&Level::WARN), 4);
        assert_eq!(syslog_priority(&Level::INFO), 6);
        assert_eq!(syslog_priority(&Level::TRACE), 7);
    }

    #[test]
    fn auto_is_human_for_short_commands() {
        assert_eq!(resolve(LogFormat::Auto, false), LogFormat::Human);
        assert_eq!(resolve(LogFormat::Json, false), LogFormat::Json);
    }

    #[test]
    fn the_journal_is_chosen_when_stderr_is_the_journal_stream() {
        let journal = Host {
            terminal: false,
            journal: true,
        };
        let pipe = Host::default();
        let tty = Host {
            terminal: true,
            journal: false,
        };
        assert_eq!(choose(LogFormat::Auto, true, journal), LogFormat::Journald);
        assert_eq!(choose(LogFormat::Auto, true, pipe), LogFormat::Json);
        assert_eq!(choose(LogFormat::Auto, true, tty), LogFormat::Human);
        assert_eq!(choose(LogFormat::Auto, false, journal), LogFormat::Human);
        assert_eq!(choose(LogFormat::Json, true, journal), LogFormat::Json);
        assert_eq!(choose(LogFormat::Journald, true, pipe), LogFormat::Journald);

        assert!(journal_stream_is(Some("8:12345"), Some((8, 12345))));
        assert!(journal_stream_is(Some("8:12345\n"), Some((8, 12345))));
        // stderr was redirected after systemd set the variable: another file.
        assert!(!journal_stream_is(Some("8:12345"), Some((8, 12346))));
        assert!(!journal_stream_is(Some("9:12345"), Some((8, 12345))));
        assert!(!journal_stream_is(None, Some((8, 12345))));
        assert!(!journal_stream_is(Some("8:12345"), None));
        assert!(!journal_stream_is(Some("garbage"), Some((8, 12345))));
        assert!(!journal_stream_is(Some(""), Some((0, 0))));
    }
}
