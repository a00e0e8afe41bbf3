//! `agent dns-server --dir DIR`: the networks' DNS server, started by the agent (not by
//! people); see [`crate::driver::network::dns`].

use std::path::PathBuf;

use super::Outcome;

#[derive(Debug, clap::Args)]
pub struct DnsServerArgs {
    /// The DNS directory (`<state_dir>/dns`): records file, pid file, log.
    #[arg(long)]
    pub dir: PathBuf,
}

pub fn run(args: DnsServerArgs) -> crate::Result<Outcome> {
    crate::driver::network::dns::server::run(&args.dir)?;
    Ok(Outcome::OK)
}
