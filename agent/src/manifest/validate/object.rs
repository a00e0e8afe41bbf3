//! Checks of one object on its own: names, paths, ranges, combinations of fields.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;

use super::{NAME_RULE, char_name, control_char, diag, is_dns_label};
use crate::driver::exec::spec::build::{NR_OPEN_MAX, rlimit_text};
use crate::manifest::container::{ContainerSpec, Limit, MemorySwap, Mount, NetworkMode, Resources};
use crate::manifest::load::Object;
use crate::manifest::node::Step::{self, Index, Key};
use crate::manifest::types::{ImageSpec, Manifest, NetworkSpec};
use crate::manifest::units::MAX_DURATION;
use crate::manifest::{ByteSize, Diagnostic};

/// Docker's smallest memory limit.
pub const MIN_MEMORY: u64 = 6 << 20;

struct Check<'a> {
    obj: &'a Object,
    out: Vec<Diagnostic>,
}

impl Check<'_> {
    fn err(&mut self, path: &[Step<'_>], message: String) {
        self.out.push(diag(self.obj, path, message));
    }

    fn name_ref(&mut self, path: &[Step<'_>], what: &str, name: &str) {
        if !is_dns_label(name) {
            self.err(path, format!("invalid {what} name {name:?}: {NAME_RULE}"));
        }
    }

    fn absolute(&mut self, path: &[Step<'_>], what: &str, p: &Path) {
        if !p.is_absolute() {
            self.err(
                path,
                format!(
                    "{what} {:?} must be an absolute path (starting with '/')",
                    p.display().to_string()
                ),
            );
        } else if let Some(ch) = path_control(p) {
            self.err(
                path,
                format!(
                    "{what} {:?} contains {}: paths hold no control characters",
                    p.display().to_string(),
                    char_name(ch)
                ),
            );
        }
    }

    /// A path inside the container: absolute, without NUL and without a `..` component (the
    /// exec driver refuses `..`; `agent validate` says so first). A mount target must also not
    /// be `/` itself (`mount` true).
    fn container_path(&mut self, path: &[Step<'_>], what: &str, p: &Path, mount: bool) {
        if !p.is_absolute() || path_control(p).is_some() {
            return self.absolute(path, what, p);
        }
        let shown = p.display().to_string();
        if p.components().any(|c| c == std::path::Component::ParentDir) {
            self.err(
                path,
                format!("{what} {shown:?} must not contain '..': write the path it means"),
            );
        } else if mount && p.components().count() == 1 {
            self.err(
                path,
                format!("{what} {shown:?}: nothing can be mounted over the container's root"),
            );
        }
    }

    /// A mount target at or inside `/proc`: refused unless a bind of one of the files the exec
    /// driver allows there.
    fn proc_target(&mut self, path: &[Step<'_>], what: &str, p: &Path, bind: bool) {
        use crate::driver::exec::spec::build::{PROC_BIND_ALLOWED, proc_target_allowed};
        if !proc_target_allowed(p, bind) {
            self.err(
                path,
                format!(
                    "{what} {:?}: nothing may be mounted at /proc or inside it (the runtime's \
                     procfs) but a bind of one of {}",
                    p.display().to_string(),
                    PROC_BIND_ALLOWED.join(", ")
                ),
            );
        }
    }

    /// Arguments of a command: no NUL (an exec argument cannot hold one).
    fn args(&mut self, path: &[Step<'_>], what: &str, args: &[String]) {
        if let Some(i) = args.iter().position(|a| a.contains('\0')) {
            let mut at = path.to_vec();
            at.push(Index(i));
            self.err(&at, format!("{what}[{i}] contains a NUL byte"));
        }
        if let Some(i) = args.iter().position(|a| a.len() + 1 > MAX_ARG_STRLEN) {
            let mut at = path.to_vec();
            at.push(Index(i));
            self.err(
                &at,
                format!(
                    "{what}[{i}] is {} bytes long: the kernel takes at most {} bytes in one \
                     argument (MAX_ARG_STRLEN); put a long script in a file",
                    args[i].len(),
                    MAX_ARG_STRLEN - 1
                ),
            );
        }
    }
}

/// The kernel's limit on one argument or one `KEY=VALUE` environment string, its NUL included
/// (`MAX_ARG_STRLEN`, 32 pages of 4 KiB): `execve` fails with E2BIG above it, so such a
/// container could never start (and a replacement would fail after its predecessor stopped).
pub const MAX_ARG_STRLEN: usize = 32 * 4096;

/// The first control character of a path (see [`control_char`]): manifest paths come from YAML
/// strings, so they are UTF-8.
fn path_control(p: &Path) -> Option<char> {
    control_char(&p.to_string_lossy())
}

/// The rule for environment variable names, for error messages.
const ENV_NAME_RULE: &str =
    "it must be non-empty without '=' or control characters (NUL, newline, ...)";

/// Whether `k` may name an environment variable: Docker takes any name without `=`; a control
/// character would forge a line where the plan names the variable (`env.KEY changed`).
fn is_env_name(k: &str) -> bool {
    !k.is_empty() && !k.contains('=') && control_char(k).is_none()
}

/// The message for a duration field above [`MAX_DURATION`].
fn too_long(what: &str, d: crate::manifest::units::Duration) -> String {
    format!(
        "{what} {d} is too long: at most {}",
        crate::manifest::units::Duration(MAX_DURATION)
    )
}

/// Checks one object on its own; returns every problem found.
pub fn check_object(obj: &Object) -> Vec<Diagnostic> {
    let mut c = Check {
        obj,
        out: Vec::new(),
    };
    let name = obj.name();
    if !is_dns_label(name) {
        c.err(
            &[Key("metadata"), Key("name")],
            format!("invalid name {name:?}: {NAME_RULE}"),
        );
    }
    for (key, value) in &obj.manifest.metadata().labels {
        let at = [Key("metadata"), Key("labels"), Key(key)];
        if key.is_empty()
            || key.len() > 253
            || key
                .chars()
                .any(|ch| ch.is_whitespace() || ch == '=' || ch.is_control())
        {
            c.err(
                &at,
                format!(
                    "invalid label key {key:?}: 1-253 characters without spaces, '=' or control \
                     characters"
                ),
            );
        } else if let Some(ch) = value.chars().find(|ch| ch.is_control() && *ch != '\t') {
            c.err(
                &at,
                format!(
                    "label {key} value {value:?} contains {}: a label value is one line of text \
                     without control characters but tab (NUL, newline, escape, ...)",
                    char_name(ch)
                ),
            );
        }
    }
    match &obj.manifest {
        Manifest::Image(i) => image(&mut c, &i.spec),
        Manifest::Volume(_) => {}
        Manifest::Network(n) => network(&mut c, &n.spec),
        Manifest::Container(ct) => {
            container(&mut c, &ct.spec);
            secrets(&mut c, &ct.spec);
            devices(&mut c, &ct.spec);
        }
        Manifest::Secret(sec) => {
            c.absolute(&[Key("spec"), Key("file")], "secret file", &sec.spec.file);
            if sec.digest.is_some() {
                c.err(&[Key("digest")], "unknown field `digest`; allowed: `apiVersion`, `metadata`, `spec` (the agent computes the digest)".into());
            }
        }
    }
    c.out
}

/// Checks a registry reference against the distribution reference grammar (the one the registry
/// client uses): `[host[:port]/]path[:tag][@sha256:<64 hex>]`, path components of `a-z0-9`
/// joined by `.`, `_`, `__` or dashes, tags of at most 128 word characters, `.` and `-`. Written
/// out rather than using the client's regex, which takes a fifth of a second to compile.
pub fn check_reference(reference: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid image reference {reference:?}: {why}; expected host[:port]/repo[:tag][@sha256:<64 hex>], e.g. 127.0.0.1:5000/busybox:1.36"
        ))
    };
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (reference, None),
    };
    if let Some(d) = digest {
        let ok = d.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if !ok {
            return bad("the digest must be sha256: followed by 64 lowercase hex digits");
        }
    }
    // A tag follows the last ':' after the last '/'.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && !t.starts_with(['.', '-'])
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return bad(
                "a tag is 1-128 letters, digits, '_', '.', '-', not starting with '.' or '-'",
            );
        }
    }
    if name.is_empty() || name.len() > 255 {
        return bad("the name is empty or longer than 255 characters");
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let first = parts[0];
    let has_domain = parts.len() > 1
        && (first.contains(['.', ':'])
            || first == "localhost"
            || first.bytes().any(|b| b.is_ascii_uppercase()));
    if has_domain {
        let (host, port) = match first.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (first, None),
        };
        let host_ok = host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
        let port_ok = port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
        if !host_ok || !port_ok {
            return bad(&format!("{first:?} is not a registry host[:port]"));
        }
        parts.remove(0);
    }
    for component in parts {
        if !is_path_component(component) {
            return bad(&format!(
                "path component {component:?} must be lowercase letters and digits, joined by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn image(c: &mut Check<'_>, spec: &ImageSpec) {
    match spec {
        ImageSpec::Registry(r) => {
            if let Err(e) = check_reference(&r.reference) {
                c.err(&[Key("spec"), Key("registry"), Key("reference")], e);
            }
        }
        ImageSpec::OciLayout(a) => {
            c.absolute(
                &[Key("spec"), Key("ociLayout"), Key("path")],
                "ociLayout.path",
                &a.path,
            );
            archive_tag(c, "ociLayout", a.tag.as_deref());
        }
        ImageSpec::DockerArchive(a) => {
            c.absolute(
                &[Key("spec"), Key("dockerArchive"), Key("path")],
                "dockerArchive.path",
                &a.path,
            );
            archive_tag(c, "dockerArchive", a.tag.as_deref());
        }
        ImageSpec::RootfsTar(r) => c.absolute(
            &[Key("spec"), Key("rootfsTar"), Key("path")],
            "rootfsTar.path",
            &r.path,
        ),
    }
}

/// The longest archive `tag`: the distribution grammar's longest name (255) and tag (128).
const MAX_ARCHIVE_TAG: usize = 255 + 1 + 128;

/// An archive's `tag` (a `name:tag` or an OCI `ref.name`): it is compared with the archive's
/// names and shown in the plan and in errors, so it is one line of text of bounded length.
fn archive_tag(c: &mut Check<'_>, source: &'static str, tag: Option<&str>) {
    let Some(t) = tag else { return };
    let bad = if t.is_empty() || t.len() > MAX_ARCHIVE_TAG {
        format!("1-{MAX_ARCHIVE_TAG} characters")
    } else if let Some(ch) = control_char(t) {
        format!("it contains {}", char_name(ch))
    } else {
        return;
    };
    c.err(
        &[Key("spec"), Key(source), Key("tag")],
        format!(
            "invalid {source}.tag {t:?}: {bad}; a tag is the name:tag (or OCI ref.name) of one \
             image in the archive, without control characters"
        ),
    );
}

/// Linux interface names: 1-15 bytes, no '/', ':', whitespace; not `.` or `..`.
pub fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn network(c: &mut Check<'_>, spec: &NetworkSpec) {
    if let Some(gw) = spec.gateway {
        let path = [Key("spec"), Key("gateway")];
        match gw {
            IpAddr::V4(v4) if spec.subnet.contains(v4) => {
                if v4 == spec.subnet.network() || v4 == spec.subnet.broadcast() {
                    c.err(&path, format!("gateway {gw} is the network or broadcast address of {}; use a host address such as {}", spec.subnet, spec.subnet.first_host()));
                }
            }
            _ => c.err(
                &path,
                format!("gateway {gw} is not inside subnet {}", spec.subnet),
            ),
        }
    }
    if let Some(b) = &spec.bridge
        && !is_interface_name(b)
    {
        c.err(
            &[Key("spec"), Key("bridge")],
            format!("invalid bridge name {b:?}: 1-15 characters of letters, digits, '-', '_', '.'"),
        );
    }
    if let Some(mtu) = spec.mtu
        && !(68..=65535).contains(&mtu)
    {
        c.err(
            &[Key("spec"), Key("mtu")],
            format!("mtu {mtu} is out of range 68-65535"),
        );
    }
}

/// Whether `s` is a host name: dot-separated labels of letters, digits and '-', at most 253
/// characters (each label 1-63).
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Whether `s` is a cpuset list such as `0-2,4`.
pub fn is_cpuset(s: &str) -> bool {
    !s.is_empty()
        && s.split(',').all(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) => a <= b,
                _ => false,
            }
        })
}

