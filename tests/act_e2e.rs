//! End to end under the real runner emulator: nektos/act runs a workflow that
//! `uses: ./` on a locally built mlcd image (Dockerfile, `--target prebuilt`),
//! in dry-run mode for build, train and deploy, with hyphenated inputs and a
//! config file, and the test reads the outputs and step summaries act collected.
//!
//! Needs the test bed (docker, base-image, act): `scripts/testbed up`; the
//! README's test command starts it.

mod common;
use common::*;
#[path = "common/mermaid.rs"]
mod mermaid;

use std::collections::BTreeMap;
use std::process::Command;

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const WORKFLOW: &str = r#"name: mlcd e2e
on: push
jobs:
  pipeline:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: build
        uses: ./
        with:
          mode: build
          model-id: churn
          config: ml/mlcd.yml
          tags: e2e
          dry-run: true
      - id: train
        uses: ./
        with:
          mode: train
          from-file: ml/mlcd.yml
          param-list: lr=0.5,epochs=3
          dry-run: "True"
      - id: deploy
        uses: ./
        with:
          mode: deploy
          config: ml/mlcd.yml
          traffic: 20
          dry-run: true
      - name: outputs reach later steps
        run: |
          test "${{ steps.build.outputs.status }}" = planned
          test "${{ steps.train.outputs.job-id }}" != ""
          test "${{ steps.deploy.outputs.traffic }}" = 20
          echo "deploy endpoint ${{ steps.deploy.outputs.endpoint }}"
"#;

const CONFIG: &str = "model: churn\nbuild:\n  registry: 127.0.0.1:15000/ml\ntrain:\n  hyperparameters: {epochs: 5, lr: 0.01}\ndeploy:\n  strategy: canary\n  steps: [10, 50, 100]\n";

type Outputs = BTreeMap<(String, String), String>;

/// The action image from the project's Dockerfile around this build's binary,
/// built once per test process.
fn action_image(env: &BTreeMap<String, String>) -> &'static str {
    static BUILT: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let image = "mlcd-e2e:local";
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !*built {
        let ctx = tempfile::tempdir().unwrap();
        std::fs::copy(root().join("Dockerfile"), ctx.path().join("Dockerfile")).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_mlcd"), ctx.path().join("mlcd")).unwrap();
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", &env["DOCKER_HOST"]).args([
            "build",
            "-q",
            "--target",
            "prebuilt",
            "--build-arg",
            &format!("RUNTIME_IMAGE={}", env["MLCD_TESTBED_BASE_IMAGE"]),
            "--build-arg",
            "BINARY=mlcd",
            "-t",
            image,
            &ctx.path().display().to_string(),
        ]);
        run(c, "docker build of the action image");
        *built = true;
    }
    image
}

