//! Reading Compose values off the position-keeping tree ([`crate::manifest::node`]): the loose
//! forms Compose allows (a number where a string is meant, a string where a list is meant, a
//! list of `KEY=VALUE` or a mapping) and Compose's units (byte sizes with `k`/`m`/`g`, Go
//! durations). Each helper returns the reason in words when the value has no accepted form.

use crate::manifest::node::{Key, Node, NodeKind};
use crate::manifest::{ByteSize, Duration};

/// A scalar as text (`80` -> "80", `true` -> "true"); `None` for null, lists and mappings.
/// A mapping's entries, or what was found instead.
pub fn mapping(n: &Node) -> Result<&[(Key, Node)], String> {
    match &n.kind {
        NodeKind::Map(entries) => Ok(entries),
        _ => Err(format!("expected a mapping, found {}", n.describe())),
    }
}

pub fn scalar(n: &Node) -> Option<String> {
    match &n.kind {
        NodeKind::Str(s) => Some(s.clone()),
        NodeKind::Int(i) => Some(i.to_string()),
        NodeKind::UInt(u) => Some(u.to_string()),
        NodeKind::Float(f) => Some(f.to_string()),
        NodeKind::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A scalar as text, or the reason it is not one.
pub fn text(n: &Node) -> Result<String, String> {
    scalar(n).ok_or_else(|| format!("expected a string, found {}", n.describe()))
}

/// A string or a list of scalars (`dns: 8.8.8.8` or `dns: [8.8.8.8, 1.1.1.1]`).
pub fn str_list(n: &Node) -> Result<Vec<String>, String> {
    match &n.kind {
        NodeKind::Seq(items) => items.iter().map(text).collect(),
        NodeKind::Null => Ok(Vec::new()),
        _ => text(n).map(|s| vec![s]),
    }
}

/// One entry of a mapping-or-list value: key, value (`None` for a bare `KEY` or `KEY: null`),
/// and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: Option<String>,
    pub line: u32,
    pub col: u32,
}

/// A mapping (`{A: b}`) or a list of `KEY<sep>VALUE` strings (`["A=b", "C"]`), as Compose
/// allows for environment, labels, sysctls and extra_hosts.
pub fn entries(n: &Node, sep: char) -> Result<Vec<Entry>, String> {
    match &n.kind {
        NodeKind::Map(map) => map
            .iter()
            .map(|(k, v)| {
                let value = match &v.kind {
                    NodeKind::Null => None,
                    _ => Some(text(v).map_err(|e| format!("{}: {e}", k.name))?),
                };
                Ok(Entry {
                    key: k.name.clone(),
                    value,
                    line: k.line,
                    col: k.col,
                })
            })
            .collect(),
        NodeKind::Seq(items) => items
            .iter()
            .map(|item| {
                let s = text(item)?;
                let (key, value) = match s.split_once(sep) {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (s, None),
                };
                Ok(Entry {
                    key,
                    value,
                    line: item.line,
                    col: item.col,
                })
            })
            .collect(),
        NodeKind::Null => Ok(Vec::new()),
        _ => Err(format!(
            "expected a mapping or a list of \"KEY{sep}VALUE\", found {}",
            n.describe()
        )),
    }
}

/// A boolean (`true`, or the string "true" after interpolation).
pub fn boolean(n: &Node) -> Result<bool, String> {
    match &n.kind {
        NodeKind::Bool(b) => Ok(*b),
        NodeKind::Str(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        NodeKind::Str(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(format!("expected true or false, found {}", n.describe())),
    }
}

/// A non-negative integer (or its digits as a string).
pub fn uint(n: &Node) -> Result<u64, String> {
    match &n.kind {
        NodeKind::Int(i) if *i >= 0 => Ok(*i as u64),
        NodeKind::UInt(u) => Ok(*u),
        NodeKind::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("expected a non-negative integer, found {}", n.describe())),
        _ => Err(format!(
            "expected a non-negative integer, found {}",
            n.describe()
        )),
    }
}

/// An integer that may be negative.
pub fn int(n: &Node) -> Result<i64, String> {
    match &n.kind {
        NodeKind::Int(i) => Ok(*i),
        NodeKind::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("expected an integer, found {}", n.describe())),
        _ => Err(format!("expected an integer, found {}", n.describe())),
    }
}

/// A number (`0.5`, `"1.5"`, `2`).
pub fn number(n: &Node) -> Result<f64, String> {
    match &n.kind {
        NodeKind::Float(f) => Ok(*f),
        NodeKind::Int(i) => Ok(*i as f64),
        NodeKind::UInt(u) => Ok(*u as f64),
        NodeKind::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("expected a number, found {}", n.describe())),
        _ => Err(format!("expected a number, found {}", n.describe())),
    }
}

