//! Devices in a bundle: each [`DeviceRequest`] is looked up on the host when the bundle is
//! written (a missing node or a path that is not a device node fails the create, naming the
//! device), and becomes an OCI `linux.devices` entry (libcontainer makes the node in the
//! container's `/dev` with the host's type, numbers, mode and owner) plus a device cgroup allow
//! rule with the requested access. `device_rules` become allow rules as written, for nodes the
//! container makes itself (devices that come and go). All rules follow the spec's deny-all rule.
//!
//! Enforcement: on cgroup v1 the devices controller holds the rules. On cgroup v2 libcontainer
//! enforces them only with its eBPF feature, not built here (see [`super::spec::build`]): the
//! nodes are made all the same, and without CAP_MKNOD the container cannot make others.
//!
//! CDI names are resolved and applied by [`super::cdi`].
//!
//! `privileged` adds every device node under the host's `/dev` (as Docker does; `pts`, `shm`,
//! `mqueue` and the nodes the runtime makes itself are left out) and the allow-all rule.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    Spec,
};

use super::Error;
use super::spec::{ContainerSpec, DeviceRequest};

/// The nodes libcontainer makes in every container (its default devices): not added again.
const RUNTIME_NODES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/urandom",
    "/dev/random",
    "/dev/console",
    "/dev/ptmx",
];

fn invalid(spec: &ContainerSpec, field: String, reason: String) -> Error {
    Error::InvalidSpec {
        container: spec.name.clone(),
        field,
        reason,
    }
}

/// A host node as an OCI device at `target`, or why it cannot be one.
pub fn node(host: &Path, target: &str) -> Result<LinuxDevice, String> {
    let meta = std::fs::metadata(host).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("device {} does not exist on this host", host.display())
        } else {
            format!("device {}: {e}", host.display())
        }
    })?;
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Err(format!("{} is not a device node", host.display()));
    };
    let rdev = meta.rdev();
    LinuxDeviceBuilder::default()
        .path(target)
        .typ(typ)
        .major(nix::sys::stat::major(rdev) as i64)
        .minor(nix::sys::stat::minor(rdev) as i64)
        .file_mode(meta.mode() & 0o777)
        .uid(meta.uid())
        .gid(meta.gid())
        .build()
        .map_err(|e| e.to_string())
}

pub(super) fn allow(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup, Error> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    Ok(b.build()?)
}

/// Every device node under the host's `/dev` (one level of subdirectories, as `/dev/dri/*`,
/// `/dev/snd/*`, `/dev/bus/usb/*/*` two), for `privileged`.
fn host_devices() -> Vec<DeviceRequest> {
    let mut out = Vec::new();
    let mut dirs = vec![(std::path::PathBuf::from("/dev"), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                let skip = ["/dev/pts", "/dev/shm", "/dev/mqueue"]
                    .iter()
                    .any(|s| p == Path::new(s));
                if !skip && depth < 3 {
                    dirs.push((p, depth + 1));
                }
            } else if (ft.is_char_device() || ft.is_block_device())
                && !RUNTIME_NODES.iter().any(|n| p == Path::new(n))
            {
                let target = p.to_string_lossy().into_owned();
                out.push(DeviceRequest {
                    host: p,
                    target,
                    access: "rwm".into(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.target.cmp(&b.target));
    out
}

/// Adds the spec's devices and device rules to `oci`.
pub fn apply(spec: &ContainerSpec, oci: &mut Spec, cdi_dirs: &[PathBuf]) -> Result<(), Error> {
    if spec.devices.is_empty()
        && spec.device_rules.is_empty()
        && spec.cdi_devices.is_empty()
        && !spec.privileged
    {
        return Ok(());
    }
    let mut nodes: Vec<LinuxDevice> = Vec::new();
    let mut rules: Vec<LinuxDeviceCgroup> = Vec::new();
    for d in &spec.devices {
        let field = format!("devices[{}]", d.host.display());
        if !d.target.starts_with('/') || d.target.split('/').any(|c| c == "..") {
            return Err(invalid(
                spec,
                field,
                format!("{} is not an absolute path without '..'", d.target),
            ));
        }
        let dev = node(&d.host, &d.target).map_err(|r| invalid(spec, field, r))?;
        rules.push(allow(
            dev.typ(),
            Some(dev.major()),
            Some(dev.minor()),
            &d.access,
        )?);
        nodes.push(dev);
    }
    for r in &spec.device_rules {
        let typ = match r.kind {
            'b' => LinuxDeviceType::B,
            'c' => LinuxDeviceType::C,
            _ => LinuxDeviceType::A,
        };
        rules.push(allow(typ, r.major, r.minor, &r.access)?);
    }
    if spec.privileged {
        let taken: Vec<String> = nodes
            .iter()
            .map(|n| n.path().to_string_lossy().into_owned())
            .collect();
        for d in host_devices() {
            if taken.contains(&d.target) {
                continue;
            }
            // A node that vanished meanwhile is skipped.
            if let Ok(dev) = node(&d.host, &d.target) {
                nodes.push(dev);
            }
        }
        rules.push(allow(LinuxDeviceType::A, None, None, "rwm")?);
    }
    if !spec.cdi_devices.is_empty() {
        let field = format!("devices[{}]", spec.cdi_devices.join(","));
        rules.extend(
            super::cdi::apply(&spec.cdi_devices, cdi_dirs, oci)
                .map_err(|r| invalid(spec, field, r))?,
        );
    }
    let Some(linux) = oci.linux_mut() else {
        return Ok(());
    };
    let mut all_nodes = linux.devices().clone().unwrap_or_default();
    all_nodes.extend(nodes);
    linux.set_devices(Some(all_nodes));
    let mut resources = linux.resources().clone().unwrap_or_default();
    let mut all_rules = resources.devices().clone().unwrap_or_default();
    all_rules.extend(rules);
    resources.set_devices(Some(all_rules));
    linux.set_resources(Some(resources));
    Ok(())
}
