//! Field-level differences between two effective configs, as the reason strings the plan shows:
//! `env.PASSWORD changed`, `image sha256:ab12cd34ef56.. -> sha256:cd34ab12ef56..`,
//! `ports -8080:80/tcp +9090:80/tcp`. Only called for objects whose hashes differ.
//!
//! Shapes:
//! - a scalar: `field old -> new`, `(unset)` for an absent value;
//! - a map entry: `field.KEY old -> new`;
//! - an environment variable: `env.KEY changed`, `env.KEY added`, `env.KEY removed`: never its
//!   value, which may be a secret (these reasons reach `agent plan`, `agent apply`, the event log
//!   and the agent's log);
//! - an env file: `envFile ./db.env changed` (its variables' digest), never a value;
//! - a set (ports, mounts, links, ...): `field +added -removed`;
//! - an ordered list (command, dns): `field [a, b] -> [c]`;
//! - a secret's value: `secret NAME changed` (its keyed digest differs; never the value).
//!
//! A value is shown on one line: its control characters escaped (`\n`, `\u{1b}`), so that a
//! command's `sh -c` script (newlines are allowed there, as in Docker) cannot forge a line of
//! `agent plan`, the event log or the agent's log; bidirectional overrides and zero-width
//! characters are escaped too (`\u{202e}`), so that a label cannot reorder or hide what the
//! line shows. Values longer than [`MAX_VALUE`] characters
//! are cut with `...`; when both sides of a change
//! are cut, each shows the part where they differ (a few characters before the first
//! difference on), not the same prefix twice. Digests are shown as `sha256:` and 12 hex digits.
//! Reasons are sorted by field name.

use std::collections::BTreeMap;
use std::fmt::{Display, Write};

use super::effective::DEFAULT_SHM_SIZE;
use super::effective::secret::EffectiveSecrets;
use super::effective::{
    EffectiveContainer, EffectiveNetwork, EffectiveResources, EffectiveVolume, EnvFileRef,
    FixedConfig, LiveConfig,
};
use crate::manifest::{ByteSize, Healthcheck, MemorySwap, RestartPolicy};

/// Longest value shown in a reason.
pub const MAX_VALUE: usize = 60;

/// What differs between two container configs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerDiff {
    /// Differences that need a new container (image digest included).
    pub fixed: Vec<String>,
    /// Differences the agent can apply in place.
    pub live: Vec<String>,
}

impl ContainerDiff {
    pub fn is_empty(&self) -> bool {
        self.fixed.is_empty() && self.live.is_empty()
    }
    /// Every reason, fixed then live, each group sorted.
    pub fn all(&self) -> Vec<String> {
        self.fixed.iter().chain(&self.live).cloned().collect()
    }
}

/// Compares two container configs field by field.
pub fn container(old: &EffectiveContainer, new: &EffectiveContainer) -> ContainerDiff {
    let mut fixed = Vec::new();
    if old.image.digest != new.image.digest {
        match (&old.image.digest, &new.image.digest) {
            (Some(o), None) => fixed.push(format!(
                "image {}: digest known after fetch (running {})",
                new.image.key,
                short_digest(o)
            )),
            (o, n) => fixed.push(format!(
                "image {} -> {}",
                opt_digest(o.as_deref()),
                opt_digest(n.as_deref())
            )),
        }
    }
    fixed_fields(&mut fixed, &old.fixed, &new.fixed);
    fixed.sort();
    let mut live = Vec::new();
    live_fields(&mut live, &old.live, &new.live);
    live.sort();
    ContainerDiff { fixed, live }
}

