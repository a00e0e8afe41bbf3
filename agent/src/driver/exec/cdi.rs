//! CDI (Container Device Interface, github.com/cncf-tags/container-device-interface): device
//! names such as `nvidia.com/gpu=all` resolved from the spec files in the CDI directories
//! (config `cdi_spec_dirs`, default `/etc/cdi` then `/var/run/cdi`), as Podman and containerd do.
//!
//! - Files: `*.json`, `*.yaml`, `*.yml` directly in each directory, read in name order. A spec
//!   names its `kind` (`vendor/class`) and devices; `vendor/class=name` is the device `name` of
//!   a spec of that kind. A later directory wins over an earlier one (the spec's priority
//!   rule); the same name twice in one directory is an error naming both files.
//! - A spec file is trusted like a manifest (its hooks run as root on the host): it must pass
//!   the manifest permission rule ([`perms::check_file`]), else the device that needs it fails.
//! - Applied, for each device named: the spec's own `containerEdits`, then the device's
//!   (`env`, `deviceNodes`, `mounts`, `hooks`, `additionalGIDs`). A device node takes its type
//!   and numbers from the host node (`hostPath`, default `path`) when the spec leaves them out,
//!   and is allowed by the device cgroup with its `permissions` (default `rwm`). A mount
//!   without a type is a bind (`rbind` added when the options name no bind). Env entries
//!   replace variables of the same name. Unknown fields are ignored (newer spec versions).
//! - Not supported: `intelRdt` and `netDevices` edits (a device that uses them fails).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Hook, HookBuilder, Hooks, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceType, MountBuilder,
    Spec,
};
use serde::Deserialize;

use crate::manifest::source::perms;

/// The CDI directories when the config names none.
pub const DEFAULT_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdiSpec {
    kind: String,
    #[serde(default)]
    devices: Vec<CdiDevice>,
    #[serde(default)]
    container_edits: Edits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdiDevice {
    name: String,
    #[serde(default)]
    container_edits: Edits,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Edits {
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    device_nodes: Vec<DeviceNode>,
    #[serde(default)]
    mounts: Vec<CdiMount>,
    #[serde(default)]
    hooks: Vec<CdiHook>,
    #[serde(default, rename = "additionalGIDs")]
    additional_gids: Vec<u32>,
    #[serde(default)]
    intel_rdt: Option<serde_json::Value>,
    #[serde(default)]
    net_devices: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceNode {
    path: String,
    host_path: Option<String>,
    #[serde(rename = "type")]
    typ: Option<String>,
    major: Option<i64>,
    minor: Option<i64>,
    file_mode: Option<u32>,
    permissions: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdiMount {
    host_path: String,
    container_path: String,
    #[serde(default)]
    options: Vec<String>,
    #[serde(rename = "type")]
    typ: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdiHook {
    hook_name: String,
    path: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    timeout: Option<i64>,
}

/// Where a device was found: its edits and the spec's, and the file.
#[derive(Debug, Clone)]
struct Found {
    file: PathBuf,
    spec_edits: Edits,
    device: CdiDevice,
}

fn read_spec(path: &Path) -> Result<CdiSpec, String> {
    perms::check_file(path).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_saphyr::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| format!("CDI spec {}: {e}", path.display()))
}

/// Every device of the spec files in `dirs`, by `vendor/class=name`. Files that cannot be read
/// are reported only when a device is looked up in them (their kind cannot be known): the
/// returned list of problems goes into the error for a name that is not found.
fn registry(dirs: &[PathBuf]) -> Result<(BTreeMap<String, Found>, Vec<String>), String> {
    let mut out: BTreeMap<String, Found> = BTreeMap::new();
    let mut problems = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "json" || e == "yaml" || e == "yml")
            })
            .collect();
        files.sort();
        let mut here: BTreeMap<String, PathBuf> = BTreeMap::new();
        for file in files {
            let spec = match read_spec(&file) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            for device in spec.devices {
                let key = format!("{}={}", spec.kind, device.name);
                if let Some(other) = here.insert(key.clone(), file.clone()) {
                    return Err(format!(
                        "CDI device {key} is defined twice in {}: {} and {}",
                        dir.display(),
                        other.display(),
                        file.display()
                    ));
                }
                out.insert(
                    key,
                    Found {
                        file: file.clone(),
                        spec_edits: spec.container_edits.clone(),
                        device,
                    },
                );
            }
        }
    }
    Ok((out, problems))
}

