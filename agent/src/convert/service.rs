//! One Compose service -> one Container manifest. Every key of the service is looked at: mapped
//! onto the spec, or recorded as not carried over with the reason. Mounts, ports, networks,
//! links, secrets and devices are in [`super::service_io`].
//!
//! Each value is read by the agent's own type for the field (`PortMapping`, `Mount`,
//! `Capability`, `Signal`, ...), so a value the agent would refuse is reported here with the
//! agent's own reason instead of producing a manifest that fails later.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

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
    fn resource<T: DeserializeOwned + Serialize>(
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
    };
    s.spec.insert("image".into(), json!(image));
    for (fk, fv) in fields {
        key(&mut s, fk, fv);
    }
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
    let spec: ContainerSpec = match read {
        Ok(spec) => spec,
        Err(e) => {
            let p = s.path.clone();
            s.cx.drop(at_key(k), p, format!("not converted: internal error: {e}"));
            return None;
        }
    };
    Some(Converted {
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
        "extends" => "the agent has no `extends`: write the inherited keys into the service",
        "external_links" => {
            "links go to containers the agent runs; run the linked container from a manifest too and use `links`"
        }
        "dns_opt" => "the agent writes resolv.conf from `dns` and `dnsSearch` only",
        "domainname" => "the agent has no domain name setting",
        "security_opt" => {
            "the agent applies its own seccomp profile and no-new-privileges; other security options are not supported"
        }
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
        "volumes" => super::service_io::volumes(s, v),
        "tmpfs" => super::service_io::tmpfs(s, v),
        "volumes_from" => super::service_io::volumes_from(s, v),
        "networks" => super::service_io::networks(s, k, v),
        "network_mode" => super::service_io::network_mode(s, k, v),
        "links" => super::service_io::links(s, v),
        "extra_hosts" => super::service_io::extra_hosts(s, v),
        "secrets" => super::service_io::secrets(s, v),
        "configs" => super::service_io::configs(s, v),
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
        "ulimits" => ulimits(s, v),
        "healthcheck" => healthcheck(s, k, v),
        "restart" => restart(s, v),
        "logging" => logging(s, v),
        "depends_on" => depends_on(s, v),
        "deploy" => deploy(s, v),
        "mem_limit" => size_resource(s, "memory", sub, v),
        "mem_reservation" => size_resource(s, "memoryReservation", sub, v),
        "memswap_limit" => match value::int(v) {
            Ok(-1) => s.resource::<crate::manifest::MemorySwap>("memorySwap", json!(-1), vl, sub),
            _ => size_resource(s, "memorySwap", sub, v),
        },
        "cpus" => match value::number(v) {
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

fn size_resource(s: &mut Svc, field: &str, sub: &str, v: &Node) {
    match value::size(v) {
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

fn ulimits(s: &mut Svc, v: &Node) {
    let NodeKind::Map(entries) = &v.kind else {
        s.drop(
            at(v),
            "ulimits",
            format!(
                "not carried over: expected a mapping, found {}",
                v.describe()
            ),
        );
        return;
    };
    let mut out = Map::new();
    for (k, lim) in entries {
        let sub = format!("ulimits.{}", k.name);
        let one = json!({ k.name.clone(): node_json(lim) });
        match typed::<BTreeMap<crate::manifest::UlimitName, crate::manifest::Ulimit>>(one) {
            Ok(Value::Object(m)) => out.extend(m),
            Ok(_) => {}
            Err(e) => s.drop(at_key(k), &sub, format!("not carried over: {e}")),
        }
    }
    if !out.is_empty() {
        s.spec.insert("ulimits".into(), Value::Object(out));
    }
}

/// `healthcheck:` -> `healthcheck` with `onUnhealthy: none` (Compose only reports health).
fn healthcheck(s: &mut Svc, k: &Key, v: &Node) {
    let NodeKind::Map(entries) = &v.kind else {
        s.drop(
            at(v),
            "healthcheck",
            format!(
                "not carried over: expected a mapping, found {}",
                v.describe()
            ),
        );
        return;
    };
    if v.get("disable").map(boolean) == Some(Ok(true)) {
        s.change(at_key(k), "healthcheck", "disabled: the agent runs no health check without one (it does not run the image's HEALTHCHECK either)");
        return;
    }
    let mut hc = Map::new();
    for (hk, hv) in entries {
        let sub = format!("healthcheck.{}", hk.name);
        match hk.name.as_str() {
            "test" => match health_test(hv) {
                Ok(Some(cmd)) => {
                    hc.insert("command".into(), json!(cmd));
                }
                Ok(None) => {
                    s.change(at(hv), &sub, "NONE: no health check");
                    return;
                }
                Err(e) => s.drop(at(hv), &sub, format!("not carried over: {e}")),
            },
            "interval" | "timeout" | "start_period" => match value::duration(hv) {
                Ok(d) => {
                    let field = if hk.name == "start_period" {
                        "startPeriod"
                    } else {
                        hk.name.as_str()
                    };
                    hc.insert(field.into(), json!(d.to_string()));
                }
                Err(e) => s.drop(at(hv), &sub, format!("not carried over: {e}")),
            },
            "retries" => match value::uint(hv) {
                Ok(r) => {
                    hc.insert("retries".into(), json!(r));
                }
                Err(e) => s.drop(at(hv), &sub, format!("not carried over: {e}")),
            },
            "disable" => {}
            "start_interval" => s.drop(
                at_key(hk),
                &sub,
                "not carried over: the agent checks at `interval` during the start period too",
            ),
            other => s.drop(
                at_key(hk),
                &sub,
                format!("not carried over: `{other}` is not a health check setting"),
            ),
        }
    }
    if !hc.contains_key("command") {
        s.drop(at_key(k), "healthcheck", "not carried over: no `test`; the agent does not run the image's HEALTHCHECK, so there is nothing to time");
        return;
    }
    hc.insert("onUnhealthy".into(), json!("none"));
    s.set::<crate::manifest::Healthcheck>("healthcheck", Value::Object(hc), at(v), "healthcheck");
}

/// `test:` -> the command: `[CMD, args...]` as is, `[CMD-SHELL, cmd]` and a plain string
/// through `/bin/sh -c`; `[NONE]` is `None`.
fn health_test(v: &Node) -> Result<Option<Vec<String>>, String> {
    match &v.kind {
        NodeKind::Seq(_) => {
            let words = value::str_list(v)?;
            match words.split_first() {
                Some((first, rest)) if first == "CMD" && !rest.is_empty() => {
                    Ok(Some(rest.to_vec()))
                }
                Some((first, rest)) if first == "CMD-SHELL" && !rest.is_empty() => {
                    Ok(Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]))
                }
                Some((first, _)) if first == "NONE" => Ok(None),
                _ => Err(
                    "a test list starts with CMD, CMD-SHELL or NONE, followed by the command"
                        .into(),
                ),
            }
        }
        _ => {
            let cmd = text(v)?;
            if cmd.trim().is_empty() {
                return Err("an empty test".into());
            }
            Ok(Some(vec!["/bin/sh".into(), "-c".into(), cmd]))
        }
    }
}

fn restart(s: &mut Svc, v: &Node) {
    let policy = match &v.kind {
        // `restart: no` unquoted reads as false in YAML 1.1 files.
        NodeKind::Bool(false) => "no".to_string(),
        _ => match text(v) {
            Ok(t) => t,
            Err(e) => {
                s.drop(at(v), "restart", format!("not carried over: {e}"));
                return;
            }
        },
    };
    s.set::<crate::manifest::RestartPolicy>("restart", json!(policy), at(v), "restart");
}

fn logging(s: &mut Svc, v: &Node) {
    let NodeKind::Map(entries) = &v.kind else {
        s.drop(
            at(v),
            "logging",
            format!(
                "not carried over: expected a mapping, found {}",
                v.describe()
            ),
        );
        return;
    };
    let mut out = Map::new();
    for (lk, lv) in entries {
        let sub = format!("logging.{}", lk.name);
        match lk.name.as_str() {
            "driver" => match value::scalar(lv).as_deref() {
                Some("json-file") | Some("local") => {
                    out.insert("driver".into(), json!("json-file"));
                }
                Some("journald") => {
                    out.insert("driver".into(), json!("journald"));
                }
                Some(other) => s.drop(at(lv), &sub, format!("not carried over: the agent logs to its own file (json-file) and optionally journald, not {other:?}")),
                None => s.drop(at(lv), &sub, "not carried over: expected a driver name"),
            },
            "options" => {
                for (ok, ov) in node_entries(lv) {
                    let osub = format!("{sub}.{}", ok.name);
                    match ok.name.as_str() {
                        "max-size" => match value::size(ov) {
                            Ok(b) => {
                                out.insert("maxSize".into(), json!(b.0));
                            }
                            Err(e) => s.drop(at(ov), &osub, format!("not carried over: {e}")),
                        },
                        "max-file" => match value::uint(ov) {
                            Ok(n) => {
                                out.insert("maxFiles".into(), json!(n));
                            }
                            Err(e) => s.drop(at(ov), &osub, format!("not carried over: {e}")),
                        },
                        other => s.drop(at_key(ok), &osub, format!("not carried over: the agent's log has maxSize and maxFiles only, no {other:?}")),
                    }
                }
            }
            other => s.drop(at_key(lk), &sub, format!("not carried over: `{other}` is not a logging setting")),
        }
    }
    if !out.is_empty() {
        s.set::<crate::manifest::Logging>("logging", Value::Object(out), at(v), "logging");
    }
}

pub(super) fn node_entries(n: &Node) -> &[(Key, Node)] {
    match &n.kind {
        NodeKind::Map(e) => e,
        _ => &[],
    }
}

/// `depends_on:` -> `dependsOn`: a list when every condition is `service_started` and nothing
/// else is set, else a mapping `{NAME: {condition: started|healthy|completed, restart, required}}`.
/// When this agent has no `dependsOn` the whole key is reported, naming what it asked for.
fn depends_on(s: &mut Svc, v: &Node) {
    struct Dep {
        container: String,
        condition: &'static str,
        extra: Map<String, Value>,
    }
    let mut deps: Vec<Dep> = Vec::new();
    let mut add = |s: &mut Svc, name: &str, loc: (u32, u32), condition, extra| {
        match s
        .cx
        .services
        .get(name)
    {
        Some(c) => deps.push(Dep {
            container: c.clone(),
            condition,
            extra,
        }),
        None => s.drop(
            loc,
            &format!("depends_on.{name}"),
            "not carried over: that service is not converted (unknown, or its profile is not active)",
        ),
    }
    };
    match &v.kind {
        NodeKind::Seq(items) => {
            for item in items {
                match value::scalar(item) {
                    Some(n) => add(s, &n, at(item), "started", Map::new()),
                    None => s.drop(
                        at(item),
                        "depends_on",
                        "not carried over: expected a service name",
                    ),
                }
            }
        }
        NodeKind::Map(entries) => {
            for (dk, dv) in entries {
                let mut cond = "started";
                let mut extra = Map::new();
                for (ck, cv) in node_entries(dv) {
                    let sub = format!("depends_on.{}.{}", dk.name, ck.name);
                    match ck.name.as_str() {
                        "condition" => match value::scalar(cv).as_deref() {
                            Some("service_started") => cond = "started",
                            Some("service_healthy") => cond = "healthy",
                            Some("service_completed_successfully") => cond = "completed",
                            _ => s.drop(at(cv), &sub, "not carried over: allowed are service_started, service_healthy, service_completed_successfully"),
                        },
                        "restart" | "required" => match boolean(cv) {
                            Ok(b) => {
                                extra.insert(ck.name.clone(), json!(b));
                            }
                            Err(e) => s.drop(at(cv), &sub, format!("not carried over: {e}")),
                        },
                        other => s.drop(at_key(ck), &sub, format!("not carried over: `{other}` is not a depends_on setting")),
                    }
                }
                add(s, &dk.name, at_key(dk), cond, extra);
            }
        }
        _ => s.drop(
            at(v),
            "depends_on",
            format!(
                "not carried over: expected a list or a mapping, found {}",
                v.describe()
            ),
        ),
    }
    if deps.is_empty() {
        return;
    }
    let value = if deps
        .iter()
        .all(|d| d.condition == "started" && d.extra.is_empty())
    {
        json!(deps.iter().map(|d| d.container.clone()).collect::<Vec<_>>())
    } else {
        let m: Map<String, Value> = deps
            .into_iter()
            .map(|d| {
                let mut one = d.extra;
                one.insert("condition".into(), json!(d.condition));
                (d.container, Value::Object(one))
            })
            .collect();
        Value::Object(m)
    };
    s.spec.insert("dependsOn".into(), value);
}

/// `deploy:`: resource limits and reservations, restart policy, one replica.
fn deploy(s: &mut Svc, v: &Node) {
    for (dk, dv) in node_entries(v) {
        let sub = format!("deploy.{}", dk.name);
        match dk.name.as_str() {
            "resources" => {
                for (rk, rv) in node_entries(dv) {
                    let rsub = format!("{sub}.{}", rk.name);
                    for (lk, lv) in node_entries(rv) {
                        let lsub = format!("{rsub}.{}", lk.name);
                        match (rk.name.as_str(), lk.name.as_str()) {
                            ("limits", "cpus") => match value::number(lv) {
                                Ok(c) => s.resource::<f64>("cpus", json!(c), at(lv), &lsub),
                                Err(e) => s.drop(at(lv), &lsub, format!("not carried over: {e}")),
                            },
                            ("limits", "memory") => size_resource(s, "memory", &lsub, lv),
                            ("limits", "pids") => match value::uint(lv) {
                                Ok(p) => s.resource::<u64>("pids", json!(p), at(lv), &lsub),
                                Err(e) => s.drop(at(lv), &lsub, format!("not carried over: {e}")),
                            },
                            ("reservations", "memory") => size_resource(s, "memoryReservation", &lsub, lv),
                            ("reservations", "devices") => s.drop(at_key(lk), &lsub, "not carried over: give GPUs and other devices in `devices` (CDI names such as nvidia.com/gpu=all)"),
                            ("reservations", _) => s.drop(at_key(lk), &lsub, "not carried over: the agent reserves nothing but memory (memoryReservation)"),
                            _ => s.drop(at_key(lk), &lsub, "not carried over: not among the agent's limits (cpus, memory, pids)"),
                        }
                    }
                }
            }
            "restart_policy" => {
                if s.restart_given {
                    s.change(at_key(dk), &sub, "`restart` is used instead");
                    continue;
                }
                let cond = dv.get("condition").and_then(value::scalar).unwrap_or_else(|| "any".into());
                let policy = match cond.as_str() {
                    "none" => json!("no"),
                    "any" => json!("always"),
                    "on-failure" => match dv.get("max_attempts").map(value::uint) {
                        Some(Ok(n)) => json!({"policy": "on-failure", "maxRetries": n}),
                        _ => json!("on-failure"),
                    },
                    other => {
                        s.drop(at(dv), &sub, format!("not carried over: condition {other:?}: allowed are none, on-failure, any"));
                        continue;
                    }
                };
                s.set::<crate::manifest::RestartPolicy>("restart", policy, at(dv), &sub);
                for (pk, _) in node_entries(dv) {
                    if matches!(pk.name.as_str(), "delay" | "window") {
                        s.drop(at_key(pk), &format!("{sub}.{}", pk.name), "not carried over: the agent restarts with its own backoff");
                    }
                }
            }
            "replicas" => match value::uint(dv) {
                Ok(1) => {}
                Ok(n) => s.drop(at(dv), &sub, format!("not carried over: a manifest is one container; for {n} copies write {n} Container manifests with different names (and host ports)")),
                Err(e) => s.drop(at(dv), &sub, format!("not carried over: {e}")),
            },
            "mode" => {
                if value::scalar(dv).as_deref() == Some("global") {
                    s.change(at(dv), &sub, "one container on this host");
                }
            }
            "labels" => s.drop(at_key(dk), &sub, "not carried over: swarm service labels; container labels go in `labels`"),
            _ => s.drop(at_key(dk), &sub, "not carried over: a swarm setting; the agent runs one container on this host"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::node::parse_documents;

    fn node(yaml: &str) -> Node {
        parse_documents(yaml).expect("yaml").remove(0)
    }

    #[test]
    fn health_tests_in_every_form() {
        let sh = |c: &str| Some(vec!["/bin/sh".to_string(), "-c".into(), c.into()]);
        assert_eq!(
            health_test(&node("[CMD, redis-cli, ping]")),
            Ok(Some(vec!["redis-cli".into(), "ping".into()]))
        );
        assert_eq!(
            health_test(&node("[CMD-SHELL, 'pg_isready || exit 1']")),
            Ok(sh("pg_isready || exit 1"))
        );
        assert_eq!(
            health_test(&node("/healthchecks/redis.sh")),
            Ok(sh("/healthchecks/redis.sh"))
        );
        assert_eq!(health_test(&node("[NONE]")), Ok(None));
        assert!(health_test(&node("[CMD]")).is_err());
        assert!(health_test(&node("[curl, x]")).is_err());
    }
}
