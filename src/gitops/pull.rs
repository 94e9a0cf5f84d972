//! GitOps pull-request mode (`deploy.gitops.pull-request: true`): instead of
//! pushing to `deploy.gitops.branch`, mlcd keeps one branch per environment and
//! model (`mlcd/<environment>/<model>`) at the base branch plus its one edit, and
//! one open pull request from it, whose body is the plan. The step then ends
//! `submitted`: nothing is deployed until someone merges. A later run, when the
//! base branch already holds the values (the pull request was merged), has nothing
//! to propose and hands the base branch's head to the conductor to follow.

use std::fmt::Write as _;

use super::commit::{self, Committed, Target};
use super::edit::{Change, Edited, Editor};
use super::github::{Repo, RepoError};
use crate::config::gitops::GitopsConfig;
use crate::error::UserError;
use crate::modes::deploy::GitHub;
use crate::plan::Plan;
use crate::report::deployments::State;
use crate::report::Reporter;

/// A hidden line in the body: mlcd's pull requests say who wrote them.
const MARKER: &str = "<!-- mlcd:gitops-pull-request -->";

/// The branch mlcd proposes from: `mlcd/<environment>/<model>`, each part kept
/// to the characters a git ref may hold.
pub fn branch_name(environment: &str, model: &str) -> String {
    let clean = |s: &str| {
        let c: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let c = c.trim_matches('.').replace("..", "-");
        if c.is_empty() {
            "default".to_string()
        } else {
            c
        }
    };
    format!("mlcd/{}/{}", clean(environment), clean(model))
}

/// The diff of the file: what a reviewer approves.
pub fn diff(file: &str, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(2)
        .header(&format!("a/{file}"), &format!("b/{file}"))
        .to_string()
}

/// The pull request's title.
pub fn title(change: &Change, environment: &str) -> String {
    format!(
        "Deploy {} {} to {environment}",
        change.model, change.version
    )
}

/// The pull request's body: the plan (model, version, image, digest, where),
/// the diff of the edited values, the run, and the smoke tests.
pub fn body(
    plan: &Plan,
    g: &GitopsConfig,
    change: &Change,
    file: &str,
    base: &str,
    changes: &[String],
    diff: &str,
) -> String {
    let d = plan.deploy.as_ref().expect("a deploy plan");
    let mut b = format!(
        "mlcd proposes deploying **{}** `{}` to `{}`. Merging this pull request hands it to the GitOps controller; mlcd has not deployed anything yet.\n\n| | |\n|---|---|\n| Model | `{}` |\n| Version | `{}` |\n| Image | `{}` |\n",
        change.model, change.version, d.environment, change.model, change.version, change.image()
    );
    if let Some(dg) = &change.digest {
        let _ = writeln!(b, "| Digest | `{dg}` |");
    }
    let _ = writeln!(b, "| File | `{file}` in `{}` (into `{base}`) |", g.repo);
    if let Some(c) = &plan.source.commit {
        let _ = writeln!(b, "| Source commit | `{c}` |");
    }
    if let Some(u) = &plan.source.run_url {
        let _ = writeln!(b, "| Run | {u} |");
    }
    b.push_str("\n### Values changed\n\n");
    for c in changes {
        let _ = writeln!(b, "- `{c}`");
    }
    let _ = write!(b, "\n```diff\n{}```\n", diff);
    b.push_str("\n### Smoke tests\n\n");
    if d.smoke.is_empty() {
        b.push_str("None configured (`deploy.smoke`).\n");
    } else {
        b.push_str("Not run: nothing serves this version before the merge.\n\n");
        for s in &d.smoke {
            let _ = writeln!(b, "- `{}` → expects HTTP {}", s.request, s.expect_status);
        }
    }
    b.push_str(&format!(
        "\n### After the merge\n\n{}\n\n{MARKER}\n",
        if g.argocd.is_some() {
            "Run the deploy again (the same workflow): the base branch then holds these values, so mlcd commits nothing and follows the rollout through Argo CD to Healthy."
        } else {
            "No `deploy.gitops.argocd` is configured: nobody verifies the rollout."
        }
    ));
    b
}

