//! Checks across all files: duplicate names, dangling references, dependency cycles, host port
//! and subnet conflicts.
//!
//! Only objects of files that loaded are checked; a reference to an object declared in a file
//! that failed is not reported as dangling (that file's own error is the problem to fix).

use std::collections::{HashMap, HashSet};

use super::diag;
use crate::manifest::container::{ContainerSpec, Mount, NetworkMode};
use crate::manifest::load::{Loaded, Object};
use crate::manifest::node::Step::{self, Index, Key};
use crate::manifest::types::{Kind, Manifest};
use crate::manifest::{Diagnostic, Related};

/// Checks all valid files together; a file with a problem becomes a failing file holding those
/// problems.
pub fn check_across(loaded: &mut Loaded) {
    let mut found: Vec<Diagnostic> = Vec::new();
    duplicate_names(loaded, &mut found);
    dangling_references(loaded, &mut found);
    cycles(loaded, &mut found);
    super::depends::conditions(loaded, &mut found);
    port_conflicts(loaded, &mut found);
    network_conflicts(loaded, &mut found);
    if found.is_empty() {
        return;
    }
    for file in &mut loaded.files {
        let mine: Vec<Diagnostic> = found
            .iter()
            .filter(|d| d.file == file.path)
            .cloned()
            .collect();
        if !mine.is_empty() {
            file.outcome = Err(mine);
        }
    }
}

fn related(obj: &Object, path: &[Step<'_>]) -> Related {
    let (line, column) = obj.locate(path);
    Related {
        file: obj.source.file.clone(),
        line,
        column,
    }
}

const NAME: [Step<'static>; 2] = [Key("metadata"), Key("name")];

/// A name used twice for the same kind: reported at the second use (in path order), naming the
/// first.
fn duplicate_names(loaded: &Loaded, out: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<(Kind, &str), &Object> = HashMap::new();
    for obj in loaded.objects() {
        match seen.get(&(obj.kind(), obj.name())) {
            Some(first) => {
                let r = related(first, &NAME);
                let mut d = diag(
                    obj,
                    &NAME,
                    format!(
                        "duplicate {} name {:?}: already defined at {r}; names must be unique per kind across all files",
                        obj.kind(),
                        obj.name(),
                    ),
                );
                d.related = Some(r);
                out.push(d);
            }
            None => {
                seen.insert((obj.kind(), obj.name()), obj);
            }
        }
    }
}

/// The names of each kind that exist (in valid files) or are declared (in failing files).
struct Names<'a> {
    valid: HashSet<(Kind, &'a str)>,
    declared_in_failing: HashSet<(Kind, &'a str)>,
}

impl Names<'_> {
    fn exists(&self, kind: Kind, name: &str) -> bool {
        self.valid.contains(&(kind, name)) || self.declared_in_failing.contains(&(kind, name))
    }
    fn known(&self, kind: Kind) -> String {
        let mut v: Vec<&str> = self
            .valid
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| *n)
            .collect();
        v.sort_unstable();
        if v.is_empty() {
            format!("there is no {kind} manifest")
        } else {
            format!("known {kind} names: {}", v.join(", "))
        }
    }
}

fn names(loaded: &Loaded) -> Names<'_> {
    Names {
        valid: loaded.objects().map(|o| (o.kind(), o.name())).collect(),
        declared_in_failing: loaded
            .files
            .iter()
            .filter(|f| !f.is_ok())
            .flat_map(|f| f.declared.iter().map(|(k, n)| (*k, n.as_str())))
            .collect(),
    }
}

pub(super) fn containers(loaded: &Loaded) -> impl Iterator<Item = (&Object, &ContainerSpec)> {
    loaded.objects().filter_map(|o| match &o.manifest {
        Manifest::Container(c) => Some((o, &c.spec)),
        _ => None,
    })
}