/// Resolves `names` in `dirs` and applies their edits to `oci`; returns the device cgroup allow
/// rules of their device nodes. Errors name the device (and the file).
pub fn apply(
    names: &[String],
    dirs: &[PathBuf],
    oci: &mut Spec,
) -> Result<Vec<LinuxDeviceCgroup>, String> {
    let (known, problems) = registry(dirs)?;
    let mut rules = Vec::new();
    let mut applied_spec_edits: Vec<PathBuf> = Vec::new();
    for name in names {
        let Some(found) = known.get(name) else {
            let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            let mut msg = format!(
                "CDI device {name} is not defined in any spec file of {}",
                dirs.join(", ")
            );
            if !problems.is_empty() {
                msg.push_str(&format!(" (unreadable: {})", problems.join("; ")));
            }
            return Err(msg);
        };
        let at = |e: String| format!("CDI device {name} ({}): {e}", found.file.display());
        if !applied_spec_edits.contains(&found.file) {
            applied_spec_edits.push(found.file.clone());
            edit(oci, &found.spec_edits, &mut rules).map_err(at)?;
        }
        edit(oci, &found.device.container_edits, &mut rules).map_err(at)?;
    }
    Ok(rules)
}

fn edit(oci: &mut Spec, e: &Edits, rules: &mut Vec<LinuxDeviceCgroup>) -> Result<(), String> {
    if e.intel_rdt.is_some() || e.net_devices.is_some() {
        return Err("intelRdt and netDevices edits are not supported".into());
    }
    if let Some(p) = oci.process_mut() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &e.env {
            let key = kv.split('=').next().unwrap_or(kv);
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
        if !e.additional_gids.is_empty() {
            let mut user = p.user().clone();
            let mut gids = user.additional_gids().clone().unwrap_or_default();
            gids.extend(e.additional_gids.iter().copied());
            user.set_additional_gids(Some(gids));
            p.set_user(user);
        }
    }
    for n in &e.device_nodes {
        if !n.path.starts_with('/') {
            return Err(format!("device node path {} is not absolute", n.path));
        }
        let host = PathBuf::from(n.host_path.as_deref().unwrap_or(&n.path));
        let (typ, major, minor, mode, uid, gid) = match (n.typ.as_deref(), n.major, n.minor) {
            (Some(t), Some(ma), Some(mi)) => {
                let typ = match t {
                    "b" => LinuxDeviceType::B,
                    "c" | "u" => LinuxDeviceType::C,
                    other => return Err(format!("device node {}: type {other:?}", n.path)),
                };
                (typ, ma, mi, n.file_mode.unwrap_or(0o666), n.uid, n.gid)
            }
            _ => {
                let d = super::devices::node(&host, &n.path)?;
                (
                    d.typ(),
                    d.major(),
                    d.minor(),
                    n.file_mode.or(d.file_mode()).unwrap_or(0o666),
                    n.uid.or(d.uid()),
                    n.gid.or(d.gid()),
                )
            }
        };
        let mut b = LinuxDeviceBuilder::default()
            .path(&n.path)
            .typ(typ)
            .major(major)
            .minor(minor)
            .file_mode(mode);
        if let Some(u) = uid {
            b = b.uid(u);
        }
        if let Some(g) = gid {
            b = b.gid(g);
        }
        let dev = b.build().map_err(|e| e.to_string())?;
        let access = n.permissions.clone().unwrap_or_else(|| "rwm".into());
        if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
            return Err(format!("device node {}: permissions {access:?}", n.path));
        }
        rules.push(
            super::devices::allow(typ, Some(major), Some(minor), &access)
                .map_err(|e| e.to_string())?,
        );
        if let Some(linux) = oci.linux_mut() {
            let mut devs = linux.devices().clone().unwrap_or_default();
            devs.retain(|d| d.path() != dev.path());
            devs.push(dev);
            linux.set_devices(Some(devs));
        }
    }
    if !e.mounts.is_empty() {
        let mut mounts = oci.mounts().clone().unwrap_or_default();
        for m in &e.mounts {
            if !m.container_path.starts_with('/') {
                return Err(format!("mount path {} is not absolute", m.container_path));
            }
            let typ = m.typ.clone().unwrap_or_else(|| "bind".into());
            let mut options = m.options.clone();
            if typ == "bind" && !options.iter().any(|o| o == "bind" || o == "rbind") {
                options.push("rbind".into());
            }
            mounts.retain(|x| x.destination().as_path() != Path::new(&m.container_path));
            mounts.push(
                MountBuilder::default()
                    .destination(&m.container_path)
                    .typ(typ)
                    .source(&m.host_path)
                    .options(options)
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        oci.set_mounts(Some(mounts));
    }
    if !e.hooks.is_empty() {
        let mut hooks: Hooks = oci.hooks().clone().unwrap_or_default();
        for h in &e.hooks {
            let mut b = HookBuilder::default().path(&h.path);
            if !h.args.is_empty() {
                b = b.args(h.args.clone());
            }
            if !h.env.is_empty() {
                b = b.env(h.env.clone());
            }
            if let Some(t) = h.timeout {
                b = b.timeout(t);
            }
            let hook: Hook = b.build().map_err(|e| e.to_string())?;
            let push = |list: &Option<Vec<Hook>>| {
                let mut l = list.clone().unwrap_or_default();
                l.push(hook.clone());
                Some(l)
            };
            match h.hook_name.as_str() {
                "prestart" => {
                    #[allow(deprecated)]
                    let l = push(hooks.prestart());
                    #[allow(deprecated)]
                    hooks.set_prestart(l);
                }
                "createRuntime" => {
                    let l = push(hooks.create_runtime());
                    hooks.set_create_runtime(l);
                }
                "createContainer" => {
                    let l = push(hooks.create_container());
                    hooks.set_create_container(l);
                }
                "startContainer" => {
                    let l = push(hooks.start_container());
                    hooks.set_start_container(l);
                }
                "poststart" => {
                    let l = push(hooks.poststart());
                    hooks.set_poststart(l);
                }
                "poststop" => {
                    let l = push(hooks.poststop());
                    hooks.set_poststop(l);
                }
                other => return Err(format!("unknown hook {other:?}")),
            }
        }
        oci.set_hooks(Some(hooks));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_specs_resolve_and_later_dirs_win() {
        use std::os::unix::fs::PermissionsExt;
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(
            a.path().join("x.yaml"),
            "cdiVersion: 0.6.0\nkind: example.com/x\ncontainerEdits:\n  env: [FROM_SPEC=1]\ndevices:\n  - name: one\n    containerEdits:\n      env: [WHO=a]\n",
        )
        .unwrap();
        std::fs::write(
            b.path().join("x.json"),
            r#"{"cdiVersion":"0.6.0","kind":"example.com/x","devices":[{"name":"one","containerEdits":{"env":["WHO=b"],"deviceNodes":[{"path":"/dev/n","type":"c","major":1,"minor":3,"permissions":"rw"}]}}]}"#,
        )
        .unwrap();
        let mut oci = Spec::default();
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        let rules = apply(&["example.com/x=one".into()], &dirs, &mut oci).unwrap();
        let env = oci.process().as_ref().unwrap().env().clone().unwrap();
        assert!(env.contains(&"WHO=b".to_string()), "{env:?}");
        assert_eq!(rules.len(), 1);
        let e = apply(&["example.com/x=two".into()], &dirs, &mut oci).unwrap_err();
        assert!(
            e.contains("CDI device example.com/x=two is not defined"),
            "{e}"
        );
    }
}
