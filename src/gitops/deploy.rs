//! The GitOps deploy conductor: check the `deploy.gitops` settings, choose the
//! version (as every deploy does), write it into the manifests repository as one
//! commit, and report it. Nothing here talks to a cluster: the GitOps controller
//! applies the commit.

use super::argocd::ArgoCd;
use super::commit::{self, Committed, Target};
use super::edit::flux::FluxEditor;
use super::edit::keys::{KeysEditor, HELM_DEFAULT_KEYS};
use super::edit::kustomize::KustomizeEditor;
use super::edit::manifests::ManifestsEditor;
use super::edit::{Change, Editor};
use super::follow::{self, Followed};
use super::github::Repo;
use super::steps::{self, Commits};
use crate::config::gitops::GitopsConfig;
use crate::config::values::{GitopsFormat, ImageRef, KeySource, Strategy};
use crate::error::{Outcome, UserError};
use crate::modes::ModeEnv;
use crate::plan::Plan;
use crate::report::deployments::State;
use crate::report::Reporter;
use crate::secrets::Secret;

use std::time::Duration;

fn at(env: &ModeEnv<'_>, key: &str, err: UserError) -> UserError {
    match env.config.and_then(|c| {
        c.locate(&["deploy", "gitops", key])
            .or_else(|| c.locate(&["deploy", "gitops"]))
    }) {
        Some(l) => err.at(l),
        None => err,
    }
}

