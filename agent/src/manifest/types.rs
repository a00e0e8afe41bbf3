//! The documents: `apiVersion: agent/v1`, `kind` (Image, Volume, Network, Container, Secret),
//! `metadata`,
//! `spec`. Field names are camelCase in YAML. Every struct refuses unknown fields.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::container::*;
pub use super::net::Ipv4Cidr;

/// The only API version this agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    #[default]
    #[serde(rename = "agent/v1")]
    V1,
}

/// The kinds of document.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Kind {
    Image,
    Volume,
    Network,
    Container,
    /// Not an object the agent creates: a value its containers read (see [`SecretManifest`]).
    Secret,
}

impl Kind {
    /// Every kind the agent creates, in the order it creates them (secrets are read, not
    /// created).
    pub const ALL: [Kind; 4] = [Kind::Image, Kind::Volume, Kind::Network, Kind::Container];

    /// The name as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "Image",
            Kind::Volume => "Volume",
            Kind::Network => "Network",
            Kind::Container => "Container",
            Kind::Secret => "Secret",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Name and labels of an object. The name is a DNS label (lowercase letters, digits and `-`, 1 to
/// 63 characters, starting and ending with a letter or digit) and is unique per kind across all
/// files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// The object's name: a DNS label, unique per kind across all manifest files.
    pub name: String,
    /// Free-form labels, passed on to containers as OCI annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// One document of any kind, as written in a file. In YAML `kind:` selects the variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind")]
// Containers are much larger than the other kinds; there are few objects, and boxing would make
// every match on a container clumsier for the planner.
#[allow(clippy::large_enum_variant)]
pub enum Manifest {
    Image(ImageManifest),
    Volume(VolumeManifest),
    Network(NetworkManifest),
    Container(ContainerManifest),
    Secret(SecretManifest),
}

impl Manifest {
    /// The document's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Manifest::Image(_) => Kind::Image,
            Manifest::Volume(_) => Kind::Volume,
            Manifest::Network(_) => Kind::Network,
            Manifest::Container(_) => Kind::Container,
            Manifest::Secret(_) => Kind::Secret,
        }
    }

    /// The document's metadata.
    pub fn metadata(&self) -> &Metadata {
        match self {
            Manifest::Image(m) => &m.metadata,
            Manifest::Volume(m) => &m.metadata,
            Manifest::Network(m) => &m.metadata,
            Manifest::Container(m) => &m.metadata,
            Manifest::Secret(m) => &m.metadata,
        }
    }

    /// The object's name (`metadata.name`).
    pub fn name(&self) -> &str {
        &self.metadata().name
    }
}

/// `kind: Image`: where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageManifest {
    pub api_version: ApiVersion,
    pub metadata: Metadata,
    pub spec: ImageSpec,
}

/// `kind: Volume`: a named volume the agent creates under its state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeManifest {
    pub api_version: ApiVersion,
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: VolumeSpec,
}

/// `kind: Network`: a bridge network the agent owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkManifest {
    pub api_version: ApiVersion,
    pub metadata: Metadata,
    pub spec: NetworkSpec,
}

/// `kind: Container`: one container the agent keeps running as described.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerManifest {
    pub api_version: ApiVersion,
    pub metadata: Metadata,
    pub spec: ContainerSpec,
}

/// `kind: Secret`: a value kept in a file on the host that only root can read, given to
/// containers as a read-only file (`spec.secrets`) or an environment variable
/// (`spec.secretEnv`). The value never enters a manifest, the store, the plan, the logs, the
/// events or `agent inspect`: what they hold is [`SecretManifest::digest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretManifest {
    pub api_version: ApiVersion,
    pub metadata: Metadata,
    pub spec: SecretSpec,
    /// Keyed SHA-256 of the value (`sha256:` + hex), filled by the intake
    /// ([`super::source::secrets::seal`]): a change of the value changes it, and with it the
    /// config hash of every container that uses the secret. Kept with the store's copy of the
    /// manifest (a file that later fails keeps its last digest in force); refused in a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub digest: Option<String>,
}

/// Where a secret's value is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    /// Absolute path of the file holding the value (at most 1 MiB, taken byte for byte). It must
    /// be owned by root and give group and others no access (`chown root:root F && chmod 600
    /// F`), in a directory only root may change; anything else is refused.
    pub file: PathBuf,
}

/// Where an image comes from: exactly one of the four sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ImageSpec {
    /// Pull from a registry: `host[:port]/repo[:tag][@sha256:...]`. A tag is resolved to a digest
    /// when pulled; a digest pins the image.
    Registry(RegistrySource),
    /// Import an OCI image layout: a directory or a tar of one.
    OciLayout(ArchiveSource),
    /// Import a `docker save` archive.
    DockerArchive(ArchiveSource),
    /// Import a root filesystem tarball as a one-layer image without config (`docker import`).
    RootfsTar(RootfsSource),
}

/// A registry image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrySource {
    /// `host[:port]/repo[:tag][@sha256:<64 hex>]`, e.g. `127.0.0.1:5000/busybox:1.36`.
    pub reference: String,
    /// Talk plain HTTP to the registry (only sensible for a registry on 127.0.0.1).
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure: bool,
}

/// An image archive on the host (OCI layout or `docker save`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArchiveSource {
    /// Absolute path of the archive (or OCI layout directory).
    pub path: PathBuf,
    /// Which image of the archive to use (`name:tag` or the OCI `ref.name` annotation) when it
    /// holds more than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// A root filesystem tarball.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RootfsSource {
    /// Absolute path of the tarball (plain, gzip or zstd).
    pub path: PathBuf,
}

impl ImageSpec {
    /// The host path this image is imported from, if it is not a registry image.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            ImageSpec::Registry(_) => None,
            ImageSpec::OciLayout(a) | ImageSpec::DockerArchive(a) => Some(&a.path),
            ImageSpec::RootfsTar(r) => Some(&r.path),
        }
    }
}

/// What happens to a volume's data when its manifest is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Reclaim {
    /// Keep the data (default): removing the manifest never deletes data.
    #[default]
    Retain,
    /// Delete the data when the manifest is removed.
    Delete,
}

/// A named volume.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeSpec {
    /// `retain` (default) or `delete`.
    #[serde(default)]
    pub reclaim: Reclaim,
}

/// A bridge network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    /// IPv4 subnet in CIDR form, e.g. `10.214.7.0/24`; prefix between /8 and /30, no host bits.
    pub subnet: Ipv4Cidr,
    /// Gateway address (the bridge's own address); default the first host of the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Linux bridge name (at most 15 characters); default `agent-<network name>` cut to 15.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// MTU of the bridge and the containers' interfaces (68-65535); default 1500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Inter-container communication on this bridge (Docker's `icc`); default true.
    #[serde(default = "yes")]
    pub icc: bool,
}

pub(crate) fn yes() -> bool {
    true
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}
