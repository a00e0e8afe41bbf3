//! `agent volume ls|inspect` and `agent system df`: from the running agent (`/v1/volumes`,
//! `/v1/system/df`), or from the store when it is not running. See [`crate::api::disk`].
//!
//! Not yet: `agent volume rm|prune` (a removal must go through the agent's one mutation path;
//! see the issue notes).

use std::io::Write;

use super::daemon::{ClientOpts, ask, print_json, table};
use super::{Outcome, OutputFormat};
use crate::api::disk::{self, DfRow, VolumeRow};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List volumes: named (Volume manifests, and retained ones whose manifest is gone) and
    /// anonymous (an image's `Volumes`, per container), with size and users.
    Ls(LsArgs),
    /// Print one volume as JSON.
    Inspect(InspectArgs),
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The volume's name (`<container>:<path>` for an anonymous one).
    pub name: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, clap::Args)]
pub struct DfArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", units[i])
    }
}

fn list(client: &ClientOpts) -> crate::Result<Vec<VolumeRow>> {
    let (_, state) = client.resolve()?;
    ask(client, "/v1/volumes", |s| {
        Ok(s.transaction(|tx| disk::volumes(tx, &state))?)
    })
}

pub fn run(cmd: Command) -> crate::Result<Outcome> {
    match cmd {
        Command::Ls(args) => {
            let rows = list(&args.client)?;
            if args.output == OutputFormat::Json {
                print_json(&rows)?;
                return Ok(Outcome::OK);
            }
            let mut t = vec![
                ["NAME", "KIND", "SIZE", "USED BY", "DECLARED", "PATH"]
                    .map(String::from)
                    .to_vec(),
            ];
            for r in &rows {
                t.push(vec![
                    r.name.clone(),
                    r.kind.clone(),
                    human(r.size),
                    if r.users.is_empty() {
                        "-".into()
                    } else {
                        r.users.join(",")
                    },
                    if r.declared { "yes" } else { "no" }.into(),
                    r.path.clone(),
                ]);
            }
            let _ = write!(std::io::stdout().lock(), "{}", table(&t));
            Ok(Outcome::OK)
        }
        Command::Inspect(args) => {
            let rows = list(&args.client)?;
            match rows.into_iter().find(|r| r.name == args.name) {
                Some(r) => {
                    print_json(&r)?;
                    Ok(Outcome::OK)
                }
                None => Err(crate::Error::Usage(format!(
                    "no such volume: {} (see `agent volume ls`)",
                    args.name
                ))),
            }
        }
    }
}

/// `agent system df`.
pub fn df(args: DfArgs) -> crate::Result<Outcome> {
    let (_, state) = args.client.resolve()?;
    let rows: Vec<DfRow> = ask(&args.client, "/v1/system/df", |s| {
        Ok(s.transaction(|tx| disk::df(tx, &state))?)
    })?;
    if args.output == OutputFormat::Json {
        print_json(&rows)?;
        return Ok(Outcome::OK);
    }
    let mut t = vec![
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
            .map(String::from)
            .to_vec(),
    ];
    for r in &rows {
        t.push(vec![
            r.kind.clone(),
            r.count.to_string(),
            r.active.to_string(),
            human(r.size),
            human(r.reclaimable),
        ]);
    }
    let _ = write!(std::io::stdout().lock(), "{}", table(&t));
    Ok(Outcome::OK)
}
