//! Capabilities: Docker's default set with `cap_add` / `cap_drop` applied, as Docker's
//! `caps.TweakCapabilities` does it (drop `ALL` first, then add; add `ALL` takes every known
//! capability; names with or without the `CAP_` prefix, any case).

use std::collections::BTreeSet;
use std::str::FromStr;

use oci_spec::runtime::Capability;

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub const DOCKER_DEFAULT: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability this kernel interface knows (for `ALL`).
const ALL: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// Normalises a capability name to `NAME` without the prefix, upper case; `None` if unknown.
pub fn normalize(name: &str) -> Option<String> {
    let up = name.trim().to_ascii_uppercase();
    let bare = up.strip_prefix("CAP_").unwrap_or(&up).to_string();
    if bare == "ALL" || ALL.contains(&bare.as_str()) {
        Some(bare)
    } else {
        None
    }
}

/// The effective set: defaults, minus `drop`, plus `add`. Returns sorted bare names; the error
/// names the unknown capability.
pub fn effective(add: &[String], drop: &[String]) -> Result<BTreeSet<String>, String> {
    let norm = |list: &[String], what: &str| -> Result<Vec<String>, String> {
        list.iter()
            .map(|c| {
                normalize(c).ok_or_else(|| {
                    format!(
                        "{what}: unknown capability {c:?}; use names such as NET_ADMIN or \
                         CAP_NET_ADMIN, or ALL"
                    )
                })
            })
            .collect()
    };
    let add = norm(add, "cap_add")?;
    let drop = norm(drop, "cap_drop")?;
    let mut set: BTreeSet<String> = DOCKER_DEFAULT.iter().map(|s| s.to_string()).collect();
    if drop.iter().any(|c| c == "ALL") {
        set.clear();
    } else {
        for c in &drop {
            set.remove(c);
        }
    }
    if add.iter().any(|c| c == "ALL") {
        set.extend(ALL.iter().map(|s| s.to_string()));
    } else {
        set.extend(add);
    }
    Ok(set)
}

/// Converts bare names to oci-spec capabilities (names oci-spec does not know are skipped: they
/// are newer than the spec crate and the kernel check would refuse them anyway).
pub fn to_oci(set: &BTreeSet<String>) -> oci_spec::runtime::Capabilities {
    set.iter()
        .filter_map(|c| Capability::from_str(c).ok())
        .collect()
}
