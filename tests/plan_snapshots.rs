//! The plans for the bundled example (fixtures/example), snapshot-tested: any
//! change to what a mode would do shows up as a reviewed diff
//! (`cargo insta review`, or INSTA_UPDATE=always).

mod common;
use common::*;

fn plan(mode: &str, extra: &[(&str, &str)]) -> serde_json::Value {
    let ws = Workspace::with_example();
    let mut env: Vec<(&str, &str)> = vec![
        ("INPUT_MODE", mode),
        ("INPUT_CONFIG", "example/mlcd.yml"),
        ("INPUT_DRY-RUN", "true"),
        ("GITHUB_RUN_ID", "4242"),
    ];
    env.extend_from_slice(extra);
    action(&ws, &env).assert_code(0);
    let outputs = parse_outputs(&ws.read("out/output"));
    serde_json::from_str(&outputs["plan"]).unwrap()
}

#[test]
fn build_plan_of_the_example() {
    insta::assert_json_snapshot!(plan("build", &[("INPUT_TAGS", "demo")]));
}

#[test]
fn train_plan_of_the_example() {
    insta::assert_json_snapshot!(plan("train", &[("INPUT_PARAM-LIST", "epochs=50")]));
}

#[test]
fn deploy_plan_of_the_example() {
    insta::assert_json_snapshot!(plan("deploy", &[("INPUT_TRAFFIC", "20")]));
}

#[test]
fn shadow_deploy_plan_of_the_example() {
    insta::assert_json_snapshot!(plan(
        "deploy",
        &[("INPUT_PARAM-LIST", "variation-name=shadow,strategy=shadow")]
    ));
}

#[test]
fn sagemaker_train_plan_of_the_example() {
    insta::assert_json_snapshot!(plan(
        "train",
        &[
            ("INPUT_BACKEND", "sagemaker"),
            ("INPUT_INSTANCE", "gpu.t4.xl"),
            ("INPUT_IAM-ROLE-ARN", "arn:aws:iam::123456789012:role/train"),
            ("AWS_REGION", "eu-west-1"),
        ]
    ));
}

#[test]
fn the_human_plan_reads_well() {
    let ws = Workspace::with_example();
    let r = mlcd(
        ws.path(),
        &["plan", "train", "--config", "example/mlcd.yml"],
        &[("GITHUB_SHA", SHA)],
    );
    r.assert_code(0);
    // Outside GitHub the source is this machine's scratch workspace, and the job
    // name's last part is derived from it: both differ on every run.
    insta::with_settings!({filters => vec![
        (r"workspace:[^ \n]+", "workspace:[host]:[dir]"),
        (r"churn-0123456-[0-9a-f]{6}", "churn-0123456-[source hash]"),
    ]}, {
        insta::assert_snapshot!(r.stderr);
    });
}

#[test]
fn kserve_inference_service_of_the_example() {
    let ws = Workspace::with_example();
    let r = mlcd(
        ws.path(),
        &[
            "render",
            "deploy",
            "--config",
            "example/mlcd.yml",
            "--backend",
            "kubernetes",
            "--instance",
            "gpu.t4.xl",
        ],
        &[("GITHUB_SHA", SHA)],
    );
    r.assert_code(0);
    // Outside GitHub the source is this machine's scratch workspace.
    insta::with_settings!({filters => vec![
        (r"workspace:[^ \n]+", "workspace:[host]:[dir]"),
    ]}, {
        insta::assert_snapshot!(r.stdout);
    });
}

/// The example deployed through GitOps as a KServe canary by commits.
fn gitops_example(ws: &Workspace, extra: &str) {
    let cfg = ws
        .read("example/mlcd.yml")
        .replace("backend: local", "backend: kubernetes")
        .replace(
            "  interval: 30s\n",
            &format!("  interval: 30s\n{extra}  gitops:\n    repo: acme/deploy\n    branch: main\n    path: apps/churn\n    format: manifests\n    argocd: {{server: \"https://argocd.acme.dev\", app: churn}}\n"),
        )
        + "kubernetes:\n  namespace: ml\n";
    ws.write("example/mlcd.yml", &cfg);
}

