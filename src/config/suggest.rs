//! "Did you mean" suggestions for misspelt keys, words and inputs.

/// The known name closest to `given`, if one is close enough to be a likely typo.
pub fn nearest<'a>(given: &str, known: &[&'a str]) -> Option<&'a str> {
    let g = given.to_ascii_lowercase().replace('_', "-");
    known
        .iter()
        .map(|k| (*k, strsim::damerau_levenshtein(&g, k)))
        .filter(|(k, d)| *d <= (k.len().max(3) / 3).max(1) || (g.len() > 2 && k.starts_with(&g)))
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

/// A message for an unknown word with the nearest known one and the full list.
pub fn unknown_word(what: &str, given: &str, known: &[&str]) -> String {
    let list = known
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match nearest(given, known) {
        Some(k) => {
            format!("unknown {what} `{given}`: did you mean `{k}`? (expected one of {list})")
        }
        None => format!("unknown {what} `{given}`: expected one of {list}"),
    }
}

/// Rewrites serde's `unknown field `x`, expected one of `a`, `b`` into a message
/// with a suggestion, naming the section the key was found in.
pub fn rewrite_unknown_field(message: &str, section: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (given, rest) = rest.split_once('`')?;
    let known = backticked(rest);
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let place = if section.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in `{section}`")
    };
    let list = known
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(match nearest(given, &known) {
        Some(k) => {
            format!("unknown key `{given}` {place}: did you mean `{k}`? (known keys: {list})")
        }
        None if known.is_empty() => {
            format!("unknown key `{given}` {place}: this section takes no keys")
        }
        None => format!("unknown key `{given}` {place} (known keys: {list})"),
    })
}

fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, p)| p.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let known = ["endpoint", "instance", "replicas", "strategy"];
        assert_eq!(nearest("endpont", &known), Some("endpoint"));
        assert_eq!(nearest("stratgey", &known), Some("strategy"));
        assert_eq!(nearest("zzz", &known), None);
    }

    #[test]
    fn rewrites_serde_unknown_field() {
        let m = rewrite_unknown_field(
            "unknown field `endpont`, expected one of `endpoint`, `instance`",
            "deploy",
        )
        .unwrap();
        assert_eq!(
            m,
            "unknown key `endpont` in `deploy`: did you mean `endpoint`? (known keys: `endpoint`, `instance`)"
        );
    }
}