/// A git repository using the action (a test copy of action.yml pointing at the
/// local image) with `files` and `workflow`; returns it and its HEAD commit.
fn repository(image: &str, files: &[(&str, &str)], workflow: &str) -> (Workspace, String) {
    let repo = Workspace::new();
    let action = std::fs::read_to_string(root().join("action.yml")).unwrap();
    let action = action
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("image: docker://") {
                format!("  image: docker://{image}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    repo.write("action.yml", &action);
    for (path, text) in files {
        repo.write(path, text);
    }
    repo.write(".github/workflows/e2e.yml", workflow);
    let git = |args: &[&str]| {
        let mut c = Command::new("git");
        c.args(args)
            .current_dir(repo.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com");
        c
    };
    run(git(&["init", "-q", "-b", "main"]), "git init");
    run(
        git(&[
            "remote",
            "add",
            "origin",
            "https://github.com/acme/churn.git",
        ]),
        "git remote",
    );
    run(git(&["add", "-A"]), "git add");
    run(git(&["commit", "-qm", "init"]), "git commit");
    let sha = run(git(&["rev-parse", "HEAD"]), "git rev-parse")
        .trim()
        .to_string();
    // GitHub's example push payload, pointed at this commit (act takes the SHA from `after`).
    let mut event: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/events/push.json")).unwrap(),
    )
    .unwrap();
    event["after"] = sha.clone().into();
    event["ref"] = "refs/heads/main".into();
    event["repository"]["default_branch"] = "main".into();
    repo.write("event.json", &event.to_string());
    (repo, sha)
}

/// Runs the workflow under act; returns the outputs and step summaries act
/// collected (from its --json log) and the log itself.
fn act(
    env: &BTreeMap<String, String>,
    repo: &Workspace,
    secrets: &[(&str, &str)],
) -> (Outputs, BTreeMap<String, String>, String) {
    act_on(
        env,
        repo,
        "push",
        ".github/workflows/e2e.yml",
        "event.json",
        secrets,
    )
}

/// Runs `workflow` under act for `event` (payload in `event_file`).
fn act_on(
    env: &BTreeMap<String, String>,
    repo: &Workspace,
    event: &str,
    workflow: &str,
    event_file: &str,
    secrets: &[(&str, &str)],
) -> (Outputs, BTreeMap<String, String>, String) {
    // Bounded, with room for a loaded machine: one act run builds and trains the
    // example in vfs-copied containers (about 2-4 minutes on an idle machine; it
    // took over 10 minutes while other checkouts compiled and tested beside it).
    let mut cmd = Command::new("timeout");
    cmd.arg("1500")
        .arg(&env["MLCD_TESTBED_ACT"])
        .args([event, "-W", workflow, "-e", event_file, "--actor", "mlcd"])
        .args([
            "-P",
            &format!("ubuntu-latest={}", env["MLCD_TESTBED_BASE_IMAGE"]),
        ])
        .args(["--pull=false", "-b", "--rm", "--no-cache-server", "--json"])
        // A run id of this repository's own: two act runs side by side on one
        // engine must not derive the same job names (act's default is 1).
        .args(["--env", &format!("GITHUB_RUN_ID={}", repo.run_id)])
        .current_dir(repo.path())
        .env("DOCKER_HOST", &env["DOCKER_HOST"])
        .env("ACT_DISABLE_VERSION_CHECK", "1");
    for (k, v) in secrets {
        cmd.args(["-s", &format!("{k}={v}")]);
    }
    let out = cmd.output().expect("act runs");
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "act failed:\n{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut outputs = Outputs::new();
    let mut summaries: BTreeMap<String, String> = BTreeMap::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let step = v["stepID"][0].as_str().unwrap_or_default().to_string();
        match v["command"].as_str() {
            Some("set-output") => {
                outputs.insert(
                    (step, v["name"].as_str().unwrap().to_string()),
                    v["arg"].as_str().unwrap_or_default().to_string(),
                );
            }
            Some("summary") => {
                summaries
                    .entry(step)
                    .or_default()
                    .push_str(v["content"].as_str().unwrap_or_default());
            }
            _ => {}
        }
    }
    (outputs, summaries, log)
}

fn get(outputs: &Outputs, step: &str, name: &str) -> String {
    outputs
        .get(&(step.to_string(), name.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("no output {step}.{name} in:\n{outputs:?}"))
}

#[test]
fn workflows_under_act_get_outputs_and_summaries_from_the_action() {
    let env = testbed_env(&["DOCKER_HOST", "MLCD_TESTBED_ACT", "MLCD_TESTBED_BASE_IMAGE"]);
    let image = action_image(&env);
    let (repo, sha) = repository(
        image,
        &[("ml/mlcd.yml", CONFIG), ("ml/Dockerfile", "FROM scratch\n")],
        WORKFLOW,
    );
    let (outputs, summaries, log) = act(&env, &repo, &[]);

    for step in ["build", "train", "deploy"] {
        assert_eq!(get(&outputs, step, "status"), "planned");
        let plan: serde_json::Value = serde_json::from_str(&get(&outputs, step, "plan")).unwrap();
        assert_eq!(plan["mode"], step);
        assert_eq!(plan["source"]["commit"], sha.as_str());
        assert_eq!(plan["config"]["path"], "ml/mlcd.yml");
        assert!(
            summaries
                .get(step)
                .is_some_and(|s| s.contains(&format!("### mlcd plan: {step} `churn`"))),
            "{summaries:?}"
        );
    }
    let tags: Vec<String> = get(&outputs, "build", "tags")
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        tags.contains(&format!("127.0.0.1:15000/ml/churn:{sha}")),
        "{tags:?}"
    );
    assert!(
        tags.contains(&"127.0.0.1:15000/ml/churn:e2e".to_string()),
        "{tags:?}"
    );
    assert!(
        tags.contains(&"127.0.0.1:15000/ml/churn:latest".to_string()),
        "main is the default branch: {tags:?}"
    );
    let train: serde_json::Value = serde_json::from_str(&get(&outputs, "train", "plan")).unwrap();
    assert_eq!(train["train"]["hyperparameters"]["lr"], "0.5");
    assert_eq!(train["train"]["hyperparameters"]["epochs"], "3");
    assert_eq!(get(&outputs, "deploy", "traffic"), "20");
    assert_eq!(get(&outputs, "deploy", "endpoint"), "churn");
    assert!(
        log.contains("deploy endpoint churn"),
        "the later step saw the output:\n{log}"
    );
}

const BUILD_WORKFLOW: &str = r#"name: mlcd build
on: push
jobs:
  ci:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: build
        uses: ./
        with:
          mode: build
          config: example/mlcd.yml
          registry-username: ${{ secrets.REGISTRY_USER }}
          registry-password: ${{ secrets.REGISTRY_PASSWORD }}
      - run: echo "pushed ${{ steps.build.outputs.image }} skipped=${{ steps.build.outputs.skipped }}"
      - id: train
        uses: ./
        with:
          mode: train
          config: example/mlcd.yml
          image: ${{ steps.build.outputs.image }}
          param-list: epochs=100
      - run: echo "trained ${{ steps.train.outputs.job-id }} as version ${{ steps.train.outputs.model-version }}"
"#;

#[test]
fn the_example_builds_pushes_and_trains_under_act_and_a_rerun_repeats_neither() {
    let env = testbed_env(&[
        "DOCKER_HOST",
        "MLCD_TESTBED_ACT",
        "MLCD_TESTBED_BASE_IMAGE",
        "MLCD_TESTBED_REGISTRY",
        "MLCD_TESTBED_REGISTRY_USER",
        "MLCD_TESTBED_REGISTRY_PASSWORD",
    ]);
    let image = action_image(&env);
    // The bundled example, pushing to a namespace of its own in the test bed registry.
    let ns = format!("act{}", unique());
    let mut files: Vec<(String, String)> = Vec::new();
    collect(&root().join("fixtures/example"), "example", &mut files);
    for (path, text) in files.iter_mut() {
        if path == "example/mlcd.yml" {
            *text = text
                .lines()
                .map(|l| {
                    if l.trim_start().starts_with("registry: 127.0.0.1") {
                        format!("  registry: {}/{ns}", env["MLCD_TESTBED_REGISTRY"])
                    } else if l.trim_start().starts_with("BASE_IMAGE:") {
                        format!("    BASE_IMAGE: \"{}\"", env["MLCD_TESTBED_BASE_IMAGE"])
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
        }
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let (repo, sha) = repository(image, &files, BUILD_WORKFLOW);
    let secrets = [
        ("REGISTRY_USER", env["MLCD_TESTBED_REGISTRY_USER"].as_str()),
        (
            "REGISTRY_PASSWORD",
            env["MLCD_TESTBED_REGISTRY_PASSWORD"].as_str(),
        ),
    ];

    let (first, summaries, log) = act(&env, &repo, &secrets);
    assert_eq!(get(&first, "build", "status"), "succeeded");
    assert_eq!(get(&first, "build", "skipped"), "false");
    let repo_name = format!("{}/{ns}/churn", env["MLCD_TESTBED_REGISTRY"]);
    let digest = get(&first, "build", "digest");
    assert_eq!(
        get(&first, "build", "image"),
        format!("{repo_name}@{digest}")
    );
    assert!(get(&first, "build", "tags")
        .lines()
        .any(|t| t == format!("{repo_name}:{sha}")));
    assert!(
        summaries["build"].contains("### mlcd build: built and pushed"),
        "{summaries:?}"
    );
    let pw = env["MLCD_TESTBED_REGISTRY_PASSWORD"].as_str();
    let leaks: Vec<String> = log
        .lines()
        .filter(|l| {
            l.contains(pw) && !l.contains("\"command\":\"add-mask\"") && !l.contains("::add-mask::")
        })
        .map(|l| l.replace(pw, "<PASSWORD>"))
        .collect();
    assert!(
        leaks.is_empty(),
        "the password leaked into the log:\n{}",
        leaks.join("\n")
    );

    // The train step trained the image just pushed and registered it locally.
    assert_eq!(get(&first, "train", "status"), "succeeded");
    let job = get(&first, "train", "job-id");
    assert!(job.starts_with("churn-"), "{job}");
    assert_eq!(get(&first, "train", "model-version"), "1");
    let metrics: serde_json::Value =
        serde_json::from_str(&get(&first, "train", "metrics")).unwrap();
    assert!(metrics["accuracy"].as_f64().unwrap() >= 0.8, "{metrics}");
    assert!(
        get(&first, "train", "artifact").ends_with("model.tar.gz"),
        "{first:?}"
    );
    assert!(
        summaries["train"].contains(&format!("### Training job `{job}`: Completed")),
        "{summaries:?}"
    );
    assert!(
        log.contains(&format!("trained {job} as version 1")),
        "{log}"
    );
    let version =
        std::fs::read_to_string(repo.path().join(".mlcd/registry/churn/versions/1.json")).unwrap();
    assert!(
        version.contains(&digest),
        "the lineage names the image digest: {version}"
    );

    let (second, summaries, log2) = act(&env, &repo, &secrets);
    assert_eq!(get(&second, "build", "skipped"), "true");
    // The same run attempt again: the job is attached to, not trained twice.
    assert_eq!(get(&second, "train", "job-id"), job);
    assert_eq!(get(&second, "train", "model-version"), "1");
    assert!(log2.contains("exists already"), "{log2}");
    assert!(!repo
        .path()
        .join(".mlcd/registry/churn/versions/2.json")
        .exists());
    assert_eq!(get(&second, "build", "digest"), digest);
    assert!(
        summaries["build"].contains("unchanged, re-tagged (no rebuild)"),
        "{summaries:?}"
    );
}

/// Every text file under `dir`, as (path prefixed with `prefix`, content).
fn collect(dir: &std::path::Path, prefix: &str, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "__pycache__" {
            continue;
        }
        let rel = format!("{prefix}/{name}");
        if e.file_type().unwrap().is_dir() {
            collect(&e.path(), &rel, out);
        } else if let Ok(text) = std::fs::read_to_string(e.path()) {
            out.push((rel, text));
        }
    }
}

/// The three example workflows (examples/workflows) as a user copies them, with
/// only what this machine needs changed: the action is `./`, no setup-python
/// (no downloads here; the runner image has python3), the registry password is
/// the test bed's (`secrets.GITHUB_TOKEN`, as GHCR takes it), checkout without
/// `ref`, canary intervals short.
fn example_workflow(name: &str) -> String {
    std::fs::read_to_string(root().join("examples/workflows").join(name))
        .unwrap()
        .replace("uses: mlcd-dev/mlcd@v0", "uses: ./")
        .replace(
            "      - uses: actions/setup-python@v5\n        with:\n          python-version: \"3.11\"\n",
            "",
        )
        .replace("python -m ", "python3 -m ")
        // act emulates actions/checkout from the local tree only without a `ref`
        // (with one it clones the action from github.com); the tree is that commit.
        .replace(
            "      - uses: actions/checkout@v4\n        with:\n          ref: ${{ github.event.workflow_run.head_sha || github.sha }}\n",
            "      - uses: actions/checkout@v4\n",
        )
}

#[test]
fn the_three_example_workflows_build_train_and_deploy_under_act() {
    let env = testbed_env(&[
        "DOCKER_HOST",
        "MLCD_TESTBED_ACT",
        "MLCD_TESTBED_BASE_IMAGE",
        "MLCD_TESTBED_REGISTRY",
        "MLCD_TESTBED_REGISTRY_USER",
        "MLCD_TESTBED_REGISTRY_PASSWORD",
    ]);
    assert_eq!(
        env["MLCD_TESTBED_REGISTRY_USER"], "mlcd",
        "act's --actor is the registry user"
    );
    let image = action_image(&env);
    let ns = format!("pipe{}", unique());
    let endpoint = format!("churn-{ns}");
    // The example model at the repository root, as a user's repository holds it.
    let mut files: Vec<(String, String)> = Vec::new();
    collect(&root().join("fixtures/example"), "", &mut files);
    for (path, text) in files.iter_mut() {
        *path = path.trim_start_matches('/').to_string();
        if path == "mlcd.yml" {
            *text = text
                .replace(
                    "registry: 127.0.0.1:15000/mlcd",
                    &format!("registry: {}/{ns}", env["MLCD_TESTBED_REGISTRY"]),
                )
                .replace(
                    "BASE_IMAGE: \"local/python:3.11\"",
                    &format!("BASE_IMAGE: \"{}\"", env["MLCD_TESTBED_BASE_IMAGE"]),
                )
                .replace("  endpoint: churn\n", &format!("  endpoint: {endpoint}\n"))
                .replace("  interval: 30s\n", "  interval: 1s\n");
        }
    }
    let mut files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let (ci, train, deploy) = (
        example_workflow("ci.yml"),
        example_workflow("train.yml"),
        example_workflow("deploy.yml"),
    );
    files.push((".github/workflows/ci.yml", &ci));
    files.push((".github/workflows/train.yml", &train));
    files.push((".github/workflows/deploy.yml", &deploy));
    let (repo, sha) = repository(
        image,
        &files,
        "name: unused\non: workflow_dispatch\njobs: {}\n",
    );
    let secrets = [(
        "GITHUB_TOKEN",
        env["MLCD_TESTBED_REGISTRY_PASSWORD"].as_str(),
    )];

    // 1. CI on push: tests, then the image is built and pushed.
    let (out, _, log) = act_on(
        &env,
        &repo,
        "push",
        ".github/workflows/ci.yml",
        "event.json",
        &secrets,
    );
    assert_eq!(get(&out, "build", "status"), "succeeded", "{log}");

    // 2. Training on the workflow_run of a successful CI run for that commit:
    //    one job submits (wait: false), the next attaches and collects.
    let mut wr: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            root().join("fixtures/events/workflow_run.completed.success.json"),
        )
        .unwrap(),
    )
    .unwrap();
    wr["workflow_run"]["name"] = "CI".into();
    wr["workflow_run"]["head_sha"] = sha.clone().into();
    wr["workflow_run"]["head_branch"] = "main".into();
    wr["workflow_run"]["event"] = "push".into();
    repo.write("workflow_run.json", &wr.to_string());
    let (out, summaries, log) = act_on(
        &env,
        &repo,
        "workflow_run",
        ".github/workflows/train.yml",
        "workflow_run.json",
        &secrets,
    );
    assert_eq!(get(&out, "train", "status"), "succeeded", "{log}");
    assert_eq!(get(&out, "train", "model-version"), "1");
    assert!(summaries["train"].contains("Completed"), "{summaries:?}");
    let registered =
        std::fs::read_to_string(repo.path().join(".mlcd/registry/churn/versions/1.json")).unwrap();
    assert!(
        registered.contains(&sha),
        "trained for the upstream head_sha: {registered}"
    );

    // 3. Deploy on the merged pull request: shadow (nothing live yet: skipped),
    //    then the canary creates the endpoint; a second merge shadows and promotes.
    let mut pr: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/events/pull_request.closed.merged.json"))
            .unwrap(),
    )
    .unwrap();
    pr["pull_request"]["merge_commit_sha"] = sha.clone().into();
    pr["pull_request"]["base"]["ref"] = "main".into();
    pr["repository"]["default_branch"] = "main".into();
    repo.write("pr.json", &pr.to_string());
    let (out, summaries, log) = act_on(
        &env,
        &repo,
        "pull_request",
        ".github/workflows/deploy.yml",
        "pr.json",
        &secrets,
    );
    assert_eq!(get(&out, "shadow", "status"), "succeeded", "{log}");
    assert!(summaries["shadow"].contains("skipped"), "{summaries:?}");
    assert_eq!(get(&out, "canary", "status"), "succeeded", "{log}");
    assert_eq!(get(&out, "canary", "traffic"), "100");
    let url = get(&out, "canary", "url");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(log.contains(&format!("serving at {url}")), "{log}");

    let cleanup = || {
        let names = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("name={endpoint}")])
            .env("DOCKER_HOST", &env["DOCKER_HOST"])
            .output()
            .unwrap();
        let ids: Vec<String> = String::from_utf8_lossy(&names.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .env("DOCKER_HOST", &env["DOCKER_HOST"])
                .output();
        }
    };
    cleanup();
}

