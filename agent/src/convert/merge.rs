//! Compose's merge rules: a later file (`-f b.yaml`, the override file) merged into what the
//! earlier ones gave, and a service merged over the one it `extends`, as `docker compose` does
//! (the Compose specification's "Merge and override", read in compose-go's `override/merge.go`
//! and `override/uncity.go`).
//!
//! - Mappings are merged key by key; a scalar of the later file replaces the earlier one; a null
//!   keeps the earlier value; lists are appended.
//! - `command`, `entrypoint`, `healthcheck.test` and each `ulimits` entry are replaced.
//! - `environment`, `labels`, `sysctls`, `annotations`, `build.args`, `deploy.labels` (list or
//!   mapping form, mixed too) are merged by key: the later value of a key wins.
//! - `extra_hosts` are appended without entries written twice.
//! - `depends_on` and a service's `networks` (list or mapping form) are merged as mappings.
//! - `ports`, `expose`, `volumes` (by target path), `secrets` and `configs` (by target), `dns`,
//!   `dns_search`, `dns_opt`, `tmpfs`, `env_file` (by path), `devices`, `cap_add`, `cap_drop`,
//!   `links`, `profiles`, a network's `aliases` are appended, and an entry with the same key as an
//!   earlier one replaces that one in its place.
//! - `logging` is merged when both name the same driver (or one none), replaced otherwise;
//!   `build: DIR` is read as `build: {context: DIR}`.
//! - `!reset` takes the key out of the earlier value (and its own value out); `!override`
//!   replaces the earlier value without merging.
//!
//! Every node keeps the position it was read at (which encodes its file, [`super::tagged`]); a
//! merged key keeps the earlier file's position when both values were merged, the later's when it
//! replaced the earlier value.

use crate::manifest::node::{Key, Node, NodeKind};

use super::tagged::{Tag, Tags};

/// A value that cannot be merged into the earlier one: where, and why.
pub type Error = (u32, u32, String);

/// `later` merged into `earlier`, two whole compose files.
pub fn files(earlier: Node, later: Node, tags: &Tags) -> Result<Node, Error> {
    value(earlier, later, &mut Vec::new(), tags)
}

/// The service `over` merged over the service `base` it extends.
pub fn service(base: Node, over: Node, tags: &Tags) -> Result<Node, Error> {
    let mut path = vec!["services".to_string(), "*".to_string()];
    value(base, over, &mut path, tags)
}

/// `n` without its `!reset` entries and items (what a file alone, with nothing to reset, gives).
pub fn strip(mut n: Node, tags: &Tags) -> Node {
    let reset = |v: &Node| tags.get(&(v.line, v.col)) == Some(&Tag::Reset);
    n.kind = match n.kind {
        NodeKind::Map(entries) => NodeKind::Map(
            entries
                .into_iter()
                .filter(|(_, v)| !reset(v))
                .map(|(k, v)| (k, strip(v, tags)))
                .collect(),
        ),
        NodeKind::Seq(items) => NodeKind::Seq(
            items
                .into_iter()
                .filter(|v| !reset(v))
                .map(|v| strip(v, tags))
                .collect(),
        ),
        other => other,
    };
    n
}

/// How the values at one path merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Default,
    Replace,
    ByKey,
    ExtraHosts,
    AsMapping,
    /// Appended (a scalar read as a one-item list when `scalar` is set), unique by `Index`.
    Unique(Index, bool),
    Logging,
    Build,
}

/// What makes two entries of a list the same entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Index {
    Text,
    Port,
    Volume,
    Mount(&'static str),
    EnvFile,
    Device,
}

