//! `agent convert compose [FILE | -f FILE...] [-o DIR]`: agent manifests from a docker-compose
//! project ([`crate::convert`]): one file, several `-f` files merged in order, or, given none,
//! the file found in the current directory with the override file beside it, as `docker compose`.
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
    /// Write agent manifests from a docker-compose project (Compose spec, v2 and v3 files; several
    /// files merged and `extends` resolved as `docker compose` does): services, volumes,
    /// networks, secrets; every key that cannot be carried over is listed with its file, line and
    /// the reason.
    Compose(ComposeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ComposeArgs {
    /// The compose file. `${VAR}` is read from the environment, then from the `.env` file
    /// beside it [default: as `docker compose` finds it: compose.yaml, compose.yml,
    /// docker-compose.yml or docker-compose.yaml in the current directory, with
    /// compose.override.yml (or .yaml, or docker-compose.override.yml/.yaml) beside it merged
    /// in].
    pub file: Option<PathBuf>,
    /// A compose file, as `docker compose -f FILE`; repeated, the files are merged in order
    /// (later ones override earlier ones, Compose's merge rules); the project directory is the
    /// first file's.
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
    /// Project name, the prefix of volume and network names [default: the files' `name:`,
    /// then COMPOSE_PROJECT_NAME, then the directory holding the (first) file].
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

/// The compose files: FILE, the `-f FILE`s, or those `docker compose` finds in the current
/// directory (the compose file and the override file beside it).
fn compose_files(args: &ComposeArgs) -> crate::Result<Vec<PathBuf>> {
    if let Some(f) = &args.file {
        return Ok(vec![f.clone()]);
    }
    if !args.file_opt.is_empty() {
        return Ok(args.file_opt.clone());
    }
    convert::default_files(Path::new(".")).ok_or_else(|| {
        crate::Error::Usage(format!(
            "no compose file given and none of {} in the current directory",
            convert::DEFAULT_FILES.join(", ")
        ))
    })
}

fn compose(args: ComposeArgs) -> crate::Result<Outcome> {
    let files = compose_files(&args)?;
    for file in &files {
        if let Err(e) = std::fs::metadata(file) {
            return Err(crate::Error::Usage(format!("{}: {e}", file.display())));
        }
    }
    let opts = convert::Options {
        project_name: args.project_name.clone(),
        profiles: args.profiles.clone(),
        subnet_pool: args.subnet_pool,
        env: std::env::vars().collect(),
    };
    let conversion = match convert::convert_files(&files, &opts) {
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
    let files: Vec<String> = c.files.iter().map(|f| f.display().to_string()).collect();
    writeln!(
        out,
        "agent: converted {} (project {}): {}",
        files.join(" + "),
        c.project,
        counts(c)
    )?;
    for w in written {
        writeln!(out, "  wrote {}", w.display())?;
    }
    if !c.interpolated.is_empty() {
        writeln!(out, "interpolated (variable: where its value came from):")?;
        for u in &c.interpolated {
            let file = u.file.display();
            writeln!(out, "  {file}:{}:{}: {}: {}", u.line, u.col, u.name, u.from)?;
        }
    }
    if !c.changed.is_empty() {
        writeln!(out, "carried over with changes:")?;
        for n in &c.changed {
            writeln!(
                out,
                "  {}:{}:{}: {}: {}",
                n.file.display(),
                n.line,
                n.col,
                n.key,
                n.message
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
            let file = n.file.display();
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
        .map(|o| json!({"kind": o.manifest.kind(), "name": o.manifest.name(), "from": o.from, "file": o.file, "line": o.line, "column": o.col}))
        .collect();
    json!({
        "file": c.file,
        "files": c.files,
        "project": c.project,
        "objects": objects,
        "written": written,
        "interpolated": c.interpolated,
        "changed": c.changed,
        "notCarried": c.not_carried,
    })
}
