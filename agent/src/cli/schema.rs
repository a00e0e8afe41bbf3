//! `agent schema`: print the JSON Schema of the manifests (the same text as
//! `schema/agent-v1.schema.json`).

use super::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<Outcome> {
    print!("{}", crate::manifest::schema::schema_json());
    Ok(Outcome::OK)
}
