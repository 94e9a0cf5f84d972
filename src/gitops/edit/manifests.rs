//! The `manifests` format: the objects `mlcd render deploy` prints, written as
//! `<path>/<endpoint>.yaml` in the manifests repository (the whole file is mlcd's:
//! it says so in its first line). Unchanged objects → nothing to commit.

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
        let new = format!("{HEADER}{}", self.rendered);
        if text == Some(new.as_str()) {
            return Ok(Edited::Unchanged);
        }
        let what = if text.is_some() {
            "rewritten"
        } else {
            "created"
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
