//! `agent schema`

use super::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<Outcome> {
    Err(super::not_yet("schema", 2))
}
