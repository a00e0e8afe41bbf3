//! Reading one compose file into the position-keeping tree ([`crate::manifest::node`]) while
//! keeping what that tree drops and Compose needs: the `!reset` and `!override` tags, and which
//! file a position is in.
//!
//! A position is a `(line, col)` pair everywhere in the converter; to tell files apart, the file's
//! index among those read ([`super::load::Loader`]) is kept in the top bits of the line
//! ([`encode`]; [`LINE_BITS`] bits are left for the line). The first file has index 0, so its
//! positions are plain line numbers. The line is decoded where a position leaves the converter
//! (the report, errors, the files' header comments), and positions compare and sort by file
//! first.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Spanned, Tagged};

use crate::manifest::node::{self, Key, KeyText, Node, NodeKind, loc_of};

/// Bits of an encoded line that hold the line itself; the rest hold the file's index.
pub const LINE_BITS: u32 = 22;
/// Most files one conversion reads (the `-f` files, the override file and `extends` files).
pub const MAX_FILES: usize = 1 << (32 - LINE_BITS);
/// Most lines a compose file may have.
pub const MAX_LINES: u32 = (1 << LINE_BITS) - 1;

/// The line `line` of file `file` as one number.
pub fn encode(file: usize, line: u32) -> u32 {
    ((file as u32) << LINE_BITS) | (line & MAX_LINES)
}

/// (file index, line) of an encoded line.
pub fn decode(line: u32) -> (usize, u32) {
    ((line >> LINE_BITS) as usize, line & MAX_LINES)
}

/// Compose's merge tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// `!reset`: the key is taken out of what the earlier files set, and this value ignored.
    Reset,
    /// `!override`: this value replaces what the earlier files set, without merging.
    Override,
}

/// The tagged values of the files read, by (encoded) position.
pub type Tags = HashMap<(u32, u32), Tag>;

/// The one YAML document of `text` (file number `file`), positions encoded, with its
/// `!reset`/`!override` values recorded in `tags`. Other tags are ignored, as Compose reads the
/// value under them.
pub fn parse(text: &str, file: usize, tags: &mut Tags) -> Result<Node, node::ParseError> {
    let mut docs: Vec<TNode> = node::parse_documents_yaml12_as(text)?;
    if docs.len() != 1 {
        return Err(node::ParseError {
            line: 1,
            col: 1,
            message: format!(
                "expected one YAML document, found {}; a compose file holds one",
                docs.len()
            ),
        });
    }
    Ok(docs.remove(0).into_node(file, tags))
}

/// A node as read, with its tag.
struct TNode {
    line: u32,
    col: u32,
    tag: Option<String>,
    kind: TKind,
}

enum TKind {
    Scalar(NodeKind),
    Seq(Vec<TNode>),
    Map(Vec<(Key, TNode)>),
}

impl TNode {
    fn into_node(self, file: usize, tags: &mut Tags) -> Node {
        let line = encode(file, self.line);
        match self.tag.as_deref() {
            Some("!reset") => {
                tags.insert((line, self.col), Tag::Reset);
            }
            Some("!override") => {
                tags.insert((line, self.col), Tag::Override);
            }
            _ => {}
        }
        let kind = match self.kind {
            TKind::Scalar(k) => k,
            TKind::Seq(items) => {
                NodeKind::Seq(items.into_iter().map(|n| n.into_node(file, tags)).collect())
            }
            TKind::Map(entries) => NodeKind::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        let key = Key {
                            line: encode(file, k.line),
                            ..k
                        };
                        (key, v.into_node(file, tags))
                    })
                    .collect(),
            ),
        };
        Node {
            line,
            col: self.col,
            kind,
        }
    }
}

impl<'de> Deserialize<'de> for TNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Tagged<TKind>>::deserialize(d)?;
        let (line, col) = loc_of(&s.referenced);
        let Tagged(kind, tag) = s.value;
        Ok(TNode {
            line,
            col,
            tag,
            kind,
        })
    }
}

