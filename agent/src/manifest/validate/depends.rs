//! Checks of `dependsOn` that need the other containers (names, cycles and dangling names are
//! checked with the other references in [`super::across`]): `condition: healthy` on a
//! dependency without a health check (it would never be met; Compose refuses it too), and a
//! name listed twice.

use std::collections::HashMap;

use super::across::containers;
use super::diag;
use crate::manifest::depends::{Condition, DependsOn};
use crate::manifest::load::Loaded;
use crate::manifest::node::Step::{self, Index, Key};
use crate::manifest::{ContainerSpec, Diagnostic};

/// The field path of entry `i`: `spec.dependsOn[i]` (short form) or `spec.dependsOn.NAME`.
pub fn entry_path(d: &DependsOn, i: usize) -> Vec<Step<'_>> {
    if d.short {
        vec![Key("spec"), Key("dependsOn"), Index(i)]
    } else {
        vec![Key("spec"), Key("dependsOn"), Key(&d.entries[i].container)]
    }
}

/// See the module docs.
pub fn conditions(loaded: &Loaded, out: &mut Vec<Diagnostic>) {
    let by_name: HashMap<&str, &ContainerSpec> =
        containers(loaded).map(|(o, s)| (o.name(), s)).collect();
    for (obj, spec) in containers(loaded) {
        let deps = &spec.depends_on;
        for (i, d) in deps.iter().enumerate() {
            if deps.entries[..i].iter().any(|e| e.container == d.container) {
                out.push(diag(
                    obj,
                    &entry_path(deps, i),
                    format!(
                        "container {:?} is listed twice in dependsOn; list each dependency once",
                        d.container
                    ),
                ));
                continue;
            }
            if d.condition != Condition::Healthy {
                continue;
            }
            let Some(target) = by_name.get(d.container.as_str()) else {
                continue; // dangling: reported as such
            };
            if target.healthcheck.is_none() {
                let mut path = entry_path(deps, i);
                if !deps.short {
                    path.push(Key("condition"));
                }
                out.push(diag(
                    obj,
                    &path,
                    format!(
                        "condition healthy on {:?}, which has no healthcheck: it would never be healthy; give {:?} a healthcheck, or use condition started or completed",
                        d.container, d.container
                    ),
                ));
            }
        }
    }
}
