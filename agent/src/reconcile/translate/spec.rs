//! The exec driver's requests from a container's effective config: the [`ContainerSpec`] of a
//! new container (with what networking wired: namespace, hosts, resolv.conf, link variables)
//! and the [`LiveUpdate`] of its live fields (cgroup limits in Docker's units: `cpus` becomes a
//! CFS quota over a 100 ms period, as `docker run --cpus` does).

use std::path::{Path, PathBuf};

use super::network::Wiring;
use crate::driver::exec::LiveUpdate;
use crate::driver::exec::spec::{self, ContainerSpec, Mount, MountSource, Rlimit};
use crate::plan::{self, EffectiveContainer};

/// Where named volume `name` keeps its data: `<state>/volumes/<name>/_data`.
pub fn volume_dir(state: &Path, name: &str) -> PathBuf {
    state.join("volumes").join(name).join("_data")
}

impl From<&plan::effective::LiveConfig> for LiveUpdate {
    fn from(live: &plan::effective::LiveConfig) -> LiveUpdate {
        let r = &live.resources;
        let mut res = spec::Resources {
            memory: r.memory.map(|b| b.0 as i64),
            memory_reservation: r.memory_reservation.map(|b| b.0 as i64),
            memory_swap: r.memory_swap.map(|m| match m {
                crate::manifest::MemorySwap::Limit(b) => b.0 as i64,
                crate::manifest::MemorySwap::Unlimited => -1,
            }),
            cpu_shares: r.cpu_shares,
            cpuset_cpus: r.cpuset.clone(),
            pids: r.pids.map(|p| p as i64),
            ..spec::Resources::default()
        };
        if let Some(n) = r.nano_cpus {
            res.cpu_period = Some(100_000);
            res.cpu_quota = Some((n / 10_000) as i64);
        }
        LiveUpdate {
            resources: res,
            stop_signal: live.stop_signal.as_ref().map(|x| x.to_string()),
            stop_grace: live.stop_grace_period.0,
        }
    }
}

/// Fills `s` (made with the runtime id, name, root filesystem and image config) from the
/// container's effective config and its network wiring; named volumes live under `state_dir`.
/// The env files' variables come from `config.fixed.env_file_vars` ([`read_env_files`] fills
/// it for a config that has none).
pub fn container_spec(
    mut s: ContainerSpec,
    config: &EffectiveContainer,
    wiring: &Wiring,
    state_dir: &Path,
) -> ContainerSpec {
    let f = &config.fixed;
    s.entrypoint = f.entrypoint.clone();
    s.command = f.command.clone();
    // The env files' variables first (a later file wins), then `env` over them.
    s.env = f
        .env_file_vars
        .as_ref()
        .map(|v| v.0.clone())
        .unwrap_or_default();
    s.env.extend(f.env.clone());
    s.workdir = f
        .working_dir
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    s.user = f.user.clone();
    s.hostname = Some(f.hostname.clone()).filter(|h| !h.is_empty());
    s.read_only = f.read_only_root_filesystem;
    s.cap_add = f.cap_add.clone();
    s.cap_drop = f.cap_drop.clone();
    s.sysctls = f.sysctls.clone();
    s.shm_size = f.shm_size;
    s.oom_score_adj = f.oom_score_adj;
    s.group_add = f.group_add.clone();
    s.init = f.init;
    s.annotations = config.live.labels.clone();
    s.network = wiring.network.clone();
    s.hosts = wiring.hosts.clone();
    s.resolv_conf = wiring.resolv_conf.clone();
    for (k, v) in &wiring.env {
        s.env.entry(k.clone()).or_insert_with(|| v.clone());
    }
    for m in &f.mounts {
        let source = match &m.source {
            plan::effective::MountSource::Volume(v) => MountSource::Volume {
                path: volume_dir(state_dir, v),
            },
            plan::effective::MountSource::Bind(p) => MountSource::Bind { path: p.clone() },
            plan::effective::MountSource::Tmpfs(size) => MountSource::Tmpfs {
                size: *size,
                mode: None,
            },
        };
        s.mounts.push(Mount {
            target: m.target.to_string_lossy().into_owned(),
            source,
            read_only: m.read_only,
        });
    }
    for (n, u) in &f.ulimits {
        s.rlimits.push(Rlimit {
            name: n.clone(),
            soft: u.soft.unwrap_or(u64::MAX),
            hard: u.hard.unwrap_or(u64::MAX),
        });
    }
    let secrets = &f.secrets;
    let file_of = |name: &str| {
        secrets
            .secret_values
            .get(name)
            .map(|v| v.file.clone())
            .unwrap_or_default()
    };
    for m in &secrets.secrets {
        s.secrets.push(spec::SecretFile {
            name: m.name.clone(),
            source: file_of(&m.name),
            target: m.target.to_string_lossy().into_owned(),
            uid: m.uid,
            gid: m.gid,
            mode: m.mode,
        });
    }
    for (var, name) in &secrets.secret_env {
        s.secret_env.insert(var.clone(), file_of(name));
    }
    devices(&mut s, &f.devices);
    let live = LiveUpdate::from(&config.live);
    s.resources = live.resources;
    s.stop_signal = live.stop_signal;
    s.stop_grace = live.stop_grace;
    s
}