/// Whether `key` is a sysctl name: dot-separated non-empty words of `A-Za-z0-9_-` (the runtime
/// turns the dots into `/` under `/proc/sys`, so nothing else may reach the path).
pub fn is_sysctl_name(key: &str) -> bool {
    key.split('.').all(|w| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// Whether a sysctl may be set per container (it is namespaced), as Docker's list.
pub fn is_namespaced_sysctl(key: &str) -> bool {
    key.starts_with("net.")
        || key.starts_with("fs.mqueue.")
        || key.starts_with("kernel.shm")
        || key.starts_with("kernel.msg")
        || key == "kernel.sem"
        || key == "kernel.domainname"
}

fn container(c: &mut Check<'_>, s: &ContainerSpec) {
    let spec = |k: &'static str| [Key("spec"), Key(k)];
    let self_name = c.obj.name().to_string();

    // image
    if s.image.contains(['/', ':', '@']) {
        if let Err(e) = check_reference(&s.image) {
            c.err(&spec("image"), e);
        }
    } else if !is_dns_label(&s.image) {
        c.err(
            &spec("image"),
            format!("invalid image {:?}: use the name of an Image manifest ({NAME_RULE}) or a registry reference host[:port]/repo[:tag][@sha256:..]", s.image),
        );
    }

    if let Some(wd) = &s.working_dir {
        c.container_path(&spec("workingDir"), "workingDir", wd, false);
    }
    if let Some(a) = &s.entrypoint {
        c.args(&spec("entrypoint"), "entrypoint", a);
    }
    if let Some(a) = &s.command {
        c.args(&spec("command"), "command", a);
    }
    if let Some(u) = &s.user {
        let ok = !u.is_empty()
            && u.split(':').count() <= 2
            && u.split(':').all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            });
        if !ok {
            c.err(
                &spec("user"),
                format!("invalid user {u:?}: expected user, uid, user:group or uid:gid"),
            );
        } else if let Err(e) = crate::driver::exec::spec::user::check_numeric_ids(u) {
            c.err(&spec("user"), format!("invalid user {u:?}: {e}"));
        }
    }
    if let Some(h) = &s.hostname
        && (!is_hostname(h) || h.len() > 64)
    {
        c.err(
            &spec("hostname"),
            format!("invalid hostname {h:?}: letters, digits, '-' and '.', at most 64 characters"),
        );
    }
    for (k, v) in &s.env {
        if !is_env_name(k) {
            c.err(
                &[Key("spec"), Key("env"), Key(k)],
                format!("invalid environment variable name {k:?}: {ENV_NAME_RULE}"),
            );
        }
        if v.contains('\0') {
            c.err(
                &[Key("spec"), Key("env"), Key(k)],
                format!("environment variable {k} contains a NUL byte"),
            );
        } else if k.len() + 1 + v.len() + 1 > MAX_ARG_STRLEN {
            c.err(
                &[Key("spec"), Key("env"), Key(k)],
                format!(
                    "environment variable {k} is {} bytes long with its name: the kernel takes \
                     at most {} bytes in one KEY=VALUE string (MAX_ARG_STRLEN); put a long value \
                     in a file (a secret or a bind)",
                    k.len() + 1 + v.len(),
                    MAX_ARG_STRLEN - 1
                ),
            );
        }
    }

    // ports: overlaps within this container are found by the check across all containers.

    // volumes
    let mut targets: HashMap<&Path, usize> = HashMap::new();
    for (i, m) in s.volumes.iter().enumerate() {
        let base = [Key("spec"), Key("volumes"), Index(i)];
        let at = |k: &'static str| [Key("spec"), Key("volumes"), Index(i), Key(k)];
        match m {
            Mount::Volume { volume, target, .. } => {
                c.name_ref(&at("volume"), "volume", volume);
                c.container_path(&at("target"), "mount target", target, true);
                c.proc_target(&at("target"), "mount target", target, false);
            }
            Mount::Bind { bind, target, .. } => {
                c.absolute(&at("bind"), "bind source", bind);
                c.container_path(&at("target"), "mount target", target, true);
                c.proc_target(&at("target"), "mount target", target, true);
            }
            Mount::Tmpfs { tmpfs, size } => {
                c.container_path(&at("tmpfs"), "tmpfs target", tmpfs, true);
                c.proc_target(&at("tmpfs"), "tmpfs target", tmpfs, false);
                if *size == Some(ByteSize(0)) {
                    c.err(&at("size"), "tmpfs size must be more than 0".into());
                }
            }
        }
        let target = m.target();
        if let Some(first) = targets.insert(target, i) {
            c.err(
                &base,
                format!(
                    "mount target {:?} is already used by spec.volumes[{first}]",
                    target.display().to_string()
                ),
            );
        }
    }
    for (i, v) in s.volumes_from.iter().enumerate() {
        let at = [Key("spec"), Key("volumesFrom"), Index(i), Key("container")];
        c.name_ref(&at, "container", &v.container);
        if v.container == self_name {
            c.err(&at, "a container cannot take volumes from itself".into());
        }
    }

    // links
    let mut aliases: HashMap<&str, usize> = HashMap::new();
    for (i, l) in s.links.iter().enumerate() {
        let at = [Key("spec"), Key("links"), Index(i), Key("container")];
        c.name_ref(&at, "container", &l.container);
        if l.container == self_name {
            c.err(&at, "a container cannot link to itself".into());
        }
        if let Some(a) = &l.alias
            && !is_hostname(a)
        {
            c.err(
                &[Key("spec"), Key("links"), Index(i), Key("alias")],
                format!("invalid link alias {a:?}: letters, digits, '-' and '.'"),
            );
        }
        if let Some(first) = aliases.insert(l.effective_alias(), i) {
            c.err(
                &[Key("spec"), Key("links"), Index(i)],
                format!(
                    "link alias {:?} is already used by spec.links[{first}]",
                    l.effective_alias()
                ),
            );
        }
    }

    // ulimits
    for (name, u) in &s.ulimits {
        if let (Limit::Value(soft), Limit::Value(hard)) = (u.soft, u.hard)
            && soft > hard
        {
            c.err(
                &[Key("spec"), Key("ulimits"), Key(name.as_str())],
                format!("ulimit {name}: soft limit {soft} is above hard limit {hard}"),
            );
        } else if let (Limit::Unlimited, Limit::Value(hard)) = (u.soft, u.hard) {
            c.err(
                &[Key("spec"), Key("ulimits"), Key(name.as_str())],
                format!("ulimit {name}: soft limit unlimited is above hard limit {hard}"),
            );
        } else if name.as_str() == "nofile" && u.hard.as_rlim() > NR_OPEN_MAX {
            // Above every kernel's fs.nr_open: no host can set it. What this host allows is a
            // warning ([`super::warn`]) and a refusal of the replacement (reconcile::precheck).
            c.err(
                &[Key("spec"), Key("ulimits"), Key(name.as_str())],
                format!(
                    "ulimit nofile: hard limit {} is above what any Linux kernel allows \
                     (fs.nr_open is at most {NR_OPEN_MAX}); use a number, e.g. 1048576",
                    rlimit_text(u.hard.as_rlim())
                ),
            );
        }
    }

    resources(c, &s.resources);

    if let Some(h) = &s.healthcheck {
        let at = |k: &'static str| [Key("spec"), Key("healthcheck"), Key(k)];
        if h.command.is_empty() || h.command[0].is_empty() {
            c.err(
                &at("command"),
                "healthcheck command must not be empty".into(),
            );
        }
        c.args(&at("command"), "healthcheck command", &h.command);
        if h.interval.get().is_zero() {
            c.err(
                &at("interval"),
                "healthcheck interval must be more than 0s".into(),
            );
        }
        if h.timeout.get().is_zero() {
            c.err(
                &at("timeout"),
                "healthcheck timeout must be more than 0s".into(),
            );
        }
        if h.retries == 0 {
            c.err(
                &at("retries"),
                "healthcheck retries must be at least 1".into(),
            );
        }
        for (key, d) in [
            ("interval", h.interval),
            ("timeout", h.timeout),
            ("startPeriod", h.start_period),
        ] {
            if d.get() > MAX_DURATION {
                c.err(&at(key), too_long(&format!("healthcheck {key}"), d));
            }
        }
    }
    if let Some(d) = s.stop_grace_period
        && d.get() > MAX_DURATION
    {
        c.err(&spec("stopGracePeriod"), too_long("stopGracePeriod", d));
    }

    if let Some(l) = &s.logging {
        if l.max_size.is_some_and(|b| b.bytes() == 0) {
            c.err(
                &[Key("spec"), Key("logging"), Key("maxSize")],
                "logging.maxSize must be more than 0, e.g. 10Mi".into(),
            );
        }
        if let Some(n) = l.max_files
            && !(1..=100).contains(&n)
        {
            c.err(
                &[Key("spec"), Key("logging"), Key("maxFiles")],
                format!("logging.maxFiles {n} is out of range: use 1 to 100"),
            );
        }
    }
    let mut env_files_seen = BTreeSet::new();
    for (i, f) in s.env_files.iter().enumerate() {
        let at = [Key("spec"), Key("envFiles"), Index(i)];
        if f.trim().is_empty() || control_char(f).is_some() {
            c.err(
                &at,
                format!(
                    "invalid env file {f:?}: an env file is a path, absolute or relative to the \
                     manifest's directory, without control characters"
                ),
            );
        } else if !env_files_seen.insert(f.as_str()) {
            c.err(&at, format!("env file {f} is listed twice in envFiles"));
        }
    }
    if s.shm_size.is_some_and(|b| b.bytes() == 0) {
        c.err(
            &spec("shmSize"),
            "shmSize must be more than 0, e.g. 64Mi (the default)".into(),
        );
    }
    if let Some(v) = s.oom_score_adj
        && !(-1000..=1000).contains(&v)
    {
        c.err(
            &spec("oomScoreAdj"),
            format!("oomScoreAdj {v} is out of range: use -1000 (never kill) to 1000 (kill first)"),
        );
    }
    let mut groups_seen = BTreeSet::new();
    for (i, g) in s.group_add.iter().enumerate() {
        let at = [Key("spec"), Key("groupAdd"), Index(i)];
        let name = g.0.as_str();
        let numeric = name.trim_start_matches('-');
        if !numeric.is_empty() && numeric.bytes().all(|b| b.is_ascii_digit()) {
            let ok = !name.starts_with('-')
                && crate::driver::exec::spec::user::check_numeric_ids(&format!("0:{name}")).is_ok();
            if !ok {
                c.err(
                    &at,
                    format!(
                        "invalid groupAdd {name}: gid out of range: {}",
                        crate::driver::exec::spec::user::ID_RULE
                    ),
                );
                continue;
            }
        } else if !name.starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_')
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        {
            c.err(
                &at,
                format!("invalid groupAdd {name:?}: use a group name (a letter or '_', then letters, digits, '_', '-', '.') or a gid 0-2147483647"),
            );
            continue;
        }
        if !groups_seen.insert(name) {
            c.err(&at, format!("group {name:?} is listed twice in groupAdd"));
        }
    }

    let dropped: BTreeSet<&str> = s.cap_drop.iter().map(|c| c.as_str()).collect();
    for (i, cap) in s.cap_add.iter().enumerate() {
        if dropped.contains(cap.as_str()) && !cap.is_all() {
            c.err(
                &[Key("spec"), Key("capAdd"), Index(i)],
                format!("capability {cap} is both added and dropped"),
            );
        }
    }

    for (k, v) in &s.sysctls {
        let at = [Key("spec"), Key("sysctls"), Key(k)];
        if !is_sysctl_name(k) {
            c.err(&at, format!("invalid sysctl name {k:?}: dot-separated words of letters, digits, '_' and '-', e.g. net.ipv4.ip_forward"));
        } else if !is_namespaced_sysctl(k) {
            c.err(&at, format!("sysctl {k:?} is not namespaced and cannot be set per container; allowed: net.*, kernel.shm*, kernel.msg*, kernel.sem, kernel.domainname, fs.mqueue.*"));
        } else if s.network_mode == NetworkMode::Host && k.starts_with("net.") {
            c.err(
                &at,
                format!(
                    "sysctl {k:?} would change the host's network settings (networkMode is host)"
                ),
            );
        }
        if v.is_empty() {
            c.err(&at, format!("sysctl {k} has an empty value"));
        } else if v.contains('\0') {
            c.err(&at, format!("sysctl {k:?} value contains a NUL byte"));
        }
    }

    // network mode and the options it excludes
    let mode = &s.network_mode;
    if let NetworkMode::Container(other) = mode {
        c.name_ref(&spec("networkMode"), "container", other);
        if *other == self_name {
            c.err(
                &spec("networkMode"),
                "a container cannot share its own network namespace".into(),
            );
        }
    }
    if *mode != NetworkMode::Bridge {
        let refuse = |c: &mut Check<'_>, key: &'static str, present: bool| {
            if present {
                c.err(&spec(key), format!("`{key}` cannot be used with networkMode {mode}; it needs networkMode bridge"));
            }
        };
        refuse(c, "ports", !s.ports.is_empty());
        refuse(c, "links", !s.links.is_empty());
        refuse(c, "networks", !s.networks.is_empty());
        if matches!(mode, NetworkMode::Container(_)) {
            refuse(c, "hostname", s.hostname.is_some());
            refuse(c, "dns", !s.dns.is_empty());
            refuse(c, "dnsSearch", !s.dns_search.is_empty());
            refuse(c, "extraHosts", !s.extra_hosts.is_empty());
        }
    }
    let mut seen = BTreeSet::new();
    for (i, n) in s.networks.iter().enumerate() {
        let at = network_path(c.obj, i, &n.name);
        c.name_ref(&at, "network", &n.name);
        if !seen.insert(&n.name) {
            c.err(&at, format!("network {:?} is listed twice", n.name));
        }
        let mut names = BTreeSet::new();
        for (j, a) in n.aliases.iter().enumerate() {
            let mut at = at.clone();
            at.extend([Key("aliases"), Index(j)]);
            if !is_hostname(a) || a.len() > 253 {
                c.err(
                    &at,
                    format!(
                        "invalid alias {a:?}: a DNS name of letters, digits, '-' and '.', at most \
                         253 characters"
                    ),
                );
            } else if !names.insert(a.to_ascii_lowercase()) {
                c.err(&at, format!("alias {a:?} is listed twice"));
            }
        }
    }
    for (i, d) in s.dns_search.iter().enumerate() {
        if !is_hostname(d) {
            c.err(
                &[Key("spec"), Key("dnsSearch"), Index(i)],
                format!("invalid search domain {d:?}: letters, digits, '-' and '.'"),
            );
        }
    }
    for (i, h) in s.extra_hosts.iter().enumerate() {
        if !is_hostname(&h.host) {
            c.err(
                &[Key("spec"), Key("extraHosts"), Index(i)],
                format!(
                    "invalid host name {:?} in extraHosts: letters, digits, '-' and '.'",
                    h.host
                ),
            );
        }
    }
}

