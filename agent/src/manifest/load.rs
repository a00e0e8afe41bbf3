//! Parsing manifest files: bytes to typed, checked objects, one result per file. Which files
//! count and how they are read is [`super::source`]'s job.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::de::{did_you_mean, from_node};
use super::node::{Node, NodeKind, Step, parse_documents};
use super::types::{Kind, Manifest};
use super::{Diagnostic, validate};

/// Files larger than this are refused without being parsed.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Every manifest file found, each with its objects or its problems, sorted by path.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub files: Vec<FileResult>,
}

/// The outcome for one file.
#[derive(Debug, Clone)]
pub struct FileResult {
    pub path: PathBuf,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// The file's objects, or every problem found in it.
    pub outcome: Result<Vec<Object>, Vec<Diagnostic>>,
    /// Kinds and names its documents declare, as far as they could be read (also when the file
    /// fails), so that references into a failing file are not reported as dangling.
    pub(crate) declared: Vec<(Kind, String)>,
}

/// One valid document.
#[derive(Debug, Clone)]
pub struct Object {
    pub manifest: Manifest,
    pub source: Source,
    /// The parsed YAML, kept to point at fields in later checks.
    pub(crate) tree: Arc<Node>,
}

/// Where an object was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    pub file: PathBuf,
    /// Line and column where the document starts (1-based).
    pub line: u32,
    pub column: u32,
    /// Index of the document within its file (0-based, empty documents not counted).
    pub document: usize,
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        self.manifest.kind()
    }
    /// The object's name.
    pub fn name(&self) -> &str {
        self.manifest.name()
    }
    /// Line and column of the value at a field path (`["spec", "ports", 1]`), or of the nearest
    /// enclosing value that exists.
    pub fn locate(&self, path: &[Step<'_>]) -> (u32, u32) {
        let n = self.tree.find(path);
        (n.line, n.col)
    }

    /// Like [`Object::locate`], also returning how many steps of `path` exist in the YAML (a
    /// short form such as `"kv:db"` has no `container` key below it).
    pub fn locate_depth(&self, path: &[Step<'_>]) -> (u32, u32, usize) {
        let (n, depth) = self.tree.find_depth(path);
        (n.line, n.col, depth)
    }
}

impl FileResult {
    /// Whether the file loaded without problems.
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }

    /// A file that could not be read or was refused, with why (reported at its line 1).
    pub fn failed(path: &Path, message: String) -> FileResult {
        FileResult {
            path: path.to_path_buf(),
            sha256: String::new(),
            outcome: Err(vec![file_diag(path, message)]),
            declared: Vec::new(),
        }
    }
}

impl Loaded {
    /// Every object of every valid file, in file order.
    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        self.files
            .iter()
            .filter_map(|f| f.outcome.as_ref().ok())
            .flatten()
    }
    /// Every problem of every file, in file order.
    pub fn diagnostics(&self) -> impl Iterator<Item = &Diagnostic> {
        self.files
            .iter()
            .filter_map(|f| f.outcome.as_ref().err())
            .flatten()
    }
    /// Whether every file is valid.
    pub fn is_valid(&self) -> bool {
        self.files.iter().all(FileResult::is_ok)
    }
    /// Reads in-memory files (path, bytes) and checks them together. No I/O.
    pub fn from_sources(sources: impl IntoIterator<Item = (PathBuf, Vec<u8>)>) -> Loaded {
        Loaded::from_files(
            sources
                .into_iter()
                .map(|(p, b)| parse_bytes(&p, &b))
                .collect(),
        )
    }
    /// Checks files already parsed one by one ([`parse_bytes`]) together. No I/O.
    pub fn from_files(mut files: Vec<FileResult>) -> Loaded {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut loaded = Loaded { files };
        validate::check_across(&mut loaded);
        loaded
    }
}

fn file_diag(path: &Path, message: String) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        line: 1,
        column: 1,
        field: String::new(),
        message,
        related: None,
    }
}

/// Line and column (1-based, in characters) of byte offset `at` of `text`.
fn position(text: &[u8], at: usize) -> (u32, u32) {
    let before = &text[..at.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col).unwrap_or(u32::MAX),
    )
}

/// Reads one file's bytes into its objects, checking each object on its own (checks across
/// files are [`Loaded::from_sources`]' job). No I/O.
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> FileResult {
    parse_hashed(path, bytes, hex::encode(Sha256::digest(bytes)))
}

/// [`parse_bytes`] for bytes whose hex SHA-256 the caller already has.
pub(crate) fn parse_hashed(path: &Path, bytes: &[u8], sha256: String) -> FileResult {
    let mut declared = Vec::new();
    let outcome = parse_checked(path, bytes, &mut declared);
    FileResult {
        path: path.to_path_buf(),
        sha256,
        outcome,
        declared,
    }
}

