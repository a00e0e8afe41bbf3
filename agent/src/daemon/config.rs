//! The agent's own configuration file (`/etc/agent/config.toml` by default).
//!
//! Decisions:
//! - TOML with `snake_case` keys (as containerd's `config.toml`), every key optional: a missing
//!   file means "all defaults", so `agent run` works on a fresh host without one. A file given with
//!   `--config` that does not exist is an error.
//! - Validated like the manifests: unknown keys are refused with a "did you mean", wrong types and
//!   out-of-range values name the file, line, column and the field, and say what is allowed.
//! - Durations are written in the one grammar of the manifests, Go's and Docker's
//!   ([`crate::manifest::units::Duration`]): `"100ms"`, `"60s"`, `"5m"`, `"1h30m"`. (Before
//!   0.2 this file took humantime's forms too, `"5min"`, `"1h 30m"`, `"2days"`; they are refused
//!   now, with the file, line, key and the allowed form.)
//! - Command-line flags (`--manifests`, `--state-dir`, `--stop-containers-on-exit`) override the
//!   file; see [`Config::apply_overrides`].

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest value of the duration keys `resync_interval`, `restart.start`, `restart.cap`
/// and `restart.reset_after`: 24 hours (the registry timeouts have their own bound, 7 days).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Default location of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/agent/config.toml";

/// The whole configuration, defaults filled in and validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory of manifest files (`*.yaml`, `*.yml`).
    pub manifests_dir: PathBuf,
    /// The agent's state directory (store, images, container state).
    pub state_dir: PathBuf,
    /// Path of the API's Unix socket (created 0600, root only).
    pub socket: PathBuf,
    /// Period of the drift-repairing resync pass.
    #[serde(with = "duration")]
    pub resync_interval: Duration,
    /// How many events the store keeps before dropping the oldest.
    pub event_cap: u64,
    /// Stop every container when the agent exits (SIGTERM). Default: leave them running.
    pub stop_containers_on_exit: bool,
    /// How many changes are applied at once (creates, starts, stops, pulls of different
    /// objects; one at a time per object). Docker Compose's default parallelism is 64.
    pub workers: usize,
    /// Restart backoff of crash-looping containers.
    pub restart: BackoffConfig,
    /// The default bridge network.
    pub network: NetworkConfig,
    /// Graph driver selection.
    pub graph: GraphConfig,
    /// Registry access.
    pub registries: RegistriesConfig,
    /// Logging.
    pub log: LogConfig,
    /// CDI spec directories for `devices: [vendor.com/class=name]`, later ones winning.
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// The Prometheus endpoint over TCP.
    pub metrics: MetricsConfig,
    /// Defaults of the containers' logs (a manifest's `logging` wins).
    pub container_logs: ContainerLogsConfig,
    /// `agent run --remove-orphans` (command line only, for one start): containers and layers
    /// that the store does not account for are removed instead of refused or kept (see
    /// [`crate::reconcile::recover`]).
    #[serde(skip)]
    pub remove_orphans: bool,
}

/// Exponential backoff between automatic restarts (Docker's restart manager: 100 ms, doubling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// First delay.
    #[serde(with = "duration")]
    pub start: Duration,
    /// Multiplier applied after every restart that followed a short run.
    pub factor: f64,
    /// Longest delay.
    #[serde(with = "duration")]
    pub cap: Duration,
    /// A container that ran at least this long before exiting starts again from `start`.
    #[serde(with = "duration")]
    pub reset_after: Duration,
}

/// The default bridge network the agent creates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Bridge interface name (at most 15 bytes).
    pub bridge: String,
    /// IPv4 subnet addresses are handed out from, in CIDR notation.
    pub subnet: String,
    /// MTU of the bridge and the veth pairs.
    pub mtu: u32,
    /// Names what the agent creates on the host: its nftables table (`ip <instance>`), iptables
    /// chain prefix (`<INSTANCE>-FORWARD`, ...) and network namespaces (`<instance>-<id>`).
    /// Start-up cleanup removes what carries these names and no record explains, so two agents
    /// on one host need different values. Lowercase letters, digits and `_`, 1 to 16.
    pub instance: String,
    /// Prefix of the host-side veth names (`<prefix><8 hex>`), 1 to 6 characters.
    pub veth_prefix: String,
    /// Firewall backend: `auto` (nftables when `nft` works, else iptables), `nftables`,
    /// `iptables`.
    pub firewall: crate::driver::network::FirewallChoice,
    /// Where the networks' DNS server sends names it does not know (`"IP:PORT"`); empty (the
    /// default): the name servers of the host's `/etc/resolv.conf`.
    pub dns_upstreams: Vec<std::net::SocketAddr>,
}

