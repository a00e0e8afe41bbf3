//! `agent convert compose`: a docker-compose project (the Compose spec: version-less files and
//! the v2/v3 formats; one file, several `-f` files, or the file found with its override file)
//! turned into agent manifests.
//!
//! # Steps
//!
//! 1. Each file is parsed by the manifests' own YAML stack ([`crate::manifest::node`]:
//!    serde-saphyr, the same budgets, anchors and merge keys, every value with its line and
//!    column), keeping Compose's `!reset`/`!override` tags and which file each position is in
//!    ([`tagged`]: the file's index rides in the line's top bits and is decoded where a position
//!    leaves the converter).
//! 2. Every string value of each file is interpolated ([`interpolate`]) from the environment,
//!    then the `.env` file of the project directory (the first file's) ([`dotenv`]), as Compose
//!    does; each substitution is recorded.
//! 3. Each file's services' `extends` are resolved ([`extends`]), then the files are merged in
//!    order by the Compose specification's merge rules ([`merge`], [`load`]), as
//!    `docker compose -f a -f b` does.
//! 4. The top level ([`top`], [`networks`]) becomes Volume, Network and Secret manifests,
//!    each service ([`service`]) one Container manifest. Every key of every service is looked at: it is
//!    mapped, or recorded in [`Conversion::not_carried`] with its `file:line:col` (the file it is
//!    written in) and the reason. Nothing is dropped silently. Adjustments (a name made a DNS
//!    label, a bare image name given its `:latest`, a chosen subnet) go to
//!    [`Conversion::changed`].
//! 5. The manifests are built from the agent's own types (each field is read by the type's own
//!    deserializer, so what is written is what the agent reads) and checked together by the
//!    validation `agent validate` runs ([`crate::manifest::Loaded::from_sources`]); a value it
//!    refuses in a Container's spec is taken out and reported (`check`), anything else it
//!    refuses is an error, not a file.
//! 6. [`render`] writes them: one file per object in a directory, or a multi-document stream.
//!
//! The mapping, the merge rules, and what does not map and why, are documented in
//! `docs/convert.md`.

mod dotenv;
mod extends;
mod interpolate;
mod load;
mod merge;
mod mounts;
mod networks;
pub mod render;
mod service;
mod service_io;
mod service_run;
mod shell;
mod tagged;
mod top;
mod value;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::manifest::node::{Key, Node};
use crate::manifest::{Ipv4Cidr, Manifest};

pub use interpolate::{From as VarFrom, Use as Interpolated};

/// What the caller can choose.
#[derive(Debug, Clone)]
pub struct Options {
    /// The project name (Compose's `-p`); default the file's `name:`, then
    /// `COMPOSE_PROJECT_NAME`, then the directory holding the file.
    pub project_name: Option<String>,
    /// Services with `profiles:` are converted only when one of theirs is listed here
    /// (Compose's `--profile`).
    pub profiles: Vec<String>,
    /// Where subnets of networks that do not name one are taken from, a /24 each.
    pub subnet_pool: Ipv4Cidr,
    /// The environment interpolation reads (before `.env`).
    pub env: BTreeMap<String, String>,
}

/// The default pool of subnets for converted networks: next to the agent's default network
/// (10.213.0.0/16), not overlapping it.
pub const DEFAULT_SUBNET_POOL: &str = "10.214.0.0/16";

impl Default for Options {
    fn default() -> Self {
        Options {
            project_name: None,
            profiles: Vec::new(),
            subnet_pool: DEFAULT_SUBNET_POOL
                .parse()
                .unwrap_or_else(|_| unreachable!("constant subnet")),
            env: BTreeMap::new(),
        }
    }
}

/// The outcome of a conversion.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// The (first) compose file, as given.
    pub file: PathBuf,
    /// Every file read, in order: the files given (or found) and those `extends` names.
    pub files: Vec<PathBuf>,
    /// The project name used for volume and network names.
    pub project: String,
    /// The manifests, in the order they are written: secrets, volumes, networks, containers.
    pub objects: Vec<Converted>,
    /// Keys and values that could not be carried over, with the reason.
    pub not_carried: Vec<Note>,
    /// What was carried over in another form than written.
    pub changed: Vec<Note>,
    /// Every variable substitution.
    pub interpolated: Vec<Interpolated>,
}

