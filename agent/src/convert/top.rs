//! The top level of a compose file: `services` (each through [`super::service`]), `volumes`
//! (Volume manifests), `networks` (Network manifests), `secrets` (Secret manifests for file
//! secrets), `configs` (file configs, bind-mounted by the services that use them), `name`; the
//! project's default network; subnets for networks that name none.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::value::{self, boolean, text};
use super::{Converted, Cx, Error, Options, at, at_key, dns_label};
use crate::manifest::node::{Key, Node, NodeKind};
use crate::manifest::{
    ApiVersion, Ipv4Cidr, Manifest, Metadata, NetworkManifest, NetworkSpec, SecretManifest,
    SecretSpec, VolumeManifest, VolumeSpec,
};

/// A Network waiting for its subnet.
struct PendingNetwork {
    name: String,
    from: String,
    line: u32,
    col: u32,
    labels: BTreeMap<String, String>,
    spec: Map<String, Value>,
}

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
        top_networks(cx, n, &mut pending);
    }
    let mut containers = Vec::new();
    for (k, svc) in &chosen {
        if let Some(c) = super::service::convert(cx, k, svc) {
            containers.push(c);
        }
    }
    healthy_needs_a_check(cx, &chosen, &mut containers);
    if let Some(name) = cx.default_network.clone() {
        pending.push(PendingNetwork {
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
    let networks = finish_networks(cx, pending, opts.subnet_pool)?;
    host_gateway(cx, &networks, &mut containers);
    out.extend(networks);
    out.extend(containers);
    Ok(out)
}

/// `extra_hosts: ["NAME:host-gateway"]`: Docker's `host-gateway` is the host's address on its
/// bridge; here it is the gateway of the container's first network (the host's address on that
/// bridge, which the container reaches), written as the address.
fn host_gateway(cx: &mut Cx, networks: &[Converted], containers: &mut [Converted]) {
    use crate::manifest::{ExtraHost, NetworkMode};
    for hg in std::mem::take(&mut cx.host_gateway) {
        let Some(spec) = containers.iter_mut().find_map(|c| match &mut c.manifest {
            Manifest::Container(m) if m.metadata.name == hg.container => Some(&mut m.spec),
            _ => None,
        }) else {
            continue;
        };
        let gateway = match (&spec.network_mode, spec.networks.first()) {
            // The container shares the host's network: the host is itself.
            (NetworkMode::Host, _) => Some((
                std::net::Ipv4Addr::LOCALHOST.into(),
                "host (network_mode)".to_string(),
            )),
            (NetworkMode::Bridge, Some(first)) => networks.iter().find_map(|n| match &n.manifest {
                Manifest::Network(m) if m.metadata.name == first.name => Some((
                    m.spec
                        .gateway
                        .unwrap_or_else(|| m.spec.subnet.first_host().into()),
                    format!("Network {:?}", first.name),
                )),
                _ => None,
            }),
            _ => None,
        };
        let Some((ip, net)) = gateway else {
            cx.drop(hg.loc, hg.key, format!("not carried over: {}: `host-gateway` is the host's address on the container's network, and this container has no network of its own (network_mode); write the address", hg.host));
            continue;
        };
        spec.extra_hosts.push(ExtraHost {
            host: hg.host.clone(),
            ip,
        });
        cx.change(
            hg.loc,
            hg.key,
            format!(
                "{}: `host-gateway` written as {ip}, the host's address on {net} (Docker's is the host's address on its bridge); the host's services must listen there",
                hg.host
            ),
        );
    }
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

fn metadata(name: &str, labels: BTreeMap<String, String>) -> Metadata {
    Metadata {
        name: name.to_string(),
        labels,
    }
}

/// `labels:` of a volume or network (list or mapping).
fn labels(cx: &mut Cx, key: &str, n: &Node) -> BTreeMap<String, String> {
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

/// The name an object gets: its `name:` as written (Compose does not prefix it), else
/// `<project>-<key>`; made a DNS label.
fn object_name(cx: &mut Cx, path: &str, k: &Key, def: &Node) -> String {
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
        let mut lab = BTreeMap::new();
        if let NodeKind::Map(fields) = &def.kind {
            for (fk, fv) in fields {
                let fpath = format!("{path}.{}", fk.name);
                match fk.name.as_str() {
                    "name" => {}
                    "labels" => lab = labels(cx, &fpath, fv),
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
            }
        } else if !matches!(def.kind, NodeKind::Null) {
            cx.drop(
                at(def),
                &path,
                format!("expected a mapping, found {}", def.describe()),
            );
        }
        cx.volumes.insert(k.name.clone(), name.clone());
        out.push(Converted {
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

fn top_networks(cx: &mut Cx, n: &Node, out: &mut Vec<PendingNetwork>) {
    let list = match value::mapping(n) {
        Ok(e) => e,
        Err(why) => return cx.drop(at(n), "networks", format!("not carried over: {why}")),
    };
    for (k, def) in list {
        let path = format!("networks.{}", k.name);
        let name = object_name(cx, &path, k, def);
        let mut spec = Map::new();
        let mut lab = BTreeMap::new();
        if let NodeKind::Map(fields) = &def.kind {
            for (fk, fv) in fields {
                let fpath = format!("{path}.{}", fk.name);
                match fk.name.as_str() {
                    "name" => {}
                    "labels" => lab = labels(cx, &fpath, fv),
                    "driver" if value::scalar(fv).as_deref() == Some("bridge") => {}
                    "driver" => cx.drop(at_key(fk), fpath, "not carried over: the agent's networks are bridges on this host (no overlay, macvlan or other drivers); converted as a bridge"),
                    "attachable" => {}
                    "external" if boolean(fv).unwrap_or(false) => cx.change(
                        at_key(fk),
                        fpath,
                        format!("an external network: the agent makes and owns its own bridge network {name:?}"),
                    ),
                    "external" => {}
                    "internal" if boolean(fv).unwrap_or(false) => cx.drop(at_key(fk), fpath, "not carried over: the agent's networks always have outbound NAT; an internal network is not supported"),
                    "internal" => {}
                    "enable_ipv6" if boolean(fv).unwrap_or(false) => cx.drop(at_key(fk), fpath, "not carried over: the agent's networks are IPv4"),
                    "enable_ipv6" => {}
                    "ipam" => ipam(cx, &fpath, fv, &mut spec),
                    "driver_opts" => driver_opts(cx, &fpath, fv, &mut spec),
                    other => cx.drop(at_key(fk), fpath, format!("not carried over: `{other}` is not a network setting the agent has")),
                }
            }
        }
        if k.name == "default" {
            cx.default_network = None;
        }
        cx.networks.insert(k.name.clone(), name.clone());
        out.push(PendingNetwork {
            name,
            from: path,
            line: k.line,
            col: k.col,
            labels: lab,
            spec,
        });
    }
}

fn ipam(cx: &mut Cx, path: &str, n: &Node, spec: &mut Map<String, Value>) {
    let NodeKind::Map(fields) = &n.kind else {
        return;
    };
    for (k, v) in fields {
        let kpath = format!("{path}.{}", k.name);
        match k.name.as_str() {
            "driver" if value::scalar(v).as_deref() == Some("default") => {}
            "config" => {
                let NodeKind::Seq(items) = &v.kind else {
                    cx.drop(at(v), kpath, format!("not carried over: expected a list, found {}", v.describe()));
                    continue;
                };
                let mut taken = false;
                for (i, item) in items.iter().enumerate() {
                    let ipath = format!("{kpath}[{i}]");
                    let subnet = item.get("subnet").and_then(value::scalar);
                    match subnet.as_deref().map(str::parse::<Ipv4Cidr>) {
                        Some(Ok(s)) if !taken => {
                            spec.insert("subnet".into(), json!(s.to_string()));
                            if let Some(g) = item.get("gateway").and_then(value::scalar) {
                                spec.insert("gateway".into(), json!(g));
                            }
                            for (ik, _) in node_entries(item) {
                                if !matches!(ik.name.as_str(), "subnet" | "gateway") {
                                    cx.drop(at_key(ik), format!("{ipath}.{}", ik.name), "not carried over: the agent hands out addresses from the whole subnet (no ip_range, aux_addresses)");
                                }
                            }
                            taken = true;
                        }
                        Some(Ok(_)) => cx.drop(at(item), ipath, "not carried over: a Network has one subnet; the first IPv4 one is used"),
                        Some(Err(e)) => cx.drop(at(item), ipath, format!("not carried over: {e} (the agent's networks are IPv4)")),
                        None => cx.drop(at(item), ipath, "not carried over: an ipam config without `subnet`"),
                    }
                }
            }
            _ => cx.drop(at_key(k), kpath, "not carried over: the agent has its own address management (only `config[].subnet` and `gateway` are read)"),
        }
    }
}

fn node_entries(n: &Node) -> &[(Key, Node)] {
    match &n.kind {
        NodeKind::Map(e) => e,
        _ => &[],
    }
}

fn driver_opts(cx: &mut Cx, path: &str, n: &Node, spec: &mut Map<String, Value>) {
    for (k, v) in node_entries(n) {
        let kpath = format!("{path}.{}", k.name);
        let val = value::scalar(v).unwrap_or_default();
        match k.name.as_str() {
            "com.docker.network.bridge.name" => {
                spec.insert("bridge".into(), json!(val));
            }
            "com.docker.network.driver.mtu" => match val.parse::<u32>() {
                Ok(m) => {
                    spec.insert("mtu".into(), json!(m));
                }
                Err(_) => cx.drop(at(v), kpath, format!("not carried over: MTU {val:?} is not a number")),
            },
            "com.docker.network.bridge.enable_icc" => {
                spec.insert("icc".into(), json!(val != "false"));
            }
            _ => cx.drop(at_key(k), kpath, "not carried over: not a bridge option the agent has (bridge name, MTU and enable_icc are)"),
        }
    }
}

/// Gives every network a subnet (a free /24 of `pool` when it names none) and a bridge name no
/// other network of the project has, and builds the manifests.
fn finish_networks(
    cx: &mut Cx,
    pending: Vec<PendingNetwork>,
    pool: Ipv4Cidr,
) -> Result<Vec<Converted>, Error> {
    let mut used: Vec<Ipv4Cidr> = pending
        .iter()
        .filter_map(|p| p.spec.get("subnet")?.as_str()?.parse().ok())
        .collect();
    let mut out = Vec::new();
    for mut p in pending {
        if !p.spec.contains_key("subnet") {
            let Some(s) = free_subnet(pool, &used, &p.name) else {
                return Err(Error::At {
                    file: cx.file.clone(),
                    line: p.line,
                    col: p.col,
                    message: format!(
                        "no free /24 left in the subnet pool {pool} for network {:?}; pass a larger --subnet-pool",
                        p.name
                    ),
                });
            };
            used.push(s);
            p.spec.insert("subnet".into(), json!(s.to_string()));
            cx.change(
                (p.line, p.col),
                &p.from,
                format!("Network {:?} gets subnet {s} (Docker chose one itself; change it if it overlaps another network of this host)", p.name),
            );
        }
        if !p.spec.contains_key("bridge") && format!("agent-{}", p.name).len() > 15 {
            // The agent's default bridge name, `agent-<name>` cut to 15 characters, would be the
            // same for `myproject-front` and `myproject-back`: name it by a digest of the name.
            let hash = hex::encode(Sha256::digest(p.name.as_bytes()));
            p.spec
                .insert("bridge".into(), json!(format!("agent-{}", &hash[..9])));
        }
        let spec: NetworkSpec =
            serde_json::from_value(Value::Object(p.spec)).map_err(|e| Error::At {
                file: cx.file.clone(),
                line: p.line,
                col: p.col,
                message: format!("network {:?}: {e}", p.name),
            })?;
        out.push(Converted {
            manifest: Manifest::Network(NetworkManifest {
                api_version: ApiVersion::V1,
                metadata: metadata(&p.name, p.labels),
                spec,
            }),
            from: p.from,
            line: p.line,
            col: p.col,
        });
    }
    Ok(out)
}

/// A /24 of `pool` (or the pool itself when it is smaller) that overlaps nothing in `used`:
/// the first free one from a place given by a digest of the network's `name`, so that the
/// networks of projects converted one after the other (`shop-default`, `blog-default`) rarely
/// get the same subnet, and converting a file again gives the same one.
fn free_subnet(pool: Ipv4Cidr, used: &[Ipv4Cidr], name: &str) -> Option<Ipv4Cidr> {
    let prefix = pool.prefix.max(24);
    let count = 1u32 << (prefix - pool.prefix);
    let base = u32::from(pool.addr);
    let digest = Sha256::digest(name.as_bytes());
    let start = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % count;
    (0..count)
        .map(|i| Ipv4Cidr {
            addr: std::net::Ipv4Addr::from(
                base + (((start + i) % count) << (32 - u32::from(prefix))),
            ),
            prefix,
        })
        .find(|c| !used.iter().any(|u| u.overlaps(c)))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_subnets_skip_used_ones() {
        let pool: Ipv4Cidr = "10.214.0.0/16".parse().expect("pool");
        let a = free_subnet(pool, &[], "shop-default").expect("a");
        assert_eq!(a.prefix, 24);
        assert!(pool.contains(a.addr));
        // The same name, the same subnet; another project's network, another one.
        assert_eq!(free_subnet(pool, &[], "shop-default"), Some(a));
        let other = free_subnet(pool, &[], "blog-default").expect("other");
        assert_ne!(other, a);
        // Taken ones are skipped: the next one after it.
        let next = Ipv4Cidr {
            addr: std::net::Ipv4Addr::from(u32::from(a.addr) + 256),
            prefix: 24,
        };
        let b = free_subnet(pool, &[a], "shop-default").expect("b");
        assert!(!b.overlaps(&a));
        if pool.contains(next.addr) {
            assert_eq!(b, next);
        }
        let small: Ipv4Cidr = "10.9.9.0/24".parse().expect("small");
        assert_eq!(free_subnet(small, &[], "x"), Some(small));
        assert_eq!(free_subnet(small, &[small], "x"), None);
        let full: Vec<Ipv4Cidr> = vec![pool];
        assert_eq!(free_subnet(pool, &full, "x"), None);
    }
}
