//! Finds the line of a key in YAML text, so errors found after parsing (a missing
//! Dockerfile, a path outside the workspace) still point at their line.

/// The 1-based line and column of the key at `path` (like `["build", "dockerfile"]`)
/// in block-style YAML. Keys inside flow mappings (`{a: 1}`) resolve to the line
/// of the nearest enclosing block key. `None` when the key is not written.
pub fn key_position(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let mut found: Option<(usize, usize)> = None;
    let mut depth = 0usize; // how many path segments matched so far
    let mut indents: Vec<usize> = Vec::new(); // indentation of each matched segment
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with("---") {
            continue;
        }
        let indent = line.len() - trimmed.len();
        // Leaving a matched block: its children are indented deeper than it.
        while let Some(&last) = indents.last() {
            if indent <= last {
                indents.pop();
                depth -= 1;
            } else {
                break;
            }
        }
        let (trimmed, dash) = match trimmed.strip_prefix("- ") {
            Some(t) => (t, 2),
            None => (trimmed, 0),
        };
        let Some((key, rest)) = trimmed.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches(['"', '\'']);
        let at_level = depth > 0 || indent == 0;
        if at_level && depth < path.len() && key == path[depth] {
            depth += 1;
            indents.push(indent);
            found = Some((i + 1, indent + dash + 1));
            if depth == path.len() {
                return found;
            }
            // A flow mapping on the same line holds the rest of the path.
            let rest = rest.trim();
            if rest.starts_with('{') && path[depth..].iter().all(|k| rest.contains(k)) {
                return found;
            }
        }
    }
    if depth == path.len() {
        found
    } else {
        None
    }
}

fn strip_comment(line: &str) -> &str {
    let mut in_single = false;
    let mut in_double = false;
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !in_double => in_single = !in_single,
            '"' if !in_single => in_double = !in_double,
            '#' if !in_single && !in_double && (i == 0 || line[..i].ends_with(' ')) => {
                return &line[..i]
            }
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "model: churn # the model\nbuild:\n  context: .\n  dockerfile: Dockerfile\ntrain:\n  channels: {train: data/train}\ndeploy:\n  smoke:\n    - request: a.json\n      expect-status: 200\n";

    #[test]
    fn finds_nested_keys() {
        assert_eq!(key_position(TEXT, &["build", "dockerfile"]), Some((4, 3)));
        assert_eq!(key_position(TEXT, &["model"]), Some((1, 1)));
        assert_eq!(
            key_position(TEXT, &["deploy", "smoke", "request"]),
            Some((9, 7))
        );
    }

    #[test]
    fn flow_mappings_resolve_to_their_key() {
        assert_eq!(
            key_position(TEXT, &["train", "channels", "train"]),
            Some((6, 3))
        );
    }

    #[test]
    fn missing_keys_are_none() {
        assert_eq!(key_position(TEXT, &["build", "target"]), None);
        assert_eq!(key_position(TEXT, &["dockerfile"]), None);
    }
}
