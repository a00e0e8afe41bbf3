//! One Compose service -> one Container manifest. Every key of the service is looked at: mapped
//! onto the spec, or recorded as not carried over with the reason. Mounts are in
//! [`super::mounts`]; env files, ports, networks, links and secrets in [`super::service_io`];
//! health check, restart, start order, deploy, ulimits and logging in [`super::service_run`].
//!
//! Each value is read by the agent's own type for the field (`PortMapping`, `Mount`,
//! `Capability`, `Signal`, ...), so a value the agent would refuse is reported here with the
//! agent's own reason instead of producing a manifest that fails later.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::service_run as run;
use super::value::{self, boolean, text};
use super::{Converted, Cx, at, at_key, shell};
use crate::manifest::node::{Key, Node, NodeKind};
use crate::manifest::{ApiVersion, ContainerManifest, ContainerSpec, Manifest, Metadata};

/// A service being converted.
pub(super) struct Svc<'c, 'a> {
    pub cx: &'c mut Cx<'a>,
    /// `services.<key>`.
    pub path: String,
    /// The Container's name.
    pub name: String,
    /// The spec, camelCase keys, read into [`ContainerSpec`] at the end.
    pub spec: Map<String, Value>,
    pub labels: BTreeMap<String, String>,
    pub resources: Map<String, Value>,
    pub env: BTreeMap<String, String>,
    pub volumes: Vec<Value>,
    /// Container paths already mounted (a later mount of the same path is reported).
    pub targets: Vec<String>,
    /// `restart:` was given (it wins over `deploy.restart_policy`).
    pub restart_given: bool,
    /// DNS aliases per Network (by the Network's name).
    pub aliases: BTreeMap<String, Vec<String>>,
}

/// Reads `v` as the agent's `T` and gives back its serialized form (the agent's own spelling),
/// or the agent's reason for refusing it.
pub(super) fn typed<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, String> {
    let t: T = serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(&t).map_err(|e| e.to_string())
}

impl Svc<'_, '_> {
    /// `services.<key>.<sub>`.
    pub fn p(&self, sub: &str) -> String {
        format!("{}.{sub}", self.path)
    }

    /// Records a key as not carried over.
    pub fn drop(&mut self, loc: (u32, u32), sub: &str, why: impl Into<String>) {
        let key = self.p(sub);
        self.cx.drop(loc, key, why);
    }

    /// Records a key as carried over in another form.
    pub fn change(&mut self, loc: (u32, u32), sub: &str, what: impl Into<String>) {
        let key = self.p(sub);
        self.cx.change(loc, key, what);
    }

    /// Sets spec field `field` to `v` read as `T`; a refused value is reported at `loc`.
    pub fn set<T: DeserializeOwned + Serialize>(
        &mut self,
        field: &str,
        v: Value,
        loc: (u32, u32),
        sub: &str,
    ) -> bool {
        match typed::<T>(v) {
            Ok(v) => {
                self.spec.insert(field.into(), v);
                true
            }
            Err(e) => {
                self.drop(loc, sub, format!("not carried over: {e}"));
                false
            }
        }
    }

    /// Sets `resources.<field>` to `v` read as `T`.
    pub fn resource<T: DeserializeOwned + Serialize>(
        &mut self,
        field: &str,
        v: Value,
        loc: (u32, u32),
        sub: &str,
    ) {
        match typed::<T>(v) {
            Ok(v) => {
                if self.resources.insert(field.into(), v).is_some() {
                    self.change(
                        loc,
                        sub,
                        format!("wins over the other setting of resources.{field}"),
                    );
                }
            }
            Err(e) => self.drop(loc, sub, format!("not carried over: {e}")),
        }
    }
}

