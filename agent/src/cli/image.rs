//! `agent image ls|pull|load|save|rm|prune` and `agent export`.
//!
//! They work on the graph under the state directory with the graph driver, both resolved as by
//! every command ([`super::settings`]: `--state-dir`, `AGENT_STATE_DIR`, `state_dir` of the
//! config; `--graph-driver`, `AGENT_GRAPH_DRIVER`, `graph.driver`; detected when unset).
//! `agent export` takes a container's name (or its id, which is also its layer's id).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Outcome, OutputFormat};
use crate::driver::graph::{self, DriverKind, Graph};

/// Where the graph lives and which driver to use.
#[derive(Debug, Clone, clap::Args)]
pub struct GraphOpts {
    /// The agent's state directory [env: AGENT_STATE_DIR; default: `state_dir` of the config
    /// file, /var/lib/agent].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Graph driver for container layers [env: AGENT_GRAPH_DRIVER; default: `graph.driver` of
    /// the config file, else overlay when it works here, else vfs].
    #[arg(long, value_enum)]
    pub graph_driver: Option<DriverKind>,
    /// Configuration file [env: AGENT_CONFIG; default: /etc/agent/config.toml, if it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl GraphOpts {
    fn settings(&self) -> crate::Result<super::settings::Settings> {
        super::settings::resolve(
            self.config.as_deref(),
            None,
            self.state_dir.as_deref(),
            None,
        )
    }

    /// The graph, or `None` when the state directory has none yet (listing commands then
    /// show nothing instead of creating a state directory as a side effect).
    fn open_existing(&self) -> crate::Result<Option<Graph>> {
        let s = self.settings()?;
        if !s.state_dir.join("graph").join("version").is_file() {
            return Ok(None);
        }
        self.open_with(&s).map(Some)
    }

    fn open(&self) -> crate::Result<Graph> {
        self.open_with(&self.settings()?)
    }