/// Which graph driver container root filesystems use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GraphConfig {
    pub driver: GraphDriverChoice,
}

/// `auto` picks overlay where it works, else vfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GraphDriverChoice {
    #[default]
    Auto,
    Overlay,
    Vfs,
}

impl GraphDriverChoice {
    /// The graph driver's own selector input: `None` means "detect".
    pub fn to_driver_kind(self) -> Option<crate::driver::graph::DriverKind> {
        match self {
            GraphDriverChoice::Auto => None,
            GraphDriverChoice::Overlay => Some(crate::driver::graph::DriverKind::Overlay),
            GraphDriverChoice::Vfs => Some(crate::driver::graph::DriverKind::Vfs),
        }
    }
}

/// Registry settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistriesConfig {
    /// `host[:port]` of registries reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Longest time a pull may take as a whole (it resumes where it stopped at the next try).
    #[serde(with = "duration")]
    pub pull_timeout: Duration,
    /// Longest wait for the next bytes from a registry.
    #[serde(with = "duration")]
    pub read_timeout: Duration,
    /// Docker credential helpers (`docker-credential-<name>`, on the agent's `PATH`) that a
    /// `config.json`'s `credsStore`/`credHelpers` may make the agent run; any other is refused.
    pub credential_helpers: Vec<String>,
    /// Mirrors per registry, tried in order before it: `"docker.io" = ["http://127.0.0.1:5000"]`
    /// (`crate::driver::graph::pull::mirror`).
    pub mirrors: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for RegistriesConfig {
    fn default() -> Self {
        RegistriesConfig {
            insecure: Vec::new(),
            pull_timeout: Duration::from_secs(30 * 60),
            read_timeout: Duration::from_secs(60),
            credential_helpers: Vec::new(),
            mirrors: Default::default(),
        }
    }
}

/// `[metrics]`: Prometheus text at `GET /metrics`, always on the API socket and, when `listen`
/// is set, on that TCP address too (that listener serves `/metrics` only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `address:port` to listen on, e.g. `"127.0.0.1:9323"` (Docker's metrics port). Off by
    /// default; anyone who can reach it can read the containers' names, labels and usage.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "socket_addr"
    )]
    pub listen: Option<std::net::SocketAddr>,
}

/// `metrics.listen`: an `address:port`, with an error that says how to write it.
fn socket_addr<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::net::SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "metrics.listen: {s:?} is not an address and port; write it like \"127.0.0.1:9323\" \
             (\"[::1]:9323\" for IPv6)"
        ))
    })
}

/// Logging settings. `RUST_LOG`, when set, wins over `level`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter directive: `error`, `warn`, `info`, `debug`, `trace`, or e.g.
    /// `info,agent::reconcile=debug`.
    pub level: String,
    pub format: LogFormat,
}

/// Defaults of the containers' logs, for containers created from now on (a change does not
/// recreate existing ones, as Docker's `log-opts` in daemon.json).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerLogsConfig {
    /// Rotate a container's log file at this size (`"10Mi"`).
    pub max_size: crate::manifest::ByteSize,
    /// Log files kept per container, the current one included (1-100).
    pub max_files: u32,
    /// The systemd journal's native socket, for `logging: {driver: journald}`.
    pub journal_socket: PathBuf,
}

