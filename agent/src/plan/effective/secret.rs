//! The secrets of a container, canonical: where each is mounted, which variables take a value,
//! and for every secret used where its value is kept and the keyed digest of that value
//! ([`crate::manifest::source::secrets`]). All are fixed fields: a new value recreates the
//! containers using it (the plan says `secret db-password changed`). The agent does not
//! rewrite the file under a running container: a process that read it at start would keep the
//! old value, and an env variable cannot change at all, so a new container is the one behaviour
//! that holds for both.
//!
//! Values never appear here: only the digest, which is keyed with the host's secret key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::normalize_path;
use crate::manifest::ContainerSpec;
use crate::manifest::secret::DEFAULT_SECRET_MODE;

/// A container's secrets. Empty fields are left out of the stored config, so that containers
/// without secrets keep the hash they had before secrets existed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EffectiveSecrets {
    /// File mounts, sorted by target.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretMount>,
    /// Variable -> secret name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    /// Every secret used: name -> its file and the digest of its value.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_values: BTreeMap<String, SecretValue>,
}

/// One secret mounted as a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SecretMount {
    pub target: PathBuf,
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl std::fmt::Display for SecretMount {
    /// `db-password:/run/secrets/db-password(0:0 0444)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}({}:{} {:04o})",
            self.name,
            self.target.display(),
            self.uid,
            self.gid,
            self.mode
        )
    }
}

/// Where a secret's value is and its digest (`None`: not read, e.g. from the last good version
/// of a manifest file that now fails).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SecretValue {
    pub file: PathBuf,
    pub digest: Option<String>,
}

impl EffectiveSecrets {
    /// The mounts and variables of a container spec; [`Self::secret_values`] holds each name
    /// used, to be filled by [`Self::resolve`].
    pub fn from_spec(s: &ContainerSpec) -> EffectiveSecrets {
        let mut secrets: Vec<SecretMount> = s
            .secrets
            .iter()
            .map(|r| SecretMount {
                target: normalize_path(&r.effective_target()),
                name: r.source.clone(),
                uid: r.uid.unwrap_or(0),
                gid: r.gid.unwrap_or(0),
                mode: r.mode.map_or(DEFAULT_SECRET_MODE, |m| m.0),
            })
            .collect();
        secrets.sort_unstable();
        secrets.dedup();
        let secret_values = secrets
            .iter()
            .map(|m| m.name.clone())
            .chain(s.secret_env.values().cloned())
            .map(|n| (n, SecretValue::default()))
            .collect();
        EffectiveSecrets {
            secrets,
            secret_env: s.secret_env.clone(),
            secret_values,
        }
    }

    /// Fills each used secret's file and digest from `lookup` (the Secret manifests by name).
    pub fn resolve(&mut self, lookup: impl Fn(&str) -> Option<SecretValue>) {
        for (name, v) in &mut self.secret_values {
            if let Some(found) = lookup(name) {
                *v = found;
            }
        }
    }

    /// Whether the container uses no secret.
    pub fn is_empty(&self) -> bool {
        self.secret_values.is_empty()
    }
}
