//! A small YAML document model with PyYAML's scalar resolution.
//!
//! The config hash is defined by what PyYAML (`yaml.safe_load`, YAML 1.1 rules) makes of a file,
//! so scalars are kept as written (text, quoting, line) and resolved here with PyYAML's implicit
//! resolvers: `23.0` is a float, `1e-7` (no dot) is a string, `yes` is a boolean, `0o17` is a
//! string, `017` is octal. The parser itself is granit-parser; this module only builds the tree.

use std::collections::HashMap;
use std::sync::LazyLock;

use granit_parser::{Event, Parser, ScalarStyle};
use regex::Regex;

/// A parsed YAML node and the 1-based line it starts on.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub line: usize,
}

/// What a node holds.
#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    /// Entries in file order; duplicates are kept so the caller can report them.
    Map(Vec<(Node, Node)>),
    Seq(Vec<Node>),
    Scalar(Scalar),
}

/// A scalar as written.
#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    pub text: String,
    pub plain: bool,
    /// The explicit tag, as `tag:yaml.org,2002:str` or a local `!name`.
    pub tag: Option<String>,
}

/// A scalar as PyYAML's `safe_load` types it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Resolved {
    Null,
    Bool(bool),
    /// An integer in one of YAML 1.1's notations (decimal, octal `017`, hex, binary, `1_000`,
    /// sexagesimal `1:30`); the text as written.
    Int(String),
    /// A float in YAML 1.1 notation (needs a dot: `1.5`, `1.0e+5`, `.5`, `.inf`); text as written.
    Float(String),
    Str(String),
    /// A date or timestamp (`2024-01-31`).
    Timestamp(String),
    /// Something `safe_load` does not give back as a plain value (`=`, an unknown tag).
    Other(String),
}

impl Resolved {
    /// What the value is, for error messages: `23.0 (a float)`.
    pub fn describe(&self) -> String {
        match self {
            Resolved::Null => "null".to_owned(),
            Resolved::Bool(b) => format!("{b} (a boolean)"),
            Resolved::Int(t) => format!("{t} (an integer)"),
            Resolved::Float(t) => format!("{t} (a float)"),
            Resolved::Str(t) => format!("{t:?} (a string)"),
            Resolved::Timestamp(t) => format!("{t} (a date)"),
            Resolved::Other(t) => t.clone(),
        }
    }
}

static BOOL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$")
        .unwrap()
});
static INT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
    )
    .unwrap()
});
static FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    )
    .unwrap()
});
static NULL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(?:~|null|Null|NULL|)$").unwrap());
static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$",
    )
    .unwrap()
});

const YAML_TAG: &str = "tag:yaml.org,2002:";

impl Scalar {
    /// Types the scalar as PyYAML's `SafeLoader` does.
    pub fn resolve(&self) -> Resolved {
        if let Some(tag) = &self.tag {
            return match tag.strip_prefix(YAML_TAG) {
                Some("str") => Resolved::Str(self.text.clone()),
                Some("null") => Resolved::Null,
                Some("int") if INT.is_match(&self.text) => Resolved::Int(self.text.clone()),
                Some("float") if FLOAT.is_match(&self.text) || INT.is_match(&self.text) => {
                    Resolved::Float(self.text.clone())
                }
                Some("bool") if BOOL.is_match(&self.text) => Resolved::Bool(bool_value(&self.text)),
                _ => Resolved::Other(format!("!{tag} {}", self.text)),
            };
        }
        if !self.plain {
            return Resolved::Str(self.text.clone());
        }
        // PyYAML picks resolvers by first character, then tries them in registration order:
        // bool, float, int, merge, null, timestamp, value.
        let t = self.text.as_str();
        let first = t.chars().next();
        let starts = |set: &str| first.is_some_and(|c| set.contains(c));
        if starts("yYnNtTfFoO") && BOOL.is_match(t) {
            return Resolved::Bool(bool_value(t));
        }
        if starts("-+0123456789.") && FLOAT.is_match(t) {
            return Resolved::Float(t.to_owned());
        }
        if starts("-+0123456789") && INT.is_match(t) {
            return Resolved::Int(t.to_owned());
        }
        if t == "<<" || t == "=" {
            return Resolved::Other(t.to_owned());
        }
        if (first.is_none() || starts("~nN")) && NULL.is_match(t) {
            return Resolved::Null;
        }
        if starts("0123456789") && TIMESTAMP.is_match(t) {
            return Resolved::Timestamp(t.to_owned());
        }
        Resolved::Str(t.to_owned())
    }
}

fn bool_value(t: &str) -> bool {
    matches!(t.to_ascii_lowercase().as_str(), "yes" | "true" | "on")
}