fn fixed_fields(out: &mut Vec<String>, o: &FixedConfig, n: &FixedConfig) {
    list(
        out,
        "entrypoint",
        o.entrypoint.as_deref(),
        n.entrypoint.as_deref(),
    );
    list(out, "command", o.command.as_deref(), n.command.as_deref());
    scalar(
        out,
        "workingDir",
        o.working_dir.as_ref().map(|p| p.display().to_string()),
        n.working_dir.as_ref().map(|p| p.display().to_string()),
    );
    scalar(out, "user", o.user.as_ref(), n.user.as_ref());
    scalar(out, "hostname", Some(&o.hostname), Some(&n.hostname));
    secret_map(out, "env", &o.env, &n.env);
    env_files(out, &o.env_files, &n.env_files);
    set(out, "ports", &o.ports, &n.ports);
    set(out, "volumes", &o.mounts, &n.mounts);
    set(out, "volumesFrom", &o.volumes_from, &n.volumes_from);
    set(out, "links", &o.links, &n.links);
    map(out, "ulimits", &o.ulimits, &n.ulimits);
    scalar(
        out,
        "readOnlyRootFilesystem",
        Some(o.read_only_root_filesystem),
        Some(n.read_only_root_filesystem),
    );
    set(out, "capAdd", &o.cap_add, &n.cap_add);
    set(out, "capDrop", &o.cap_drop, &n.cap_drop);
    map(out, "sysctls", &o.sysctls, &n.sysctls);
    scalar(
        out,
        "networkMode",
        Some(&o.network_mode),
        Some(&n.network_mode),
    );
    set(out, "networks", &o.networks, &n.networks);
    list(out, "dns", Some(&o.dns), Some(&n.dns));
    list(out, "dnsSearch", Some(&o.dns_search), Some(&n.dns_search));
    let hosts = |v: &[crate::manifest::ExtraHost]| -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|h| format!("{}:{}", h.host, h.ip)).collect();
        v.sort();
        v
    };
    set(
        out,
        "extraHosts",
        &hosts(&o.extra_hosts),
        &hosts(&n.extra_hosts),
    );
    let shm = |v: Option<u64>| ByteSize(v.unwrap_or(DEFAULT_SHM_SIZE));
    scalar(out, "shmSize", Some(shm(o.shm_size)), Some(shm(n.shm_size)));
    scalar(out, "oomScoreAdj", o.oom_score_adj, n.oom_score_adj);
    set(out, "groupAdd", &o.group_add, &n.group_add);
    secrets(out, &o.secrets, &n.secrets);
    scalar(out, "init", Some(o.init), Some(n.init));
    set(out, "devices", &o.devices.devices, &n.devices.devices);
    set(
        out,
        "deviceCgroupRules",
        &o.devices.device_cgroup_rules,
        &n.devices.device_cgroup_rules,
    );
    scalar(
        out,
        "privileged",
        Some(o.devices.privileged),
        Some(n.devices.privileged),
    );
    let (ol, nl) = (
        o.logging.clone().unwrap_or_default(),
        n.logging.clone().unwrap_or_default(),
    );
    scalar(
        out,
        "logging.driver",
        Some(ol.driver.unwrap_or_default()),
        Some(nl.driver.unwrap_or_default()),
    );
    scalar(out, "logging.maxSize", ol.max_size, nl.max_size);
    scalar(out, "logging.maxFiles", ol.max_files, nl.max_files);
}

/// `secrets +db:/run/secrets/db(0:0 0444)`, `secretEnv.PW a -> b` (names, never values),
/// `secret db changed` (its value's digest differs), `secret db file /a -> /b`.
fn secrets(out: &mut Vec<String>, o: &EffectiveSecrets, n: &EffectiveSecrets) {
    set(out, "secrets", &o.secrets, &n.secrets);
    map(out, "secretEnv", &o.secret_env, &n.secret_env);
    for (name, new) in &n.secret_values {
        let Some(old) = o.secret_values.get(name) else {
            continue;
        };
        if old.file != new.file {
            out.push(format!(
                "secret {name} file {} -> {}",
                old.file.display(),
                new.file.display()
            ));
        } else if old.digest != new.digest {
            out.push(format!("secret {name} changed"));
        }
    }
}

/// `envFiles [a, b] -> [b]` when the list changed (its order matters: a later file wins), and
/// `envFile ./db.env changed` for a file listed in both whose variables changed: never a value.
fn env_files(out: &mut Vec<String>, o: &[EnvFileRef], n: &[EnvFileRef]) {
    let paths = |v: &[EnvFileRef]| v.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
    let (op, np) = (paths(o), paths(n));
    list(out, "envFiles", Some(&op), Some(&np));
    for f in n {
        if let Some(old) = o.iter().find(|x| x.path == f.path)
            && (old.digest != f.digest || old.resolved != f.resolved)
        {
            out.push(format!("envFile {} changed", show(&f.path)));
        }
    }
}

fn live_fields(out: &mut Vec<String>, o: &LiveConfig, n: &LiveConfig) {
    scalar(
        out,
        "restart",
        Some(restart(&o.restart)),
        Some(restart(&n.restart)),
    );
    resources(out, &o.resources, &n.resources);
    healthcheck(out, o.healthcheck.as_ref(), n.healthcheck.as_ref());
    scalar(out, "stopSignal", o.stop_signal, n.stop_signal);
    scalar(
        out,
        "stopGracePeriod",
        Some(o.stop_grace_period),
        Some(n.stop_grace_period),
    );
    map(out, "labels", &o.labels, &n.labels);
    let from = out.len();
    map(out, "dependsOn", &o.depends_on, &n.depends_on);
    for r in &mut out[from..] {
        r.push_str(" (start order only: the container is not recreated)");
    }
    aliases(out, &o.aliases, &n.aliases);
}

