//! `agent plan DIR`

use super::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest directory.
    pub dir: std::path::PathBuf,
    #[arg(long, default_value = "/var/lib/agent")]
    pub state_dir: std::path::PathBuf,
    #[arg(long, value_enum, default_value_t)]
    pub output: super::OutputFormat,
}

pub fn run(_args: Args) -> crate::Result<Outcome> {
    Err(super::not_yet("plan", 3))
}