/// Converts service `k` (already named in `cx.services`).
pub(super) fn convert(cx: &mut Cx, k: &Key, node: &Node) -> Option<Converted> {
    let path = format!("services.{}", k.name);
    let name = cx.services.get(&k.name)?.clone();
    let NodeKind::Map(fields) = &node.kind else {
        cx.drop(
            at(node),
            &path,
            format!(
                "not converted: expected a mapping, found {}",
                node.describe()
            ),
        );
        return None;
    };
    let image = image(cx, k, node, &name)?;
    let mut s = Svc {
        cx,
        path,
        name: name.clone(),
        spec: Map::new(),
        labels: BTreeMap::new(),
        resources: Map::new(),
        env: BTreeMap::new(),
        volumes: Vec::new(),
        targets: Vec::new(),
        restart_given: node.get("restart").is_some(),
        aliases: BTreeMap::new(),
    };
    s.spec.insert("image".into(), json!(image));
    let mut origin = super::Origins::new();
    for (fk, fv) in fields {
        // Which spec fields this key set, for a refusal by the validation later (mod.rs).
        let before = (
            s.spec.clone(),
            s.resources.clone(),
            s.env.len(),
            s.volumes.len(),
        );
        key(&mut s, fk, fv);
        let here = (fk.name.clone(), at_key(fk));
        for (f, v) in &s.spec {
            if before.0.get(f) != Some(v) {
                origin.insert(f.clone(), here.clone());
            }
        }
        for (f, v) in &s.resources {
            if before.1.get(f) != Some(v) {
                origin.insert(format!("resources.{f}"), here.clone());
            }
        }
        if s.env.len() != before.2 {
            origin.entry("env".into()).or_insert_with(|| here.clone());
        }
        for i in before.3..s.volumes.len() {
            origin.insert(format!("volumes[{i}]"), here.clone());
        }
    }
    s.cx.origins.insert(name.clone(), origin);
    if node.get("network_mode").is_none() && node.get("networks").is_none() {
        super::service_io::join_default(&mut s, k);
    }
    not_with_mode(&mut s, node);
    if !s.env.is_empty() {
        s.spec.insert("env".into(), json!(s.env));
    }
    if !s.volumes.is_empty() {
        s.spec
            .insert("volumes".into(), Value::Array(s.volumes.clone()));
    }
    if !s.resources.is_empty() {
        s.spec
            .insert("resources".into(), Value::Object(s.resources.clone()));
    }
    let read = serde_json::from_value::<ContainerSpec>(Value::Object(s.spec.clone()));
    let mut spec: ContainerSpec = match read {
        Ok(spec) => spec,
        Err(e) => {
            let p = s.path.clone();
            s.cx.drop(at_key(k), p, format!("not converted: internal error: {e}"));
            return None;
        }
    };
    service_name_alias(&mut s, k, &spec);
    for n in spec.networks.iter_mut() {
        if let Some(a) = s.aliases.remove(&n.name) {
            n.aliases = a;
        }
    }
    Some(Converted {
        file: Default::default(),
        manifest: Manifest::Container(ContainerManifest {
            api_version: ApiVersion::V1,
            metadata: Metadata {
                name,
                labels: s.labels,
            },
            spec,
        }),
        from: s.path,
        line: k.line,
        col: k.col,
    })
}

/// Compose finds a service by its name on each of its networks: where the container is named
/// otherwise (`container_name`, a name made a DNS label), the service name becomes an alias on
/// every network, when it is a DNS name.
fn service_name_alias(s: &mut Svc, k: &Key, spec: &ContainerSpec) {
    if s.name.eq_ignore_ascii_case(&k.name) || spec.networks.is_empty() {
        return;
    }
    let path = s.path.clone();
    if !crate::manifest::validate::object::is_hostname(&k.name) {
        let what = format!(
            "other services find it as {:?} only: {:?} is not a DNS name, so it cannot be an alias",
            s.name, k.name
        );
        s.cx.change(at_key(k), path, what);
        return;
    }
    for n in &spec.networks {
        super::service_io::add_alias(s, &n.name, &k.name, at_key(k), "networks");
    }
    // The usual `<project>-<service>` is said once for all (top.rs); a container_name here.
    if s.name != super::dns_label(&format!("{}-{}", s.cx.project, k.name)) {
        let what = format!(
            "{:?} is a DNS alias of container {:?} on its networks, so other services find it by both names",
            k.name, s.name
        );
        s.cx.change(at_key(k), path, what);
    }
}

