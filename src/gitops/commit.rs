//! One deploy change as one commit: read the file, apply the edit, write it back
//! naming the SHA read. A concurrent push (409, or 422 "does not match") → read
//! again, apply again, try again, a bounded number of times. Already at the
//! wanted values → no commit.

use super::edit::{Change, Edited, Editor};
use super::github::{Repo, RepoError};
use crate::error::UserError;

/// How many read-modify-write rounds before giving up on a busy branch.
pub const ATTEMPTS: usize = 5;

/// What committing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// The file already held the wanted values: nothing was committed.
    Unchanged,
    /// One commit, after `attempts` rounds, changing these values.
    Commit {
        /// The commit's SHA.
        sha: String,
        /// One line per value changed.
        changes: Vec<String>,
        /// Rounds it took (2+: another push came in between).
        attempts: usize,
        /// The file before the commit (`None`: the commit created it).
        before: Option<String>,
        /// The file as committed.
        after: String,
    },
}

/// Where the change goes.
pub struct Target<'a> {
    /// The file in the repository.
    pub file: &'a str,
    /// The branch.
    pub branch: &'a str,
}

pub(super) fn forbidden(repo: &str, what: &str, e: &str) -> UserError {
    UserError::failed(format!(
        "the token cannot {what} {repo} ({e}): it needs `contents: write` on that repository"
    ))
    .hint(format!(
        "for this workflow's own repository add `permissions: {{ contents: write }}` to the job; for another repository ({repo}) pass a fine-grained token with Contents: read and write on it as the `gitops-token` input"
    ))
}

/// Reads, edits and commits `change` into `target`, with `message`.
pub async fn commit_change(
    repo: &mut Repo,
    editor: &dyn Editor,
    target: &Target<'_>,
    change: &Change,
    message: &str,
) -> Result<Committed, UserError> {
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let current = repo
            .read(target.file, target.branch)
            .await
            .map_err(|e| match e {
                RepoError::Forbidden(m) => forbidden(&repo.name, "read", &m),
                other => UserError::failed(format!(
                    "reading `{}` from {} (branch `{}`): {other}",
                    target.file, repo.name, target.branch
                )),
            })?;
        let edited = editor
            .edit(
                target.file,
                current.as_ref().map(|f| f.text.as_str()),
                change,
            )
            .map_err(|e| {
                let m = format!(
                    "{} (in {} on branch `{}`)",
                    e.message, repo.name, target.branch
                );
                UserError { message: m, ..e }
            })?;
        let (text, changes) = match edited {
            Edited::Unchanged => return Ok(Committed::Unchanged),
            Edited::Changed { text, changes } => (text, changes),
        };
        match repo
            .write(
                target.file,
                target.branch,
                &text,
                message,
                current.as_ref().map(|f| f.sha.as_str()),
            )
            .await
        {
            Ok(sha) => {
                return Ok(Committed::Commit {
                    sha,
                    changes,
                    attempts: attempt,
                    before: current.map(|f| f.text),
                    after: text,
                })
            }
            Err(RepoError::Conflict(m)) => {
                log::info!(
                    "{} changed on `{}` while mlcd wrote it ({m}); reading it again (attempt {attempt} of {ATTEMPTS})",
                    target.file,
                    target.branch
                );
                last = m;
            }
            Err(RepoError::Forbidden(m)) => return Err(forbidden(&repo.name, "push to", &m)),
            Err(RepoError::Other(m)) => {
                return Err(UserError::failed(format!(
                    "committing `{}` to {} (branch `{}`): {m}",
                    target.file, repo.name, target.branch
                )))
            }
        }
    }
    Err(UserError::failed(format!(
        "`{}` on {} branch `{}` kept changing while mlcd wrote it: {ATTEMPTS} attempts lost to other pushes (last: {last})",
        target.file, repo.name, target.branch
    ))
    .hint("run the deploy again when the branch is quieter"))
}

/// Reverts mlcd's commit: writes `before` back when the file still holds `after`
/// (what mlcd committed). When someone changed the file since, nothing is written
/// and the error says so: their change is not mlcd's to undo.
pub async fn revert(
    repo: &mut Repo,
    target: &Target<'_>,
    before: &str,
    after: &str,
    message: &str,
) -> Result<String, UserError> {
    let current = repo
        .read(target.file, target.branch)
        .await
        .map_err(|e| UserError::failed(format!("reading `{}` to revert it: {e}", target.file)))?;
    let Some(current) = current else {
        return Err(UserError::failed(format!(
            "`{}` is gone from {} branch `{}`: nothing to revert",
            target.file, repo.name, target.branch
        )));
    };
    if current.text != after {
        return Err(UserError::failed(format!(
            "`{}` on {} branch `{}` changed after mlcd's commit, so mlcd did not revert it (it reverts only its own change)",
            target.file, repo.name, target.branch
        ))
        .hint("revert the deploy commit by hand (`git revert`), or fix forward"));
    }
    repo.write(
        target.file,
        target.branch,
        before,
        message,
        Some(&current.sha),
    )
    .await
    .map_err(|e| match e {
        RepoError::Forbidden(m) => forbidden(&repo.name, "push to", &m),
        other => UserError::failed(format!("reverting `{}`: {other}", target.file)),
    })
}