/// Where the `i`th entry of a container's `networks` (network `name`) is written: an item of
/// the list form, or the key's value in the mapping form.
pub(crate) fn network_path<'a>(obj: &Object, i: usize, name: &'a str) -> Vec<Step<'a>> {
    let long = matches!(
        obj.tree.find(&[Key("spec"), Key("networks")]).kind,
        crate::manifest::node::NodeKind::Map(_)
    );
    let item = if long { Key(name) } else { Index(i) };
    vec![Key("spec"), Key("networks"), item]
}

/// `secrets` and `secretEnv`: names, targets (absolute after the `/run/secrets` default, not
/// shared with another secret or a volume), ids, variable names. References to Secret
/// manifests that do not exist are reported by the checks across files.
fn secrets(c: &mut Check<'_>, s: &ContainerSpec) {
    let volume_targets: BTreeSet<std::path::PathBuf> = s
        .volumes
        .iter()
        .map(|m| crate::plan::effective::normalize_path(m.target()))
        .collect();
    let mut seen: HashMap<std::path::PathBuf, usize> = HashMap::new();
    for (i, r) in s.secrets.iter().enumerate() {
        let at = |k: &'static str| [Key("spec"), Key("secrets"), Index(i), Key(k)];
        c.name_ref(&at("source"), "secret", &r.source);
        let target = crate::plan::effective::normalize_path(&r.effective_target());
        if let Some(ch) = path_control(&target) {
            c.err(
                &at("target"),
                format!(
                    "invalid secret target {:?}: it contains {}; paths hold no control characters",
                    target.display().to_string(),
                    char_name(ch)
                ),
            );
        } else if target
            .components()
            .any(|p| matches!(p, std::path::Component::ParentDir))
            || target == Path::new("/")
        {
            c.err(
                &at("target"),
                format!(
                    "invalid secret target {:?}: a file path without '..'",
                    target.display().to_string()
                ),
            );
        } else if volume_targets.contains(&target) {
            c.err(
                &at("target"),
                format!("secret target {} is also a volume target", target.display()),
            );
        } else if let Some(first) = seen.insert(target.clone(), i) {
            c.err(
                &at("target"),
                format!(
                    "secret target {} is used twice (also secrets[{first}])",
                    target.display()
                ),
            );
        }
        for (field, id) in [("uid", r.uid), ("gid", r.gid)] {
            if id.is_some_and(|v| v > crate::driver::exec::spec::user::MAX_ID) {
                c.err(
                    &at(field),
                    format!(
                        "{field} out of range: {}",
                        crate::driver::exec::spec::user::ID_RULE
                    ),
                );
            }
        }
    }
    for (k, name) in &s.secret_env {
        let at = [Key("spec"), Key("secretEnv"), Key(k)];
        if !is_env_name(k) {
            c.err(
                &at,
                format!("invalid environment variable name {k:?}: {ENV_NAME_RULE}"),
            );
        }
        if s.env.contains_key(k) {
            c.err(&at, format!("{k} is set in both env and secretEnv"));
        }
        c.name_ref(&at, "secret", name);
    }
}