/// Takes out what a network mode other than bridge makes meaningless (the agent refuses it):
/// ports, links, networks; for `container:` also hostname, dns, dns_search and extra_hosts.
fn not_with_mode(s: &mut Svc, node: &Node) {
    let Some(mode) = s
        .spec
        .get("networkMode")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return;
    };
    let mut fields = vec![
        ("ports", "ports"),
        ("links", "links"),
        ("networks", "networks"),
    ];
    if mode.starts_with("container:") {
        fields.extend([
            ("hostname", "hostname"),
            ("dns", "dns"),
            ("dnsSearch", "dns_search"),
            ("extraHosts", "extra_hosts"),
        ]);
    }
    for (field, sub) in fields {
        if s.spec.remove(field).is_some() {
            let loc = node.entry(sub).map_or((0, 0), |(k, _)| at_key(k));
            s.drop(
                loc,
                sub,
                format!("not carried over: meaningless with network_mode {mode} (the container uses that network namespace as it is)"),
            );
        }
    }
}

/// The image reference: `image:` (a bare name gets `:latest`, since a bare name means an Image
/// manifest to the agent), or for a service with only `build:` the name Compose gives the build.
fn image(cx: &mut Cx, k: &Key, node: &Node, name: &str) -> Option<String> {
    let path = format!("services.{}", k.name);
    let build = node.entry("build");
    let image = node.entry("image");
    match (image, build) {
        (Some((ik, iv)), b) => {
            let Some(mut img) = value::scalar(iv).filter(|s| !s.is_empty()) else {
                cx.drop(
                    at_key(ik),
                    format!("{path}.image"),
                    "not converted: `image` must be a reference",
                );
                return None;
            };
            if !img.contains(['/', ':', '@']) {
                let full = format!("{img}:latest");
                cx.change(
                    at(iv),
                    format!("{path}.image"),
                    format!("written as {full:?}: a bare name means an Image manifest to the agent, a reference with a tag means a registry (Docker Hub here)"),
                );
                img = full;
            }
            if let Some((bk, _)) = b {
                cx.drop(
                    at_key(bk),
                    format!("{path}.build"),
                    format!("not carried over: the agent does not build images; `image` {img:?} is used: build and push it first (docker compose build && docker compose push)"),
                );
            }
            Some(img)
        }
        (None, Some((bk, _))) => {
            let img = format!("{}-{}:latest", cx.project, super::dns_label(&k.name));
            cx.drop(
                at_key(bk),
                format!("{path}.build"),
                format!("not carried over: the agent does not build images; written as `image: {img}` (the name Compose gives the build), which the agent pulls from Docker Hub: build it, push it to a registry this host can reach, and set `image` to that reference"),
            );
            Some(img)
        }
        (None, None) => {
            cx.drop(
                at_key(k),
                path,
                format!("not converted: service {name:?} has neither `image` nor `build`"),
            );
            None
        }
    }
}

/// Why keys the agent has no counterpart for are not carried over.
fn unsupported(key: &str) -> Option<&'static str> {
    Some(match key {
        "external_links" => {
            "links go to containers the agent runs; run the linked container from a manifest too and use `links`"
        }
        "dns_opt" => "the agent writes resolv.conf from `dns` and `dnsSearch` only",
        "domainname" => "the agent has no domain name setting",
        "stdin_open" | "tty" | "attach" => {
            "containers of the agent run without a terminal or standard input"
        }
        "ipc" | "pid" | "uts" | "userns_mode" | "cgroup" => {
            "the agent gives each container its own namespaces"
        }
        "cgroup_parent" => "the agent places containers in its own cgroup subtree",
        "platform" => "the agent pulls the image for this host's platform",
        "pull_policy" => {
            "the agent pulls an image when its manifest names one it does not have (`agent image pull` refreshes it)"
        }
        "runtime" | "isolation" => "the agent runs containers with its own runtime",
        "mac_address" => "the agent gives containers generated MAC addresses",
        "blkio_config" | "cpu_count" | "cpu_percent" | "cpu_period" | "cpu_quota"
        | "cpu_rt_period" | "cpu_rt_runtime" | "mem_swappiness" | "oom_kill_disable"
        | "storage_opt" => {
            "not among the agent's resource limits (memory, memoryReservation, memorySwap, cpus, cpuShares, cpuset, pids)"
        }
        "credential_spec" => "Windows only",
        "gpus" => "give GPUs as CDI devices in `devices` (nvidia.com/gpu=all)",
        "develop" => {
            "`compose watch` has no counterpart: the agent watches its manifests, not sources"
        }
        "post_start" | "pre_stop" => "the agent has no lifecycle hooks",
        "label_file" => "write the labels into `labels`",
        "annotations" => "the agent passes `labels` as OCI annotations; write these into `labels`",
        "use_api_socket" => "the agent has no Docker API socket",
        "provider" | "models" => "providers and models are Docker Desktop features",
        "driver_opts" => "per-service network driver options are not supported",
        _ => return None,
    })
}

