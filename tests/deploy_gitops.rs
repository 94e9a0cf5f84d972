//! `mode: deploy` with `deploy.gitops`, through the binary as the runner runs it,
//! against the fake GitHub whose contents API is backed by a real git repository:
//! the commit is read back with `git log` / `git show` and the repository at that
//! commit is built with the real `kubectl kustomize`.
//! The KServe traffic steps by commits run against the fake Argo CD syncing into
//! the fake Kubernetes API server (tests/fake_kube), whose KServe revisions are
//! real containers of the example model on the test bed's Docker engine.

mod common;
#[path = "common/fake_argocd.rs"]
mod fake_argocd;
#[path = "common/fake_kube.rs"]
mod fake_kube;

use std::path::Path;
use std::process::Command;

use common::{action, control_call, parse_outputs, FakeGitHub, Workspace};

const DIGEST_HEX: &str = "3c1ae7a0b6f84f2d9a5e0c7b1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6";

fn image() -> String {
    format!("127.0.0.1:5000/churn:3f9a2c1@sha256:{DIGEST_HEX}")
}

fn config(format: &str, path: &str, extra: &str) -> String {
    format!(
        "model: churn\ndeploy:\n  strategy: all-at-once\n  image: {}\n  gitops:\n    repo: acme/deploy\n    branch: main\n    path: {path}\n    format: {format}\n{extra}",
        image()
    )
}

/// The fake GitHub with `acme/deploy` seeded from fixtures/gitops/<dir> under `apps/churn/`.
fn seeded(fixture_dir: &str) -> (FakeGitHub, String, tempfile::TempDir) {
    let gh = FakeGitHub::start();
    let seed = tempfile::tempdir().unwrap();
    common::copy_dir(
        &common::root().join("fixtures/gitops").join(fixture_dir),
        &seed.path().join("apps/churn"),
    );
    let body = serde_json::json!({"repo": "acme/deploy", "dir": seed.path(), "branch": "main"});
    let out = control_call(
        "fake GitHub",
        &gh.url,
        "POST",
        "/_fake/git/init",
        Some(&body.to_string()),
    );
    let git_dir = out["git_dir"].as_str().unwrap().to_string();
    (gh, git_dir, seed)
}

fn git(git_dir: &str, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .env("GIT_DIR", git_dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn deploy(ws: &Workspace, gh: &FakeGitHub, extra: &[(&str, &str)]) -> common::Run {
    let mut env = vec![
        ("INPUT_MODE", "deploy"),
        ("INPUT_CONFIG", "mlcd.yml"),
        ("INPUT_GITHUB-TOKEN", "ghs_workflowtoken"),
        ("GITHUB_API_URL", gh.url.as_str()),
        ("INPUT_CHECKS", "false"),
    ];
    env.extend_from_slice(extra);
    action(ws, &env)
}

/// Everything a run printed (workflow commands on stdout, logs on stderr).
fn said(run: &common::Run) -> String {
    format!("{}\n{}", run.stdout, run.stderr)
}

/// Whether `secret` shows anywhere but in the `::add-mask::` command that hides it.
fn leaked(run: &common::Run, secret: &str) -> bool {
    said(run)
        .lines()
        .any(|l| l.contains(secret) && l != format!("::add-mask::{secret}"))
}

fn assert_no_violations(gh: &FakeGitHub) {
    let v = gh.violations();
    assert!(
        v.is_empty(),
        "requests the GitHub API description refuses: {v:#?}"
    );
}

#[test]
fn a_kustomize_deploy_is_one_commit_that_kubectl_kustomize_builds_and_a_rerun_commits_nothing() {
    let (gh, git_dir, _seed) = seeded("kustomize");
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        &config("kustomize", "apps/churn/kustomization.yaml", ""),
    );
    let run = deploy(&ws, &gh, &[("INPUT_GITOPS-TOKEN", "github_pat_crossrepo")]);
    run.assert_code(0);
    let out = parse_outputs(&ws.read("out/output"));
    assert_eq!(out["status"], "submitted", "{}", said(&run));
    let head = git(&git_dir, &["rev-parse", "main"]).trim().to_string();
    assert_eq!(out["gitops-commit"], head);
    assert!(
        said(&run).contains("did not verify the rollout"),
        "{}",
        said(&run)
    );
    assert!(!leaked(&run, "github_pat_crossrepo"), "the token leaked");

    // One commit on top of the seed, whose message names model, version, digest, run.
    assert_eq!(git(&git_dir, &["rev-list", "--count", "main"]).trim(), "2");
    let msg = git(&git_dir, &["log", "-1", "--format=%B", "main"]);
    assert!(msg.starts_with("Deploy churn "), "{msg}");
    assert!(
        msg.contains(&format!("Digest: sha256:{DIGEST_HEX}")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "Run: https://github.com/acme/churn/actions/runs/{}",
            ws.run_id
        )),
        "{msg}"
    );
    // Only the image entry changed; the comments are all there.
    let before = std::fs::read_to_string(
        common::root().join("fixtures/gitops/kustomize/kustomization.yaml"),
    )
    .unwrap();
    let after = git(&git_dir, &["show", "main:apps/churn/kustomization.yaml"]);
    assert_eq!(
        after,
        before.replace(
            "    newTag: v1\n",
            &format!("    newTag: 3f9a2c1\n    digest: sha256:{DIGEST_HEX}\n")
        )
    );

    // The real kustomize builds the repository at that commit.
    let tree = tempfile::tempdir().unwrap();
    let archive = Command::new("git")
        .args(["archive", "main"])
        .env("GIT_DIR", &git_dir)
        .output()
        .unwrap();
    let mut tar = Command::new("tar")
        .args(["-x", "-C"])
        .arg(tree.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(tar.stdin.as_mut().unwrap(), &archive.stdout).unwrap();
    drop(tar.stdin.take());
    assert!(tar.wait().unwrap().success());
    let built = Command::new("kubectl")
        .arg("kustomize")
        .arg(tree.path().join("apps/churn"))
        .env("HOME", tree.path())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let built = String::from_utf8_lossy(&built.stdout);
    assert!(built.contains(&format!("image: {}", image())), "{built}");

    // The same deploy again: nothing to commit, and it says so.
    let again = deploy(&ws, &gh, &[("INPUT_GITOPS-TOKEN", "github_pat_crossrepo")]);
    again.assert_code(0);
    assert!(
        said(&again).contains("nothing committed"),
        "{}",
        again.stderr
    );
    assert_eq!(git(&git_dir, &["rev-list", "--count", "main"]).trim(), "2");
    // Two calls for the deploy (read, write), one for the rerun (read).
    let contents: Vec<_> = gh
        .requests()
        .into_iter()
        .filter(|r| r["path"].as_str().unwrap_or("").contains("/contents/"))
        .collect();
    assert_eq!(contents.len(), 3, "{contents:#?}");
    assert!(contents.iter().all(|r| r["has_auth"] == true));
    assert_no_violations(&gh);
}

#[test]
fn a_push_that_lands_first_is_read_again_and_both_changes_are_kept() {
    let (gh, git_dir, _seed) = seeded("kustomize");
    let theirs = std::fs::read_to_string(
        common::root().join("fixtures/gitops/kustomize/kustomization.yaml"),
    )
    .unwrap()
    .replace("newTag: \"1.36\"", "newTag: \"1.37\"");
    let race = serde_json::json!({"repo": "acme/deploy", "path": "apps/churn/kustomization.yaml", "content": theirs});
    control_call(
        "fake GitHub",
        &gh.url,
        "POST",
        "/_fake/git/race",
        Some(&race.to_string()),
    );
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        &config("kustomize", "apps/churn/kustomization.yaml", ""),
    );
    let run = deploy(&ws, &gh, &[]);
    run.assert_code(0);
    assert!(
        said(&run).contains("after 1 pushes by others came first"),
        "{}",
        said(&run)
    );
    let log = git(&git_dir, &["log", "--format=%an: %s", "main"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines[0].starts_with("github-actions[bot]: Deploy churn"),
        "{log}"
    );
    assert!(lines[1].starts_with("Teammate: "), "{log}");
    let after = git(&git_dir, &["show", "main:apps/churn/kustomization.yaml"]);
    assert!(after.contains("newTag: \"1.37\""), "{after}");
    assert!(
        after.contains(&format!("digest: sha256:{DIGEST_HEX}")),
        "{after}"
    );
    let puts: Vec<_> = gh
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "PUT")
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(puts, vec![409, 200]);
    assert_no_violations(&gh);
}

