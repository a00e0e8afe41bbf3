//! `agent volume ls|inspect|rm|prune` and `agent system df`: from the running agent
//! (`/v1/volumes`, `/v1/system/df`), or from the store when it is not running. See
//! [`crate::api::disk`].
//!
//! `rm` and `prune` remove through the agent's one mutation path: with the agent running, a
//! request per volume (`POST /v1/volumes/{name}/remove`) that its loop turns into a work for the
//! applier; without it, the same journalled removal
//! ([`crate::reconcile::apply::volume_rm`]) in this process, holding the store's lock (after
//! settling a removal an agent left half-done). Either way a volume in use or declared by a
//! manifest is refused with the reason. `prune` removes every volume that no container uses and
//! no manifest declares (Docker 23+ prunes only anonymous volumes unless `-a`; here an unused
//! named volume is one kept after its manifest went, `reclaim: retain`, which is what fills
//! disks), asking first when stdin is a terminal (`-f` does not ask).

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;

use super::daemon::{ClientOpts, ask, print_json, table, wait_for_starting_agent};
use super::{Outcome, OutputFormat};
use crate::api::ClientError;
use crate::api::disk::{self, DfRow, VolumeRow};
use crate::reconcile::apply::volume_rm::{self, RmError};
use crate::reconcile::report::ActionReport;
use crate::store::Store;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List volumes: named (Volume manifests, and retained ones whose manifest is gone) and
    /// anonymous (an image's `Volumes`, per container), with size and users.
    Ls(LsArgs),
    /// Print one volume as JSON.
    Inspect(InspectArgs),
    /// Remove volumes that no container uses and no manifest declares (data included).
    Rm(RmArgs),
    /// Remove every volume that no container uses and no manifest declares; prints the space
    /// reclaimed.
    Prune(PruneArgs),
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Volume names (`<container>:<path>` for an anonymous one).
    #[arg(required = true)]
    pub names: Vec<String>,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation (it is asked only when stdin is a terminal).
    #[arg(short, long)]
    pub force: bool,
    /// Only volumes with this label: `label=KEY` or `label=KEY=VALUE` (repeatable; all must
    /// match). Anonymous volumes have no labels.
    #[arg(long = "filter", value_parser = parse_filter)]
    pub filter: Vec<(String, Option<String>)>,
    #[command(flatten)]
    pub client: ClientOpts,
    /// Output format: `text` (a table or lines) or `json`.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

fn parse_filter(s: &str) -> Result<(String, Option<String>), String> {
    match s.split_once('=') {
        Some(("label", kv)) if !kv.is_empty() && !kv.starts_with('=') => {
            Ok(match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (kv.to_string(), None),
            })
        }
        _ => Err(format!("{s:?}: the filter is label=KEY or label=KEY=VALUE")),
    }
}

/// What `agent volume prune -o json` prints.
#[derive(Debug, serde::Serialize)]
struct Pruned {
    deleted: Vec<String>,
    /// Bytes the deleted volumes held.
    reclaimed: u64,
    /// Volumes left, each with why (in use since they were listed, ...).
    skipped: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Only the names, one per line.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub client: ClientOpts,
    /// Output format: `text` (a table or lines) or `json`.
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
    /// Output format: `text` (a table or lines) or `json`.
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
            if args.quiet {
                let mut out = std::io::stdout().lock();
                for r in &rows {
                    if writeln!(out, "{}", r.name).is_err() {
                        break;
                    }
                }
                return Ok(Outcome::OK);
            }
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
                None => Err(crate::Error::Failed(format!(
                    "no such volume: {} (see `agent volume ls`)",
                    args.name
                ))),
            }
        }
        Command::Rm(args) => rm(args),
        Command::Prune(args) => prune(args),
    }
}

/// Removes volumes one by one, through the agent or, when it is not running, in this process.
struct Remover {
    client: crate::api::Client,
    state: std::path::PathBuf,
    offline: Option<Mutex<Store>>,
}

impl Remover {
    fn new(opts: &ClientOpts) -> crate::Result<Remover> {
        let (client, state) = opts.resolve()?;
        Ok(Remover {
            client,
            state,
            offline: None,
        })
    }

