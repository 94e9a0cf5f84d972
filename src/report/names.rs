//! Every output's name, the modes that set it, and what it holds. action.yml
//! and the README reference are checked against this table.

use crate::config::values::Mode;

/// One output.
#[derive(Debug, Clone, Copy)]
pub struct OutputSpec {
    /// The output's name (also the key in `--output json`).
    pub name: &'static str,
    /// The modes that set it; empty means all.
    pub modes: &'static [Mode],
    /// One line for action.yml and the README.
    pub description: &'static str,
}

const fn o(name: &'static str, modes: &'static [Mode], description: &'static str) -> OutputSpec {
    OutputSpec {
        name,
        modes,
        description,
    }
}

const BUILD: &[Mode] = &[Mode::Build];
const TRAIN: &[Mode] = &[Mode::Train];
const DEPLOY: &[Mode] = &[Mode::Deploy];
const MONITOR: &[Mode] = &[Mode::Monitor];

/// Every output.
pub const OUTPUTS: &[OutputSpec] = &[
    o("status", &[], "How the run ended: `succeeded`, `planned` (dry run), `submitted` (a job not waited for), `failed`, `invalid`, `timed_out` or `cancelled`; monitor's verdict instead when it reached one: `ok`, `drifted`, `degraded` or `inconclusive`."),
    o("plan", &[], "The plan as JSON (set before anything runs, and in dry runs)."),
    o("report-url", &[], "The check run's page, when one was reported."),
    o("image", BUILD, "The pushed image as `repository@digest`."),
    o("digest", BUILD, "The manifest digest the registry reports."),
    o("tags", BUILD, "Every image reference pushed (`repository:tag`), one per line."),
    o("build-id", BUILD, "The content digest of the build inputs; an unchanged model keeps its build id."),
    o("skipped", BUILD, "`true` when an image for the same build inputs existed and was re-tagged instead of rebuilt."),
    o("job-id", TRAIN, "The training job's name (attach to it later with `attach`)."),
    o("job-url", TRAIN, "The training job's page on the backend."),
    o("model-version", TRAIN, "The model version registered for a passing job."),
    o("metrics", TRAIN, "The job's final metrics as JSON."),
    o("artifact", TRAIN, "Where the model artifact (model.tar.gz) is."),
    o("endpoint", DEPLOY, "The endpoint's name."),
    o("url", DEPLOY, "The endpoint's URL."),
    o("deployment-id", DEPLOY, "The GitHub deployment's id."),
    o("traffic", DEPLOY, "The share of traffic the new version takes (first step in a dry run)."),
    o("previous-version", DEPLOY, "The version serving before, which a rollback restores."),
    o("gitops-commit", DEPLOY, "With `deploy.gitops`: the commit mlcd pushed to the manifests repository (unset when it already held the version)."),
    o("pull-request", DEPLOY, "With `deploy.gitops.pull-request: true`: the page of the pull request mlcd opened or updated (the step then ends `submitted`: nothing is deployed until it is merged)."),
    o("gitops-revert", DEPLOY, "With `deploy.gitops.argocd`: the revert commit mlcd pushed when the rollout failed."),
    o("drifted", MONITOR, "`true` when the share of drifted columns reached `monitor.drift-share`."),
    o("drift-share", MONITOR, "The share of compared columns that drifted (0 to 1)."),
    o("drifted-columns", MONITOR, "The drifted columns as a JSON array of names."),
    o("report-path", MONITOR, "The HTML report (a histogram per drifted column), relative to the workspace."),
];
