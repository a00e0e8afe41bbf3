//! Start conditions (`dependsOn`, Docker Compose's `depends_on`): whether a container may be
//! created or started now, given what its dependencies have reached. Pure.
//!
//! | condition   | met when the dependency                                | Compose                          |
//! |-------------|--------------------------------------------------------|----------------------------------|
//! | `started`   | has been started (running, exited, restarting), or is started earlier in the same plan | `service_started` |
//! | `healthy`   | runs and its health check passed (`healthy`)           | `service_healthy`                |
//! | `completed` | exited with code 0                                     | `service_completed_successfully` |
//!
//! Decisions:
//! - A dependent that waits is neither created nor started (Compose creates it and does not
//!   start it; not creating it keeps the host free of a half-made container). A *recreate* of a
//!   running dependent waits too: the old container keeps running until the condition holds.
//!   An in-place update does not wait.
//! - Waiting is part of the plan ([`super::Plan::waiting`]), never a blocked worker: the rest
//!   of the plan goes on, and the daemon plans again when a dependency a container waits for
//!   changes (its health, its exit, its start), not on a timer.
//! - A dependency that exited non-zero (for `completed`), is unhealthy, or was stopped with
//!   `agent stop` keeps its dependents waiting, with that as the reason, until it changes.
//! - A container that waits holds back what needs it to exist (links, volumesFrom, `container:`
//!   network mode, dependsOn) when it does not exist yet.
//! - `started` on a dependency created or started in the same plan is met: the works are
//!   ordered (the dependent's after the dependency's), as for links.
//! - `restart: true`: when the dependency was started after the dependent (the agent restarted
//!   or recreated it, its restart policy included), the running dependent is stopped and
//!   started again, once the condition holds (Compose restarts it after updating or restarting
//!   the dependency itself, not after the runtime's restarts of a crashed one).
//! - `required: false`: a dependency that does not exist does not hold the dependent back, nor
//!   one that failed (exited non-zero for `completed`, unhealthy or not running for `healthy`,
//!   stopped with `agent stop`): the dependent goes on and the reasons of its create or start
//!   say so ([`optional_failures`]), as Compose warns and goes on. One that is merely not there
//!   yet (not healthy yet, not completed yet) is waited for.
//! - After a reboot the restart policy brings containers back; a restart waits for the
//!   same conditions ([`blocked`] is used by the daemon's restarts as by the planner).

use serde::Serialize;

use super::effective::{EffectiveContainer, EffectiveDependency};
use crate::manifest::Condition;
use crate::store::{ContainerState, HealthStatus};

/// What is known about a dependency when a dependent is about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// No container of that name exists or is planned.
    Missing,
    /// It is created or started earlier in the same plan (not running yet).
    Starting,
    /// It waits for its own dependencies.
    Waiting,
    /// As recorded.
    Recorded {
        state: ContainerState,
        exit_code: Option<i32>,
        health: Option<HealthStatus>,
    },
}

/// Where a dependency stands against its condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The condition holds.
    Met,
    /// Not yet: it may still come (`db not healthy yet`).
    Pending(String),
    /// It failed, and only a change of the dependency ends that (`db failed (exit code 1)`,
    /// `db is unhealthy`, `db is stopped (agent stop)`). With `required: false` the dependent
    /// goes on, with a warning (Compose's rule).
    Failed(String),
}

