//! Address and host-port management: the [`IpamStore`] trait the driver persists its state
//! through, a file-backed implementation ([`FileStore`]) and the allocation rules.
//!
//! The daemon implements [`IpamStore`] over its SQLite store; [`FileStore`] keeps the same
//! records in one JSON file (format version [`FILE_FORMAT_VERSION`]) written atomically (temporary
//! file, fsync, rename, fsync of the directory), for tools and tests that run the driver alone.
//!
//! Rules:
//! - A container keeps its address on a network for as long as its allocation is recorded
//!   (restarts, recreation under the same id); [`IpamStore::release_ips`] frees it on removal.
//! - New addresses are the lowest free host address of the subnet, skipping the gateway.
//! - A random host port is recorded under its [`PortKey`] and handed out again on the next attach;
//!   only when another process has taken it meanwhile is a new one chosen (and logged).

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::config::NetworkConfig;
use super::types::{AttachmentRecord, Protocol};

/// Version of [`FileStore`]'s JSON format. Older versions: none exist. Newer versions are refused
/// (a downgraded agent must not rewrite a file it does not understand).
pub const FILE_FORMAT_VERSION: u32 = 1;

/// A failure of the backing store, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("network state store: {0}")]
pub struct StoreError(pub String);

/// Identifies one publication of a container port, for stable random host ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortKey {
    pub container_id: String,
    pub protocol: Protocol,
    pub host_ip: Option<Ipv4Addr>,
    pub container_port: u16,
}

/// One recorded address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpAllocation {
    pub network: String,
    pub container_id: String,
    pub ip: Ipv4Addr,
}

/// One recorded random host port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortAllocation {
    pub key: PortKey,
    pub host_port: u16,
}

/// Persistent state of the network driver. Implementations must make each call durable before
/// returning; the driver serialises calls (one mutation at a time).
pub trait IpamStore: Send + Sync {
    /// Every recorded address.
    fn ips(&self) -> Result<Vec<IpAllocation>, StoreError>;
    /// Records `ip` for the container on the network (replacing an older one of that pair).
    fn record_ip(&self, alloc: &IpAllocation) -> Result<(), StoreError>;
    /// Forgets every address of the container; returns what was released.
    fn release_ips(&self, container_id: &str) -> Result<Vec<IpAllocation>, StoreError>;
    /// Every recorded random host port.
    fn host_ports(&self) -> Result<Vec<PortAllocation>, StoreError>;
    /// Records a random host port (replacing an older one of that key).
    fn record_host_port(&self, alloc: &PortAllocation) -> Result<(), StoreError>;
    /// Forgets every random host port of the container.
    fn release_host_ports(&self, container_id: &str) -> Result<(), StoreError>;
    /// Every attachment record (complete or in progress).
    fn attachments(&self) -> Result<Vec<AttachmentRecord>, StoreError>;
    /// Inserts or replaces the container's attachment record.
    fn put_attachment(&self, rec: &AttachmentRecord) -> Result<(), StoreError>;
    /// Deletes the container's attachment record (absent is fine).
    fn remove_attachment(&self, container_id: &str) -> Result<(), StoreError>;
    /// Every network the driver has set up.
    fn networks(&self) -> Result<Vec<NetworkConfig>, StoreError>;
    /// Inserts or replaces a network by name.
    fn put_network(&self, net: &NetworkConfig) -> Result<(), StoreError>;
    /// Deletes a network record (absent is fine).
    fn remove_network(&self, name: &str) -> Result<(), StoreError>;
}

/// Returns the container's address on `net`, allocating the lowest free one if it has none.
pub fn allocate_ip(
    store: &dyn IpamStore,
    net: &NetworkConfig,
    container_id: &str,
) -> Result<Ipv4Addr, super::Error> {
    let all = store.ips()?;
    let mine = all
        .iter()
        .find(|a| a.network == net.name && a.container_id == container_id);
    if let Some(a) = mine {
        if net.host_range_contains(a.ip) && a.ip != net.gateway() {
            return Ok(a.ip);
        }
        tracing::warn!(
            container = container_id,
            network = %net.name,
            old = %a.ip,
            "recorded address is outside the network's subnet now; allocating a new one"
        );
    }
    let used: HashSet<Ipv4Addr> = all
        .iter()
        .filter(|a| a.network == net.name && a.container_id != container_id)
        .map(|a| a.ip)
        .collect();
    let subnet = net.network();
    let first = u32::from(subnet.network()) + 1;
    let last = u32::from(subnet.broadcast()) - 1;
    let gw = net.gateway();
    let ip = (first..=last)
        .map(Ipv4Addr::from)
        .find(|ip| *ip != gw && !used.contains(ip))
        .ok_or_else(|| super::Error::SubnetFull {
            network: net.name.clone(),
            subnet: subnet.to_string(),
        })?;
    store.record_ip(&IpAllocation {
        network: net.name.clone(),
        container_id: container_id.to_string(),
        ip,
    })?;
    Ok(ip)
}