/// The rule at `path` (`services.*.x...`, the service name written `*`).
fn rule(path: &[String]) -> Rule {
    let p: Vec<&str> = path
        .iter()
        .enumerate()
        .map(|(i, s)| if i == 1 { "*" } else { s.as_str() })
        .collect();
    match p.as_slice() {
        ["services", "*", key] => match *key {
            "command" | "entrypoint" => Rule::Replace,
            "environment" | "labels" | "sysctls" | "annotations" => Rule::ByKey,
            "extra_hosts" => Rule::ExtraHosts,
            "depends_on" | "networks" => Rule::AsMapping,
            "ports" => Rule::Unique(Index::Port, false),
            "expose" => Rule::Unique(Index::Text, false),
            "volumes" => Rule::Unique(Index::Volume, false),
            "secrets" => Rule::Unique(Index::Mount("/run/secrets/"), false),
            "configs" => Rule::Unique(Index::Mount("/"), false),
            "dns" | "dns_search" | "dns_opt" | "tmpfs" | "label_file" => {
                Rule::Unique(Index::Text, true)
            }
            "env_file" => Rule::Unique(Index::EnvFile, true),
            "devices" => Rule::Unique(Index::Device, false),
            "cap_add" | "cap_drop" | "links" | "profiles" => Rule::Unique(Index::Text, false),
            "logging" => Rule::Logging,
            "build" => Rule::Build,
            _ => Rule::Default,
        },
        ["services", "*", "healthcheck", "test"] => Rule::Replace,
        ["services", "*", "ulimits", _] => Rule::Replace,
        ["services", "*", "build", "args" | "labels"] => Rule::ByKey,
        ["services", "*", "deploy", "labels"] => Rule::ByKey,
        ["services", "*", "networks", _, "aliases"] => Rule::Unique(Index::Text, false),
        ["networks" | "volumes", _, "labels"] => Rule::ByKey,
        _ => Rule::Default,
    }
}

/// The dotted path for messages.
fn dotted(path: &[String]) -> String {
    path.join(".")
}

fn value(earlier: Node, later: Node, path: &mut Vec<String>, tags: &Tags) -> Result<Node, Error> {
    let rule = rule(path);
    if rule == Rule::Replace {
        return Ok(strip(later, tags));
    }
    if matches!(later.kind, NodeKind::Null) {
        return Ok(earlier);
    }
    if matches!(earlier.kind, NodeKind::Null) {
        return Ok(strip(later, tags));
    }
    // Mappings are merged entry by entry (their tags read there); other values whole.
    let later = match (&later.kind, rule) {
        (NodeKind::Map(_), Rule::ByKey | Rule::AsMapping | Rule::Logging | Rule::Build)
        | (NodeKind::Map(_), Rule::Default) => later,
        _ => strip(later, tags),
    };
    let mismatch = |e: &Node, l: &Node| {
        (
            l.line,
            l.col,
            format!(
                "cannot merge {} into {} of an earlier file (`{}`)",
                l.describe(),
                e.describe(),
                dotted(path)
            ),
        )
    };
    match rule {
        Rule::ByKey => {
            let (line, col) = (earlier.line, earlier.col);
            let mut entries = key_values(earlier, '=')?;
            for (k, v) in key_values(later, '=')? {
                let slot = entries.iter().position(|(ek, _)| ek.name == k.name);
                match (tags.get(&(v.line, v.col)), slot) {
                    (Some(Tag::Reset), Some(i)) => {
                        entries.remove(i);
                    }
                    (Some(Tag::Reset), None) => {}
                    (_, Some(i)) => entries[i] = (k, strip(v, tags)),
                    (_, None) => entries.push((k, strip(v, tags))),
                }
            }
            Ok(Node {
                line,
                col,
                kind: NodeKind::Map(entries),
            })
        }
        Rule::ExtraHosts => {
            let (line, col) = (earlier.line, earlier.col);
            let mut items = host_list(earlier);
            for item in host_list(later) {
                if !items.iter().any(|i| i.kind == item.kind) {
                    items.push(item);
                }
            }
            Ok(Node {
                line,
                col,
                kind: NodeKind::Seq(items),
            })
        }
        Rule::AsMapping => {
            let (e, l) = (as_mapping(earlier), as_mapping(later));
            mapping(e, l, path, tags)
        }
        Rule::Unique(index, scalar) => {
            let (line, col) = (earlier.line, earlier.col);
            let as_list = |n: Node| match n.kind {
                NodeKind::Seq(items) => Ok(items),
                _ if scalar => Ok(vec![n]),
                _ => Err(n),
            };
            let e = as_list(earlier).map_err(|e| mismatch(&e, &later))?;
            let l = match as_list(later) {
                Ok(l) => l,
                Err(l) => {
                    let e = Node {
                        line,
                        col,
                        kind: NodeKind::Seq(e),
                    };
                    return Err(mismatch(&e, &l));
                }
            };
            let mut items = e;
            for item in l {
                let key = index_of(index, &item);
                match key.and_then(|k| {
                    items
                        .iter()
                        .position(|i| index_of(index, i) == Some(k.clone()))
                }) {
                    Some(i) => items[i] = item,
                    None => items.push(item),
                }
            }
            Ok(Node {
                line,
                col,
                kind: NodeKind::Seq(items),
            })
        }
        Rule::Logging => {
            let driver = |n: &Node| n.get("driver").map(|d| d.kind.clone());
            match (driver(&earlier), driver(&later)) {
                (Some(a), Some(b)) if a != b => Ok(later),
                _ => mapping(earlier, later, path, tags),
            }
        }
        Rule::Build => {
            let as_build = |n: Node| match n.kind {
                NodeKind::Map(_) => n,
                _ => Node {
                    line: n.line,
                    col: n.col,
                    kind: NodeKind::Map(vec![(
                        Key {
                            name: "context".into(),
                            line: n.line,
                            col: n.col,
                        },
                        n,
                    )]),
                },
            };
            mapping(as_build(earlier), as_build(later), path, tags)
        }
        Rule::Default | Rule::Replace => match (&earlier.kind, &later.kind) {
            (NodeKind::Map(_), NodeKind::Map(_)) => mapping(earlier, later, path, tags),
            (NodeKind::Seq(_), NodeKind::Seq(_)) => {
                let (line, col) = (earlier.line, earlier.col);
                let (NodeKind::Seq(mut e), NodeKind::Seq(l)) = (earlier.kind, later.kind) else {
                    unreachable!("matched above")
                };
                e.extend(l);
                Ok(Node {
                    line,
                    col,
                    kind: NodeKind::Seq(e),
                })
            }
            (NodeKind::Map(_) | NodeKind::Seq(_), _) => Err(mismatch(&earlier, &later)),
            _ => Ok(later),
        },
    }
}

