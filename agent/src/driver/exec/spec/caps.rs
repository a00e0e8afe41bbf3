//! Capabilities: Docker's default set with `cap_add` / `cap_drop` applied, as Docker's
//! `caps.TweakCapabilities` does it (drop `ALL` first, then add; add `ALL` takes every known
//! capability; names with or without the `CAP_` prefix, any case).
//!
//! A process cannot give its child a capability outside its own bounding set (`capset` answers
//! EPERM deep inside container creation). So [`within_bounding`] trims the set to the agent's
//! bounding set: `ALL` means every capability the agent itself may hold (Docker: every one the
//! runtime's bounding set allows), a default the agent lacks is left out, and a capability added
//! by name that the agent lacks is refused with its name.

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

/// Every capability this kernel interface knows (for `ALL`), with its bit number
/// (`linux/capability.h`).
const ALL: &[(&str, u32)] = &[
    ("AUDIT_CONTROL", 30),
    ("AUDIT_READ", 37),
    ("AUDIT_WRITE", 29),
    ("BLOCK_SUSPEND", 36),
    ("BPF", 39),
    ("CHECKPOINT_RESTORE", 40),
    ("CHOWN", 0),
    ("DAC_OVERRIDE", 1),
    ("DAC_READ_SEARCH", 2),
    ("FOWNER", 3),
    ("FSETID", 4),
    ("IPC_LOCK", 14),
    ("IPC_OWNER", 15),
    ("KILL", 5),
    ("LEASE", 28),
    ("LINUX_IMMUTABLE", 9),
    ("MAC_ADMIN", 33),
    ("MAC_OVERRIDE", 32),
    ("MKNOD", 27),
    ("NET_ADMIN", 12),
    ("NET_BIND_SERVICE", 10),
    ("NET_BROADCAST", 11),
    ("NET_RAW", 13),
    ("PERFMON", 38),
    ("SETFCAP", 31),
    ("SETGID", 6),
    ("SETPCAP", 8),
    ("SETUID", 7),
    ("SYSLOG", 34),
    ("SYS_ADMIN", 21),
    ("SYS_BOOT", 22),
    ("SYS_CHROOT", 18),
    ("SYS_MODULE", 16),
    ("SYS_NICE", 23),
    ("SYS_PACCT", 20),
    ("SYS_PTRACE", 19),
    ("SYS_RAWIO", 17),
    ("SYS_RESOURCE", 24),
    ("SYS_TIME", 25),
    ("SYS_TTY_CONFIG", 26),
    ("WAKE_ALARM", 35),
];

/// Normalises a capability name to `NAME` without the prefix, upper case; `None` if unknown.
pub fn normalize(name: &str) -> Option<String> {
    let up = name.trim().to_ascii_uppercase();
    let bare = up.strip_prefix("CAP_").unwrap_or(&up).to_string();
    if bare == "ALL" || ALL.iter().any(|(n, _)| *n == bare) {
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
        set.extend(ALL.iter().map(|(n, _)| n.to_string()));
    } else {
        set.extend(add);
    }
    Ok(set)
}

/// The bounding set (`CapBnd:` bits) in `/proc/<pid>/status` text.
pub fn bounding_in_status(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// `set` ([`effective`] of `add`) limited to the `bounding` bits. A capability named in `add`
/// (not through `ALL`) that is outside the bounding set is an error naming it.
pub fn within_bounding(
    set: BTreeSet<String>,
    add: &[String],
    bounding: u64,
) -> Result<BTreeSet<String>, String> {
    let allowed = |name: &str| {
        ALL.iter()
            .find(|(n, _)| *n == name)
            .is_some_and(|(_, bit)| bounding & (1u64 << bit) != 0)
    };
    for c in add {
        if let Some(n) = normalize(c)
            && n != "ALL"
            && !allowed(&n)
        {
            return Err(format!(
                "cap_add: {n} is not in the agent's own bounding set, so no container can get                  it; run the agent with that capability or leave it out"
            ));
        }
    }
    Ok(set.into_iter().filter(|c| allowed(c)).collect())
}

/// Converts bare names to oci-spec capabilities (names oci-spec does not know are skipped: they
/// are newer than the spec crate and the kernel check would refuse them anyway).
pub fn to_oci(set: &BTreeSet<String>) -> oci_spec::runtime::Capabilities {
    set.iter()
        .filter_map(|c| Capability::from_str(c).ok())
        .collect()
}