impl Default for ContainerLogsConfig {
    fn default() -> Self {
        let d = crate::driver::exec::spec::LogConfig::default();
        ContainerLogsConfig {
            max_size: crate::manifest::ByteSize(d.max_size),
            max_files: d.max_files,
            journal_socket: PathBuf::from("/run/systemd/journal/socket"),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable on a terminal, journald under systemd (`JOURNAL_STREAM`), JSON lines
    /// otherwise.
    #[default]
    Auto,
    Human,
    Json,
    /// journald's native protocol with a field per event and span field (`CONTAINER=`,
    /// `FILE=`, `PASS=`); priority-prefixed lines on stderr when its socket is unreachable.
    Journald,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            manifests_dir: PathBuf::from("/etc/agent.d"),
            state_dir: PathBuf::from("/var/lib/agent"),
            socket: PathBuf::from(crate::api::DEFAULT_SOCKET),
            resync_interval: Duration::from_secs(60),
            event_cap: 10_000,
            stop_containers_on_exit: false,
            workers: 64,
            restart: BackoffConfig::default(),
            network: NetworkConfig::default(),
            graph: GraphConfig::default(),
            registries: RegistriesConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            cdi_spec_dirs: crate::driver::exec::cdi::DEFAULT_DIRS
                .iter()
                .map(PathBuf::from)
                .collect(),
            container_logs: ContainerLogsConfig::default(),
            remove_orphans: false,
        }
    }
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            start: Duration::from_millis(100),
            factor: 2.0,
            cap: Duration::from_secs(300),
            reset_after: Duration::from_secs(10),
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            bridge: "agent0".into(),
            subnet: "10.213.0.0/16".into(),
            mtu: 1500,
            instance: "agent".into(),
            veth_prefix: "agv".into(),
            firewall: crate::driver::network::FirewallChoice::Auto,
            dns_upstreams: Vec::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Auto,
        }
    }
}

/// A configuration error, pointing into the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// Overrides from the command line; `None` keeps the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub manifests_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub stop_containers_on_exit: bool,
    pub remove_orphans: bool,
}