/// Two mappings merged key by key, honouring the later one's `!reset` and `!override`.
fn mapping(earlier: Node, later: Node, path: &mut Vec<String>, tags: &Tags) -> Result<Node, Error> {
    let (line, col) = (earlier.line, earlier.col);
    let NodeKind::Map(mut entries) = earlier.kind else {
        return Err((
            later.line,
            later.col,
            format!(
                "cannot merge a mapping into {} of an earlier file (`{}`)",
                earlier.describe(),
                dotted(path)
            ),
        ));
    };
    let NodeKind::Map(later_entries) = later.kind else {
        return Err((
            later.line,
            later.col,
            format!(
                "cannot merge {} into a mapping of an earlier file (`{}`)",
                later.describe(),
                dotted(path)
            ),
        ));
    };
    for (k, v) in later_entries {
        let slot = entries.iter().position(|(ek, _)| ek.name == k.name);
        match (tags.get(&(v.line, v.col)), slot) {
            (Some(Tag::Reset), Some(i)) => {
                entries.remove(i);
            }
            (Some(Tag::Reset), None) => {}
            (Some(Tag::Override), Some(i)) => entries[i] = (k, strip(v, tags)),
            (_, None) => entries.push((k, strip(v, tags))),
            (None, Some(i)) => {
                let (ek, ev) = entries.remove(i);
                let collections = is_collection(&ev) && is_collection(&v);
                path.push(k.name.clone());
                let was_null = matches!(ev.kind, NodeKind::Null);
                let merged = value(ev, v, path, tags);
                path.pop();
                let merged = merged?;
                // A null that replaced a value (`command: null`) leaves the key out, as
                // Compose's model has no null there.
                if matches!(merged.kind, NodeKind::Null) && !was_null {
                    continue;
                }
                let key = if collections { ek } else { k };
                entries.insert(i, (key, merged));
            }
        }
    }
    Ok(Node {
        line,
        col,
        kind: NodeKind::Map(entries),
    })
}

fn is_collection(n: &Node) -> bool {
    matches!(n.kind, NodeKind::Map(_) | NodeKind::Seq(_))
}

