//! One reading of what the metrics and `agent stats` show: every recorded container with its
//! cgroup usage and network counters, the manifest files by status, the store's size and the
//! agent process.
//!
//! Two steps, so that no file under `/sys` is read while the store is locked: [`records`]
//! reads the store (one transaction), [`read`] reads the cgroup and network files of the
//! containers that run. A container's cgroup is the `cgroupsPath` its exec driver recorded in
//! `<state>/exec/<id>/state.json` at create; its network counters are those of its host-side
//! veth (`/sys/class/net/<veth>/statistics`), swapped: what the host end receives, the
//! container sent.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::driver::exec::cgroups::{self, CgroupVersion, Usage};
use crate::store::Tx;

/// Bytes and packets through a container's interfaces, as the container sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetUsage {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// One container at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSample {
    pub name: String,
    /// The runtime id.
    pub id: String,
    /// The image key (as the manifest names it).
    pub image: String,
    /// The state the store records (`running`, `exited`, ...).
    pub state: String,
    pub labels: BTreeMap<String, String>,
    /// Unix milliseconds of the last start.
    pub started_at: Option<i64>,
    pub restarts: u32,
    /// The cgroup's numbers; `None` when the container does not run (or its cgroup is gone).
    pub usage: Option<Usage>,
    /// `None`: no veth (host or none network mode, or not running).
    pub net: Option<NetUsage>,
    /// The host veths the counters come from (not sent: internal).
    #[serde(skip)]
    pub veths: Vec<String>,
}

/// The agent process's own use (`/proc/self`).
pub use super::process::Process;

/// Everything one scrape shows besides the agent's counters.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub containers: Vec<ContainerSample>,
    pub files_ok: u64,
    pub files_error: u64,
    pub store_bytes: u64,
    pub process: Process,
}

/// What `agent stats` gets: the samples and when they were taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// Unix nanoseconds when the reading started.
    pub time_ns: u128,
    /// Online CPUs of the host (100% CPU is one of them, as in `docker stats`).
    pub cpus: u32,
    /// The host's memory (`MemTotal`), shown as the limit of unlimited containers.
    pub host_memory: Option<u64>,
    pub containers: Vec<ContainerSample>,
}

/// The store's part of a reading: the containers (no usage yet) and the files by status.
pub fn records(tx: &Tx<'_>) -> crate::store::Result<(Vec<ContainerSample>, u64, u64)> {
    let veths: BTreeMap<String, Vec<String>> = tx
        .network_attachments()?
        .into_iter()
        .map(|a| {
            let names = a
                .record
                .get("endpoints")
                .and_then(|e| e.as_array())
                .map(|eps| {
                    eps.iter()
                        .filter_map(|e| e.get("host_veth").and_then(|v| v.as_str()))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            (a.container_id, names)
        })
        .collect();
    let containers = tx
        .containers()?
        .into_iter()
        .map(|c| {
            let labels = c
                .config
                .pointer("/live/labels")
                .or_else(|| c.config.pointer("/fixed/labels"))
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            let image = c
                .config
                .pointer("/image/key")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_string();
            let state = serde_json::to_value(c.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            ContainerSample {
                veths: veths.get(&c.id).cloned().unwrap_or_default(),
                name: c.name,
                id: c.id,
                image,
                state,
                labels,
                started_at: c.started_at,
                restarts: c.restart_count,
                usage: None,
                net: None,
            }
        })
        .collect();
    let (mut ok, mut err) = (0, 0);
    for f in tx.manifest_files()? {
        if f.last_error.is_some() {
            err += 1;
        } else {
            ok += 1;
        }
    }
    Ok((containers, ok, err))
}

/// Fills in the usage and network counters of the running containers in `containers`.
pub fn read(state_dir: &Path, containers: &mut [ContainerSample]) {
    let version = cgroups::version();
    for c in containers.iter_mut().filter(|c| c.state == "running") {
        c.usage = cgroups_path(state_dir, &c.id).map(|p| cgroups::usage(version, &p));
        if !c.veths.is_empty() {
            let mut n = NetUsage::default();
            for v in &c.veths {
                let s = Path::new("/sys/class/net").join(v).join("statistics");
                let get = |f: &str| read_u64(&s.join(f)).unwrap_or(0);
                // The host end's receive is the container's transmit.
                n.tx_bytes += get("rx_bytes");
                n.rx_bytes += get("tx_bytes");
                n.tx_packets += get("rx_packets");
                n.rx_packets += get("tx_packets");
            }
            c.net = Some(n);
        }
    }
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// The cgroups path the exec driver recorded for container `id`.
pub fn cgroups_path(state_dir: &Path, id: &str) -> Option<String> {
    crate::driver::exec::paths::check_id(id).ok()?;
    let dir = crate::driver::exec::paths::container_dir(state_dir, id);
    match crate::driver::exec::state::ContainerState::load(&dir) {
        Ok(Some(st)) if st.cgroups_path.is_some() => st.cgroups_path,
        _ => crate::driver::exec::paths::cgroups_path_of(&dir).ok(),
    }
}

/// The size of the store's files (`state.db`, `-wal`, `-shm`).
pub fn store_bytes(state_dir: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            std::fs::metadata(state_dir.join(format!("{}{suffix}", crate::store::DB_FILE))).ok()
        })
        .map(|m| m.len())
        .sum()
}

/// The whole reading for `agent stats`.
pub fn stats_report(state_dir: &Path, mut containers: Vec<ContainerSample>) -> StatsReport {
    let time_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    read(state_dir, &mut containers);
    StatsReport {
        time_ns,
        cpus: std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(1))
            .unwrap_or(1),
        host_memory: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kb| kb * 1024),
        containers,
    }
}

/// The whole reading for a scrape.
pub fn scrape(state_dir: &Path, records: (Vec<ContainerSample>, u64, u64)) -> Scrape {
    let (mut containers, files_ok, files_error) = records;
    read(state_dir, &mut containers);
    Scrape {
        containers,
        files_ok,
        files_error,
        store_bytes: store_bytes(state_dir),
        process: super::process::read(),
    }
}

/// Whether the host's cgroup layout is v2 (for docs and tests).
pub fn cgroup_version() -> CgroupVersion {
    cgroups::version()
}
