//! Property tests over random desired and actual states: a plan applied to a simulated host
//! converges in one step (a second plan is empty), every dependency order holds, and nothing of a
//! file that failed to load (or went missing without a seen deletion) is touched.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::testkit::{apply, desired, try_apply_change};
use super::*;
use crate::manifest::{Kind, Manifest};
use crate::store::ContainerState;

/// Draws choices from a byte string; an exhausted string draws 0 (so shrinking simplifies).
struct Chooser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Chooser<'_> {
    fn pick(&mut self, n: usize) -> usize {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b as usize % n.max(1)
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.pick(one_in) == 0
    }
}

const FILES: usize = 3;
const IMAGES: [&str; 3] = ["127.0.0.1:5000/a", "127.0.0.1:5000/b:2", "img"];

fn doc(kind: &str, name: &str, spec: Value) -> Manifest {
    let v =
        json!({"kind": kind, "apiVersion": "agent/v1", "metadata": {"name": name}, "spec": spec});
    match serde_json::from_value(v.clone()) {
        Ok(m) => m,
        Err(e) => panic!("generated manifest {v} does not read: {e}"),
    }
}

/// One version of the manifests: objects per file.
fn version(ch: &mut Chooser<'_>, containers: usize) -> Vec<Vec<Manifest>> {
    let mut files: Vec<Vec<Manifest>> = vec![Vec::new(); FILES];
    if !ch.chance(3) {
        let reference = ["127.0.0.1:5000/c:1", "127.0.0.1:5000/c:2"][ch.pick(2)];
        files[ch.pick(FILES)].push(doc(
            "Image",
            "img",
            json!({"registry": {"reference": reference}}),
        ));
    }
    for v in 0..2 {
        if !ch.chance(4) {
            let reclaim = ["retain", "delete"][ch.pick(2)];
            files[ch.pick(FILES)].push(doc(
                "Volume",
                &format!("v{v}"),
                json!({"reclaim": reclaim}),
            ));
        }
    }
    for n in 0..2 {
        if !ch.chance(4) {
            let subnet = format!("10.{}.{}.0/24", n + 1, ch.pick(2));
            files[ch.pick(FILES)].push(doc("Network", &format!("n{n}"), json!({"subnet": subnet})));
        }
    }
    for i in 0..containers {
        if ch.chance(6) {
            continue;
        }
        let mut spec = serde_json::Map::new();
        spec.insert("image".into(), IMAGES[ch.pick(3)].into());
        let log = ["info", "debug"][ch.pick(2)];
        spec.insert("env".into(), json!({ "LOG": log }));
        if let Some(mem) = [None, Some("256Mi"), Some("512Mi")][ch.pick(3)] {
            spec.insert("resources".into(), json!({"memory": mem}));
        }
        spec.insert(
            "restart".into(),
            ["no", "always", "on-failure"][ch.pick(3)].into(),
        );
        let links: Vec<String> = (0..i)
            .filter(|_| ch.chance(4))
            .map(|j| format!("c{j}"))
            .collect();
        if !links.is_empty() {
            spec.insert("links".into(), json!(links));
        }
        let from: Vec<String> = (0..i)
            .filter(|_| ch.chance(7))
            .map(|j| format!("c{j}"))
            .collect();
        if !from.is_empty() {
            spec.insert("volumesFrom".into(), json!(from));
        }
        let vols: Vec<String> = (0..2)
            .filter(|_| ch.chance(3))
            .map(|v| format!("v{v}:/d{v}"))
            .collect();
        if !vols.is_empty() {
            spec.insert("volumes".into(), json!(vols));
        }
        let nets: Vec<String> = (0..2)
            .filter(|_| ch.chance(3))
            .map(|n| format!("n{n}"))
            .collect();
        if !nets.is_empty() {
            spec.insert("networks".into(), json!(nets));
        }
        files[ch.pick(FILES)].push(doc("Container", &format!("c{i}"), Value::Object(spec)));
    }
    files
}

fn path(f: usize) -> PathBuf {
    PathBuf::from(format!("/etc/agent.d/f{f}.yaml"))
}

fn all_loaded(files: &[Vec<Manifest>]) -> Vec<FileInput> {
    files
        .iter()
        .enumerate()
        .map(|(f, objs)| FileInput {
            path: path(f),
            state: FileState::Loaded(objs.clone()),
        })
        .collect()
}

fn summaries(p: &Plan) -> Vec<String> {
    p.steps.iter().map(Step::summary).collect()
}

