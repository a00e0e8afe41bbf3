//! What connects a service to the rest: env files, ports, networks and network mode, links,
//! extra hosts, secrets. Mounts are in [`super::mounts`].

use serde_json::{Value, json};

use super::service::{Svc, node_entries, node_json, typed};
use super::value::{self, boolean, text};
use super::{at, at_key, dns_label};
use crate::manifest::node::{Key, Node, NodeKind};

pub(super) fn items(v: &Node) -> Vec<&Node> {
    match &v.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        NodeKind::Null => Vec::new(),
        _ => vec![v],
    }
}

/// `env_file:` -> `envFiles` with absolute paths (the manifest may live elsewhere).
pub(super) fn env_files(s: &mut Svc, v: &Node) {
    let mut out = Vec::new();
    for (i, item) in items(v).into_iter().enumerate() {
        let sub = format!("env_file[{i}]");
        let (path, required) = match &item.kind {
            NodeKind::Map(_) => {
                for (fk, fv) in node_entries(item) {
                    if fk.name == "format" && value::scalar(fv).as_deref() != Some("raw") {
                        continue;
                    }
                    if !matches!(fk.name.as_str(), "path" | "required" | "format") {
                        s.drop(
                            at_key(fk),
                            &format!("{sub}.{}", fk.name),
                            "not carried over: not an env_file setting",
                        );
                    }
                }
                if item.get("format").and_then(value::scalar).as_deref() == Some("raw") {
                    s.drop(
                        at(item),
                        &sub,
                        "not carried over: the agent reads env files in the dotenv grammar only",
                    );
                    continue;
                }
                let Some(p) = item.get("path").and_then(value::scalar) else {
                    s.drop(
                        at(item),
                        &sub,
                        "not carried over: an env_file entry without `path`",
                    );
                    continue;
                };
                (p, item.get("required").map(boolean) != Some(Ok(false)))
            }
            _ => match text(item) {
                Ok(p) => (p, true),
                Err(e) => {
                    s.drop(at(item), &sub, format!("not carried over: {e}"));
                    continue;
                }
            },
        };
        let abs = s.cx.host_path(&path);
        match std::fs::File::open(&abs) {
            Ok(f) => {
                // The agent's own rule for env files: say now what `agent validate` will say.
                if let Err(e) = crate::manifest::source::perms::check_env_file(&abs, &f) {
                    s.change(
                        at(item),
                        &sub,
                        format!("`agent validate` will refuse it until fixed: {e}"),
                    );
                }
                out.push(json!(abs.display().to_string()));
            }
            Err(_) if !required => s.change(
                at(item),
                &sub,
                format!(
                    "{} does not exist and is not required: left out",
                    abs.display()
                ),
            ),
            Err(e) => s.drop(
                at(item),
                &sub,
                format!(
                    "not carried over: {}: {e} (Compose would refuse to start the service)",
                    abs.display()
                ),
            ),
        }
    }
    if !out.is_empty() {
        s.spec.insert("envFiles".into(), Value::Array(out));
    }
}

/// `ports:` in the short (`"127.0.0.1:8080:80/tcp"`, `80`) and long (`{target, published,
/// host_ip, protocol}`) forms.
pub(super) fn ports(s: &mut Svc, v: &Node) {
    let mut out = Vec::new();
    for (i, item) in items(v).into_iter().enumerate() {
        let sub = format!("ports[{i}]");
        let raw = match &item.kind {
            NodeKind::Map(entries) => {
                let mut long = serde_json::Map::new();
                for (pk, pv) in entries {
                    let psub = format!("{sub}.{}", pk.name);
                    match pk.name.as_str() {
                        "target" => {
                            long.insert("containerPort".into(), port_json(pv));
                        }
                        "published" => {
                            if let Some(p) = value::scalar(pv).filter(|p| !p.is_empty()) {
                                long.insert("hostPort".into(), json!(p));
                            }
                        }
                        "host_ip" => {
                            long.insert("hostIp".into(), node_json(pv));
                        }
                        "protocol" => {
                            long.insert("protocol".into(), node_json(pv));
                        }
                        "mode" => {}
                        "name" | "app_protocol" => s.drop(
                            at_key(pk),
                            &psub,
                            "not carried over: the agent does not name ports",
                        ),
                        other => s.drop(
                            at_key(pk),
                            &psub,
                            format!("not carried over: `{other}` is not a port setting"),
                        ),
                    }
                }
                Value::Object(long)
            }
            _ => match value::scalar(item) {
                Some(t) => json!(t),
                None => {
                    s.drop(
                        at(item),
                        &sub,
                        format!(
                            "not carried over: expected a port, found {}",
                            item.describe()
                        ),
                    );
                    continue;
                }
            },
        };
        match typed::<crate::manifest::PortMapping>(raw.clone()) {
            Ok(p) => out.push(p),
            Err(e) => match first_of_host_range(&raw) {
                // Docker's "any free port of this host range" (`8000-8010:80`): the first one.
                Some(fixed) => match typed::<crate::manifest::PortMapping>(fixed.clone()) {
                    Ok(p) => {
                        let shown = match &fixed {
                            Value::String(t) => format!("{t:?}"),
                            other => format!("published: {}", other["hostPort"]),
                        };
                        s.change(at(item), &sub, format!("written as {shown}: the agent keeps a container's host ports fixed, so it takes the first port of the host range"));
                        out.push(p);
                    }
                    Err(e) => s.drop(at(item), &sub, format!("not carried over: {e}")),
                },
                None => s.drop(at(item), &sub, format!("not carried over: {e}")),
            },
        }
    }
    if !out.is_empty() {
        s.spec.insert("ports".into(), Value::Array(out));
    }
}

