//! Showing a plan: grouped text with Terraform-like markers, or JSON for pipelines.
//!
//! Text groups the steps by kind (images, volumes, networks, containers), each numbered with its
//! place in the execution order, its marker (`+` add, `~` change in place, `-` remove, `-/+`
//! replace) and one reason per line. Held objects follow, then the containers that wait for
//! their start conditions (`dependsOn`), then a one-line summary.
//!
//! JSON: `{"changes": [{"step", "action", "marker", "kind", "name", "reasons", "summary"}],
//! "held": [{"kind", "name", "reason"}], "waiting": [{"name", "action", "reason", "on"}],
//! "counts": {"add", "change", "replace", "remove"},
//! "errors": [..]}`; `errors` holds the manifest diagnostics given by the caller.

use std::fmt::Write;

use serde_json::{Value, json};

use super::change::Plan;
use crate::manifest::{Diagnostic, Kind};

fn group_title(kind: Kind) -> &'static str {
    match kind {
        Kind::Image => "Images",
        Kind::Volume => "Volumes",
        Kind::Network => "Networks",
        Kind::Container => "Containers",
        Kind::Secret => "Secrets",
    }
}

/// The plan as text (ends with a newline).
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let width = plan.steps.len().to_string().len();
    for kind in Kind::ALL {
        let steps: Vec<(usize, &super::Step)> = plan
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.change.kind() == kind)
            .collect();
        if steps.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{}:", group_title(kind));
        for (i, s) in steps {
            let _ = writeln!(
                out,
                "  {:>width$}. {:>3} {} {}",
                i + 1,
                s.change.marker(),
                s.change.action(),
                s.change.name()
            );
            for r in &s.reasons {
                let _ = writeln!(out, "  {:>width$}        {r}", "");
            }
        }
        out.push('\n');
    }
    if !plan.held.is_empty() {
        out.push_str("Left as they are:\n");
        for h in &plan.held {
            match h.kind {
                Some(k) => {
                    let _ = writeln!(
                        out,
                        "  ! {} {}: {}",
                        k.as_str().to_ascii_lowercase(),
                        h.name,
                        h.reason
                    );
                }
                None => {
                    let _ = writeln!(out, "  ! file {}: {}", h.name, h.reason);
                }
            }
        }
        out.push('\n');
    }
    if !plan.waiting.is_empty() {
        out.push_str("Waiting for start conditions (dependsOn):\n");
        for w in &plan.waiting {
            let _ = writeln!(out, "  … {} {}: waits: {}", w.action, w.name, w.reason);
        }
        out.push('\n');
    }
    if plan.is_empty() && !plan.waiting.is_empty() {
        out.push_str("No changes now: the containers above wait for their dependencies.\n");
    } else if plan.is_empty() {
        out.push_str("No changes: the host matches the manifests.\n");
    } else {
        let c = plan.counts();
        let _ = writeln!(
            out,
            "Plan: {} to add, {} to change, {} to replace, {} to remove.",
            c.add, c.change, c.replace, c.remove
        );
    }
    out
}

/// The plan as JSON, with the manifest problems found while loading.
pub fn json(plan: &Plan, errors: &[&Diagnostic]) -> Value {
    let changes: Vec<Value> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "step": i + 1,
                "action": s.change.action(),
                "marker": s.change.marker(),
                "kind": s.change.kind(),
                "name": s.change.name(),
                "reasons": s.reasons,
                "summary": s.summary(),
            })
        })
        .collect();
    json!({
        "changes": changes,
        "held": plan.held,
        "waiting": plan.waiting,
        "counts": plan.counts(),
        "errors": errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testkit::{container, desired, loaded_inputs, volume};
    use crate::plan::{Actual, plan};

    #[test]
    fn text_groups_numbers_and_marks() {
        let docs = format!(
            "{}---\n{}",
            volume("data", "retain"),
            container("web", "volumes: [\"data:/data\"]")
        );
        let inputs = loaded_inputs(&[("w.yaml", &docs)]);
        let actual = Actual::default();
        let p = plan(&desired(&inputs, &actual), &actual);
        let t = text(&p);
        let want = "\
Images:
  1.   + pull 127.0.0.1:5000/busybox:latest
           needed by web

Volumes:
  2.   + create data
           new in w.yaml

Containers:
  3.   + create web
           new in w.yaml
           image 127.0.0.1:5000/busybox:latest: digest known after fetch
  4.   ~ start web
           new container

Plan: 3 to add, 1 to change, 0 to replace, 0 to remove.
";
        assert_eq!(t, want);
        let j = json(&p, &[]);
        assert_eq!(j["changes"][0]["action"], "pull");
        assert_eq!(j["changes"][3]["summary"], "start web: new container");
        assert_eq!(j["counts"]["add"], 3);
        assert_eq!(
            text(&Plan::default()),
            "No changes: the host matches the manifests.\n"
        );
    }
}