/// One manifest and the part of the compose file it comes from.
#[derive(Debug, Clone)]
pub struct Converted {
    pub manifest: Manifest,
    /// `services.web`, `volumes.db-data`, ...
    pub from: String,
    /// The compose file the key `from` is written in (with `line` and `col` there).
    pub file: PathBuf,
    pub line: u32,
    pub col: u32,
}

/// A remark about one key of the compose file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    /// The compose file the key is written in.
    pub file: PathBuf,
    pub line: u32,
    pub col: u32,
    /// The key's path, e.g. `services.web.build`.
    pub key: String,
    pub message: String,
}

/// Why a conversion did not happen at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A problem at a place in the compose file (YAML syntax, a required variable unset, no
    /// services, ...).
    #[error("{}:{line}:{col}: {message}", file.display())]
    At {
        file: PathBuf,
        line: u32,
        col: u32,
        message: String,
    },
    /// The converted manifests do not pass the agent's validation (each problem on a line).
    #[error(
        "the compose file asks for what the agent refuses (or the converter has a bug: please report it if the file is right):\n{0}"
    )]
    Invalid(String),
}

/// The file names Compose looks for in a directory when it is given none, in its order
/// (compose-go's `cli.DefaultFileNames`).
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// The override files Compose merges into the file it found when it is given none, in its order
/// (compose-go's `cli.DefaultOverrideFileNames`): the first that exists is merged.
pub const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// The compose file of `dir` as `docker compose` finds it without `-f`: the first of
/// [`DEFAULT_FILES`] that exists.
pub fn find_default(dir: &Path) -> Option<PathBuf> {
    DEFAULT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// The files `docker compose` reads in `dir` without `-f`: the first of [`DEFAULT_FILES`] that
/// exists, and the first of [`OVERRIDE_FILES`] that exists beside it, merged into it.
pub fn default_files(dir: &Path) -> Option<Vec<PathBuf>> {
    let found = find_default(dir)?;
    let over = OVERRIDE_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file());
    Some(std::iter::once(found).chain(over).collect())
}

/// Converts the compose file at `path` alone.
pub fn convert_file(path: &Path, opts: &Options) -> Result<Conversion, Error> {
    convert_files(&[path.to_path_buf()], opts)
}