/// Maps one key of a service.
fn key(s: &mut Svc, k: &Key, v: &Node) {
    let sub = k.name.as_str();
    let kl = at_key(k);
    let vl = at(v);
    match sub {
        "image" | "build" | "container_name" => {}
        "profiles" => {}
        "command" | "entrypoint" => {
            if let Some(words) = command(s, sub, v) {
                s.spec.insert(sub.into(), json!(words));
            }
        }
        "environment" => environment(s, v),
        "env_file" => super::service_io::env_files(s, v),
        "ports" => super::service_io::ports(s, v),
        "expose" => s.change(kl, sub, "nothing to carry over: containers on one network reach every port of each other"),
        "volumes" => super::mounts::volumes(s, v),
        "tmpfs" => super::mounts::tmpfs(s, v),
        "volumes_from" => super::mounts::volumes_from(s, v),
        "networks" => super::service_io::networks(s, k, v),
        "network_mode" => super::service_io::network_mode(s, k, v),
        "links" => super::service_io::links(s, v),
        "extra_hosts" => super::service_io::extra_hosts(s, v),
        "secrets" => super::service_io::secrets(s, v),
        "configs" => super::mounts::configs(s, v),
        "devices" => list_field::<crate::manifest::device::Device>(s, "devices", sub, v),
        "device_cgroup_rules" => {
            list_field::<crate::manifest::device::DeviceRule>(s, "deviceCgroupRules", sub, v)
        }
        "dns" => list_field::<std::net::IpAddr>(s, "dns", sub, v),
        "dns_search" => list_field::<String>(s, "dnsSearch", sub, v),
        "cap_add" => list_field::<crate::manifest::Capability>(s, "capAdd", sub, v),
        "cap_drop" => list_field::<crate::manifest::Capability>(s, "capDrop", sub, v),
        "group_add" => list_field::<crate::manifest::GroupRef>(s, "groupAdd", sub, v),
        "hostname" => scalar_field::<String>(s, "hostname", sub, v),
        "user" => scalar_field::<String>(s, "user", sub, v),
        "working_dir" => scalar_field::<std::path::PathBuf>(s, "workingDir", sub, v),
        "stop_signal" => scalar_field::<crate::manifest::Signal>(s, "stopSignal", sub, v),
        "stop_grace_period" => match value::duration(v) {
            Ok(d) => {
                s.spec.insert("stopGracePeriod".into(), json!(d.to_string()));
            }
            Err(e) => s.drop(vl, sub, format!("not carried over: {e}")),
        },
        "read_only" => bool_field(s, "readOnlyRootFilesystem", sub, v),
        "init" => bool_field(s, "init", sub, v),
        "privileged" => {
            bool_field(s, "privileged", sub, v);
            if boolean(v).unwrap_or(false) {
                s.change(kl, sub, "carried over: root on the host in practice; `agent validate` warns about it");
            }
        }
        "shm_size" => match value::size(v) {
            Ok(b) => {
                s.set::<crate::manifest::ByteSize>("shmSize", json!(b.0), vl, sub);
            }
            Err(e) => s.drop(vl, sub, format!("not carried over: {e}")),
        },
        "oom_score_adj" => match value::int(v) {
            Ok(i) => {
                s.set::<i64>("oomScoreAdj", json!(i), vl, sub);
            }
            Err(e) => s.drop(vl, sub, format!("not carried over: {e}")),
        },
        "labels" => match value::entries(v, '=') {
            Ok(list) => {
                for e in list {
                    s.labels.insert(e.key, e.value.unwrap_or_default());
                }
            }
            Err(e) => s.drop(vl, sub, format!("not carried over: {e}")),
        },
        "sysctls" => match value::entries(v, '=') {
            Ok(list) => {
                let map: BTreeMap<String, String> = list
                    .into_iter()
                    .map(|e| (e.key, e.value.unwrap_or_default()))
                    .collect();
                s.spec.insert("sysctls".into(), json!(map));
            }
            Err(e) => s.drop(vl, sub, format!("not carried over: {e}")),
        },
        "security_opt" => security_opt(s, v),
        "ulimits" => run::ulimits(s, v),
        "healthcheck" => run::healthcheck(s, k, v),
        "restart" => run::restart(s, v),
        "logging" => run::logging(s, v),
        "depends_on" => run::depends_on(s, v),
        "deploy" => run::deploy(s, v),
        "mem_limit" => size_resource(s, "memory", sub, v),
        "mem_reservation" => size_resource(s, "memoryReservation", sub, v),
        "memswap_limit" => match value::int(v) {
            Ok(-1) => s.resource::<crate::manifest::MemorySwap>("memorySwap", json!(-1), vl, sub),
            _ => size_resource(s, "memorySwap", sub, v),
        },
        "cpus" => match value::number(v) {
            // Docker's 0 is no limit.
            Ok(0.0) => s.change(kl, sub, "0: unlimited, as without it"),
            Ok(c) => s.resource::<f64>("cpus", json!(c), vl, sub),
            Err(e) => s.drop(vl, sub, format!("not carried over: {e}")),
        },
        "cpu_shares" => match value::uint(v) {
            Ok(c) => s.resource::<u64>("cpuShares", json!(c), vl, sub),
            Err(e) => s.drop(vl, sub, format!("not carried over: {e}")),
        },
        "cpuset" => match text(v) {
            Ok(c) => s.resource::<String>("cpuset", json!(c), vl, sub),
            Err(e) => s.drop(vl, sub, format!("not carried over: {e}")),
        },
        "pids_limit" => match value::int(v) {
            Ok(p) if p > 0 => s.resource::<u64>("pids", json!(p), vl, sub),
            Ok(_) => s.change(kl, sub, "unlimited, as without it"),
            Err(e) => s.drop(vl, sub, format!("not carried over: {e}")),
        },
        "scale" => match value::uint(v) {
            Ok(1) => {}
            Ok(n) => s.drop(kl, sub, format!("not carried over: a manifest is one container; for {n} copies write {n} Container manifests with different names (and host ports)")),
            Err(e) => s.drop(vl, sub, format!("not carried over: {e}")),
        },
        x if x.starts_with("x-") => s.change(kl, x, "extension field: not a setting, ignored"),
        other => match unsupported(other) {
            Some(why) => s.drop(kl, other, format!("not carried over: {why}")),
            None => s.drop(
                kl,
                other,
                "not carried over: not a service key of the Compose spec the converter knows",
            ),
        },
    }
}