impl<'de> Deserialize<'de> for TKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

/// The same reading as [`crate::manifest::node`]'s, with tagged children.
struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = TKind;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<TKind, E> {
        Ok(TKind::Scalar(NodeKind::Null))
    }
    fn visit_none<E>(self) -> Result<TKind, E> {
        Ok(TKind::Scalar(NodeKind::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<TKind, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, v: bool) -> Result<TKind, E> {
        Ok(TKind::Scalar(NodeKind::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<TKind, E> {
        Ok(TKind::Scalar(NodeKind::Int(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<TKind, E> {
        Ok(TKind::Scalar(
            i64::try_from(v).map_or(NodeKind::UInt(v), NodeKind::Int),
        ))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<TKind, E> {
        i64::try_from(v)
            .map(|i| TKind::Scalar(NodeKind::Int(i)))
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<TKind, E> {
        u64::try_from(v)
            .map(|u| TKind::Scalar(NodeKind::UInt(u)))
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<TKind, E> {
        Ok(TKind::Scalar(NodeKind::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<TKind, E> {
        Ok(TKind::Scalar(NodeKind::Str(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<TKind, E> {
        Ok(TKind::Scalar(NodeKind::Str(v)))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<TKind, E> {
        Err(E::custom("binary values are not allowed in compose files"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TKind, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<TNode>()? {
            items.push(n);
        }
        Ok(TKind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TKind, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Spanned<KeyText>>()? {
            let (line, col) = loc_of(&k.referenced);
            let v = map.next_value::<TNode>()?;
            entries.push((
                Key {
                    name: k.value.0,
                    line,
                    col,
                },
                v,
            ));
        }
        Ok(TKind::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_recorded_at_their_values_and_positions_carry_the_file() {
        let mut tags = Tags::new();
        let text = "services:\n  a:\n    ports: !reset []\n    command: !override [x]\n    image: !custom y\n    environment: {A: 1, B: true, C: yes}\n";
        let n = parse(text, 2, &mut tags).expect("parse");
        let a = n.get("services").and_then(|s| s.get("a")).expect("a");
        let ports = a.get("ports").expect("ports");
        let command = a.get("command").expect("command");
        assert_eq!(tags.get(&(ports.line, ports.col)), Some(&Tag::Reset));
        assert_eq!(tags.get(&(command.line, command.col)), Some(&Tag::Override));
        assert_eq!(tags.len(), 2, "{tags:?}");
        assert_eq!(a.get("image").and_then(Node::as_str), Some("y"));
        let (k, _) = a.entry("ports").expect("ports");
        assert_eq!(decode(k.line), (2, 3));
        assert_eq!(decode(ports.line), (2, 3));
        // YAML 1.2 as the untagged reader: `yes` stays a string.
        let env = a.get("environment").expect("env");
        assert_eq!(env.get("B").map(|v| &v.kind), Some(&NodeKind::Bool(true)));
        assert_eq!(env.get("C").and_then(Node::as_str), Some("yes"));
        assert_eq!(env.get("A").map(|v| &v.kind), Some(&NodeKind::Int(1)));
        assert_eq!(encode(0, 7), 7);
    }

    #[test]
    fn the_tree_is_the_one_the_untagged_reader_gives() {
        let text = "x-base: &base\n  image: a:1\n  environment: {A: \"1\"}\nservices:\n  web:\n    <<: *base\n    ports: [!!str 80, 8080:80]\n    user: !!int 1000\n    dns: !custom [1.1.1.1]\n    labels: {on: yes, n: N, f: 1.5, t: true, z: ~}\n    command: >\n      sh -c\n      'echo hi'\n";
        let mut tags = Tags::new();
        let tagged = parse(text, 0, &mut tags).expect("tagged");
        let plain = node::parse_documents_yaml12(text).expect("plain").remove(0);
        assert_eq!(tagged, plain);
        assert!(tags.is_empty(), "{tags:?}");
    }
}