/// Converts the project the compose files `paths` make, merged in order as
/// `docker compose -f a -f b` merges them ([`merge`]); the project directory (relative paths,
/// `.env`, the default project name) is the first file's directory.
pub fn convert_files(paths: &[PathBuf], opts: &Options) -> Result<Conversion, Error> {
    let Some(path) = paths.first() else {
        return Err(Error::Invalid("no compose file given".into()));
    };
    let abs = |p: &Path| {
        absolute(p).map_err(|source| Error::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let dir = abs(path.parent().unwrap_or(Path::new(".")))?;
    let dotenv_path = dir.join(".env");
    let dotenv = match std::fs::read(&dotenv_path) {
        Ok(bytes) => dotenv::parse(&bytes, &opts.env).map_err(|(line, e)| Error::At {
            file: dotenv_path.clone(),
            line,
            col: 1,
            message: e,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(source) => {
            return Err(Error::Read {
                path: dotenv_path,
                source,
            });
        }
    };
    let vars = interpolate::Vars {
        env: opts.env.clone(),
        dotenv,
    };
    let absolute: Vec<PathBuf> = paths.iter().map(|p| abs(p)).collect::<Result<_, _>>()?;
    let mut ld = load::Loader::new(&vars);
    for (a, given) in absolute.iter().zip(paths) {
        ld.name(a, given);
    }
    let root = load::project(&mut ld, &absolute)?;
    convert_tree(path, &dir, root, ld, opts)
}

/// Converts compose text, one file alone; `dir` is the (absolute) directory relative paths are
/// taken from.
#[cfg(test)]
fn convert_text(
    path: &Path,
    dir: &Path,
    text: &str,
    vars: &interpolate::Vars,
    opts: &Options,
) -> Result<Conversion, Error> {
    let mut ld = load::Loader::new(vars);
    let root = load::project_text(&mut ld, path, text)?;
    convert_tree(path, dir, root, ld, opts)
}

/// Converts the project's merged compose tree; `path` is the first file, `dir` the (absolute)
/// project directory.
fn convert_tree(
    path: &Path,
    dir: &Path,
    root: Node,
    ld: load::Loader,
    opts: &Options,
) -> Result<Conversion, Error> {
    let vars = ld.vars();
    let files = ld.files.clone();
    let interpolated = ld.interpolated.clone();
    let project = project_name(&root, dir, opts, vars);
    let mut cx = Cx {
        file: path.to_path_buf(),
        files: files.clone(),
        dir: dir.to_path_buf(),
        vars,
        project: project.clone(),
        not_carried: Vec::new(),
        changed: Vec::new(),
        interpolated,
        services: BTreeMap::new(),
        volumes: BTreeMap::new(),
        bind_volumes: BTreeMap::new(),
        networks: BTreeMap::new(),
        secrets: BTreeMap::new(),
        configs: BTreeMap::new(),
        extra_volumes: Vec::new(),
        default_network: None,
        origins: BTreeMap::new(),
        host_gateway: Vec::new(),
    };
    // Errors are made at encoded positions (`super::tagged`), with the first file's name.
    let placed = |e: Error| match e {
        Error::At {
            line, col, message, ..
        } => {
            let (file, line) = load::place(&files, line);
            Error::At {
                file,
                line,
                col,
                message,
            }
        }
        other => other,
    };
    let mut objects = top::convert(&mut cx, &root, opts).map_err(placed)?;
    check(&mut cx, &mut objects).map_err(placed)?;
    let Cx {
        mut not_carried,
        mut changed,
        mut interpolated,
        ..
    } = cx;
    not_carried.sort_by_key(|n| (n.line, n.col));
    changed.sort_by_key(|n| (n.line, n.col));
    interpolated.sort_by_key(|u| (u.line, u.col));
    for n in not_carried.iter_mut().chain(changed.iter_mut()) {
        (n.file, n.line) = load::place(&files, n.line);
    }
    for u in &mut interpolated {
        (u.file, u.line) = load::place(&files, u.line);
    }
    for o in &mut objects {
        (o.file, o.line) = load::place(&files, o.line);
    }
    Ok(Conversion {
        file: path.to_path_buf(),
        files,
        project,
        objects,
        not_carried,
        changed,
        interpolated,
    })
}

/// Runs the agent's own validation over the manifests, as they will be written. What it refuses
/// in a Container's spec (a relative `workingDir`, a sysctl that is not namespaced, a memory limit
/// under the minimum, ...) is taken out and reported as not carried over with the validation's
/// own message, at the compose key it came from; then the check runs again (at most
/// [`MAX_CHECK_ROUNDS`] times). Anything else it refuses is a bug of the converter.
fn check(cx: &mut Cx, objects: &mut [Converted]) -> Result<(), Error> {
    for _ in 0..MAX_CHECK_ROUNDS {
        let sources: Vec<(PathBuf, Vec<u8>)> = objects
            .iter()
            .map(|o| {
                let text = render::document(o);
                (
                    PathBuf::from(render::file_name(&o.manifest)),
                    text.into_bytes(),
                )
            })
            .collect();
        let loaded = crate::manifest::Loaded::from_sources(sources);
        if loaded.is_valid() {
            return Ok(());
        }
        let diagnostics: Vec<crate::manifest::Diagnostic> = loaded.diagnostics().cloned().collect();
        let mut unhandled = Vec::new();
        let mut handled = 0;
        // Later list entries first, so that removing one does not shift the others.
        let mut sorted = diagnostics.clone();
        sorted.sort_by(|a, b| b.field.cmp(&a.field));
        for d in &sorted {
            if take_out(cx, objects, d) {
                handled += 1;
            } else {
                // Said at the part of the compose file the object comes from.
                let file = d.file.to_string_lossy();
                let from = objects
                    .iter()
                    .find(|o| render::file_name(&o.manifest) == file)
                    .map(|o| {
                        let (file, line) = load::place(&cx.files, o.line);
                        format!("{}:{line}:{}: {}: ", file.display(), o.col, o.from)
                    })
                    .unwrap_or_default();
                unhandled.push(format!("{from}{}: {}", d.field, d.message));
            }
        }
        if handled == 0 {
            return Err(Error::Invalid(unhandled.join("\n")));
        }
    }
    Err(Error::Invalid(format!(
        "still refused after taking out what agent validate refused {MAX_CHECK_ROUNDS} times"
    )))
}

/// Rounds of [`check`].
const MAX_CHECK_ROUNDS: usize = 8;

/// Takes the field diagnostic `d` is about out of its Container's spec and reports it; false
/// when `d` is not about a Container's spec field that can be taken out.
fn take_out(cx: &mut Cx, objects: &mut [Converted], d: &crate::manifest::Diagnostic) -> bool {
    use serde_json::Value;
    let file = d.file.to_string_lossy();
    let Some(o) = objects
        .iter_mut()
        .find(|o| render::file_name(&o.manifest) == file)
    else {
        return false;
    };
    let crate::manifest::Manifest::Container(c) = &mut o.manifest else {
        return false;
    };
    let Some(path) = d.field.strip_prefix("spec.") else {
        return false;
    };
    let Ok(Value::Object(mut spec)) = serde_json::to_value(&c.spec) else {
        return false;
    };
    // `field`, `field[i]...`, `field.key...` (the key may hold dots: sysctls).
    let end = path.find(['.', '[']).unwrap_or(path.len());
    let (field, rest) = path.split_at(end);
    let (removed, what) = match (spec.get_mut(field), rest.chars().next()) {
        (Some(_), None) => (spec.remove(field).is_some(), field.to_string()),
        (Some(Value::Array(items)), Some('[')) => {
            let index = rest[1..]
                .split(']')
                .next()
                .and_then(|i| i.parse::<usize>().ok());
            match index {
                Some(i) if i < items.len() => {
                    items.remove(i);
                    (true, format!("{field}[{i}]"))
                }
                _ => (false, String::new()),
            }
        }
        (Some(Value::Object(map)), Some('.')) => {
            let key = &rest[1..];
            // A map of settings (`resources.memory`) or of names with dots (`sysctls.vm.x`).
            let key = if map.contains_key(key) {
                key.to_string()
            } else {
                key.split(['.', '[']).next().unwrap_or(key).to_string()
            };
            (map.remove(&key).is_some(), format!("{field}.{key}"))
        }
        _ => (false, String::new()),
    };
    if !removed {
        return false;
    }
    match serde_json::from_value::<crate::manifest::ContainerSpec>(Value::Object(spec)) {
        Ok(spec) => c.spec = spec,
        Err(_) => return false,
    }
    let origins = cx.origins.get(&c.metadata.name);
    let found = origins.and_then(|m| {
        m.get(&what).or_else(|| m.get(field)).or_else(|| {
            m.get(&format!(
                "{field}.{}",
                what.rsplit('.').next().unwrap_or("")
            ))
        })
    });
    let (key, loc) = match found {
        Some((k, loc)) => (format!("{}.{k}", o.from), *loc),
        None => (o.from.clone(), (o.line, o.col)),
    };
    cx.drop(
        loc,
        key,
        format!(
            "not carried over: the agent refuses it ({what}): {}",
            d.message
        ),
    );
    true
}

/// Compose's project name: `-p`, the file's `name:`, `COMPOSE_PROJECT_NAME` (environment, then
/// `.env`), the directory name; made a DNS label.
fn project_name(root: &Node, dir: &Path, opts: &Options, vars: &interpolate::Vars) -> String {
    let raw = opts
        .project_name
        .clone()
        .or_else(|| root.get("name").and_then(value::scalar))
        .or_else(|| vars.get("COMPOSE_PROJECT_NAME").map(|(v, _)| v.to_string()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let name = dns_label(&raw);
    if name.is_empty() {
        "compose".into()
    } else {
        name
    }
}

/// `s` made a DNS label as manifests want names: lowercase, `[a-z0-9-]`, other characters
/// (`_`, `.`) turned into `-`, no `-` at either end, at most 63 characters.
pub fn dns_label(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out: String = out.chars().take(63).collect();
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// `p` made absolute against the current directory, `.` and `..` resolved lexically.
fn absolute(p: &Path) -> std::io::Result<PathBuf> {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    Ok(lexical(&joined))
}

/// Removes `.` and resolves `..` without touching the file system.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Spec field (`workingDir`, `resources.memory`, `volumes[2]`) -> the compose key that set it
/// and where that key is.
type Origins = BTreeMap<String, (String, (u32, u32))>;

/// The state of one conversion: where notes go and the names given so far.
pub(crate) struct Cx<'a> {
    /// The first compose file (errors name it with an encoded line, placed at the end).
    file: PathBuf,
    /// Every file read, by the index in each position's line ([`tagged`]).
    files: Vec<PathBuf>,
    /// The directory relative paths are resolved against (absolute).
    dir: PathBuf,
    vars: &'a interpolate::Vars,
    project: String,
    not_carried: Vec<Note>,
    changed: Vec<Note>,
    interpolated: Vec<Interpolated>,
    /// Compose service name -> Container name, for the services converted.
    services: BTreeMap<String, String>,
    /// Compose volume key -> Volume name.
    volumes: BTreeMap<String, String>,
    /// Compose volume key -> host directory, for volumes of the local driver that bind one
    /// (`driver_opts: {type: none, o: bind, device: DIR}`): mounted as binds.
    bind_volumes: BTreeMap<String, PathBuf>,
    /// Compose network key -> Network name.
    networks: BTreeMap<String, String>,
    /// Compose secret key -> Secret name (file secrets only).
    secrets: BTreeMap<String, String>,
    /// Compose config key -> absolute host file (file configs only).
    configs: BTreeMap<String, PathBuf>,
    /// Volumes services ask for that the top level does not declare (anonymous volumes).
    extra_volumes: Vec<Converted>,
    /// The Network name of the project's default network, once a service needs it.
    default_network: Option<String>,
    /// Per Container: which compose key (and where) set each spec field (`workingDir`,
    /// `resources.memory`, `volumes[2]`), for what the validation refuses.
    origins: BTreeMap<String, Origins>,
    /// `extra_hosts` entries `HOST:host-gateway`, filled in once the subnets are known.
    host_gateway: Vec<HostGateway>,
}

/// An `extra_hosts` entry `HOST:host-gateway` of a Container: the host's address on the
/// container's first network, known once the networks have their subnets.
struct HostGateway {
    container: String,
    host: String,
    loc: (u32, u32),
    /// The compose key (`services.web.extra_hosts`).
    key: String,
}

impl Cx<'_> {
    /// Records that `key` (at `line`:`col`) is not carried over, and why.
    fn drop(&mut self, (line, col): (u32, u32), key: impl Into<String>, why: impl Into<String>) {
        self.not_carried.push(Note {
            file: PathBuf::new(),
            line,
            col,
            key: key.into(),
            message: why.into(),
        });
    }

    /// Records that `key` is carried over in another form than written.
    fn change(&mut self, (line, col): (u32, u32), key: impl Into<String>, what: impl Into<String>) {
        self.changed.push(Note {
            file: PathBuf::new(),
            line,
            col,
            key: key.into(),
            message: what.into(),
        });
    }

    /// A relative host path (`./data`, `data`, `~/x`) made absolute against the compose file's
    /// directory (or `$HOME`).
    fn host_path(&self, p: &str) -> PathBuf {
        if let Some(rest) = p
            .strip_prefix("~/")
            .or(if p == "~" { Some("") } else { None })
        {
            let home = self
                .vars
                .env
                .get("HOME")
                .cloned()
                .unwrap_or_else(|| "/root".into());
            return lexical(&Path::new(&home).join(rest));
        }
        let path = Path::new(p);
        if path.is_absolute() {
            lexical(path)
        } else {
            lexical(&self.dir.join(path))
        }
    }
}

/// Where a key starts.
fn at_key(k: &Key) -> (u32, u32) {
    (k.line, k.col)
}

/// Where a value starts.
fn at(n: &Node) -> (u32, u32) {
    (n.line, n.col)
}

#[cfg(test)]
mod tests;