/// `command:` / `entrypoint:`: a list as it is, a string split into words as Compose does.
fn command(s: &mut Svc, sub: &str, v: &Node) -> Option<Vec<String>> {
    match &v.kind {
        NodeKind::Null => None,
        NodeKind::Seq(_) => match value::str_list(v) {
            Ok(words) => Some(words),
            Err(e) => {
                s.drop(at(v), sub, format!("not carried over: {e}"));
                None
            }
        },
        _ => match text(v).and_then(|t| shell::split(&t)) {
            Ok(words) => Some(words),
            Err(e) => {
                s.drop(at(v), sub, format!("not carried over: {e}"));
                None
            }
        },
    }
}

/// `environment:`: a list of `KEY=VALUE` or a mapping; a bare `KEY` (or `KEY:` with no value)
/// takes the value from the environment `agent convert` runs in, as Compose does.
fn environment(s: &mut Svc, v: &Node) {
    let list = match value::entries(v, '=') {
        Ok(l) => l,
        Err(e) => {
            s.drop(at(v), "environment", format!("not carried over: {e}"));
            return;
        }
    };
    for e in list {
        match e.value {
            Some(val) => {
                s.env.insert(e.key, val);
            }
            None => match s.cx.vars.get(&e.key) {
                Some((val, from)) => {
                    s.cx.interpolated.push(super::Interpolated {
                        file: Default::default(),
                        line: e.line,
                        col: e.col,
                        name: e.key.clone(),
                        from,
                    });
                    s.env.insert(e.key, val.to_string());
                }
                None => {
                    let sub = format!("environment.{}", e.key);
                    s.drop(
                        (e.line, e.col),
                        &sub,
                        "not carried over: no value here and unset in the environment and .env (Compose leaves it out too)",
                    );
                }
            },
        }
    }
}

