//! Errors that point into the file: `file:line:column: field: why`.

use std::fmt;
use std::ops::Range;
use std::path::Path;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Builds a path from keys and indices: `path!["bridge", 0, "port", 1]`.
pub(crate) fn display_path(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// A configuration error, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (as given).
    pub file: String,
    /// 1-based line (0: the whole file, as for I/O errors).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The field, as `bridge[0].port[1].tag` (empty: the file itself).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn io(path: &Path, e: &std::io::Error) -> ConfigError {
        ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            field: String::new(),
            message: e.to_string(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else if self.field.is_empty() {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        } else {
            write!(f, "{}:{}:{}: `{}`: {}", self.file, self.line, self.column, self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

fn node_span(n: &Node<'_>) -> Option<Range<usize>> {
    match n {
        Node::Item(i) => i.span(),
        Node::Table(t) => t.span(),
        Node::Value(v) => v.span(),
    }
}

fn child<'a>(n: &Node<'a>, seg: &Seg) -> Option<(Node<'a>, Option<Range<usize>>)> {
    match (n, seg) {
        (Node::Table(t), Seg::Key(k)) => {
            let key_span = t.key(k).and_then(|k| k.span());
            t.get(k).map(|i| (Node::Item(i), key_span))
        }
        (Node::Item(i), Seg::Key(_)) => match i {
            toml_edit::Item::Table(t) => child(&Node::Table(t), seg),
            toml_edit::Item::Value(v) => child(&Node::Value(v), seg),
            _ => None,
        },
        (Node::Item(i), Seg::Index(x)) => match i {
            toml_edit::Item::ArrayOfTables(a) => a.get(*x).map(|t| (Node::Table(t), None)),
            toml_edit::Item::Value(v) => child(&Node::Value(v), seg),
            _ => None,
        },
        (Node::Value(toml_edit::Value::InlineTable(t)), Seg::Key(k)) => {
            let key_span = t.key(k).and_then(|k| k.span());
            t.get(k).map(|v| (Node::Value(v), key_span))
        }
        (Node::Value(toml_edit::Value::Array(a)), Seg::Index(x)) => a.get(*x).map(|v| (Node::Value(v), None)),
        _ => None,
    }
}

/// The span of the deepest part of `path` found in the document (the value
/// itself, or its key, or the nearest table that holds it).
fn span_of(doc: &toml_edit::Document<&str>, path: &[Seg]) -> Option<Range<usize>> {
    let mut node = Node::Table(doc.as_table());
    let mut best = None;
    for seg in path {
        match child(&node, seg) {
            Some((n, key_span)) => {
                best = node_span(&n).or(key_span).or(best);
                node = n;
            }
            None => break,
        }
    }
    best
}

/// The path of the deepest item at `offset`: a key or value whose span
/// holds it, else the last table (or array-of-tables entry) whose header
/// starts before it; a table's span covers its header only.
fn path_at(doc: &toml_edit::Document<&str>, offset: usize) -> Vec<Seg> {
    let holds = |s: Option<Range<usize>>| s.is_some_and(|s| s.start <= offset && offset <= s.end);
    let starts_before = |s: Option<Range<usize>>| s.is_some_and(|s| s.start <= offset);
    let mut path = Vec::new();
    let mut node = Node::Table(doc.as_table());
    loop {
        let table: Option<&toml_edit::Table> = match node {
            Node::Table(t) => Some(t),
            Node::Item(toml_edit::Item::Table(t)) => Some(t),
            _ => None,
        };
        let mut next: Option<(Vec<Seg>, Node<'_>)> = None;
        if let Some(t) = table {
            let mut last_table: Option<(Vec<Seg>, Node<'_>)> = None;
            for (k, item) in t.iter() {
                let key_span = t.key(k).and_then(|k| k.span());
                match item {
                    toml_edit::Item::Value(v) if holds(key_span.clone()) || holds(v.span()) => {
                        next = Some((vec![Seg::Key(k.to_string())], Node::Value(v)));
                        break;
                    }
                    toml_edit::Item::Table(st) if starts_before(st.span()) => {
                        last_table = Some((vec![Seg::Key(k.to_string())], Node::Table(st)));
                    }
                    toml_edit::Item::ArrayOfTables(a) => {
                        for (i, st) in a.iter().enumerate() {
                            if starts_before(st.span()) {
                                last_table = Some((vec![Seg::Key(k.to_string()), Seg::Index(i)], Node::Table(st)));
                            }
                        }
                    }
                    _ => {}
                }
            }
            if next.is_none() {
                next = last_table;
            }
        } else if let Some(v) = match node {
            Node::Value(v) => Some(v),
            Node::Item(toml_edit::Item::Value(v)) => Some(v),
            _ => None,
        } {
            match v {
                toml_edit::Value::InlineTable(t) => {
                    next = t
                        .iter()
                        .find(|(k, v)| holds(t.key(k).and_then(|k| k.span())) || holds(v.span()))
                        .map(|(k, v)| (vec![Seg::Key(k.to_string())], Node::Value(v)));
                }
                toml_edit::Value::Array(a) => {
                    next = a
                        .iter()
                        .enumerate()
                        .find(|(_, v)| holds(v.span()))
                        .map(|(i, v)| (vec![Seg::Index(i)], Node::Value(v)));
                }
                _ => {}
            }
        }
        match next {
            Some((segs, n)) => {
                path.extend(segs);
                node = n;
            }
            None => return path,
        }
    }
}

pub(crate) fn from_toml(text: &str, file: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start);
    let (line, column) = line_col(text, offset);
    let field = toml_edit::Document::parse(text).map(|d| display_path(&path_at(&d, offset))).unwrap_or_default();
    let message = e.message().trim().replace('\n', " ");
    ConfigError { file: file.into(), line, column, field, message }
}

pub(crate) fn at_path(text: &str, file: &str, path: &[Seg], message: String) -> ConfigError {
    let span = toml_edit::Document::parse(text).ok().and_then(|d| span_of(&d, path));
    let (line, column) = span.map_or((1, 1), |s| line_col(text, s.start));
    ConfigError { file: file.into(), line, column, field: display_path(path), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 11), (2, 6));
    }

    #[test]
    fn paths_at_offsets() {
        let t = "[eal]\ncores = [0, 1]\n\n[[bridge]]\nname = \"br0\"\n[[bridge.port]]\nname = \"p0\"\nbogus = 1\n[[bridge]]\nname = \"br1\"\n";
        let d = toml_edit::Document::parse(t).unwrap();
        let at = |needle: &str| display_path(&path_at(&d, t.find(needle).unwrap()));
        assert_eq!(at("bogus"), "bridge[0].port[0].bogus");
        assert_eq!(at("1]"), "eal.cores[1]");
        assert_eq!(at("\"br1\""), "bridge[1].name");
    }

    #[test]
    fn spans_of_paths() {
        let t = "[eal]\ncores = [0, 1]\n\n[[bridge]]\nname = \"br0\"\n[[bridge.port]]\nname = \"p0\"\ntag = 5000\n";
        let d = toml_edit::Document::parse(t).unwrap();
        let p =
            [Seg::Key("bridge".into()), Seg::Index(0), Seg::Key("port".into()), Seg::Index(0), Seg::Key("tag".into())];
        let s = span_of(&d, &p).unwrap();
        assert_eq!(line_col(t, s.start), (8, 7));
        let p = [Seg::Key("eal".into()), Seg::Key("cores".into()), Seg::Index(1)];
        assert_eq!(line_col(t, span_of(&d, &p).unwrap().start), (2, 13));
        assert_eq!(display_path(&p), "eal.cores[1]");
    }
}