/// A Compose byte size: a number of bytes, or a number (fractions allowed) with `b`, `k`, `m`,
/// `g`, `t`, `p` (any case, optionally followed by `i` and/or `b`), all powers of 1024, as
/// Docker's `RAMInBytes` reads them (`512m`, `1.5g`, `100MB`, `2Gi`).
pub fn size(n: &Node) -> Result<ByteSize, String> {
    match &n.kind {
        NodeKind::Int(i) if *i >= 0 => Ok(ByteSize(*i as u64)),
        NodeKind::UInt(u) => Ok(ByteSize(*u)),
        NodeKind::Str(s) => parse_size(s),
        _ => Err(format!(
            "expected a size such as 512m, found {}",
            n.describe()
        )),
    }
}

/// [`size`] for text.
pub fn parse_size(s: &str) -> Result<ByteSize, String> {
    let bad = || {
        format!(
            "invalid size {s:?}: expected a number with an optional unit b, k, m, g, t (e.g. 512m, 1.5g)"
        )
    };
    let t = s.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let value: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0_f64.powi(4),
        "p" => 1024.0_f64.powi(5),
        _ => return Err(bad()),
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(ByteSize(bytes as u64))
}

/// A Go duration (`1m30s`, `500ms`), read by the agent's own grammar.
pub fn duration(n: &Node) -> Result<Duration, String> {
    let s = text(n)?;
    s.parse::<Duration>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::node::parse_documents;

    fn node(yaml: &str) -> Node {
        parse_documents(yaml).expect("yaml").remove(0)
    }

    #[test]
    fn sizes_as_docker_reads_them() {
        let mi = 1024 * 1024;
        for (s, want) in [
            ("512m", 512 * mi),
            ("512M", 512 * mi),
            ("100MB", 100 * mi),
            ("2Gi", 2048 * mi),
            ("1.5g", 1536 * mi),
            ("64k", 65536),
            ("1000", 1000),
            ("10 m", 10 * mi),
        ] {
            assert_eq!(parse_size(s), Ok(ByteSize(want)), "{s}");
        }
        for bad in ["", "m", "5x", "1..2g", "-1m"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(size(&node("1048576")), Ok(ByteSize(mi)));
    }

    #[test]
    fn mapping_or_list_entries() {
        let list = entries(&node("[A=1, B, \"C=x=y\"]"), '=').expect("list");
        let got: Vec<_> = list
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_deref()))
            .collect();
        assert_eq!(got, [("A", Some("1")), ("B", None), ("C", Some("x=y"))]);
        let map = entries(&node("A: 1\nB:\nC: true\n"), '=').expect("map");
        let got: Vec<_> = map
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_deref(), e.line))
            .collect();
        assert_eq!(
            got,
            [("A", Some("1"), 1), ("B", None, 2), ("C", Some("true"), 3)]
        );
        assert!(entries(&node("5"), '=').is_err());
    }

    #[test]
    fn loose_scalars() {
        assert_eq!(str_list(&node("8.8.8.8")), Ok(vec!["8.8.8.8".to_string()]));
        assert_eq!(uint(&node("\"42\"")), Ok(42));
        assert!(uint(&node("-1")).is_err());
        assert_eq!(number(&node("\"0.5\"")), Ok(0.5));
        assert_eq!(boolean(&node("\"true\"")), Ok(true));
        assert_eq!(duration(&node("1m30s")).map(|d| d.get().as_secs()), Ok(90));
    }
}
