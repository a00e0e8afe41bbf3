//! `agent validate DIR|FILE...`: load and check manifests without touching the host.
//!
//! Paths are read by the daemon's intake ([`crate::manifest::source`]): the same file-name rule,
//! permission rule and parser, so what `agent validate` accepts the daemon loads.
//!
//! Exit codes: 0 every file is valid, 1 some file is invalid or a directory is refused by the
//! permission rule, 64 usage error (bad arguments, a path that does not exist or cannot be read). Text output prints one line per problem,
//! `file:line:col: field: message`, then a summary; `--output json` prints one JSON object:
//! `{"valid": bool, "files": [{"path", "sha256", "valid", "objects": [{"kind", "name", "line",
//! "column"}], "errors": [{"file", "line", "column", "field", "message", "related"}]}],
//! "warnings": [{"file", "line", "column", "field", "message"}]}`. Warnings
//! ([`crate::manifest::validate::warn`]: `privileged`, a host device missing now) print as
//! `warning: file:line:col: ...` and do not change the exit code.

use std::io::Write;

use serde_json::json;

use super::{Outcome, OutputFormat};
use crate::manifest::{self, Loaded};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifest files or directories.
    #[arg(required = true)]
    pub paths: Vec<std::path::PathBuf>,
    /// Output format: `text` (a table or lines) or `json`.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: super::OutputFormat,
}

pub fn run(args: Args) -> crate::Result<Outcome> {
    let loaded = manifest::load_paths(&args.paths).map_err(|e| match e {
        manifest::Error::Read { .. } => crate::Error::Usage(e.to_string()),
        other => other.into(),
    })?;
    match args.output {
        OutputFormat::Text => print_text(&loaded),
        OutputFormat::Json => {
            let _ = writeln!(std::io::stdout().lock(), "{}", to_json(&loaded));
        }
    }
    Ok(if loaded.is_valid() {
        Outcome::OK
    } else {
        Outcome::FAILED
    })
}

/// Prints the report; a closed stdout (`| head`) ends the output quietly.
fn print_text(loaded: &Loaded) {
    let _ = write_text(loaded, &mut std::io::stdout().lock());
}

fn write_text(loaded: &Loaded, out: &mut impl Write) -> std::io::Result<()> {
    for d in loaded.diagnostics() {
        writeln!(out, "{d}")?;
        if let Some(r) = &d.related {
            writeln!(out, "    (see {r})")?;
        }
    }
    for w in manifest::validate::warn::warnings(loaded) {
        writeln!(out, "warning: {w}")?;
    }
    let total = loaded.files.len();
    let bad = loaded.files.iter().filter(|f| !f.is_ok()).count();
    let objects = loaded.objects().count();
    if total == 0 {
        eprintln!("agent: no manifest files (*.yaml, *.yml) found");
    }
    if bad == 0 {
        writeln!(out, "{total} file(s), {objects} object(s): all valid")
    } else {
        let problems = loaded.diagnostics().count();
        writeln!(
            out,
            "{bad} of {total} file(s) invalid, {problems} problem(s)"
        )
    }
}

fn to_json(loaded: &Loaded) -> serde_json::Value {
    let files: Vec<_> = loaded
        .files
        .iter()
        .map(|f| {
            let (objects, errors) = match &f.outcome {
                Ok(objs) => (
                    objs.iter()
                        .map(|o| {
                            json!({"kind": o.kind(), "name": o.name(), "line": o.source.line, "column": o.source.column})
                        })
                        .collect(),
                    Vec::new(),
                ),
                Err(diags) => (Vec::new(), diags.clone()),
            };
            json!({"path": f.path, "sha256": f.sha256, "valid": f.is_ok(), "objects": objects, "errors": errors})
        })
        .collect();
    let warnings = manifest::validate::warn::warnings(loaded);
    json!({"valid": loaded.is_valid(), "files": files, "warnings": warnings})
}