/// State of [`FileStore`]'s file.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Data {
    version: u32,
    #[serde(default)]
    networks: Vec<NetworkConfig>,
    #[serde(default)]
    ips: Vec<IpAllocation>,
    #[serde(default)]
    ports: Vec<PortAllocation>,
    #[serde(default)]
    attachments: Vec<AttachmentRecord>,
}

/// [`IpamStore`] in one JSON file, rewritten atomically on every change.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    data: Mutex<Data>,
}

impl FileStore {
    /// Opens (or starts) the store at `path`; its directory is created with mode 0700.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let data = match fs::read(&path) {
            Ok(bytes) => {
                let data: Data = serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError(format!("{}: invalid JSON: {e}", path.display())))?;
                if data.version > FILE_FORMAT_VERSION {
                    return Err(StoreError(format!(
                        "{}: format version {} is newer than this agent understands ({}); \
                         upgrade the agent",
                        path.display(),
                        data.version,
                        FILE_FORMAT_VERSION
                    )));
                }
                data
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Data {
                version: FILE_FORMAT_VERSION,
                ..Default::default()
            },
            Err(e) => return Err(StoreError(format!("reading {}: {e}", path.display()))),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| StoreError(format!("creating {}: {e}", dir.display())))?;
        }
        Ok(FileStore {
            path,
            data: Mutex::new(data),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<T>(&self, f: impl FnOnce(&Data) -> T) -> Result<T, StoreError> {
        let data = self
            .data
            .lock()
            .map_err(|_| StoreError("state lock poisoned".into()))?;
        Ok(f(&data))
    }

    fn update<T>(&self, f: impl FnOnce(&mut Data) -> T) -> Result<T, StoreError> {
        let mut data = self
            .data
            .lock()
            .map_err(|_| StoreError("state lock poisoned".into()))?;
        let mut next = data.clone();
        let out = f(&mut next);
        next.version = FILE_FORMAT_VERSION;
        let bytes = serde_json::to_vec_pretty(&next)
            .map_err(|e| StoreError(format!("encoding {}: {e}", self.path.display())))?;
        write_atomic(&self.path, &bytes)
            .map_err(|e| StoreError(format!("writing {}: {e}", self.path.display())))?;
        *data = next;
        Ok(out)
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new content: temporary file,
/// fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "state".to_string(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

impl IpamStore for FileStore {
    fn ips(&self) -> Result<Vec<IpAllocation>, StoreError> {
        self.read(|d| d.ips.clone())
    }

    fn record_ip(&self, alloc: &IpAllocation) -> Result<(), StoreError> {
        self.update(|d| {
            d.ips
                .retain(|a| !(a.network == alloc.network && a.container_id == alloc.container_id));
            d.ips.push(alloc.clone());
        })
    }

    fn release_ips(&self, container_id: &str) -> Result<Vec<IpAllocation>, StoreError> {
        if self.read(|d| !d.ips.iter().any(|a| a.container_id == container_id))? {
            return Ok(Vec::new());
        }
        self.update(|d| {
            let (gone, kept) = std::mem::take(&mut d.ips)
                .into_iter()
                .partition(|a| a.container_id == container_id);
            d.ips = kept;
            gone
        })
    }

    fn host_ports(&self) -> Result<Vec<PortAllocation>, StoreError> {
        self.read(|d| d.ports.clone())
    }

    fn record_host_port(&self, alloc: &PortAllocation) -> Result<(), StoreError> {
        self.update(|d| {
            d.ports.retain(|p| p.key != alloc.key);
            d.ports.push(alloc.clone());
        })
    }

    fn release_host_ports(&self, container_id: &str) -> Result<(), StoreError> {
        if self.read(|d| !d.ports.iter().any(|p| p.key.container_id == container_id))? {
            return Ok(());
        }
        self.update(|d| d.ports.retain(|p| p.key.container_id != container_id))
    }

    fn attachments(&self) -> Result<Vec<AttachmentRecord>, StoreError> {
        self.read(|d| d.attachments.clone())
    }

    fn put_attachment(&self, rec: &AttachmentRecord) -> Result<(), StoreError> {
        self.update(|d| {
            d.attachments.retain(|r| r.container_id != rec.container_id);
            d.attachments.push(rec.clone());
        })
    }

    fn remove_attachment(&self, container_id: &str) -> Result<(), StoreError> {
        if self.read(|d| !d.attachments.iter().any(|r| r.container_id == container_id))? {
            return Ok(());
        }
        self.update(|d| d.attachments.retain(|r| r.container_id != container_id))
    }

    fn networks(&self) -> Result<Vec<NetworkConfig>, StoreError> {
        self.read(|d| d.networks.clone())
    }

    fn put_network(&self, net: &NetworkConfig) -> Result<(), StoreError> {
        self.update(|d| {
            d.networks.retain(|n| n.name != net.name);
            d.networks.push(net.clone());
        })
    }

    fn remove_network(&self, name: &str) -> Result<(), StoreError> {
        if self.read(|d| !d.networks.iter().any(|n| n.name == name))? {
            return Ok(());
        }
        self.update(|d| d.networks.retain(|n| n.name != name))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::driver::network::types::NetworkMode;

    fn net(subnet: &str) -> NetworkConfig {
        NetworkConfig {
            name: "n".into(),
            bridge: "br-test".into(),
            subnet: subnet.parse().unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn addresses_are_lowest_free_stable_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("net.json")).unwrap();
        let n = net("10.5.0.0/24");
        let a = allocate_ip(&store, &n, "a").unwrap();
        let b = allocate_ip(&store, &n, "b").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 5, 0, 2), "skips network and gateway");
        assert_eq!(b, Ipv4Addr::new(10, 5, 0, 3));
        assert_eq!(allocate_ip(&store, &n, "a").unwrap(), a, "stable");
        // Survives reopening (restart of the agent).
        drop(store);
        let store = FileStore::open(dir.path().join("net.json")).unwrap();
        assert_eq!(allocate_ip(&store, &n, "b").unwrap(), b);
        let gone = store.release_ips("a").unwrap();
        assert_eq!(gone.len(), 1);
        assert!(
            store.release_ips("a").unwrap().is_empty(),
            "release twice is fine"
        );
        assert_eq!(
            allocate_ip(&store, &n, "c").unwrap(),
            a,
            "freed address reused"
        );
    }

    #[test]
    fn full_subnet_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("s.json")).unwrap();
        let n = net("10.6.0.0/30"); // hosts .1 (gateway) and .2
        allocate_ip(&store, &n, "a").unwrap();
        let e = allocate_ip(&store, &n, "b").unwrap_err().to_string();
        assert!(e.contains("10.6.0.0/30") && e.contains("full"), "{e}");
    }

    #[test]
    fn custom_gateway_is_skipped_and_moved_subnet_reallocates() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("s.json")).unwrap();
        let mut n = net("10.7.0.0/24");
        n.gateway = Some(Ipv4Addr::new(10, 7, 0, 2));
        assert_eq!(
            allocate_ip(&store, &n, "a").unwrap(),
            Ipv4Addr::new(10, 7, 0, 1)
        );
        assert_eq!(
            allocate_ip(&store, &n, "b").unwrap(),
            Ipv4Addr::new(10, 7, 0, 3)
        );
        n.subnet = "10.8.0.0/24".parse().unwrap();
        n.gateway = None;
        assert_eq!(
            allocate_ip(&store, &n, "a").unwrap(),
            Ipv4Addr::new(10, 8, 0, 2)
        );
        assert_eq!(store.ips().unwrap().len(), 2, "old allocation replaced");
    }

    #[test]
    fn ports_attachments_networks_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let store = FileStore::open(&path).unwrap();
        let key = PortKey {
            container_id: "a".into(),
            protocol: Protocol::Udp,
            host_ip: None,
            container_port: 53,
        };
        store
            .record_host_port(&PortAllocation {
                key: key.clone(),
                host_port: 40000,
            })
            .unwrap();
        store
            .record_host_port(&PortAllocation {
                key: key.clone(),
                host_port: 40001,
            })
            .unwrap();
        let rec = AttachmentRecord {
            container_id: "a".into(),
            name: "web".into(),
            mode: NetworkMode::None,
            complete: true,
            owned_netns: None,
            endpoints: vec![],
            ports: vec![],
            links: vec![],
            aliases: Default::default(),
        };
        store.put_attachment(&rec).unwrap();
        store.put_network(&net("10.9.0.0/24")).unwrap();
        let store = FileStore::open(&path).unwrap();
        assert_eq!(store.host_ports().unwrap().len(), 1);
        assert_eq!(store.host_ports().unwrap()[0].host_port, 40001);
        assert_eq!(store.attachments().unwrap(), vec![rec]);
        assert_eq!(store.networks().unwrap().len(), 1);
        store.release_host_ports("a").unwrap();
        store.remove_attachment("a").unwrap();
        store.remove_attachment("a").unwrap();
        store.remove_network("n").unwrap();
        let store = FileStore::open(&path).unwrap();
        assert!(store.host_ports().unwrap().is_empty());
        assert!(store.attachments().unwrap().is_empty());
        assert!(store.networks().unwrap().is_empty());
        let mode = std::fs::metadata(path.parent().unwrap()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn newer_format_and_garbage_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, br#"{"version": 99}"#).unwrap();
        let e = FileStore::open(&path).unwrap_err().to_string();
        assert!(e.contains("version 99") && e.contains("upgrade"), "{e}");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(
            FileStore::open(&path)
                .unwrap_err()
                .to_string()
                .contains("invalid JSON")
        );
    }
}
