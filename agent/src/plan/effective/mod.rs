//! Canonical effective configs: what a manifest means once defaults are filled in, order-free
//! fields are sorted and deduplicated, equivalent spellings are made equal and the image tag is
//! replaced by the digest it resolved to. Two configs that mean the same thing are equal values
//! with equal hashes; that hash is what decides "changed".
//!
//! # Images and their keys
//!
//! Every image has a *key*, the canonical spelling of where it comes from
//! ([`ImageSource::key`]):
//!
//! | source                  | key                                          |
//! |-------------------------|----------------------------------------------|
//! | registry reference      | the reference with `:latest` added when it has no tag or digest, Docker Hub names shortened (`busybox:latest`, `127.0.0.1:5000/web:1.4`) |
//! | OCI layout              | `oci-layout:/abs/path` or `oci-layout:/abs/path#tag` |
//! | `docker save` archive   | `docker-archive:/abs/path` or `docker-archive:/abs/path#tag` |
//! | root filesystem tarball | `rootfs-tar:/abs/path`                        |
//!
//! **Contract for the daemon:** the store's `images.reference` column holds this key, and
//! `images.digest` the digest the fetch produced; [`super::Actual`] reads the resolutions from
//! there. Changing an Image manifest's source changes its key, so the new source is fetched.
//! A tag is resolved once (when fetched) and stays pinned until the image is fetched again
//! (`agent image pull`), which records a new digest; the next plan then recreates its users.
//!
//! A container's `image` names an Image manifest if one of that name exists, and is otherwise a
//! registry reference. The container's effective config holds the image key (for display; not
//! hashed) and the resolved digest (hashed): moving the same image from an archive to a registry
//! does not recreate anything as long as the digest stays.

mod container;
pub mod device;
pub mod secret;

pub use container::*;

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::hash::{ConfigHash, Hasher};
use crate::manifest::{
    ImageManifest, ImageSpec, Ipv4Cidr, NetworkManifest, Reclaim, VolumeManifest,
};

/// Where an image comes from, canonical.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum ImageSource {
    /// A registry pull; `reference` normalised (see the module docs).
    Registry {
        reference: String,
        insecure: bool,
    },
    OciLayout {
        path: PathBuf,
        tag: Option<String>,
    },
    DockerArchive {
        path: PathBuf,
        tag: Option<String>,
    },
    RootfsTar {
        path: PathBuf,
    },
}

impl ImageSource {
    /// A registry reference as a container's `image` may name it directly.
    pub fn registry(reference: &str) -> ImageSource {
        ImageSource::Registry {
            reference: normalize_reference(reference),
            insecure: false,
        }
    }

    /// The source of an Image manifest.
    pub fn from_spec(spec: &ImageSpec) -> ImageSource {
        match spec {
            ImageSpec::Registry(r) => ImageSource::Registry {
                reference: normalize_reference(&r.reference),
                insecure: r.insecure,
            },
            ImageSpec::OciLayout(a) => ImageSource::OciLayout {
                path: normalize_path(&a.path),
                tag: a.tag.clone(),
            },
            ImageSpec::DockerArchive(a) => ImageSource::DockerArchive {
                path: normalize_path(&a.path),
                tag: a.tag.clone(),
            },
            ImageSpec::RootfsTar(r) => ImageSource::RootfsTar {
                path: normalize_path(&r.path),
            },
        }
    }

    /// The image key (see the module docs).
    pub fn key(&self) -> String {
        fn with_tag(prefix: &str, path: &Path, tag: &Option<String>) -> String {
            match tag {
                Some(t) => format!("{prefix}:{}#{t}", path.display()),
                None => format!("{prefix}:{}", path.display()),
            }
        }
        match self {
            ImageSource::Registry { reference, .. } => reference.clone(),
            ImageSource::OciLayout { path, tag } => with_tag("oci-layout", path, tag),
            ImageSource::DockerArchive { path, tag } => with_tag("docker-archive", path, tag),
            ImageSource::RootfsTar { path } => format!("rootfs-tar:{}", path.display()),
        }
    }

    /// Whether fetching this image is a registry pull (else an import from a host path).
    pub fn is_registry(&self) -> bool {
        matches!(self, ImageSource::Registry { .. })
    }
}

/// `busybox` -> `busybox:latest`, `docker.io/library/busybox:1` -> `busybox:1`. A reference the
/// graph driver would refuse is kept as written (validation reports it; the pull fails with the
/// driver's error).
pub fn normalize_reference(reference: &str) -> String {
    crate::driver::graph::reference::normalize(reference.trim())
        .unwrap_or_else(|_| reference.trim().to_string())
}

/// A path without `.` components, repeated or trailing slashes (`/data/./x/` -> `/data/x`).
/// `..` is kept: resolving it would need the file system.
pub fn normalize_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// An image the desired state needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveImage {
    /// The image key.
    pub key: String,
    /// Image manifest names that declare this source (empty for a reference used directly by
    /// a container).
    pub names: Vec<String>,
    pub source: ImageSource,
}

impl EffectiveImage {
    pub fn from_manifest(m: &ImageManifest) -> EffectiveImage {
        let source = ImageSource::from_spec(&m.spec);
        EffectiveImage {
            key: source.key(),
            names: vec![m.metadata.name.clone()],
            source,
        }
    }
}

/// A named volume. Changes to it are updated in place (they are bookkeeping: the data stays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveVolume {
    pub name: String,
    pub reclaim: Reclaim,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

impl EffectiveVolume {
    pub fn from_manifest(m: &VolumeManifest) -> EffectiveVolume {
        EffectiveVolume {
            name: m.metadata.name.clone(),
            reclaim: m.spec.reclaim,
            labels: m.metadata.labels.clone(),
        }
    }
}

/// A bridge network with its defaults filled in. Any change recreates it (and detaches and
/// reattaches its containers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveNetwork {
    pub name: String,
    pub subnet: Ipv4Cidr,
    /// Default: the subnet's first host.
    pub gateway: IpAddr,
    /// Default: `agent-<name>` cut to 15 characters.
    pub bridge: String,
    /// Default: 1500.
    pub mtu: u32,
    pub icc: bool,
}

/// Default MTU of a network.
pub const DEFAULT_MTU: u32 = 1500;

impl EffectiveNetwork {
    pub fn from_manifest(m: &NetworkManifest) -> EffectiveNetwork {
        let s = &m.spec;
        EffectiveNetwork {
            name: m.metadata.name.clone(),
            subnet: s.subnet,
            gateway: s.gateway.unwrap_or(IpAddr::V4(s.subnet.first_host())),
            bridge: s
                .bridge
                .clone()
                .unwrap_or_else(|| default_bridge(&m.metadata.name)),
            mtu: s.mtu.unwrap_or(DEFAULT_MTU),
            icc: s.icc,
        }
    }

    /// Hash of the whole config (the name is the key and not hashed).
    pub fn hash(&self) -> ConfigHash {
        Hasher::new("agent/network/v1")
            .json(&(
                &self.subnet,
                &self.gateway,
                &self.bridge,
                self.mtu,
                self.icc,
            ))
            .finish()
    }
}

/// `agent-<name>`, cut to the 15 characters a Linux interface name may have.
pub fn default_bridge(name: &str) -> String {
    let mut b = format!("agent-{name}");
    b.truncate(15);
    b
}

#[cfg(test)]
mod tests;
