//! Work: a [`Change`] with the cause that decided it, the object it is keyed by, and the order
//! between works (pure; no I/O).
//!
//! Every effect the agent has on a container, network, volume or image is a [`Work`], whatever
//! decided it: the plan (a file edit), the restart policy, a failed health check, `agent stop` /
//! `agent start`, the agent's own exit, recovery at start-up. The one applier
//! ([`super::apply::Applier`]) runs them; the work queue ([`super::queue`]) runs at most one per
//! object at a time and independent ones in parallel.
//!
//! Order between works of one batch (a plan, or the restarts after a reboot) comes from the
//! batch's own order plus the object graph: a work waits for every earlier work of the batch on
//! a *related* object, one that is the same object or that one of the two depends on (a link,
//! `volumesFrom` or `container:` network target, the image, a volume, a network). The planner
//! already puts a link target's start before its users' and their stops before its stop, so
//! waiting on earlier related works keeps both orders, and works on unrelated objects run at
//! once.
//!
//! A plan is made from the store while earlier works may still run (a stop in its grace period):
//! a planned work whose object, or a related object, has a work in flight is *deferred*, left for
//! the pass that runs when that object is free, so that nothing is done twice.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::manifest::Kind;
use crate::plan::{Change, EffectiveContainer, Step};

/// Why a change is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The plan: manifest files differ from what runs.
    Plan,
    /// The container's restart policy, after an exit.
    RestartPolicy,
    /// The health check failed and the restart policy restarts it.
    Unhealthy,
    /// `agent stop` / `agent start`; `grace` is `agent stop -t`.
    User { grace: Option<Duration> },
    /// The agent is shutting down with `stop_containers_on_exit`.
    AgentExit,
    /// A running container's bridge or veth was deleted from under it.
    NetworkDrift,
    /// A running container's network namespace is gone (its processes hold the old one).
    NetnsGone,
    /// A running container's monitor process is gone (killed from outside).
    MonitorLost,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cause::Plan => "plan",
            Cause::RestartPolicy => "restart policy",
            Cause::Unhealthy => "unhealthy",
            Cause::User { .. } => "user",
            Cause::AgentExit => "agent exit",
            Cause::NetworkDrift => "network drift",
            Cause::NetnsGone => "netns gone",
            Cause::MonitorLost => "monitor lost",
        })
    }
}

/// The object a work changes: `container/web`, `image/busybox`, `network/shop`, `volume/data`.
pub type Key = String;

/// The key of object `name` of `kind`.
pub fn key(kind: Kind, name: &str) -> Key {
    format!("{}/{name}", kind_str(kind))
}

fn kind_str(kind: Kind) -> &'static str {
    match kind {
        Kind::Container => "container",
        Kind::Image => "image",
        Kind::Volume => "volume",
        Kind::Network => "network",
        Kind::Secret => "secret",
    }
}

/// One change to apply, with its cause.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    pub step: Step,
    pub cause: Cause,
}

impl Work {
    /// A work from the plan.
    pub fn planned(step: Step) -> Work {
        Work {
            step,
            cause: Cause::Plan,
        }
    }

    /// A work on container `name` outside the plan.
    pub fn container(change: Change, cause: Cause, reason: impl Into<String>) -> Work {
        Work {
            step: Step {
                change,
                reasons: vec![reason.into()],
            },
            cause,
        }
    }

    /// The object it changes.
    pub fn key(&self) -> Key {
        key(self.step.change.kind(), self.step.change.name())
    }

    /// `stop web (cause: user): ...` for logs and reports.
    pub fn summary(&self) -> String {
        match self.cause {
            Cause::Plan => self.step.summary(),
            _ => format!("{} (cause: {})", self.step.summary(), self.cause),
        }
    }
}

/// What each object depends on, by key (the keys of its image, volumes, networks and the
/// containers it links to, takes volumes from or shares a namespace with).
#[derive(Debug, Clone, Default)]
pub struct Relations {
    deps: HashMap<Key, HashSet<Key>>,
    users: HashMap<Key, HashSet<Key>>,
}

impl Relations {
    /// Adds the dependencies of a container config (desired or recorded; both may be added).
    pub fn add_container(&mut self, config: &EffectiveContainer) {
        let me = key(Kind::Container, &config.name);
        let mut deps: Vec<Key> = config
            .dependency_names()
            .map(|d| key(Kind::Container, d))
            .chain(config.volumes().map(|v| key(Kind::Volume, v)))
            .chain(config.fixed.networks.iter().map(|n| key(Kind::Network, n)))
            .collect();
        if !config.image.key.is_empty() {
            deps.push(key(Kind::Image, &config.image.key));
        }
        for d in deps {
            self.add(&me, d);
        }
    }

    /// Records that `object` depends on `dep`.
    pub fn add(&mut self, object: &str, dep: Key) {
        self.users
            .entry(dep.clone())
            .or_default()
            .insert(object.to_string());
        self.deps.entry(object.to_string()).or_default().insert(dep);
    }

    /// The keys related to `k` (its dependencies and its users), `k` excluded.
    pub fn related<'a>(&'a self, k: &str) -> impl Iterator<Item = &'a Key> {
        self.deps
            .get(k)
            .into_iter()
            .flatten()
            .chain(self.users.get(k).into_iter().flatten())
    }
}

