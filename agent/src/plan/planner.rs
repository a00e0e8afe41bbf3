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
//! Start conditions (`dependsOn`, [`super::depends`]): the creates, recreates and starts of a
//! container whose conditions do not hold are taken out of step 5 and listed in
//! [`Plan::waiting`]; `restart: true` adds a stop and a start of a running dependent.
//!
//! Within a phase, steps are sorted by dependency level, then name, so a plan is deterministic.
//! Dependency levels come from an iterative walk; a cycle (which validation forbids) is cut, not
//! looped on.
//!
//! # Cost
//!
//! The daemon plans on every pass, mostly with nothing to do, so the planner avoids per-name
//! lookups in big maps: desired and recorded containers are paired by one merge of the two sorted
//! maps into *slots*, per-container data lives in vectors indexed by slot, and the work that only
//! matters when something changes is skipped when nothing does (dependency levels are computed
//! only for a side that has steps; what desired containers use only when something is removed;
//! the users of an image only when one is fetched). `cargo bench -p agent --bench plan` prints
//! the figures.
//!
//! # What is left alone
//!
//! Objects of a file that failed to load (frozen), objects whose owning file is missing without a
//! seen deletion, volumes with `reclaim: retain`, anything a kept container still uses, and
//! networks whose change would detach a kept container. They are listed in [`Plan::held`].
//! Containers that exited or were stopped by the user are not started: restarts are the restart
//! policy's job, and a user's stop stands (a recreate of such a container keeps it stopped).

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::actual::{Actual, ActualContainer};
use super::change::{Change, Held, Plan, Step};
use super::depends::{self, Fact, Waiting};
use super::desired::{Desired, DesiredContainer, Entry, FileStatus};
use super::diff;
use super::effective::{EffectiveContainer, ImageSource};
use crate::manifest::Kind;
use crate::store::ContainerState;

/// Computes the plan that makes `actual` equal to `desired`. Pure: no I/O, no clock.
pub fn plan(desired: &Desired, actual: &Actual) -> Plan {
    Planner::new(desired, actual).run()
}

/// A container step: the container's slot (see [`Slots`]), the order of the step among the
/// container's steps, the step. Sorted by dependency level, then name (= slot), then that order.
type Ordered = (u32, u8, Step);

#[derive(Default)]
struct Phases {
    fetch: Vec<Step>,
    prepare: Vec<Step>,
    teardown: Vec<Ordered>,
    networks: Vec<Step>,
    build: Vec<Ordered>,
    late_teardown: Vec<Ordered>,
    cleanup: Vec<Step>,
}

/// The steps of a container phase in order: by dependency level (`deepest_first` for
/// teardowns), then name, then the order among a container's steps; equal keys keep the order
/// they were planned in. Sorts small keys, not the (large) steps.
fn ordered(steps: Vec<Ordered>, levels: &[u32], deepest_first: bool) -> impl Iterator<Item = Step> {
    let mut keys: Vec<(u32, u32, u8, u32)> = steps
        .iter()
        .enumerate()
        .map(|(i, (slot, order, _))| {
            let level = levels[*slot as usize];
            let level = if deepest_first {
                u32::MAX - level
            } else {
                level
            };
            (level, *slot, *order, i as u32)
        })
        .collect();
    keys.sort_unstable();
    let mut steps: Vec<Option<Step>> = steps.into_iter().map(|(_, _, s)| Some(s)).collect();
    keys.into_iter()
        .map(move |k| steps[k.3 as usize].take().expect("each step is taken once"))
}

