//! The `manifests` format: the objects `mlcd render deploy` prints, written as
//! `<path>/<endpoint>.yaml` in the manifests repository (the whole file is mlcd's:
//! it says so in its first line). Unchanged objects → nothing to commit. A
//! traffic step of the deploy ([`Change::traffic`]) is the InferenceService's
//! `spec.predictor.canaryTrafficPercent`; without one the field is left out
//! (KServe's promotion: all of the traffic to the latest ready revision).

use serde_json::Value;

use super::{Change, Edited, Editor};
use crate::error::UserError;

/// The first line of every file mlcd writes.
pub const HEADER: &str = "# Written by mlcd (`mlcd render deploy`); a deploy rewrites this file.\n";

/// Writes rendered objects into a directory.
pub struct ManifestsEditor {
    /// The endpoint's name: the file is `<endpoint>.yaml`.
    pub endpoint: String,
    /// The rendered objects (YAML documents), as `mlcd render deploy` prints them.
    pub rendered: String,
}

impl ManifestsEditor {
    /// The objects with the InferenceService's traffic percentage set to
    /// `traffic` (removed for `None`), as YAML documents.
    fn with_traffic(&self, traffic: Option<u8>) -> Result<String, UserError> {
        let mut objects = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&self.rendered) {
            let mut v: Value = serde::Deserialize::deserialize(doc).map_err(|e| {
                UserError::failed(format!(
                    "the objects `mlcd render deploy` gave do not read back as YAML: {e}"
                ))
            })?;
            if v["kind"] == "InferenceService" {
                if let Some(p) = v
                    .pointer_mut("/spec/predictor")
                    .and_then(Value::as_object_mut)
                {
                    match traffic {
                        Some(t) => {
                            p.insert("canaryTrafficPercent".into(), t.into());
                        }
                        None => {
                            p.remove("canaryTrafficPercent");
                        }
                    }
                }
            }
            objects.push(v);
        }
        Ok(crate::train::kubernetes::to_yaml(&objects))
    }
}

impl Editor for ManifestsEditor {
    fn file(&self, path: &str) -> String {
        let dir = path.trim_end_matches('/');
        if dir.is_empty() || dir == "." {
            format!("{}.yaml", self.endpoint)
        } else {
            format!("{dir}/{}.yaml", self.endpoint)
        }
    }

    fn edit(&self, file: &str, text: Option<&str>, change: &Change) -> Result<Edited, UserError> {
        let new = format!("{HEADER}{}", self.with_traffic(change.traffic)?);
        if text == Some(new.as_str()) {
            return Ok(Edited::Unchanged);
        }
        let what = match (text.is_some(), change.traffic) {
            (false, _) => "created".to_string(),
            (true, Some(t)) => format!("rewritten at canaryTrafficPercent {t}"),
            (true, None) => "rewritten".to_string(),
        };
        Ok(Edited::Changed {
            text: new,
            changes: vec![format!(
                "{file} {what} for {} ({})",
                change.version,
                change.image()
            )],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traffic_step_sets_the_percentage_and_promotion_removes_it() {
        let ed = ManifestsEditor {
            endpoint: "churn".into(),
            rendered: "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nspec:\n  predictor:\n    canaryTrafficPercent: 10\n    minReplicas: 1\n".into(),
        };
        let mut change = Change {
            model: "churn".into(),
            version: "v2".into(),
            repository: "r/churn".into(),
            tag: None,
            digest: None,
            storage_uri: None,
            traffic: Some(50),
        };
        let Edited::Changed { text, changes } = ed.edit("churn.yaml", None, &change).unwrap()
        else {
            panic!()
        };
        assert!(text.contains("canaryTrafficPercent: 50\n"), "{text}");
        assert!(text.contains("minReplicas: 1"), "{text}");
        change.traffic = None;
        let Edited::Changed {
            text: promoted,
            changes: c2,
        } = ed.edit("churn.yaml", Some(&text), &change).unwrap()
        else {
            panic!()
        };
        assert!(!promoted.contains("canaryTrafficPercent"), "{promoted}");
        assert!(changes[0].contains("created"), "{changes:?}");
        assert_eq!(
            c2,
            vec!["churn.yaml rewritten for v2 (r/churn)".to_string()]
        );
    }

    #[test]
    fn the_file_is_written_once_and_then_left_alone() {
        let ed = ManifestsEditor {
            endpoint: "churn".into(),
            rendered: "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n".into(),
        };
        assert_eq!(ed.file("apps/churn/"), "apps/churn/churn.yaml");
        assert_eq!(ed.file("."), "churn.yaml");
        let change = Change {
            model: "churn".into(),
            version: "v1".into(),
            repository: "r/churn".into(),
            tag: None,
            digest: None,
            storage_uri: None,
            traffic: None,
        };
        let Edited::Changed { text, .. } = ed.edit("a/churn.yaml", None, &change).unwrap() else {
            panic!()
        };
        assert!(text.starts_with(HEADER));
        assert_eq!(
            ed.edit("a/churn.yaml", Some(&text), &change).unwrap(),
            Edited::Unchanged
        );
    }
}