/// Checks the settings before anything is read or written, and returns the editor.
pub fn editor(
    plan: &Plan,
    g: &GitopsConfig,
    env: &ModeEnv<'_>,
) -> Result<Box<dyn Editor>, UserError> {
    let d = plan.deploy.as_ref().expect("a deploy plan");
    let valid_repo = g
        .repo
        .split_once('/')
        .is_some_and(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'));
    if !valid_repo {
        return Err(at(
            env,
            "repo",
            UserError::invalid(format!(
                "`deploy.gitops.repo` is `{}`: expected `owner/name` of the manifests repository",
                g.repo
            ))
            .hint("write it as GitHub names it, like `acme/deploy`"),
        ));
    }
    if g.path.trim().is_empty() || g.path.starts_with('/') || g.path.split('/').any(|s| s == "..") {
        return Err(at(
            env,
            "path",
            UserError::invalid(format!(
                "`deploy.gitops.path` is `{}`: expected a path relative to the repository's root, like `apps/churn/kustomization.yaml`",
                g.path
            )),
        ));
    }
    let commits = commits(plan, g, env)?;
    if g.pull_request == Some(true) && commits.len() > 1 {
        return Err(at(
            env,
            "pull-request",
            UserError::invalid(format!(
                "`deploy.strategy: {}` takes one commit per traffic step, each verified before the next, but `deploy.gitops.pull-request: true` proposes one change for review and cannot verify steps",
                d.strategy
            ))
            .hint("use `strategy: all-at-once` with pull requests, or push the steps directly (remove `pull-request`)"),
        ));
    }
    let keys_of = |default: &[(&str, crate::config::values::KeySource)]| {
        if g.keys.is_empty() {
            default.iter().map(|(p, s)| (p.to_string(), *s)).collect()
        } else {
            g.keys
                .iter()
                .map(|(p, s)| (p.clone(), *s))
                .collect::<Vec<_>>()
        }
    };
    if !g.keys.is_empty() && !matches!(g.format, GitopsFormat::Helm | GitopsFormat::Yaml) {
        return Err(at(
            env,
            "keys",
            UserError::invalid(format!(
                "`deploy.gitops.keys` applies to the `helm` and `yaml` formats, not `{}`",
                g.format
            ))
            .hint("remove `keys`, or change `format`"),
        ));
    }
    for path in g.keys.keys() {
        super::edit::yaml_text::parse_path(path).map_err(|e| {
            at(
                env,
                "keys",
                UserError::invalid(format!("`deploy.gitops.keys`: {e}")),
            )
        })?;
    }
    Ok(match g.format {
        GitopsFormat::Kustomize => Box::new(KustomizeEditor {
            name: g.image.clone(),
        }),
        GitopsFormat::Helm => Box::new(KeysEditor {
            format: "helm",
            keys: keys_of(HELM_DEFAULT_KEYS),
        }),
        GitopsFormat::Yaml => {
            if g.keys.is_empty() {
                return Err(at(
                    env,
                    "format",
                    UserError::invalid("`deploy.gitops.format: yaml` needs `deploy.gitops.keys`: which fields to set, and to what")
                        .hint("for example `keys: {spec.predictor.model.storageUri: storage-uri}` or `keys: {\"spec.predictor.containers[0].image\": image}`"),
                ));
            }
            Box::new(KeysEditor {
                format: "yaml",
                keys: keys_of(&[]),
            })
        }
        GitopsFormat::Flux => Box::new(FluxEditor {
            policy: g.image.clone(),
        }),
        GitopsFormat::Manifests => Box::new(ManifestsEditor {
            endpoint: d.endpoint.clone(),
            rendered: crate::modes::deploy::render(plan)?,
        }),
    })
}

/// The commits the strategy takes in this format ([`steps::commits`]); a
/// strategy the manifests cannot express is refused here, before anything is
/// read or written. Traffic steps are verified on the cluster, so they need
/// Argo CD to follow and the Kubernetes settings to read the InferenceService.
pub fn commits(plan: &Plan, g: &GitopsConfig, env: &ModeEnv<'_>) -> Result<Commits, UserError> {
    let d = plan.deploy.as_ref().expect("a deploy plan");
    if let Some(name) = &g.rollout {
        return rollout_commits(d, g, env, name);
    }
    let has_traffic = g.keys.values().any(|k| *k == KeySource::Traffic);
    let commits =
        steps::commits(d.strategy, &d.steps, g.format, has_traffic).map_err(|(msg, hint)| {
            let located = env.config.and_then(|c| {
                c.locate(&["deploy", "strategy"])
                    .or_else(|| c.locate(&["deploy", "gitops", "format"]))
            });
            let e = UserError::invalid(msg).hint(hint);
            match located {
                Some(l) => e.at(l),
                None => e,
            }
        })?;
    if commits.len() > 1 {
        if g.argocd.is_none() {
            return Err(at(env, "format", UserError::invalid(format!(
                "`deploy.strategy: {}` through `deploy.gitops` commits one traffic step at a time and verifies each before the next, which needs `deploy.gitops.argocd` to follow the commits",
                d.strategy
            ))
            .hint("add `deploy.gitops.argocd: {server, app, token-env}`, or use `deploy.strategy: all-at-once`")));
        }
        if d.kubernetes.is_none() {
            return Err(at(env, "format", UserError::invalid(format!(
                "`deploy.strategy: {}` through `deploy.gitops` reads the InferenceService `{}` from the cluster to verify each traffic step, and no Kubernetes settings are given",
                d.strategy, d.endpoint
            ))
            .hint("set `backend: kubernetes` and `kubernetes.namespace` (and KUBECONFIG with read access to InferenceServices there)")));
        }
    }
    Ok(commits)
}

/// With `deploy.gitops.rollout` an Argo Rollouts Rollout carries its own
/// steps: one commit of the image, then its canary steps are followed on the
/// cluster. What cannot be meant that way is refused here, before anything is
/// read or written.
fn rollout_commits(
    d: &crate::plan::DeployPlan,
    g: &GitopsConfig,
    env: &ModeEnv<'_>,
    name: &str,
) -> Result<Commits, UserError> {
    let located = |path: &[&str], e: UserError| match env.config.and_then(|c| c.locate(path)) {
        Some(l) => e.at(l),
        None => at(env, "rollout", e),
    };
    if g.format == GitopsFormat::Manifests {
        return Err(at(env, "format", UserError::invalid(format!(
            "`deploy.gitops.rollout: {name}` follows an Argo Rollouts Rollout, but `format: manifests` writes mlcd's own objects (a KServe InferenceService), not a Rollout"
        ))
        .hint("edit the Rollout's image with `format: kustomize`, `helm`, `yaml` (key `spec.template.spec.containers[0].image: image`) or `flux`; or remove `rollout` to deploy the InferenceService")));
    }
    if matches!(d.strategy, Strategy::Shadow | Strategy::BlueGreen) {
        return Err(located(&["deploy", "strategy"], UserError::invalid(format!(
            "`deploy.strategy: {}` with `deploy.gitops.rollout: {name}`: the Rollout's own `spec.strategy` decides how the new version takes traffic, and mlcd follows its canary steps; it does not turn them into a {}",
            d.strategy, d.strategy
        ))
        .hint("set `deploy.strategy: canary` (follow the Rollout's steps) or `all-at-once`, and put the steps in the Rollout's `spec.strategy.canary.steps`")));
    }
    let steps_given = env
        .config
        .and_then(|c| c.locate(&["deploy", "steps"]))
        .filter(|_| d.strategy != Strategy::AllAtOnce);
    if let Some(l) = steps_given {
        return Err(UserError::invalid(format!(
            "`deploy.steps` and `deploy.gitops.rollout: {name}` both say how the traffic moves: the Rollout's `spec.strategy.canary.steps` decide it on the cluster, and mlcd would not follow `deploy.steps`"
        ))
        .hint("remove `deploy.steps` (mlcd follows the Rollout's steps and shows them in the summary), or remove `rollout`")
        .at(l));
    }
    if g.argocd.is_none() {
        return Err(at(env, "rollout", UserError::invalid(format!(
            "`deploy.gitops.rollout: {name}` needs `deploy.gitops.argocd`: mlcd waits for Argo CD to sync the commit before following the Rollout, and to sync the revert if the Rollout fails"
        ))
        .hint("add `deploy.gitops.argocd: {server, app, token-env}`")));
    }
    if d.kubernetes.is_none() {
        return Err(at(env, "rollout", UserError::invalid(format!(
            "`deploy.gitops.rollout: {name}` reads the Rollout from the cluster, and no Kubernetes settings are given"
        ))
        .hint("set `backend: kubernetes` and `kubernetes.namespace` (the Rollout's namespace), and KUBECONFIG with read access to rollouts.argoproj.io there")));
    }
    Ok(vec![None])
}

/// The commit message: model, version, image digest and run URL.
pub fn message(plan: &Plan, change: &Change, environment: &str) -> String {
    let mut m = format!(
        "Deploy {} {} to {environment}\n\nModel: {}\nVersion: {}\nImage: {}\n",
        change.model,
        change.version,
        change.model,
        change.version,
        change.image()
    );
    if let Some(d) = &change.digest {
        m.push_str(&format!("Digest: {d}\n"));
    }
    if let Some(c) = &plan.source.commit {
        m.push_str(&format!("Source commit: {c}\n"));
    }
    if let Some(u) = &plan.source.run_url {
        m.push_str(&format!("Run: {u}\n"));
    }
    m.push_str("\nWritten by mlcd.\n");
    m
}

/// Argo CD settings resolved before anything is committed: the client (its
/// token read from the configured variable and masked) and the bounds.
pub(super) struct Follow {
    pub(super) argo: ArgoCd,
    pub(super) app: String,
    pub(super) cooldown: Duration,
    pub(super) poll: Duration,
}

fn argocd(g: &GitopsConfig, env: &ModeEnv<'_>) -> Result<Option<Follow>, UserError> {
    let Some(a) = &g.argocd else {
        return Ok(None);
    };
    let var = a.token_env.clone().unwrap_or_else(|| "ARGOCD_TOKEN".into());
    let token = env
        .env
        .get(&var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            at(
                env,
                "argocd",
                UserError::invalid(format!(
                    "`deploy.gitops.argocd` needs an Argo CD API token in the environment variable `{var}`, and it is not set"
                ))
                .hint(format!(
                    "in a workflow: `env: {{ {var}: ${{{{ secrets.ARGOCD_TOKEN }}}} }}` on the step (an Argo CD account token with `applications, get` on the application); or name another variable with `token-env`"
                )),
            )
        })?;
    let argo = ArgoCd::new(&a.server, Secret::new(token)).map_err(|e| {
        at(
            env,
            "argocd",
            UserError::invalid(format!("`deploy.gitops.argocd.server` `{}`: {e}", a.server)),
        )
    })?;
    let poll = env
        .env
        .get("MLCD_POLL_INTERVAL_MS")
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(2), Duration::from_millis);
    Ok(Some(Follow {
        argo,
        app: a.app.clone(),
        cooldown: a.cool_down.map_or(Duration::from_secs(10), |c| c.0),
        poll,
    }))
}