/// Where `name` stands against condition `dep`, in the words `agent ps` shows after
/// `waiting (...)`.
pub fn check(name: &str, dep: &EffectiveDependency, fact: Fact) -> Check {
    use Check::{Failed, Met, Pending};
    use ContainerState as S;
    let c = dep.condition;
    match fact {
        Fact::Missing if !dep.required => Met,
        Fact::Missing => Pending(format!("{name} does not exist")),
        Fact::Waiting => Pending(format!("{name} waits itself")),
        Fact::Starting => match c {
            Condition::Started => Met,
            Condition::Healthy => Pending(format!("{name} not healthy yet")),
            Condition::Completed => Pending(format!("{name} not completed yet")),
        },
        Fact::Recorded {
            state,
            exit_code,
            health,
        } => {
            let exited = |what: &str| match exit_code {
                Some(code) => format!("{name} {what} (exit code {code})"),
                None => format!("{name} {what}"),
            };
            match (c, state) {
                (_, S::StoppedByUser) => Failed(format!("{name} is stopped (agent stop)")),
                (_, S::Dead | S::Removing) => Failed(format!("{name} is {state}")),
                (_, S::Created) => Pending(format!("{name} not started yet")),
                (Condition::Started, _) => Met,
                (Condition::Healthy, S::Running) => match health {
                    Some(HealthStatus::Healthy) => Met,
                    Some(HealthStatus::Unhealthy) => Failed(format!("{name} is unhealthy")),
                    _ => Pending(format!("{name} not healthy yet")),
                },
                (Condition::Healthy, S::Restarting) => Pending(exited("restarts")),
                (Condition::Healthy, _) => Failed(exited("is not running")),
                (Condition::Completed, S::Exited) if exit_code == Some(0) => Met,
                (Condition::Completed, S::Exited) => Failed(exited("failed")),
                (Condition::Completed, S::Restarting) => Pending(exited("restarts")),
                (Condition::Completed, _) => Pending(format!("{name} not completed yet")),
            }
        }
    }
}

/// Why `name`'s condition `dep` holds the dependent back (`None`: it does not): pending, or
/// failed and required.
pub fn unmet(name: &str, dep: &EffectiveDependency, fact: Fact) -> Option<String> {
    match check(name, dep, fact) {
        Check::Met => None,
        Check::Pending(r) => Some(r),
        Check::Failed(r) => dep.required.then_some(r),
    }
}

/// The failed dependencies with `required: false` that `config` goes on without, as warnings
/// for the reasons of its create or start (`optional dependency db is unhealthy (required:
/// false): going on without it`).
pub fn optional_failures(config: &EffectiveContainer, fact: impl Fn(&str) -> Fact) -> Vec<String> {
    config
        .live
        .depends_on
        .iter()
        .filter(|(_, d)| !d.required)
        .filter_map(|(name, d)| match check(name, d, fact(name)) {
            Check::Failed(r) => Some(format!(
                "optional dependency {r} (required: false): going on without it"
            )),
            _ => None,
        })
        .collect()
}

/// Why `config` may not be created or started now: the reasons joined by `; ` and the
/// dependencies it waits for (`None`: it may). `fact` tells what each dependency has reached;
/// `waits(dep)` whether a dependency that is not a `dependsOn` (a link target, a volumesFrom
/// source, a network-mode peer) waits and does not exist yet.
pub fn blocked(
    config: &EffectiveContainer,
    fact: impl Fn(&str) -> Fact,
    waits: impl Fn(&str) -> bool,
) -> Option<(String, Vec<String>)> {
    let mut reasons = Vec::new();
    let mut on = Vec::new();
    for (name, dep) in &config.live.depends_on {
        if let Some(r) = unmet(name, dep, fact(name)) {
            reasons.push(r);
            on.push(name.clone());
        }
    }
    for name in config.dependency_names() {
        if !config.live.depends_on.contains_key(name)
            && waits(name)
            && !on.iter().any(|o| o == name)
        {
            reasons.push(format!("{name} waits itself"));
            on.push(name.to_string());
        }
    }
    (!reasons.is_empty()).then(|| (reasons.join("; "), on))
}

/// The dependencies of `config` with `restart: true` that were started after `started_at`
/// (its own last start): it is restarted once their conditions hold.
pub fn restart_after(
    config: &EffectiveContainer,
    started_at: Option<i64>,
    dep_started_at: impl Fn(&str) -> Option<i64>,
) -> Vec<&str> {
    let Some(mine) = started_at else {
        return Vec::new();
    };
    config
        .live
        .depends_on
        .iter()
        .filter(|(_, d)| d.restart)
        .filter(|(n, _)| dep_started_at(n).is_some_and(|t| t > mine))
        .map(|(n, _)| n.as_str())
        .collect()
}