/// Every reference from a container to another object: (kind, name, field path, what).
fn references<'a>(
    obj: &Object,
    s: &'a ContainerSpec,
) -> Vec<(Kind, &'a str, Vec<Step<'a>>, &'static str)> {
    let mut refs = Vec::new();
    if !s.image.contains(['/', ':', '@']) {
        refs.push((
            Kind::Image,
            s.image.as_str(),
            vec![Key("spec"), Key("image")],
            "image",
        ));
    }
    for (i, m) in s.volumes.iter().enumerate() {
        if let Mount::Volume { volume, .. } = m {
            refs.push((
                Kind::Volume,
                volume.as_str(),
                vec![Key("spec"), Key("volumes"), Index(i), Key("volume")],
                "volume",
            ));
        }
    }
    for (i, n) in s.networks.iter().enumerate() {
        refs.push((
            Kind::Network,
            n.name.as_str(),
            super::object::network_path(obj, i, &n.name),
            "network",
        ));
    }
    for (i, r) in s.secrets.iter().enumerate() {
        refs.push((
            Kind::Secret,
            r.source.as_str(),
            vec![Key("spec"), Key("secrets"), Index(i), Key("source")],
            "secret",
        ));
    }
    for (var, name) in &s.secret_env {
        refs.push((
            Kind::Secret,
            name.as_str(),
            vec![Key("spec"), Key("secretEnv"), Key(var)],
            "secret",
        ));
    }
    refs.extend(
        dependencies(s)
            .into_iter()
            .map(|(n, p, what)| (Kind::Container, n, p, what)),
    );
    // `required: false`: a dependency no manifest declares is ignored (Compose's rule).
    let optional: Vec<&str> = s
        .depends_on
        .iter()
        .filter(|d| !d.required)
        .map(|d| d.container.as_str())
        .collect();
    refs.retain(|(kind, name, _, what)| {
        !(*kind == Kind::Container && *what == DEPENDS_ON && optional.contains(name))
    });
    refs
}

const DEPENDS_ON: &str = "dependsOn container";

/// The containers this one needs first: links, volumesFrom, `container:` network mode,
/// dependsOn.
fn dependencies(s: &ContainerSpec) -> Vec<(&str, Vec<Step<'_>>, &'static str)> {
    let mut deps = Vec::new();
    for (i, l) in s.links.iter().enumerate() {
        deps.push((
            l.container.as_str(),
            vec![Key("spec"), Key("links"), Index(i), Key("container")],
            "linked container",
        ));
    }
    for (i, v) in s.volumes_from.iter().enumerate() {
        deps.push((
            v.container.as_str(),
            vec![Key("spec"), Key("volumesFrom"), Index(i), Key("container")],
            "volumesFrom container",
        ));
    }
    if let NetworkMode::Container(c) = &s.network_mode {
        deps.push((
            c.as_str(),
            vec![Key("spec"), Key("networkMode")],
            "networkMode container",
        ));
    }
    for (i, d) in s.depends_on.iter().enumerate() {
        deps.push((
            d.container.as_str(),
            super::depends::entry_path(&s.depends_on, i),
            DEPENDS_ON,
        ));
    }
    deps
}

fn dangling_references(loaded: &Loaded, out: &mut Vec<Diagnostic>) {
    let names = names(loaded);
    for (obj, spec) in containers(loaded) {
        for (kind, name, path, what) in references(obj, spec) {
            if names.exists(kind, name) {
                continue;
            }
            let hint = match kind {
                Kind::Image => {
                    "; to pull from a registry write a full reference such as 127.0.0.1:5000/busybox:1.36"
                }
                Kind::Container if what == DEPENDS_ON => {
                    "; or mark it {condition: ..., required: false} to go on without it"
                }
                _ => "",
            };
            out.push(diag(
                obj,
                &path,
                format!(
                    "{what} {name:?} is not defined: no {kind} manifest has that name ({}){hint}",
                    names.known(kind)
                ),
            ));
        }
    }
}

