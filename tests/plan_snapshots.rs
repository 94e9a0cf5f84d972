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