/// Reads the env files of a config that carries their names but not their variables (one from
/// the store, or a last good version: the values are never serialised), from the paths intake
/// resolved. A config that has them, or has no env files, is returned as it is.
pub fn read_env_files(mut config: EffectiveContainer) -> Result<EffectiveContainer, String> {
    let f = &mut config.fixed;
    if f.env_files.is_empty() || f.env_file_vars.is_some() {
        return Ok(config);
    }
    let mut vars = std::collections::BTreeMap::new();
    for r in &f.env_files {
        if r.resolved.as_os_str().is_empty() {
            return Err(format!(
                "env file {} was never read (its manifest file did not load)",
                r.path
            ));
        }
        let d = crate::manifest::envfile::read(&r.path, &r.resolved).map_err(|e| {
            format!(
                "{}: {e}",
                crate::manifest::envfile::describe(&r.path, &r.resolved)
            )
        })?;
        vars.extend(d.vars);
    }
    f.env_file_vars = Some(plan::effective::EnvVars(vars));
    Ok(config)
}

/// `devices` (host nodes and CDI names), `deviceCgroupRules` and `privileged`.
fn devices(s: &mut ContainerSpec, d: &plan::effective::device::EffectiveDevices) {
    use crate::manifest::device::{Device, DeviceRule};
    for text in &d.devices {
        match text.parse::<Device>() {
            Ok(Device::Node {
                source,
                target,
                permissions,
            }) => s.devices.push(spec::DeviceRequest {
                target: target
                    .as_ref()
                    .unwrap_or(&source)
                    .to_string_lossy()
                    .into_owned(),
                host: source,
                access: permissions.to_string(),
            }),
            Ok(Device::Cdi(name)) => s.cdi_devices.push(name.to_string()),
            // Canonical forms written by the planner: they parse.
            Err(_) => {}
        }
    }
    for text in &d.device_cgroup_rules {
        if let Ok(r) = text.parse::<DeviceRule>() {
            s.device_rules.push(spec::DeviceRule {
                kind: r.kind,
                major: r.major,
                minor: r.minor,
                access: r.access.to_string(),
            });
        }
    }
    s.privileged = d.privileged;
}

/// The log settings of a new container: its `logging`, else the config's defaults; the journal
/// with `driver: journald` (named by the spec's name and id).
pub fn log_config(
    s: &ContainerSpec,
    config: &EffectiveContainer,
    defaults: &crate::daemon::config::ContainerLogsConfig,
) -> spec::LogConfig {
    let l = config.fixed.logging.clone().unwrap_or_default();
    spec::LogConfig {
        max_size: l.max_size.unwrap_or(defaults.max_size).0.max(1),
        max_files: l.max_files.unwrap_or(defaults.max_files).max(1),
        journald: (l.driver == Some(crate::manifest::LogDriver::Journald)).then(|| {
            spec::Journald {
                socket: defaults.journal_socket.clone(),
                container_name: s.name.clone(),
                container_id: s.id.clone(),
            }
        }),
    }
}
