//! End to end under the real runner emulator: nektos/act runs a workflow that
//! `uses: ./` on a locally built mlcd image (Dockerfile, `--target prebuilt`),
//! in dry-run mode for build, train and deploy, with hyphenated inputs and a
//! config file, and the test reads the outputs and step summaries act collected.
//!
//! Needs the test bed (docker, base-image, act): `scripts/testbed up`; the
//! README's test command starts it.

mod common;
use common::*;

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

#[test]
fn workflows_under_act_get_outputs_and_summaries_from_the_action() {
    let env = testbed_env(&["DOCKER_HOST", "MLCD_TESTBED_ACT", "MLCD_TESTBED_BASE_IMAGE"]);
    let docker = |args: &[&str]| {
        let mut c = Command::new("docker");
        c.args(args).env("DOCKER_HOST", &env["DOCKER_HOST"]);
        c
    };

    // The action image, from the project's Dockerfile around this build's binary.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("Dockerfile"), ctx.path().join("Dockerfile")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_mlcd"), ctx.path().join("mlcd")).unwrap();
    let image = "mlcd-e2e:local";
    run(
        docker(&[
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
        ]),
        "docker build of the action image",
    );

    // A repository using the action: a test copy of action.yml pointing at that image.
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
    repo.write("ml/mlcd.yml", CONFIG);
    repo.write("ml/Dockerfile", "FROM scratch\n");
    repo.write(".github/workflows/e2e.yml", WORKFLOW);
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

    let out = Command::new("timeout")
        .arg("300")
        .arg(&env["MLCD_TESTBED_ACT"])
        .args([
            "push",
            "-W",
            ".github/workflows/e2e.yml",
            "-e",
            "event.json",
        ])
        .args([
            "-P",
            &format!("ubuntu-latest={}", env["MLCD_TESTBED_BASE_IMAGE"]),
        ])
        .args(["--pull=false", "-b", "--rm", "--no-cache-server", "--json"])
        .current_dir(repo.path())
        .env("DOCKER_HOST", &env["DOCKER_HOST"])
        .env("ACT_DISABLE_VERSION_CHECK", "1")
        .output()
        .expect("act runs");
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "act failed:\n{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // act --json: one JSON object per line; outputs as set-output, summaries as summary.
    let mut outputs: BTreeMap<(String, String), String> = BTreeMap::new();
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
    let get = |step: &str, name: &str| {
        outputs
            .get(&(step.to_string(), name.to_string()))
            .cloned()
            .unwrap_or_else(|| panic!("no output {step}.{name} in:\n{outputs:?}"))
    };

    for step in ["build", "train", "deploy"] {
        assert_eq!(get(step, "status"), "planned");
        let plan: serde_json::Value = serde_json::from_str(&get(step, "plan")).unwrap();
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
    let tags: Vec<String> = get("build", "tags").lines().map(str::to_string).collect();
    assert!(
        tags.contains(&format!("127.0.0.1:15000/ml/churn:{sha}")),
        "{tags:?}"
    );
    assert!(
        tags.contains(&"127.0.0.1:15000/ml/churn:e2e".to_string()),
        "{tags:?}"
    );
    let train: serde_json::Value = serde_json::from_str(&get("train", "plan")).unwrap();
    assert_eq!(train["train"]["hyperparameters"]["lr"], "0.5");
    assert_eq!(train["train"]["hyperparameters"]["epochs"], "3");
    assert_eq!(get("deploy", "traffic"), "20");
    assert_eq!(get("deploy", "endpoint"), "churn");
    assert!(
        log.contains("deploy endpoint churn"),
        "the later step saw the output:\n{log}"
    );
}