#[test]
fn a_token_that_cannot_push_names_contents_write_and_nothing_is_committed() {
    let (gh, git_dir, _seed) = seeded("helm");
    let deny = serde_json::json!({"path_prefix": "/repos/acme/deploy/contents", "method": "PUT", "status": 403, "message": "Resource not accessible by integration"});
    control_call(
        "fake GitHub",
        &gh.url,
        "POST",
        "/_fake/deny",
        Some(&deny.to_string()),
    );
    let ws = Workspace::new();
    ws.write("mlcd.yml", &config("helm", "apps/churn/values.yaml", ""));
    let run = deploy(&ws, &gh, &[("INPUT_GITOPS-TOKEN", "github_pat_readonly")]);
    run.assert_code(1);
    assert!(
        said(&run).contains("it needs `contents: write` on that repository"),
        "{}",
        said(&run)
    );
    assert!(said(&run).contains("gitops-token"), "{}", said(&run));
    assert!(!leaked(&run, "github_pat_readonly"));
    assert_eq!(git(&git_dir, &["rev-list", "--count", "main"]).trim(), "1");
}

#[test]
fn bad_manifests_are_refused_naming_the_file_and_line_before_any_commit() {
    let (gh, git_dir, _seed) = seeded("helm");
    let ws = Workspace::new();
    // a Helm key path that is not in the values file
    ws.write(
        "mlcd.yml",
        &config(
            "helm",
            "apps/churn/values.yaml",
            "    keys: {image.repository: repository, image.sha: digest}\n",
        ),
    );
    let run = deploy(&ws, &gh, &[]);
    run.assert_code(2);
    assert!(
        said(&run).contains("::error file=apps/churn/values.yaml,line=4,title=mlcd%3A invalid input::`image.sha` is not in the file: `image` (line 4) has no `sha` (in acme/deploy on branch `main`)"),
        "{}",
        said(&run)
    );
    // a path that does not exist in the repository
    ws.write("mlcd.yml", &config("helm", "apps/churn/missing.yaml", ""));
    let run = deploy(&ws, &gh, &[]);
    run.assert_code(2);
    assert!(
        said(&run).contains("no file `apps/churn/missing.yaml`"),
        "{}",
        said(&run)
    );
    // a strategy the manifests cannot express
    ws.write(
        "mlcd.yml",
        &config("helm", "apps/churn/values.yaml", "").replace("all-at-once", "canary"),
    );
    let run = deploy(&ws, &gh, &[]);
    run.assert_code(2);
    assert!(
        said(&run).contains("only `all-at-once` is possible"),
        "{}",
        said(&run)
    );
    assert_eq!(git(&git_dir, &["rev-list", "--count", "main"]).trim(), "1");
    // The runs that got as far as starting a GitHub deployment ended it
    // `failure`: none is left `in_progress`.
    let deps = deployment_states(&gh);
    assert!(
        !deps.is_empty(),
        "the missing file is found after the deployment starts"
    );
    for statuses in &deps {
        assert_eq!(statuses.last().unwrap()["state"], "failure", "{deps:#?}");
    }
    assert_no_violations(&gh);
}

#[test]
fn helm_and_flux_deploys_commit_only_the_marked_values() {
    for (dir, format, file, changed) in [
        (
            "helm",
            "helm",
            "values.yaml",
            vec!["  tag: \"3f9a2c1\"        # quoted on purpose"],
        ),
        (
            "flux",
            "flux",
            "churn.yaml",
            vec!["      tag: 3f9a2c1 # {\"$imagepolicy\": \"flux-system:churn:tag\"}"],
        ),
    ] {
        let (gh, git_dir, _seed) = seeded(dir);
        let ws = Workspace::new();
        ws.write(
            "mlcd.yml",
            &config(format, &format!("apps/churn/{file}"), ""),
        );
        deploy(&ws, &gh, &[]).assert_code(0);
        let after = git(&git_dir, &["show", &format!("main:apps/churn/{file}")]);
        let before = std::fs::read_to_string(
            Path::new(&common::root())
                .join("fixtures/gitops")
                .join(dir)
                .join(file),
        )
        .unwrap();
        assert_eq!(after.lines().count(), before.lines().count(), "{after}");
        for line in changed {
            assert!(
                after.lines().any(|l| l == line),
                "{format}: no line {line:?} in\n{after}"
            );
        }
        let differing = before
            .lines()
            .zip(after.lines())
            .filter(|(a, b)| a != b)
            .count();
        assert!(differing >= 2, "{format}: {after}");
        assert_no_violations(&gh);
    }
}

#[test]
fn the_manifests_format_commits_what_mlcd_render_deploy_prints_and_yaml_sets_fields_by_path() {
    let (gh, git_dir, _seed) = seeded("kserve");
    let ws = Workspace::new();
    let cfg = config("manifests", "apps/churn/rendered", "").replace(
        "model: churn\n",
        "model: churn\nbackend: kubernetes\nkubernetes: {namespace: ml}\n",
    );
    ws.write("mlcd.yml", &cfg);
    deploy(&ws, &gh, &[]).assert_code(0);
    // rendered in the same run environment (the identity annotations name the source)
    let env = common::actions_env(&ws);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let rendered = common::mlcd(
        ws.path(),
        &["render", "deploy", "--config", "mlcd.yml"],
        &env,
    );
    rendered.assert_code(0);
    let written = git(&git_dir, &["show", "main:apps/churn/rendered/churn.yaml"]);
    assert_eq!(
        written,
        format!(
            "{}{}",
            mlcd::gitops::edit::manifests::HEADER,
            rendered.stdout
        )
    );
    assert!(
        written.contains(&format!("image: {}", image())),
        "{written}"
    );

    // `yaml`: the hand-kept InferenceService's image field, by path; the comment stays.
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        &config(
            "yaml",
            "apps/churn/churn.yaml",
            "    keys: {\"spec.predictor.containers[0].image\": image}\n",
        ),
    );
    deploy(&ws, &gh, &[]).assert_code(0);
    let before =
        std::fs::read_to_string(common::root().join("fixtures/gitops/kserve/churn.yaml")).unwrap();
    let after = git(&git_dir, &["show", "main:apps/churn/churn.yaml"]);
    assert_eq!(
        after,
        before.replace(
            "image: 127.0.0.1:5000/churn:v1",
            &format!("image: {}", image())
        )
    );
    assert_eq!(git(&git_dir, &["rev-list", "--count", "main"]).trim(), "3");
    assert_no_violations(&gh);
}

