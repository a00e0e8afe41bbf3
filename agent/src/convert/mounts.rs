//! A service's mounts: `volumes` (named, anonymous, bind, tmpfs; short and long forms), `tmpfs`,
//! `volumes_from`, and file `configs` (read-only binds).

use serde_json::{Value, json};

use super::service::{Svc, node_entries, typed};
use super::service_io::items;
use super::value::{self, boolean};
use super::{Converted, at, at_key, dns_label};
use crate::manifest::node::{Node, NodeKind};
use crate::manifest::{ApiVersion, Manifest, Metadata, VolumeManifest, VolumeSpec};

/// Adds a mount unless its target is taken.
fn mount(s: &mut Svc, m: Value, loc: (u32, u32), sub: &str) {
    match typed::<crate::manifest::Mount>(m) {
        Ok(m) => {
            let target = m
                .get("target")
                .or_else(|| m.get("tmpfs"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_string();
            if s.targets.contains(&target) {
                s.drop(
                    loc,
                    sub,
                    format!("not carried over: {target} is already mounted by an earlier entry"),
                );
                return;
            }
            s.targets.push(target);
            s.volumes.push(m);
        }
        Err(e) => s.drop(loc, sub, format!("not carried over: {e}")),
    }
}

/// The Volume name for a named volume of the service, or `None` (reported) when the top level
/// does not declare it.
fn named_volume(s: &mut Svc, source: &str, loc: (u32, u32), sub: &str) -> Option<String> {
    match s.cx.volumes.get(source) {
        Some(n) => Some(n.clone()),
        None => {
            s.drop(loc, sub, format!("not carried over: volume {source:?} is not declared under the top-level `volumes` (Compose refuses such a file)"));
            None
        }
    }
}

/// A named volume the local driver binds to a host directory (see `top::local_bind`): a bind.
fn bind_volume(
    s: &mut Svc,
    source: &str,
    target: &str,
    read_only: bool,
    loc: (u32, u32),
    sub: &str,
) -> Value {
    let dir = s.cx.bind_volumes.get(source).cloned().unwrap_or_default();
    s.change(
        loc,
        sub,
        format!("volume {source:?} is a bind of {}", dir.display()),
    );
    json!({"bind": dir.display().to_string(), "target": target, "readOnly": read_only})
}

/// A Volume for an anonymous volume (`- /data`): Docker makes a fresh one per container; the
/// agent's is named after the service and the path and kept.
fn anonymous_volume(s: &mut Svc, target: &str, loc: (u32, u32), sub: &str) -> String {
    let name = dns_label(&format!("{}-{}", s.name, target));
    if !s.cx.extra_volumes.iter().any(|c| c.manifest.name() == name) {
        s.cx.extra_volumes.push(Converted {
            file: Default::default(),
            manifest: Manifest::Volume(VolumeManifest {
                api_version: ApiVersion::V1,
                metadata: Metadata {
                    name: name.clone(),
                    labels: Default::default(),
                },
                spec: VolumeSpec::default(),
            }),
            from: format!("{}.{sub}", s.path),
            line: loc.0,
            col: loc.1,
        });
    }
    s.change(loc, sub, format!("an anonymous volume: becomes Volume {name:?}, kept across recreations (Docker makes a new one per container)"));
    name
}

fn is_host_path(src: &str) -> bool {
    src.starts_with('/') || src.starts_with('.') || src.starts_with('~')
}

/// Notes a bind source that does not exist (Docker creates it; the agent does not guess).
fn check_bind_source(s: &mut Svc, path: &std::path::Path, loc: (u32, u32), sub: &str) {
    if !path.exists() {
        s.change(loc, sub, format!("{} does not exist on this host (Docker would create it as a directory): create it before the container starts", path.display()));
    }
}

/// `volumes:` of a service, short (`SRC:TARGET[:MODE]`) and long forms.
pub(super) fn volumes(s: &mut Svc, v: &Node) {
    for (i, item) in items(v).into_iter().enumerate() {
        let sub = format!("volumes[{i}]");
        let loc = at(item);
        match &item.kind {
            NodeKind::Map(_) => volume_long(s, item, &sub),
            _ => {
                let Some(spec) = value::scalar(item) else {
                    s.drop(
                        loc,
                        &sub,
                        format!(
                            "not carried over: expected a volume, found {}",
                            item.describe()
                        ),
                    );
                    continue;
                };
                let parts: Vec<&str> = spec.split(':').collect();
                let (src, target, mode) = match parts.as_slice() {
                    [t] => (None, *t, ""),
                    [a, t] => (Some(*a), *t, ""),
                    [a, t, m] => (Some(*a), *t, *m),
                    _ => {
                        s.drop(
                            loc,
                            &sub,
                            format!("not carried over: {spec:?} is not SOURCE:TARGET[:MODE]"),
                        );
                        continue;
                    }
                };
                let mut read_only = false;
                let mut nocopy = false;
                for opt in mode.split(',').filter(|o| !o.is_empty()) {
                    match opt {
                        "ro" => read_only = true,
                        "rw" => {}
                        "nocopy" => nocopy = true,
                        "z" | "Z" => s.change(loc, &sub, format!("option {opt:?} (SELinux relabel) not carried over: the agent does not relabel")),
                        "consistent" | "cached" | "delegated" => {}
                        other => s.change(loc, &sub, format!("option {other:?} not carried over: the agent's binds are private (no propagation options)")),
                    }
                }
                let m = match src {
                    None => {
                        let name = anonymous_volume(s, target, loc, &sub);
                        json!({"volume": name, "target": target})
                    }
                    Some(src) if is_host_path(src) => {
                        let host = s.cx.host_path(src);
                        check_bind_source(s, &host, loc, &sub);
                        if src.starts_with('.') || src.starts_with('~') {
                            s.change(loc, &sub, format!("bind of {}", host.display()));
                        }
                        json!({"bind": host.display().to_string(), "target": target, "readOnly": read_only})
                    }
                    Some(src) if s.cx.bind_volumes.contains_key(src) => {
                        bind_volume(s, src, target, read_only, loc, &sub)
                    }
                    Some(src) => {
                        let Some(name) = named_volume(s, src, loc, &sub) else {
                            continue;
                        };
                        json!({"volume": name, "target": target, "readOnly": read_only, "nocopy": nocopy})
                    }
                };
                mount(s, m, loc, &sub);
            }
        }
    }
}

fn volume_long(s: &mut Svc, item: &Node, sub: &str) {
    let loc = at(item);
    let kind = item
        .get("type")
        .and_then(value::scalar)
        .unwrap_or_else(|| "volume".into());
    let source = item.get("source").and_then(value::scalar);
    let Some(target) = item.get("target").and_then(value::scalar) else {
        s.drop(loc, sub, "not carried over: a volume without `target`");
        return;
    };
    let read_only = item.get("read_only").map(boolean) == Some(Ok(true));
    for (k, kv) in node_entries(item) {
        let ksub = format!("{sub}.{}", k.name);
        match k.name.as_str() {
            "type" | "source" | "target" | "read_only" | "consistency" => {}
            "volume" => {
                for (vk, _) in node_entries(kv) {
                    if vk.name != "nocopy" {
                        s.drop(
                            at_key(vk),
                            &format!("{ksub}.{}", vk.name),
                            "not carried over: the agent mounts a whole volume (no subpath)",
                        );
                    }
                }
            }
            "bind" => {
                for (bk, _) in node_entries(kv) {
                    if bk.name != "create_host_path" {
                        s.drop(
                            at_key(bk),
                            &format!("{ksub}.{}", bk.name),
                            "not carried over: the agent's binds are private and not relabelled",
                        );
                    }
                }
            }
            "tmpfs" => {
                for (tk, _) in node_entries(kv) {
                    if tk.name != "size" {
                        s.drop(
                            at_key(tk),
                            &format!("{ksub}.{}", tk.name),
                            "not carried over: a tmpfs has a size only",
                        );
                    }
                }
            }
            other => s.drop(
                at_key(k),
                &ksub,
                format!("not carried over: `{other}` is not a mount setting"),
            ),
        }
    }
    let m = match (kind.as_str(), source) {
        ("volume", None) => {
            let name = anonymous_volume(s, &target, loc, sub);
            json!({"volume": name, "target": target, "readOnly": read_only})
        }
        ("volume", Some(src)) if s.cx.bind_volumes.contains_key(&src) => {
            bind_volume(s, &src, &target, read_only, loc, sub)
        }
        ("volume", Some(src)) => {
            let Some(name) = named_volume(s, &src, loc, sub) else {
                return;
            };
            let nocopy = item
                .get("volume")
                .and_then(|v| v.get("nocopy"))
                .map(boolean)
                == Some(Ok(true));
            json!({"volume": name, "target": target, "readOnly": read_only, "nocopy": nocopy})
        }
        ("bind", Some(src)) => {
            let host = s.cx.host_path(&src);
            check_bind_source(s, &host, loc, sub);
            json!({"bind": host.display().to_string(), "target": target, "readOnly": read_only})
        }
        ("tmpfs", _) => {
            let mut m = json!({"tmpfs": target});
            if let Some(size) = item.get("tmpfs").and_then(|t| t.get("size")) {
                match value::size(size) {
                    Ok(b) => m["size"] = json!(b.0),
                    Err(e) => s.drop(
                        at(size),
                        &format!("{sub}.tmpfs.size"),
                        format!("not carried over: {e}"),
                    ),
                }
            }
            m
        }
        (other, _) => {
            s.drop(loc, sub, format!("not carried over: mounts of type {other:?} are not supported (volume, bind and tmpfs are)"));
            return;
        }
    };
    mount(s, m, loc, sub);
}

/// `tmpfs: /run` or a list, each `PATH[:size=64m,...]`.
pub(super) fn tmpfs(s: &mut Svc, v: &Node) {
    for (i, item) in items(v).into_iter().enumerate() {
        let sub = format!("tmpfs[{i}]");
        let loc = at(item);
        let Some(t) = value::scalar(item) else {
            s.drop(
                loc,
                &sub,
                format!(
                    "not carried over: expected a path, found {}",
                    item.describe()
                ),
            );
            continue;
        };
        let (path, opts) = t.split_once(':').unwrap_or((&t, ""));
        let mut m = json!({"tmpfs": path});
        for opt in opts.split(',').filter(|o| !o.is_empty()) {
            match opt.split_once('=') {
                Some(("size", sz)) => match value::parse_size(sz) {
                    Ok(b) => m["size"] = json!(b.0),
                    Err(e) => s.drop(loc, &sub, format!("size not carried over: {e}")),
                },
                _ => s.change(
                    loc,
                    &sub,
                    format!("option {opt:?} not carried over: a tmpfs has a size only"),
                ),
            }
        }
        mount(s, m, loc, &sub);
    }
}

/// `volumes_from: [service[:ro], container:name[:ro]]`.
pub(super) fn volumes_from(s: &mut Svc, v: &Node) {
    let mut out = Vec::new();
    for (i, item) in items(v).into_iter().enumerate() {
        let sub = format!("volumes_from[{i}]");
        let loc = at(item);
        let Some(t) = value::scalar(item) else {
            continue;
        };
        let (src, ro) = match t.rsplit_once(':') {
            Some((a, "ro")) => (a.to_string(), true),
            Some((a, "rw")) => (a.to_string(), false),
            _ => (t.clone(), false),
        };
        let container = match src.strip_prefix("container:") {
            Some(c) => {
                let n = dns_label(c);
                s.change(
                    loc,
                    &sub,
                    format!(
                        "refers to container {n:?}, which must be a Container manifest of the agent"
                    ),
                );
                n
            }
            None => match s.cx.services.get(&src) {
                Some(n) => n.clone(),
                None => {
                    s.drop(
                        loc,
                        &sub,
                        format!("not carried over: {src:?} is not a converted service"),
                    );
                    continue;
                }
            },
        };
        out.push(json!({"container": container, "readOnly": ro}));
    }
    if !out.is_empty() {
        s.spec.insert("volumesFrom".into(), Value::Array(out));
    }
}

/// `configs:` of a service: a file config becomes a read-only bind at its target (default
/// `/<name>`, as Compose mounts it).
pub(super) fn configs(s: &mut Svc, v: &Node) {
    for (i, item) in items(v).into_iter().enumerate() {
        let sub = format!("configs[{i}]");
        let loc = at(item);
        let (source, target) = match &item.kind {
            NodeKind::Map(_) => {
                for f in ["uid", "gid", "mode"] {
                    if let Some((fk, _)) = item.entry(f) {
                        s.drop(at_key(fk), &format!("{sub}.{f}"), "not carried over: a config is a bind of the host file, with its owner and mode");
                    }
                }
                (
                    item.get("source").and_then(value::scalar),
                    item.get("target").and_then(value::scalar),
                )
            }
            _ => (value::scalar(item), None),
        };
        let Some(source) = source else {
            s.drop(loc, &sub, "not carried over: a config without `source`");
            continue;
        };
        let Some(file) = s.cx.configs.get(&source).cloned() else {
            s.drop(loc, &sub, format!("not carried over: config {source:?} is not a file config of the top-level `configs`"));
            continue;
        };
        let target = target.unwrap_or_else(|| format!("/{source}"));
        let target = if target.starts_with('/') {
            target
        } else {
            format!("/{target}")
        };
        s.change(
            loc,
            &sub,
            format!("a read-only bind of {} at {target}", file.display()),
        );
        check_bind_source(s, &file, loc, &sub);
        mount(
            s,
            json!({"bind": file.display().to_string(), "target": target, "readOnly": true}),
            loc,
            &sub,
        );
    }
}