/// Checks the order rules on `p`, made against `actual`.
fn check_order(p: &Plan, actual: &Actual) -> Result<(), String> {
    let s = summaries(p);
    let last_fetch = p.steps.iter().rposition(|st| {
        matches!(
            st.change,
            Change::PullImage { .. } | Change::ImportImage { .. }
        )
    });
    let first_kill = p.steps.iter().position(|st| st.change.stops_or_replaces());
    if let (Some(f), Some(k)) = (last_fetch, first_kill)
        && f > k
    {
        return Err(format!("fetch after a stop (download-then-kill): {s:#?}"));
    }
    // Index of the step that brings each container up (create or recreate).
    let mut up: HashMap<&str, usize> = HashMap::new();
    let mut removed_at: HashMap<&str, usize> = HashMap::new();
    let mut created_vol: HashMap<&str, usize> = HashMap::new();
    let mut created_net: HashMap<&str, usize> = HashMap::new();
    for (i, st) in p.steps.iter().enumerate() {
        match &st.change {
            Change::CreateContainer { config, .. } | Change::RecreateContainer { config, .. } => {
                up.insert(&config.name, i);
            }
            // A replaced container keeps its store row (links to it stay valid): only real
            // removals must follow the reverse order.
            Change::RemoveContainer {
                name,
                replaced: false,
            } => {
                removed_at.insert(name, i);
            }
            Change::CreateVolume { volume } => {
                created_vol.insert(&volume.name, i);
            }
            Change::CreateNetwork { network } => {
                created_net.insert(&network.name, i);
            }
            _ => {}
        }
    }
    for (i, st) in p.steps.iter().enumerate() {
        let (Change::CreateContainer { config, .. } | Change::RecreateContainer { config, .. }) =
            &st.change
        else {
            if let Change::StartContainer { name } = &st.change
                && let Some(&u) = up.get(name.as_str())
                && u > i
            {
                return Err(format!("start {name} before its create: {s:#?}"));
            }
            continue;
        };
        for dep in config.dependencies() {
            if let Some(&t) = up.get(dep)
                && t > i
            {
                return Err(format!(
                    "{} up before its target {dep}: {s:#?}",
                    config.name
                ));
            }
        }
        for v in config.volumes() {
            if let Some(&t) = created_vol.get(v)
                && t > i
            {
                return Err(format!("{} up before its volume {v}: {s:#?}", config.name));
            }
        }
        for n in &config.fixed.networks {
            if let Some(&t) = created_net.get(n.as_str())
                && t > i
            {
                return Err(format!("{} up before its network {n}: {s:#?}", config.name));
            }
        }
    }
    // Removals: users before their targets (recorded configs).
    for (user, &i) in &removed_at {
        let Some(cfg) = actual.containers.get(*user).and_then(|c| c.config.as_ref()) else {
            continue;
        };
        for dep in cfg.dependencies() {
            if let Some(&t) = removed_at.get(dep)
                && t < i
            {
                return Err(format!("{dep} removed before its user {user}: {s:#?}"));
            }
        }
    }
    Ok(())
}

/// Objects the plan must not touch: frozen desired objects and actual objects owned by a file
/// that failed or is missing (when nothing desired claims them).
fn untouchable(d: &Desired, actual: &Actual) -> HashSet<(Kind, String)> {
    let mut out = HashSet::new();
    for (n, e) in &d.containers {
        if e.origin.frozen {
            out.insert((Kind::Container, n.clone()));
        }
    }
    for (n, e) in &d.volumes {
        if e.origin.frozen {
            out.insert((Kind::Volume, n.clone()));
        }
    }
    for (n, e) in &d.networks {
        if e.origin.frozen {
            out.insert((Kind::Network, n.clone()));
        }
    }
    for (k, e) in &d.images {
        if e.origin.frozen {
            out.insert((Kind::Image, k.clone()));
        }
    }
    for ((kind, name), file) in &actual.owners {
        let settled = matches!(
            d.files.get(&**file),
            Some(FileStatus::Loaded) | Some(FileStatus::Deleted)
        );
        if !settled && !d.contains(*kind, name) {
            out.insert((*kind, name.clone()));
        }
    }
    out
}

/// Whether a container has dependencies (an unreadable config would hide them from the
/// removal order, which the real store would then refuse; keep the drift realistic).
fn has_dependencies(config: &Option<EffectiveContainer>) -> bool {
    config
        .as_ref()
        .is_some_and(|c| !c.dependencies().is_empty())
}

