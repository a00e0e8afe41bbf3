//! `agent convert compose [FILE | -f FILE] [-o DIR]`: agent manifests from a docker-compose file
//! ([`crate::convert`]).
//!
//! Without `-o` the manifests go to standard output as one multi-document stream; with `-o DIR`
//! one file per object is written into DIR (made if missing), refusing to replace existing files
//! unless `--force`. The report (what was interpolated, what was changed, every key not carried
//! over with `file:line:col` and the reason) goes to standard error, as text or, with
//! `--report json`, as one JSON object. Exit codes: 0 converted (also when something was not
//! carried over, unless `--strict`), 1 the file cannot be converted, a file would be replaced,
//! or `--strict` and something was not carried over; the usage error code for a FILE that cannot
//! be read.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{Outcome, OutputFormat};
use crate::convert::{self, Conversion, render};
use crate::manifest::Ipv4Cidr;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write agent manifests from a docker-compose file (Compose spec, v2 and v3 files):
    /// services, volumes, networks, secrets; every key that cannot be carried over is listed
    /// with its line and the reason.
    Compose(ComposeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ComposeArgs {
    /// The compose file. `${VAR}` is read from the environment, then from the `.env` file
    /// beside it [default: as `docker compose` finds it: compose.yaml, compose.yml,
    /// docker-compose.yaml or docker-compose.yml in the current directory].
    pub file: Option<PathBuf>,
    /// The compose file, as `docker compose -f FILE` (the same as FILE; one file: the
    /// converter does not merge several).
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "file"
    )]
    pub file_opt: Vec<PathBuf>,
    /// Write one file per object (container-web.yaml, volume-NAME.yaml, ...) into this
    /// directory instead of a multi-document stream on standard output.
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace files that already exist in DIR.
    #[arg(long)]
    pub force: bool,
    /// Project name, the prefix of volume and network names [default: the file's `name:`,
    /// then COMPOSE_PROJECT_NAME, then the directory holding the file].
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// Also convert the services of this profile (repeatable), as `docker compose --profile`.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// Subnets for networks that name none are /24s taken from this pool.
    #[arg(long, value_name = "CIDR", default_value = convert::DEFAULT_SUBNET_POOL)]
    pub subnet_pool: Ipv4Cidr,
    /// Format of the report on standard error: `text` or `json`.
    #[arg(long, value_enum, default_value_t)]
    pub report: OutputFormat,
    /// Exit 1 when any key was not carried over (the manifests are still written).
    #[arg(long)]
    pub strict: bool,
}

pub fn run(cmd: Command) -> crate::Result<Outcome> {
    match cmd {
        Command::Compose(args) => compose(args),
    }
}

/// The compose file: FILE, `-f FILE`, or the one `docker compose` finds in the current
/// directory.
fn compose_file(args: &ComposeArgs) -> crate::Result<PathBuf> {
    if let Some(f) = &args.file {
        return Ok(f.clone());
    }
    match args.file_opt.as_slice() {
        [f] => Ok(f.clone()),
        [] => convert::find_default(Path::new(".")).ok_or_else(|| {
            crate::Error::Usage(format!(
                "no compose file given and none of {} in the current directory",
                convert::DEFAULT_FILES.join(", ")
            ))
        }),
        many => Err(crate::Error::Usage(format!(
            "{} compose files given with -f: the converter reads one and does not merge several as `docker compose -f a -f b` does; merge them into one file (`docker compose -f a -f b config > merged.yaml` does) and convert that",
            many.len()
        ))),
    }
}

fn compose(args: ComposeArgs) -> crate::Result<Outcome> {
    let file = compose_file(&args)?;
    if let Err(e) = std::fs::metadata(&file) {
        return Err(crate::Error::Usage(format!("{}: {e}", file.display())));
    }
    let opts = convert::Options {
        project_name: args.project_name.clone(),
        profiles: args.profiles.clone(),
        subnet_pool: args.subnet_pool,
        env: std::env::vars().collect(),
    };
    let conversion = match convert::convert_file(&file, &opts) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "agent: {e}");
            return Ok(Outcome::FAILED);
        }
    };
    let written = match &args.out {
        Some(dir) => match render::write_dir(&conversion, dir, args.force) {
            Ok(w) => w,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "agent: {e}");
                return Ok(Outcome::FAILED);
            }
        },
        None => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(render::stream(&conversion).as_bytes());
            Vec::new()
        }
    };
    let mut err = std::io::stderr().lock();
    let _ = match args.report {
        OutputFormat::Text => write_report(&conversion, &written, &mut err),
        OutputFormat::Json => writeln!(err, "{}", report_json(&conversion, &written)),
    };
    Ok(if args.strict && !conversion.not_carried.is_empty() {
        Outcome::FAILED
    } else {
        Outcome::OK
    })
}

fn counts(c: &Conversion) -> String {
    let mut by_kind: std::collections::BTreeMap<&str, usize> = Default::default();
    for o in &c.objects {
        *by_kind.entry(o.manifest.kind().as_str()).or_default() += 1;
    }
    by_kind
        .iter()
        .map(|(k, n)| {
            format!(
                "{n} {}{}",
                k.to_ascii_lowercase(),
                if *n == 1 { "" } else { "s" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn write_report(c: &Conversion, written: &[PathBuf], out: &mut impl Write) -> std::io::Result<()> {
    let file = c.file.display();
    writeln!(
        out,
        "agent: converted {file} (project {}): {}",
        c.project,
        counts(c)
    )?;
    for w in written {
        writeln!(out, "  wrote {}", w.display())?;
    }
    if !c.interpolated.is_empty() {
        writeln!(out, "interpolated (variable: where its value came from):")?;
        for u in &c.interpolated {
            writeln!(out, "  {file}:{}:{}: {}: {}", u.line, u.col, u.name, u.from)?;
        }
    }
    if !c.changed.is_empty() {
        writeln!(out, "carried over with changes:")?;
        for n in &c.changed {
            writeln!(
                out,
                "  {file}:{}:{}: {}: {}",
                n.line, n.col, n.key, n.message
            )?;
        }
    }
    if c.not_carried.is_empty() {
        writeln!(out, "everything was carried over")?;
    } else {
        writeln!(out, "not carried over ({}):", c.not_carried.len())?;
        for n in &c.not_carried {
            let msg = n
                .message
                .strip_prefix("not carried over: ")
                .unwrap_or(&n.message);
            writeln!(out, "  {file}:{}:{}: {}: {msg}", n.line, n.col, n.key)?;
        }
    }
    writeln!(
        out,
        "next: agent validate {} && copy the files into /etc/agent.d (agent apply)",
        written
            .first()
            .and_then(|w| w.parent())
            .map_or("FILE".to_string(), |d| d.display().to_string())
    )
}

fn report_json(c: &Conversion, written: &[PathBuf]) -> serde_json::Value {
    let objects: Vec<_> = c
        .objects
        .iter()
        .map(|o| json!({"kind": o.manifest.kind(), "name": o.manifest.name(), "from": o.from, "line": o.line, "column": o.col}))
        .collect();
    json!({
        "file": c.file,
        "project": c.project,
        "objects": objects,
        "written": written,
        "interpolated": c.interpolated,
        "changed": c.changed,
        "notCarried": c.not_carried,
    })
}