struct Planner<'a> {
    desired: &'a Desired,
    actual: &'a Actual,
    held: Vec<Held>,
    waiting: Vec<Waiting>,
    phases: Phases,
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
            waiting: Vec::new(),
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

        let slots = Slots::new(d, a);

        // Containers nobody asks for: removed, or held.
        let mut held_containers: BTreeSet<&'a str> = BTreeSet::new();
        let mut removed: BTreeSet<&'a str> = BTreeSet::new();
        for (name, _) in slots.actual_only() {
            match self.hold_reason(Kind::Container, name) {
                Some(reason) => {
                    held_containers.insert(name);
                    self.held.push(Held {
                        kind: Some(Kind::Container),
                        name: name.to_string(),
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
        // `in_use` is only asked about containers, networks, volumes and images that go; with
        // none (a plan with nothing to remove) it is left empty.
        let removals = !removed.is_empty()
            || a.networks.keys().any(|n| !d.networks.contains_key(n))
            || a.volumes.keys().any(|v| !d.volumes.contains_key(v))
            || a.images.keys().any(|i| !d.images.contains_key(i));
        let mut kept_uses = KeptUses::default();
        let mut in_use = KeptUses::default();
        for (name, e) in &d.containers {
            if e.origin.frozen {
                kept_uses.add(name, &e.value.config);
                // Kept as it runs: what it runs with is kept too (its image when the manifest
                // names one no longer declared).
                if let Some(cfg) = a.containers.get(name).and_then(|c| c.config.as_ref()) {
                    kept_uses.add(name, cfg);
                    in_use.add(name, cfg);
                }
            }
            if removals {
                in_use.add(name, &e.value.config);
            }
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

        // Recorded users of each container (to remove a target only after its users changed).
        // Only asked about containers that go.
        let mut actual_users: HashMap<&str, Vec<&'a str>> = HashMap::default();
        if !removed.is_empty() {
            for (n, c) in &a.containers {
                if let Some(cfg) = &c.config {
                    for dep in cfg.dependencies() {
                        actual_users.entry(dep).or_default().push(n.as_str());
                    }
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
        if !recreated_networks.is_empty() {
            for (name, e) in &d.containers {
                if !e.origin.frozen
                    && let Some(net) = on_recreated(name)
                {
                    torn.insert(name, format!("network {net} is recreated"));
                }
            }
        }
        let mut early: HashSet<&'a str> = HashSet::default();
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
        let mut late: HashSet<&'a str> = HashSet::default();
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
            let slot = slots.slot(name);
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
                    slot,
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
                slot,
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
        let mut replaced: HashSet<&'a str> = HashSet::default();
        for (i, (name, e)) in slots.desired() {
            if e.origin.frozen {
                continue;
            }
            let slot = i as u32;
            match (slots.have[i], torn.get(name)) {
                (Some(c), Some(why)) => {
                    replaced.insert(name);
                    let why = why.clone();
                    if matches!(
                        c.state,
                        ContainerState::Running | ContainerState::Restarting
                    ) {
                        self.phases.teardown.push((
                            slot,
                            0,
                            step(
                                Change::StopContainer {
                                    name: name.to_string(),
                                },
                                vec![why.clone()],
                            ),
                        ));
                    }
                    self.phases.teardown.push((
                        slot,
                        1,
                        step(
                            Change::RemoveContainer {
                                name: name.to_string(),
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
                        slot,
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
                    self.create(slot, name, &e.value, false, reasons);
                }
                (Some(c), None) => {
                    if self.existing(slot, name, &e.value, c) {
                        replaced.insert(name);
                    }
                }
            }
        }

        // Users of recreated containers refresh their hosts entries.
        let mut refresh: BTreeMap<&'a str, Vec<String>> = BTreeMap::new();
        for (i, (name, e)) in slots.desired() {
            if replaced.is_empty() {
                break;
            }
            if e.origin.frozen || replaced.contains(name) || slots.have[i].is_none() {
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
            let slot = slots.slot(name);
            let reasons = vec![format!(
                "link target {} recreated: /etc/hosts refreshed",
                targets.join(", ")
            )];
            self.phases.build.push((
                slot,
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

        self.conditions(&slots);

        // Dependency levels, only for a side that has steps.
        let phases = &self.phases;
        let desired_levels = if phases.build.is_empty() {
            Vec::new()
        } else {
            slots.levels(|i| slots.want[i].map(|e| Some(&e.value.config)))
        };
        let actual_levels = if phases.teardown.is_empty() && phases.late_teardown.is_empty() {
            Vec::new()
        } else {
            slots.levels(|i| slots.have[i].map(|c| c.config.as_ref()))
        };

        self.images(&held_containers, &in_use);
        self.assemble(&desired_levels, &actual_levels)
    }

    /// Start conditions ([`super::depends`]): holds back the creates, recreates and starts of
    /// containers whose `dependsOn` conditions are not met (and of what needs them to exist),
    /// and plans the restarts `restart: true` asks for. Visits the desired containers in
    /// dependency order, so a wait reaches the containers behind it.
    fn conditions(&mut self, slots: &Slots<'a>) {
        let d = self.desired;
        if !d
            .containers
            .values()
            .any(|e| !e.value.config.live.depends_on.is_empty())
        {
            return;
        }
        // What this plan brings up, by slot: the first of create, recreate, start.
        let mut up: HashMap<u32, &'static str> = HashMap::default();
        for (slot, _, s) in &self.phases.build {
            let action = match &s.change {
                Change::CreateContainer {
                    keep_stopped: false,
                    ..
                } => "create",
                Change::RecreateContainer { start: true, .. } => "recreate",
                Change::StartContainer { .. } => "start",
                _ => continue,
            };
            up.entry(*slot).or_insert(action);
        }
        let levels = slots.levels(|i| slots.want[i].map(|e| Some(&e.value.config)));
        let mut order: Vec<usize> = slots.desired().map(|(i, _)| i).collect();
        order.sort_by_key(|&i| (levels[i], i));
        let index = slots.index();
        let mut waiting: HashSet<u32> = HashSet::default();
        let mut restarts: Vec<(u32, String)> = Vec::new();
        let mut notes_for: Vec<(u32, Vec<String>)> = Vec::new();
        for i in order {
            let Some(e) = slots.want[i] else { continue };
            let cfg = &e.value.config;
            if e.origin.frozen {
                continue;
            }
            let fact = |n: &str| -> Fact {
                let Some(&j) = index.get(n) else {
                    return Fact::Missing;
                };
                if waiting.contains(&j) {
                    return Fact::Waiting;
                }
                if up.contains_key(&j) {
                    return Fact::Starting;
                }
                match slots.have[j as usize] {
                    Some(h) => Fact::Recorded {
                        state: h.state,
                        exit_code: h.exit_code,
                        health: h.health,
                    },
                    None => Fact::Missing,
                }
            };
            let waits = |n: &str| {
                index.get(n).is_some_and(|j| {
                    waiting.contains(j)
                        && slots.have[*j as usize]
                            .is_none_or(|h| h.state != ContainerState::Running)
                })
            };
            let slot = i as u32;
            if let Some(action) = up.get(&slot) {
                if let Some((reason, on)) = depends::blocked(cfg, fact, waits) {
                    self.waiting.push(Waiting {
                        name: slots.names[i].to_string(),
                        action,
                        reason,
                        on,
                    });
                    waiting.insert(slot);
                } else {
                    let notes = depends::optional_failures(cfg, fact);
                    if !notes.is_empty() {
                        notes_for.push((slot, notes));
                    }
                }
                continue;
            }
            // `restart: true`: a dependency started after this running container.
            let Some(h) = slots.have[i] else { continue };
            if h.state != ContainerState::Running {
                continue;
            }
            let after = depends::restart_after(cfg, h.started_at, |n| {
                index
                    .get(n)
                    .and_then(|j| slots.have[*j as usize])
                    .and_then(|h| h.started_at)
            });
            if after.is_empty() {
                continue;
            }
            let why = format!("restart: true: {} started again after it", after.join(", "));
            match depends::blocked(cfg, fact, waits) {
                Some((reason, on)) => self.waiting.push(Waiting {
                    name: slots.names[i].to_string(),
                    action: "restart",
                    reason: format!("{why}; {reason}"),
                    on,
                }),
                None => restarts.push((slot, why)),
            }
        }
        if !waiting.is_empty() {
            self.phases.build.retain(|(slot, _, s)| {
                !(waiting.contains(slot)
                    && matches!(
                        s.change,
                        Change::CreateContainer { .. }
                            | Change::RecreateContainer { .. }
                            | Change::StartContainer { .. }
                    ))
            });
        }
        // The first bring-up step of a container that goes on without a failed optional
        // dependency says so.
        for (slot, notes) in notes_for {
            if let Some((_, _, s)) = self.phases.build.iter_mut().find(|(sl, _, s)| {
                *sl == slot
                    && matches!(
                        s.change,
                        Change::CreateContainer { .. }
                            | Change::RecreateContainer { .. }
                            | Change::StartContainer { .. }
                    )
            }) {
                s.reasons.extend(notes);
            }
        }
        for (slot, why) in restarts {
            let name = slots.names[slot as usize].to_string();
            self.phases.build.push((
                slot,
                1,
                step(
                    Change::StopContainer { name: name.clone() },
                    vec![why.clone()],
                ),
            ));
            self.phases
                .build
                .push((slot, 2, step(Change::StartContainer { name }, vec![why])));
        }
    }

    /// Create (and start) a container.
    fn create(
        &mut self,
        slot: u32,
        name: &'a str,
        c: &DesiredContainer,
        keep_stopped: bool,
        reasons: Vec<String>,
    ) {
        self.phases.build.push((
            slot,
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
                slot,
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
        slot: u32,
        name: &'a str,
        want: &DesiredContainer,
        have: &ActualContainer,
    ) -> bool {
        let start = have.state != ContainerState::StoppedByUser;
        let recreate = |reasons: Vec<String>| {
            (
                slot,
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
                    slot,
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
                    slot,
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
                        slot,
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
        let mut recreated = HashSet::default();
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
        // Only asked about images to fetch; with none, left empty.
        let mut fetch_users: HashMap<&str, Vec<&str>> = HashMap::default();
        if d.images.keys().any(|k| !a.images.contains_key(k)) {
            for (name, e) in &d.containers {
                let key = e.value.config.image.key.as_str();
                if !e.origin.frozen && !a.images.contains_key(key) {
                    fetch_users.entry(key).or_default().push(name);
                }
            }
        }
        for (key, e) in &d.images {
            let changed = a.changed_images.get(key);
            if e.origin.frozen || (a.images.contains_key(key) && changed.is_none()) {
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
            if let Some(c) = changed {
                reasons = vec![c.reason.clone()];
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
                    names: e.value.names.clone(),
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

    fn assemble(self, desired_levels: &[u32], actual_levels: &[u32]) -> Plan {
        let Phases {
            fetch,
            prepare,
            teardown,
            networks,
            build,
            late_teardown,
            cleanup,
        } = self.phases;
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
        steps.extend(ordered(teardown, actual_levels, true));
        steps.extend(networks);
        steps.extend(ordered(build, desired_levels, false));
        steps.extend(ordered(late_teardown, actual_levels, true));
        steps.extend(cleanup);
        let mut held = self.held;
        held.sort_by(|x, y| (x.kind, &x.name).cmp(&(y.kind, &y.name)));
        let mut waiting = self.waiting;
        waiting.sort_by(|x, y| x.name.cmp(&y.name));
        Plan {
            steps,
            held,
            waiting,
        }
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
        for dep in c.dependency_names() {
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
            Kind::Image | Kind::Secret => &self.images,
        };
        map.get(name).copied().unwrap_or("?")
    }
}

/// Every container name, desired or recorded, in name order (a merge of the two sorted maps,
/// so no lookups), with its desired entry and its record. Per-container data of one plan lives in
/// vectors indexed by slot instead of maps keyed by name.
struct Slots<'a> {
    names: Vec<&'a str>,
    want: Vec<Option<&'a Entry<DesiredContainer>>>,
    have: Vec<Option<&'a ActualContainer>>,
    /// Name -> slot, made on first use.
    index: OnceCell<HashMap<&'a str, u32>>,
}

impl<'a> Slots<'a> {
    fn new(d: &'a Desired, a: &'a Actual) -> Slots<'a> {
        let cap = d.containers.len().max(a.containers.len());
        let mut slots = Slots {
            names: Vec::with_capacity(cap),
            want: Vec::with_capacity(cap),
            have: Vec::with_capacity(cap),
            index: OnceCell::new(),
        };
        let mut want = d.containers.iter().peekable();
        let mut have = a.containers.iter().peekable();
        loop {
            let (name, w, h) = match (want.peek(), have.peek()) {
                (None, None) => break,
                (Some((wn, _)), Some((hn, _))) if wn == hn => {
                    let (n, w) = want.next().expect("peeked");
                    let (_, h) = have.next().expect("peeked");
                    (n, Some(w), Some(h))
                }
                (Some((wn, _)), Some((hn, _))) if wn > hn => {
                    let (n, h) = have.next().expect("peeked");
                    (n, None, Some(h))
                }
                (Some(_), _) => {
                    let (n, w) = want.next().expect("peeked");
                    (n, Some(w), None)
                }
                (None, Some(_)) => {
                    let (n, h) = have.next().expect("peeked");
                    (n, None, Some(h))
                }
            };
            slots.names.push(name);
            slots.want.push(w);
            slots.have.push(h);
        }
        slots
    }

    fn index(&self) -> &HashMap<&'a str, u32> {
        self.index.get_or_init(|| {
            let mut index = HashMap::with_capacity_and_hasher(self.names.len(), Default::default());
            for (i, n) in self.names.iter().enumerate() {
                index.insert(*n, i as u32);
            }
            index
        })
    }

    /// The slot of a container name (desired or recorded).
    fn slot(&self, name: &str) -> u32 {
        self.index()[name]
    }

    /// The desired containers in name order, with their slots.
    fn desired(&self) -> impl Iterator<Item = (usize, (&'a str, &'a Entry<DesiredContainer>))> {
        self.want
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.map(|w| (i, (self.names[i], w))))
    }

    /// The recorded containers nobody asks for, in name order.
    fn actual_only(&self) -> impl Iterator<Item = (&'a str, &'a ActualContainer)> {
        (0..self.names.len()).filter_map(|i| match (self.want[i], self.have[i]) {
            (None, Some(h)) => Some((self.names[i], h)),
            _ => None,
        })
    }

    /// [`levels`] of one side: `node(i)` is `None` if slot `i` is not on that side, else its
    /// config (`Some(None)`: a node whose config cannot be read, without dependencies).
    fn levels<'c>(
        &self,
        node: impl Fn(usize) -> Option<Option<&'c EffectiveContainer>>,
    ) -> Vec<u32> {
        let index = self.index();
        let mut edges: Vec<u32> = Vec::new();
        let mut start: Vec<u32> = Vec::with_capacity(self.names.len() + 1);
        let is_node: Vec<bool> = (0..self.names.len()).map(|i| node(i).is_some()).collect();
        start.push(0);
        for (i, _) in is_node.iter().enumerate() {
            if let Some(Some(cfg)) = node(i) {
                let from = edges.len();
                edges.extend(
                    cfg.dependency_names()
                        .filter_map(|dep| index.get(dep).copied()),
                );
                // Name order: where a cycle is cut depends on it.
                edges[from..].sort_unstable();
            }
            start.push(edges.len() as u32);
        }
        levels(&is_node, &edges, &start)
    }
}

/// Dependency level of each node: 0 without dependencies, else one more than its deepest
/// dependency; 0 for what is not a node. The graph is given by slot: `is_node[i]`, and the
/// dependencies of `i` in `edges[start[i]..start[i + 1]]`, visited in that order (slot = name
/// order); dependencies that are not nodes are ignored. A cycle is cut where it closes: a dependency still on the walk's path does not count.
/// Iterative, so a long chain cannot overflow the stack.
fn levels(is_node: &[bool], edges: &[u32], start: &[u32]) -> Vec<u32> {
    const UNSET: u32 = u32::MAX;
    let n = is_node.len();
    let deps = |i: usize| (start[i] as usize, start[i + 1] as usize);
    let mut level = vec![UNSET; n];
    let mut on_path = vec![false; n];
    // (node, position of the next dependency to visit)
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if !is_node[root] || level[root] != UNSET {
            continue;
        }
        on_path[root] = true;
        stack.push((root, start[root] as usize));
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let (_, end) = deps(node);
            if *next < end {
                let dep = edges[*next] as usize;
                *next += 1;
                if is_node[dep] && level[dep] == UNSET && !on_path[dep] {
                    on_path[dep] = true;
                    stack.push((dep, start[dep] as usize));
                }
            } else {
                let (b, e) = deps(node);
                level[node] = edges[b..e]
                    .iter()
                    .map(|&d| level[d as usize])
                    .filter(|&l| l != UNSET)
                    .map(|l| l + 1)
                    .max()
                    .unwrap_or(0);
                on_path[node] = false;
                stack.pop();
            }
        }
    }
    for l in &mut level {
        if *l == UNSET {
            *l = 0;
        }
    }
    level
}

#[cfg(test)]
mod level_tests {
    use super::levels;

    /// Builds the slot graph from adjacency lists (`None`: not a node).
    fn graph(nodes: &[Option<&[u32]>]) -> (Vec<bool>, Vec<u32>, Vec<u32>) {
        let mut edges = Vec::new();
        let mut start = vec![0];
        for n in nodes {
            edges.extend(n.unwrap_or(&[]).iter().copied());
            start.push(edges.len() as u32);
        }
        (nodes.iter().map(Option::is_some).collect(), edges, start)
    }

    fn run(nodes: &[Option<&[u32]>]) -> Vec<u32> {
        let (is_node, edges, start) = graph(nodes);
        levels(&is_node, &edges, &start)
    }

    #[test]
    fn chains_diamonds_and_non_nodes() {
        // 0 <- 1 <- 2, and 3 needs 0 and 2; 4 is not a node.
        assert_eq!(
            run(&[Some(&[]), Some(&[0]), Some(&[1]), Some(&[0, 2]), None]),
            vec![0, 1, 2, 3, 0]
        );
        // A dependency that is not a node does not count.
        assert_eq!(run(&[Some(&[1]), None]), vec![0, 0]);
    }

    #[test]
    fn a_cycle_is_cut_where_it_closes_in_name_order() {
        // 0 -> 1 -> 0: the walk starts at 0, so the edge 1 -> 0 is the one cut.
        assert_eq!(run(&[Some(&[1]), Some(&[0])]), vec![1, 0]);
        // A self-link counts as nothing.
        assert_eq!(run(&[Some(&[0])]), vec![0]);
        // 0 -> 1 -> 2 -> 1, 3 -> 2: the cut is found from 0 (2's link to 1 is cut).
        assert_eq!(
            run(&[Some(&[1]), Some(&[2]), Some(&[1]), Some(&[2])]),
            vec![2, 1, 0, 1]
        );
    }

    #[test]
    fn a_long_chain_does_not_overflow_the_stack() {
        let n = 200_000u32;
        let deps: Vec<[u32; 1]> = (0..n).map(|i| [i.saturating_sub(1)]).collect();
        let nodes: Vec<Option<&[u32]>> = (0..n as usize)
            .map(|i| Some(if i == 0 { &[][..] } else { &deps[i][..] }))
            .collect();
        let l = run(&nodes);
        assert_eq!(l[n as usize - 1], n - 1);
    }
}
