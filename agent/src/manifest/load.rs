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
        // A quote left open runs on over the following lines and the parser notices only where
        // the string ends: point at the quote that opened it.
        let (line, column, message) = match open_quote(text, e.line) {
            Some((l, c)) => (
                l,
                c,
                format!(
                    "invalid YAML: this quoted string is not closed on its line, so it runs on to line {} where the parser stops ({}); is a closing quote missing?",
                    e.line, e.message
                ),
            ),
            None => (e.line, e.col, format!("invalid YAML: {}", e.message)),
        };
        vec![Diagnostic {
            line,
            column,
            ..file_diag(path, message)
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
            Err(d) => diags.extend(d),
        }
    }
    if diags.is_empty() {
        Ok(objects)
    } else {
        Err(diags)
    }
}

/// Where the quoted scalar starts (1-based line and column) that opened on an earlier line than
/// `until`, was not closed on its own line and is still open when line `until` (where the
/// parser stopped) begins: the likely place of a missing closing quote. A quote counts as opening a
/// scalar where YAML starts one: at the start of a line's content or after `: `, `- `, `[`, `{`
/// or `,`; `#` outside quotes starts a comment.
fn open_quote(text: &str, until: u32) -> Option<(u32, u32)> {
    let mut open: Option<(char, u32, u32)> = None;
    let mut candidate = None;
    for (n, line) in text.lines().enumerate() {
        let line_no = u32::try_from(n + 1).unwrap_or(u32::MAX);
        if line_no >= until {
            break;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match open {
                Some((q, _, _)) => {
                    if q == '"' && c == '\\' {
                        i += 1;
                    } else if c == q {
                        if q == '\'' && chars.get(i + 1) == Some(&'\'') {
                            i += 1;
                        } else {
                            open = None;
                        }
                    }
                }
                None => {
                    let before = chars[..i].iter().rev().find(|c| !c.is_whitespace());
                    let spaced = i == 0 || chars[i - 1].is_whitespace();
                    if c == '#' && spaced {
                        break;
                    }
                    if (c == '"' || c == '\'') && matches!(before, None | Some('[' | '{' | ','))
                        || (c == '"' || c == '\'') && spaced && matches!(before, Some(':' | '-'))
                    {
                        let col = u32::try_from(i + 1).unwrap_or(u32::MAX);
                        open = Some((c, line_no, col));
                    }
                }
            }
            i += 1;
        }
        if let Some((_, l, c)) = open
            && l == line_no
        {
            candidate = Some((l, c));
        }
    }
    // A string that closed before the parser's stop is a legitimate multi-line string.
    open.and(candidate)
}

/// The kind and name a document declares, if both can be read.
fn declared_name(doc: &Node) -> Option<(Kind, String)> {
    let kind = match doc.get("kind")?.as_str()? {
        "Image" => Kind::Image,
        "Volume" => Kind::Volume,
        "Network" => Kind::Network,
        "Container" => Kind::Container,
        "Secret" => Kind::Secret,
        _ => return None,
    };
    let name = doc.get("metadata")?.get("name")?.as_str()?;
    Some((kind, name.to_string()))
}

const KINDS: [&str; 5] = ["Image", "Volume", "Network", "Container", "Secret"];

