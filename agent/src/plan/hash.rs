//! The config hash: SHA-256 over the canonical JSON of an effective config.
//!
//! The JSON is streamed straight into the hasher (no intermediate `String`), and every input has
//! a fixed field order (structs), sorted maps (`BTreeMap`) and sorted, deduplicated sets (done by
//! [`super::effective`]), so the same config always gives the same bytes. A domain prefix with a
//! format version separates hashes of different kinds and lets a future canonical form change
//! the hash on purpose.

use std::fmt;
use std::io::Write;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A SHA-256 config hash; shown and stored as `sha256:<64 hex>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigHash(pub [u8; 32]);

impl ConfigHash {
    /// `sha256:<64 hex>`.
    pub fn to_hex(&self) -> String {
        format!("sha256:{}", hex::encode(self.0))
    }

    /// Parses `sha256:<64 hex>` (or the bare hex).
    pub fn parse(s: &str) -> Option<ConfigHash> {
        let h = s.strip_prefix("sha256:").unwrap_or(s);
        let bytes = hex::decode(h).ok()?;
        Some(ConfigHash(bytes.try_into().ok()?))
    }
}

impl fmt::Display for ConfigHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ConfigHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConfigHash({self})")
    }
}

impl Serialize for ConfigHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConfigHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ConfigHash::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid config hash {s:?}")))
    }
}

/// Streams canonical JSON parts into one SHA-256.
pub(crate) struct Hasher(Sha256);

impl Hasher {
    /// A hasher for `domain` (e.g. `agent/container/v1`).
    pub(crate) fn new(domain: &str) -> Hasher {
        let mut h = Sha256::new();
        h.update(domain.as_bytes());
        h.update(b"\n");
        Hasher(h)
    }

    /// Adds raw bytes followed by a separator.
    pub(crate) fn bytes(mut self, b: &[u8]) -> Self {
        self.0.update(b);
        self.0.update(b"\n");
        self
    }

    /// Adds the JSON of `value` followed by a separator.
    pub(crate) fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        // Serialising plain data types into a hasher cannot fail: the writer never errors and
        // every config type serialises maps with string keys.
        if let Err(e) = serde_json::to_writer(&mut self, value) {
            // Still deterministic: hash the error text, so a bug shows as "changed", not a panic.
            self.0.update(e.to_string().as_bytes());
        }
        self.0.update(b"\n");
        self
    }

    pub(crate) fn finish(self) -> ConfigHash {
        ConfigHash(self.0.finalize().into())
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_round_trip() {
        let h = Hasher::new("t").bytes(b"x").finish();
        let s = h.to_string();
        assert!(s.starts_with("sha256:") && s.len() == 71, "{s}");
        assert_eq!(ConfigHash::parse(&s), Some(h));
        assert_eq!(ConfigHash::parse("sha256:zz"), None);
        let json = serde_json::to_string(&h).expect("json");
        assert_eq!(serde_json::from_str::<ConfigHash>(&json).ok(), Some(h));
    }

    #[test]
    fn domain_and_separators_matter() {
        let a = Hasher::new("a").bytes(b"xy").finish();
        let b = Hasher::new("b").bytes(b"xy").finish();
        let c = Hasher::new("a").bytes(b"x").bytes(b"y").finish();
        assert_ne!(a, b);
        assert_ne!(a, c);
        let j1 = Hasher::new("a").json(&vec!["x"]).finish();
        let j2 = Hasher::new("a").json(&vec!["x"]).finish();
        assert_eq!(j1, j2);
    }
}
