//! The top level of a compose file: `services` (each through [`super::service`]), `volumes`
//! (Volume manifests, or binds for the local driver's bind of a directory), `networks` (Network
//! manifests, through [`super::networks`]), `secrets` (Secret manifests for file secrets),
//! `configs` (file configs, bind-mounted by the services that use them), `name`.

use std::collections::BTreeMap;

use serde_json::Map;

use super::networks;
use super::value::{self, boolean, text};
use super::{Converted, Cx, Error, Options, at, at_key, dns_label};
use crate::manifest::node::{Key, Node, NodeKind};
use crate::manifest::{
    ApiVersion, Manifest, Metadata, SecretManifest, SecretSpec, VolumeManifest, VolumeSpec,
};

/// Converts the whole file.
pub(super) fn convert(cx: &mut Cx, root: &Node, opts: &Options) -> Result<Vec<Converted>, Error> {
    let NodeKind::Map(entries) = &root.kind else {
        return Ok(Vec::new());
    };
    let mut services = None;
    let (mut volumes, mut networks, mut secrets, mut configs) = (None, None, None, None);
    for (k, v) in entries {
        match k.name.as_str() {
            "services" => services = Some((k, v)),
            "volumes" => volumes = Some(v),
            "networks" => networks = Some(v),
            "secrets" => secrets = Some(v),
            "configs" => configs = Some(v),
            "name" => {}
            "version" => cx.change(
                at_key(k),
                "version",
                "ignored: the Compose spec has made `version` obsolete; the file is read as the Compose spec",
            ),
            x if x.starts_with("x-") => cx.change(
                at_key(k),
                x,
                "extension field: not a setting (Compose ignores it too; anchors in it were used where referenced)",
            ),
            "include" => cx.drop(
                at_key(k),
                "include",
                "not carried over: convert each included compose file on its own",
            ),
            other => cx.drop(
                at_key(k),
                other,
                "not carried over: not a top-level key of the Compose spec the converter knows",
            ),
        }
    }
    let Some((skey, snode)) = services else {
        return Err(Error::At {
            file: cx.file.clone(),
            line: root.line,
            col: root.col,
            message: "no `services:` in the file: nothing to convert".into(),
        });
    };
    let NodeKind::Map(service_list) = &snode.kind else {
        return Err(Error::At {
            file: cx.file.clone(),
            line: skey.line,
            col: skey.col,
            message: format!("`services` must be a mapping, found {}", snode.describe()),
        });
    };

    // Which services are converted, and under which names.
    let mut chosen = Vec::new();
    for (k, svc) in service_list {
        if let Some(p) = svc.get("profiles") {
            let profiles = value::str_list(p).unwrap_or_default();
            if !profiles.iter().any(|p| opts.profiles.contains(p)) {
                cx.drop(
                    at_key(k),
                    format!("services.{}", k.name),
                    format!(
                        "not converted: its profiles ({}) are not active, as Compose leaves it out; pass --profile {} to convert it",
                        profiles.join(", "),
                        profiles.first().map_or("NAME", |s| s.as_str())
                    ),
                );
                continue;
            }
        }
        // Compose names a service's container `<project>-<service>-1`, so that projects with
        // the same service names (`db`, `redis`) live side by side on one host; here one
        // container per service: `<project>-<service>`. Other services still find it by its
        // service name (a DNS alias, `service::service_name_alias`).
        let given = svc.get("container_name").and_then(value::scalar);
        let compose_name = format!("{}-{}", cx.project, k.name);
        let wanted = given.clone().unwrap_or_else(|| compose_name.clone());
        let mut name = dns_label(&wanted);
        if name.is_empty() {
            name = "service".into();
        }
        let base = name.clone();
        let mut n = 2;
        while cx.services.values().any(|v| *v == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        if name != wanted {
            let why = match &given {
                Some(_) => format!(
                    "its container_name {wanted:?} made a DNS label (a-z, 0-9, -), unique in the project"
                ),
                None => format!("{wanted:?} made a DNS label (a-z, 0-9, -), unique in the project"),
            };
            cx.change(
                at_key(k),
                format!("services.{}", k.name),
                format!("container named {name:?} ({why})"),
            );
        } else if given.is_some() && name != k.name {
            cx.change(
                at_key(k),
                format!("services.{}", k.name),
                format!("container named {name:?} (its container_name)"),
            );
        }
        cx.services.insert(k.name.clone(), name);
        chosen.push((k, svc));
    }

    if chosen
        .iter()
        .any(|(_, svc)| svc.get("container_name").is_none())
    {
        let p = &cx.project;
        cx.change(
            at_key(skey),
            "services",
            format!("containers are named {p}-<service>, as Compose names them ({p}-<service>-1), so that another project's services of the same names can run on this host too (pass -p to choose the prefix); services find each other by service name as before (a DNS alias on each network)"),
        );
    }
    let mut out = Vec::new();
    if let Some(n) = secrets {
        top_secrets(cx, n, &mut out);
    }
    if let Some(n) = configs {
        top_configs(cx, n);
    }
    let mut volume_objects = Vec::new();
    if let Some(n) = volumes {
        top_volumes(cx, n, &mut volume_objects);
    }
    let mut pending = Vec::new();
    if let Some(n) = networks {
        networks::top_networks(cx, n, &mut pending);
    }
    let mut containers = Vec::new();
    for (k, svc) in &chosen {
        if let Some(c) = super::service::convert(cx, k, svc) {
            containers.push(c);
        }
    }
    healthy_needs_a_check(cx, &chosen, &mut containers);
    if let Some(name) = cx.default_network.clone() {
        pending.push(networks::PendingNetwork {
            name: name.clone(),
            from: "networks.default".into(),
            line: skey.line,
            col: skey.col,
            labels: BTreeMap::new(),
            spec: Map::new(),
        });
        cx.change(
            at_key(skey),
            "services",
            format!("the project's default network becomes Network {name:?}"),
        );
    }
    out.append(&mut volume_objects);
    out.append(&mut cx.extra_volumes);
    let nets = networks::finish_networks(cx, pending, opts.subnet_pool)?;
    networks::host_gateway(cx, &nets, &mut containers);
    out.extend(nets);
    out.extend(containers);
    Ok(out)
}

/// A `healthy` start condition on a container that has no health check (none in the file, or
/// one not carried over) is refused by the agent and would never hold in Compose either: it
/// becomes `started`, reported at the condition.
fn healthy_needs_a_check(cx: &mut Cx, chosen: &[(&Key, &Node)], containers: &mut [Converted]) {
    use crate::manifest::depends::Condition;
    let checked: Vec<String> = containers
        .iter()
        .filter_map(|c| match &c.manifest {
            Manifest::Container(m) if m.spec.healthcheck.is_some() => Some(m.metadata.name.clone()),
            _ => None,
        })
        .collect();
    for c in containers.iter_mut() {
        let Manifest::Container(m) = &mut c.manifest else {
            continue;
        };
        for d in m.spec.depends_on.entries.iter_mut() {
            if d.condition != Condition::Healthy || checked.contains(&d.container) {
                continue;
            }
            d.condition = Condition::Started;
            let svc_key = cx
                .services
                .iter()
                .find(|(_, v)| **v == d.container)
                .map(|(k, _)| k.clone())
                .unwrap_or_else(|| d.container.clone());
            let own = chosen
                .iter()
                .find(|(k, _)| format!("services.{}", k.name) == c.from);
            let loc = own
                .and_then(|(_, n)| n.get("depends_on"))
                .and_then(|deps| deps.entry(&svc_key))
                .map_or((c.line, c.col), |(k, _)| at_key(k));
            cx.drop(
                loc,
                format!("{}.depends_on.{svc_key}.condition", c.from),
                format!("not carried over: service_healthy, but {svc_key:?} has no health check here; written as condition started"),
            );
        }
    }
}

pub(super) fn metadata(name: &str, labels: BTreeMap<String, String>) -> Metadata {
    Metadata {
        name: name.to_string(),
        labels,
    }
}

/// `labels:` of a volume or network (list or mapping).
pub(super) fn labels(cx: &mut Cx, key: &str, n: &Node) -> BTreeMap<String, String> {
    match value::entries(n, '=') {
        Ok(list) => list
            .into_iter()
            .map(|e| (e.key, e.value.unwrap_or_default()))
            .collect(),
        Err(e) => {
            cx.drop(at(n), key, format!("not carried over: {e}"));
            BTreeMap::new()
        }
    }
}

/// Walks the settings of a top-level volume or network definition `def` (at `path`): `name`
/// (read by [`object_name`]) is skipped, `labels` are returned, every other key goes to `other`
/// with its path (a definition that is not a mapping has none).
pub(super) fn settings(
    cx: &mut Cx,
    path: &str,
    def: &Node,
    mut other: impl FnMut(&mut Cx, &Key, &Node, String),
) -> BTreeMap<String, String> {
    let mut lab = BTreeMap::new();
    if let NodeKind::Map(fields) = &def.kind {
        for (fk, fv) in fields {
            let fpath = format!("{path}.{}", fk.name);
            match fk.name.as_str() {
                "name" => {}
                "labels" => lab = labels(cx, &fpath, fv),
                _ => other(cx, fk, fv, fpath),
            }
        }
    }
    lab
}

/// The name an object gets: its `name:` as written (Compose does not prefix it), else
/// `<project>-<key>`; made a DNS label.
pub(super) fn object_name(cx: &mut Cx, path: &str, k: &Key, def: &Node) -> String {
    let explicit = def.get("name").and_then(value::scalar);
    let raw = explicit
        .clone()
        .unwrap_or_else(|| format!("{}-{}", cx.project, k.name));
    let name = dns_label(&raw);
    if explicit.is_some_and(|e| e != name) {
        cx.change(at_key(k), path, format!("named {name:?} (a DNS label)"));
    }
    name
}

fn top_volumes(cx: &mut Cx, n: &Node, out: &mut Vec<Converted>) {
    let list = match value::mapping(n) {
        Ok(e) => e,
        Err(why) => return cx.drop(at(n), "volumes", format!("not carried over: {why}")),
    };
    for (k, def) in list {
        let path = format!("volumes.{}", k.name);
        if let Some(dir) = local_bind(def) {
            let dir = cx.host_path(&dir);
            cx.change(
                at_key(k),
                &path,
                format!("the local driver's bind of {}: no Volume; the services mount that directory with a bind", dir.display()),
            );
            if !dir.exists() {
                cx.change(at_key(k), &path, format!("{} does not exist on this host (Docker refuses to mount it too): create it before the containers start", dir.display()));
            }
            cx.bind_volumes.insert(k.name.clone(), dir);
            continue;
        }
        let name = object_name(cx, &path, k, def);
        if !matches!(def.kind, NodeKind::Map(_) | NodeKind::Null) {
            cx.drop(
                at(def),
                &path,
                format!("expected a mapping, found {}", def.describe()),
            );
        }
        let lab = settings(cx, &path, def, |cx, fk, fv, fpath| {
            match fk.name.as_str() {
                "driver" if value::scalar(fv).as_deref() == Some("local") => {}
                "external" if boolean(fv).unwrap_or(false) => cx.change(
                    at_key(fk),
                    fpath,
                    format!("an external volume: the agent makes its own volume {name:?}, empty; copy the data from Docker's volume into it before the first start"),
                ),
                "external" => {}
                "driver" => cx.drop(at_key(fk), fpath, "not carried over: the agent's volumes are local directories; volume drivers are not supported"),
                "driver_opts" => cx.drop(at_key(fk), fpath, "not carried over: the agent's volumes are local directories (for a bind of a host directory, mount it with a bind in the service instead)"),
                other => cx.drop(at_key(fk), fpath, format!("not carried over: `{other}` is not a volume setting the agent has")),
            }
        });
        cx.volumes.insert(k.name.clone(), name.clone());
        out.push(Converted {
            file: Default::default(),
            manifest: Manifest::Volume(VolumeManifest {
                api_version: ApiVersion::V1,
                metadata: metadata(&name, lab),
                spec: VolumeSpec::default(),
            }),
            from: path,
            line: k.line,
            col: k.col,
        });
    }
}

/// The host directory of a volume the local driver binds (`driver: local`, or no driver, with
/// `driver_opts: {type: none, o: bind, device: DIR}`, a common way to put a named volume in a
/// chosen directory), or `None` for any other volume.
fn local_bind(def: &Node) -> Option<String> {
    if def.get("external").map(boolean) == Some(Ok(true)) {
        return None;
    }
    if def
        .get("driver")
        .is_some_and(|d| value::scalar(d).as_deref() != Some("local"))
    {
        return None;
    }
    let opts = def.get("driver_opts")?;
    let NodeKind::Map(entries) = &opts.kind else {
        return None;
    };
    let mut device = None;
    let mut bind = false;
    for (k, v) in entries {
        let v = value::scalar(v)?;
        match k.name.as_str() {
            "type" if v == "none" => {}
            // Other mount options (`ro`, `uid=`, ...): not a plain bind, reported as it is.
            "o" if v.split(',').all(|o| o == "bind" || o == "rbind") => bind = true,
            "device" if !v.is_empty() => device = Some(v),
            _ => return None,
        }
    }
    device.filter(|_| bind)
}

fn top_secrets(cx: &mut Cx, n: &Node, out: &mut Vec<Converted>) {
    let list = match value::mapping(n) {
        Ok(e) => e,
        Err(why) => return cx.drop(at(n), "secrets", format!("not carried over: {why}")),
    };
    for (k, def) in list {
        let path = format!("secrets.{}", k.name);
        let mut file = None;
        let mut ok = true;
        if let NodeKind::Map(fields) = &def.kind {
            for (fk, fv) in fields {
                let fpath = format!("{path}.{}", fk.name);
                match fk.name.as_str() {
                    "file" => match text(fv) {
                        Ok(f) => file = Some(cx.host_path(&f)),
                        Err(e) => {
                            cx.drop(at(fv), fpath, format!("not carried over: {e}"));
                            ok = false;
                        }
                    },
                    "name" => {}
                    "environment" => {
                        cx.drop(at_key(fk), fpath, "not carried over: a Secret's value comes from a root-only file; write the variable's value to one (chmod 600) and declare the secret with `file:`");
                        ok = false;
                    }
                    "external" => {
                        cx.drop(at_key(fk), fpath, "not carried over: an external (swarm) secret has no file here; write its value to a root-only file (chmod 600) and declare the secret with `file:`");
                        ok = false;
                    }
                    other => cx.drop(
                        at_key(fk),
                        fpath,
                        format!(
                            "not carried over: `{other}` is not a secret setting the agent has"
                        ),
                    ),
                }
            }
        }
        let Some(file) = file.filter(|_| ok) else {
            if ok {
                cx.drop(
                    at_key(k),
                    &path,
                    "not carried over: a secret without `file:`",
                );
            }
            continue;
        };
        let name = object_name(cx, &path, k, def);
        let name = if def.get("name").is_some() {
            name
        } else {
            // Secrets are referred to by their key in services; keep it when it is a label.
            let n = dns_label(&k.name);
            if n != k.name {
                cx.change(
                    at_key(k),
                    &path,
                    format!("Secret named {n:?} (a DNS label)"),
                );
            }
            n
        };
        cx.secrets.insert(k.name.clone(), name.clone());
        // The agent's own rule for secret files: say now what `agent validate` will say.
        let what = match crate::manifest::source::perms::read_secret(&file) {
            Ok(_) => format!("Secret {name:?} reads {}", file.display()),
            Err(e) => format!(
                "Secret {name:?} reads {}; `agent validate` will refuse it until fixed: {e}",
                file.display()
            ),
        };
        cx.change(at_key(k), &path, what);
        out.push(Converted {
            file: Default::default(),
            manifest: Manifest::Secret(SecretManifest {
                api_version: ApiVersion::V1,
                metadata: metadata(&name, BTreeMap::new()),
                spec: SecretSpec { file },
                digest: None,
            }),
            from: path,
            line: k.line,
            col: k.col,
        });
    }
}

fn top_configs(cx: &mut Cx, n: &Node) {
    let list = match value::mapping(n) {
        Ok(e) => e,
        Err(why) => return cx.drop(at(n), "configs", format!("not carried over: {why}")),
    };
    for (k, def) in list {
        let path = format!("configs.{}", k.name);
        let mut file = None;
        if let NodeKind::Map(fields) = &def.kind {
            for (fk, fv) in fields {
                let fpath = format!("{path}.{}", fk.name);
                match fk.name.as_str() {
                    "file" => match text(fv) {
                        Ok(f) => file = Some(cx.host_path(&f)),
                        Err(e) => cx.drop(at(fv), fpath, format!("not carried over: {e}")),
                    },
                    "name" => {}
                    other => cx.drop(at_key(fk), fpath, format!("not carried over: the agent has no configs; a config from a file becomes a read-only bind of that file, `{other}` has no such form")),
                }
            }
        }
        if let Some(f) = file {
            cx.configs.insert(k.name.clone(), f);
        }
    }
}
