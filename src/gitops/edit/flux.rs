//! The `flux` format: Flux image-automation setter markers. A value followed on
//! its line by `# {"$imagepolicy": "ns:name"}` is the full image, `ns:name:tag`
//! the tag, `ns:name:name` the repository, `ns:name:digest` the digest — mlcd sets
//! them as Flux's image automation would, and the markers stay.

use regex::Regex;

use super::yaml_text::{self, Kind, Node, Value};
use super::{error_at, missing_file, parse_yaml, Change, Edited, Editor};
use crate::error::UserError;

/// Sets the values marked for one image policy.
pub struct FluxEditor {
    /// The policy `namespace:name` from `deploy.gitops.image`; default: any
    /// namespace's policy named after the model.
    pub policy: Option<String>,
}

/// A marker found in the text.
struct Marker {
    at: usize,
    line: usize,
    policy: String,
    field: Option<String>,
}

fn markers(text: &str) -> Vec<Marker> {
    let re = Regex::new(r#"#\s*\{\s*"\$imagepolicy"\s*:\s*"([^"]+)"\s*\}"#).expect("a valid regex");
    re.captures_iter(text)
        .map(|c| {
            let m = c.get(0).expect("the whole match");
            let spec = c[1].to_string();
            let mut parts = spec.splitn(3, ':');
            let ns = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            Marker {
                at: m.start(),
                line: yaml_text::line_of(text, m.start()),
                policy: format!("{ns}:{name}"),
                field: parts.next().map(str::to_string),
            }
        })
        .collect()
}

fn scalars<'a>(node: &'a Node, out: &mut Vec<&'a Node>) {
    match &node.kind {
        Kind::Scalar(..) => out.push(node),
        Kind::Map(entries) => {
            for (k, v) in entries {
                scalars(k, out);
                scalars(v, out);
            }
        }
        Kind::Seq(items) => items.iter().for_each(|i| scalars(i, out)),
        Kind::Alias => {}
    }
}

impl FluxEditor {
    fn applies(&self, policy: &str, change: &Change) -> bool {
        match &self.policy {
            Some(p) => p == policy,
            None => policy.rsplit(':').next() == Some(change.model.as_str()),
        }
    }
}

impl Editor for FluxEditor {
    fn edit(&self, file: &str, text: Option<&str>, change: &Change) -> Result<Edited, UserError> {
        let Some(original) = text else {
            return Err(missing_file(file, "a file with Flux markers"));
        };
        let all = markers(original);
        let ours: Vec<&Marker> = all
            .iter()
            .filter(|m| self.applies(&m.policy, change))
            .collect();
        if ours.is_empty() {
            let wanted = self
                .policy
                .clone()
                .unwrap_or_else(|| format!("<namespace>:{}", change.model));
            let found: Vec<String> = all.iter().map(|m| format!("`{}`", m.policy)).collect();
            return Err(error_at(
                file,
                1,
                format!(
                    "no Flux setter marker `# {{\"$imagepolicy\": \"{wanted}\"}}` in the file (markers found: {})",
                    if found.is_empty() { "none".into() } else { found.join(", ") }
                ),
                "add the marker after the image value (`image: repo:tag # {\"$imagepolicy\": \"flux-system:churn\"}`), or set `deploy.gitops.image` to the policy `namespace:name` the file uses",
            ));
        }
        let docs = parse_yaml(file, original)?;
        let mut nodes = Vec::new();
        docs.iter().for_each(|d| scalars(d, &mut nodes));
        // Splice from the end so earlier offsets stay valid.
        let mut edits: Vec<(&Node, Value, String)> = Vec::new();
        for m in &ours {
            let node = nodes
                .iter()
                .filter(|n| n.end <= m.at && yaml_text::line_of(original, n.end) == m.line)
                .max_by_key(|n| n.end)
                .ok_or_else(|| {
                    error_at(
                        file,
                        m.line,
                        format!(
                            "the Flux marker for `{}` follows no value on its line",
                            m.policy
                        ),
                        "put the marker on the line of the value it sets",
                    )
                })?;
            let (what, value) = match m.field.as_deref() {
                None => ("image", Some(change.image())),
                Some("tag") => ("tag", change.tag.clone()),
                Some("name") => ("name", Some(change.repository.clone())),
                Some("digest") => ("digest", change.digest.clone()),
                Some(other) => return Err(error_at(
                    file,
                    m.line,
                    format!(
                        "the Flux marker `{}:{other}` names an unknown field `{other}`",
                        m.policy
                    ),
                    "use `ns:name` (the image), `ns:name:tag`, `ns:name:name` or `ns:name:digest`",
                )),
            };
            if let Some(v) = value {
                edits.push((node, Value::Str(v), format!("line {} ({what})", m.line)));
            }
        }
        edits.sort_by_key(|(n, _, _)| std::cmp::Reverse(n.start));
        let mut text = original.to_string();
        let mut changes = Vec::new();
        for (node, value, what) in edits {
            let old = node.scalar().unwrap_or_default().to_string();
            if let Some(new) = yaml_text::splice(&text, node, &value)
                .map_err(|e| error_at(file, node.line, e, "write the value on one line"))?
            {
                changes.push(format!("{what}: {old} → {}", value.as_text()));
                text = new;
            }
        }
        changes.reverse();
        if changes.is_empty() {
            return Ok(Edited::Unchanged);
        }
        // The markers are all still there and the values read back.
        if markers(&text).len() != all.len() {
            return Err(UserError::failed(format!(
                "{file}: editing lost a Flux marker; nothing was committed"
            )));
        }
        Ok(Edited::Changed { text, changes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_values_change_and_the_markers_stay() {
        let text = "spec:\n  template:\n    spec:\n      containers:\n      - name: churn\n        image: ghcr.io/acme/churn:v1 # {\"$imagepolicy\": \"flux-system:churn\"}\n      - name: other\n        image: redis:7 # {\"$imagepolicy\": \"flux-system:redis\"}\n---\nimage:\n  repository: ghcr.io/acme/churn # {\"$imagepolicy\": \"flux-system:churn:name\"}\n  tag: v1 # {\"$imagepolicy\": \"flux-system:churn:tag\"}\n";
        let change = Change {
            model: "churn".into(),
            version: "v2".into(),
            repository: "ghcr.io/acme/churn".into(),
            tag: Some("v2".into()),
            digest: None,
            storage_uri: None,
            traffic: None,
        };
        let Edited::Changed { text: out, changes } = FluxEditor { policy: None }
            .edit("apps/churn.yaml", Some(text), &change)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            out,
            text.replace("churn:v1 #", "churn:v2 #")
                .replace("tag: v1 #", "tag: v2 #")
        );
        assert_eq!(changes.len(), 2, "{changes:?}");
        let err = FluxEditor {
            policy: Some("apps:churn".into()),
        }
        .edit("apps/churn.yaml", Some(text), &change)
        .unwrap_err();
        assert!(
            err.message
                .contains("`flux-system:churn`, `flux-system:redis`"),
            "{err}"
        );
    }
}