/// A list of `KEY<sep>VALUE` strings, or a mapping, as mapping entries (a bare `KEY` gives null).
fn key_values(n: Node, sep: char) -> Result<Vec<(Key, Node)>, Error> {
    match n.kind {
        NodeKind::Map(entries) => Ok(entries),
        NodeKind::Null => Ok(Vec::new()),
        NodeKind::Seq(items) => items
            .into_iter()
            .map(|item| {
                let Some(s) = super::value::scalar(&item) else {
                    return Err((
                        item.line,
                        item.col,
                        format!("expected \"KEY{sep}VALUE\", found {}", item.describe()),
                    ));
                };
                let (name, value) = match s.split_once(sep) {
                    Some((k, v)) => (k.to_string(), NodeKind::Str(v.to_string())),
                    None => (s, NodeKind::Null),
                };
                let key = Key {
                    name,
                    line: item.line,
                    col: item.col,
                };
                let v = Node {
                    line: item.line,
                    col: item.col,
                    kind: value,
                };
                Ok((key, v))
            })
            .collect(),
        _ => Err((
            n.line,
            n.col,
            format!(
                "expected a mapping or a list of \"KEY{sep}VALUE\", found {}",
                n.describe()
            ),
        )),
    }
}

/// `extra_hosts` as a list (`host=ip` for each mapping entry, in the order of the hosts' names
/// as compose-go writes them; a host with a list of addresses gives one item per address).
fn host_list(n: Node) -> Vec<Node> {
    match n.kind {
        NodeKind::Seq(items) => items,
        NodeKind::Map(mut entries) => {
            entries.sort_by(|a, b| a.0.name.cmp(&b.0.name));
            let mut out = Vec::new();
            for (k, v) in entries {
                let values = match v.kind {
                    NodeKind::Seq(items) => items,
                    _ => vec![v],
                };
                for v in values {
                    let text = super::value::scalar(&v).unwrap_or_default();
                    out.push(Node {
                        line: k.line,
                        col: k.col,
                        kind: NodeKind::Str(format!("{}={text}", k.name)),
                    });
                }
            }
            out
        }
        NodeKind::Null => Vec::new(),
        _ => vec![n],
    }
}

/// A list of names as a mapping of those names to null (`depends_on: [db]`, `networks: [front]`).
fn as_mapping(n: Node) -> Node {
    match n.kind {
        NodeKind::Seq(items) => Node {
            line: n.line,
            col: n.col,
            kind: NodeKind::Map(
                items
                    .into_iter()
                    .map(|item| {
                        let name = super::value::scalar(&item).unwrap_or_default();
                        let key = Key {
                            name,
                            line: item.line,
                            col: item.col,
                        };
                        let null = Node {
                            kind: NodeKind::Null,
                            ..item
                        };
                        (key, null)
                    })
                    .collect(),
            ),
        },
        _ => n,
    }
}

/// The key that makes list entries the same entry, or `None` when it has none.
fn index_of(index: Index, n: &Node) -> Option<String> {
    let text = super::value::scalar(n);
    let field = |name: &str| n.get(name).and_then(super::value::scalar);
    match index {
        Index::Text => text,
        Index::EnvFile => text.or_else(|| field("path")),
        Index::Port => match text {
            Some(s) => Some(port_key(&s)),
            None => Some(format!(
                "{}:{}:{}/{}",
                field("host_ip").unwrap_or_default(),
                field("published").unwrap_or_default(),
                field("target")?,
                field("protocol").unwrap_or_else(|| "tcp".into())
            )),
        },
        Index::Volume => match text {
            // SOURCE:TARGET[:MODE] or TARGET alone.
            Some(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                Some(parts.get(1).unwrap_or(&parts[0]).to_string())
            }
            None => field("target"),
        },
        Index::Device => match text {
            Some(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                Some(parts.get(1).unwrap_or(&parts[0]).to_string())
            }
            None => field("target"),
        },
        Index::Mount(prefix) => match text {
            Some(s) => Some(format!("{prefix}{s}")),
            None => field("target").or_else(|| Some(format!("{prefix}{}", field("source")?))),
        },
    }
}

/// A short port (`[IP:][PUBLISHED:]TARGET[/PROTOCOL]`) in the form of the long one's key, so
/// that `"8080:80"` and `{published: 8080, target: 80}` are the same entry.
fn port_key(s: &str) -> String {
    let (rest, protocol) = s.split_once('/').unwrap_or((s, "tcp"));
    let (rest, target) = rest.rsplit_once(':').unwrap_or(("", rest));
    let (ip, published) = rest.rsplit_once(':').unwrap_or(("", rest));
    format!("{ip}:{published}:{target}/{protocol}")
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
