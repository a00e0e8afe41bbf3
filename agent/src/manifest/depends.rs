//! `dependsOn`: start conditions between containers, with Docker Compose's semantics.
//!
//! Short form, a list of container names (condition `started`):
//!
//! ```yaml
//! dependsOn: [db, cache]
//! ```
//!
//! Long form, a map from container name to its condition:
//!
//! ```yaml
//! dependsOn:
//!   db: {condition: healthy, restart: true}
//!   migrate: {condition: completed}
//!   metrics: {condition: started, required: false}
//! ```
//!
//! - `condition`: `started` (default; Compose's `service_started`): the dependency has been
//!   started; `healthy` (`service_healthy`): it runs and its health check passes (it must have
//!   one); `completed` (`service_completed_successfully`): it ran to its end with exit code 0.
//!   Compose's spellings are accepted as aliases.
//! - `restart: true`: when the agent restarts or recreates the dependency, it restarts this
//!   container too (once the condition holds again).
//! - `required: false`: a dependency no manifest declares is not an error and does not hold
//!   this container back (Compose warns and goes on).
//!
//! What the conditions do (the plan holds a dependent back, `agent ps` says why) is described
//! in `crate::plan::depends`.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a dependency must have reached before its dependent is created or started.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// It has been started (Compose's `service_started`).
    #[default]
    #[serde(alias = "service_started")]
    Started,
    /// It runs and its health check passes (Compose's `service_healthy`).
    #[serde(alias = "service_healthy")]
    Healthy,
    /// It exited with code 0 (Compose's `service_completed_successfully`).
    #[serde(alias = "service_completed_successfully")]
    Completed,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "started",
            Condition::Healthy => "healthy",
            Condition::Completed => "completed",
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl JsonSchema for Condition {
    fn schema_name() -> Cow<'static, str> {
        "DependsOnCondition".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "enum": ["started", "healthy", "completed", "service_started", "service_healthy",
                     "service_completed_successfully"],
            "description": "started: it has been started; healthy: it runs and its health check passes; completed: it exited with code 0 (Compose's service_* names are accepted too)"
        })
    }
}

/// One dependency.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dependency {
    /// The other container's name.
    pub container: String,
    pub condition: Condition,
    /// Restart this container when the agent restarts or recreates the dependency.
    pub restart: bool,
    /// `false`: a dependency that no manifest declares is ignored.
    pub required: bool,
}

/// The long form of one entry (the value under the dependency's name).
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "DependsOnLong")]
struct DependencyLong {
    /// `started` (default), `healthy` or `completed`.
    #[serde(default)]
    condition: Condition,
    /// Restart this container when the agent restarts or recreates the dependency.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    restart: bool,
    /// `false`: a dependency no manifest declares is ignored; default true.
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    required: bool,
}

fn yes() -> bool {
    true
}

/// `dependsOn` of a container, in the order written. `short`: written as a list of names (an
/// entry's field path is then `dependsOn[i]`, else `dependsOn.NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DependsOn {
    pub entries: Vec<Dependency>,
    pub short: bool,
}

impl DependsOn {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Dependency> {
        self.entries.iter()
    }
}

impl Serialize for DependsOn {
    /// Always the long form (a map), which says everything.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.entries.len()))?;
        for d in &self.entries {
            m.serialize_entry(
                &d.container,
                &DependencyLong {
                    condition: d.condition,
                    restart: d.restart,
                    required: d.required,
                },
            )?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DependsOn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a list of container names ([db, cache]) or a map {NAME: {condition: started|healthy|completed, restart: BOOL, required: BOOL}}",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DependsOn, A::Error> {
                let mut entries = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    entries.push(Dependency {
                        container: name,
                        condition: Condition::Started,
                        restart: false,
                        required: true,
                    });
                }
                Ok(DependsOn {
                    entries,
                    short: true,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DependsOn, A::Error> {
                let mut entries = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let long: DependencyLong = map.next_value()?;
                    entries.push(Dependency {
                        container: name,
                        condition: long.condition,
                        restart: long.restart,
                        required: long.required,
                    });
                }
                Ok(DependsOn {
                    entries,
                    short: false,
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<DependsOn, E> {
                Ok(DependsOn::default())
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for DependsOn {
    fn schema_name() -> Cow<'static, str> {
        "DependsOn".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let long = generator.subschema_for::<DependencyLong>();
        json_schema!({
            "description": "Start conditions: a list of container names (condition started), or a map from container name to {condition, restart, required}",
            "anyOf": [
                {"type": "array", "items": {"type": "string"}},
                {"type": "object", "additionalProperties": long}
            ]
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_forms_read_and_write_back() {
        let short: DependsOn = serde_json::from_str(r#"["db","cache"]"#).unwrap();
        assert!(short.short);
        assert_eq!(short.entries[1].container, "cache");
        assert_eq!(short.entries[0].condition, Condition::Started);
        assert!(short.entries[0].required);
        let long: DependsOn = serde_json::from_str(
            r#"{"db":{"condition":"service_healthy","restart":true},"m":{"condition":"completed","required":false}}"#,
        )
        .unwrap();
        assert!(!long.short);
        assert_eq!(long.entries[0].condition, Condition::Healthy);
        assert!(long.entries[0].restart);
        assert!(!long.entries[1].required);
        let back: DependsOn = serde_json::from_value(serde_json::to_value(&long).unwrap()).unwrap();
        assert_eq!(back.entries, long.entries);
        assert_eq!(
            serde_json::to_value(&short).unwrap(),
            serde_json::json!({"db": {"condition": "started"}, "cache": {"condition": "started"}})
        );
        assert!(serde_json::from_str::<DependsOn>(r#"{"db":{"condition":"ready"}}"#).is_err());
        assert!(serde_json::from_str::<DependsOn>(r#"{"db":{"when":"x"}}"#).is_err());
    }
}