impl Config {
    /// Loads `path`. A missing file is all defaults when `required` is false (the default path),
    /// an error when true (a path the user named).
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses and validates the text of a config file; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let at = |offset: usize, message: String| {
            let (line, column) = line_col(text, offset);
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let config: Config = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let message = improve_message(e.message());
            // A bad value (a duration, a size, an enum) is named by its key, as the range
            // checks below name theirs.
            match key_at(text, offset) {
                Some(key) if !message.starts_with("unknown key") => {
                    at(offset, format!("{key}: {message}"))
                }
                _ => at(offset, message),
            }
        })?;
        if let Err((field, message)) = config.validate() {
            let offset = span_of(text, &field).unwrap_or(0);
            return Err(at(offset, format!("{}: {message}", field.join("."))));
        }
        Ok(config)
    }

    /// Applies command-line overrides.
    pub fn apply_overrides(&mut self, o: Overrides) {
        if let Some(d) = o.manifests_dir {
            self.manifests_dir = d;
        }
        if let Some(d) = o.state_dir {
            self.state_dir = d;
        }
        if let Some(s) = o.socket {
            self.socket = s;
        }
        if o.stop_containers_on_exit {
            self.stop_containers_on_exit = true;
        }
        self.remove_orphans = o.remove_orphans;
    }

    /// Checks value ranges. Returns the failing field's path and what is allowed.
    fn validate(&self) -> Result<(), (Vec<&'static str>, String)> {
        fn fail<T>(
            field: &[&'static str],
            msg: impl Into<String>,
        ) -> Result<T, (Vec<&'static str>, String)> {
            Err((field.to_vec(), msg.into()))
        }
        for (field, p) in [
            ("manifests_dir", &self.manifests_dir),
            ("state_dir", &self.state_dir),
            ("socket", &self.socket),
        ] {
            if !p.is_absolute() {
                return fail(&[field], format!("{} is not an absolute path", p.display()));
            }
        }
        if self.resync_interval < Duration::from_secs(1) {
            return fail(&["resync_interval"], "must be at least 1s");
        }
        for (field, d) in [
            ("pull_timeout", self.registries.pull_timeout),
            ("read_timeout", self.registries.read_timeout),
        ] {
            if d < Duration::from_secs(1) || d > Duration::from_secs(7 * 24 * 3600) {
                return fail(
                    &["registries", field],
                    format!(
                        "{} is out of range; allowed: 1s to 168h",
                        crate::manifest::units::Duration(d)
                    ),
                );
            }
        }
        if self.container_logs.max_size.0 == 0 {
            return fail(
                &["container_logs", "max_size"],
                "must be more than 0, e.g. \"10Mi\"",
            );
        }
        if !(1..=100).contains(&self.container_logs.max_files) {
            return fail(
                &["container_logs", "max_files"],
                format!(
                    "{} is out of range; allowed: 1 to 100",
                    self.container_logs.max_files
                ),
            );
        }
        if !self.container_logs.journal_socket.is_absolute() {
            return fail(
                &["container_logs", "journal_socket"],
                format!(
                    "{} is not an absolute path",
                    self.container_logs.journal_socket.display()
                ),
            );
        }
        if !(1..=1024).contains(&self.workers) {
            return fail(
                &["workers"],
                format!("{} is out of range; allowed: 1 to 1024", self.workers),
            );
        }
        // Every duration is bounded: deadlines are `Instant + Duration` and the backoff
        // multiplies (`factor` up to 100), both of which panic on overflow.
        for (field, d) in [
            (&["resync_interval"][..], self.resync_interval),
            (&["restart", "start"][..], self.restart.start),
            (&["restart", "cap"][..], self.restart.cap),
            (&["restart", "reset_after"][..], self.restart.reset_after),
        ] {
            if d > MAX_DURATION {
                return fail(
                    field,
                    format!(
                        "{} is too long; allowed: at most 24h",
                        crate::manifest::units::Duration(d),
                    ),
                );
            }
        }
        if self.event_cap < 100 {
            return fail(
                &["event_cap"],
                format!("{} is too small; allowed: 100 or more", self.event_cap),
            );
        }
        let r = &self.restart;
        if r.start.is_zero() {
            return fail(&["restart", "start"], "must be more than 0s");
        }
        if !(r.factor.is_finite() && (1.0..=100.0).contains(&r.factor)) {
            return fail(
                &["restart", "factor"],
                format!("{} is out of range; allowed: 1 to 100", r.factor),
            );
        }
        if r.cap < r.start {
            return fail(
                &["restart", "cap"],
                format!(
                    "{} is less than restart.start ({})",
                    crate::manifest::units::Duration(r.cap),
                    crate::manifest::units::Duration(r.start)
                ),
            );
        }
        let n = &self.network;
        if n.bridge.is_empty()
            || n.bridge.len() > 15
            || n.bridge.contains(['/', ':'])
            || n.bridge.chars().any(char::is_whitespace)
            || n.bridge == "."
            || n.bridge == ".."
        {
            return fail(
                &["network", "bridge"],
                format!(
                    "{:?} is not an interface name; allowed: 1 to 15 bytes without '/', ':' or spaces",
                    n.bridge
                ),
            );
        }
        if let Err(msg) = parse_cidr(&n.subnet) {
            return fail(&["network", "subnet"], msg);
        }
        if !(68..=65535).contains(&n.mtu) {
            return fail(
                &["network", "mtu"],
                format!("{} is out of range; allowed: 68 to 65535", n.mtu),
            );
        }
        let opts = crate::driver::network::DriverOptions {
            instance: n.instance.clone(),
            veth_prefix: n.veth_prefix.clone(),
            ..Default::default()
        };
        if let Err(crate::driver::network::Error::Options { field, reason }) = opts.validate() {
            let field = if field == "veth_prefix" {
                "veth_prefix"
            } else {
                "instance"
            };
            return fail(&["network", field], reason);
        }
        if opts.owns_veth_name(&n.bridge) {
            let why = format!("{:?} is named like the agent's veths", n.bridge);
            return fail(
                &["network", "bridge"],
                format!("{why}; choose another name"),
            );
        }
        for reg in &self.registries.insecure {
            if reg.is_empty() || reg.contains('/') || reg.contains("://") {
                return fail(
                    &["registries", "insecure"],
                    format!("{reg:?} is not a registry host; write host or host:port"),
                );
            }
        }
        for name in &self.registries.credential_helpers {
            if !crate::driver::graph::pull::helper::valid_name(name) {
                return fail(
                    &["registries", "credential_helpers"],
                    format!(
                        "{name:?} is not a credential helper name; write the part after \
                         docker-credential-, e.g. \"pass\" or \"ecr-login\""
                    ),
                );
            }
        }
        if let Err(e) = crate::driver::graph::pull::mirror::check(&self.registries.mirrors) {
            return fail(&["registries", "mirrors"], e);
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            return fail(
                &["log", "level"],
                format!(
                    "{:?}: {e}; allowed: error, warn, info, debug, trace or a tracing filter",
                    self.log.level
                ),
            );
        }
        Ok(())
    }
}

