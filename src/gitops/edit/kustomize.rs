//! The `kustomize` format: the kustomization's `images:` entry for the model gets
//! `newName`, `newTag` and `digest` (the digest pinned: kustomize then writes
//! `newName:newTag@digest` into every container using the image).

use super::yaml_text::{self, Kind, Step, Value};
use super::{check_reads_back, error_at, missing_file, parse_yaml, Change, Edited, Editor};
use crate::error::UserError;

/// Edits the `images:` entry named `name` (default: the entry whose name is the
/// image repository, or ends with `/<model>`, or is the model id).
pub struct KustomizeEditor {
    /// The `images[].name` to edit, from `deploy.gitops.image`.
    pub name: Option<String>,
}

impl KustomizeEditor {
    fn matches(&self, entry_name: &str, change: &Change) -> bool {
        match &self.name {
            Some(n) => entry_name == n,
            None => {
                entry_name == change.repository
                    || entry_name == change.model
                    || entry_name.ends_with(&format!("/{}", change.model))
            }
        }
    }
}

impl Editor for KustomizeEditor {
    fn edit(&self, file: &str, text: Option<&str>, change: &Change) -> Result<Edited, UserError> {
        let Some(original) = text else {
            return Err(missing_file(file, "a kustomization"));
        };
        let Some(digest) = change.digest.clone() else {
            return Err(UserError::invalid(format!(
                "the kustomize format pins the image by digest, and `{}` has none",
                change.image()
            ))
            .hint("deploy an image by digest (`repository@sha256:…`, what `mode: build` outputs as `image`)"));
        };
        let mut wanted = vec![("newName", Value::Str(change.repository.clone()))];
        if let Some(t) = &change.tag {
            wanted.push(("newTag", Value::Str(t.clone())));
        }
        wanted.push(("digest", Value::Str(digest)));

        let mut text = original.to_string();
        let mut changes = Vec::new();
        for (key, value) in wanted {
            let docs = parse_yaml(file, &text)?;
            let (index, entry_name) = self.entry(file, &docs, change)?;
            let entry =
                yaml_text::find(&docs[0], &[Step::Key("images".into()), Step::Index(index)])
                    .ok()
                    .expect("the entry was just found");
            let steps = [
                Step::Key("images".into()),
                Step::Index(index),
                Step::Key(key.into()),
            ];
            let (new, old) = match entry.get(key) {
                Some(node) => {
                    let old = node.scalar().unwrap_or_default().to_string();
                    let spliced = yaml_text::splice(&text, node, &value).map_err(|e| {
                        error_at(
                            file,
                            node.line,
                            format!("cannot set `images[{entry_name}].{key}`: {e}"),
                            "write the value on one line",
                        )
                    })?;
                    (spliced, old)
                }
                None => {
                    let inserted = yaml_text::insert(&text, entry, key, &value).map_err(|e| {
                        error_at(
                            file,
                            entry.line,
                            format!(
                                "cannot add `{key}` to the `images:` entry `{entry_name}`: {e}"
                            ),
                            "write the entry as a mapping (`- name: …`)",
                        )
                    })?;
                    (Some(inserted), "(unset)".to_string())
                }
            };
            if let Some(new) = new {
                check_reads_back(file, &new, 0, &steps, &value.as_text())?;
                changes.push(format!(
                    "images[{entry_name}].{key}: {old} → {}",
                    value.as_text()
                ));
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

impl KustomizeEditor {
    /// The index and name of the model's `images:` entry.
    fn entry(
        &self,
        file: &str,
        docs: &[yaml_text::Node],
        change: &Change,
    ) -> Result<(usize, String), UserError> {
        let wanted = self.name.clone().unwrap_or_else(|| change.model.clone());
        let hint_add = format!(
            "add an entry to the kustomization (`images: [{{name: {wanted}}}]`, the name as the manifests write the image), or set `deploy.gitops.image` to the entry's name"
        );
        let Some(root) = docs.first() else {
            return Err(error_at(
                file,
                1,
                "is empty: expected a kustomization".into(),
                &hint_add,
            ));
        };
        let Some((images_key, images)) = root.entry("images") else {
            return Err(error_at(
                file,
                1,
                format!("the kustomization has no `images:` list, so it has no entry for the image `{wanted}`"),
                &hint_add,
            ));
        };
        let Kind::Seq(items) = &images.kind else {
            return Err(error_at(
                file,
                images_key.line,
                "`images:` is not a list".into(),
                &hint_add,
            ));
        };
        let names: Vec<(usize, String)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| {
                it.get("name")
                    .and_then(|n| n.scalar())
                    .map(|n| (i, n.to_string()))
            })
            .collect();
        let found: Vec<&(usize, String)> = names
            .iter()
            .filter(|(_, n)| self.matches(n, change))
            .collect();
        match found.as_slice() {
            [one] => Ok((one.0, one.1.clone())),
            [] => Err(error_at(
                file,
                images_key.line,
                format!(
                    "the kustomization's `images:` has no entry for the image `{wanted}` (it has: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.iter().map(|(_, n)| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                    }
                ),
                &hint_add,
            )),
            many => Err(error_at(
                file,
                images_key.line,
                format!(
                    "the kustomization's `images:` has {} entries that could be the model's ({})",
                    many.len(),
                    many.iter().map(|(_, n)| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ),
                "set `deploy.gitops.image` to the entry's name",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> Change {
        Change {
            model: "churn".into(),
            version: "v4".into(),
            repository: "127.0.0.1:5000/churn".into(),
            tag: Some("abc".into()),
            digest: Some(format!("sha256:{}", "c".repeat(64))),
            storage_uri: None,
            traffic: None,
        }
    }

    #[test]
    fn the_images_entry_gets_name_tag_and_digest_and_nothing_else_moves() {
        let text = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n# the app\nresources:\n  - deployment.yaml   # base\nimages:\n  - name: sidecar\n    newTag: \"1.0\"\n  - name: churn   # ours\n    newName: old/churn\n    newTag: v1\n";
        let ed = KustomizeEditor { name: None };
        let Edited::Changed { text: out, changes } = ed
            .edit("kustomization.yaml", Some(text), &change())
            .unwrap()
        else {
            panic!()
        };
        let want = text.replace("old/churn", "127.0.0.1:5000/churn").replace(
            "newTag: v1\n",
            &format!("newTag: abc\n    digest: sha256:{}\n", "c".repeat(64)),
        );
        assert_eq!(out, want);
        assert_eq!(changes.len(), 3);
        assert_eq!(
            ed.edit("kustomization.yaml", Some(&out), &change())
                .unwrap(),
            Edited::Unchanged
        );
    }

    #[test]
    fn a_kustomization_without_the_image_is_refused_naming_what_it_has() {
        let ed = KustomizeEditor { name: None };
        let text = "resources: [a.yaml]\nimages:\n- name: redis\n";
        let err = ed
            .edit("k/kustomization.yaml", Some(text), &change())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "k/kustomization.yaml:2: the kustomization's `images:` has no entry for the image `churn` (it has: `redis`)"
        );
        let err = ed
            .edit(
                "k/kustomization.yaml",
                Some("resources: [a.yaml]\n"),
                &change(),
            )
            .unwrap_err();
        assert!(err.message.contains("has no `images:` list"), "{err}");
        let mut no_digest = change();
        no_digest.digest = None;
        let err = ed
            .edit("k/kustomization.yaml", Some(text), &no_digest)
            .unwrap_err();
        assert!(err.message.contains("pins the image by digest"), "{err}");
    }
}
