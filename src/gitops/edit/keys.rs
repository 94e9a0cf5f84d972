//! The `helm` and `yaml` formats: set fields found by path (`image.tag`,
//! `spec.predictor.model.storageUri`, `spec.predictor.canaryTrafficPercent`) to
//! values of the deploy. Helm is this editor with default keys
//! (`image.repository` / `image.tag` / `image.digest`).

use super::yaml_text::{self, Step, Value};
use super::{check_reads_back, error_at, missing_file, parse_yaml, Change, Edited, Editor};
use crate::config::values::KeySource;
use crate::error::UserError;

/// Helm's default keys.
pub const HELM_DEFAULT_KEYS: &[(&str, KeySource)] = &[
    ("image.repository", KeySource::Repository),
    ("image.tag", KeySource::Tag),
    ("image.digest", KeySource::Digest),
];

/// Sets each key path to its value.
pub struct KeysEditor {
    /// `helm` or `yaml`, for messages.
    pub format: &'static str,
    /// Key path → which value, in the order they are applied.
    pub keys: Vec<(String, KeySource)>,
}

/// The value `source` takes for `change`; `None` when the deploy has none (an
/// image without a tag, no storage URI).
pub fn value_of(source: KeySource, change: &Change) -> Option<Value> {
    match source {
        KeySource::Image => Some(Value::Str(change.image())),
        KeySource::Repository => Some(Value::Str(change.repository.clone())),
        KeySource::Tag => change.tag.clone().map(Value::Str),
        KeySource::Digest => change.digest.clone().map(Value::Str),
        KeySource::Version => Some(Value::Str(change.version.clone())),
        KeySource::StorageUri => change.storage_uri.clone().map(Value::Str),
        KeySource::Traffic => change.traffic.map(|t| Value::Int(t.into())),
    }
}

impl Editor for KeysEditor {
    fn edit(&self, file: &str, text: Option<&str>, change: &Change) -> Result<Edited, UserError> {
        let Some(original) = text else {
            return Err(missing_file(file, &format!("a {} file", self.format)));
        };
        let mut text = original.to_string();
        let mut changes = Vec::new();
        for (path, source) in &self.keys {
            let steps = yaml_text::parse_path(path)
                .map_err(|e| UserError::invalid(format!("`deploy.gitops.keys`: {e}")))?;
            let docs = parse_yaml(file, &text)?;
            let (doc, node) = locate(file, &docs, &steps, self.format)?;
            let Some(value) = value_of(*source, change) else {
                continue;
            };
            let old = node.scalar().unwrap_or_default().to_string();
            let spliced = yaml_text::splice(&text, node, &value).map_err(|e| {
                error_at(
                    file,
                    node.line,
                    format!("cannot set `{path}`: {e}"),
                    "make the value a single line in the file",
                )
            })?;
            if let Some(new) = spliced {
                check_reads_back(file, &new, doc, &steps, &value.as_text())?;
                changes.push(format!("{path}: {old} → {}", value.as_text()));
                text = new;
            }
        }
        Ok(if changes.is_empty() {
            Edited::Unchanged
        } else {
            Edited::Changed { text, changes }
        })
    }
}

/// Finds `steps` in the first document holding them, or explains how far the
/// path got.
pub fn locate<'a>(
    file: &str,
    docs: &'a [yaml_text::Node],
    steps: &[Step],
    format: &str,
) -> Result<(usize, &'a yaml_text::Node), UserError> {
    let mut best: Option<yaml_text::Missing<'a>> = None;
    for (i, d) in docs.iter().enumerate() {
        match yaml_text::find(d, steps) {
            Ok(n) => return Ok((i, n)),
            Err(m) => {
                if best.as_ref().is_none_or(|b| m.resolved > b.resolved) {
                    best = Some(m);
                }
            }
        }
    }
    let path = yaml_text::show_path(steps);
    let (line, message) = match best {
        Some(m) if m.resolved > 0 => (
            m.line,
            format!(
                "`{path}` is not in the file: `{}` (line {}) has no `{}`",
                yaml_text::show_path(&steps[..m.resolved]),
                m.line,
                yaml_text::show_path(&steps[m.resolved..m.resolved + 1])
            ),
        ),
        _ => (1, format!("`{path}` is not in the file")),
    };
    Err(error_at(
        file,
        line,
        message,
        &format!(
            "add the key to the file, or set `deploy.gitops.keys` to the paths this {format} file uses (like `image.tag: tag`)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> Change {
        Change {
            model: "churn".into(),
            version: "v4".into(),
            repository: "ghcr.io/acme/churn".into(),
            tag: Some("abc123".into()),
            digest: Some(format!("sha256:{}", "b".repeat(64))),
            storage_uri: Some("s3://models/churn/v4".into()),
            traffic: Some(10),
        }
    }

    fn helm() -> KeysEditor {
        KeysEditor {
            format: "helm",
            keys: HELM_DEFAULT_KEYS
                .iter()
                .map(|(p, s)| (p.to_string(), *s))
                .collect(),
        }
    }

    const VALUES: &str = "# Values for churn\nreplicaCount: 2\nimage:\n  # where it comes from\n  repository: ghcr.io/acme/churn   # keep me\n  tag: \"old\"\n  digest: \"\"\n  pullPolicy: IfNotPresent\nservice: {port: 8080}\n";

    #[test]
    fn helm_values_change_only_the_three_values() {
        let Edited::Changed { text, changes } =
            helm().edit("values.yaml", Some(VALUES), &change()).unwrap()
        else {
            panic!("expected a change")
        };
        let want = VALUES.replace("\"old\"", "\"abc123\"").replace(
            "digest: \"\"",
            &format!("digest: \"sha256:{}\"", "b".repeat(64)),
        );
        assert_eq!(text, want);
        assert_eq!(changes.len(), 2, "{changes:?}");
        // Applying the same change again finds nothing to do.
        assert_eq!(
            helm().edit("values.yaml", Some(&text), &change()).unwrap(),
            Edited::Unchanged
        );
    }

    #[test]
    fn a_missing_key_path_names_the_file_the_line_and_the_key() {
        let text = "image:\n  repository: x\n  tag: y\n";
        let err = helm()
            .edit("charts/values.yaml", Some(text), &change())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "charts/values.yaml:1: `image.digest` is not in the file: `image` (line 1) has no `digest`"
        );
        assert!(err.hint.unwrap().contains("deploy.gitops.keys"));
        let err = helm().edit("values.yaml", None, &change()).unwrap_err();
        assert!(err.message.contains("no file `values.yaml`"), "{err}");
    }

    #[test]
    fn yaml_fields_by_path_in_a_multi_document_file() {
        let text = "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nspec:\n  predictor:\n    canaryTrafficPercent: 0 # mlcd moves this\n    model:\n      storageUri: s3://models/churn/v3\n";
        let ed = KeysEditor {
            format: "yaml",
            keys: vec![
                (
                    "spec.predictor.model.storageUri".into(),
                    KeySource::StorageUri,
                ),
                (
                    "spec.predictor.canaryTrafficPercent".into(),
                    KeySource::Traffic,
                ),
            ],
        };
        let Edited::Changed { text: out, .. } =
            ed.edit("isvc.yaml", Some(text), &change()).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            out,
            text.replace("v3", "v4")
                .replace("canaryTrafficPercent: 0 #", "canaryTrafficPercent: 10 #")
        );
    }
}
