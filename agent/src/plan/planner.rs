//! `plan(desired, actual)`: decide what changes, then order it.
//!
//! # Order
//!
//! 1. **Fetch**: every image pull and import, before anything is stopped (download, then kill:
//!    a registry that is down leaves the running containers alone).
//! 2. **Prepare**: new volumes, volume record updates, new networks.
//! 3. **Teardown**: stop and remove containers that go, users before what they use (links,
//!    volumesFrom, `container:` network mode): reverse dependency order of the *recorded*
//!    configs. Containers on a network that must be recreated are torn down here too (and
//!    created again in step 5).
//! 4. **Networks recreated**: remove, then create.
//! 5. **Build**: create, recreate, update in place, start, refresh links, targets before their
//!    users (dependency order of the *desired* configs).
//! 6. **Cleanup**: containers that go but that a kept container still used until step 5 (it is
//!    recreated without the link), then networks, volumes (`reclaim: delete` only) and images no
//!    longer used.
//!
//! Within a phase, steps are sorted by dependency level, then name, so a plan is deterministic.
//! Dependency levels come from an iterative walk; a cycle (which validation forbids) is cut, not
//! looped on.
//!
//! # What is left alone
//!
//! Objects of a file that failed to load (frozen), objects whose owning file is missing without a
//! seen deletion, volumes with `reclaim: retain`, anything a kept container still uses, and
//! networks whose change would detach a kept container. They are listed in [`Plan::held`].
//! Containers that exited or were stopped by the user are not started: restarts are the restart
//! policy's job, and a user's stop stands (a recreate of such a container keeps it stopped).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::actual::{Actual, ActualContainer};
use super::change::{Change, Held, Plan, Step};
use super::desired::{Desired, DesiredContainer, FileStatus};
use super::diff;
use super::effective::{EffectiveContainer, ImageSource};
use crate::manifest::Kind;
use crate::store::ContainerState;

/// Computes the plan that makes `actual` equal to `desired`. Pure: no I/O, no clock.
pub fn plan(desired: &Desired, actual: &Actual) -> Plan {
    Planner::new(desired, actual).run()
}