/// `networks.backend.aliases [db] -> [db, pg] (DNS names only: ...)`, per network whose aliases
/// changed.
fn aliases(
    out: &mut Vec<String>,
    o: &BTreeMap<String, Vec<String>>,
    n: &BTreeMap<String, Vec<String>>,
) {
    let nets: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    for net in nets {
        let (a, b) = (o.get(net), n.get(net));
        if a != b {
            let show = |v: Option<&Vec<String>>| {
                v.map_or_else(|| "(none)".to_string(), |v| format!("[{}]", v.join(", ")))
            };
            out.push(format!(
                "networks.{net}.aliases {} -> {} (DNS names only: updated in place)",
                show(a),
                show(b)
            ));
        }
    }
}

/// `no`, `always`, `on-failure`, `on-failure:5`, `unless-stopped`.
pub fn restart(r: &RestartPolicy) -> String {
    match r {
        RestartPolicy::No => "no".into(),
        RestartPolicy::Always => "always".into(),
        RestartPolicy::OnFailure { max_retries: None } => "on-failure".into(),
        RestartPolicy::OnFailure {
            max_retries: Some(n),
        } => format!("on-failure:{n}"),
        RestartPolicy::UnlessStopped => "unless-stopped".into(),
    }
}

fn resources(out: &mut Vec<String>, o: &EffectiveResources, n: &EffectiveResources) {
    scalar(out, "resources.memory", o.memory, n.memory);
    scalar(
        out,
        "resources.memoryReservation",
        o.memory_reservation,
        n.memory_reservation,
    );
    let swap = |s: Option<MemorySwap>| {
        s.map(|s| match s {
            MemorySwap::Limit(b) => b.to_string(),
            MemorySwap::Unlimited => "unlimited".to_string(),
        })
    };
    scalar(
        out,
        "resources.memorySwap",
        swap(o.memory_swap),
        swap(n.memory_swap),
    );
    scalar(
        out,
        "resources.cpus",
        o.nano_cpus.map(cpus),
        n.nano_cpus.map(cpus),
    );
    scalar(out, "resources.cpuShares", o.cpu_shares, n.cpu_shares);
    scalar(
        out,
        "resources.cpuset",
        o.cpuset.as_ref(),
        n.cpuset.as_ref(),
    );
    scalar(out, "resources.pids", o.pids, n.pids);
}

/// Nano-CPUs as a decimal number of CPUs: `500000000` -> `0.5`.
pub fn cpus(nano: u64) -> String {
    let whole = nano / 1_000_000_000;
    let frac = nano % 1_000_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let f = format!("{frac:09}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

fn healthcheck(out: &mut Vec<String>, o: Option<&Healthcheck>, n: Option<&Healthcheck>) {
    match (o, n) {
        (None, None) => {}
        (Some(o), Some(n)) => {
            list(
                out,
                "healthcheck.command",
                Some(&o.command),
                Some(&n.command),
            );
            scalar(
                out,
                "healthcheck.interval",
                Some(o.interval),
                Some(n.interval),
            );
            scalar(out, "healthcheck.timeout", Some(o.timeout), Some(n.timeout));
            scalar(out, "healthcheck.retries", Some(o.retries), Some(n.retries));
            scalar(
                out,
                "healthcheck.startPeriod",
                Some(o.start_period),
                Some(n.start_period),
            );
            scalar(
                out,
                "healthcheck.onUnhealthy",
                Some(o.on_unhealthy),
                Some(n.on_unhealthy),
            );
        }
        (o, n) => {
            let show = |h: Option<&Healthcheck>| {
                h.map(|h| format!("{} every {}", show_list(&h.command), h.interval))
            };
            scalar(out, "healthcheck", show(o), show(n));
        }
    }
}

/// Compares two network configs (name aside).
pub fn network(o: &EffectiveNetwork, n: &EffectiveNetwork) -> Vec<String> {
    let mut out = Vec::new();
    scalar(&mut out, "subnet", Some(o.subnet), Some(n.subnet));
    scalar(&mut out, "gateway", Some(o.gateway), Some(n.gateway));
    scalar(&mut out, "bridge", Some(&o.bridge), Some(&n.bridge));
    scalar(&mut out, "mtu", Some(o.mtu), Some(n.mtu));
    scalar(&mut out, "icc", Some(o.icc), Some(n.icc));
    out.sort();
    out
}

/// Compares two volume records (name aside).
pub fn volume(o: &EffectiveVolume, n: &EffectiveVolume) -> Vec<String> {
    let mut out = Vec::new();
    let reclaim = |v: &EffectiveVolume| match v.reclaim {
        crate::manifest::Reclaim::Retain => "retain",
        crate::manifest::Reclaim::Delete => "delete",
    };
    scalar(&mut out, "reclaim", Some(reclaim(o)), Some(reclaim(n)));
    map(&mut out, "labels", &o.labels, &n.labels);
    out.sort();
    out
}

/// `sha256:` and the first 12 hex digits, then `..`; other strings as they are.
pub fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((algo, hex)) if hex.len() > 12 => format!("{algo}:{}..", &hex[..12]),
        _ => d.to_string(),
    }
}