/// For each work of a batch, the earlier works it waits for (indices into `works`): the last
/// earlier work on the same object and on each related object.
pub fn order(works: &[Work], rel: &Relations) -> Vec<Vec<usize>> {
    let mut last: HashMap<Key, usize> = HashMap::new();
    let mut out = Vec::with_capacity(works.len());
    for (i, w) in works.iter().enumerate() {
        let k = w.key();
        let mut waits: Vec<usize> = std::iter::once(&k)
            .chain(rel.related(&k))
            .filter_map(|r| last.get(r).copied())
            .collect();
        waits.sort_unstable();
        waits.dedup();
        out.push(waits);
        last.insert(k, i);
    }
    out
}

/// Which works of a batch must wait for a later pass: those whose object or a related object
/// is `busy` (has a work in flight), and those that wait for a deferred work.
pub fn deferred(
    works: &[Work],
    waits: &[Vec<usize>],
    rel: &Relations,
    busy: &dyn Fn(&str) -> bool,
) -> Vec<bool> {
    let mut out = vec![false; works.len()];
    for (i, w) in works.iter().enumerate() {
        let k = w.key();
        out[i] = busy(&k)
            || rel.related(&k).any(|r| busy(r))
            || waits[i]
                .iter()
                .any(|&j| out.get(j).copied().unwrap_or(false));
    }
    out
}

/// Works for the tests of the loop's pieces.
#[cfg(test)]
pub(crate) mod testkit {
    use super::Work;
    use crate::plan::{Change, Step};

    /// A planned stop of container `name`.
    pub fn stop(name: &str) -> Work {
        Work::planned(Step {
            change: Change::StopContainer { name: name.into() },
            reasons: vec![],
        })
    }

    /// A planned start of container `name`.
    pub fn start(name: &str) -> Work {
        Work::planned(Step {
            change: Change::StartContainer { name: name.into() },
            reasons: vec![],
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use super::testkit::{start, stop};

    fn rel(pairs: &[(&str, &str)]) -> Relations {
        let mut r = Relations::default();
        for (a, b) in pairs {
            r.add(&key(Kind::Container, a), key(Kind::Container, b));
        }
        r
    }

    #[test]
    fn unrelated_works_wait_for_nothing() {
        let works: Vec<Work> = (0..10).map(|i| stop(&format!("c{i}"))).collect();
        let waits = order(&works, &Relations::default());
        assert!(waits.iter().all(Vec::is_empty), "{waits:?}");
    }

    #[test]
    fn related_works_keep_the_batch_order() {
        // web links to db; the planner stops web before db and starts db before web.
        let r = rel(&[("web", "db")]);
        let works = vec![
            stop("web"),
            stop("other"),
            stop("db"),
            start("db"),
            start("web"),
        ];
        let waits = order(&works, &r);
        assert_eq!(waits[0], Vec::<usize>::new());
        assert_eq!(waits[1], Vec::<usize>::new());
        assert_eq!(waits[2], vec![0]); // db's stop after web's
        assert_eq!(waits[3], vec![0, 2]); // db's start after both stops
        assert_eq!(waits[4], vec![0, 3]); // web's start after its stop and db's start
    }

    #[test]
    fn same_object_works_chain() {
        let works = vec![stop("a"), start("a"), stop("a")];
        let waits = order(&works, &Relations::default());
        assert_eq!(waits, vec![vec![], vec![0], vec![1]]);
    }

    #[test]
    fn works_on_busy_objects_and_their_dependents_are_deferred() {
        let r = rel(&[("web", "db"), ("worker", "web")]);
        let works = vec![stop("worker"), stop("web"), stop("db"), start("other")];
        let waits = order(&works, &r);
        // db is busy: web (related) and everything waiting on deferred works go later.
        let d = deferred(&works, &waits, &r, &|k: &str| k == "container/db");
        assert_eq!(d, vec![false, true, true, false]);
        let none = deferred(&works, &waits, &r, &|_: &str| false);
        assert!(none.iter().all(|x| !x));
        // An unrelated busy object defers nothing but its own works.
        let d = deferred(&works, &waits, &r, &|k: &str| k == "container/zzz");
        assert!(d.iter().all(|x| !x));
    }

    #[test]
    fn container_relations_cover_image_volumes_networks_and_links() {
        let text = "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  image: 127.0.0.1:5000/busybox\n  links: [{container: db}]\n  volumes: [{volume: data, target: /data}]\n---\napiVersion: agent/v1\nkind: Container\nmetadata:\n  name: db\nspec:\n  image: 127.0.0.1:5000/busybox\n---\napiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: data\n";
        let loaded = crate::manifest::Loaded::from_sources(vec![(
            "/m/web.yaml".into(),
            text.as_bytes().to_vec(),
        )]);
        let objects: Vec<crate::manifest::Manifest> = match &loaded.files[0].outcome {
            Ok(o) => o.iter().map(|o| o.manifest.clone()).collect(),
            Err(e) => panic!("{e:?}"),
        };
        let inputs = vec![crate::plan::FileInput {
            path: "/m/web.yaml".into(),
            state: crate::plan::FileState::Loaded(objects),
        }];
        let desired =
            crate::plan::Desired::build(inputs, &crate::plan::Actual::default().resolutions());
        let mut r = Relations::default();
        for c in desired.containers.values() {
            r.add_container(&c.value.config);
        }
        let mut related: Vec<&Key> = r.related("container/web").collect();
        related.sort();
        assert_eq!(
            related,
            vec![
                "container/db",
                "image/127.0.0.1:5000/busybox:latest",
                "volume/data"
            ]
        );
        assert!(r.related("container/db").any(|k| k == "container/web"));
    }
}