/// A container the plan holds back until its dependencies meet their conditions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waiting {
    /// The container.
    pub name: String,
    /// What it waits to do: `create`, `recreate`, `start`.
    pub action: &'static str,
    /// `db not healthy yet; migrate failed (exit code 1)`.
    pub reason: String,
    /// The dependencies whose change may let it go (health, exit, start).
    pub on: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(c: Condition) -> EffectiveDependency {
        EffectiveDependency {
            condition: c,
            restart: false,
            required: true,
        }
    }

    fn rec(state: ContainerState, exit_code: Option<i32>, health: Option<HealthStatus>) -> Fact {
        Fact::Recorded {
            state,
            exit_code,
            health,
        }
    }

    #[test]
    fn conditions_table() {
        use Condition::*;
        use ContainerState as S;
        use HealthStatus as H;
        let cases: &[(Condition, Fact, Option<&str>)] = &[
            (Started, Fact::Starting, None),
            (Started, rec(S::Running, None, None), None),
            (Started, rec(S::Exited, Some(1), None), None),
            (
                Started,
                rec(S::Created, None, None),
                Some("db not started yet"),
            ),
            (Started, Fact::Missing, Some("db does not exist")),
            (Started, Fact::Waiting, Some("db waits itself")),
            (Healthy, Fact::Starting, Some("db not healthy yet")),
            (
                Healthy,
                rec(S::Running, None, None),
                Some("db not healthy yet"),
            ),
            (
                Healthy,
                rec(S::Running, None, Some(H::Starting)),
                Some("db not healthy yet"),
            ),
            (Healthy, rec(S::Running, None, Some(H::Healthy)), None),
            (
                Healthy,
                rec(S::Running, None, Some(H::Unhealthy)),
                Some("db is unhealthy"),
            ),
            // A health status left from before an exit does not count.
            (
                Healthy,
                rec(S::Exited, Some(137), Some(H::Healthy)),
                Some("db is not running (exit code 137)"),
            ),
            (Completed, rec(S::Exited, Some(0), None), None),
            (
                Completed,
                rec(S::Exited, Some(1), None),
                Some("db failed (exit code 1)"),
            ),
            (
                Completed,
                rec(S::Running, None, None),
                Some("db not completed yet"),
            ),
            (Completed, Fact::Starting, Some("db not completed yet")),
            (
                Completed,
                rec(S::StoppedByUser, Some(0), None),
                Some("db is stopped (agent stop)"),
            ),
        ];
        for (c, fact, want) in cases {
            assert_eq!(
                unmet("db", &dep(*c), *fact).as_deref(),
                *want,
                "{c:?} {fact:?}"
            );
        }
        let optional = EffectiveDependency {
            required: false,
            ..dep(Healthy)
        };
        assert_eq!(unmet("db", &optional, Fact::Missing), None);
        // An optional dependency that failed does not hold back; one not there yet does.
        assert_eq!(
            unmet("db", &optional, rec(S::Running, None, Some(H::Unhealthy))),
            None
        );
        assert_eq!(
            unmet("db", &optional, rec(S::Running, None, Some(H::Starting))).as_deref(),
            Some("db not healthy yet")
        );
        assert_eq!(
            unmet("db", &optional, rec(S::Restarting, Some(1), None)).as_deref(),
            Some("db restarts (exit code 1)")
        );
    }
}

/// The planner's use of the conditions (plans of small manifests, applied step by step).
#[cfg(test)]
mod plan_tests {
    use crate::plan::testkit::*;
    use crate::plan::{Actual, Plan, plan};
    use crate::store::{ContainerState, HealthStatus};

    const HC: &str = "healthcheck: {command: [\"/bin/true\"], interval: 1s}";

    fn summaries(p: &Plan) -> Vec<String> {
        p.steps.iter().map(|s| s.summary()).collect()
    }

