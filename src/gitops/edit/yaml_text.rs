//! YAML as text with positions: a tree of nodes carrying the byte span each has
//! in the file (parsed with `saphyr-parser`, whose events carry spans), found by
//! path, and edited by splicing only the bytes of one scalar (or inserting one
//! `key: value` line) — so comments, order, quoting and Flux markers elsewhere in
//! the file stay exactly as they were. A serde_yaml round trip would lose them.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A node of a YAML document with where it is in the text.
#[derive(Debug, Clone)]
pub struct Node {
    /// What the node is.
    pub kind: Kind,
    /// Byte offset of the node's first character.
    pub start: usize,
    /// Byte offset just past the node (for collections: as the parser reports it).
    pub end: usize,
    /// 1-based line of the node's first character.
    pub line: usize,
    /// 0-based column (in characters) of the node's first character.
    pub col: usize,
}

/// The kinds of YAML node.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A scalar: its value and how it is written.
    Scalar(String, ScalarStyle),
    /// A mapping: key and value nodes in file order.
    Map(Vec<(Node, Node)>),
    /// A sequence.
    Seq(Vec<Node>),
    /// An alias (`*anchor`): never edited.
    Alias,
}

impl Node {
    /// The scalar's value, if the node is a scalar.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(v, _) => Some(v),
            _ => None,
        }
    }

    /// The value under `key`, if the node is a mapping holding it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key and value nodes of `key`, if the node is a mapping holding it.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.scalar() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// The byte offset just past the last scalar inside this node (collections'
    /// own end markers sit on the next line for block styles).
    pub fn content_end(&self) -> usize {
        match &self.kind {
            Kind::Scalar(..) | Kind::Alias => self.end,
            Kind::Map(entries) => entries
                .iter()
                .map(|(k, v)| k.content_end().max(v.content_end()))
                .max()
                .unwrap_or(self.start),
            Kind::Seq(items) => items
                .iter()
                .map(Node::content_end)
                .max()
                .unwrap_or(self.start),
        }
    }
}

/// One step of a path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Parses `a.b[0].c` into steps; a key holding dots can be written in quotes
/// (`metadata.annotations."mlcd.dev/version"`).
pub fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut rest = path.trim();
    let bad = |why: &str| {
        format!("the path `{path}` is not valid ({why}): expected keys separated by dots with [n] for list items, like `spec.predictor.model.storageUri` or `spec.containers[0].image`")
    };
    if rest.is_empty() {
        return Err(bad("it is empty"));
    }
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('"') {
            let close = r.find('"').ok_or_else(|| bad("an unclosed quote"))?;
            steps.push(Step::Key(r[..close].to_string()));
            rest = &r[close + 1..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']').ok_or_else(|| bad("an unclosed `[`"))?;
            let n = r[..close]
                .trim()
                .parse()
                .map_err(|_| bad("an index that is not a number"))?;
            steps.push(Step::Index(n));
            rest = &r[close + 1..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end == 0 {
                return Err(bad("an empty key"));
            }
            steps.push(Step::Key(rest[..end].to_string()));
            rest = &rest[end..];
        }
        if let Some(r) = rest.strip_prefix('.') {
            if r.is_empty() || r.starts_with('.') {
                return Err(bad("an empty key"));
            }
            rest = r;
        } else if !rest.is_empty() && !rest.starts_with('[') {
            return Err(bad("a quote not followed by `.` or `[`"));
        }
    }
    Ok(steps)
}

/// Renders steps back as a path, for messages.
pub fn show_path(steps: &[Step]) -> String {
    let mut s = String::new();
    for step in steps {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Where a path stops resolving: how far it got and the node it stopped at.
pub struct Missing<'a> {
    /// How many steps resolved.
    pub resolved: usize,
    /// The last node reached.
    pub at: &'a Node,
    /// The 1-based line where it is written (its key's line for a mapping value).
    pub line: usize,
}

/// Follows `steps` from `root`.
pub fn find<'a>(root: &'a Node, steps: &[Step]) -> Result<&'a Node, Missing<'a>> {
    let mut node = root;
    let mut line = root.line;
    for (i, step) in steps.iter().enumerate() {
        let next = match (step, &node.kind) {
            (Step::Key(k), Kind::Map(_)) => node.entry(k).map(|(k, v)| (k.line, v)),
            (Step::Index(n), Kind::Seq(items)) => items.get(*n).map(|v| (v.line, v)),
            _ => None,
        };
        match next {
            Some((l, n)) => {
                node = n;
                line = l;
            }
            None => {
                return Err(Missing {
                    resolved: i,
                    at: node,
                    line,
                })
            }
        }
    }
    Ok(node)
}

