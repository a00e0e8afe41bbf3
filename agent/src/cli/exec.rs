//! `agent monitor`, `agent logs`, `agent exec`, `agent stop`, `agent kill`.

use super::Outcome;

#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    pub id: String,
}
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    pub name: String,
}
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    pub name: String,
}
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    pub name: String,
}
#[derive(Debug, clap::Args)]
pub struct KillArgs {
    pub name: String,
}

pub fn monitor(_args: MonitorArgs) -> crate::Result<Outcome> {
    Err(super::not_yet("monitor", 5))
}
pub fn logs(_args: LogsArgs) -> crate::Result<Outcome> {
    Err(super::not_yet("logs", 5))
}
pub fn exec(_args: ExecArgs) -> crate::Result<Outcome> {
    Err(super::not_yet("exec", 5))
}
pub fn stop(_args: StopArgs) -> crate::Result<Outcome> {
    Err(super::not_yet("stop", 5))
}
pub fn kill(_args: KillArgs) -> crate::Result<Outcome> {
    Err(super::not_yet("kill", 5))
}