fn read_document(path: &Path, doc: Node, index: usize) -> Result<Object, Vec<Diagnostic>> {
    let at = |n: &Node, field: &str, message: String| {
        vec![Diagnostic {
            file: path.to_path_buf(),
            line: n.line,
            column: n.col,
            field: field.to_string(),
            message,
            related: None,
        }]
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
        Some("Secret") => Kind::Secret,
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
    // Every problem of the document at once: a field that fails to read is reported and taken
    // out of a copy of the tree, and the copy is read again (at most MAX_PROBLEMS rounds). A
    // field that is then missing because it was taken out is not reported again.
    let mut tree = stripped;
    let mut problems = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    let manifest = loop {
        let read = match kind {
            Kind::Image => from_node(&tree, "").map(Manifest::Image),
            Kind::Volume => from_node(&tree, "").map(Manifest::Volume),
            Kind::Network => from_node(&tree, "").map(Manifest::Network),
            Kind::Container => from_node(&tree, "").map(Manifest::Container),
            Kind::Secret => from_node(&tree, "").map(Manifest::Secret),
        };
        let e = match read {
            Ok(m) => break Some(m),
            Err(e) => e,
        };
        let consequence = e.message.starts_with("missing field `")
            && removed
                .iter()
                .any(|name| !name.is_empty() && e.message.contains(&format!("`{name}`")));
        if consequence {
            break None;
        }
        let (line, col) = (e.line.max(1), e.col.max(1));
        problems.push(Diagnostic {
            file: path.to_path_buf(),
            line,
            column: col,
            field: e.path,
            message: e.message,
            related: None,
        });
        if problems.len() >= MAX_PROBLEMS {
            break None;
        }
        match tree.remove_at(line, col) {
            Some(name) => removed.push(name),
            None => break None,
        }
    };
    let object = |manifest| Object {
        manifest,
        source: Source {
            file: path.to_path_buf(),
            line: doc.line,
            column: doc.col,
            document: index,
        },
        tree: Arc::new(doc.clone()),
    };
    match manifest {
        Some(m) if problems.is_empty() => Ok(object(m)),
        // The rest of the document read: its own checks run too, except those that mention a
        // field taken out (their complaint would be a consequence of the first problem).
        Some(m) => {
            problems.extend(validate::check_object(&object(m)).into_iter().filter(|d| {
                !removed
                    .iter()
                    .any(|name| !name.is_empty() && d.message.contains(name.as_str()))
            }));
            problems.sort_by_key(|d| (d.line, d.column));
            Err(problems)
        }
        None => {
            problems.sort_by_key(|d| (d.line, d.column));
            Err(problems)
        }
    }
}

/// The most problems reported for one document.
const MAX_PROBLEMS: usize = 50;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_characters() {
        assert_eq!(position(b"ab\ncd", 4), (2, 2));
        assert_eq!(position("é\nx".as_bytes(), 1), (1, 2));
        assert_eq!(position(b"", 0), (1, 1));
    }

    fn problems(text: &str) -> Vec<(u32, u32, String)> {
        match parse_bytes(Path::new("/m.yaml"), text.as_bytes()).outcome {
            Ok(_) => Vec::new(),
            Err(d) => d.into_iter().map(|d| (d.line, d.column, d.field)).collect(),
        }
    }

    const HEAD: &str = "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n";

    #[test]
    fn every_problem_of_a_document_is_reported_in_order() {
        let text = format!(
            "{HEAD}  image: busybox\n  restart: sometimes\n  stopGracePeriod: 10 parsecs\n  ports: [\"abc\", \"80:80\"]\n  bogus: 1\n  volumes:\n    - {{volume: x, target: relative}}\n"
        );
        let found = problems(&text);
        let fields: Vec<&str> = found.iter().map(|(_, _, f)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.restart",
                "spec.stopGracePeriod",
                "spec.ports[0]",
                "spec.bogus",
                "spec.volumes[0].target"
            ],
            "{found:?}"
        );
        assert_eq!((found[0].0, found[0].1), (7, 12));
        assert_eq!((found[3].0, found[3].1), (10, 3));
    }

    #[test]
    fn a_field_taken_out_is_not_reported_again_as_missing_or_by_later_checks() {
        // `image` is required: after its bad value no "missing field `image`" follows.
        let found = problems(&format!("{HEAD}  image: [busybox]\n  hostnme: x\n"));
        let fields: Vec<&str> = found.iter().map(|(_, _, f)| f.as_str()).collect();
        assert_eq!(fields, ["spec.image", "spec.hostnme"], "{found:?}");
        // memorySwap needs memory: not said again when memory itself is wrong.
        let found = problems(&format!(
            "{HEAD}  image: busybox\n  resources:\n    memory: lots\n    memorySwap: 64Mi\n"
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].2, "spec.resources.memory");
    }

    #[test]
    fn long_form_ports_read_from_yaml() {
        // YAML integers reach PortRange as i64: every long-form port was refused as out of range.
        let text = format!(
            "{HEAD}  image: busybox\n  ports:\n    - {{hostPort: 7000, containerPort: 80}}\n    - {{containerPort: 81, protocol: udp}}\n"
        );
        assert_eq!(problems(&text), Vec::new());
        let text = format!("{HEAD}  image: busybox\n  ports:\n    - {{containerPort: -5}}\n");
        assert_eq!(problems(&text).len(), 1);
    }

    #[test]
    fn an_unclosed_quote_is_reported_where_it_opens() {
        let text = format!(
            "{HEAD}  image: busybox\n  command: [\"/bin/sh\", \"-c\", \"echo hi]\n  env:\n    A: b\n  restart: always\n  stopGracePeriod: \"10s\"\n"
        );
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].0, found[0].1), (7, 30), "{found:?}");
        // A multi-line string that is closed is not blamed for a later mistake.
        assert_eq!(open_quote("a: \"x\n  y\"\nb: [\n", 4), None);
        assert_eq!(open_quote("a: \"x\nb: 1\nc: \"2\"\n", 3), Some((1, 4)));
        // Apostrophes inside plain scalars and comments open nothing.
        assert_eq!(open_quote("a: don't\n# it's\nb: 1\n", 3), None);
    }
}