/// Runs a GitOps deploy.
pub async fn run(
    plan: &Plan,
    g: &GitopsConfig,
    env: &ModeEnv<'_>,
    reporter: &mut Reporter,
) -> anyhow::Result<Outcome> {
    let d = plan.deploy.as_ref().expect("a deploy plan");
    let editor = editor(plan, g, env)?;
    let mut follow_with = argocd(g, env)?;
    let (token, which) = match (&env.request.gitops_token, &env.request.github_token) {
        (Some(t), _) => (t, "gitops-token"),
        (None, Some(t)) => (t, "github-token"),
        (None, None) => {
            return Err(UserError::invalid(format!(
                "`deploy.gitops` commits to {} through GitHub's API, and no token was given",
                g.repo
            ))
            .hint("pass `gitops-token` (a token with Contents: read and write on the manifests repository), or `github-token` when the manifests live in this repository (CLI: MLCD_GITOPS_TOKEN or GITHUB_TOKEN)")
            .into())
        }
    };
    reporter.info(&format!(
        "{} {} with the `{which}` token",
        match g.pull_request {
            Some(true) => "proposing a pull request on",
            _ => "committing to",
        },
        g.repo
    ));
    let registry =
        crate::registry::open(&d.registry, env.workspace, d.sagemaker.as_ref(), env.env).await?;
    let candidate = crate::modes::deploy::choose(plan, d, &*registry, reporter).await?;
    let image: ImageRef = candidate.image.parse().map_err(|e: String| {
        UserError::invalid(format!("the image to deploy, `{}`: {e}", candidate.image))
    })?;
    let mut change = Change::for_image(plan.model_id.as_str(), &candidate.version, &image);
    change.storage_uri = candidate.model_data.clone();

    let api = env
        .env
        .get("GITHUB_API_URL")
        .cloned()
        .unwrap_or_else(|| "https://api.github.com".into());
    let mut repo = Repo::client(&api, token, &g.repo).map_err(UserError::invalid)?;
    let branch = g.branch.clone().unwrap_or_else(|| "main".into());
    let file = editor.file(&g.path);
    let target = Target {
        file: &file,
        branch: &branch,
    };
    reporter.set_output("endpoint", d.endpoint.clone());
    let mut gh = crate::modes::deploy::GitHub::start(plan, d, env, &candidate, reporter).await;
    let result: anyhow::Result<Outcome> = async {
        let commits = commits(plan, g, env)?;
        // Pull-request mode: a branch and a pull request; followed only once merged.
        let merged = match g.pull_request == Some(true) {
            true => match super::pull::propose(
                &mut repo,
                editor.as_ref(),
                &target,
                &change,
                plan,
                g,
                &message(plan, &change, &d.environment),
                reporter,
                &mut gh,
            )
            .await?
            {
                super::pull::Proposed::Open => return Ok(Outcome::Submitted),
                super::pull::Proposed::OnBase(sha) => Some(sha),
            },
            false => None,
        };
        if merged.is_none() && commits.len() > 1 {
            let follow = follow_with
                .as_mut()
                .expect("commits() requires deploy.gitops.argocd for traffic steps");
            return super::rollout::run(
                super::rollout::Rollout {
                    plan,
                    g,
                    env,
                    editor: editor.as_ref(),
                    repo: &mut repo,
                    target: &target,
                    change,
                    follow,
                    gh: &mut gh,
                    commits,
                },
                reporter,
            )
            .await;
        }
        let result = match merged {
            Some(_) => Committed::Unchanged,
            None => {
                commit::commit_change(
                    &mut repo,
                    editor.as_ref(),
                    &target,
                    &change,
                    &message(plan, &change, &d.environment),
                )
                .await?
            }
        };
        let (sha, before, after) = match result {
            Committed::Unchanged if merged.is_some() => {
                (merged.clone().unwrap_or_default(), None, String::new())
            }
            Committed::Unchanged if g.rollout.is_some() && follow_with.is_some() => {
                reporter.info(&format!(
                    "{}@{branch}:{file} already deploys {} ({}): nothing committed",
                    g.repo,
                    change.version,
                    change.image()
                ));
                return super::rollout_deploy::run(
                    super::rollout_deploy::RolloutDeploy {
                        plan,
                        g,
                        env,
                        repo: &mut repo,
                        target: &target,
                        change: &change,
                        follow: follow_with.as_mut().expect("checked above"),
                        gh: &mut gh,
                        name: g.rollout.as_deref().expect("checked above"),
                        commit: None,
                        merged: false,
                    },
                    reporter,
                )
                .await;
            }
            Committed::Unchanged => {
                reporter.info(&format!(
                    "{}@{branch}:{file} already deploys {} ({}): nothing committed",
                    g.repo,
                    change.version,
                    change.image()
                ));
                reporter.add_summary(&format!(
                    "### GitOps deploy of `{}` {}: nothing to commit\n\n`{file}` in `{}` (branch `{branch}`) already holds `{}`.\n",
                    change.model, change.version, g.repo, change.image()
                ));
                reporter.warn(if follow_with.is_none() {
                    UNVERIFIED
                } else {
                    "nothing was committed, so there is no new revision for Argo CD to sync: mlcd did not check the application"
                });
                gh.finish(
                    State::InProgress,
                    "already in the manifests repository: nothing committed",
                    None,
                    reporter,
                )
                .await;
                return Ok(Outcome::Submitted);
            }
            Committed::Commit {
                sha,
                changes,
                attempts,
                before,
                after,
            } => {
                reporter.set_output("gitops-commit", sha.clone());
                let url = format!("https://github.com/{}/commit/{sha}", g.repo);
                reporter.info(&format!(
                    "committed {} to {}@{branch} ({file}): {}{}",
                    short(&sha),
                    g.repo,
                    changes.join("; "),
                    if attempts > 1 {
                        format!(" — after {} pushes by others came first", attempts - 1)
                    } else {
                        String::new()
                    }
                ));
                let rows: String = changes.iter().map(|c| format!("- `{c}`\n")).collect();
                reporter.add_summary(&format!(
                    "### GitOps deploy of `{}` {}\n\nCommitted [`{}`]({url}) to `{}` (branch `{branch}`, `{file}`):\n\n{rows}\n",
                    change.model,
                    change.version,
                    short(&sha),
                    g.repo
                ));
                (sha, before, after)
            }
        };
        let Some(f) = follow_with.as_mut() else {
            reporter.warn(UNVERIFIED);
            gh.finish(
                State::InProgress,
                &format!(
                    "committed {} to {}; rollout not verified",
                    short(&sha),
                    g.repo
                ),
                None,
                reporter,
            )
            .await;
            return Ok(Outcome::Submitted);
        };
        if let Some(name) = g.rollout.as_deref() {
            return super::rollout_deploy::run(
                super::rollout_deploy::RolloutDeploy {
                    plan,
                    g,
                    env,
                    repo: &mut repo,
                    target: &target,
                    change: &change,
                    follow: f,
                    gh: &mut gh,
                    name,
                    commit: Some(super::rollout_deploy::Commit { sha, before, after }),
                    merged: merged.is_some(),
                },
                reporter,
            )
            .await;
        }
        let timeout = d.ready_timeout.0;
        let followed = follow::follow(
            &mut f.argo,
            &mut repo,
            &f.app,
            &sha,
            timeout,
            f.cooldown,
            f.poll,
            |l| reporter.info(l),
        )
        .await
        .map_err(UserError::failed)?;
        let (why, outcome) = match followed {
            Followed::Healthy { first_healthy } => {
                reporter.info(&format!(
                    "Argo CD application {}: {} synced and Healthy after {:.1}s, held for {}s; done ({} Argo CD calls)",
                    f.app,
                    short(&sha),
                    first_healthy.as_secs_f64(),
                    f.cooldown.as_secs(),
                    f.argo.calls
                ));
                reporter.add_summary(&format!(
                    "Argo CD application `{}`: synced `{}`, **Healthy**.\n",
                    f.app,
                    short(&sha)
                ));
                gh.finish(
                    State::Success,
                    &format!("{} synced by Argo CD and Healthy", short(&sha)),
                    g.argocd
                        .as_ref()
                        .map(crate::config::gitops::ArgocdConfig::app_url)
                        .as_deref(),
                    reporter,
                )
                .await;
                return Ok(Outcome::Succeeded);
            }
            Followed::Failed(why) => (why, Outcome::Failed),
            Followed::TimedOut(last) => (
                format!(
                    "Argo CD did not report {} synced and Healthy within {} (ready-timeout); last: {last}",
                    short(&sha),
                    humantime::format_duration(timeout)
                ),
                Outcome::TimedOut,
            ),
        };
        roll_back(
            Undo {
                repo: &mut repo,
                target: &target,
                follow: f,
                change: &change,
                environment: &d.environment,
                timeout,
                commits: std::slice::from_ref(&sha),
                before,
                after,
                merged: merged.is_some(),
            },
            why,
            outcome,
            &mut gh,
            reporter,
        )
        .await
    }
    .await;
    if let Err(e) = &result {
        // Whatever stopped the step, its deployment does not stay `in_progress`.
        gh.fail_if_open(e, reporter).await;
    }
    result
}

