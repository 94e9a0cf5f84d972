//! Who a job or an endpoint belongs to. mlcd records an [`Identity`] on every
//! training job and endpoint it creates (container labels locally, tags on
//! SageMaker, annotations on Kubernetes, labels on Vertex) and compares it before
//! it attaches to a job found by name or changes an endpoint: a job that merely
//! has our name is never taken for ours. Names derived here differ between
//! repositories and workspaces, and stay the same on a re-run of the same attempt.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::context::GitHubContext;
use crate::error::UserError;

/// Tag keys (SageMaker tags, `dev.mlcd.tag.<key>` container labels).
pub const TAG_SOURCE: &str = "mlcd:source";
/// The model id.
pub const TAG_MODEL: &str = "mlcd:model";
/// The commit.
pub const TAG_COMMIT: &str = "mlcd:commit";
/// The image reference.
pub const TAG_IMAGE: &str = "mlcd:image";
/// The config file's digest.
pub const TAG_CONFIG: &str = "mlcd:config";
/// The hyperparameters' digest.
pub const TAG_HYPERPARAMETERS: &str = "mlcd:hyperparameters";

/// The longest value a tag takes on every backend that has tags (SageMaker: 256).
const MAX_VALUE: usize = 256;

/// The run a job or an endpoint was started for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Identity {
    /// Where the run comes from: `github.com/owner/repo` in GitHub Actions, else
    /// `workspace:<host>:<directory>` (two checkouts on one machine differ).
    pub source: String,
    /// The model id.
    pub model: String,
    /// The commit, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The image reference (a digest when the reference pins one).
    pub image: String,
    /// `sha256:…` of the config file, or `none`.
    pub config: String,
    /// `sha256:…` (16 hex digits) of the hyperparameters, or `none` for endpoints.
    pub hyperparameters: String,
}

/// How closely a found job must match this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Found by the name this run derives (a re-run of the same attempt, or a job
    /// "started meanwhile by another run"): everything must match.
    Rerun,
    /// Named by the `attach` input: the same source, model and commit (a collecting
    /// step need not repeat the submitting step's hyperparameters or image).
    Attach,
    /// An endpoint this run is about to change: the same source.
    Endpoint,
}

/// What a backend recorded about a job or endpoint of a given name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Nothing of that name exists.
    Absent,
    /// It exists but carries no mlcd identity (made by hand, by another tool, or
    /// by an mlcd older than 0.2).
    Unknown,
    /// It exists and was made for this identity.
    Run(Identity),
}

/// One field where a found job differs from this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The field (`source`, `commit`, …).
    pub field: &'static str,
    /// The found job's value.
    pub theirs: String,
    /// This run's value.
    pub ours: String,
}

impl Identity {
    /// The identity of this run for `model`, `image`, the config digest and the
    /// hyperparameters (empty for endpoints). Values are made tag-safe here, so
    /// what a backend stores and what a re-run computes compare equal.
    pub fn new(
        ctx: &GitHubContext,
        model: &str,
        image: &str,
        config_digest: Option<&str>,
        hyperparameters: Option<&BTreeMap<String, String>>,
    ) -> Identity {
        Identity {
            source: source_of(ctx),
            model: tag_safe(model),
            commit: ctx.sha.as_deref().map(tag_safe),
            image: tag_safe(image),
            config: tag_safe(config_digest.unwrap_or("none")),
            hyperparameters: hyperparameters.map_or_else(|| "none".into(), digest_of),
        }
    }

    /// The identity as tags (merged into a job's or endpoint's lineage tags).
    pub fn tags(&self) -> BTreeMap<String, String> {
        let mut t = BTreeMap::from([
            (TAG_SOURCE.to_string(), self.source.clone()),
            (TAG_MODEL.to_string(), self.model.clone()),
            (TAG_IMAGE.to_string(), self.image.clone()),
            (TAG_CONFIG.to_string(), self.config.clone()),
            (
                TAG_HYPERPARAMETERS.to_string(),
                self.hyperparameters.clone(),
            ),
        ]);
        if let Some(c) = &self.commit {
            t.insert(TAG_COMMIT.to_string(), c.clone());
        }
        t
    }