/// Cycles through links, volumesFrom, `container:` network modes and dependsOn, each reported once at the
/// reference that closes it, printing the whole cycle.
fn cycles(loaded: &Loaded, out: &mut Vec<Diagnostic>) {
    let by_name: HashMap<&str, (&Object, &ContainerSpec)> = containers(loaded)
        .map(|(o, s)| (o.name(), (o, s)))
        .collect();
    let mut order: Vec<&str> = containers(loaded).map(|(o, _)| o.name()).collect();
    order.dedup();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark: HashMap<&str, Mark> = order.iter().map(|n| (*n, Mark::New)).collect();
    // Iterative DFS: stack of (container, index of next dependency).
    for start in &order {
        if mark.get(start) != Some(&Mark::New) {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        mark.insert(start, Mark::Active);
        while let Some((name, next)) = stack.last().copied() {
            let Some((obj, spec)) = by_name.get(name) else {
                stack.pop();
                continue;
            };
            let deps = dependencies(spec);
            if next >= deps.len() {
                mark.insert(name, Mark::Done);
                stack.pop();
                continue;
            }
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            let (dep, path, what) = &deps[next];
            match mark.get(dep) {
                Some(Mark::New) => {
                    mark.insert(dep, Mark::Active);
                    stack.push((dep, 0));
                }
                Some(Mark::Active) => {
                    let from = stack.iter().position(|(n, _)| n == dep).unwrap_or(0);
                    let mut cycle: Vec<&str> = stack[from..].iter().map(|(n, _)| *n).collect();
                    cycle.push(dep);
                    out.push(diag(
                        obj,
                        path,
                        format!(
                            "dependency cycle through links, volumesFrom, networkMode or dependsOn: {} (this {what} closes it); containers in a cycle cannot be started in any order",
                            cycle.join(" -> ")
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
}

/// Two published ports (of two containers, or of one) that would bind the same host address,
/// port and protocol.
fn port_conflicts(loaded: &Loaded, out: &mut Vec<Diagnostic>) {
    let mut earlier: Vec<(&Object, usize, &crate::manifest::PortMapping)> = Vec::new();
    for (obj, spec) in containers(loaded) {
        if spec.network_mode != NetworkMode::Bridge {
            continue;
        }
        for (i, p) in spec.ports.iter().enumerate() {
            let path = [Key("spec"), Key("ports"), Index(i)];
            if let Some((first, j, q)) = earlier.iter().find(|(_, _, q)| p.host_overlap(q)) {
                let r = related(first, &[Key("spec"), Key("ports"), Index(*j)]);
                let mut d = diag(
                    obj,
                    &path,
                    format!(
                        "host port conflict: {p} overlaps {q} published by container {:?} at {r}; each host address, port and protocol can be published once (0.0.0.0 or no address overlaps every address)",
                        first.name()
                    ),
                );
                d.related = Some(r);
                out.push(d);
            }
            earlier.push((obj, i, p));
        }
    }
}

/// The bridge name a network gets: its `bridge`, or `agent-<name>` cut to 15 characters.
pub fn bridge_name(name: &str, bridge: Option<&str>) -> String {
    match bridge {
        Some(b) => b.to_string(),
        None => format!("agent-{name}").chars().take(15).collect(),
    }
}

/// Two networks with overlapping subnets or the same bridge name.
fn network_conflicts(loaded: &Loaded, out: &mut Vec<Diagnostic>) {
    let mut earlier: Vec<(&Object, &crate::manifest::NetworkSpec, String)> = Vec::new();
    for obj in loaded.objects() {
        let Manifest::Network(n) = &obj.manifest else {
            continue;
        };
        let bridge = bridge_name(obj.name(), n.spec.bridge.as_deref());
        for (first, f, fb) in &earlier {
            if first.name() == obj.name() {
                continue; // a duplicate name, reported as such
            }
            if f.subnet.overlaps(&n.spec.subnet) {
                let r = related(first, &[Key("spec"), Key("subnet")]);
                let mut d = diag(
                    obj,
                    &[Key("spec"), Key("subnet")],
                    format!(
                        "subnet {} overlaps subnet {} of network {:?} at {r}",
                        n.spec.subnet,
                        f.subnet,
                        first.name()
                    ),
                );
                d.related = Some(r);
                out.push(d);
            }
            if *fb == bridge {
                let r = related(first, &[Key("spec"), Key("bridge")]);
                let mut d = diag(
                    obj,
                    &[Key("spec"), Key("bridge")],
                    format!(
                        "bridge name {bridge:?} is also used by network {:?} at {r}",
                        first.name()
                    ),
                );
                d.related = Some(r);
                out.push(d);
            }
        }
        earlier.push((obj, &n.spec, bridge));
    }
}