/// The report comment under the runner: a pull request of the example repository
/// runs build and train twice (act pointed at the fake GitHub through its `.env`
/// file), and the PR ends with one mlcd comment, created by the first run and
/// edited by the second, whose chart parses with Mermaid and renders in Chromium.
#[test]
fn a_pull_request_under_act_gets_one_report_comment_that_a_second_run_updates() {
    let env = testbed_env(&[
        "DOCKER_HOST",
        "MLCD_TESTBED_ACT",
        "MLCD_TESTBED_BASE_IMAGE",
        "MLCD_TESTBED_REGISTRY",
        "MLCD_TESTBED_REGISTRY_USER",
        "MLCD_TESTBED_REGISTRY_PASSWORD",
    ]);
    let image = action_image(&env);
    let gh = FakeGitHub::start();
    let ns = format!("actpr{}", unique());
    let mut files: Vec<(String, String)> = Vec::new();
    collect(&root().join("fixtures/example"), "example", &mut files);
    for (path, text) in files.iter_mut() {
        if path == "example/mlcd.yml" {
            *text = text
                .replace(
                    "registry: 127.0.0.1:15000/mlcd",
                    &format!("registry: {}/{ns}", env["MLCD_TESTBED_REGISTRY"]),
                )
                .replace(
                    "BASE_IMAGE: \"local/python:3.11\"",
                    &format!("BASE_IMAGE: \"{}\"", env["MLCD_TESTBED_BASE_IMAGE"]),
                );
        }
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    // Its own workflow name: act names the job's container after the workflow and
    // job, and another test runs BUILD_WORKFLOW at the same time.
    let workflow = BUILD_WORKFLOW
        .replace("name: mlcd build", "name: mlcd pull request")
        .replace("on: push", "on: pull_request");
    let (repo, sha) = repository(image, &files, &workflow);
    // act reads `.env` in the working directory into every step's environment.
    repo.write(".env", &format!("GITHUB_API_URL={}\n", gh.url));
    let mut pr: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/events/pull_request.opened.json")).unwrap(),
    )
    .unwrap();
    pr["number"] = 12.into();
    pr["pull_request"]["number"] = 12.into();
    pr["pull_request"]["head"]["sha"] = sha.clone().into();
    repo.write("pr.json", &pr.to_string());
    let secrets = [
        ("REGISTRY_USER", env["MLCD_TESTBED_REGISTRY_USER"].as_str()),
        (
            "REGISTRY_PASSWORD",
            env["MLCD_TESTBED_REGISTRY_PASSWORD"].as_str(),
        ),
        // act's `github.token` (the action's default `github-token`).
        ("GITHUB_TOKEN", "ghs_actfaketoken0123456789"),
    ];
    let run = || {
        act_on(
            &env,
            &repo,
            "pull_request",
            ".github/workflows/e2e.yml",
            "pr.json",
            &secrets,
        )
    };
    let comments = || {
        gh.state()["comments"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };

    let (out, _, log) = run();
    assert_eq!(get(&out, "train", "status"), "succeeded", "{log}");
    let first = comments();
    assert_eq!(first.len(), 1, "{first:?}\n{log}");
    assert_eq!(first[0]["issue_number"], 12);
    let body = first[0]["body"].as_str().unwrap().to_string();
    assert!(body.starts_with("<!-- mlcd:model=churn -->"), "{body}");
    assert!(
        body.contains(&format!("For commit [`{}`]", &sha[..7])),
        "{body}"
    );
    assert!(body.contains("### 🏗️ Build — ✅ succeeded"), "{body}");
    assert!(
        body.contains("| skipped | no: built and pushed |"),
        "{body}"
    );
    assert!(body.contains("### 🧪 Train — ✅ succeeded"), "{body}");

    let (out, _, log) = run();
    assert_eq!(get(&out, "build", "skipped"), "true", "{log}");
    let second = comments();
    assert_eq!(second.len(), 1, "edited, not added: {second:?}");
    assert_eq!(second[0]["id"], first[0]["id"]);
    let body = second[0]["body"].as_str().unwrap().to_string();
    assert!(
        body.contains("| skipped | yes: an image with the same build inputs existed"),
        "{body}"
    );
    assert!(body.contains("### 🧪 Train — ✅ succeeded"), "{body}");
    let ops: Vec<String> = gh
        .requests()
        .iter()
        .map(|r| r["operation_id"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(
        ops.iter().filter(|o| *o == "issues/create-comment").count(),
        1,
        "{ops:?}"
    );
    assert!(ops.iter().any(|o| o == "issues/update-comment"), "{ops:?}");
    assert_eq!(gh.violations(), Vec::<serde_json::Value>::new());

    // The chart GitHub would render: parsed by Mermaid, drawn by Chromium.
    assert!(mermaid::assert_charts_parse(&body) >= 1, "{body}");
    let png = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts/act-pr-comment-charts.png");
    std::fs::create_dir_all(png.parent().unwrap()).unwrap();
    let (code, json) = mermaid::run_script("render.mjs", &body, &[png.to_str().unwrap()]);
    assert_eq!(code, 0, "{json}");
    assert!(std::fs::metadata(&png).unwrap().len() > 10_000);
}

/// The loop's last link under the runner: the example monitoring workflow
/// (examples/workflows/monitor.yml) finds drift in recent data and sends its
/// `repository_dispatch` to the fake GitHub; the request the fake recorded is
/// turned into the event GitHub delivers for it (GitHub's own example payload
/// with `action` = the event type and this `client_payload`), and the example
/// retraining workflow (examples/workflows/train.yml) runs under act from it:
/// a real training of the example on the engine, submitted by one job and
/// collected by the next, for the model and the reason the dispatch named.
#[test]
fn a_drift_dispatch_starts_the_example_retraining_workflow_under_act() {
    let env = testbed_env(&[
        "DOCKER_HOST",
        "MLCD_TESTBED_ACT",
        "MLCD_TESTBED_BASE_IMAGE",
        "MLCD_TESTBED_REGISTRY",
    ]);
    let image = action_image(&env);
    let gh = FakeGitHub::start();
    let ns = format!("retrain{}", unique());
    let mut files: Vec<(String, String)> = Vec::new();
    collect(&root().join("fixtures/example"), "", &mut files);
    for (path, text) in files.iter_mut() {
        *path = path.trim_start_matches('/').to_string();
        if path == "mlcd.yml" {
            *text = text.replace(
                "registry: 127.0.0.1:15000/mlcd",
                &format!("registry: {}/{ns}", env["MLCD_TESTBED_REGISTRY"]),
            )
                + "\nmonitor:\n  current: data/recent\n  exclude: [churn]\n  on-drift: dispatch\n";
        }
    }
    // Recent requests unlike the training data: longer tenure, higher charges.
    let train =
        std::fs::read_to_string(root().join("fixtures/example/data/train/churn.csv")).unwrap();
    let mut recent = String::from("tenure_months,monthly_charges,support_calls,contract_monthly\n");
    for line in train.lines().skip(1).take(120) {
        let c: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
        recent.push_str(&format!(
            "{},{},{},{}\n",
            c[0] + 40.0,
            c[1] * 1.5,
            c[2],
            c[3]
        ));
    }
    files.push(("data/recent/traffic.csv".into(), recent));
    // Their own workflow names: act names a job's container after its workflow
    // and job, and the three-example test runs train.yml at the same time. No
    // upload-artifact here (it is fetched from github.com; no internet).
    let monitor = example_workflow("monitor.yml")
        .replace("name: Monitor\n", "name: Drift check\n")
        .replace(
            "      - uses: actions/upload-artifact@v4\n        with:\n          name: drift-report\n          path: ${{ steps.monitor.outputs.report-path }}\n",
            "",
        );
    assert!(!monitor.contains("upload-artifact"), "{monitor}");
    let train = example_workflow("train.yml").replace("name: Train\n", "name: Retrain\n");
    files.push((".github/workflows/monitor.yml".into(), monitor));
    files.push((".github/workflows/train.yml".into(), train));
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let (repo, sha) = repository(
        image,
        &files,
        "name: unused\non: workflow_dispatch\njobs: {}\n",
    );
    // act reads `.env` in the working directory into every step's environment.
    repo.write(".env", &format!("GITHUB_API_URL={}\n", gh.url));
    repo.write(
        "dispatch.json",
        &std::fs::read_to_string(root().join("fixtures/events/workflow_dispatch.json")).unwrap(),
    );
    let secrets = [("GITHUB_TOKEN", "ghs_actfaketoken0123456789")];

    // 1. The monitoring workflow: drifted, and the dispatch sent.
    let started = std::time::Instant::now();
    let (out, summaries, log) = act_on(
        &env,
        &repo,
        "workflow_dispatch",
        ".github/workflows/monitor.yml",
        "dispatch.json",
        &secrets,
    );
    eprintln!("monitor workflow under act: {:.1?}", started.elapsed());
    assert_eq!(get(&out, "monitor", "status"), "drifted", "{log}");
    assert!(
        summaries["monitor"].contains("Sent `repository_dispatch` `retrain`"),
        "{summaries:?}"
    );
    assert_eq!(gh.violations(), Vec::<serde_json::Value>::new());
    let state = gh.state();
    let sent = state["dispatches"].as_array().unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let d = &sent[0];
    assert_eq!(d["repository"], "acme/churn");
    assert_eq!(d["event_type"], "retrain");
    assert_eq!(d["client_payload"]["model-id"], "churn");
    assert_eq!(d["client_payload"]["commit"], sha.as_str());
    let reason = d["client_payload"]["reason"].as_str().unwrap().to_string();

    // 2. What GitHub delivers for that request: a repository_dispatch event whose
    //    `action` is the event type, with the client_payload as sent, on the
    //    repository's default branch (GitHub's example payload, for this repository).
    let mut event: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/events/repository_dispatch.json")).unwrap(),
    )
    .unwrap();
    let (owner, name) = d["repository"].as_str().unwrap().split_once('/').unwrap();
    event["action"] = d["event_type"].clone();
    event["client_payload"] = d["client_payload"].clone();
    event["branch"] = "main".into();
    event["repository"]["name"] = name.into();
    event["repository"]["full_name"] = d["repository"].clone();
    event["repository"]["owner"]["login"] = owner.into();
    event["repository"]["default_branch"] = "main".into();
    repo.write("retrain.json", &event.to_string());

    // The image built for this commit, as CI would have pushed it; on the
    // engine, so training finds it without a pull.
    let model_image = format!("{}/{ns}/churn:{sha}", env["MLCD_TESTBED_REGISTRY"]);
    let mut c = Command::new("docker");
    c.env("DOCKER_HOST", &env["DOCKER_HOST"])
        .args(["build", "-q", "-t", &model_image, "--build-arg"])
        .arg(format!("BASE_IMAGE={}", env["MLCD_TESTBED_BASE_IMAGE"]))
        .arg(root().join("fixtures/example"));
    run(c, "docker build of the example image");
    // The tag goes when the test ends, passed or not (the layers stay cached).
    struct Untag<'a>(&'a BTreeMap<String, String>, String);
    impl Drop for Untag<'_> {
        fn drop(&mut self) {
            let _ = Command::new("docker")
                .env("DOCKER_HOST", &self.0["DOCKER_HOST"])
                .args(["rmi", &self.1])
                .output();
        }
    }
    let _untag = Untag(&env, model_image.clone());

    // 3. The retraining workflow from that event: submit, then attach and collect.
    let started = std::time::Instant::now();
    let (out, summaries, log) = act_on(
        &env,
        &repo,
        "repository_dispatch",
        ".github/workflows/train.yml",
        "retrain.json",
        &secrets,
    );
    eprintln!("retraining workflow under act: {:.1?}", started.elapsed());
    assert_eq!(get(&out, "train", "status"), "succeeded", "{log}");
    assert_eq!(get(&out, "train", "model-version"), "1", "{log}");
    let summary = &summaries["train"];
    assert!(summary.contains("Completed"), "{summary}");
    assert!(
        summary.contains(&format!("repository_dispatch `retrain`: {reason}")),
        "the run names what started it: {summary}"
    );
    let registered =
        std::fs::read_to_string(repo.path().join(".mlcd/registry/churn/versions/1.json")).unwrap();
    assert!(registered.contains(&sha), "{registered}");
    assert_eq!(gh.violations(), Vec::<serde_json::Value>::new());
}
