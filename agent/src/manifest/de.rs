//! A serde `Deserializer` over a [`Node`] tree whose errors carry the line, column and field path
//! of the value they are about.
//!
//! Every `deserialize_*` call wraps the visitor's result so that an error without a location gets
//! the location of the node being read: the innermost node wins. Serde's own error constructors
//! (`unknown_field`, `invalid_type`, `missing_field`, ...) are rewritten into messages that say
//! what is allowed, with a "did you mean" for misspelt field and variant names.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::node::{Key, Node, NodeKind};

/// A typed-read error: where, which field, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeError {
    /// 1-based; 0 until located.
    pub line: u32,
    pub col: u32,
    /// Field path such as `spec.ports[1]`; empty for the document itself.
    pub path: String,
    pub message: String,
    located: bool,
}

impl DeError {
    fn locate(mut self, line: u32, col: u32, path: &str) -> Self {
        if !self.located {
            self.line = line;
            self.col = col;
            self.path = path.to_string();
            self.located = true;
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&word.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn one_of(expected: &[&str]) -> String {
    match expected {
        [] => "none are allowed here".into(),
        _ => format!(
            "allowed: {}",
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            line: 0,
            col: 0,
            path: String::new(),
            message: msg.to_string(),
            located: false,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let hint = did_you_mean(field, expected.iter().copied())
            .map(|m| format!(" (did you mean `{m}`?)"))
            .unwrap_or_default();
        Self::custom(format_args!(
            "unknown field `{field}`{hint}; {}",
            one_of(expected)
        ))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let hint = did_you_mean(variant, expected.iter().copied())
            .map(|m| format!(" (did you mean `{m}`?)"))
            .unwrap_or_default();
        Self::custom(format_args!(
            "unknown value `{variant}`{hint}; {}",
            one_of(expected)
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format_args!("missing field `{field}`"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::custom(format_args!("field `{field}` is given twice"))
    }

    fn invalid_type(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!("expected {exp}, found {}", unexpected(unexp)))
    }

    fn invalid_value(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!(
            "invalid value {}: expected {exp}",
            unexpected(unexp)
        ))
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!("expected {exp}, found {len} elements"))
    }
}

fn unexpected(u: de::Unexpected) -> String {
    use de::Unexpected as U;
    match u {
        U::Bool(b) => format!("boolean {b}"),
        U::Unsigned(n) => format!("integer {n}"),
        U::Signed(n) => format!("integer {n}"),
        U::Float(f) => format!("number {f}"),
        U::Str(s) => format!("string {s:?}"),
        U::Unit => "null".into(),
        U::Seq => "a list".into(),
        U::Map => "a mapping".into(),
        other => other.to_string(),
    }
}

/// Reads `node` (at field path `path`) as a `T`.
pub fn from_node<T: de::DeserializeOwned>(node: &Node, path: &str) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        path: path.to_string(),
    })
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Deserializer for one node.
pub struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> NodeDe<'a> {
    fn wrap<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.locate(self.node.line, self.node.col, &self.path))
    }

    fn any<'de, V: Visitor<'de>>(&self, v: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Null => v.visit_unit(),
            NodeKind::Bool(b) => v.visit_bool(*b),
            NodeKind::Int(i) => v.visit_i64(*i),
            NodeKind::UInt(u) => v.visit_u64(*u),
            NodeKind::Float(f) => v.visit_f64(*f),
            NodeKind::Str(s) => v.visit_str(s),
            NodeKind::Seq(items) => v.visit_seq(Seq {
                items,
                idx: 0,
                path: &self.path,
            }),
            NodeKind::Map(entries) => v.visit_map(Map {
                entries,
                idx: 0,
                path: &self.path,
                value_path: String::new(),
            }),
        };
        self.wrap(r)
    }
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.any(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            NodeKind::Null => self.wrap(v.visit_none()),
            _ => {
                let (line, col, path) = (self.node.line, self.node.col, self.path.clone());
                v.visit_some(self).map_err(|e| e.locate(line, col, &path))
            }
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Str(s) => self.wrap(v.visit_str(s)),
            NodeKind::Int(_) | NodeKind::UInt(_) | NodeKind::Float(_) | NodeKind::Bool(_) => {
                let text = match &self.node.kind {
                    NodeKind::Int(i) => i.to_string(),
                    NodeKind::UInt(u) => u.to_string(),
                    NodeKind::Float(f) => f.to_string(),
                    NodeKind::Bool(b) => b.to_string(),
                    _ => String::new(),
                };
                self.wrap(Err(de::Error::custom(format_args!(
                    "expected a string, found {}; write it in quotes (\"{text}\") if you mean the text",
                    self.node.describe()
                ))))
            }
            _ => self.any(v),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_string(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        let (line, col, path) = (self.node.line, self.node.col, self.path.clone());
        v.visit_newtype_struct(self)
            .map_err(|e| e.locate(line, col, &path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match self.node.kind {
            NodeKind::Map(_) => self.any(v),
            _ => self.wrap(Err(de::Error::custom(format_args!(
                "expected a mapping with fields {}, found {}",
                fields
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.node.describe()
            )))),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Str(s) => self.wrap(v.visit_enum(s.as_str().into_deserializer())),
            NodeKind::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                let r = v.visit_enum(Enum {
                    key,
                    value,
                    path: &self.path,
                });
                self.wrap(r)
            }
            _ => self.wrap(Err(de::Error::custom(format_args!(
                "expected exactly one of {}, found {}",
                variants
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                match &self.node.kind {
                    NodeKind::Map(e) => format!("{} keys", e.len()),
                    _ => self.node.describe(),
                }
            )))),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit unit_struct
        seq tuple tuple_struct map identifier ignored_any
    }
}

struct Seq<'a> {
    items: &'a [Node],
    idx: usize,
    path: &'a str,
}

impl<'de> de::SeqAccess<'de> for Seq<'_> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.get(self.idx) else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.idx);
        self.idx += 1;
        seed.deserialize(NodeDe { node, path }).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.idx)
    }
}