fn run(bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut ch = Chooser { bytes, at: 0 };
    let containers = 1 + ch.pick(8);
    let old = version(&mut ch, containers);
    let new = version(&mut ch, containers);

    // First apply from nothing converges.
    let mut actual = Actual::default();
    let old_inputs = all_loaded(&old);
    let d0 = desired(&old_inputs, &actual);
    let p0 = plan(&d0, &actual);
    check_order(&p0, &actual).map_err(TestCaseError::fail)?;
    apply(&mut actual, &p0, &old_inputs);
    let again = plan(&desired(&old_inputs, &actual), &actual);
    prop_assert!(
        again.is_empty(),
        "not converged from nothing: {:#?}",
        summaries(&again)
    );

    // Drift: the host changed under the agent.
    let names: Vec<String> = actual.containers.keys().cloned().collect();
    for n in names {
        match ch.pick(9) {
            0 => actual
                .containers
                .get_mut(&n)
                .map(|c| c.state = ContainerState::Exited),
            1 => actual
                .containers
                .get_mut(&n)
                .map(|c| c.state = ContainerState::StoppedByUser),
            2 => actual
                .containers
                .get_mut(&n)
                .map(|c| c.state = ContainerState::Created),
            3 => actual
                .containers
                .get_mut(&n)
                .map(|c| c.state = ContainerState::Dead),
            5 => {
                // Recorded by another agent version: unreadable here.
                if let Some(c) = actual.containers.get_mut(&n)
                    && !has_dependencies(&c.config)
                {
                    c.config = None;
                    c.hash = None;
                }
                None
            }
            4 => {
                // Gone without the agent (only if nothing links to it, as the store enforces).
                let used = actual.containers.values().any(|c| {
                    c.config
                        .as_ref()
                        .is_some_and(|c| c.dependencies().contains(&n.as_str()))
                });
                if !used {
                    actual.containers.remove(&n);
                }
                None
            }
            _ => None,
        };
    }
    if ch.chance(4) {
        // Ownership forgotten (an interrupted removal): orphans.
        actual.owners.clear();
    }
    if ch.chance(3)
        && let Some(first) = actual.images.keys().next().cloned()
    {
        actual
            .images
            .insert(first, format!("sha256:{}", "e".repeat(64)));
    }

    // The new version, with per-file status.
    let mut inputs = Vec::new();
    for (f, objs) in new.iter().enumerate() {
        let state = match ch.pick(6) {
            0..=2 => FileState::Loaded(objs.clone()),
            3 => FileState::Failed {
                error: "bad".into(),
                last_good: old[f].clone(),
            },
            4 => FileState::Deleted,
            _ => continue, // missing: the caller did not see a deletion
        };
        inputs.push(FileInput {
            path: path(f),
            state,
        });
    }
    let d = desired(&inputs, &actual);
    let p = plan(&d, &actual);
    prop_assert_eq!(&p, &plan(&d, &actual), "not deterministic");
    check_order(&p, &actual).map_err(TestCaseError::fail)?;
    let frozen = untouchable(&d, &actual);
    for st in &p.steps {
        let key = (st.change.kind(), st.change.name().to_string());
        prop_assert!(
            !frozen.contains(&key),
            "{} touches an object of a failed or missing file: {:#?}",
            st.summary(),
            summaries(&p)
        );
    }
    // Apply step by step (the simulator panics on an impossible order), then plan again.
    let mut host = actual.clone();
    for st in &p.steps {
        if let Err(e) = try_apply_change(&mut host, &st.change) {
            return Err(TestCaseError::fail(format!(
                "{e} (at {}) in {:#?}",
                st.summary(),
                summaries(&p)
            )));
        }
    }
    apply(&mut host, &Plan::default(), &inputs);
    let second = plan(&desired(&inputs, &host), &host);
    prop_assert!(
        second.is_empty(),
        "not converged in one step.\nfirst: {:#?}\nsecond: {:#?}",
        summaries(&p),
        summaries(&second)
    );
    // Twice applying never changes anything.
    let mut twice = host.clone();
    apply(&mut twice, &second, &inputs);
    prop_assert_eq!(
        twice.containers.keys().collect::<Vec<_>>(),
        host.containers.keys().collect::<Vec<_>>()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn plans_converge_in_one_step_in_order_and_leave_failed_files_alone(
        bytes in prop::collection::vec(any::<u8>(), 0..160)
    ) {
        run(&bytes)?;
    }
}