/// `security_opt:`: `no-new-privileges[:true]` is what the agent does for every container
/// (carried over as it is); anything else (`seccomp:...`, `apparmor:...`, `label:...`,
/// `no-new-privileges:false`) is reported item by item.
fn security_opt(s: &mut Svc, v: &Node) {
    for (i, item) in super::service_io::items(v).into_iter().enumerate() {
        let sub = format!("security_opt[{i}]");
        let opt = value::scalar(item).unwrap_or_default();
        let (name, val) = opt
            .split_once([':', '='])
            .map_or((opt.as_str(), None), |(n, v)| (n, Some(v)));
        if name == "no-new-privileges" && matches!(val, None | Some("true")) {
            s.change(
                at(item),
                &sub,
                "nothing to write: the agent sets no-new-privileges on every container",
            );
            continue;
        }
        let why = match name {
            "no-new-privileges" => "the agent always sets no-new-privileges",
            "seccomp" => {
                "the agent applies its own seccomp profile (its default profile, or none with `privileged`)"
            }
            _ => {
                "the agent applies its own seccomp profile and no-new-privileges; other security options are not supported"
            }
        };
        s.drop(at(item), &sub, format!("not carried over: {opt:?}: {why}"));
    }
}

/// A list field (a single string is a list of one) read item by item as the agent's `T`.
fn list_field<T: DeserializeOwned + Serialize>(s: &mut Svc, field: &str, sub: &str, v: &Node) {
    let items: Vec<&Node> = match &v.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        NodeKind::Null => Vec::new(),
        _ => vec![v],
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let raw = match &item.kind {
            NodeKind::Map(_) => node_json(item),
            NodeKind::Int(n) if field == "groupAdd" => json!(n),
            _ => match value::scalar(item) {
                Some(t) => json!(t),
                None => {
                    s.drop(
                        at(item),
                        &format!("{sub}[{i}]"),
                        format!(
                            "not carried over: expected a string, found {}",
                            item.describe()
                        ),
                    );
                    continue;
                }
            },
        };
        match typed::<T>(raw) {
            Ok(val) => out.push(val),
            Err(e) => s.drop(
                at(item),
                &format!("{sub}[{i}]"),
                format!("not carried over: {e}"),
            ),
        }
    }
    if !out.is_empty() {
        s.spec.insert(field.into(), Value::Array(out));
    }
}

fn scalar_field<T: DeserializeOwned + Serialize>(s: &mut Svc, field: &str, sub: &str, v: &Node) {
    match value::scalar(v) {
        Some(t) => {
            s.set::<T>(field, json!(t), at(v), sub);
        }
        None => s.drop(
            at(v),
            sub,
            format!(
                "not carried over: expected a string, found {}",
                v.describe()
            ),
        ),
    }
}

fn bool_field(s: &mut Svc, field: &str, sub: &str, v: &Node) {
    match boolean(v) {
        Ok(b) => {
            s.spec.insert(field.into(), json!(b));
        }
        Err(e) => s.drop(at(v), sub, format!("not carried over: {e}")),
    }
}

pub(super) fn size_resource(s: &mut Svc, field: &str, sub: &str, v: &Node) {
    match value::size(v) {
        // Docker's 0 is no limit.
        Ok(b) if b.0 == 0 => s.change(at(v), sub, "0: unlimited, as without it"),
        Ok(b) => s.resource::<crate::manifest::ByteSize>(field, json!(b.0), at(v), sub),
        Err(e) => s.drop(at(v), sub, format!("not carried over: {e}")),
    }
}

/// A node as JSON (for long forms read by the agent's types): keys as written, scalars typed.
pub(super) fn node_json(n: &Node) -> Value {
    match &n.kind {
        NodeKind::Null => Value::Null,
        NodeKind::Bool(b) => json!(b),
        NodeKind::Int(i) => json!(i),
        NodeKind::UInt(u) => json!(u),
        NodeKind::Float(f) => json!(f),
        NodeKind::Str(s) => json!(s),
        NodeKind::Seq(items) => Value::Array(items.iter().map(node_json).collect()),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.name.clone(), node_json(v)))
                .collect(),
        ),
    }
}

pub(super) fn node_entries(n: &Node) -> &[(Key, Node)] {
    match &n.kind {
        NodeKind::Map(e) => e,
        _ => &[],
    }
}