struct Map<'a> {
    entries: &'a [(Key, Node)],
    idx: usize,
    path: &'a str,
    value_path: String,
}

impl<'de> de::MapAccess<'de> for Map<'_> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, _)) = self.entries.get(self.idx) else {
            return Ok(None);
        };
        self.value_path = join(self.path, &key.name);
        seed.deserialize(KeyDe {
            key,
            path: &self.value_path,
        })
        .map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((_, node)) = self.entries.get(self.idx) else {
            return Err(de::Error::custom("internal error: value without key"));
        };
        self.idx += 1;
        seed.deserialize(NodeDe {
            node,
            path: self.value_path.clone(),
        })
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.idx)
    }
}

/// Deserializer for a mapping key: always text.
struct KeyDe<'a> {
    key: &'a Key,
    path: &'a str,
}

impl KeyDe<'_> {
    fn wrap<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.locate(self.key.line, self.key.col, self.path))
    }
}

impl<'de> de::Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;
    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.wrap(v.visit_str(&self.key.name))
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.wrap(v.visit_enum(self.key.name.as_str().into_deserializer()))
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let (line, col, path) = (self.key.line, self.key.col, self.path.to_string());
        v.visit_some(self).map_err(|e| e.locate(line, col, &path))
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        let (line, col, path) = (self.key.line, self.key.col, self.path.to_string());
        v.visit_newtype_struct(self)
            .map_err(|e| e.locate(line, col, &path))
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// An externally tagged enum written as a one-entry mapping `{variant: content}`.
struct Enum<'a> {
    key: &'a Key,
    value: &'a Node,
    path: &'a str,
}

impl<'a, 'de> de::EnumAccess<'de> for Enum<'a> {
    type Error = DeError;
    type Variant = NodeDe<'a>;
    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, NodeDe<'a>), DeError> {
        let path = join(self.path, &self.key.name);
        let variant = seed.deserialize(KeyDe {
            key: self.key,
            path: &path,
        })?;
        Ok((
            variant,
            NodeDe {
                node: self.value,
                path,
            },
        ))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'_> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        match self.node.kind {
            NodeKind::Null => Ok(()),
            _ => self.wrap(Err(de::Error::custom(format_args!(
                "expected no value, found {}",
                self.node.describe()
            )))),
        }
    }
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, DeError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self, v)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_struct(self, "", fields, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::node::parse_documents;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct T {
        name: String,
        #[serde(default)]
        items: Vec<Item>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Item {
        port: u16,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    enum Mode {
        Fast,
        Slow { by: u32 },
    }

    fn read(text: &str) -> Result<T, DeError> {
        let docs = parse_documents(text).expect("yaml");
        from_node(&docs[0], "")
    }

    #[test]
    fn reads_typed_values() {
        let t = read("name: x\nitems: [{port: 1}]\nmode: fast\n").expect("ok");
        assert_eq!(t.items, vec![Item { port: 1 }]);
        assert_eq!(t.mode, Some(Mode::Fast));
        let t = read("name: x\nmode: {slow: {by: 3}}\n").expect("ok");
        assert_eq!(t.mode, Some(Mode::Slow { by: 3 }));
    }

    #[test]
    fn unknown_field_points_at_the_key_and_suggests() {
        let e = read("name: x\nitems:\n  - port: 1\n    prot: 2\n").expect_err("unknown");
        assert_eq!((e.line, e.col, e.path.as_str()), (4, 5, "items[0].prot"));
        assert!(e.message.contains("did you mean `port`"), "{}", e.message);
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let e = read("name: x\nitems:\n  - port: 70000\n").expect_err("range");
        assert_eq!((e.line, e.col, e.path.as_str()), (3, 11, "items[0].port"));
        let e = read("name: 5\n").expect_err("type");
        assert_eq!((e.line, e.col), (1, 7));
        assert!(e.message.contains("quotes"), "{}", e.message);
    }

    #[test]
    fn missing_field_points_at_the_mapping() {
        let e = read("items: []\n").expect_err("missing");
        assert_eq!((e.line, e.col, e.path.as_str()), (1, 1, ""));
        assert!(e.message.contains("missing field `name`"));
    }

    #[test]
    fn unknown_variant_suggests() {
        let e = read("name: x\nmode: fsat\n").expect_err("variant");
        assert_eq!((e.line, e.col, e.path.as_str()), (2, 7, "mode"));
        assert!(e.message.contains("did you mean `fast`"), "{}", e.message);
    }
}