#[test]
fn gitops_deploy_plan_shows_each_commit_without_the_network() {
    let ws = Workspace::with_example();
    gitops_example(&ws, "");
    // No GitHub, no Argo CD, no cluster: the plan needs none of them.
    let env = [
        ("INPUT_MODE", "deploy"),
        ("INPUT_CONFIG", "example/mlcd.yml"),
        ("INPUT_DRY-RUN", "true"),
        ("INPUT_IMAGE", "ghcr.io/acme/churn:v7@sha256:3c1ae7a0b6f84f2d9a5e0c7b1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6"),
        ("GITHUB_RUN_ID", "4242"),
    ];
    action(&ws, &env).assert_code(0);
    let outputs = parse_outputs(&ws.read("out/output"));
    let plan: serde_json::Value = serde_json::from_str(&outputs["plan"]).unwrap();
    insta::assert_json_snapshot!(plan["deploy"]["gitops"]);

    let r = mlcd(
        ws.path(),
        &[
            "plan",
            "deploy",
            "--config",
            "example/mlcd.yml",
            "--image",
            "ghcr.io/acme/churn:v7",
        ],
        &[("GITHUB_SHA", SHA)],
    );
    r.assert_code(0);
    let text: String = r
        .stderr
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("gitops"))
        .take_while(|l| l.trim_start().starts_with("gitops") || l.starts_with("  commit"))
        .map(|l| format!("{l}\n"))
        .collect();
    insta::assert_snapshot!(text);
}

#[test]
fn live_traffic_guards_with_gitops_are_refused_at_plan_time_naming_the_line() {
    let ws = Workspace::with_example();
    gitops_example(&ws, "  rollback: {max-error-rate: 0.01}\n");
    let r = mlcd(
        ws.path(),
        &[
            "plan",
            "deploy",
            "--config",
            "example/mlcd.yml",
            "--image",
            "ghcr.io/acme/churn:v7",
        ],
        &[("GITHUB_SHA", SHA)],
    );
    r.assert_code(2);
    let line = ws
        .read("example/mlcd.yml")
        .lines()
        .position(|l| l.contains("max-error-rate"))
        .unwrap()
        + 1;
    assert!(
        r.stderr
            .contains("`deploy.rollback.max-error-rate` is set together with `deploy.gitops`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("example/mlcd.yml:{line}")),
        "line {line}: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("no per-revision error rate"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_gitops_rollout_plan_is_one_commit_and_what_a_rollout_cannot_mean_is_refused() {
    let ws = Workspace::with_example();
    gitops_example(&ws, "");
    let base = ws
        .read("example/mlcd.yml")
        .replace("  steps: [10, 50, 100]\n", "")
        .replace("    format: manifests\n", "    format: yaml\n    keys: {\"spec.template.spec.containers[0].image\": image}\n    rollout: churn\n")
        .replace("    path: apps/churn\n", "    path: apps/churn/rollout.yaml\n");
    let plan = |cfg: &str| {
        ws.write("example/mlcd.yml", cfg);
        mlcd(
            ws.path(),
            &[
                "plan",
                "deploy",
                "--config",
                "example/mlcd.yml",
                "--image",
                "ghcr.io/acme/churn:v7",
                "--output",
                "json",
            ],
            &[("GITHUB_SHA", SHA)],
        )
    };
    let r = plan(&base);
    r.assert_code(0);
    let out: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let g = &out["plan"]["deploy"]["gitops"];
    assert_eq!(g["rollout"], "churn", "{out:#}");
    assert_eq!(g["commits"].as_array().unwrap().len(), 1, "{g:#}");
    assert_eq!(
        g["commits"][0]["traffic"],
        "as Rollout `churn`'s own canary steps move it"
    );
    assert_eq!(
        g["commits"][0]["sets"][0],
        "spec.template.spec.containers[0].image: ghcr.io/acme/churn:v7"
    );

    for (cfg, says) in [
        (
            base.replace("strategy: canary", "strategy: blue-green"),
            "`deploy.strategy: blue-green` with `deploy.gitops.rollout: churn`",
        ),
        (
            base.replace(
                "    format: yaml\n    keys: {\"spec.template.spec.containers[0].image\": image}\n",
                "    format: manifests\n",
            ),
            "`format: manifests` writes mlcd's own objects",
        ),
        (
            base.replace(
                "    argocd: {server: \"https://argocd.acme.dev\", app: churn}\n",
                "",
            ),
            "`deploy.gitops.rollout: churn` needs `deploy.gitops.argocd`",
        ),
    ] {
        let r = plan(&cfg);
        r.assert_code(2);
        assert!(r.stderr.contains(says), "{says}: {}", r.stderr);
        assert!(
            r.stderr.contains("example/mlcd.yml:"),
            "names the file and line: {}",
            r.stderr
        );
    }
}