fn parse_checked(
    path: &Path,
    bytes: &[u8],
    declared: &mut Vec<(Kind, String)>,
) -> Result<Vec<Object>, Vec<Diagnostic>> {
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(vec![file_diag(
            path,
            format!(
                "the file is larger than {MAX_FILE_SIZE} bytes (1 MiB), the limit for a manifest file"
            ),
        )]);
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        let (line, column) = position(bytes, at);
        return Err(vec![Diagnostic {
            line,
            column,
            ..file_diag(
                path,
                "the file holds binary data (a NUL byte); a manifest is UTF-8 YAML text".into(),
            )
        }]);
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let (line, column) = position(bytes, e.valid_up_to());
            return Err(vec![Diagnostic {
                line,
                column,
                ..file_diag(
                    path,
                    "the file is not valid UTF-8; a manifest is UTF-8 YAML text".into(),
                )
            }]);
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let docs = parse_documents(text).map_err(|e| {
        vec![Diagnostic {
            line: e.line,
            column: e.col,
            ..file_diag(path, format!("invalid YAML: {}", e.message))
        }]
    })?;
    if docs.is_empty() {
        return Err(vec![file_diag(
            path,
            "the file holds no manifest (it is empty, only comments, or only `---`); delete it or add a document with apiVersion, kind, metadata and spec".into(),
        )]);
    }
    let mut objects = Vec::new();
    let mut diags = Vec::new();
    for (index, doc) in docs.into_iter().enumerate() {
        if let Some(d) = declared_name(&doc) {
            declared.push(d);
        }
        match read_document(path, doc, index) {
            Ok(obj) => {
                let found = validate::check_object(&obj);
                if found.is_empty() {
                    objects.push(obj);
                } else {
                    diags.extend(found);
                }
            }
            Err(d) => diags.push(d),
        }
    }
    if diags.is_empty() {
        Ok(objects)
    } else {
        Err(diags)
    }
}

/// The kind and name a document declares, if both can be read.
fn declared_name(doc: &Node) -> Option<(Kind, String)> {
    let kind = match doc.get("kind")?.as_str()? {
        "Image" => Kind::Image,
        "Volume" => Kind::Volume,
        "Network" => Kind::Network,
        "Container" => Kind::Container,
        _ => return None,
    };
    let name = doc.get("metadata")?.get("name")?.as_str()?;
    Some((kind, name.to_string()))
}

const KINDS: [&str; 4] = ["Image", "Volume", "Network", "Container"];

fn read_document(path: &Path, doc: Node, index: usize) -> Result<Object, Diagnostic> {
    let at = |n: &Node, field: &str, message: String| Diagnostic {
        file: path.to_path_buf(),
        line: n.line,
        column: n.col,
        field: field.to_string(),
        message,
        related: None,
    };
    let NodeKind::Map(entries) = &doc.kind else {
        return Err(at(
            &doc,
            "",
            format!(
                "expected a manifest (a mapping with apiVersion, kind, metadata, spec), found {}",
                doc.describe()
            ),
        ));
    };
    let Some(kind_node) = doc.get("kind") else {
        return Err(at(
            &doc,
            "",
            format!("missing field `kind`; allowed kinds: {}", KINDS.join(", ")),
        ));
    };
    let kind = match kind_node.as_str() {
        Some("Image") => Kind::Image,
        Some("Volume") => Kind::Volume,
        Some("Network") => Kind::Network,
        Some("Container") => Kind::Container,
        other => {
            let hint = other
                .and_then(|k| did_you_mean(k, KINDS))
                .map(|m| format!(" (did you mean `{m}`?)"))
                .unwrap_or_default();
            return Err(at(
                kind_node,
                "kind",
                format!(
                    "unknown kind {}{hint}; allowed: {}",
                    other.map_or_else(|| kind_node.describe(), |k| format!("{k:?}")),
                    KINDS.join(", ")
                ),
            ));
        }
    };
    let stripped = Node {
        kind: NodeKind::Map(
            entries
                .iter()
                .filter(|(k, _)| k.name != "kind")
                .cloned()
                .collect(),
        ),
        ..doc.clone()
    };
    let manifest = match kind {
        Kind::Image => from_node(&stripped, "").map(Manifest::Image),
        Kind::Volume => from_node(&stripped, "").map(Manifest::Volume),
        Kind::Network => from_node(&stripped, "").map(Manifest::Network),
        Kind::Container => from_node(&stripped, "").map(Manifest::Container),
    }
    .map_err(|e| Diagnostic {
        file: path.to_path_buf(),
        line: e.line.max(1),
        column: e.col.max(1),
        field: e.path,
        message: e.message,
        related: None,
    })?;
    Ok(Object {
        manifest,
        source: Source {
            file: path.to_path_buf(),
            line: doc.line,
            column: doc.col,
            document: index,
        },
        tree: Arc::new(doc),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_characters() {
        assert_eq!(position(b"ab\ncd", 4), (2, 2));
        assert_eq!(position("é\nx".as_bytes(), 1), (1, 2));
        assert_eq!(position(b"", 0), (1, 1));
    }
}
