//! `agent validate DIR|FILE...`

use super::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifest files or directories.
    #[arg(required = true)]
    pub paths: Vec<std::path::PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub output: super::OutputFormat,
}

pub fn run(_args: Args) -> crate::Result<Outcome> {
    Err(super::not_yet("validate", 2))
}
