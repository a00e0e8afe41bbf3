//! How a converted container runs: health check, restart policy, start order (`depends_on`),
//! `deploy` (limits, reservations, restart policy, replicas), ulimits and logging.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::service::{Svc, node_entries, node_json, size_resource, typed};
use super::value::{self, boolean, text};
use super::{at, at_key};
use crate::manifest::node::{Key, Node, NodeKind};

pub(super) fn ulimits(s: &mut Svc, v: &Node) {
    let entries = match value::mapping(v) {
        Ok(e) => e,
        Err(why) => return s.drop(at(v), "ulimits", format!("not carried over: {why}")),
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
pub(super) fn healthcheck(s: &mut Svc, k: &Key, v: &Node) {
    let entries = match value::mapping(v) {
        Ok(e) => e,
        Err(why) => return s.drop(at(v), "healthcheck", format!("not carried over: {why}")),
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

pub(super) fn restart(s: &mut Svc, v: &Node) {
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

pub(super) fn logging(s: &mut Svc, v: &Node) {
    let entries = match value::mapping(v) {
        Ok(e) => e,
        Err(why) => return s.drop(at(v), "logging", format!("not carried over: {why}")),
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

/// `depends_on:` -> `dependsOn`: a list when every condition is `service_started` and nothing
/// else is set, else a mapping `{NAME: {condition: started|healthy|completed, restart, required}}`.
/// When this agent has no `dependsOn` the whole key is reported, naming what it asked for.
pub(super) fn depends_on(s: &mut Svc, v: &Node) {
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
pub(super) fn deploy(s: &mut Svc, v: &Node) {
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
                                Ok(0.0) => s.change(at(lv), &lsub, "0: unlimited, as without it"),
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