    /// Removes `name`: `Ok(Err(why))` when refused (in use, declared, no such volume).
    fn remove(&mut self, name: &str) -> crate::Result<Result<(), String>> {
        if self.offline.is_none() {
            let path = format!("/v1/volumes/{}/remove", super::daemon::url_escape(name));
            match wait_for_starting_agent(&self.state, || {
                self.client.call::<ActionReport>(true, &path)
            }) {
                Ok(_) => return Ok(Ok(())),
                Err(ClientError::Api(why)) => return Ok(Err(why)),
                Err(ClientError::NotRunning(socket)) => self.go_offline(&socket)?,
                Err(e) => return Err(crate::api::Error::from(e).into()),
            }
        }
        let Some(store) = &self.offline else {
            return Ok(Err(format!(
                "no such volume: {name} (see `agent volume ls`)"
            )));
        };
        match volume_rm::remove(store, &self.state, name, true) {
            Ok(_) => Ok(Ok(())),
            Err(e @ (RmError::NotFound(_) | RmError::Refused(_))) => Ok(Err(e.to_string())),
            Err(RmError::Failed(e)) => Err(crate::Error::Failed(format!("volume {name}: {e}"))),
        }
    }

    fn go_offline(&mut self, socket: &std::path::Path) -> crate::Result<()> {
        if !self.state.join(crate::store::DB_FILE).exists() {
            return Err(crate::Error::Failed(format!(
                "the agent is not running (nothing listens on {}) and {} holds no state",
                socket.display(),
                self.state.display()
            )));
        }
        eprintln!(
            "agent: the agent is not running (nothing listens on {}); removing in {} directly",
            socket.display(),
            self.state.display()
        );
        let store = Mutex::new(Store::open(&self.state)?);
        let (done, failed) = volume_rm::recover(&store, &self.state);
        for line in done.iter().chain(&failed) {
            eprintln!("agent: {line}");
        }
        self.offline = Some(store);
        Ok(())
    }
}

fn rm(args: RmArgs) -> crate::Result<Outcome> {
    let mut r = Remover::new(&args.client)?;
    let mut failed = false;
    for name in &args.names {
        match r.remove(name)? {
            Ok(()) => println!("{name}"),
            Err(why) => {
                eprintln!("agent: {why}");
                failed = true;
            }
        }
    }
    Ok(if failed { Outcome::FAILED } else { Outcome::OK })
}

fn prune(args: PruneArgs) -> crate::Result<Outcome> {
    let rows = list(&args.client)?;
    let candidates: Vec<VolumeRow> = rows
        .into_iter()
        .filter(|r| r.users.is_empty() && !r.declared)
        .filter(|r| {
            args.filter.iter().all(|(k, v)| match (r.labels.get(k), v) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            })
        })
        .collect();
    if !candidates.is_empty() && !args.force && std::io::stdin().is_terminal() {
        let names: Vec<&str> = candidates.iter().map(|r| r.name.as_str()).collect();
        eprint!(
            "WARNING! This removes {} volume(s) that no container uses, with their data: {}
Are you sure you want to continue? [y/N] ",
            names.len(),
            names.join(", ")
        );
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("agent: nothing removed");
            return Ok(Outcome::FAILED);
        }
    }
    let mut r = Remover::new(&args.client)?;
    let mut out = Pruned {
        deleted: Vec::new(),
        reclaimed: 0,
        skipped: Vec::new(),
    };
    for v in &candidates {
        match r.remove(&v.name)? {
            Ok(()) => {
                out.deleted.push(v.name.clone());
                out.reclaimed += v.size;
            }
            Err(why) => out.skipped.push(format!("{}: {why}", v.name)),
        }
    }
    if args.output == OutputFormat::Json {
        print_json(&out)?;
        return Ok(Outcome::OK);
    }
    let mut o = std::io::stdout().lock();
    if !out.deleted.is_empty() {
        let _ = writeln!(o, "Deleted Volumes:");
        for n in &out.deleted {
            let _ = writeln!(o, "{n}");
        }
        let _ = writeln!(o);
    }
    for s in &out.skipped {
        eprintln!("agent: skipped {s}");
    }
    let _ = writeln!(
        o,
        "Total reclaimed space: {} ({} bytes)",
        human(out.reclaimed),
        out.reclaimed
    );
    Ok(Outcome::OK)
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