/// Parses `a.b.c.d/len` with `len` between 8 and 30 and the address equal to the network address.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad =
        || format!("{s:?} is not an IPv4 subnet; write it like 10.213.0.0/16 (prefix 8 to 30)");
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if !(8..=30).contains(&len) {
        return Err(bad());
    }
    let mask = u32::MAX << (32 - u32::from(len));
    if u32::from(addr) & !mask != 0 {
        let net = Ipv4Addr::from(u32::from(addr) & mask);
        return Err(format!(
            "{s:?} has host bits set; did you mean {net}/{len}?"
        ));
    }
    Ok((addr, len))
}

/// serde's "unknown field `x`, expected one of `a`, `b`" gains a "did you mean".
fn improve_message(message: &str) -> String {
    let message = message.trim_end();
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let best = candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(field, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let allowed = candidates.join(", ");
    match best {
        Some((_, c)) => format!("unknown key `{field}`; did you mean `{c}`? (allowed: {allowed})"),
        None => format!("unknown key `{field}` (allowed: {allowed})"),
    }
}

/// Byte offset of the value at `path` in the TOML text, if present.
fn span_of(text: &str, path: &[&str]) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let (first, rest) = path.split_first()?;
    let mut value = root.get_ref().get(*first)?;
    for key in rest {
        value = value.get_ref().get(*key)?;
    }
    Some(value.span().start)
}

