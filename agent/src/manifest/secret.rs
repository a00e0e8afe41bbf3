//! How a container uses a `kind: Secret` ([`super::types::SecretManifest`]): `spec.secrets`
//! mounts it as a read-only file, Compose's long syntax
//! (`{source: db-password, target: /run/secrets/db, uid: 70, gid: 70, mode: "0440"}`) or short
//! form (`db-password`: at `/run/secrets/db-password`, owner root, mode 0444); `spec.secretEnv`
//! feeds a value to an environment variable (`{DB_PASSWORD: db-password}`).

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Where secrets are mounted when no `target` is given (Docker's and Compose's place).
pub const SECRETS_DIR: &str = "/run/secrets";
/// The mode of a secret file when none is given (Compose's default).
pub const DEFAULT_SECRET_MODE: u32 = 0o444;

/// One secret mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The name of a Secret manifest.
    pub source: String,
    /// Absolute path in the container; default `/run/secrets/<source>`. A relative path is
    /// taken below `/run/secrets` (as Compose does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<PathBuf>,
    /// Owner of the file in the container; default 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group of the file in the container; default 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Permission bits of the file in the container; default 0444.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<SecretMode>,
}

impl SecretRef {
    /// The path in the container: `target`, below `/run/secrets` when relative, else
    /// `/run/secrets/<source>`.
    pub fn effective_target(&self) -> PathBuf {
        match &self.target {
            Some(t) if t.is_absolute() => t.clone(),
            Some(t) => PathBuf::from(SECRETS_DIR).join(t),
            None => PathBuf::from(SECRETS_DIR).join(&self.source),
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "SecretRefLong")]
struct SecretRefLong {
    /// The name of a Secret manifest.
    source: String,
    /// Path in the container (absolute, or relative to /run/secrets); default
    /// /run/secrets/<source>.
    target: Option<PathBuf>,
    /// Owner uid of the file in the container; default 0.
    uid: Option<u32>,
    /// Group gid of the file in the container; default 0.
    gid: Option<u32>,
    /// Permission bits in octal, as a string ("0440") or the digits of an integer (440);
    /// default 0444.
    mode: Option<SecretMode>,
}

const SECRET_HELP: &str =
    "a secret is the name of a Secret manifest, or {source: NAME, target: PATH, uid, gid, mode}";

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::container::str_or_map(
            d,
            SECRET_HELP,
            |s| {
                Ok(SecretRef {
                    source: s.to_string(),
                    target: None,
                    uid: None,
                    gid: None,
                    mode: None,
                })
            },
            |l: SecretRefLong| {
                Ok(SecretRef {
                    source: l.source,
                    target: l.target,
                    uid: l.uid,
                    gid: l.gid,
                    mode: l.mode,
                })
            },
        )
    }
}

impl JsonSchema for SecretRef {
    fn schema_name() -> Cow<'static, str> {
        "SecretRef".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        super::container::str_or_obj_schema::<SecretRefLong>(
            generator,
            "The name of a Secret manifest, mounted at /run/secrets/NAME.",
            Some("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        )
    }
}

/// File permission bits written in octal: `"0440"`, `"440"`, or the integer `440` (its decimal
/// digits read as octal, so that `0440` means the same in YAML 1.1 and 1.2). At most 0777.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretMode(pub u32);

impl std::str::FromStr for SecretMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        match u32::from_str_radix(digits, 8) {
            Ok(m) if !digits.is_empty() && m <= 0o777 => Ok(SecretMode(m)),
            _ => Err(format!(
                "invalid mode {s:?}: octal permission bits 0000-0777, e.g. \"0440\""
            )),
        }
    }
}

impl fmt::Display for SecretMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for SecretMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SecretMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SecretMode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("octal permission bits such as \"0440\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SecretMode, E> {
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SecretMode, E> {
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretMode, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for SecretMode {
    fn schema_name() -> Cow<'static, str> {
        "SecretMode".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Octal permission bits: \"0440\", or an integer whose digits are octal (440).",
            "anyOf": [
                {"type": "string", "pattern": "^(0o)?[0-7]{1,4}$"},
                {"type": "integer", "minimum": 0, "maximum": 777}
            ]
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal() {
        assert_eq!("0440".parse::<SecretMode>().unwrap().0, 0o440);
        assert_eq!("0o400".parse::<SecretMode>().unwrap().0, 0o400);
        assert!("0888".parse::<SecretMode>().is_err());
        assert!("1777".parse::<SecretMode>().is_err());
        assert!("".parse::<SecretMode>().is_err());
        assert_eq!(SecretMode(0o440).to_string(), "0440");
    }

    #[test]
    fn targets() {
        let mut r = SecretRef {
            source: "db".into(),
            target: None,
            uid: None,
            gid: None,
            mode: None,
        };
        assert_eq!(r.effective_target(), PathBuf::from("/run/secrets/db"));
        r.target = Some("pw".into());
        assert_eq!(r.effective_target(), PathBuf::from("/run/secrets/pw"));
        r.target = Some("/etc/pw".into());
        assert_eq!(r.effective_target(), PathBuf::from("/etc/pw"));
    }
}