fn port_json(n: &Node) -> Value {
    match value::scalar(n) {
        Some(t) => match t.parse::<u64>() {
            Ok(p) => json!(p),
            Err(_) => json!(t),
        },
        None => node_json(n),
    }
}

/// `"[ip:]8000-8010:80[/proto]"` -> `"[ip:]8000:80[/proto]"`, and the long form
/// `{hostPort: "8000-8010", containerPort: 80}` -> `{hostPort: 8000, ...}`; `None` for other
/// forms.
fn first_of_host_range(raw: &Value) -> Option<Value> {
    if let Value::Object(m) = raw {
        let (first, _) = m.get("hostPort")?.as_str()?.split_once('-')?;
        let container = m.get("containerPort")?;
        if container.as_str().is_some_and(|c| c.contains('-')) {
            return None;
        }
        let mut m = m.clone();
        m.insert("hostPort".into(), json!(first.trim().parse::<u64>().ok()?));
        return Some(Value::Object(m));
    }
    let s = raw.as_str()?;
    let (body, proto) = match s.rsplit_once('/') {
        Some((b, p)) => (b, Some(p)),
        None => (s, None),
    };
    let (head, container) = body.rsplit_once(':')?;
    if container.contains('-') {
        return None;
    }
    let (ip, host) = match head.rsplit_once(':') {
        Some((ip, h)) => (Some(ip), h),
        None => (None, head),
    };
    let (first, _) = host.split_once('-')?;
    let mut out = String::new();
    if let Some(ip) = ip {
        out.push_str(ip);
        out.push(':');
    }
    out.push_str(first);
    out.push(':');
    out.push_str(container);
    if let Some(p) = proto {
        out.push('/');
        out.push_str(p);
    }
    Some(json!(out))
}

/// The project's default network (Compose's `<project>_default`), made on first use.
fn default_network(s: &mut Svc) -> String {
    if let Some(n) = s.cx.networks.get("default") {
        return n.clone();
    }
    let name = dns_label(&format!("{}-default", s.cx.project));
    s.cx.networks.insert("default".into(), name.clone());
    s.cx.default_network = Some(name.clone());
    name
}

/// A service without `networks` and `network_mode` joins the project's default network.
pub(super) fn join_default(s: &mut Svc, _k: &Key) {
    let n = default_network(s);
    s.spec.insert("networks".into(), json!([n]));
}