    /// Reads an identity back from tags; `None` when they carry none (no source).
    pub fn from_tags<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Identity> {
        let map: BTreeMap<&str, &str> = tags.into_iter().collect();
        let get = |k: &str| map.get(k).map(|v| (*v).to_string());
        Some(Identity {
            source: get(TAG_SOURCE)?,
            model: get(TAG_MODEL).unwrap_or_default(),
            commit: get(TAG_COMMIT),
            image: get(TAG_IMAGE).unwrap_or_default(),
            config: get(TAG_CONFIG).unwrap_or_else(|| "none".into()),
            hyperparameters: get(TAG_HYPERPARAMETERS).unwrap_or_else(|| "none".into()),
        })
    }

    /// Where `theirs` (a found job's identity) differs from this run, for `purpose`.
    pub fn differences(&self, theirs: &Identity, purpose: Purpose) -> Vec<Difference> {
        let none = || "(none)".to_string();
        let mut fields: Vec<(&'static str, String, String)> =
            vec![("source", theirs.source.clone(), self.source.clone())];
        if purpose != Purpose::Endpoint {
            fields.push(("model", theirs.model.clone(), self.model.clone()));
            fields.push((
                "commit",
                theirs.commit.clone().unwrap_or_else(none),
                self.commit.clone().unwrap_or_else(none),
            ));
        }
        if purpose == Purpose::Rerun {
            fields.push(("image", theirs.image.clone(), self.image.clone()));
            fields.push(("config", theirs.config.clone(), self.config.clone()));
            fields.push((
                "hyperparameters",
                theirs.hyperparameters.clone(),
                self.hyperparameters.clone(),
            ));
        }
        fields
            .into_iter()
            .filter(|(_, t, o)| t != o)
            .map(|(field, theirs, ours)| Difference {
                field,
                theirs,
                ours,
            })
            .collect()
    }

    /// Checks that `recorded` (what the backend keeps for `what` `name`, e.g.
    /// "training job" `churn-1-1-3fa2c1`) belongs to this run. `Ok(())` when it
    /// does (or nothing of that name exists); otherwise an error (exit 1) naming
    /// the job, what it was started for, what this run wants, and the fix.
    pub fn check(
        &self,
        what: &str,
        name: &str,
        recorded: &Recorded,
        purpose: Purpose,
    ) -> Result<(), UserError> {
        let fix = match purpose {
            Purpose::Rerun => "give this run a different model id (`model-id`), or attach to the job on purpose with `attach` from the run that started it",
            Purpose::Attach => "attach takes the `job-id` output of the step that submitted the job, in the same repository and commit",
            Purpose::Endpoint => "set `deploy.endpoint` to a name of this repository's own",
        };
        match recorded {
            Recorded::Absent => Ok(()),
            Recorded::Unknown => Err(UserError::failed(format!(
                "{what} `{name}` exists but carries no mlcd identity (it was not started by this version of mlcd), so mlcd cannot tell whether it belongs to this run ({self}); it is left alone and none of its results are used"
            ))
            .hint(fix)),
            Recorded::Run(theirs) => {
                let diffs = self.differences(theirs, purpose);
                if diffs.is_empty() {
                    return Ok(());
                }
                let shown: Vec<String> = diffs
                    .iter()
                    .map(|d| format!("{} `{}` (this run: `{}`)", d.field, d.theirs, d.ours))
                    .collect();
                Err(UserError::failed(format!(
                    "{what} `{name}` belongs to another run: it was started for {theirs}; this run is {self}. It differs in {}. mlcd leaves it alone and uses none of its results",
                    shown.join(", ")
                ))
                .hint(fix))
            }
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model {} from {}", self.model, self.source)?;
        if let Some(c) = &self.commit {
            write!(f, " at commit {}", &c[..c.len().min(12)])?;
        }
        Ok(())
    }
}

/// Where a run comes from: the repository in GitHub Actions (with the server's
/// host, so GitHub Enterprise repositories differ from github.com ones), else the
/// machine and directory of the workspace.
pub fn source_of(ctx: &GitHubContext) -> String {
    match &ctx.repository {
        Some(repo) => {
            let host = ctx
                .server_url
                .split_once("://")
                .map_or(ctx.server_url.as_str(), |(_, h)| h)
                .trim_end_matches('/');
            tag_safe(&format!("{host}/{repo}"))
        }
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into());
            let dir = std::fs::canonicalize(&ctx.workspace).unwrap_or(ctx.workspace.clone());
            tag_safe(&format!("workspace:{host}:{}", dir.display()))
        }
    }
}

/// `sha256:` and 16 hex digits of the hyperparameters (sorted `k=v` pairs).
pub fn digest_of(hp: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in hp {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    format!("sha256:{}", &hex(&h.finalize())[..16])
}

/// Six hex digits that tell `parts` apart: the part of a derived name that
/// differs between repositories and workspaces.
pub fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())[..6].to_string()
}