/// A parse error with its 1-based line.
#[derive(Debug, Clone)]
pub struct ParseError {
    /// The parser's message.
    pub message: String,
    /// 1-based line.
    pub line: usize,
}

/// Parses every document of `text`.
pub fn parse(text: &str) -> Result<Vec<Node>, ParseError> {
    let offsets: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let mut events = Vec::new();
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.map_err(|e| ParseError {
            message: e.info().to_string(),
            line: e.marker().line(),
        })?;
        events.push((ev, span));
    }
    let mut b = Builder {
        text,
        events,
        pos: 0,
        offsets,
    };
    let mut docs = Vec::new();
    while b.pos < b.events.len() {
        match &b.events[b.pos].0 {
            Event::DocumentStart(_) => {
                b.pos += 1;
                let node = b.node();
                docs.push(node);
            }
            _ => b.pos += 1,
        }
    }
    Ok(docs)
}

/// The byte just past the closing quote of the quoted scalar starting at `start`.
fn quoted_end(text: &str, start: usize, style: ScalarStyle) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = start + 1;
    match style {
        ScalarStyle::DoubleQuoted if bytes.get(start) == Some(&b'"') => {
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'"' => return Some(i + 1),
                    _ => i += 1,
                }
            }
            None
        }
        ScalarStyle::SingleQuoted if bytes.get(start) == Some(&b'\'') => {
            while i < bytes.len() {
                if bytes[i] == b'\'' {
                    if bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    return Some(i + 1);
                }
                i += 1;
            }
            None
        }
        _ => None,
    }
}

struct Builder<'a> {
    text: &'a str,
    events: Vec<(Event<'a>, Span)>,
    pos: usize,
    offsets: Vec<usize>,
}

impl Builder<'_> {
    fn byte(&self, char_index: usize) -> usize {
        self.offsets
            .get(char_index)
            .copied()
            .unwrap_or(*self.offsets.last().unwrap_or(&0))
    }

    fn node(&mut self) -> Node {
        let (ev, span) = self.events[self.pos].clone();
        self.pos += 1;
        let start = self.byte(span.start.index());
        let line = span.start.line();
        let col = span.start.col();
        let mk = |kind, end| Node {
            kind,
            start,
            end,
            line,
            col,
        };
        match ev {
            Event::Scalar(v, style, _, _) => {
                // saphyr's span of a quoted scalar runs on over the spaces and
                // comment after it: end it at the closing quote.
                let end = quoted_end(self.text, start, style)
                    .unwrap_or_else(|| self.byte(span.end.index()));
                mk(Kind::Scalar(v.into_owned(), style), end)
            }
            Event::MappingStart(..) => {
                let mut entries = Vec::new();
                while !matches!(
                    self.events.get(self.pos),
                    Some((Event::MappingEnd, _)) | None
                ) {
                    let k = self.node();
                    let v = self.node();
                    entries.push((k, v));
                }
                let end = self.end_here();
                mk(Kind::Map(entries), end)
            }
            Event::SequenceStart(..) => {
                let mut items = Vec::new();
                while !matches!(
                    self.events.get(self.pos),
                    Some((Event::SequenceEnd, _)) | None
                ) {
                    items.push(self.node());
                }
                let end = self.end_here();
                mk(Kind::Seq(items), end)
            }
            _ => mk(Kind::Alias, self.byte(span.end.index())),
        }
    }

    fn end_here(&mut self) -> usize {
        let end = self
            .events
            .get(self.pos)
            .map_or(0, |(_, s)| self.byte(s.end.index()));
        self.pos += 1;
        end
    }
}

/// A new scalar value: text, or a number written plain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string (quoted when plain would read as something else).
    Str(String),
    /// An integer, always plain.
    Int(i64),
}

impl Value {
    /// The value as YAML would read it back.
    pub fn as_text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Int(n) => n.to_string(),
        }
    }
}