/// `networks:` of a service (a list of names, or a mapping of name to settings).
pub(super) fn networks(s: &mut Svc, k: &Key, v: &Node) {
    let mut out: Vec<String> = Vec::new();
    let list: Vec<(String, (u32, u32), Option<&Node>)> = match &v.kind {
        NodeKind::Seq(items) => items
            .iter()
            .filter_map(|i| value::scalar(i).map(|n| (n, at(i), None)))
            .collect(),
        NodeKind::Map(entries) => entries
            .iter()
            .map(|(nk, nv)| (nk.name.clone(), at_key(nk), Some(nv)))
            .collect(),
        _ => {
            s.drop(
                at_key(k),
                "networks",
                format!(
                    "not carried over: expected a list or a mapping, found {}",
                    v.describe()
                ),
            );
            return;
        }
    };
    for (net, loc, settings) in list {
        let sub = format!("networks.{net}");
        let name = if net == "default" {
            default_network(s)
        } else {
            match s.cx.networks.get(&net) {
                Some(n) => n.clone(),
                None => {
                    s.drop(loc, &sub, format!("not carried over: network {net:?} is not declared under the top-level `networks` (Compose refuses such a file)"));
                    continue;
                }
            }
        };
        for (sk, sv) in settings.map(node_entries).unwrap_or_default() {
            let ssub = format!("{sub}.{}", sk.name);
            match sk.name.as_str() {
                "aliases" => match value::str_list(sv) {
                    Ok(list) => {
                        for a in list {
                            add_alias(s, &name, &a, at(sv), &ssub);
                        }
                    }
                    Err(e) => s.drop(at(sv), &ssub, format!("not carried over: {e}")),
                },
                "ipv4_address" | "ipv6_address" | "link_local_ips" => s.drop(at_key(sk), &ssub, "not carried over: the agent hands out addresses itself (and keeps each container's across restarts)"),
                "priority" | "gw_priority" | "interface_name" | "mac_address" | "driver_opts" => s.drop(at_key(sk), &ssub, "not carried over: not a per-network setting the agent has"),
                other => s.drop(at_key(sk), &ssub, format!("not carried over: `{other}` is not a per-network setting")),
            }
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    if !out.is_empty() {
        s.spec.insert("networks".into(), json!(out));
    }
}

/// Adds DNS alias `alias` of the container on network `net` (a Network's name), unless it is
/// not a DNS name (reported) or already there.
pub(super) fn add_alias(s: &mut Svc, net: &str, alias: &str, loc: (u32, u32), sub: &str) {
    if !crate::manifest::validate::object::is_hostname(alias) {
        s.drop(
            loc,
            sub,
            format!(
                "not carried over: alias {alias:?} is not a DNS name (letters, digits, '-' and '.')"
            ),
        );
        return;
    }
    let list = s.aliases.entry(net.to_string()).or_default();
    if !list.iter().any(|a| a.eq_ignore_ascii_case(alias)) {
        list.push(alias.to_string());
    }
}

/// `network_mode:` bridge, host, none, `service:NAME`, `container:NAME`.
pub(super) fn network_mode(s: &mut Svc, k: &Key, v: &Node) {
    let sub = "network_mode";
    let Some(mode) = value::scalar(v) else {
        s.drop(at(v), sub, "not carried over: expected a string");
        return;
    };
    let value = match mode.as_str() {
        "host" | "none" => mode.clone(),
        "bridge" | "default" => {
            if s.spec.get("networks").is_none() {
                join_default(s, k);
            }
            s.change(at(v), sub, "the project's network, as without network_mode");
            return;
        }
        m => {
            match (m.strip_prefix("service:"), m.strip_prefix("container:")) {
                (Some(svc), _) => match s.cx.services.get(svc) {
                    Some(n) => format!("container:{n}"),
                    None => {
                        s.drop(
                            at(v),
                            sub,
                            format!("not carried over: {svc:?} is not a converted service"),
                        );
                        return;
                    }
                },
                (_, Some(c)) => {
                    let n = dns_label(c);
                    s.change(at(v), sub, format!("refers to container {n:?}, which must be a Container manifest of the agent"));
                    format!("container:{n}")
                }
                _ => {
                    s.drop(at(v), sub, format!("not carried over: {m:?}; allowed are bridge, host, none, service:NAME, container:NAME"));
                    return;
                }
            }
        }
    };
    s.set::<crate::manifest::NetworkMode>("networkMode", json!(value), at(v), sub);
}

/// `links: [db, "db:database"]`.
pub(super) fn links(s: &mut Svc, v: &Node) {
    let mut out = Vec::new();
    for (i, item) in items(v).into_iter().enumerate() {
        let sub = format!("links[{i}]");
        let Some(t) = value::scalar(item) else {
            continue;
        };
        let (svc, alias) = match t.split_once(':') {
            Some((a, b)) => (a.to_string(), Some(b.to_string())),
            None => (t.clone(), None),
        };
        let Some(container) = s.cx.services.get(&svc).cloned() else {
            s.drop(
                at(item),
                &sub,
                format!("not carried over: {svc:?} is not a converted service"),
            );
            continue;
        };
        // Compose's link alias defaults to the service name, which may differ from the
        // Container's name.
        let alias = alias.or_else(|| (container != svc).then_some(svc));
        let mut l = json!({"container": container});
        if let Some(a) = alias {
            l["alias"] = json!(a);
        }
        match typed::<crate::manifest::Link>(l) {
            Ok(l) => out.push(l),
            Err(e) => s.drop(at(item), &sub, format!("not carried over: {e}")),
        }
    }
    if !out.is_empty() {
        s.spec.insert("links".into(), Value::Array(out));
    }
}

/// `extra_hosts:` as `["host:ip", "host=ip"]` or `{host: ip}` (or `{host: [ip, ip]}`).
pub(super) fn extra_hosts(s: &mut Svc, v: &Node) {
    let mut pairs: Vec<(String, String, (u32, u32))> = Vec::new();
    match &v.kind {
        NodeKind::Map(entries) => {
            for (hk, hv) in entries {
                for ip in value::str_list(hv).unwrap_or_default() {
                    pairs.push((hk.name.clone(), ip, at_key(hk)));
                }
            }
        }
        _ => {
            for item in items(v) {
                let Some(t) = value::scalar(item) else {
                    continue;
                };
                let split = t.split_once('=').or_else(|| t.split_once(':'));
                match split {
                    Some((h, ip)) => pairs.push((h.to_string(), ip.to_string(), at(item))),
                    None => s.drop(
                        at(item),
                        "extra_hosts",
                        format!("not carried over: {t:?} is not HOST:IP"),
                    ),
                }
            }
        }
    }
    let mut out = Vec::new();
    for (host, ip, loc) in pairs {
        let ip = ip.trim_start_matches('[').trim_end_matches(']').to_string();
        if ip == "host-gateway" {
            // The host's address on the container's network, once subnets are chosen (top.rs).
            let key = s.p("extra_hosts");
            s.cx.host_gateway.push(super::HostGateway {
                container: s.name.clone(),
                host,
                loc,
                key,
            });
            continue;
        }
        match typed::<crate::manifest::ExtraHost>(json!({"host": host, "ip": ip})) {
            Ok(h) => out.push(h),
            Err(e) => s.drop(loc, "extra_hosts", format!("not carried over: {e}")),
        }
    }
    if !out.is_empty() {
        s.spec.insert("extraHosts".into(), Value::Array(out));
    }
}

/// Reads `uid`, `gid` (strings in Compose) and `mode` of a long secret or config.
fn owner_fields(item: &Node, out: &mut serde_json::Map<String, Value>) {
    for f in ["uid", "gid"] {
        if let Some(n) = item.get(f).and_then(|n| value::uint(n).ok()) {
            out.insert(f.into(), json!(n));
        }
    }
    if let Some(m) = item.get("mode").and_then(value::scalar) {
        out.insert("mode".into(), json!(m));
    }
}

/// `secrets:` of a service -> `secrets` referring to the Secret manifests.
pub(super) fn secrets(s: &mut Svc, v: &Node) {
    let mut out = Vec::new();
    for (i, item) in items(v).into_iter().enumerate() {
        let sub = format!("secrets[{i}]");
        let (source, long) = match &item.kind {
            NodeKind::Map(_) => match item.get("source").and_then(value::scalar) {
                Some(src) => (src, true),
                None => {
                    s.drop(
                        at(item),
                        &sub,
                        "not carried over: a secret without `source`",
                    );
                    continue;
                }
            },
            _ => match value::scalar(item) {
                Some(src) => (src, false),
                None => continue,
            },
        };
        let Some(name) = s.cx.secrets.get(&source).cloned() else {
            s.drop(at(item), &sub, format!("not carried over: secret {source:?} is not a file secret of the top-level `secrets` (see there)"));
            continue;
        };
        let raw = if long {
            let mut m = serde_json::Map::new();
            m.insert("source".into(), json!(name));
            if let Some(t) = item.get("target").and_then(value::scalar) {
                m.insert("target".into(), json!(t));
            }
            owner_fields(item, &mut m);
            Value::Object(m)
        } else if name != source {
            // Mounted at /run/secrets/<compose name>, as Compose does.
            json!({"source": name, "target": source})
        } else {
            json!(name)
        };
        match typed::<crate::manifest::SecretRef>(raw) {
            Ok(r) => out.push(r),
            Err(e) => s.drop(at(item), &sub, format!("not carried over: {e}")),
        }
    }
    if !out.is_empty() {
        s.spec.insert("secrets".into(), Value::Array(out));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ranges_take_their_first_port() {
        let f = |s: &str| first_of_host_range(&json!(s));
        assert_eq!(f("8000-8010:80"), Some(json!("8000:80")));
        assert_eq!(
            f("127.0.0.1:8000-8010:80/udp"),
            Some(json!("127.0.0.1:8000:80/udp"))
        );
        assert_eq!(f("8000-8001:80-81"), None);
        assert_eq!(f("8000:80"), None);
        // The long form, `published: "9200-9210"`.
        let long = json!({"hostPort": "9200-9210", "containerPort": 92, "protocol": "udp"});
        assert_eq!(
            first_of_host_range(&long),
            Some(json!({"hostPort": 9200, "containerPort": 92, "protocol": "udp"}))
        );
        let both = json!({"hostPort": "9200-9201", "containerPort": "92-93"});
        assert_eq!(first_of_host_range(&both), None);
        assert_eq!(first_of_host_range(&json!({"containerPort": 92})), None);
    }
}