/// Why a document could not be read as YAML.
#[derive(Debug)]
pub(crate) struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses one YAML document. An empty document gives `None`, as `safe_load` returns `None`.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    let mut builder = Builder::default();
    let mut documents = 0usize;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| YamlError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_owned(),
        })?;
        let line = span.start.line();
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError {
                        line,
                        column: span.start.col() + 1,
                        message: "expected a single document, found a second one".to_owned(),
                    });
                }
            }
            Event::Alias(id) => {
                let node = builder.anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    line,
                    column: span.start.col() + 1,
                    message: "alias to an unknown anchor".to_owned(),
                })?;
                builder.push(node);
            }
            Event::Scalar(value, style, anchor, tag) => {
                let tag = tag.map(|t| t.to_string());
                let scalar = Scalar {
                    text: value.into_owned(),
                    plain: matches!(style, ScalarStyle::Plain),
                    tag,
                };
                let node = Node {
                    kind: NodeKind::Scalar(scalar),
                    line,
                };
                if anchor != 0 {
                    builder.anchors.insert(anchor, node.clone());
                }
                builder.push(node);
            }
            Event::SequenceStart(_, anchor, _) => {
                builder.open(NodeKind::Seq(Vec::new()), line, anchor)
            }
            Event::MappingStart(_, anchor, _) => {
                builder.open(NodeKind::Map(Vec::new()), line, anchor)
            }
            Event::SequenceEnd | Event::MappingEnd => builder.close(),
            _ => {}
        }
    }
    Ok(builder.root)
}

#[derive(Default)]
struct Builder {
    /// Open collections, with the anchor to register when each closes and, for maps, a key
    /// waiting for its value.
    stack: Vec<(Node, usize, Option<Node>)>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
}

impl Builder {
    fn open(&mut self, kind: NodeKind, line: usize, anchor: usize) {
        self.stack.push((Node { kind, line }, anchor, None));
    }

    fn close(&mut self) {
        if let Some((node, anchor, _)) = self.stack.pop() {
            if anchor != 0 {
                self.anchors.insert(anchor, node.clone());
            }
            self.push(node);
        }
    }

    fn push(&mut self, node: Node) {
        let Some((parent, _, pending_key)) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        match &mut parent.kind {
            NodeKind::Seq(items) => items.push(node),
            NodeKind::Map(entries) => match pending_key.take() {
                Some(key) => entries.push((key, node)),
                None => *pending_key = Some(node),
            },
            NodeKind::Scalar(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(t: &str) -> Resolved {
        Scalar {
            text: t.to_owned(),
            plain: true,
            tag: None,
        }
        .resolve()
    }

    #[test]
    fn resolves_like_pyyaml() {
        assert_eq!(plain("23.0"), Resolved::Float("23.0".into()));
        assert_eq!(plain("1e-7"), Resolved::Str("1e-7".into()));
        assert_eq!(plain("1.0e-7"), Resolved::Float("1.0e-7".into()));
        assert_eq!(plain("1.0e7"), Resolved::Str("1.0e7".into()));
        assert_eq!(plain("1.0e-07"), Resolved::Float("1.0e-07".into()));
        assert_eq!(plain("113"), Resolved::Int("113".into()));
        assert_eq!(plain("017"), Resolved::Int("017".into()));
        assert_eq!(plain("0o17"), Resolved::Str("0o17".into()));
        assert_eq!(plain("1:30"), Resolved::Int("1:30".into()));
        assert_eq!(plain("yes"), Resolved::Bool(true));
        assert_eq!(plain("Off"), Resolved::Bool(false));
        assert_eq!(plain("~"), Resolved::Null);
        assert_eq!(plain(""), Resolved::Null);
        assert_eq!(plain(".inf"), Resolved::Float(".inf".into()));
        assert_eq!(
            plain("2024-01-31"),
            Resolved::Timestamp("2024-01-31".into())
        );
        assert_eq!(plain("v4.1"), Resolved::Str("v4.1".into()));
        let quoted = Scalar {
            text: "23.0".into(),
            plain: false,
            tag: None,
        };
        assert_eq!(quoted.resolve(), Resolved::Str("23.0".into()));
    }

    #[test]
    fn builds_nested_maps_with_lines() {
        let doc = parse("a: 1\nb:\n  c: x\n  d: [1, 2]\n").unwrap().unwrap();
        let NodeKind::Map(entries) = doc.kind else {
            panic!("root is a map")
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].1.line, 3);
        assert!(parse("").unwrap().is_none());
        assert!(parse("a: [1\n").is_err());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }
}