/// Whether `s` reads back as the same string when written plain (in block and
/// flow context), under both YAML 1.2 and the YAML 1.1 rules Go tools apply.
fn plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.trim() != s
        || "-?:,[]{}#&*!|>'\"%@`".contains(first)
        || s.contains(": ")
        || s.ends_with(':')
        // libyaml (serde_yaml) refuses `:` then one of `,?[]{}` in a flow
        // plain scalar ("found unexpected ':'"); the others are refused below.
        || s.contains(":?")
        || s.contains(" #")
        || s.contains(['\n', '\r', '\t', ',', '[', ']', '{', '}'])
    {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    let special = [
        "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n", ".nan", ".inf", "-.inf",
    ];
    if special.contains(&lower.as_str()) {
        return false;
    }
    let numeric = s.replace('_', "");
    !(numeric.parse::<f64>().is_ok()
        || numeric.starts_with("0x")
        || numeric.starts_with("0o")
        || numeric.contains(':') && numeric.split(':').all(|p| p.parse::<f64>().is_ok()))
}

/// How `value` is written in place of a scalar that was written in `style`.
pub fn render(value: &Value, style: ScalarStyle) -> String {
    match value {
        Value::Int(n) => n.to_string(),
        Value::Str(s) => match style {
            ScalarStyle::SingleQuoted if !s.contains(['\n', '\r']) => {
                format!("'{}'", s.replace('\'', "''"))
            }
            ScalarStyle::Plain if plain_safe(s) => s.clone(),
            _ => serde_json::to_string(s).expect("a string serializes"),
        },
    }
}

/// The 1-based line of byte offset `at`.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// Replaces the scalar `node` with `value`; `None` when it already holds it.
pub fn splice(text: &str, node: &Node, value: &Value) -> Result<Option<String>, String> {
    let Kind::Scalar(old, style) = &node.kind else {
        return Err(format!(
            "line {} holds a {} where a single value was expected",
            node.line,
            match node.kind {
                Kind::Map(_) => "mapping",
                Kind::Seq(_) => "list",
                _ => "alias",
            }
        ));
    };
    if *old == value.as_text() {
        return Ok(None);
    }
    if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
        return Err(format!(
            "line {} holds a block scalar (`|` or `>`); write the value on one line so mlcd can change it",
            node.line
        ));
    }
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str(&text[..node.start]);
    out.push_str(&render(value, *style));
    out.push_str(&text[node.end..]);
    Ok(Some(out))
}