/// A kustomize deploy followed through the fake Argo CD (application `churn`
/// following `apps/churn` of the git-backed repository).
fn argo_setup(
    ready_timeout: &str,
) -> (
    FakeGitHub,
    String,
    tempfile::TempDir,
    fake_argocd::FakeArgoCd,
    Workspace,
) {
    let (gh, git_dir, seed) = seeded("kustomize");
    let argo = fake_argocd::FakeArgoCd::start();
    argo.call(
        "/_fake/app",
        serde_json::json!({"name": "churn", "git_dir": git_dir, "branch": "main", "path": "apps/churn", "namespace": "ml"}),
    );
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        &config(
            "kustomize",
            "apps/churn/kustomization.yaml",
            &format!("    argocd: {{server: \"{}\", app: churn, token-env: ARGO_TOKEN, cool-down: 1s}}\n", argo.url),
        )
        .replace("  strategy: all-at-once\n", &format!("  strategy: all-at-once\n  ready-timeout: {ready_timeout}\n")),
    );
    (gh, git_dir, seed, argo, ws)
}

const ARGO_ENV: &[(&str, &str)] = &[
    ("ARGO_TOKEN", "argocd-secret-token"),
    ("MLCD_POLL_INTERVAL_MS", "200"),
];

#[test]
fn argo_cd_syncing_the_commit_and_staying_healthy_ends_succeeded() {
    let (gh, git_dir, _seed, argo, ws) = argo_setup("30s");
    let run = deploy(&ws, &gh, ARGO_ENV);
    run.assert_code(0);
    let out = parse_outputs(&ws.read("out/output"));
    assert_eq!(out["status"], "succeeded");
    let head = git(&git_dir, &["rev-parse", "main"]).trim().to_string();
    assert_eq!(out["gitops-commit"], head);
    assert!(
        said(&run).contains(&format!("{} synced and Healthy", &head[..12])),
        "{}",
        said(&run)
    );
    assert!(!said(&run).contains("did not verify"), "{}", said(&run));
    assert!(
        !leaked(&run, "argocd-secret-token"),
        "the Argo CD token leaked"
    );
    assert_eq!(git(&git_dir, &["rev-list", "--count", "main"]).trim(), "2");
    let reqs = argo.requests();
    assert!(reqs.len() >= 3, "{reqs:#?}");
    assert!(reqs.iter().all(|r| r["status"] == 200), "{reqs:#?}");
    assert_eq!(argo.violations(), Vec::<serde_json::Value>::new());
    // The GitHub deployment of this commit: in_progress, then success with the
    // application's page as the environment URL.
    let state = gh.state();
    let statuses = &state["deployments"][0]["statuses"];
    let states: Vec<&str> = statuses
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"in_progress"), "{state:#}");
    assert_eq!(states.last(), Some(&"success"), "{state:#}");
    let last = statuses.as_array().unwrap().last().unwrap();
    assert_eq!(
        last["environment_url"],
        format!("{}/applications/churn", argo.url)
    );
    assert_no_violations(&gh);
}

