//! Manifests: the typed model (serde + schemars), the intake of a directory ([`source`]: listing,
//! permissions, watching, reading), parsing and validation with `file:line:col` errors.
//!
//! # Public API (what the planner and the CLI use)
//!
//! ```no_run
//! use agent::manifest::{self, Manifest};
//! let loaded = manifest::load_paths(&["/etc/agent.d".into()])?;   // or manifest::load_dir(..)
//! for file in &loaded.files {
//!     match &file.outcome {
//!         Ok(objects) => { /* file.path, file.sha256, objects: Vec<Object> */ }
//!         Err(diagnostics) => { /* keep this file's last good version in force */ }
//!     }
//! }
//! for obj in loaded.objects() {            // every object of every valid file
//!     if let Manifest::Container(c) = &obj.manifest {
//!         println!("{} from {}:{}", c.metadata.name, obj.source.file.display(), obj.source.line);
//!     }
//! }
//! # Ok::<(), agent::manifest::Error>(())
//! ```
//!
//! - [`Loaded`]: one [`FileResult`] per manifest file, sorted by path. A file is either `Ok` with
//!   its [`Object`]s (each a typed [`Manifest`] plus its [`Source`] file, line and document
//!   index), or `Err` with every [`Diagnostic`] found in it. `sha256` is the hex digest of the
//!   file's bytes (also for failing files), so a watcher can tell whether a file changed.
//! - [`source`] is the one intake: [`load_paths`] for `agent plan` / `agent validate`, and the
//!   daemon's [`source::Watcher`] whose snapshots [`source::load`] turns into a [`Loaded`]. Both
//!   apply the same file-name rule, permission rule and parser.
//! - [`parse_bytes`] reads one file's bytes (no I/O), [`Loaded::from_sources`] reads a set of
//!   in-memory files and runs the checks across them: handy in tests of later stages.
//! - The typed model is in [`types`] (documents, Image/Volume/Network specs), [`container`]
//!   (Container spec), [`ports`], [`units`] (sizes, durations) and [`net`].
//!
//! # Reading a file
//!
//! 1. Only `*.yaml` / `*.yml` files count in a directory; dotfiles, `#` files, `~` backups,
//!    `.swp`, `.bak`, `.tmp` are ignored ([`is_manifest_name`]). Directories are not descended
//!    into.
//! 2. A file (or the directory really holding it, or the manifest directory) that someone other
//!    than root may change ([`source::perms`]), over [`MAX_FILE_SIZE`] (1 MiB), not UTF-8,
//!    containing NUL bytes, or holding no document (empty, comments only, a lone `---`) is
//!    refused.
//! 3. The YAML is parsed into a position-keeping tree ([`node`]) under hard budgets (depth 32,
//!    100 000 nodes, 20 000 alias-replayed events, 256 documents): alias bombs and deep nesting
//!    fail fast in bounded memory. Duplicate keys are errors.
//! 4. Each document is read into its typed form ([`de`]): unknown fields (with "did you mean"),
//!    wrong types and bad units are reported at the key or value's line and column with the field
//!    path, e.g. `web.yaml:12:7: spec.ports[1]: invalid port "80/icmp": ...`.
//! 5. [`validate`] checks each object (DNS-label names, absolute paths, ranges), then all files
//!    together: duplicate names (naming both files), dangling references (image, volume, network,
//!    link, volumesFrom, `container:` network mode), link/volumesFrom cycles, host port
//!    conflicts. A problem that involves another file is reported in the file that holds the
//!    offending reference (for duplicates: the later file in path order) and names the other.

pub mod container;
pub mod de;
pub mod depends;
pub mod device;
pub mod envfile;
mod load;
pub mod net;
pub mod node;
pub mod ports;
pub mod schema;
pub mod secret;
pub mod source;
pub mod types;
pub mod units;
pub mod validate;

use std::fmt;
use std::path::PathBuf;

pub use container::*;
pub use depends::{Condition, Dependency, DependsOn};
pub use load::*;
pub use ports::{PortMapping, PortRange, Protocol};
pub use secret::{SecretMode, SecretRef};
pub use source::{is_manifest_name, load_dir, load_paths};
pub use types::*;
pub use units::{ByteSize, Duration};

/// Errors of this module that are not about a manifest's content (those are [`Diagnostic`]s).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A path given to load does not exist or cannot be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A directory given to load may be changed by someone other than root.
    #[error(transparent)]
    Refused(#[from] source::perms::PermError),
}

/// One problem in a manifest file: where, which field, what is wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line and column.
    pub line: u32,
    pub column: u32,
    /// Field path within the document, e.g. `spec.ports[1]`; empty when about the whole file.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
    pub message: String,
    /// The other place involved (the first definition of a duplicate name, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related: Option<Related>,
}

/// A second location a [`Diagnostic`] refers to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Related {
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Related {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: field: message` (a file name with control characters is shown quoted
    /// and escaped: a newline in it must not forge a second line).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display().to_string();
        if file.chars().any(char::is_control) {
            write!(f, "{file:?}:{}:{}: ", self.line, self.column)?;
        } else {
            write!(f, "{file}:{}:{}: ", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests;