#[derive(Default)]
struct Phases<'a> {
    fetch: Vec<Step>,
    prepare: Vec<Step>,
    teardown: Vec<(u32, &'a str, u8, Step)>,
    networks: Vec<Step>,
    build: Vec<(u32, &'a str, u8, Step)>,
    late_teardown: Vec<(u32, &'a str, u8, Step)>,
    cleanup: Vec<Step>,
}

struct Planner<'a> {
    desired: &'a Desired,
    actual: &'a Actual,
    held: Vec<Held>,
    phases: Phases<'a>,
}

fn step(change: Change, reasons: Vec<String>) -> Step {
    Step { change, reasons }
}

impl<'a> Planner<'a> {
    fn new(desired: &'a Desired, actual: &'a Actual) -> Self {
        Planner {
            desired,
            actual,
            held: Vec::new(),
            phases: Phases::default(),
        }
    }

    /// Why an actual object nobody asks for may not be removed (`None`: it may).
    fn hold_reason(&self, kind: Kind, name: &str) -> Option<String> {
        let file = self.actual.owner(kind, name)?;
        match self.desired.files.get(&**file) {
            Some(FileStatus::Loaded) | Some(FileStatus::Deleted) => None,
            Some(FileStatus::Failed { .. }) => Some(format!(
                "its file {} failed to load; kept as last applied",
                file.display()
            )),
            None => Some(format!(
                "its file {} is missing but its deletion was not seen; kept",
                file.display()
            )),
        }
    }

    fn removal_reason(&self, kind: Kind, name: &str) -> String {
        match self.actual.owner(kind, name) {
            Some(file) => match self.desired.files.get(&**file) {
                Some(FileStatus::Deleted) => format!("its file {} was deleted", file.display()),
                _ => format!("no longer in {}", file.display()),
            },
            None => "not in any manifest".to_string(),
        }
    }

    fn run(mut self) -> Plan {
        let d = self.desired;
        let a = self.actual;
        for (path, status) in &d.files {
            if let FileStatus::Failed { error } = status {
                self.held.push(Held {
                    kind: None,
                    name: path.display().to_string(),
                    reason: format!("failed to load ({error}); its objects stay as last applied"),
                });
            }
        }

        // Containers nobody asks for: removed, or held.
        let mut held_containers: BTreeSet<&'a str> = BTreeSet::new();
        let mut removed: BTreeSet<&'a str> = BTreeSet::new();
        for name in a.containers.keys() {
            if d.containers.contains_key(name) {
                continue;
            }
            match self.hold_reason(Kind::Container, name) {
                Some(reason) => {
                    held_containers.insert(name);
                    self.held.push(Held {
                        kind: Some(Kind::Container),
                        name: name.clone(),
                        reason,
                    });
                }
                None => {
                    removed.insert(name);
                }
            }
        }
        // What kept containers (frozen or held) use: never removed or detached. `in_use` adds
        // what the other desired containers use (with valid manifests, only desired objects).
        let mut kept_uses = KeptUses::default();
        let mut in_use = KeptUses::default();
        for (name, e) in &d.containers {
            if e.origin.frozen {
                kept_uses.add(name, &e.value.config);
            }
            in_use.add(name, &e.value.config);
        }
        for name in &held_containers {
            if let Some(cfg) = a.containers.get(*name).and_then(|c| c.config.as_ref()) {
                kept_uses.add(name, cfg);
                in_use.add(name, cfg);
            }
        }
        // A container that goes but that a kept or desired container uses is held instead.
        let mut more_held: Vec<&'a str> = removed
            .iter()
            .copied()
            .filter(|n| in_use.containers.contains_key(*n))
            .collect();
        while let Some(n) = more_held.pop() {
            if removed.remove(n) {
                held_containers.insert(n);
                self.held.push(Held {
                    kind: Some(Kind::Container),
                    name: n.to_string(),
                    reason: format!("used by {}, which is kept", in_use.user(Kind::Container, n)),
                });
                if let Some(cfg) = a.containers.get(n).and_then(|c| c.config.as_ref()) {
                    kept_uses.add(n, cfg);
                    in_use.add(n, cfg);
                    for dep in cfg.dependencies() {
                        if removed.contains(dep) {
                            more_held.push(
                                a.containers
                                    .get_key_value(dep)
                                    .map_or(dep, |(k, _)| k.as_str()),
                            );
                        }
                    }
                }
            }
        }

        let recreated_networks = self.networks(&kept_uses, &in_use);
        self.volumes(&in_use);

        // Levels for ordering.
        let desired_levels = levels(
            d.containers
                .iter()
                .map(|(n, e)| (n.as_str(), e.value.config.dependencies())),
        );
        let actual_levels = levels(a.containers.iter().map(|(n, c)| {
            (
                n.as_str(),
                c.config
                    .as_ref()
                    .map(EffectiveContainer::dependencies)
                    .unwrap_or_default(),
            )
        }));
        // Recorded users of each container (to remove a target only after its users changed).
        let mut actual_users: HashMap<&str, Vec<&'a str>> = HashMap::new();
        for (n, c) in &a.containers {
            if let Some(cfg) = &c.config {
                for dep in cfg.dependencies() {
                    actual_users.entry(dep).or_default().push(n.as_str());
                }
            }
        }

        // Containers torn down for a recreated network: the desired ones on it (created again
        // later), the removed ones on it, and, so that those can go before the network does,
        // the removed containers that use them and the desired ones that use them (torn down and
        // created again too). `torn` maps a desired container to why it is torn down.
        let on_recreated = |name: &str| -> Option<&'a str> {
            let cfg = a.containers.get(name)?.config.as_ref()?;
            cfg.fixed
                .networks
                .iter()
                .find(|n| recreated_networks.contains(n.as_str()))
                .map(String::as_str)
        };
        let mut torn: BTreeMap<&'a str, String> = BTreeMap::new();
        for (name, e) in &d.containers {
            if !e.origin.frozen
                && let Some(net) = on_recreated(name)
            {
                torn.insert(name, format!("network {net} is recreated"));
            }
        }
        let mut early: HashSet<&'a str> = HashSet::new();
        let mut work: Vec<(&'a str, &'a str)> = removed
            .iter()
            .filter_map(|n| on_recreated(n).map(|net| (*n, net)))
            .collect();
        while let Some((n, net)) = work.pop() {
            if !early.insert(n) {
                continue;
            }
            for u in actual_users.get(n).map(Vec::as_slice).unwrap_or(&[]) {
                if let Some(u) = removed.get(u) {
                    work.push((u, net));
                } else if let Some((u, e)) = d.containers.get_key_value(*u)
                    && !e.origin.frozen
                {
                    torn.entry(u).or_insert_with(|| {
                        format!("uses {n}, which goes before network {net} is recreated")
                    });
                }
            }
        }
        // A removed container that a desired container (not torn down) still uses by its
        // recorded config goes after the build phase, and so does everything it uses in turn.
        let mut late: HashSet<&'a str> = HashSet::new();
        let mut work: Vec<&'a str> = removed
            .iter()
            .copied()
            .filter(|n| {
                actual_users.get(n).is_some_and(|users| {
                    users
                        .iter()
                        .any(|u| d.containers.contains_key(*u) && !torn.contains_key(*u))
                })
            })
            .collect();
        while let Some(n) = work.pop() {
            if early.contains(n) || !late.insert(n) {
                continue;
            }
            if let Some(cfg) = a.containers.get(n).and_then(|c| c.config.as_ref()) {
                for dep in cfg.dependencies() {
                    if let Some(dep) = removed.get(dep) {
                        work.push(dep);
                    }
                }
            }
        }
        for name in &removed {
            let c = &a.containers[*name];
            let late = late.contains(name);
            let level = actual_levels.get(name).copied().unwrap_or(0);
            let reason = vec![self.removal_reason(Kind::Container, name)];
            let bucket = if late {
                &mut self.phases.late_teardown
            } else {
                &mut self.phases.teardown
            };
            if matches!(
                c.state,
                ContainerState::Running | ContainerState::Restarting
            ) {
                bucket.push((
                    level,
                    name,
                    0,
                    step(
                        Change::StopContainer {
                            name: name.to_string(),
                        },
                        reason.clone(),
                    ),
                ));
            }
            bucket.push((
                level,
                name,
                1,
                step(
                    Change::RemoveContainer {
                        name: name.to_string(),
                        replaced: false,
                    },
                    reason,
                ),
            ));
        }

        // Desired containers.
        let mut replaced: HashSet<&'a str> = HashSet::new();
        for (name, e) in &d.containers {
            if e.origin.frozen {
                continue;
            }
            let level = desired_levels.get(name.as_str()).copied().unwrap_or(0);
            match (a.containers.get(name), torn.get(name.as_str())) {
                (Some(c), Some(why)) => {
                    replaced.insert(name);
                    let why = why.clone();
                    let alevel = actual_levels.get(name.as_str()).copied().unwrap_or(0);
                    if matches!(
                        c.state,
                        ContainerState::Running | ContainerState::Restarting
                    ) {
                        self.phases.teardown.push((
                            alevel,
                            name,
                            0,
                            step(
                                Change::StopContainer { name: name.clone() },
                                vec![why.clone()],
                            ),
                        ));
                    }
                    self.phases.teardown.push((
                        alevel,
                        name,
                        1,
                        step(
                            Change::RemoveContainer {
                                name: name.clone(),
                                replaced: true,
                            },
                            vec![why.clone()],
                        ),
                    ));
                    let mut reasons = vec![why];
                    if let Some(old) = &c.config {
                        reasons.extend(diff::container(old, &e.value.config).all());
                    }
                    self.create(
                        level,
                        name,
                        &e.value,
                        c.state == ContainerState::StoppedByUser,
                        reasons,
                    );
                }
                (None, _) => {
                    let mut reasons = vec![format!("new in {}", e.origin.file.display())];
                    if e.value.hash.is_none() {
                        reasons.push(format!(
                            "image {}: digest known after fetch",
                            e.value.config.image.key
                        ));
                    }
                    self.create(level, name, &e.value, false, reasons);
                }
                (Some(c), None) => {
                    if self.existing(level, name, &e.value, c) {
                        replaced.insert(name);
                    }
                }
            }
        }

        // Users of recreated containers refresh their hosts entries.
        let mut refresh: BTreeMap<&'a str, Vec<String>> = BTreeMap::new();
        for (name, e) in &d.containers {
            if e.origin.frozen
                || replaced.contains(name.as_str())
                || !a.containers.contains_key(name)
            {
                continue;
            }
            for l in &e.value.config.fixed.links {
                if replaced.contains(l.container.as_str()) {
                    refresh.entry(name).or_default().push(l.container.clone());
                }
            }
        }
        for (name, mut targets) in refresh {
            targets.sort();
            targets.dedup();
            let level = desired_levels.get(name).copied().unwrap_or(0);
            let reasons = vec![format!(
                "link target {} recreated: /etc/hosts refreshed",
                targets.join(", ")
            )];
            self.phases.build.push((
                level,
                name,
                3,
                step(
                    Change::RefreshLinks {
                        name: name.to_string(),
                        targets,
                    },
                    reasons,
                ),
            ));
        }

        self.images(&held_containers, &in_use);
        self.assemble()
    }

    /// Create (and start) a container.
    fn create(
        &mut self,
        level: u32,
        name: &'a str,
        c: &DesiredContainer,
        keep_stopped: bool,
        reasons: Vec<String>,
    ) {
        self.phases.build.push((
            level,
            name,
            1,
            step(
                Change::CreateContainer {
                    config: c.config.clone(),
                    hash: c.hash,
                    keep_stopped,
                },
                reasons,
            ),
        ));
        if !keep_stopped {
            self.phases.build.push((
                level,
                name,
                2,
                step(
                    Change::StartContainer {
                        name: name.to_string(),
                    },
                    vec!["new container".to_string()],
                ),
            ));
        }
    }

    /// Decides for a container that exists; true if it is recreated.
    fn existing(
        &mut self,
        level: u32,
        name: &'a str,
        want: &DesiredContainer,
        have: &ActualContainer,
    ) -> bool {
        let start = have.state != ContainerState::StoppedByUser;
        let recreate = |reasons: Vec<String>| {
            (
                level,
                name,
                1u8,
                step(
                    Change::RecreateContainer {
                        config: want.config.clone(),
                        hash: want.hash,
                        start,
                    },
                    reasons,
                ),
            )
        };
        match have.state {
            ContainerState::Dead => {
                let r = recreate(vec![
                    "state dead: could not be stopped or cleaned up".into(),
                ]);
                self.phases.build.push(r);
                return true;
            }
            ContainerState::Removing => {
                let r = recreate(vec!["state removing: its teardown did not finish".into()]);
                self.phases.build.push(r);
                return true;
            }
            _ => {}
        }
        let Some(old) = &have.config else {
            let r = recreate(vec![
                "its recorded config cannot be read by this agent".into(),
            ]);
            self.phases.build.push(r);
            return true;
        };
        if want.hash.is_some() && want.hash == have.hash {
            if have.state == ContainerState::Created {
                self.phases.build.push((
                    level,
                    name,
                    2,
                    step(
                        Change::StartContainer {
                            name: name.to_string(),
                        },
                        vec!["created but never started".into()],
                    ),
                ));
            }
            return false;
        }
        let diff = diff::container(old, &want.config);
        match want.hash {
            Some(hash) if diff.fixed.is_empty() && !diff.live.is_empty() => {
                self.phases.build.push((
                    level,
                    name,
                    1,
                    step(
                        Change::UpdateContainer {
                            name: name.to_string(),
                            live: want.config.live.clone(),
                            hash,
                        },
                        diff.live,
                    ),
                ));
                if have.state == ContainerState::Created {
                    self.phases.build.push((
                        level,
                        name,
                        2,
                        step(
                            Change::StartContainer {
                                name: name.to_string(),
                            },
                            vec!["created but never started".into()],
                        ),
                    ));
                }
                false
            }
            _ => {
                let mut reasons = diff.all();
                if reasons.is_empty() {
                    reasons.push("effective config changed".into());
                }
                let r = recreate(reasons);
                self.phases.build.push(r);
                true
            }
        }
    }

    /// Network creates, recreations and removals; returns the recreated ones.
    fn networks(&mut self, kept: &KeptUses<'a>, in_use: &KeptUses<'a>) -> HashSet<&'a str> {
        let d = self.desired;
        let a = self.actual;
        let mut recreated = HashSet::new();
        for (name, e) in &d.networks {
            if e.origin.frozen {
                continue;
            }
            let reasons = match a.networks.get(name) {
                None => {
                    self.phases.prepare.push(step(
                        Change::CreateNetwork {
                            network: e.value.clone(),
                        },
                        vec![format!("new in {}", e.origin.file.display())],
                    ));
                    continue;
                }
                Some(n) => match &n.config {
                    Some(c) if *c == e.value => continue,
                    Some(c) => diff::network(c, &e.value),
                    None => vec!["its recorded config cannot be read by this agent".into()],
                },
            };
            if let Some(user) = kept.networks.get(name.as_str()) {
                self.held.push(Held {
                    kind: Some(Kind::Network),
                    name: name.clone(),
                    reason: format!(
                        "change ({}) waits: container {user} is kept and uses it",
                        reasons.join("; ")
                    ),
                });
                continue;
            }
            recreated.insert(name.as_str());
            self.phases.networks.push(step(
                Change::RemoveNetwork { name: name.clone() },
                reasons.clone(),
            ));
            self.phases.networks.push(step(
                Change::CreateNetwork {
                    network: e.value.clone(),
                },
                reasons,
            ));
        }
        for name in a.networks.keys() {
            if d.networks.contains_key(name) {
                continue;
            }
            if let Some(reason) = self.hold_reason(Kind::Network, name) {
                self.held.push(Held {
                    kind: Some(Kind::Network),
                    name: name.clone(),
                    reason,
                });
            } else if let Some(user) = in_use.networks.get(name.as_str()) {
                self.held.push(Held {
                    kind: Some(Kind::Network),
                    name: name.clone(),
                    reason: format!("used by {user}, which is kept"),
                });
            } else {
                self.phases.cleanup.push(step(
                    Change::RemoveNetwork { name: name.clone() },
                    vec![self.removal_reason(Kind::Network, name)],
                ));
            }
        }
        recreated
    }

    fn volumes(&mut self, kept: &KeptUses<'a>) {
        let d = self.desired;
        let a = self.actual;
        for (name, e) in &d.volumes {
            if e.origin.frozen {
                continue;
            }
            match a.volumes.get(name) {
                None => self.phases.prepare.push(step(
                    Change::CreateVolume {
                        volume: e.value.clone(),
                    },
                    vec![format!("new in {}", e.origin.file.display())],
                )),
                Some(v) if *v != e.value => self.phases.prepare.push(step(
                    Change::UpdateVolume {
                        volume: e.value.clone(),
                    },
                    diff::volume(v, &e.value),
                )),
                Some(_) => {}
            }
        }
        for (name, v) in &a.volumes {
            if d.volumes.contains_key(name) {
                continue;
            }
            let hold = if let Some(reason) = self.hold_reason(Kind::Volume, name) {
                Some(reason)
            } else if let Some(user) = kept.volumes.get(name.as_str()) {
                Some(format!("used by {user}, which is kept"))
            } else if v.reclaim == crate::manifest::Reclaim::Retain {
                Some("its manifest is gone; data kept (reclaim: retain)".to_string())
            } else {
                None
            };
            match hold {
                Some(reason) => self.held.push(Held {
                    kind: Some(Kind::Volume),
                    name: name.clone(),
                    reason,
                }),
                None => self.phases.cleanup.push(step(
                    Change::RemoveVolume { name: name.clone() },
                    vec![format!(
                        "{}; reclaim: delete",
                        self.removal_reason(Kind::Volume, name)
                    )],
                )),
            }
        }
    }

    fn images(&mut self, held_containers: &BTreeSet<&'a str>, kept: &KeptUses<'a>) {
        let d = self.desired;
        let a = self.actual;
        let mut fetch_users: HashMap<&str, Vec<&str>> = HashMap::new();
        for (name, e) in &d.containers {
            let key = e.value.config.image.key.as_str();
            if !e.origin.frozen && !a.images.contains_key(key) {
                fetch_users.entry(key).or_default().push(name);
            }
        }
        for (key, e) in &d.images {
            if e.origin.frozen || a.images.contains_key(key) {
                continue;
            }
            let users = fetch_users
                .get(key.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let mut reasons = vec![match users.len() {
                0 => format!("declared in {}", e.origin.file.display()),
                1..=3 => format!("needed by {}", users.join(", ")),
                n => format!("needed by {} and {} more", users[..3].join(", "), n - 3),
            }];
            if !e.value.names.is_empty() && users.is_empty() {
                reasons[0] = format!(
                    "image {} declared in {}",
                    e.value.names.join(", "),
                    e.origin.file.display()
                );
            }
            let change = match &e.value.source {
                ImageSource::Registry {
                    reference,
                    insecure,
                } => Change::PullImage {
                    image: key.clone(),
                    reference: reference.clone(),
                    insecure: *insecure,
                },
                other => Change::ImportImage {
                    image: key.clone(),
                    source: other.clone(),
                },
            };
            self.phases.fetch.push(step(change, reasons));
        }
        for (key, digest) in &a.images {
            if d.images.contains_key(key) {
                continue;
            }
            let held = held_containers.iter().find(|n| {
                a.containers
                    .get(**n)
                    .and_then(|c| c.config.as_ref())
                    .is_some_and(|c| c.image.key == *key)
            });
            let reason = if let Some(r) = self.hold_reason(Kind::Image, key) {
                Some(r)
            } else if let Some(user) = held {
                Some(format!("used by {user}, which is kept"))
            } else {
                kept.images
                    .get(key.as_str())
                    .map(|user| format!("used by {user}, which is kept"))
            };
            match reason {
                Some(reason) => self.held.push(Held {
                    kind: Some(Kind::Image),
                    name: key.clone(),
                    reason,
                }),
                None => self.phases.cleanup.push(step(
                    Change::RemoveImage {
                        image: key.clone(),
                        digest: digest.clone(),
                    },
                    vec!["no longer used by any manifest".into()],
                )),
            }
        }
    }

    fn assemble(self) -> Plan {
        let Phases {
            fetch,
            prepare,
            mut teardown,
            networks,
            mut build,
            mut late_teardown,
            cleanup,
        } = self.phases;
        teardown.sort_by(|x, y| (y.0, x.1, x.2).cmp(&(x.0, y.1, y.2)));
        late_teardown.sort_by(|x, y| (y.0, x.1, x.2).cmp(&(x.0, y.1, y.2)));
        build.sort_by(|x, y| (x.0, x.1, x.2).cmp(&(y.0, y.1, y.2)));
        let mut steps = Vec::with_capacity(
            fetch.len()
                + prepare.len()
                + teardown.len()
                + networks.len()
                + build.len()
                + late_teardown.len()
                + cleanup.len(),
        );
        steps.extend(fetch);
        steps.extend(prepare);
        steps.extend(teardown.into_iter().map(|t| t.3));
        steps.extend(networks);
        steps.extend(build.into_iter().map(|t| t.3));
        steps.extend(late_teardown.into_iter().map(|t| t.3));
        steps.extend(cleanup);
        let mut held = self.held;
        held.sort_by(|x, y| (x.kind, &x.name).cmp(&(y.kind, &y.name)));
        Plan { steps, held }
    }
}