#[test]
fn a_degraded_version_is_reverted_by_a_commit_and_the_old_one_is_healthy_again() {
    let (gh, git_dir, _seed, argo, ws) = argo_setup("30s");
    argo.call(
        "/_fake/degraded",
        serde_json::json!({"image_contains": DIGEST_HEX}),
    );
    let run = deploy(&ws, &gh, ARGO_ENV);
    run.assert_code(1);
    let out = parse_outputs(&ws.read("out/output"));
    assert_eq!(out["status"], "failed");
    let log = git(&git_dir, &["log", "--format=%s", "main"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(lines[0].starts_with("Revert \"Deploy churn"), "{log}");
    assert_eq!(
        out["gitops-revert"],
        git(&git_dir, &["rev-parse", "main"]).trim()
    );
    // The file is back to what it was, byte for byte.
    let original = std::fs::read_to_string(
        common::root().join("fixtures/gitops/kustomize/kustomization.yaml"),
    )
    .unwrap();
    assert_eq!(
        git(&git_dir, &["show", "main:apps/churn/kustomization.yaml"]),
        original
    );
    assert!(said(&run).contains("Degraded"), "{}", said(&run));
    assert!(said(&run).contains("Healthy again"), "{}", said(&run));
    let state = gh.state();
    let statuses = state["deployments"][0]["statuses"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(statuses.last().unwrap()["state"], "failure", "{state:#}");
    assert_eq!(argo.violations(), Vec::<serde_json::Value>::new());
    assert_no_violations(&gh);
}

#[test]
fn argo_cd_never_syncing_is_bounded_by_the_ready_timeout_and_rolled_back() {
    let (gh, git_dir, _seed, argo, ws) = argo_setup("2s");
    argo.call("/_fake/frozen", serde_json::json!({"name": "churn"}));
    let started = std::time::Instant::now();
    let run = deploy(&ws, &gh, ARGO_ENV);
    run.assert_code(3);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let out = parse_outputs(&ws.read("out/output"));
    assert_eq!(out["status"], "timed_out");
    assert!(
        said(&run).contains("within 2s (ready-timeout)"),
        "{}",
        said(&run)
    );
    assert_eq!(git(&git_dir, &["rev-list", "--count", "main"]).trim(), "3");
    assert!(
        said(&run).contains("did not report Healthy within the ready-timeout"),
        "{}",
        said(&run)
    );
}

#[test]
fn argo_cd_without_its_token_is_refused_before_any_commit() {
    let (gh, git_dir, _seed, _argo, ws) = argo_setup("30s");
    let run = deploy(&ws, &gh, &[]);
    run.assert_code(2);
    assert!(
        said(&run).contains("needs an Argo CD API token in the environment variable `ARGO_TOKEN`"),
        "{}",
        said(&run)
    );
    assert_eq!(git(&git_dir, &["rev-list", "--count", "main"]).trim(), "1");
}

#[test]
fn a_later_commit_that_contains_ours_synced_healthy_counts_as_our_rollout() {
    let (gh, git_dir, _seed, argo, ws) = argo_setup("30s");
    argo.call(
        "/_fake/push-before-sync",
        serde_json::json!({"name": "churn", "path": "apps/churn/NOTES.md", "content": "a teammate's note\n"}),
    );
    let run = deploy(&ws, &gh, ARGO_ENV);
    run.assert_code(0);
    let log = git(&git_dir, &["log", "--format=%an", "main"]);
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        vec!["Teammate", "github-actions[bot]", "Test"]
    );
    assert!(
        said(&run).contains("a later commit that contains"),
        "{}",
        said(&run)
    );
    let compares = gh
        .requests()
        .into_iter()
        .filter(|r| r["operation_id"] == "repos/compare-commits")
        .count();
    assert_eq!(compares, 1, "asked once per revision");
    assert_no_violations(&gh);
    assert_eq!(argo.violations(), Vec::<serde_json::Value>::new());
}

// ---------------------------------------------------------------------------
// Pull-request mode: a branch per environment and model, one pull request.

const PR_BRANCH: &str = "mlcd/production/churn";
const DIGEST2_HEX: &str = "9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877665544";

fn image2() -> String {
    format!("127.0.0.1:5000/churn:7b1e0d2@sha256:{DIGEST2_HEX}")
}

/// Merges pull request `number` through the fake's `pulls/merge` (validated like
/// any request), as a reviewer pressing the button would.
fn merge(gh: &FakeGitHub, number: u64) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sf", "-X", "PUT"])
        .args(["-H", "Authorization: Bearer ghp_reviewer"])
        .args([
            "-H",
            "User-Agent: reviewer",
            "-H",
            "content-type: application/json",
        ])
        .args(["-d", "{\"merge_method\": \"merge\"}"])
        .arg(format!("{}/repos/acme/deploy/pulls/{number}/merge", gh.url))
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "merging #{number} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The pull requests mlcd opened (those with a head branch), from the fake's state.
fn pulls(gh: &FakeGitHub) -> Vec<serde_json::Value> {
    gh.state()["pulls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.get("head_ref").is_some())
        .cloned()
        .collect()
}

/// How many calls mlcd made to the manifests repository so far.
fn deploy_repo_calls(gh: &FakeGitHub) -> usize {
    gh.requests()
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .unwrap_or("")
                .starts_with("/repos/acme/deploy/")
        })
        .count()
}

fn deployment_states(gh: &FakeGitHub) -> Vec<Vec<serde_json::Value>> {
    gh.state()["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["statuses"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn pull_request_mode_opens_one_pull_request_and_a_later_run_updates_it() {
    let (gh, git_dir, _seed) = seeded("kustomize");
    let ws = Workspace::new();
    let cfg = config(
        "kustomize",
        "apps/churn/kustomization.yaml",
        "    pull-request: true\n",
    );
    ws.write("mlcd.yml", &cfg);
    let run = deploy(&ws, &gh, &[]);
    run.assert_code(0);
    let out = parse_outputs(&ws.read("out/output"));
    assert_eq!(out["status"], "submitted", "{}", said(&run));
    assert_eq!(out["pull-request"], "https://github.com/acme/deploy/pull/1");
    // main is untouched; the branch is main + one commit, which is `gitops-commit`.
    assert_eq!(git(&git_dir, &["rev-list", "--count", "main"]).trim(), "1");
    let range = format!("main..{PR_BRANCH}");
    assert_eq!(git(&git_dir, &["rev-list", "--count", &range]).trim(), "1");
    assert_eq!(
        out["gitops-commit"],
        git(&git_dir, &["rev-parse", PR_BRANCH]).trim()
    );
    let on_branch = git(
        &git_dir,
        &[
            "show",
            &format!("{PR_BRANCH}:apps/churn/kustomization.yaml"),
        ],
    );
    assert!(
        on_branch.contains(&format!("digest: sha256:{DIGEST_HEX}")),
        "{on_branch}"
    );
    // One open pull request whose body is the plan.
    let prs = pulls(&gh);
    assert_eq!(prs.len(), 1, "{prs:#?}");
    let body = prs[0]["body"].as_str().unwrap();
    assert_eq!(prs[0]["head_ref"], PR_BRANCH);
    assert_eq!(prs[0]["base_ref"], "main");
    let first_title = prs[0]["title"].as_str().unwrap().to_string();
    assert!(first_title.starts_with("Deploy churn "), "{first_title}");
    for want in [
        format!("| Digest | `sha256:{DIGEST_HEX}` |"),
        format!("| Image | `{}` |", image()),
        "--- a/apps/churn/kustomization.yaml".to_string(),
        "-    newTag: v1".to_string(),
        format!("+    digest: sha256:{DIGEST_HEX}"),
        format!(
            "| Run | https://github.com/acme/churn/actions/runs/{} |",
            ws.run_id
        ),
    ] {
        assert!(body.contains(&want), "no {want:?} in the body:\n{body}");
    }
    // Submitted, not deployed: the summary and the deployment status say so.
    let summary = ws.read("out/summary");
    assert!(summary.contains("submitted as a pull request"), "{summary}");
    assert!(summary.contains("rollout is not verified"), "{summary}");
    let deps = deployment_states(&gh);
    let last = deps[0].last().unwrap();
    assert_eq!(last["state"], "queued", "{deps:#?}");
    assert_eq!(
        last["environment_url"],
        "https://github.com/acme/deploy/pull/1"
    );
    assert!(!deps.iter().flatten().any(|s| s["state"] == "success"));
    // read + base head + branch head + create branch + read + write + list + create
    assert_eq!(deploy_repo_calls(&gh), 8);

    // A new version: the same pull request, the branch reset to main + the new edit.
    ws.write("mlcd.yml", &cfg.replace(&image(), &image2()));
    let run = deploy(&ws, &gh, &[]);
    run.assert_code(0);
    let out = parse_outputs(&ws.read("out/output"));
    assert_eq!(out["status"], "submitted", "{}", said(&run));
    assert_eq!(out["pull-request"], "https://github.com/acme/deploy/pull/1");
    assert!(
        said(&run).contains("updated pull request #1"),
        "{}",
        said(&run)
    );
    let prs = pulls(&gh);
    assert_eq!(prs.len(), 1, "{prs:#?}");
    let title = prs[0]["title"].as_str().unwrap();
    assert!(
        title.starts_with("Deploy churn ") && title != first_title,
        "{title}"
    );
    assert!(
        prs[0]["body"].as_str().unwrap().contains(DIGEST2_HEX),
        "{prs:#?}"
    );
    assert_eq!(git(&git_dir, &["rev-list", "--count", &range]).trim(), "1");
    let on_branch = git(
        &git_dir,
        &[
            "show",
            &format!("{PR_BRANCH}:apps/churn/kustomization.yaml"),
        ],
    );
    assert!(
        on_branch.contains(&format!("digest: sha256:{DIGEST2_HEX}")),
        "{on_branch}"
    );
    assert!(!on_branch.contains(DIGEST_HEX), "{on_branch}");
    assert_eq!(git(&git_dir, &["rev-list", "--count", "main"]).trim(), "1");
    // read + 2 heads + read on the branch + reset + read + write + list + update
    assert_eq!(deploy_repo_calls(&gh), 8 + 9);

    // The same version once more: nothing to commit on the branch, the PR kept.
    let before = git(&git_dir, &["rev-parse", PR_BRANCH]);
    deploy(&ws, &gh, &[]).assert_code(0);
    assert_eq!(git(&git_dir, &["rev-parse", PR_BRANCH]), before);
    assert_eq!(pulls(&gh).len(), 1);
    // read + 2 heads + read on the branch + compare + list + update
    assert_eq!(deploy_repo_calls(&gh), 8 + 9 + 7);
    let ops: Vec<String> = gh
        .requests()
        .into_iter()
        .filter_map(|r| r["operation_id"].as_str().map(str::to_string))
        .filter(|o| o.starts_with("pulls/"))
        .collect();
    assert_eq!(
        ops,
        [
            "pulls/list",
            "pulls/create",
            "pulls/list",
            "pulls/update",
            "pulls/list",
            "pulls/update"
        ]
    );

    // A teammate pushes to main while the pull request is open: the next run
    // puts mlcd's branch back on top of main (the same edit, a new parent).
    let note = serde_json::json!({"message": "A teammate's note", "content": "bm90ZQo=", "branch": "main"});
    let out = Command::new("curl")
        .args(["-sf", "-X", "PUT"])
        .args(["-H", "Authorization: Bearer ghp_teammate"])
        .args([
            "-H",
            "User-Agent: teammate",
            "-H",
            "content-type: application/json",
        ])
        .args(["-d", &note.to_string()])
        .arg(format!("{}/repos/acme/deploy/contents/NOTES.md", gh.url))
        .output()
        .unwrap();
    assert!(out.status.success());
    let main_head = git(&git_dir, &["rev-parse", "main"]).trim().to_string();
    deploy(&ws, &gh, &[]).assert_code(0);
    assert_eq!(
        git(&git_dir, &["rev-parse", &format!("{PR_BRANCH}^")]).trim(),
        main_head
    );
    assert_eq!(git(&git_dir, &["rev-list", "--count", &range]).trim(), "1");
    assert_eq!(pulls(&gh).len(), 1);
    assert_no_violations(&gh);
}

#[test]
fn after_the_pull_request_is_merged_a_run_follows_argo_cd_to_healthy() {
    let (gh, git_dir, _seed, argo, ws) = argo_setup("30s");
    let cfg = ws.read("mlcd.yml");
    ws.write(
        "mlcd.yml",
        &cfg.replace(
            "    format: kustomize\n",
            "    format: kustomize\n    pull-request: true\n",
        ),
    );
    let run = deploy(&ws, &gh, ARGO_ENV);
    run.assert_code(0);
    let out = parse_outputs(&ws.read("out/output"));
    assert_eq!(out["status"], "submitted", "{}", said(&run));
    assert!(
        argo.requests().is_empty(),
        "nothing to follow before the merge"
    );

    let merged = merge(&gh, 1);
    let merge_sha = merged["sha"].as_str().unwrap().to_string();
    assert_eq!(git(&git_dir, &["rev-parse", "main"]).trim(), merge_sha);

    let run = deploy(&ws, &gh, ARGO_ENV);
    run.assert_code(0);
    let out = parse_outputs(&ws.read("out/output"));
    assert_eq!(out["status"], "succeeded", "{}", said(&run));
    assert!(said(&run).contains("nothing to propose"), "{}", said(&run));
    assert!(
        said(&run).contains(&format!("{} synced and Healthy", &merge_sha[..12])),
        "{}",
        said(&run)
    );
    // Nothing new: the seed, mlcd's branch commit and the merge.
    assert_eq!(git(&git_dir, &["rev-list", "--count", "main"]).trim(), "3");
    assert_eq!(pulls(&gh).len(), 1);
    let deps = deployment_states(&gh);
    assert_eq!(deps.len(), 2, "{deps:#?}");
    assert_eq!(deps[0].last().unwrap()["state"], "queued");
    assert_eq!(deps[1].last().unwrap()["state"], "success");

    // The next version: the merged pull request is closed, so a second one opens
    // from the same branch, reset onto the merge.
    let cfg = ws.read("mlcd.yml");
    ws.write("mlcd.yml", &cfg.replace(&image(), &image2()));
    let run = deploy(&ws, &gh, ARGO_ENV);
    run.assert_code(0);
    let out = parse_outputs(&ws.read("out/output"));
    assert_eq!(out["pull-request"], "https://github.com/acme/deploy/pull/2");
    let states: Vec<_> = pulls(&gh).iter().map(|p| p["state"].clone()).collect();
    assert_eq!(states, ["closed", "open"]);
    let range = format!("main..{PR_BRANCH}");
    assert_eq!(git(&git_dir, &["rev-list", "--count", &range]).trim(), "1");
    assert_eq!(
        git(&git_dir, &["rev-parse", &format!("{PR_BRANCH}^")]).trim(),
        merge_sha
    );
    assert_eq!(argo.violations(), Vec::<serde_json::Value>::new());
    assert_no_violations(&gh);
}

#[test]
fn a_token_without_pull_requests_write_is_named_and_no_branch_is_left_behind() {
    let (gh, git_dir, _seed) = seeded("helm");
    let deny = serde_json::json!({"path_prefix": "/repos/acme/deploy/pulls", "method": "POST", "status": 403, "message": "Resource not accessible by personal access token"});
    control_call(
        "fake GitHub",
        &gh.url,
        "POST",
        "/_fake/deny",
        Some(&deny.to_string()),
    );
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        &config("helm", "apps/churn/values.yaml", "    pull-request: true\n"),
    );
    let run = deploy(&ws, &gh, &[("INPUT_GITOPS-TOKEN", "github_pat_nopulls")]);
    run.assert_code(1);
    assert!(
        said(&run).contains("needs `pull-requests: write`"),
        "{}",
        said(&run)
    );
    assert!(
        said(&run).contains(&format!("mlcd deleted the branch `{PR_BRANCH}`")),
        "{}",
        said(&run)
    );
    assert!(said(&run).contains("gitops-token"), "{}", said(&run));
    assert!(!leaked(&run, "github_pat_nopulls"));
    assert_eq!(
        git(
            &git_dir,
            &["for-each-ref", "--format=%(refname)", "refs/heads"]
        )
        .trim(),
        "refs/heads/main"
    );
    assert_eq!(git(&git_dir, &["rev-list", "--count", "main"]).trim(), "1");
    assert!(pulls(&gh).is_empty());
    let out = parse_outputs(&ws.read("out/output"));
    assert_eq!(out["status"], "failed");
    let deps = deployment_states(&gh);
    assert_eq!(deps[0].last().unwrap()["state"], "failure", "{deps:#?}");
    assert_no_violations(&gh);
}

/// The example model deployed by commits of `format: manifests` to the
/// git-backed fake GitHub, synced by the fake Argo CD into the fake Kubernetes
/// API server, whose KServe controller runs every revision as a real container
/// of the example model on the test bed's Docker engine.
struct GitopsKserve {
    ws: Workspace,
    gh: FakeGitHub,
    git_dir: String,
    argo: fake_argocd::FakeArgoCd,
    kube: fake_kube::FakeKube,
    tb: std::collections::BTreeMap<String, String>,
    image: String,
    _seed: tempfile::TempDir,
}

impl GitopsKserve {
    fn new() -> GitopsKserve {
        Self::with(
            "    path: apps/churn/rendered\n    format: manifests\n",
            "apps/churn/rendered",
            None,
        )
    }

    /// The `gitops` keys `format_cfg` (path, format, keys), Argo CD following
    /// `app_path`, the repository seeded from fixtures/gitops/kserve or with
    /// `seed_file` (path, text) alone.
    fn with(format_cfg: &str, app_path: &str, seed_file: Option<(&str, &str)>) -> GitopsKserve {
        let tb = common::testbed_env(&["DOCKER_HOST", "MLCD_TESTBED_BASE_IMAGE"]);
        let image = fake_kube::kserve_image(&tb);
        let kube = fake_kube::FakeKube::with_docker(&tb);
        let (gh, git_dir, seed) = match seed_file {
            None => seeded("kserve"),
            Some((path, text)) => {
                let gh = FakeGitHub::start();
                let seed = tempfile::tempdir().unwrap();
                let file = seed.path().join(path);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, text).unwrap();
                let body = serde_json::json!({"repo": "acme/deploy", "dir": seed.path(), "branch": "main"});
                let out = control_call(
                    "fake GitHub",
                    &gh.url,
                    "POST",
                    "/_fake/git/init",
                    Some(&body.to_string()),
                );
                let git_dir = out["git_dir"].as_str().unwrap().to_string();
                (gh, git_dir, seed)
            }
        };
        let argo = fake_argocd::FakeArgoCd::start();
        argo.call(
            "/_fake/app",
            serde_json::json!({"name": "churn", "git_dir": git_dir, "branch": "main",
                "path": app_path, "namespace": "ml", "kube_url": kube.url}),
        );
        let ws = Workspace::with_example();
        let cfg = ws
            .read("example/mlcd.yml")
            .replace("backend: local", "backend: kubernetes")
            .replace(
                "  interval: 30s\n",
                &format!(
                    "  interval: 1s\n  ready-timeout: 60s\n  gitops:\n    repo: acme/deploy\n    branch: main\n{format_cfg}    argocd: {{server: \"{}\", app: churn, token-env: ARGO_TOKEN, cool-down: 1s}}\n",
                    argo.url
                ),
            )
            // The fake's proxy is a Python server on a shared, busy machine.
            .replace("max-latency: 500ms", "max-latency: 10s")
            + "kubernetes:\n  namespace: ml\n";
        ws.write("example/mlcd.yml", &cfg);
        GitopsKserve {
            ws,
            gh,
            git_dir,
            argo,
            kube,
            tb,
            image,
            _seed: seed,
        }
    }

    /// `from` under another tag: another version id for mlcd.
    fn tagged(&self, from: &str, tag: &str) -> String {
        let to = format!("mlcd-test/churn:{tag}");
        let out = Command::new("docker")
            .args(["tag", from, &to])
            .env("DOCKER_HOST", &self.tb["DOCKER_HOST"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        to
    }

    fn deploy(
        &self,
        image: &str,
        extra: &[(&str, &str)],
    ) -> (common::Run, std::collections::BTreeMap<String, String>) {
        let _ = std::fs::remove_file(self.ws.path().join("out/output"));
        let kubeconfig = self.kube.kubeconfig().display().to_string();
        let mut env = vec![
            ("INPUT_CONFIG", "example/mlcd.yml"),
            ("INPUT_IMAGE", image),
            ("KUBECONFIG", kubeconfig.as_str()),
            ("ARGO_TOKEN", "argocd-secret-token"),
            ("MLCD_POLL_INTERVAL_MS", "200"),
        ];
        env.extend_from_slice(extra);
        let r = deploy(&self.ws, &self.gh, &env);
        let out = parse_outputs(&self.ws.read("out/output"));
        (r, out)
    }

    fn isvc(&self) -> serde_json::Value {
        self.kube
            .get("/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/churn")
    }

    /// Posts the sample to the service URL: the status and the revision that answered.
    fn call(&self) -> (u16, String) {
        let url = self.isvc()["status"]["url"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let out = Command::new("curl")
            .args([
                "-s",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-H",
                "content-type: application/json",
                "--data-binary",
            ])
            .arg(format!(
                "@{}",
                self.ws.path().join("example/tests/sample.json").display()
            ))
            .arg(format!("{url}/invocations"))
            .output()
            .unwrap();
        let head = String::from_utf8_lossy(&out.stdout).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let rev = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("x-fake-kserve-revision:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default();
        (status, rev)
    }

    fn subjects(&self) -> Vec<String> {
        git(&self.git_dir, &["log", "--format=%s", "main"])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[test]
fn a_kserve_canary_is_one_verified_commit_per_step_and_a_broken_version_is_reverted() {
    let p = GitopsKserve::new();
    // v1: all at once, a new InferenceService.
    let (r, out) = p.deploy(&p.image, &[("INPUT_STRATEGY", "all-at-once")]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{}", said(&r));
    assert_eq!(p.call().0, 200);

    // v2 as a canary 10 → 50 → 100: one commit per step, each synced by Argo CD
    // into the cluster and smoke-tested through the new revision's tag URL.
    let v2 = p.tagged(&p.image, "gitops-v2");
    let (r, out) = p.deploy(&v2, &[]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{}", said(&r));
    let subjects = p.subjects();
    assert_eq!(subjects.len(), 5, "{subjects:#?}");
    assert!(
        subjects[2].ends_with("(canary: 10% of the traffic)"),
        "{subjects:#?}"
    );
    assert!(
        subjects[1].ends_with("(canary: 50% of the traffic)"),
        "{subjects:#?}"
    );
    assert!(
        subjects[0].ends_with("(canary: promotion)"),
        "{subjects:#?}"
    );
    for (i, want) in [
        (2, "canaryTrafficPercent: 10\n"),
        (1, "canaryTrafficPercent: 50\n"),
    ] {
        let text = git(
            &p.git_dir,
            &["show", &format!("main~{i}:apps/churn/rendered/churn.yaml")],
        );
        assert!(text.contains(want), "{text}");
        assert!(text.contains("image: mlcd-test/churn:gitops-v2"), "{text}");
    }
    let promoted = git(&p.git_dir, &["show", "main:apps/churn/rendered/churn.yaml"]);
    assert!(!promoted.contains("canaryTrafficPercent"), "{promoted}");
    let log = said(&r);
    for step in [
        "step 1/3 (10% of the traffic) verified",
        "step 2/3 (50% of the traffic) verified",
        "step 3/3 (promotion) verified",
    ] {
        assert!(log.contains(step), "{step}: {log}");
    }
    assert!(
        log.contains("takes 10% of the traffic; smoke: example/tests/sample.json 200"),
        "{log}"
    );
    // Argo CD applied it (its field manager), and the real container of v2 answers.
    let isvc = p.isvc();
    assert_eq!(isvc["spec"]["predictor"]["containers"][0]["image"], v2);
    let managers: Vec<&str> = isvc["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"argocd-controller"), "{managers:?}");
    assert!(
        !managers.contains(&"mlcd"),
        "mlcd wrote to the cluster itself: {managers:?}"
    );
    // Measured, not asserted (a shared machine): from Argo CD reporting a step's
    // commit Healthy for good to its first answer at the next step's commit,
    // less the cool-down (1 s) and deploy.interval (1 s): mlcd's verification on
    // the cluster, the smoke tests and the next commit.
    let reqs = p.argo.requests();
    let at = |rev: &str| -> Vec<(f64, bool)> {
        reqs.iter()
            .filter(|q| q["revision"] == rev)
            .filter_map(|q| Some((q["time"].as_f64()?, q["health"] == "Healthy")))
            .collect()
    };
    // The first answer of the last Healthy run at `rev` (a Healthy right after
    // a sync can still describe the old revision, and is followed by Progressing).
    let healthy_since = |rev: &str| {
        let a = at(rev);
        let last_bad = a.iter().rposition(|(_, h)| !h).map_or(0, |i| i + 1);
        a.get(last_bad).map_or(f64::NAN, |(t, _)| *t)
    };
    let first = |rev: &str| at(rev).first().map_or(f64::NAN, |(t, _)| *t);
    let revs: Vec<String> = git(&p.git_dir, &["log", "--format=%H", "-3", "main"])
        .lines()
        .rev()
        .map(str::to_string)
        .collect();
    for k in 0..2 {
        let lag = first(&revs[k + 1]) - healthy_since(&revs[k]) - 2.0;
        eprintln!("MEASURE step {} Healthy → next step's commit seen by Argo CD, less cool-down and interval: {:.0} ms", k + 1, lag * 1000.0);
    }
    let v2_revision = isvc["status"]["components"]["predictor"]["latestRolledoutRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(p.call(), (200, v2_revision.clone()));

    // A version whose container never serves (busybox has no `serve`): KServe's
    // revision fails, the step fails, mlcd reverts its commit, v2 serves again.
    let broken = p.tagged(&p.tb["MLCD_TESTBED_BUSYBOX_IMAGE"], "gitops-broken");
    let (r, out) = p.deploy(&broken, &[]);
    r.assert_code(1);
    assert_eq!(out["status"], "failed");
    let log = said(&r);
    assert!(log.contains("RevisionFailed"), "{log}");
    assert!(log.contains("Healthy again"), "{log}");
    let subjects = p.subjects();
    assert_eq!(subjects.len(), 7, "{subjects:#?}");
    assert!(
        subjects[1].ends_with("(canary: 10% of the traffic)"),
        "{subjects:#?}"
    );
    assert!(
        subjects[0].starts_with("Revert \"Deploy churn"),
        "{subjects:#?}"
    );
    assert_eq!(
        out["gitops-revert"],
        git(&p.git_dir, &["rev-parse", "main"]).trim()
    );
    assert_eq!(
        git(&p.git_dir, &["show", "main:apps/churn/rendered/churn.yaml"]),
        promoted
    );
    let isvc = p.isvc();
    assert_eq!(isvc["spec"]["predictor"]["containers"][0]["image"], v2);
    let (status, rev) = p.call();
    assert_eq!(status, 200);
    assert_ne!(rev, "", "answered by a revision");
    assert_eq!(p.argo.violations(), Vec::<serde_json::Value>::new());
    p.kube.assert_no_violations();
    assert_no_violations(&p.gh);
}

#[test]
fn a_deployment_canary_through_gitops_is_refused_before_any_commit() {
    let (gh, git_dir, _seed) = seeded("kustomize");
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        &config("kustomize", "apps/churn/kustomization.yaml", "")
            .replace("all-at-once", "canary\n  steps: [10, 50, 100]"),
    );
    let run = deploy(&ws, &gh, &[]);
    run.assert_code(2);
    let log = said(&run);
    assert!(
        log.contains(
            "`deploy.strategy: canary` cannot be done through `deploy.gitops` (format `kustomize`)"
        ),
        "{log}"
    );
    assert!(
        log.contains("the manifests cannot express traffic steps"),
        "{log}"
    );
    assert!(
        log.contains("mlcd.yml"),
        "the error names the config file: {log}"
    );
    assert_eq!(git(&git_dir, &["rev-list", "--count", "main"]).trim(), "1");
    assert_no_violations(&gh);
}

#[test]
fn a_hand_kept_inference_service_takes_canary_steps_through_its_traffic_key() {
    // The team's own file: mlcd sets the image and the percentage, nothing else.
    let file = "# churn, kept by hand\napiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: churn\n  namespace: ml\n  annotations:\n    serving.kserve.io/enable-tag-routing: \"true\"  # tag URLs per revision\nspec:\n  predictor:\n    canaryTrafficPercent: 100\n    containers:\n      - name: kserve-container\n        image: IMAGE\n        args: [serve]\n        ports:\n          - containerPort: 8080\n            protocol: TCP\n        readinessProbe:\n          httpGet: {path: /ping, port: 8080}\n";
    let tb = common::testbed_env(&["DOCKER_HOST", "MLCD_TESTBED_BASE_IMAGE"]);
    let v1 = fake_kube::kserve_image(&tb);
    let p = GitopsKserve::with(
        "    path: apps/churn/churn.yaml\n    format: yaml\n    keys: {\"spec.predictor.containers[0].image\": image, spec.predictor.canaryTrafficPercent: traffic}\n",
        "apps/churn",
        Some(("apps/churn/churn.yaml", &file.replace("IMAGE", &v1))),
    );
    // v1 first: no InferenceService yet, nothing to split the traffic with: one commit.
    let v1b = p.tagged(&p.image, "gitops-yaml-v1");
    let linear = [("INPUT_STRATEGY", "linear"), ("INPUT_TRAFFIC", "50")];
    let (r, out) = p.deploy(&v1b, &linear);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{}", said(&r));
    assert!(
        said(&r).contains("does not exist yet: its first version takes all the traffic"),
        "{}",
        said(&r)
    );
    assert_eq!(p.subjects().len(), 2, "{:#?}", p.subjects());
    let v2 = p.tagged(&p.image, "gitops-yaml-v2");
    let (r, out) = p.deploy(&v2, &linear);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{}", said(&r));
    let subjects = p.subjects();
    assert_eq!(subjects.len(), 4, "{subjects:#?}");
    assert!(
        subjects[1].ends_with("(linear: 50% of the traffic)"),
        "{subjects:#?}"
    );
    assert!(
        subjects[0].ends_with("(linear: promotion)"),
        "{subjects:#?}"
    );
    let promoted = git(&p.git_dir, &["show", "main:apps/churn/churn.yaml"]);
    assert_eq!(
        promoted,
        file.replace("IMAGE", &v2),
        "only the image changed, the percentage is back at 100"
    );
    let first_step = git(&p.git_dir, &["show", "main~1:apps/churn/churn.yaml"]);
    assert!(
        first_step.contains("canaryTrafficPercent: "),
        "{first_step}"
    );
    assert!(
        !first_step.contains("canaryTrafficPercent: 100"),
        "{first_step}\n{}",
        git(&p.git_dir, &["log", "-p", "main"])
    );
    assert!(said(&r).contains("(promotion) verified"), "{}", said(&r));
    let isvc = p.isvc();
    assert_eq!(isvc["spec"]["predictor"]["containers"][0]["image"], v2);
    let rolled = isvc["status"]["components"]["predictor"]["latestRolledoutRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(p.call(), (200, rolled));
    p.kube.assert_no_violations();
    assert_no_violations(&p.gh);
}

#[test]
fn a_kserve_blue_green_by_commits_is_smoke_tested_at_zero_percent_then_promoted() {
    let p = GitopsKserve::new();
    let (r, _) = p.deploy(&p.image, &[("INPUT_STRATEGY", "all-at-once")]);
    r.assert_code(0);
    let v1_revision = p.isvc()["status"]["components"]["predictor"]["latestRolledoutRevision"]
        .as_str()
        .unwrap()
        .to_string();
    let v2 = p.tagged(&p.image, "gitops-bg-v2");
    let (r, out) = p.deploy(&v2, &[("INPUT_STRATEGY", "blue-green")]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{}", said(&r));
    let subjects = p.subjects();
    assert_eq!(subjects.len(), 4, "{subjects:#?}");
    assert!(
        subjects[1].ends_with("(blue-green: 0% beside the live version)"),
        "{subjects:#?}"
    );
    assert!(
        subjects[0].ends_with("(blue-green: promotion)"),
        "{subjects:#?}"
    );
    let at_zero = git(
        &p.git_dir,
        &["show", "main~1:apps/churn/rendered/churn.yaml"],
    );
    assert!(at_zero.contains("canaryTrafficPercent: 0\n"), "{at_zero}");
    let log = said(&r);
    assert!(
        log.contains("(0% beside the live version) verified: Argo CD Healthy, revision")
            && log.contains("takes 0% of the traffic; smoke: example/tests/sample.json 200"),
        "{log}"
    );
    let isvc = p.isvc();
    let rolled = isvc["status"]["components"]["predictor"]["latestRolledoutRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(rolled, v1_revision);
    assert_eq!(p.call(), (200, rolled));
    p.kube.assert_no_violations();
    assert_no_violations(&p.gh);
}

#[test]
fn traffic_steps_in_pull_request_mode_are_refused_before_any_branch() {
    // A pull request is one change for review; canary steps are commits mlcd
    // verifies one by one, which a pull request cannot do.
    let p = GitopsKserve::with(
        "    path: apps/churn/rendered\n    format: manifests\n    pull-request: true\n",
        "apps/churn/rendered",
        None,
    );
    let heads_before = git(&p.git_dir, &["for-each-ref", "refs/heads"]);
    let (run, _) = p.deploy(&p.image, &[]);
    run.assert_code(2);
    let log = said(&run);
    assert!(
        log.contains("`deploy.strategy: canary` takes one commit per traffic step")
            && log.contains("`deploy.gitops.pull-request: true` proposes one change"),
        "{log}"
    );
    assert!(
        log.contains("mlcd.yml"),
        "the error names the config file: {log}"
    );
    assert_eq!(
        git(&p.git_dir, &["for-each-ref", "refs/heads"]),
        heads_before,
        "no branch made, no commit"
    );
    assert!(pulls(&p.gh).is_empty());
    assert_no_violations(&p.gh);
}

/// The team's Argo Rollouts Rollout, kept by hand: mlcd sets the image and
/// follows the Rollout's own canary steps; `STEPS` is replaced per test.
const ROLLOUT: &str = "# churn, kept by hand: an Argo Rollouts canary\napiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: churn\n  namespace: ml\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: churn}\n  strategy:\n    canary:\n      steps:\n        - setWeight: 20\n        - pause: {duration: 1s}  # a timed pause: mlcd waits it out\n        - setWeight: 50\nSTEPS  template:\n    metadata:\n      labels: {app: churn}\n    spec:\n      containers:\n        - name: serve\n          image: IMAGE\n          args: [serve]\n          ports:\n            - containerPort: 8080\n          readinessProbe:\n            httpGet: {path: /ping, port: 8080}\n";

impl GitopsKserve {
    fn rollout(&self) -> serde_json::Value {
        self.kube
            .get("/apis/argoproj.io/v1alpha1/namespaces/ml/rollouts/churn")
    }

    /// The stable version's container answers /ping: (its image, the status).
    fn stable_answers(&self) -> (String, u16) {
        let stable = self.rollout()["status"]["stableRS"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let all = self.kube.get("/_fake/rollouts");
        let v = &all["ml/churn"][&stable];
        let port = v["port"].as_u64().unwrap_or_default();
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{port}/ping"))
            .output()
            .unwrap();
        (
            v["image"].as_str().unwrap_or_default().to_string(),
            String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0),
        )
    }
}

#[test]
fn an_argo_rollout_is_followed_through_its_steps_a_broken_version_reverted_and_a_manual_pause_named(
) {
    let tb = common::testbed_env(&["DOCKER_HOST", "MLCD_TESTBED_BASE_IMAGE"]);
    let v1 = fake_kube::kserve_image(&tb);
    let file = ROLLOUT.replace("STEPS", "").replace("IMAGE", &v1);
    let p = GitopsKserve::with(
        "    path: apps/churn/rollout.yaml\n    format: yaml\n    keys: {\"spec.template.spec.containers[0].image\": image}\n    rollout: churn\n",
        "apps/churn",
        Some(("apps/churn/rollout.yaml", &file)),
    );
    // mlcd's own steps and the Rollout's would both say how traffic moves: refused
    // before anything is committed, naming the key and its line.
    let (r, out) = p.deploy(&p.image, &[]);
    r.assert_code(2);
    assert_eq!(out["status"], "invalid", "{}", said(&r));
    let log = said(&r);
    assert!(
        log.contains("`deploy.steps` and `deploy.gitops.rollout: churn`"),
        "{log}"
    );
    assert!(log.contains("example/mlcd.yml"), "{log}");
    assert_eq!(p.subjects().len(), 1, "nothing committed");
    let cfg =
        p.ws.read("example/mlcd.yml")
            .replace("  steps: [10, 50, 100]\n", "");
    p.ws.write("example/mlcd.yml", &cfg);

    // v1: the Rollout is created, its first version goes straight to stable.
    let v1b = p.tagged(&p.image, "rollout-v1");
    let (r, out) = p.deploy(&v1b, &[]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{}", said(&r));
    assert_eq!(p.stable_answers(), (v1b.clone(), 200));

    // v2: one commit of the image; mlcd follows the canary steps to Healthy.
    let v2 = p.tagged(&p.image, "rollout-v2");
    let (r, out) = p.deploy(&v2, &[]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{}", said(&r));
    let log = said(&r);
    assert!(
        log.contains("step 1/3 (setWeight 20), canary weight 20%"),
        "{log}"
    );
    assert!(log.contains("is stable and Healthy"), "{log}");
    let summary = p.ws.read("out/summary");
    assert!(
        summary.contains("| 1/3 | setWeight 20 | 20% |"),
        "{summary}"
    );
    assert!(summary.contains("**Healthy** at"), "{summary}");
    assert_eq!(p.subjects().len(), 3, "{:#?}", p.subjects());
    let bumped = git(&p.git_dir, &["show", "main:apps/churn/rollout.yaml"]);
    assert_eq!(bumped, file.replace(&v1, &v2), "only the image changed");
    assert_eq!(p.stable_answers(), (v2.clone(), 200));

    // A version whose container never serves: the canary's readiness never
    // answers, the Rollout aborts (Degraded), mlcd reverts its commit and the
    // Rollout is back on v2.
    let broken = p.tagged(&p.tb["MLCD_TESTBED_BUSYBOX_IMAGE"], "rollout-broken");
    let (r, out) = p.deploy(&broken, &[]);
    r.assert_code(1);
    assert_eq!(out["status"], "failed");
    let log = said(&r);
    assert!(
        log.contains("the Rollout is aborted: RolloutAborted"),
        "{log}"
    );
    assert!(log.contains("Healthy again"), "{log}");
    let subjects = p.subjects();
    assert_eq!(subjects.len(), 5, "{subjects:#?}");
    assert!(
        subjects[0].starts_with("Revert \"Deploy churn"),
        "{subjects:#?}"
    );
    assert_eq!(
        git(&p.git_dir, &["show", "main:apps/churn/rollout.yaml"]),
        bumped
    );
    assert_eq!(p.rollout()["status"]["phase"], "Healthy");
    assert_eq!(p.stable_answers(), (v2.clone(), 200));

    // A teammate adds a pause without a duration (a gate for a person) in the
    // same moment mlcd pushes v3: mlcd stops at that step at once, naming the
    // command that promotes it, without waiting out the ready-timeout.
    let gated = bumped.replace(
        "        - setWeight: 50\n",
        "        - setWeight: 50\n        - pause: {}\n",
    );
    let race = serde_json::json!({"repo": "acme/deploy", "path": "apps/churn/rollout.yaml", "content": gated});
    control_call(
        "fake GitHub",
        &p.gh.url,
        "POST",
        "/_fake/git/race",
        Some(&race.to_string()),
    );
    let v3 = p.tagged(&p.image, "rollout-v3");
    let started = std::time::Instant::now();
    let (r, out) = p.deploy(&v3, &[]);
    r.assert_code(0);
    assert_eq!(out["status"], "submitted", "{}", said(&r));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(55),
        "waited out the 60 s ready-timeout"
    );
    let log = said(&r);
    assert!(
        log.contains("paused at step 4/4 (pause until promoted) with the canary at 50%"),
        "{log}"
    );
    assert!(
        log.contains("kubectl argo rollouts promote churn -n ml"),
        "{log}"
    );
    assert_eq!(p.rollout()["status"]["phase"], "Paused");
    assert_eq!(
        p.stable_answers(),
        (v2.clone(), 200),
        "v2 is still the stable version"
    );
    let last = gh_last_deployment_state(&p.gh);
    assert_eq!(last, "in_progress");

    // A person promotes it as `kubectl argo rollouts promote` does (clears the
    // pause conditions through the status subresource); the next run commits
    // nothing and follows the Rollout to Healthy.
    let promoted = p.kube.kubectl(&[
        "patch",
        "rollouts.argoproj.io",
        "churn",
        "-n",
        "ml",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"pauseConditions":null}}"#,
    ]);
    assert!(promoted.code == 0, "{}", promoted.stderr);
    let (r, out) = p.deploy(&v3, &[]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{}", said(&r));
    assert!(said(&r).contains("nothing committed"), "{}", said(&r));
    assert_eq!(p.subjects().len(), 7, "{:#?}", p.subjects());
    assert_eq!(p.stable_answers(), (v3.clone(), 200));
    assert_eq!(p.argo.violations(), Vec::<serde_json::Value>::new());
    p.kube.assert_no_violations();
    assert_no_violations(&p.gh);
}

fn gh_last_deployment_state(gh: &FakeGitHub) -> String {
    let state = gh.state();
    let deployments = state["deployments"].as_array().cloned().unwrap_or_default();
    let last = deployments.last().cloned().unwrap_or_default();
    last["statuses"]
        .as_array()
        .and_then(|s| s.last())
        .and_then(|s| s["state"].as_str())
        .unwrap_or_default()
        .to_string()
}