/// `<prefix>-<suffix>` within `max` characters: the prefix (the model id) is
/// shortened when needed, never the suffix that makes the name unique.
pub fn fit_name(prefix: &str, suffix: &str, max: usize) -> String {
    let room = max.saturating_sub(suffix.len() + 1).max(1);
    let p: String = prefix.chars().take(room).collect();
    format!("{}-{suffix}", p.trim_end_matches('-'))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A value every backend's tags take as it is: letters, digits, spaces and
/// `_.:/=+-@` (SageMaker's tag alphabet), at most 256 characters; anything else
/// becomes `_`.
pub fn tag_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_VALUE)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(source: &str, commit: &str, hp: &str) -> Identity {
        Identity {
            source: source.into(),
            model: "churn".into(),
            commit: Some(commit.into()),
            image: "127.0.0.1:15000/ml/churn:abc".into(),
            config: "sha256:aa".into(),
            hyperparameters: hp.into(),
        }
    }

    #[test]
    fn tags_round_trip() {
        let i = ident("github.com/acme/churn", "abc123", "sha256:01");
        let tags = i.tags();
        let back = Identity::from_tags(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(back, Some(i));
        assert_eq!(Identity::from_tags([("mlcd:model", "churn")]), None);
    }

    #[test]
    fn a_job_of_another_repository_is_refused_naming_both_runs_and_the_fix() {
        let ours = ident("github.com/acme/churn", "abc123", "sha256:01");
        let theirs = ident("github.com/other/churn", "def456", "sha256:01");
        let err = ours
            .check(
                "training job",
                "churn-1-1",
                &Recorded::Run(theirs),
                Purpose::Rerun,
            )
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("training job `churn-1-1` belongs to another run"),
            "{text}"
        );
        assert!(text.contains("github.com/other/churn"), "{text}");
        assert!(
            text.contains("this run is model churn from github.com/acme/churn"),
            "{text}"
        );
        assert!(
            text.contains("commit `def456` (this run: `abc123`)"),
            "{text}"
        );
        assert_eq!(err.kind.exit_code(), 1);
    }

    #[test]
    fn attach_ignores_hyperparameters_but_not_the_commit() {
        let ours = ident("s", "c1", "sha256:01");
        assert!(ours
            .check(
                "training job",
                "j",
                &Recorded::Run(ident("s", "c1", "sha256:02")),
                Purpose::Attach
            )
            .is_ok());
        assert!(ours
            .check(
                "training job",
                "j",
                &Recorded::Run(ident("s", "c1", "sha256:02")),
                Purpose::Rerun
            )
            .is_err());
        assert!(ours
            .check(
                "training job",
                "j",
                &Recorded::Run(ident("s", "c2", "sha256:01")),
                Purpose::Attach
            )
            .is_err());
        assert!(ours
            .check("training job", "j", &Recorded::Absent, Purpose::Rerun)
            .is_ok());
        assert!(ours
            .check("training job", "j", &Recorded::Unknown, Purpose::Attach)
            .is_err());
    }

    #[test]
    fn endpoints_compare_the_source_only() {
        let ours = ident("s", "c1", "none");
        assert!(ours
            .check(
                "endpoint",
                "e",
                &Recorded::Run(ident("s", "c9", "none")),
                Purpose::Endpoint
            )
            .is_ok());
        assert!(ours
            .check(
                "endpoint",
                "e",
                &Recorded::Run(ident("t", "c1", "none")),
                Purpose::Endpoint
            )
            .is_err());
    }

    #[test]
    fn names_fit_and_keep_their_unique_suffix() {
        let long = "m".repeat(40);
        let n = fit_name(&long, "12345678901-12-3fa2c1", 50);
        assert_eq!(n.len(), 50);
        assert!(n.ends_with("-12345678901-12-3fa2c1"));
        assert_eq!(fit_name("churn", "1-1-abcdef", 63), "churn-1-1-abcdef");
        assert_ne!(short_hash(&["a", "b"]), short_hash(&["ab", ""]));
    }

    #[test]
    fn tag_safe_values_survive_sagemaker_rules() {
        assert_eq!(tag_safe("workspace:h:/tmp/a b~c"), "workspace:h:/tmp/a b_c");
        assert_eq!(tag_safe(&"x".repeat(300)).len(), 256);
    }
}