/// The dotted key (`restart.start`) whose value (not a table) starts at byte `offset`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    fn walk(table: &toml::de::DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
        for (k, v) in table.iter() {
            if let Some(inner) = v.get_ref().as_table() {
                path.push(k.get_ref().to_string());
                if walk(inner, offset, path) {
                    return true;
                }
                path.pop();
            } else if v.span().start == offset {
                path.push(k.get_ref().to_string());
                return true;
            }
        }
        false
    }
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    walk(root.get_ref(), offset, &mut path).then(|| path.join("."))
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// `Duration` in the manifests' grammar ("100ms", "5m", "1h30m"): see
/// [`crate::manifest::units::Duration`].
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::manifest::units;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&units::Duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<units::Duration>()
            .map(units::Duration::get)
            .map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("/etc/agent/config.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        let d = Config::default();
        assert_eq!(d.resync_interval, Duration::from_secs(60));
        assert_eq!(d.restart.start, Duration::from_millis(100));
        assert_eq!(d.restart.factor, 2.0);
        assert_eq!(d.network.subnet, "10.213.0.0/16");
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            r#"
manifests_dir = "/srv/m"
state_dir = "/srv/s"
socket = "/run/x.sock"
resync_interval = "2m"
event_cap = 500
stop_containers_on_exit = true
[restart]
start = "50ms"
factor = 3
cap = "1m"
reset_after = "30s"
[network]
bridge = "br-test"
subnet = "10.9.0.0/24"
mtu = 1400
[graph]
driver = "vfs"
[registries]
insecure = ["127.0.0.1:5000"]
credential_helpers = ["pass", "ecr-login"]
[registries.mirrors]
"docker.io" = ["http://127.0.0.1:5000", "https://mirror.example"]
[log]
level = "debug"
format = "json"
[metrics]
listen = "127.0.0.1:9323"
"#,
        )
        .unwrap();
        assert_eq!(c.manifests_dir, PathBuf::from("/srv/m"));
        assert_eq!(c.resync_interval, Duration::from_secs(120));
        assert_eq!(c.restart.factor, 3.0);
        assert_eq!(c.restart.start, Duration::from_millis(50));
        assert_eq!(c.graph.driver, GraphDriverChoice::Vfs);
        assert_eq!(c.log.format, LogFormat::Json);
        assert!(c.stop_containers_on_exit);
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9323".parse().unwrap()));
        assert_eq!(c.registries.credential_helpers, ["pass", "ecr-login"]);
        assert_eq!(c.registries.mirrors["docker.io"].len(), 2);
        // A round trip through the serializer gives the same config.
        let text = toml::to_string(&c).unwrap();
        assert_eq!(parse(&text).unwrap(), c);
    }

    #[test]
    fn unknown_key_suggests() {
        let e = parse("resync_intervall = \"5s\"\n").unwrap_err();
        assert!(e.starts_with("/etc/agent/config.toml:1:1: "), "{e}");
        assert!(e.contains("did you mean `resync_interval`"), "{e}");
        let e = parse("[network]\nmtu = 1500\nsubnett = \"10.0.0.0/8\"\n").unwrap_err();
        assert!(e.contains(":3:1:"), "{e}");
        assert!(e.contains("did you mean `subnet`"), "{e}");
        let e = parse("zzzz = 1\n").unwrap_err();
        assert!(!e.contains("did you mean"), "{e}");
        assert!(e.contains("allowed: manifests_dir"), "{e}");
    }

    #[test]
    fn network_names_and_firewall_are_checked() {
        let c = parse(
            "[network]\ninstance = \"agentex\"\nveth_prefix = \"agx\"\nfirewall = \"iptables\"\n",
        )
        .unwrap();
        assert_eq!(c.network.instance, "agentex");
        assert_eq!(c.network.veth_prefix, "agx");
        assert_eq!(
            c.network.firewall,
            crate::driver::network::FirewallChoice::Iptables
        );
        let e = parse("[network]\ninstance = \"Bad-Name\"\n").unwrap_err();
        assert!(e.contains(":2:12: network.instance"), "{e}");
        let e = parse("[network]\nveth_prefix = \"muchtoolong\"\n").unwrap_err();
        assert!(e.contains("network.veth_prefix"), "{e}");
        let e = parse("[network]\nveth_prefix = \"veth\"\n").unwrap_err();
        assert!(
            e.contains("network.veth_prefix") && e.contains("CNI"),
            "{e}"
        );
        let e = parse("[network]\nbridge = \"agv0123abcd\"\n").unwrap_err();
        assert!(e.contains("network.bridge"), "{e}");
        let e = parse("[network]\nfirewall = \"pf\"\n").unwrap_err();
        assert!(
            e.contains(":2:12:") && e.contains("`auto`, `nftables`, `iptables`"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_line_and_field() {
        let e = parse("\n[restart]\nstart = \"soon\"\n").unwrap_err();
        assert!(e.contains(":3:9: restart.start: invalid duration"), "{e}");
        let e = parse("[network]\nsubnet = \"10.213.0.1/16\"\n").unwrap_err();
        assert!(e.contains(":2:10:"), "{e}");
        assert!(e.contains("network.subnet"), "{e}");
        assert!(e.contains("did you mean 10.213.0.0/16"), "{e}");
        let e = parse("[network]\nmtu = 10\n").unwrap_err();
        assert!(e.contains(":2:7: network.mtu: 10 is out of range"), "{e}");
        let e = parse("[restart]\nstart = \"1s\"\ncap = \"10ms\"\n").unwrap_err();
        assert!(e.contains("restart.cap"), "{e}");
        let e = parse("event_cap = \"many\"\n").unwrap_err();
        assert!(e.contains(":1:13:"), "{e}");
        let e = parse("[graph]\ndriver = \"zfs\"\n").unwrap_err();
        assert!(e.contains("overlay"), "{e}");
        let e = parse("state_dir = \"relative\"\n").unwrap_err();
        assert!(
            e.contains("state_dir: relative is not an absolute path"),
            "{e}"
        );
        let e = parse("[network]\nbridge = \"a-very-long-bridge-name\"\n").unwrap_err();
        assert!(e.contains("network.bridge"), "{e}");
        let e = parse("[log]\nlevel = \"agent=loud\"\n").unwrap_err();
        assert!(e.contains("log.level"), "{e}");
        let e = parse("[metrics]\nlisten = \"localhost\"\n").unwrap_err();
        assert!(e.contains(":2:10:") && e.contains("metrics.listen"), "{e}");
        let e = parse("[registries]\ninsecure = [\"http://x\"]\n").unwrap_err();
        assert!(e.contains("registries.insecure"), "{e}");
        let e = parse("[registries]\ncredential_helpers = [\"../x\"]\n").unwrap_err();
        assert!(
            e.contains("registries.credential_helpers") && e.contains("\"../x\""),
            "{e}"
        );
        let e = parse("[registries.mirrors]\n\"docker.io\" = [\"127.0.0.1:5000\"]\n").unwrap_err();
        assert!(
            e.contains("registries.mirrors") && e.contains("http://host[:port]"),
            "{e}"
        );
    }

    #[test]
    fn durations_are_bounded() {
        let e = parse("resync_interval = \"3000000000000000h\"\n").unwrap_err();
        assert!(e.contains(":1:19: resync_interval:"), "{e}");
        assert!(e.contains("at most 24h"), "{e}");
        let e = parse("[restart]\ncap = \"25h\"\n").unwrap_err();
        assert!(e.contains(":2:7: restart.cap:"), "{e}");
        let e = parse("[restart]\nreset_after = \"100000h\"\n").unwrap_err();
        assert!(e.contains("restart.reset_after"), "{e}");
        let e = parse("[restart]\nstart = \"2days\"\n").unwrap_err();
        assert!(e.contains(":2:9: restart.start: invalid duration"), "{e}");
        assert!(parse("resync_interval = \"24h\"\n[restart]\ncap = \"24h\"\n").is_ok());
    }

    /// One duration grammar for config.toml and the manifests (Go's): humantime's forms that
    /// config.toml used to take are refused with the file, line, column, key and the allowed
    /// form; Go's forms are taken.
    #[test]
    fn durations_use_the_manifest_grammar() {
        for bad in ["5min", "1h 30m", "2days", "10sec", "1d", "10"] {
            let e = parse(&format!("[registries]\npull_timeout = \"{bad}\"\n")).unwrap_err();
            assert!(
                e.contains(
                    "/etc/agent/config.toml:2:16: registries.pull_timeout: invalid duration"
                ) && e.contains("1m30s"),
                "{bad}: {e}"
            );
        }
        let c = parse("resync_interval = \"1m30s\"\n[restart]\nstart = \"0.5s\"\ncap = \"1.5h\"\n")
            .unwrap();
        assert_eq!(c.resync_interval, Duration::from_secs(90));
        assert_eq!(c.restart.start, Duration::from_millis(500));
        assert_eq!(c.restart.cap, Duration::from_secs(5400));
        // Written back in the same grammar.
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("resync_interval = \"1m30s\""), "{text}");
        assert!(text.contains("cap = \"1h30m\""), "{text}");
    }

    #[test]
    fn packaged_config_is_the_defaults() {
        let text = include_str!("../../../packaging/config.toml");
        assert_eq!(parse(text).unwrap(), Config::default());
    }

    #[test]
    fn missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.toml");
        assert_eq!(Config::load(&p, false).unwrap(), Config::default());
        let e = Config::load(&p, true).unwrap_err().to_string();
        assert!(e.contains("nope.toml"), "{e}");
    }

    #[test]
    fn overrides_win() {
        let mut c = Config::default();
        c.apply_overrides(Overrides {
            state_dir: Some("/tmp/s".into()),
            stop_containers_on_exit: true,
            ..Default::default()
        });
        assert_eq!(c.state_dir, PathBuf::from("/tmp/s"));
        assert_eq!(c.manifests_dir, PathBuf::from("/etc/agent.d"));
        assert!(c.stop_containers_on_exit);
    }
}