/// `devices`: absolute host and container paths, a container path used once. Whether the host
/// has the device is a warning of `agent validate` ([`super::warn`]) and an error at create.
fn devices(c: &mut Check<'_>, s: &ContainerSpec) {
    use crate::manifest::device::Device;
    let mut seen: HashMap<std::path::PathBuf, usize> = HashMap::new();
    for (i, d) in s.devices.iter().enumerate() {
        let Device::Node { source, target, .. } = d else {
            continue;
        };
        let at = [Key("spec"), Key("devices"), Index(i)];
        let path = target.as_ref().unwrap_or(source);
        if !source.is_absolute() || !path.is_absolute() {
            c.err(
                &at,
                format!("device {d}: host and container paths must be absolute"),
            );
            continue;
        }
        if let Some(ch) = path_control(source).or_else(|| path_control(path)) {
            c.err(
                &at,
                format!(
                    "device {:?}: a path contains {}; paths hold no control characters",
                    d.to_string(),
                    char_name(ch)
                ),
            );
            continue;
        }
        if path
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            c.err(
                &at,
                format!("device {d}: the container path must not contain '..'"),
            );
            continue;
        }
        let path = crate::plan::effective::normalize_path(path);
        if let Some(first) = seen.insert(path.clone(), i) {
            c.err(
                &at,
                format!(
                    "device path {} is used twice (also devices[{first}])",
                    path.display()
                ),
            );
        }
    }
}