fn forbidden_pulls(repo: &str, e: &str) -> UserError {
    UserError::failed(format!(
        "the token cannot open or edit pull requests on {repo} ({e}): `deploy.gitops.pull-request: true` needs `pull-requests: write` (and `contents: write`) on that repository"
    ))
    .hint(format!(
        "for this workflow's own repository add `permissions: {{ contents: write, pull-requests: write }}` to the job (and allow GitHub Actions to create pull requests in the repository's Actions settings); for another repository ({repo}) pass a fine-grained token with Contents and Pull requests: read and write as the `gitops-token` input"
    ))
}

fn failed(what: &str, repo: &str, e: RepoError) -> UserError {
    match e {
        RepoError::Forbidden(m) => commit::forbidden(repo, what, &m),
        other => UserError::failed(format!("mlcd could not {what} {repo}: {other}")),
    }
}

/// What [`propose`] left for the conductor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proposed {
    /// The pull request is open with the change; the step ends `submitted`.
    Open,
    /// The base branch already holds the values (merged): follow this commit.
    OnBase(String),
}

/// Proposes `change` as a pull request (see the module comment), reports it, and
/// sets the deployment's status to `queued` with the pull request's page.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn propose(
    repo: &mut Repo,
    editor: &dyn Editor,
    target: &Target<'_>,
    change: &Change,
    plan: &Plan,
    g: &GitopsConfig,
    message: &str,
    reporter: &mut Reporter,
    gh: &mut GitHub,
) -> Result<Proposed, UserError> {
    let d = plan.deploy.as_ref().expect("a deploy plan");
    let base = target.branch;
    let file = target.file;
    // The edit against the base branch first: bad input fails before any branch exists.
    let current = repo.read(file, base).await.map_err(|e| match e {
        RepoError::Forbidden(m) => commit::forbidden(&repo.name, "read", &m),
        other => UserError::failed(format!(
            "reading `{file}` from {} (branch `{base}`): {other}",
            repo.name
        )),
    })?;
    let before = current.as_ref().map(|f| f.text.clone());
    let edited = editor
        .edit(file, before.as_deref(), change)
        .map_err(|e| UserError {
            message: format!("{} (in {} on branch `{base}`)", e.message, repo.name),
            ..e
        })?;
    let base_head = repo
        .branch_head(base)
        .await
        .map_err(|e| failed("read the branches of", &repo.name.clone(), e))?
        .ok_or_else(|| {
            UserError::invalid(format!(
                "`deploy.gitops.branch`: {} has no branch `{base}` to open a pull request into",
                repo.name
            ))
        })?;
    let (wanted, changes) = match edited {
        Edited::Unchanged => {
            reporter.info(&format!(
                "{}@{base}:{file} already deploys {} ({}): the pull request was merged (or the values pushed otherwise); nothing to propose",
                g.repo,
                change.version,
                change.image()
            ));
            reporter.add_summary(&format!(
                "### GitOps deploy of `{}` {}: already on `{base}`\n\n`{file}` in `{}` holds `{}` (at `{}`): nothing to propose.\n",
                change.model,
                change.version,
                g.repo,
                change.image(),
                &base_head[..base_head.len().min(12)]
            ));
            return Ok(Proposed::OnBase(base_head));
        }
        Edited::Changed { text, changes } => (text, changes),
    };
    let branch = branch_name(&d.environment, &change.model);
    let name = repo.name.clone();
    // The branch: base + the edit. Kept when it already is exactly that.
    let existing = repo
        .branch_head(&branch)
        .await
        .map_err(|e| failed("read the branches of", &name, e))?;
    let mut created = false;
    let mut commit_sha = None;
    let current_on_branch = match &existing {
        Some(head) => {
            let text = repo
                .read(file, &branch)
                .await
                .map_err(|e| failed("read", &name, e))?;
            let up_to_date = text.is_some_and(|t| t.text == wanted)
                && repo
                    .contains(head, &base_head)
                    .await
                    .map_err(|e| failed("compare the branches of", &name, e))?;
            up_to_date
        }
        None => false,
    };
    if !current_on_branch {
        match existing {
            Some(_) => repo
                .reset_branch(&branch, &base_head)
                .await
                .map_err(|e| failed("push to", &name, e))?,
            None => {
                repo.create_branch(&branch, &base_head)
                    .await
                    .map_err(|e| failed("create a branch on", &name, e))?;
                created = true;
            }
        }
        let on_branch = Target {
            file,
            branch: &branch,
        };
        match commit::commit_change(repo, editor, &on_branch, change, message).await {
            Ok(Committed::Commit { sha, .. }) => commit_sha = Some(sha),
            Ok(_) => {}
            Err(e) => {
                if created {
                    let _ = repo.delete_branch(&branch).await;
                }
                gh.finish(State::Failure, &e.message, None, reporter).await;
                return Err(e);
            }
        }
    }
    let title = title(change, &d.environment);
    let body = body(
        plan,
        g,
        change,
        file,
        base,
        &changes,
        &diff(file, before.as_deref().unwrap_or(""), &wanted),
    );
    let found = repo.open_pull(&branch, base).await;
    let result = match found {
        Ok(Some(p)) => repo
            .update_pull(p.number, &title, &body)
            .await
            .map(|p| (p, false)),
        Ok(None) => repo
            .create_pull(&branch, base, &title, &body)
            .await
            .map(|p| (p, true)),
        Err(e) => Err(e),
    };
    let (pull, opened) = match result {
        Ok(r) => r,
        Err(e) => {
            let cleaned = if created {
                match repo.delete_branch(&branch).await {
                    Ok(()) => format!("; mlcd deleted the branch `{branch}` it had just created"),
                    Err(d) => format!("; the branch `{branch}` mlcd created is left behind ({d}): delete it by hand"),
                }
            } else {
                String::new()
            };
            let err = match e {
                RepoError::Forbidden(m) => forbidden_pulls(&name, &m),
                other => UserError::failed(format!("opening the pull request on {name}: {other}")),
            };
            let message = format!("{}{cleaned}", err.message);
            gh.finish(State::Failure, &message, None, reporter).await;
            return Err(UserError { message, ..err });
        }
    };
    if let Some(sha) = &commit_sha {
        reporter.set_output("gitops-commit", sha.clone());
    }
    reporter.set_output("pull-request", pull.url.clone());
    reporter.info(&format!(
        "{} pull request #{} ({}) from `{branch}` into `{base}` of {}: {}{}",
        if opened { "opened" } else { "updated" },
        pull.number,
        pull.url,
        g.repo,
        changes.join("; "),
        match &commit_sha {
            Some(s) => format!(" (commit {})", &s[..s.len().min(12)]),
            None => " (the branch already held it)".to_string(),
        }
    ));
    let rows: String = changes.iter().map(|c| format!("- `{c}`\n")).collect();
    reporter.add_summary(&format!(
        "### GitOps deploy of `{}` {}: submitted as a pull request\n\n{} [#{}]({}) from `{branch}` into `{base}` of `{}` (`{file}`):\n\n{rows}\n**Not deployed yet and the rollout is not verified**: nothing changes until the pull request is merged; a run after the merge follows the rollout{}.\n",
        change.model,
        change.version,
        if opened { "Opened" } else { "Updated" },
        pull.number,
        pull.url,
        g.repo,
        if g.argocd.is_some() { " through Argo CD" } else { " (no `argocd` is configured: it will not be verified)" }
    ));
    reporter.warn(format!(
        "the deploy is submitted as pull request #{} and not deployed yet: mlcd did not verify any rollout; merge it, then run the deploy again",
        pull.number
    ));
    gh.finish(
        State::Queued,
        &format!("pull request #{} awaits review and merge", pull.number),
        Some(&pull.url),
        reporter,
    )
    .await;
    Ok(Proposed::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_branch_is_a_valid_ref_per_environment_and_model() {
        assert_eq!(branch_name("production", "churn"), "mlcd/production/churn");
        assert_eq!(branch_name("eu west..1", "churn"), "mlcd/eu-west-1/churn");
        assert_eq!(branch_name("..", "a:b"), "mlcd/default/a-b");
    }

    #[test]
    fn the_diff_shows_only_the_changed_lines_and_their_neighbours() {
        let before = "a: 1\nb: 2\nc: 3\nd: 4\ne: 5\nf: 6\n";
        let after = before.replace("e: 5", "e: 7");
        let d = diff("x.yaml", before, &after);
        assert!(d.starts_with("--- a/x.yaml\n+++ b/x.yaml\n"), "{d}");
        assert!(d.contains("-e: 5\n+e: 7\n"), "{d}");
        assert!(!d.contains("a: 1"), "{d}");
    }
}
