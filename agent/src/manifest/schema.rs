//! The JSON Schema of a manifest document, generated from the types with schemars.
//!
//! `schema/agent-v1.schema.json` in the repository is this output; a test fails when it is stale
//! (regenerate with `cargo run -p agent -- schema > schema/agent-v1.schema.json`). Editors using
//! yaml-language-server can point at it (see the README).

use super::types::Manifest;

/// The `$id` of the schema.
pub const SCHEMA_ID: &str = "urn:agent:schema:agent-v1";

/// The schema as a JSON value.
pub fn schema() -> serde_json::Value {
    let mut s = schemars::schema_for!(Manifest);
    s.insert("$id".into(), SCHEMA_ID.into());
    s.insert("title".into(), "agent/v1 manifest".into());
    s.insert(
        "description".into(),
        "One document of an agent manifest file: kind Image, Volume, Network or Container.".into(),
    );
    s.to_value()
}

/// The schema as pretty-printed JSON with a trailing newline, as checked in.
pub fn schema_json() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    text.push('\n');
    text
}