fn resources(c: &mut Check<'_>, r: &Resources) {
    let at = |k: &'static str| [Key("spec"), Key("resources"), Key(k)];
    if let Some(m) = r.memory
        && m.0 < MIN_MEMORY
    {
        c.err(
            &at("memory"),
            format!("memory limit {m} is below the minimum of 6Mi"),
        );
    }
    if let Some(res) = r.memory_reservation {
        if let Some(m) = r.memory
            && res > m
        {
            c.err(
                &at("memoryReservation"),
                format!("memoryReservation {res} is above the memory limit {m}"),
            );
        }
        if res.0 < MIN_MEMORY {
            c.err(
                &at("memoryReservation"),
                format!("memoryReservation {res} is below the minimum of 6Mi"),
            );
        }
    }
    if let Some(MemorySwap::Limit(swap)) = r.memory_swap {
        match r.memory {
            None => c.err(&at("memorySwap"), "memorySwap needs `memory` to be set too (it is the limit of memory plus swap)".into()),
            Some(m) if swap < m => c.err(&at("memorySwap"), format!("memorySwap {swap} is below the memory limit {m}; it is the limit of memory plus swap, so at least `memory`")),
            _ => {}
        }
    }
    if let Some(cpus) = r.cpus
        && !(cpus > 0.0 && cpus <= 1024.0 && cpus.is_finite())
    {
        c.err(
            &at("cpus"),
            format!("cpus {cpus} is out of range: more than 0, at most 1024"),
        );
    }
    if let Some(sh) = r.cpu_shares
        && !(2..=262_144).contains(&sh)
    {
        c.err(
            &at("cpuShares"),
            format!("cpuShares {sh} is out of range 2-262144"),
        );
    }
    if let Some(set) = &r.cpuset
        && !is_cpuset(set)
    {
        c.err(
            &at("cpuset"),
            format!("invalid cpuset {set:?}: a list of CPU numbers and ranges, e.g. \"0-2,4\""),
        );
    }
    if r.pids == Some(0) {
        c.err(
            &at("pids"),
            "pids must be at least 1 (leave it out for no limit)".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_follow_the_distribution_grammar() {
        for ok in [
            "busybox",
            "library/busybox:1.36",
            "127.0.0.1:5000/busybox:1.36",
            "localhost/a/b",
            "registry.example.com:443/team/web-app:v1.2_3",
            "a__b/c.d/e---f",
            "127.0.0.1:5000/busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "127.0.0.1:5000/busybox:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(check_reference(ok), Ok(()), "{ok}");
            // The registry client agrees.
            assert!(ok.parse::<oci_client::Reference>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Busybox",
            "127.0.0.1:5000/Busy Box:1",
            "busybox:",
            "busybox:-x",
            "busybox@sha256:abc",
            "busybox@md5:0123",
            "a//b",
            "a/-b",
            "a/b_",
            "a/b...c",
            "host:port/x",
            "127.0.0.1:5000/",
            "[::1]:5000/busybox",
        ] {
            assert!(check_reference(bad).is_err(), "{bad} should be refused");
            assert!(
                bad.parse::<oci_client::Reference>().is_err(),
                "client accepts {bad}"
            );
        }
    }
}
