//! What `agent validate` warns about without refusing: fields that give a container the host
//! (`privileged`), host devices that are not there now (they may come later: a USB device
//! plugged in before the container starts; creating the container fails while one is missing),
//! and ulimits above what this process could set ([`AgentLimits`]: its own hard limit without
//! CAP_SYS_RESOURCE, `fs.nr_open` for `nofile`).
//!
//! Decision (ulimits): a warning, not a refusal. `agent validate` often runs elsewhere (CI,
//! another machine) or from a login shell whose limits are not the agent's (systemd gives a
//! service its own `LimitNOFILE`), so its own limits prove nothing about the agent's. The agent
//! itself never stops a running container for a replacement that cannot get its ulimits:
//! `reconcile::precheck` checks them against the agent's own limits first and keeps the running
//! one; a new container fails at create with the exec driver's error naming the ulimit and the
//! bound, retried with backoff. Refusing the whole file in the daemon instead would also hold
//! every other object of it.

use std::path::Path;

use super::diag;
use crate::driver::exec::spec::build::{AgentLimits, RlimitCeiling, rlimit_text};
use crate::manifest::device::Device;
use crate::manifest::node::Step::{Index, Key};
use crate::manifest::{Diagnostic, Loaded, Manifest};

/// The warnings for every valid object of `loaded`, in file order.
pub fn warnings(loaded: &Loaded) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut limits = None;
    for obj in loaded.objects() {
        let Manifest::Container(c) = &obj.manifest else {
            continue;
        };
        if c.spec.privileged {
            out.push(diag(
                obj,
                &[Key("spec"), Key("privileged")],
                "privileged: every capability, every host device, no seccomp filter and a \
                 writable /sys: this container is root on the host (docs/security.md)"
                    .into(),
            ));
        }
        for (i, d) in c.spec.devices.iter().enumerate() {
            if let Device::Node { source, .. } = d
                && !host_has_device(source)
            {
                out.push(diag(
                    obj,
                    &[Key("spec"), Key("devices"), Index(i)],
                    format!(
                        "device {} is not a device node on this host now: creating the \
                         container fails while it is missing",
                        source.display()
                    ),
                ));
            }
        }
        for (name, u) in &c.spec.ulimits {
            let limits = limits.get_or_insert_with(AgentLimits::detect);
            let hard = u.hard.as_rlim();
            if let Some(ceiling) = limits.ceiling(name.as_str(), hard) {
                let bound = match ceiling {
                    RlimitCeiling::Own(n) => format!(
                        "this process's hard limit {n} and it lacks CAP_SYS_RESOURCE to raise it"
                    ),
                    RlimitCeiling::NrOpen(n) => format!("this host's fs.nr_open {n}"),
                };
                out.push(diag(
                    obj,
                    &[Key("spec"), Key("ulimits"), Key(name.as_str())],
                    format!(
                        "ulimit {name}: hard limit {} is above {bound}: an agent with these \
                         limits cannot create this container (a running one it would replace \
                         is kept); use at most {}",
                        rlimit_text(hard),
                        ceiling.limit()
                    ),
                ));
            }
        }
    }
    out
}

fn host_has_device(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p)
        .is_ok_and(|m| m.file_type().is_char_device() || m.file_type().is_block_device())
}
