//! `agent image ...` and `agent export`.

use super::Outcome;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List images.
    Ls,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    pub container: String,
    #[arg(short, long)]
    pub output: std::path::PathBuf,
}

pub fn run(_cmd: Command) -> crate::Result<Outcome> {
    Err(super::not_yet("image", 4))
}

pub fn export(_args: ExportArgs) -> crate::Result<Outcome> {
    Err(super::not_yet("export", 4))
}