/// Adds `key: value` to the mapping `map` (which lacks `key`), after its last
/// entry, indented like its other keys.
pub fn insert(text: &str, map: &Node, key: &str, value: &Value) -> Result<String, String> {
    let Kind::Map(entries) = &map.kind else {
        return Err(format!("line {} is not a mapping", map.line));
    };
    let rendered = format!("{key}: {}", render(value, ScalarStyle::Plain));
    let flow = text[map.start..].starts_with('{');
    if flow {
        let close = map.content_end()
            + text[map.content_end()..]
                .find('}')
                .ok_or_else(|| format!("line {}: unclosed flow mapping", map.line))?;
        let sep = if entries.is_empty() { "" } else { ", " };
        return Ok(format!(
            "{}{sep}{rendered}{}",
            &text[..close].trim_end_matches(' '),
            &text[close..]
        ));
    }
    let Some((first_key, _)) = entries.first() else {
        return Err(format!("line {}: an empty block mapping", map.line));
    };
    let indent = " ".repeat(first_key.col);
    let after = map.content_end();
    let line_end = text[after..].find('\n').map(|i| after + i + 1);
    Ok(match line_end {
        Some(at) => format!("{}{indent}{rendered}\n{}", &text[..at], &text[at..]),
        None => format!("{text}\n{indent}{rendered}\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_at(text: &str, path: &str) -> String {
        let docs = parse(text).unwrap();
        let steps = parse_path(path).unwrap();
        find(&docs[0], &steps)
            .ok()
            .and_then(|n| n.scalar().map(str::to_string))
            .unwrap()
    }

    #[test]
    fn spans_cover_exactly_the_scalar_in_every_style() {
        let text =
            "a: plain # c\nb: \"dq\"   # c\nc: 'sq'  # c 'x'\nh: \"e\\\"q\" # c\"\ni: 'it''s' # c\nd: {e: flow, f: [x, \"y\"]}\nü: ünïcode\ng: last";
        let docs = parse(text).unwrap();
        let root = &docs[0];
        for (path, want) in [
            ("a", "plain"),
            ("b", "\"dq\""),
            ("h", "\"e\\\"q\""),
            ("i", "'it''s'"),
            ("c", "'sq'"),
            ("d.e", "flow"),
            ("d.f[1]", "\"y\""),
            ("ü", "ünïcode"),
            ("g", "last"),
        ] {
            let n = find(root, &parse_path(path).unwrap()).ok().unwrap();
            assert_eq!(&text[n.start..n.end], want, "{path}");
        }
    }

    #[test]
    fn splicing_keeps_quotes_comments_and_everything_else() {
        let text =
            "# top\nimage:\n  repository: old # the repo\n  tag: \"v1\"\n  pull: 'IfNotPresent'\n";
        let docs = parse(text).unwrap();
        let tag = find(&docs[0], &parse_path("image.tag").unwrap())
            .ok()
            .unwrap();
        let out = splice(text, tag, &Value::Str("v2".into()))
            .unwrap()
            .unwrap();
        assert_eq!(out, text.replace("\"v1\"", "\"v2\""));
        let repo = find(&docs[0], &parse_path("image.repository").unwrap())
            .ok()
            .unwrap();
        let out = splice(text, repo, &Value::Str("ghcr.io/a/b".into()))
            .unwrap()
            .unwrap();
        assert_eq!(out, text.replace("old #", "ghcr.io/a/b #"));
        let same = splice(text, tag, &Value::Str("v1".into())).unwrap();
        assert!(same.is_none());
    }

    #[test]
    fn a_plain_value_that_would_read_as_a_number_or_bool_is_quoted() {
        let text = "tag: v1\n";
        let docs = parse(text).unwrap();
        let n = find(&docs[0], &parse_path("tag").unwrap()).ok().unwrap();
        for v in ["1.10", "true", "no", "1e3", "", "a: b", "#x", "07"] {
            let out = splice(text, n, &Value::Str(v.into())).unwrap().unwrap();
            assert_eq!(value_at(&out, "tag"), v, "{out}");
            let reread: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
            assert_eq!(reread["tag"].as_str(), Some(v), "{out}");
        }
        let out = splice(text, n, &Value::Int(25)).unwrap().unwrap();
        assert_eq!(out, "tag: 25\n");
    }

    #[test]
    fn a_colon_before_a_flow_indicator_is_quoted_in_a_flow_list() {
        // Found by the gitops_edit property test: `a:?` plain in `[…]` is
        // refused by libyaml, so it must be written quoted.
        let text = "list: [a, b]\n";
        let docs = parse(text).unwrap();
        let n = find(&docs[0], &parse_path("list[0]").unwrap())
            .ok()
            .unwrap();
        let out = splice(text, n, &Value::Str("a:?".into())).unwrap().unwrap();
        assert_eq!(out, "list: [\"a:?\", b]\n");
        let reread: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(reread["list"][0].as_str(), Some("a:?"));
    }

    #[test]
    fn inserting_a_key_indents_like_its_siblings() {
        let text = "images:\n- name: churn # ours\n  newTag: v1\nother: x\n";
        let docs = parse(text).unwrap();
        let entry = find(&docs[0], &parse_path("images[0]").unwrap())
            .ok()
            .unwrap();
        let out = insert(text, entry, "digest", &Value::Str("sha256:ab".into())).unwrap();
        assert_eq!(
            out,
            "images:\n- name: churn # ours\n  newTag: v1\n  digest: sha256:ab\nother: x\n"
        );
        let flow = "images: [{name: churn}]\n";
        let docs = parse(flow).unwrap();
        let entry = find(&docs[0], &parse_path("images[0]").unwrap())
            .ok()
            .unwrap();
        let out = insert(flow, entry, "newTag", &Value::Str("v2".into())).unwrap();
        assert_eq!(out, "images: [{name: churn, newTag: v2}]\n");
    }

    #[test]
    fn paths_parse_with_indices_and_quoted_keys() {
        assert_eq!(
            parse_path("spec.containers[0].image").unwrap(),
            vec![
                Step::Key("spec".into()),
                Step::Key("containers".into()),
                Step::Index(0),
                Step::Key("image".into())
            ]
        );
        assert_eq!(
            parse_path("metadata.annotations.\"mlcd.dev/v\"").unwrap(),
            vec![
                Step::Key("metadata".into()),
                Step::Key("annotations".into()),
                Step::Key("mlcd.dev/v".into())
            ]
        );
        for bad in ["", "a..b", "a[x]", "a[0", "\"a"] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }
}