    fn waits(p: &Plan) -> Vec<String> {
        p.waiting
            .iter()
            .map(|w| format!("{} {}: {}", w.action, w.name, w.reason))
            .collect()
    }

    fn step_plan(docs: &str, actual: &mut Actual) -> Plan {
        let inputs = loaded_inputs(&[("s.yaml", docs)]);
        let p = plan(&desired(&inputs, actual), actual);
        apply(actual, &p, &inputs);
        p
    }

    fn set(actual: &mut Actual, name: &str, f: impl FnOnce(&mut crate::plan::ActualContainer)) {
        f(actual.containers.get_mut(name).expect("recorded"));
    }

    #[test]
    fn healthy_holds_the_dependent_until_the_dependency_is_healthy() {
        let docs = format!(
            "{}---\n{}",
            container("db", HC),
            container("web", "dependsOn: {db: {condition: healthy}}")
        );
        let mut actual = Actual::default();
        let p = step_plan(&docs, &mut actual);
        assert!(
            !p.steps.iter().any(|s| s.change.name() == "web"),
            "{:?}",
            summaries(&p)
        );
        assert_eq!(waits(&p), ["create web: db not healthy yet"]);
        assert_eq!(p.waiting[0].on, ["db"]);
        // db runs, its check has not passed yet: still waiting, nothing else to do.
        set(&mut actual, "db", |c| {
            c.health = Some(HealthStatus::Starting)
        });
        let p = step_plan(&docs, &mut actual);
        assert!(p.steps.is_empty());
        assert_eq!(waits(&p), ["create web: db not healthy yet"]);
        set(&mut actual, "db", |c| {
            c.health = Some(HealthStatus::Unhealthy)
        });
        assert_eq!(
            waits(&step_plan(&docs, &mut actual)),
            ["create web: db is unhealthy"]
        );
        set(&mut actual, "db", |c| {
            c.health = Some(HealthStatus::Healthy)
        });
        let p = step_plan(&docs, &mut actual);
        assert!(p.waiting.is_empty());
        assert!(
            summaries(&p).iter().any(|s| s.starts_with("create web"))
                && summaries(&p).iter().any(|s| s.starts_with("start web")),
            "{:?}",
            summaries(&p)
        );
        assert!(step_plan(&docs, &mut actual).is_empty());
    }

    #[test]
    fn completed_needs_exit_code_zero() {
        let docs = format!(
            "{}---\n{}",
            container("migrate", ""),
            container("web", "dependsOn: {migrate: {condition: completed}}")
        );
        let mut actual = Actual::default();
        let p = step_plan(&docs, &mut actual);
        assert_eq!(waits(&p), ["create web: migrate not completed yet"]);
        set(&mut actual, "migrate", |c| {
            c.state = ContainerState::Exited;
            c.exit_code = Some(1);
        });
        assert_eq!(
            waits(&step_plan(&docs, &mut actual)),
            ["create web: migrate failed (exit code 1)"]
        );
        set(&mut actual, "migrate", |c| c.exit_code = Some(0));
        let p = step_plan(&docs, &mut actual);
        assert!(p.waiting.is_empty());
        assert_eq!(
            summaries(&p),
            ["create web: new in s.yaml", "start web: new container"]
        );
    }

    #[test]
    fn an_optional_dependency_that_failed_is_gone_on_without_and_said() {
        let docs = format!(
            "{}---\n{}",
            container("migrate", ""),
            container(
                "web",
                "dependsOn: {migrate: {condition: completed, required: false}}"
            )
        );
        let mut actual = Actual::default();
        let p = step_plan(&docs, &mut actual);
        assert_eq!(waits(&p), ["create web: migrate not completed yet"]);
        set(&mut actual, "migrate", |c| {
            c.state = ContainerState::Exited;
            c.exit_code = Some(3);
        });
        let p = step_plan(&docs, &mut actual);
        assert!(p.waiting.is_empty());
        assert_eq!(
            summaries(&p),
            [
                "create web: new in s.yaml; optional dependency migrate failed (exit code 3) (required: false): going on without it",
                "start web: new container"
            ]
        );
    }

