//! `agent run` and the commands that talk to the running agent: `ps`, `status`, `inspect`,
//! `events`, `apply`.

use super::Outcome;

#[derive(Debug, clap::Args)]
pub struct RunArgs {}
#[derive(Debug, clap::Args)]
pub struct PsArgs {}
#[derive(Debug, clap::Args)]
pub struct StatusArgs {}
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    pub name: String,
}
#[derive(Debug, clap::Args)]
pub struct EventsArgs {}
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {}

pub fn run(_args: RunArgs) -> crate::Result<Outcome> {
    Err(super::not_yet("run", 7))
}
pub fn ps(_args: PsArgs) -> crate::Result<Outcome> {
    Err(super::not_yet("ps", 7))
}
pub fn status(_args: StatusArgs) -> crate::Result<Outcome> {
    Err(super::not_yet("status", 7))
}
pub fn inspect(_args: InspectArgs) -> crate::Result<Outcome> {
    Err(super::not_yet("inspect", 7))
}
pub fn events(_args: EventsArgs) -> crate::Result<Outcome> {
    Err(super::not_yet("events", 7))
}
pub fn apply(_args: ApplyArgs) -> crate::Result<Outcome> {
    Err(super::not_yet("apply", 7))
}