fn opt_digest(d: Option<&str>) -> String {
    d.map_or_else(|| "(not fetched)".to_string(), short_digest)
}

/// A value for display: cut to [`MAX_VALUE`] characters, `""` for the empty string.
pub fn show<T: Display>(v: T) -> String {
    let s = one_line(v.to_string());
    if s.is_empty() {
        return "\"\"".into();
    }
    if s.chars().count() > MAX_VALUE {
        let cut: String = s.chars().take(MAX_VALUE - 3).collect();
        return format!("{cut}...");
    }
    s
}

/// `s` with its control characters escaped as Rust writes them (`\n`, `\u{1b}`), and the
/// invisible format characters that reorder or hide text (bidirectional embeddings, overrides
/// and isolates, zero-width characters, the BOM) as `\u{202e}`.
fn one_line(s: String) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(
                c,
                '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
            )
    };
    if !s.chars().any(hidden) {
        return s;
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else if hidden(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn show_opt<T: Display>(v: Option<T>) -> String {
    v.map_or_else(|| "(unset)".to_string(), show)
}

/// Characters shown before the first difference when a long value is cut there.
const CONTEXT: usize = 12;

/// Two values of a change for display (see the module docs): as [`show`], but when a value is
/// too long, each side shows where the two differ.
pub fn show_pair(o: &str, n: &str) -> (String, String) {
    let (o, n) = (&one_line(o.to_string()), &one_line(n.to_string()));
    let (oc, nc): (Vec<char>, Vec<char>) = (o.chars().collect(), n.chars().collect());
    if oc.len() <= MAX_VALUE && nc.len() <= MAX_VALUE {
        return (show(o), show(n));
    }
    let common = oc.iter().zip(&nc).take_while(|(a, b)| a == b).count();
    let start = common.saturating_sub(CONTEXT);
    let cut = |c: &[char]| -> String {
        let lead = if start > 0 { "..." } else { "" };
        let rest = c.get(start..).unwrap_or_default();
        let room = MAX_VALUE - lead.len();
        if rest.len() > room {
            let body: String = rest.iter().take(room - 3).collect();
            format!("{lead}{body}...")
        } else if c.is_empty() {
            show("")
        } else {
            format!("{lead}{}", rest.iter().collect::<String>())
        }
    };
    (cut(&oc), cut(&nc))
}

fn change_text(o: Option<String>, n: Option<String>) -> (String, String) {
    match (o, n) {
        (Some(o), Some(n)) => show_pair(&o, &n),
        (o, n) => (show_opt(o), show_opt(n)),
    }
}

fn scalar<T: Display + PartialEq>(out: &mut Vec<String>, field: &str, o: Option<T>, n: Option<T>) {
    if o != n {
        let (a, b) = change_text(o.map(|v| v.to_string()), n.map(|v| v.to_string()));
        out.push(format!("{field} {a} -> {b}"));
    }
}

fn show_list<T: Display>(v: &[T]) -> String {
    show(list_text(v))
}

fn list_text<T: Display>(v: &[T]) -> String {
    let mut s = String::from("[");
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{x}");
    }
    s.push(']');
    s
}

fn list<T: Display + PartialEq>(
    out: &mut Vec<String>,
    field: &str,
    o: Option<&[T]>,
    n: Option<&[T]>,
) {
    if o != n {
        let (a, b) = change_text(o.map(list_text), n.map(list_text));
        out.push(format!("{field} {a} -> {b}"));
    }
}

/// Sorted sets: `field +a +b -c`.
fn set<T: Display + Ord>(out: &mut Vec<String>, field: &str, o: &[T], n: &[T]) {
    if o == n {
        return;
    }
    let mut s = field.to_string();
    for x in n.iter().filter(|x| o.binary_search(x).is_err()) {
        let _ = write!(s, " +{}", show(x));
    }
    for x in o.iter().filter(|x| n.binary_search(x).is_err()) {
        let _ = write!(s, " -{}", show(x));
    }
    out.push(s);
}

fn map<V: Display + PartialEq>(
    out: &mut Vec<String>,
    field: &str,
    o: &BTreeMap<String, V>,
    n: &BTreeMap<String, V>,
) {
    if o == n {
        return;
    }
    for (k, nv) in n {
        match o.get(k) {
            Some(ov) if ov == nv => {}
            ov => {
                let (a, b) = change_text(ov.map(|v| v.to_string()), Some(nv.to_string()));
                out.push(format!("{field}.{k} {a} -> {b}"));
            }
        }
    }
    for (k, ov) in o {
        if !n.contains_key(k) {
            out.push(format!("{field}.{k} {} -> (unset)", show(ov)));
        }
    }
}

/// As [`map`], naming the keys only (see the module docs).
fn secret_map<V: PartialEq>(
    out: &mut Vec<String>,
    field: &str,
    o: &BTreeMap<String, V>,
    n: &BTreeMap<String, V>,
) {
    for (k, nv) in n {
        match o.get(k) {
            Some(ov) if ov == nv => {}
            Some(_) => out.push(format!("{field}.{k} changed")),
            None => out.push(format!("{field}.{k} added")),
        }
    }
    for k in o.keys() {
        if !n.contains_key(k) {
            out.push(format!("{field}.{k} removed"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_show_where_they_differ() {
        let head = "x".repeat(100);
        let (a, b) = show_pair(&format!("{head}-old-tail"), &format!("{head}-new-tail"));
        assert_ne!(a, b);
        assert!(a.starts_with("...") && a.contains("-old-tail"), "{a}");
        assert!(b.starts_with("...") && b.contains("-new-tail"), "{b}");
        assert!(a.chars().count() <= MAX_VALUE && b.chars().count() <= MAX_VALUE);
        // A difference early on: both start at the beginning, cut at the end.
        let (a, b) = show_pair(&format!("a{head}"), &format!("b{head}"));
        assert!(
            a.starts_with('a') && a.ends_with("...") && b.starts_with('b'),
            "{a} {b}"
        );
        // Short values as they are.
        assert_eq!(show_pair("1", "2"), ("1".to_string(), "2".to_string()));
        assert_eq!(show_pair("", "2").0, "\"\"");
        // A long command: the reason names the changed argument.
        let mut out = Vec::new();
        let script = |s: &str| vec!["/bin/sh".to_string(), "-c".into(), format!("{head} {s}")];
        list(
            &mut out,
            "command",
            Some(&script("--port 80")[..]),
            Some(&script("--port 81")[..]),
        );
        assert!(
            out[0].contains("--port 80") && out[0].contains("--port 81"),
            "{out:?}"
        );
    }

    /// A newline in a command argument (allowed, as in Docker) is shown escaped: a reason is
    /// one line, whatever the value holds.
    #[test]
    fn control_characters_are_escaped() {
        let mut out = Vec::new();
        let cmd = |s: &str| vec!["/bin/sh".to_string(), "-c".into(), s.to_string()];
        list(
            &mut out,
            "command",
            Some(&cmd("a")[..]),
            Some(&cmd("a\n  1. + create evil\u{1b}[2J")[..]),
        );
        assert_eq!(
            out,
            ["command [/bin/sh, -c, a] -> [/bin/sh, -c, a\\n  1. + create evil\\u{1b}[2J]"]
        );
        let long = format!("{}\n{}", "x".repeat(100), "y".repeat(100));
        let (a, b) = show_pair(&long, &long.replace('y', "z"));
        assert!(!a.contains('\n') && !b.contains('\n'), "{a} {b}");
        assert_eq!(show("tab\there"), "tab\\there");
        // A right-to-left override would show "web" as "bew" in a terminal.
        assert_eq!(show("\u{202e}bew"), "\\u{202e}bew");
        assert_eq!(
            show("é \u{5d0}"),
            "é \u{5d0}",
            "letters of any script stay as they are"
        );
    }
}
