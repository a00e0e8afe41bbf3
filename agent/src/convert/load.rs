//! Reading the compose files of one project into one tree, as `docker compose -f a -f b` does
//! (compose-go's `loader.loadYamlModel`): each file is parsed ([`super::tagged`], keeping
//! `!reset`/`!override` and which file each position is in), interpolated on its own
//! ([`super::interpolate`], the same variables for every file), its services' `extends` resolved
//! ([`super::extends`]), and merged over what the files before it gave ([`super::merge`]).
//! Relative paths in every file stay relative to the project directory (the first file's), as in
//! Compose; only a service taken from another file by `extends` has its paths made absolute
//! against that file's directory.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::manifest::node::{Node, NodeKind};

use super::tagged::{self, MAX_FILES, MAX_LINES, Tags, decode};
use super::{Error, Interpolated, extends, interpolate, merge};

/// The largest compose file read (the manifests' own limit is 1 MiB; compose files with long
/// `x-` blocks are larger, and a file named by `extends` may be anything, `/dev/zero` too).
const MAX_BYTES: u64 = 16 << 20;

/// The files read so far and what was read from them.
pub struct Loader<'a> {
    /// The files, by the index kept in each position's line ([`super::tagged`]).
    pub files: Vec<PathBuf>,
    /// The `!reset`/`!override` values of every file read.
    pub tags: Tags,
    /// Every substitution made, in every file.
    pub interpolated: Vec<Interpolated>,
    vars: &'a interpolate::Vars,
    /// Each file read, as read and interpolated (a file named by several `extends` is read once).
    read: HashMap<PathBuf, Node>,
    /// The files given, by absolute path: how messages name them.
    given: HashMap<PathBuf, PathBuf>,
}

impl<'a> Loader<'a> {
    pub fn new(vars: &'a interpolate::Vars) -> Self {
        Loader {
            files: Vec::new(),
            tags: Tags::new(),
            interpolated: Vec::new(),
            vars,
            read: HashMap::new(),
            given: HashMap::new(),
        }
    }

    /// Messages name the file at `path` (absolute) `given`, as the user wrote it (or as the
    /// `extends` naming it has it, relative to the file it is in); the first name given stays.
    pub fn name(&mut self, path: &Path, given: &Path) {
        self.given
            .entry(path.to_path_buf())
            .or_insert_with(|| given.to_path_buf());
    }

    /// How messages name the file at `path` (absolute).
    pub fn shown<'p>(&'p self, path: &'p Path) -> &'p Path {
        self.given.get(path).map_or(path, PathBuf::as_path)
    }

    /// The variables interpolation reads.
    pub fn vars(&self) -> &'a interpolate::Vars {
        self.vars
    }

    /// The file at `path` (absolute, `.` and `..` resolved) as a tree, interpolated.
    pub fn read(&mut self, path: &Path) -> Result<Node, Error> {
        if let Some(n) = self.read.get(path) {
            return Ok(n.clone());
        }
        let read = |source| Error::Read {
            path: self.shown(path).to_path_buf(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_BYTES + 1).read_to_string(&mut text))
            .map_err(read)?;
        if text.len() as u64 > MAX_BYTES {
            return Err(Error::At {
                file: self.shown(path).to_path_buf(),
                line: 1,
                col: 1,
                message: format!("larger than {} MiB: not a compose file", MAX_BYTES >> 20),
            });
        }
        self.text(path, &text)
    }

    /// [`Loader::read`] of `text`, the content of `path`.
    pub fn text(&mut self, path: &Path, text: &str) -> Result<Node, Error> {
        let shown = self.shown(path).to_path_buf();
        let at = |line, col, message: String| Error::At {
            file: shown.clone(),
            line,
            col,
            message,
        };
        if self.files.len() >= MAX_FILES {
            return Err(at(
                1,
                1,
                format!("more than {MAX_FILES} compose files in one project (with `extends`)"),
            ));
        }
        if text.lines().count() >= MAX_LINES as usize {
            return Err(at(
                1,
                1,
                format!("more than {MAX_LINES} lines: not a compose file"),
            ));
        }
        let index = self.files.len();
        self.files.push(shown.clone());
        let mut root =
            tagged::parse(text, index, &mut self.tags).map_err(|e| at(e.line, e.col, e.message))?;
        if !matches!(root.kind, NodeKind::Map(_)) {
            return Err(self.error(
                root.line,
                root.col,
                format!(
                    "expected a mapping with `services:`, found {}",
                    root.describe()
                ),
            ));
        }
        interpolate::tree(&mut root, self.vars, &mut self.interpolated)
            .map_err(|(line, col, message)| self.error(line, col, message))?;
        self.read.insert(path.to_path_buf(), root.clone());
        Ok(root)
    }

    /// The file and the line in it of an encoded line.
    pub fn place(&self, line: u32) -> (PathBuf, u32) {
        place(&self.files, line)
    }

    /// An error at an encoded position.
    pub fn error(&self, line: u32, col: u32, message: String) -> Error {
        let (file, line) = self.place(line);
        Error::At {
            file,
            line,
            col,
            message,
        }
    }
}

/// The file and the line in it of an encoded line, among `files`.
pub fn place(files: &[PathBuf], line: u32) -> (PathBuf, u32) {
    let (index, line) = decode(line);
    (files.get(index).cloned().unwrap_or_default(), line)
}

/// The files `paths` (absolute) read, their `extends` resolved and merged in order: the
/// project's compose tree.
pub fn project(ld: &mut Loader, paths: &[PathBuf]) -> Result<Node, Error> {
    let mut merged: Option<Node> = None;
    for path in paths {
        let mut root = ld.read(path)?;
        extends::resolve_file(ld, &mut root, path)?;
        merged = Some(match merged {
            None => merge::strip(root, &ld.tags),
            Some(earlier) => merge::files(earlier, root, &ld.tags)
                .map_err(|(line, col, message)| ld.error(line, col, message))?,
        });
    }
    merged.ok_or_else(|| Error::Invalid("no compose file given".into()))
}

/// [`project`] of one file given as text (the tests' way in).
#[cfg(test)]
pub fn project_text(ld: &mut Loader, path: &Path, text: &str) -> Result<Node, Error> {
    let mut root = ld.text(path, text)?;
    extends::resolve_file(ld, &mut root, path)?;
    Ok(merge::strip(root, &ld.tags))
}