/// What kept containers (frozen or held) use, with one user named for each.
#[derive(Default)]
struct KeptUses<'a> {
    containers: HashMap<&'a str, &'a str>,
    volumes: HashMap<&'a str, &'a str>,
    networks: HashMap<&'a str, &'a str>,
    images: HashMap<&'a str, &'a str>,
}

impl<'a> KeptUses<'a> {
    fn add(&mut self, user: &'a str, c: &'a EffectiveContainer) {
        for dep in c.dependencies() {
            self.containers.entry(dep).or_insert(user);
        }
        for v in c.volumes() {
            self.volumes.entry(v).or_insert(user);
        }
        for n in &c.fixed.networks {
            self.networks.entry(n).or_insert(user);
        }
        self.images.entry(&c.image.key).or_insert(user);
    }

    fn user(&self, kind: Kind, name: &str) -> &'a str {
        let map = match kind {
            Kind::Container => &self.containers,
            Kind::Volume => &self.volumes,
            Kind::Network => &self.networks,
            Kind::Image => &self.images,
        };
        map.get(name).copied().unwrap_or("?")
    }
}

/// Dependency level of each node: 0 without dependencies, else one more than its deepest
/// dependency. Dependencies that are not nodes are ignored; a cycle is cut where it closes.
/// Iterative, so a long chain cannot overflow the stack.
pub(crate) fn levels<'a, I, D>(nodes: I) -> HashMap<&'a str, u32>
where
    I: IntoIterator<Item = (&'a str, D)>,
    D: IntoIterator<Item = &'a str>,
{
    let graph: HashMap<&'a str, Vec<&'a str>> = nodes
        .into_iter()
        .map(|(n, deps)| (n, deps.into_iter().collect()))
        .collect();
    let mut level: HashMap<&'a str, u32> = HashMap::with_capacity(graph.len());
    let mut on_path: HashSet<&'a str> = HashSet::new();
    let mut roots: Vec<&'a str> = graph.keys().copied().collect();
    roots.sort_unstable();
    for root in roots {
        if level.contains_key(root) {
            continue;
        }
        // (node, index of the next dependency to visit)
        let mut stack: Vec<(&'a str, usize)> = vec![(root, 0)];
        on_path.insert(root);
        while let Some(&mut (node, ref mut i)) = stack.last_mut() {
            let deps = &graph[node];
            if *i < deps.len() {
                let dep = deps[*i];
                *i += 1;
                if graph.contains_key(dep) && !level.contains_key(dep) && !on_path.contains(dep) {
                    on_path.insert(dep);
                    stack.push((dep, 0));
                }
            } else {
                let l = deps
                    .iter()
                    .filter_map(|d| level.get(d))
                    .map(|l| l + 1)
                    .max()
                    .unwrap_or(0);
                level.insert(node, l);
                on_path.remove(node);
                stack.pop();
            }
        }
    }
    level
}
