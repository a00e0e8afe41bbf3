//! A YAML document as a tree of nodes that remember their line and column.
//!
//! The manifests are read in two steps: serde-saphyr parses the text into this tree (with hard
//! budgets, see [`parse_documents`]), then [`super::de`] turns the tree into the typed documents.
//! Keeping the tree lets every later check (duplicate names, dangling references, port
//! conflicts) point at the exact line and column of the value it is about, through
//! [`Node::find`].

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// Limits applied while parsing one file. With a 1 MiB input cap they keep a parse well under
/// 64 MiB of memory and a fraction of a second, whatever the input (alias bombs included).
pub const MAX_DEPTH: usize = 32;
/// Most nodes (scalars, sequences, mappings) per file, counting alias expansions.
pub const MAX_NODES: usize = 100_000;
/// Most events replayed from aliases per file.
pub const MAX_ALIAS_REPLAY: usize = 20_000;
/// Most documents per file.
pub const MAX_DOCUMENTS: usize = 256;

/// One YAML node and where it starts (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: u32,
    pub col: u32,
    pub kind: NodeKind,
}

/// The value of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub line: u32,
    pub col: u32,
}

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

impl Node {
    /// A short description of the value for error messages: `string "x"`, `integer 5`, `a mapping`.
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Null => "null".into(),
            NodeKind::Bool(b) => format!("boolean {b}"),
            NodeKind::Int(i) => format!("integer {i}"),
            NodeKind::UInt(u) => format!("integer {u}"),
            NodeKind::Float(f) => format!("number {f}"),
            NodeKind::Str(s) => format!("string {s:?}"),
            NodeKind::Seq(_) => "a list".into(),
            NodeKind::Map(_) => "a mapping".into(),
        }
    }

    /// The value of key `name` of a mapping node.
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.entry(name).map(|(_, v)| v)
    }

    /// Key and value of entry `name` of a mapping node.
    pub fn entry(&self, name: &str) -> Option<(&Key, &Node)> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.name == name)
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// The node at `path`, or the deepest node on the way there that exists (so a location is
    /// always found, if not always the exact one).
    pub fn find(&self, path: &[Step<'_>]) -> &Node {
        self.find_depth(path).0
    }

    /// Like [`Node::find`], also returning how many steps of `path` were followed.
    pub fn find_depth(&self, path: &[Step<'_>]) -> (&Node, usize) {
        let mut node = self;
        let mut depth = 0;
        for step in path {
            let next = match (step, &node.kind) {
                (Step::Key(k), NodeKind::Map(_)) => node.get(k),
                (Step::Index(i), NodeKind::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
            depth += 1;
        }
        (node, depth)
    }

    /// Removes the mapping entry whose key or value starts at `line`:`col`, or the sequence item
    /// that does, searching from the top (the outermost match wins). Returns the removed
    /// entry's key name (`Some("")` for a sequence item), or `None` when nothing below this node
    /// starts there. Used to read a document again past a field that failed, so that every
    /// problem of a file is reported in one round.
    pub fn remove_at(&mut self, line: u32, col: u32) -> Option<String> {
        match &mut self.kind {
            NodeKind::Map(entries) => {
                if let Some(i) = entries.iter().position(|(k, v)| {
                    (k.line == line && k.col == col) || (v.line == line && v.col == col)
                }) {
                    return Some(entries.remove(i).0.name);
                }
                entries.iter_mut().find_map(|(_, v)| v.remove_at(line, col))
            }
            NodeKind::Seq(items) => {
                if let Some(i) = items.iter().position(|v| v.line == line && v.col == col) {
                    items.remove(i);
                    return Some(String::new());
                }
                items.iter_mut().find_map(|v| v.remove_at(line, col))
            }
            _ => None,
        }
    }

    /// The string value, if this is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A YAML location as 1-based line and column (the convert's tag-keeping reader shares it).
pub(crate) fn loc_of(l: &serde_saphyr::Location) -> (u32, u32) {
    let line = u32::try_from(l.line()).unwrap_or(u32::MAX).max(1);
    let col = u32::try_from(l.column()).unwrap_or(u32::MAX).max(1);
    (line, col)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<NodeKind>::deserialize(d)?;
        let (line, col) = loc_of(&s.referenced);
        Ok(Node {
            line,
            col,
            kind: s.value,
        })
    }
}

impl<'de> Deserialize<'de> for NodeKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = NodeKind;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }
    fn visit_none<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeKind, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, v: bool) -> Result<NodeKind, E> {
        Ok(NodeKind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<NodeKind, E> {
        Ok(NodeKind::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<NodeKind, E> {
        Ok(i64::try_from(v).map_or(NodeKind::UInt(v), NodeKind::Int))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<NodeKind, E> {
        i64::try_from(v)
            .map(NodeKind::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<NodeKind, E> {
        u64::try_from(v)
            .map(NodeKind::UInt)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<NodeKind, E> {
        Ok(NodeKind::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<NodeKind, E> {
        Err(E::custom("binary values are not allowed in manifests"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeKind, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(NodeKind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeKind, A::Error> {
        let mut entries: Vec<(Key, Node)> = Vec::new();
        while let Some(k) = map.next_key::<Spanned<KeyText>>()? {
            let (line, col) = loc_of(&k.referenced);
            let v = map.next_value::<Node>()?;
            entries.push((
                Key {
                    name: k.value.0,
                    line,
                    col,
                },
                v,
            ));
        }
        Ok(NodeKind::Map(entries))
    }
}

/// A mapping key read as text (`80: x` gives "80"); collections as keys are refused.
pub(crate) struct KeyText(pub(crate) String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a plain mapping key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".into()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses every document of `text` into a node tree, within the budgets above. Empty documents
/// (a lone `---`, comments only) are skipped; the caller decides whether none at all is an error.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, ParseError> {
    parse_with(text, false)
}

/// [`parse_documents`] with YAML 1.2 booleans only (`true`/`false`; `yes`, `no`, `on`, `off`,
/// `N` stay strings), as Compose files are read (go-yaml v3 into untyped values).
pub fn parse_documents_yaml12(text: &str) -> Result<Vec<Node>, ParseError> {
    parse_with(text, true)
}

/// [`parse_documents_yaml12`] into another tree type, within the same budgets: for readers that
/// keep more of the YAML than [`Node`] does (the compose converter reads Compose's `!reset` and
/// `!override` tags).
pub fn parse_documents_yaml12_as<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<Vec<T>, ParseError> {
    parse_with(text, true)
}

fn parse_with<T: serde::de::DeserializeOwned>(
    text: &str,
    strict_booleans: bool,
) -> Result<Vec<T>, ParseError> {
    let options = serde_saphyr::options! {
        strict_booleans: strict_booleans,
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_documents: MAX_DOCUMENTS,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_events: 4 * MAX_NODES,
            max_total_scalar_bytes: 4 << 20,
            max_recorded_anchor_events: MAX_ALIAS_REPLAY,
            max_recorded_anchor_bytes: 4 << 20,
            max_merge_keys: 1_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_REPLAY,
            max_replay_stack_depth: 16,
        },
        with_snippet: false,
    };
    serde_saphyr::from_multiple_with_options::<T>(text, options).map_err(|e| {
        let loc = e.location();
        let (line, col) = loc.as_ref().map(loc_of).unwrap_or((1, 1));
        ParseError {
            line,
            col,
            message: describe_error(&e),
        }
    })
}

/// A YAML error in words a manifest author can act on, without the library's location suffix
/// (the location is reported separately).
fn describe_error(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    const BOMB: &str = "aliases (*name) expand to too much data; a manifest has no need for this many (alias bomb?)";
    match e.without_snippet() {
        E::AliasError { error, .. } => describe_error(error),
        E::DuplicateMappingKey { key: Some(k), .. } => format!("duplicate key `{k}` in a mapping"),
        E::DuplicateMappingKey { key: None, .. } => "duplicate key in a mapping".into(),
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => BOMB.into(),
        E::Budget { breach, .. } => match breach {
            B::Depth { .. } => format!("nested deeper than {MAX_DEPTH} levels"),
            B::Nodes { .. } => format!("more than {MAX_NODES} values (counting alias expansions)"),
            B::Documents { .. } => format!("more than {MAX_DOCUMENTS} documents"),
            B::Aliases { .. }
            | B::Anchors { .. }
            | B::AliasAnchorRatio { .. }
            | B::RecordedAnchorEvents { .. }
            | B::RecordedAnchorBytes { .. } => BOMB.into(),
            other => format!("the file exceeds a parsing limit ({other:?})"),
        },
        other => {
            let text = other.to_string();
            match text.find(" at line ") {
                Some(i) => text[..i].to_string(),
                None => text,
            }
        }
    }
}

/// A YAML syntax error or a budget breach, with where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: u32,
    pub col: u32,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_records_positions() {
        let docs =
            parse_documents("a: 1\nb:\n  - x\n  - {c: true}\n---\nz: null\n").expect("parse");
        assert_eq!(docs.len(), 2);
        let d = &docs[0];
        let (k, v) = d.entry("b").expect("b");
        assert_eq!((k.line, k.col), (2, 1));
        assert!(matches!(v.kind, NodeKind::Seq(_)));
        let c = d.find(&[Step::Key("b"), Step::Index(1), Step::Key("c")]);
        assert_eq!((c.line, c.col, &c.kind), (4, 9, &NodeKind::Bool(true)));
        let x = d.find(&[Step::Key("b"), Step::Index(0)]);
        assert_eq!((x.line, x.col), (3, 5));
        assert_eq!(docs[1].get("z").map(|n| &n.kind), Some(&NodeKind::Null));
    }

    #[test]
    fn empty_and_lone_separator_give_no_documents() {
        for text in ["", "---\n", "# only a comment\n", "---\n---\n"] {
            assert_eq!(parse_documents(text).map(|d| d.len()), Ok(0), "{text:?}");
        }
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let e = parse_documents("a: 1\nb: [1, 2\n").expect_err("unterminated");
        assert!(e.line >= 2, "{e:?}");
        let e = parse_documents("a: 1\na: 2\n").expect_err("duplicate key");
        assert_eq!(e.line, 2, "{e:?}");
    }

    #[test]
    fn alias_bomb_is_refused_quickly() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let started = std::time::Instant::now();
        let e = parse_documents(&text).expect_err("bomb");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert!(!e.message.is_empty());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse_documents(&text).is_err());
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&" ".repeat(i));
            text.push_str("a:\n");
        }
        assert!(parse_documents(&text).is_err());
    }
}