    fn open_with(&self, s: &super::settings::Settings) -> crate::Result<Graph> {
        let driver = super::settings::graph_driver(self.graph_driver, &s.config)?;
        Ok(Graph::open(&s.state_dir, driver)?)
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List images.
    Ls {
        #[command(flatten)]
        graph: GraphOpts,
        /// Output format: `text` (a table) or `json` (`--format` is an old spelling).
        #[arg(short, long, alias = "format", value_enum, default_value_t)]
        output: OutputFormat,
        /// Only the image ids (12 characters, one per image), as `docker images -q`.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Pull an image from a registry (Docker v2 / OCI distribution).
    Pull {
        #[command(flatten)]
        graph: GraphOpts,
        /// `[host[:port]/]repo[:tag][@sha256:digest]`; Docker Hub when no host is given.
        reference: String,
        /// A registry (`host:port` as written in references) to reach over plain HTTP instead of
        /// HTTPS. Repeatable.
        #[arg(long = "insecure-registry", value_name = "HOST")]
        insecure_registries: Vec<String>,
        /// Docker-style config.json with registry credentials [default: $DOCKER_CONFIG/config.json
        /// or ~/.docker/config.json].
        #[arg(long, value_name = "FILE")]
        registry_config: Option<PathBuf>,
        /// Retries per request after a network error, with exponential backoff and jitter.
        #[arg(long, default_value_t = 5)]
        retries: u32,
        /// Seconds any registry request (token requests included) may go without an answer.
        #[arg(long, value_name = "SECONDS", default_value_t = 60,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
        /// No progress bars.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Load images from an OCI layout (directory or tar), a `docker save` archive, or a root
    /// filesystem tarball (gzip/zstd compressed or not).
    Load {
        #[command(flatten)]
        graph: GraphOpts,
        /// The file or directory to load.
        file: PathBuf,
        /// Name the loaded image (required to name a root filesystem tarball).
        #[arg(long)]
        name: Option<String>,
        /// Load only the image with this tag (an OCI layout's
        /// `org.opencontainers.image.ref.name`, a docker archive's `RepoTags` entry).
        #[arg(long)]
        tag: Option<String>,
    },
    /// Write an image as an OCI layout tar.
    Save {
        #[command(flatten)]
        graph: GraphOpts,
        /// Image name, id or digest.
        image: String,
        /// The tar file to write.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Remove images (a name, or the image when given its id or its last name). Refused while a
    /// container layer uses the image.
    Rm {
        #[command(flatten)]
        graph: GraphOpts,
        /// Image names, ids or digests.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove unnamed unused images (all unused ones with --all), then unreferenced layers and blobs.
    Prune {
        #[command(flatten)]
        graph: GraphOpts,
        /// Remove every unused image, named ones too.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub graph: GraphOpts,
    /// The container's name (or its id).
    pub container: String,
    /// The tar file to write (`-` for standard output).
    #[arg(short, long)]
    pub output: PathBuf,
}

fn short(d: &graph::Digest) -> &str {
    &d.hex()[..12]
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

/// `agent image ls` as text: one row per name (`<none>` for an unnamed image), every column as
/// wide as its widest value.
fn ls_table(images: &[graph::Image]) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        "NAME".into(),
        "ID".into(),
        "MANIFEST".into(),
        "SIZE".into(),
        "PLATFORM".into(),
    ]];
    for i in images {
        let names = if i.names.is_empty() {
            vec!["<none>".to_string()]
        } else {
            i.names.clone()
        };
        for n in names {
            rows.push([
                n,
                short(&i.id).to_string(),
                short(&i.manifest_digest).to_string(),
                human(i.size()),
                i.platform.clone(),
            ]);
        }
    }
    let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
    let mut out = String::new();
    for r in &rows {
        out.push_str(&format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {}\n",
            r[0], r[1], r[2], r[3], r[4]
        ));
    }
    out
}

pub fn run(cmd: Command) -> crate::Result<Outcome> {
    match cmd {
        Command::Ls {
            graph,
            output,
            quiet,
        } => {
            let mut images = match graph.open_existing()? {
                Some(g) => g.images()?,
                None => Vec::new(),
            };
            images.sort_by(|a, b| a.names.cmp(&b.names).then(a.id.cmp(&b.id)));
            if quiet {
                let mut out = std::io::stdout().lock();
                for i in &images {
                    if writeln!(out, "{}", short(&i.id)).is_err() {
                        break;
                    }
                }
                return Ok(Outcome::OK);
            }
            match output {
                OutputFormat::Json => {
                    let s = serde_json::to_string_pretty(&images)
                        .map_err(|e| crate::Error::Failed(format!("cannot print JSON: {e}")))?;
                    println!("{s}");
                }
                OutputFormat::Text => print!("{}", ls_table(&images)),
            }
            Ok(Outcome::OK)
        }
        Command::Pull {
            graph,
            reference,
            insecure_registries,
            registry_config,
            retries,
            timeout,
            quiet,
        } => {
            // The config file's `[registries]` (mirrors, allowed credential helpers, insecure
            // registries), as the daemon uses them.
            let settings = graph.settings()?;
            let registries = settings.config.registries.clone();
            let g = graph.open_with(&settings)?;
            let mut opts = graph::pull::PullOptions::new(reference);
            opts.insecure_registries = insecure_registries;
            opts.insecure_registries.extend(registries.insecure);
            opts.credential_helpers = registries.credential_helpers;
            opts.mirrors = registries.mirrors;
            opts.registry_config = registry_config;
            opts.retry.retries = retries;
            opts.read_timeout = std::time::Duration::from_secs(timeout);
            opts.progress = !quiet;
            let r = graph::pull::pull(&g, &opts)?;
            println!(
                "Pulled {} {} (resolved {}; downloaded {}, resumed {}, {} blob(s) already present)",
                r.image.names.join(", "),
                r.image.id,
                r.resolved,
                human(r.downloaded),
                human(r.resumed),
                r.present
            );
            Ok(Outcome::OK)
        }
        Command::Load {
            graph,
            file,
            name,
            tag,
        } => {
            let g = graph.open()?;
            let mut opts = graph::import::archive::LoadOptions::named(name.as_deref());
            opts.tag = tag;
            for img in g.load_with(&file, &opts)? {
                let names = if img.names.is_empty() {
                    "<none>".to_string()
                } else {
                    img.names.join(", ")
                };
                println!(
                    "Loaded {names} {} (manifest {})",
                    img.id, img.manifest_digest
                );
            }
            Ok(Outcome::OK)
        }
        Command::Save {
            graph,
            image,
            output,
        } => {
            let g = graph.open()?;
            let img = g.save(&image, &output)?;
            println!("Saved {} to {}", img.id, output.display());
            Ok(Outcome::OK)
        }
        Command::Rm { graph, images } => {
            let g = graph.open()?;
            let mut failed = false;
            for what in images {
                match g.remove_image(&what) {
                    Ok(img) => println!("Removed {what} ({})", img.id),
                    Err(e) => {
                        eprintln!("agent: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { Outcome::FAILED } else { Outcome::OK })
        }
        Command::Prune { graph, all } => {
            let g = graph.open()?;
            let r = g.prune(all)?;
            for i in &r.images {
                println!("Removed image {i}");
            }
            println!(
                "Removed {} image(s), {} layer(s), {} blob(s), {} temporary file(s)",
                r.images.len(),
                r.layers.len(),
                r.blobs,
                r.temp_files
            );
            Ok(Outcome::OK)
        }
    }
}

/// The layer id of `container`: a container the exec driver knows by that name or id (its
/// runtime id is its layer's id), else `container` itself (a layer made with the graph alone).
fn layer_of(state_dir: &Path, container: &str) -> String {
    crate::driver::exec::paths::resolve_name(state_dir, container)
        .unwrap_or_else(|_| container.to_string())
}

pub fn export(mut args: ExportArgs) -> crate::Result<Outcome> {
    let s = args.graph.settings()?;
    let g = args.graph.open_with(&s)?;
    args.container = layer_of(&s.state_dir, &args.container);
    if args.output == Path::new("-") {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        g.export(&args.container, &mut lock)?;
        lock.flush().map_err(|e| crate::Error::Io {
            context: "write standard output".into(),
            source: e,
        })?;
        return Ok(Outcome::OK);
    }
    let out = &args.output;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".agent-export-{}.tmp", std::process::id()));
    let io_err = |context: String| move |e| crate::Error::Io { context, source: e };
    let result = (|| -> crate::Result<()> {
        let f = std::fs::File::create(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
        let mut w = std::io::BufWriter::new(f);
        g.export(&args.container, &mut w)?;
        let f = w.into_inner().map_err(|e| crate::Error::Io {
            context: format!("write {}", tmp.display()),
            source: e.into_error(),
        })?;
        f.sync_all()
            .map_err(io_err(format!("fsync {}", tmp.display())))?;
        std::fs::rename(&tmp, out).map_err(io_err(format!("rename to {}", out.display())))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    Ok(Outcome::OK)
}