    #[test]
    fn started_orders_within_one_plan_and_holds_nothing() {
        // Names chosen so that name order is not dependency order.
        let docs = format!(
            "{}---\n{}",
            container("zdb", ""),
            container("app", "dependsOn: [zdb]")
        );
        let mut actual = Actual::default();
        let p = step_plan(&docs, &mut actual);
        assert!(p.waiting.is_empty());
        let s = summaries(&p);
        let pos = |p: &str| s.iter().position(|x| x.starts_with(p)).expect(p);
        assert!(pos("start zdb") < pos("create app"), "{s:?}");
    }

    #[test]
    fn a_wait_holds_what_needs_the_waiting_container_to_exist() {
        let docs = format!(
            "{}---\n{}---\n{}",
            container("db", HC),
            container("web", "dependsOn: {db: {condition: healthy}}"),
            container("proxy", "links: [web]")
        );
        let mut actual = Actual::default();
        let p = step_plan(&docs, &mut actual);
        assert_eq!(
            waits(&p),
            [
                "create proxy: web waits itself",
                "create web: db not healthy yet"
            ]
        );
        assert!(
            p.steps.iter().all(|s| s.change.name() != "proxy"),
            "{:?}",
            summaries(&p)
        );
    }

    #[test]
    fn a_recreate_waits_and_the_old_container_keeps_running() {
        let web = |env: &str| {
            format!(
                "{}---\n{}",
                container("db", HC),
                container(
                    "web",
                    &format!("env: {{V: \"{env}\"}}\ndependsOn: {{db: {{condition: healthy}}}}")
                )
            )
        };
        let mut actual = Actual::default();
        step_plan(&web("1"), &mut actual);
        set(&mut actual, "db", |c| {
            c.health = Some(HealthStatus::Healthy)
        });
        step_plan(&web("1"), &mut actual);
        assert_eq!(actual.containers["web"].state, ContainerState::Running);
        set(&mut actual, "db", |c| {
            c.health = Some(HealthStatus::Unhealthy)
        });
        let p = step_plan(&web("2"), &mut actual);
        assert!(p.steps.is_empty(), "{:?}", summaries(&p));
        assert_eq!(waits(&p), ["recreate web: db is unhealthy"]);
        assert_eq!(actual.containers["web"].state, ContainerState::Running);
    }

    #[test]
    fn changing_depends_on_updates_in_place_and_says_so() {
        let docs = |deps: &str| format!("{}---\n{}", container("db", HC), container("web", deps));
        let mut actual = Actual::default();
        step_plan(&docs("dependsOn: [db]"), &mut actual);
        let p = step_plan(
            &docs("dependsOn: {db: {condition: healthy, restart: true}}"),
            &mut actual,
        );
        assert_eq!(
            summaries(&p),
            [
                "update web: dependsOn.db started -> healthy, restart (start order only: the container is not recreated)"
            ]
        );
        // The short and the long form of the same condition are equal.
        step_plan(&docs("dependsOn: [db]"), &mut actual);
        assert!(step_plan(&docs("dependsOn: {db: {condition: started}}"), &mut actual).is_empty());
    }

    #[test]
    fn restart_true_restarts_the_dependent_after_its_dependency_started_again() {
        let docs = format!(
            "{}---\n{}",
            container("db", ""),
            container(
                "web",
                "dependsOn: {db: {condition: started, restart: true}}"
            )
        );
        let mut actual = Actual::default();
        step_plan(&docs, &mut actual);
        set(&mut actual, "db", |c| c.started_at = Some(100));
        set(&mut actual, "web", |c| c.started_at = Some(200));
        assert!(step_plan(&docs, &mut actual).is_empty());
        // The agent restarted db.
        set(&mut actual, "db", |c| c.started_at = Some(300));
        let p = step_plan(&docs, &mut actual);
        assert_eq!(
            summaries(&p),
            [
                "stop web: restart: true: db started again after it",
                "start web: restart: true: db started again after it"
            ]
        );
    }
}
