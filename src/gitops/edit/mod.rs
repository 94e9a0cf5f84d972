//! Format-preserving edits of manifests: what a deploy changes ([`Change`]) is
//! spliced into the file's text by one [`Editor`] per format, everything else
//! stays byte for byte (comments, order, quoting, Flux markers). An edit that
//! cannot be made — a missing key path, a kustomization without the image — is a
//! clear error pointing at the file and line, found before anything is committed.

pub mod flux;
pub mod keys;
pub mod kustomize;
pub mod manifests;
pub mod yaml_text;

use std::path::PathBuf;

use serde::Serialize;

use crate::config::values::ImageRef;
use crate::error::{Location, UserError};
use yaml_text::Node;

/// What a deploy writes into the manifests.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Change {
    /// The model id.
    pub model: String,
    /// The version id (`v3`, or `i-<digest>` for an image alone).
    pub version: String,
    /// The image repository with its host (`ghcr.io/acme/churn`).
    pub repository: String,
    /// The image tag, when the reference has one.
    pub tag: Option<String>,
    /// The image digest (`sha256:…`), when known.
    pub digest: Option<String>,
    /// Where the model is stored (`kubernetes.storage-uri`), when set.
    pub storage_uri: Option<String>,
    /// The traffic share the new version takes (a canary step), when the
    /// manifests hold one.
    pub traffic: Option<u8>,
}

impl Change {
    /// The change for deploying `image`.
    pub fn for_image(model: &str, version: &str, image: &ImageRef) -> Change {
        let repository = match &image.host {
            Some(h) => format!("{h}/{}", image.repository),
            None => image.repository.clone(),
        };
        Change {
            model: model.to_string(),
            version: version.to_string(),
            repository,
            tag: image.tag.as_ref().map(|t| t.as_str().to_string()),
            digest: image.digest.clone(),
            storage_uri: None,
            traffic: None,
        }
    }

    /// The full image reference: `repository[:tag][@digest]`.
    pub fn image(&self) -> String {
        let mut s = self.repository.clone();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

/// What an edit did to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edited {
    /// The file already says what the deploy wants: nothing to commit.
    Unchanged,
    /// The new text, and one line per value changed (`images[churn].digest: a → b`).
    Changed { text: String, changes: Vec<String> },
}

/// Edits one format of manifest.
pub trait Editor {
    /// The file this editor writes, given the configured `deploy.gitops.path`
    /// (the path itself, or a file inside it for `manifests`).
    fn file(&self, path: &str) -> String {
        path.to_string()
    }

    /// Applies `change` to the file's `text` (`None`: the file does not exist).
    fn edit(&self, file: &str, text: Option<&str>, change: &Change) -> Result<Edited, UserError>;
}

/// The error for a file the repository does not hold.
pub fn missing_file(file: &str, what: &str) -> UserError {
    UserError::invalid(format!(
        "`deploy.gitops.path`: the manifests repository has no file `{file}` ({what} is edited in place, not created)"
    ))
    .hint("check `deploy.gitops.path` and `deploy.gitops.branch`: the path is relative to the repository's root")
}

/// An edit error pointing at `line` of `file`.
pub fn error_at(file: &str, line: usize, message: String, hint: &str) -> UserError {
    UserError::invalid(message).hint(hint).at(Location {
        file: PathBuf::from(file),
        line,
        column: None,
    })
}

/// Parses `text` as YAML, naming the file and line on error.
pub fn parse_yaml(file: &str, text: &str) -> Result<Vec<Node>, UserError> {
    yaml_text::parse(text).map_err(|e| {
        error_at(
            file,
            e.line,
            format!("not valid YAML: {}", e.message),
            "fix the file in the manifests repository (mlcd edits it in place)",
        )
    })
}

/// Re-reads `text` after an edit and checks the value at `steps` of document
/// `doc` is `want`: a splice that reads back differently is a bug, never committed.
pub fn check_reads_back(
    file: &str,
    text: &str,
    doc: usize,
    steps: &[yaml_text::Step],
    want: &str,
) -> Result<(), UserError> {
    let docs = parse_yaml(file, text)?;
    let got = docs
        .get(doc)
        .and_then(|d| yaml_text::find(d, steps).ok())
        .and_then(|n| n.scalar().map(str::to_string));
    if got.as_deref() == Some(want) {
        Ok(())
    } else {
        Err(UserError::failed(format!(
            "{file}: after editing, `{}` reads back as {got:?}, not `{want}`; nothing was committed",
            yaml_text::show_path(steps)
        )))
    }
}