/// What a failed rollout reverts: mlcd's commits of `target`, the file's text
/// before the first and after the last.
pub(super) struct Undo<'a> {
    pub(super) repo: &'a mut Repo,
    pub(super) target: &'a Target<'a>,
    pub(super) follow: &'a mut Follow,
    pub(super) change: &'a Change,
    pub(super) environment: &'a str,
    pub(super) timeout: Duration,
    pub(super) commits: &'a [String],
    pub(super) before: Option<String>,
    pub(super) after: String,
    /// The change came through a merged pull request (mlcd made no commit).
    pub(super) merged: bool,
}

/// Reverts mlcd's commits by one commit restoring the file (only if nobody
/// changed it since), waits for Argo CD to report the revert Healthy, reports,
/// and returns the error the step ends with.
pub(super) async fn roll_back(
    u: Undo<'_>,
    why: String,
    outcome: Outcome,
    gh: &mut crate::modes::deploy::GitHub,
    reporter: &mut Reporter,
) -> anyhow::Result<Outcome> {
    let (change, file) = (u.change, u.target.file);
    reporter.warn(format!(
        "the rollout of {} failed: {why}; reverting mlcd's commit{}",
        change.version,
        if u.commits.len() > 1 { "s" } else { "" }
    ));
    let Some(before) = u.before else {
        gh.finish(State::Failure, &why, None, reporter).await;
        let left = match u.merged {
            true => "the change came through a merged pull request, which mlcd does not revert: revert it on GitHub (the pull request's Revert button)".to_string(),
            false => format!("mlcd created `{file}` and does not delete it: remove it by hand"),
        };
        return Err(UserError::new(outcome, format!("{why}; {left}")).into());
    };
    let list = u.commits.join(", ");
    let revert_msg = format!(
        "Revert \"Deploy {} {} to {}\"\n\nThis reverts commit{} {list}: {why}\n\nWritten by mlcd.\n",
        change.model,
        change.version,
        u.environment,
        if u.commits.len() > 1 { "s" } else { "" }
    );
    let reverted = commit::revert(u.repo, u.target, &before, &u.after, &revert_msg).await?;
    reporter.set_output("gitops-revert", reverted.clone());
    let f = u.follow;
    let back = follow::follow_revert(
        &mut f.argo,
        u.repo,
        &f.app,
        &reverted,
        u.timeout,
        f.cooldown,
        f.poll,
        |l| reporter.info(l),
    )
    .await
    .map_err(UserError::failed)?;
    let after_revert = match back {
        Followed::Healthy { .. } => format!("reverted by {} and Healthy again", short(&reverted)),
        Followed::Failed(w) => format!("reverted by {}, which is not healthy either: {w}", short(&reverted)),
        Followed::TimedOut(l) => format!("reverted by {}, which Argo CD did not report Healthy within the ready-timeout (last: {l})", short(&reverted)),
    };
    reporter.add_summary(&format!(
        "Argo CD application `{}`: {why}. Rolled back: {after_revert}.\n",
        f.app
    ));
    gh.finish(
        State::Failure,
        &format!("{why}; {after_revert}"),
        None,
        reporter,
    )
    .await;
    Err(UserError::new(outcome, format!("{why}; {after_revert}"))
        .hint("see the application in Argo CD for the failing resources")
        .into())
}

const UNVERIFIED: &str = "mlcd did not verify the rollout: no `deploy.gitops.argocd` is configured, so whether the GitOps controller applied it and it became healthy is not known";

pub(super) fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}
