//! Bad input: each case gets one clear error naming the input or file:line, a
//! non-zero exit (2: invalid input), and nothing half-done (no outputs but
//! `status`, nothing touched).

mod common;
use common::*;

const GOOD: &str = "model: churn\ndeploy:\n  strategy: canary\n  steps: [10, 50, 100]\n";

fn plan(ws: &Workspace, args: &[&str]) -> Run {
    let mut all = vec!["plan"];
    all.extend_from_slice(args);
    mlcd(ws.path(), &all, &[("GITHUB_SHA", SHA)])
}

#[test]
fn unknown_mode_is_refused_on_the_cli_and_in_the_action() {
    let ws = Workspace::new();
    let r = mlcd(ws.path(), &["biuld"], &[]);
    r.assert_code(2);
    assert!(r.stderr.contains("biuld"), "{}", r.stderr);

    let r = action(&ws, &[("INPUT_MODE", "biuld")]);
    r.assert_code(2);
    assert!(r.stdout.contains("::error title=mlcd%3A invalid input::input `mode` (INPUT_MODE): unknown mode `biuld`: did you mean `build`?"), "{}", r.stdout);
    let outputs = parse_outputs(&ws.read("out/output"));
    assert_eq!(outputs.get("status").map(String::as_str), Some("invalid"));
    assert_eq!(outputs.len(), 1, "nothing but the status: {outputs:?}");
}

#[test]
fn missing_model_id_says_where_to_set_it() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", "deploy:\n  strategy: canary\n");
    let r = plan(&ws, &["deploy"]);
    r.assert_code(2);
    assert!(r.stderr.contains("missing model-id"), "{}", r.stderr);
    assert!(r.stderr.contains("--model-id"), "{}", r.stderr);
}

#[test]
fn malformed_yaml_points_at_the_line() {
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        "model: churn\ndeploy:\n  steps: [10, 50\n  strategy: canary\n",
    );
    let r = plan(&ws, &["deploy"]);
    r.assert_code(2);
    assert!(r.stderr.contains("--> mlcd.yml:"), "{}", r.stderr);
    assert!(r.stderr.contains("invalid config"), "{}", r.stderr);
}

#[test]
fn unknown_key_gets_its_line_column_and_a_suggestion() {
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        "model: churn\ntrain:\n  hyperparmeters: {lr: 0.1}\n",
    );
    let r = plan(&ws, &["train"]);
    r.assert_code(2);
    assert!(
        r.stderr
            .contains("unknown key `hyperparmeters` in `train`: did you mean `hyperparameters`?"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--> mlcd.yml:3:3"), "{}", r.stderr);
}

#[test]
fn wrong_type_names_the_key() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", "model: churn\ndeploy:\n  replicas: three\n");
    let r = plan(&ws, &["deploy"]);
    r.assert_code(2);
    assert!(r.stderr.contains("`deploy.replicas`"), "{}", r.stderr);
    assert!(r.stderr.contains("invalid type"), "{}", r.stderr);
}

#[test]
fn traffic_below_0_or_above_100_is_refused() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", GOOD);
    for bad in ["-5", "150"] {
        let r = plan(&ws, &["deploy", &format!("--traffic={bad}")]);
        r.assert_code(2);
        assert!(r.stderr.contains("--traffic"), "{}", r.stderr);
        assert!(r.stderr.contains("0 to 100"), "{}", r.stderr);
    }
    ws.write("mlcd.yml", "model: churn\ndeploy:\n  steps: [10, 120]\n");
    let r = plan(&ws, &["deploy"]);
    r.assert_code(2);
    assert!(r.stderr.contains("--> mlcd.yml:3"), "{}", r.stderr);
}

#[test]
fn unparsable_duration_is_refused() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", GOOD);
    let r = plan(&ws, &["deploy", "--timeout", "ninety minutes"]);
    r.assert_code(2);
    assert!(
        r.stderr
            .contains("--timeout: expected a duration like `90m`"),
        "{}",
        r.stderr
    );
}

#[test]
fn param_list_item_without_equals_is_refused() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", GOOD);
    let r = plan(
        &ws,
        &["deploy", "--param-list", "variation-name=shadow,replicas"],
    );
    r.assert_code(2);
    assert!(r.stderr.contains("`replicas` has no `=`"), "{}", r.stderr);
}

#[test]
fn missing_or_broken_event_file_is_refused() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", GOOD);
    let missing = ws.path().join("nope.json").display().to_string();
    let r = action(
        &ws,
        &[
            ("INPUT_MODE", "deploy"),
            ("INPUT_DRY-RUN", "true"),
            ("GITHUB_EVENT_NAME", "push"),
            ("GITHUB_EVENT_PATH", &missing),
        ],
    );
    r.assert_code(2);
    assert!(r.stdout.contains("GITHUB_EVENT_PATH"), "{}", r.stdout);

    let broken = ws.write("event.json", "{\"action\": ");
    let broken = broken.display().to_string();
    let r = action(
        &ws,
        &[
            ("INPUT_MODE", "deploy"),
            ("INPUT_DRY-RUN", "true"),
            ("GITHUB_EVENT_NAME", "push"),
            ("GITHUB_EVENT_PATH", &broken),
        ],
    );
    r.assert_code(2);
    assert!(r.stdout.contains("is not JSON"), "{}", r.stdout);
    assert!(r.stdout.contains("line=1"), "{}", r.stdout);
}

#[test]
fn config_outside_the_workspace_is_refused() {
    let ws = Workspace::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("mlcd.yml"), GOOD).unwrap();
    let path = outside.path().join("mlcd.yml").display().to_string();
    let r = plan(&ws, &["deploy", "--config", &path]);
    r.assert_code(2);
    assert!(r.stderr.contains("outside the workspace"), "{}", r.stderr);
    let r = plan(&ws, &["deploy", "--config", "../mlcd.yml"]);
    r.assert_code(2);
    assert!(r.stderr.contains("outside the workspace"), "{}", r.stderr);
}

#[test]
fn a_bad_boolean_input_names_the_variable() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", GOOD);
    let r = action(&ws, &[("INPUT_MODE", "deploy"), ("INPUT_DRY-RUN", "yes")]);
    r.assert_code(2);
    assert!(r.stdout.contains("INPUT_DRY-RUN"), "{}", r.stdout);
}

#[test]
fn a_hyperparameter_that_is_not_a_scalar_is_refused() {
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        "model: churn\ntrain:\n  hyperparameters:\n    layers: {a: 1}\n",
    );
    let r = plan(&ws, &["train"]);
    r.assert_code(2);
    assert!(r.stderr.contains("found a mapping"), "{}", r.stderr);
    assert!(r.stderr.contains("--> mlcd.yml:4"), "{}", r.stderr);
}

#[test]
fn a_missing_dockerfile_points_at_its_key() {
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        "model: churn\nbuild:\n  context: .\n  dockerfile: docker/Dockerfile\n",
    );
    let r = plan(&ws, &["build"]);
    r.assert_code(2);
    assert!(r.stderr.contains("missing Dockerfile"), "{}", r.stderr);
    assert!(r.stderr.contains("--> mlcd.yml:4:3"), "{}", r.stderr);
}

#[test]
fn an_unknown_instance_type_is_refused_with_a_suggestion() {
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        "model: churn\ntrain:\n  image: 127.0.0.1:5000/churn:1\n  instance: cpu.smal\n",
    );
    let r = plan(&ws, &["train"]);
    r.assert_code(2);
    assert!(r.stderr.contains("cpu.small"), "{}", r.stderr);
    assert!(r.stderr.contains("--> mlcd.yml:4"), "{}", r.stderr);
}

#[test]
fn sagemaker_training_without_a_role_or_region_is_refused_before_anything_runs() {
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        "model: churn\nbackend: sagemaker\ntrain:\n  image: 1.dkr.ecr.us-east-1.amazonaws.com/churn:1\nsagemaker:\n  region: us-east-1\n",
    );
    let r = mlcd(ws.path(), &["train"], &[]);
    r.assert_code(2);
    assert!(r.stderr.contains("needs an execution role"), "{}", r.stderr);
    ws.write(
        "mlcd.yml",
        "model: churn\nbackend: sagemaker\ntrain:\n  image: 1.dkr.ecr.us-east-1.amazonaws.com/churn:1\nsagemaker:\n  role-arn: arn:aws:iam::123456789012:role/train\n",
    );
    let r = mlcd(ws.path(), &["train"], &[]);
    r.assert_code(2);
    assert!(r.stderr.contains("needs a region"), "{}", r.stderr);
}

#[test]
fn a_metric_regex_without_a_group_is_refused_before_the_engine_is_touched() {
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        "model: churn\ntrain:\n  image: 127.0.0.1:5000/churn:1\n  metrics:\n    - name: loss\n      regex: \"loss=[0-9.]+\"\n",
    );
    // No engine at that address: the error must come before any attempt to reach one.
    let r = mlcd(
        ws.path(),
        &["train"],
        &[("DOCKER_HOST", "unix:///nonexistent.sock")],
    );
    r.assert_code(2);
    assert!(
        r.stderr.contains("metric `loss`") && r.stderr.contains("group"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("Docker engine"), "{}", r.stderr);
}

#[test]
fn training_on_vertex_without_a_project_is_refused_with_the_key_to_set() {
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        "model: churn\nbackend: vertex\ntrain:\n  image: 127.0.0.1:5000/churn:1\n",
    );
    let r = mlcd(ws.path(), &["train"], &[]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("Vertex AI training needs a project")
            && r.stderr.contains("`vertex.project`")
            && r.stderr.contains("GOOGLE_CLOUD_PROJECT"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_boolean_flag_takes_true_or_false_as_the_next_word() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", "model: churn\n");
    for (words, wait) in [
        (&["--dry-run", "--wait", "false"][..], false),
        (&["--wait", "False", "--dry-run", "true"][..], false),
        (&["--dry-run=TRUE", "--wait=false"][..], false),
        (&["--dry-run", "true", "--wait", "true"][..], true),
        (&["--wait", "--dry-run"][..], true),
    ] {
        let mut args = vec!["train", "--output", "json"];
        args.extend_from_slice(words);
        let r = mlcd(ws.path(), &args, &[("GITHUB_SHA", SHA)]);
        r.assert_code(0);
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("one JSON object");
        assert_eq!(v["plan"]["train"]["wait"], wait, "{words:?}: {}", r.stdout);
    }

    let r = mlcd(
        ws.path(),
        &["train", "--wait", "yes"],
        &[("GITHUB_SHA", SHA)],
    );
    r.assert_code(2);
    assert!(
        r.stderr
            .contains("`--wait` takes `true` or `false`, not `yes`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("`--wait false`"), "{}", r.stderr);
}

#[test]
fn bad_capture_and_guard_settings_point_at_their_line() {
    let ws = Workspace::new();
    let cases = [
        (
            "model: churn\ndeploy:\n  capture:\n    path: s3://bucket/capture\n",
            "--> mlcd.yml:4",
            "copies capture files to a directory on this machine, not to a URL",
        ),
        (
            "model: churn\ndeploy:\n  capture:\n    path: ../../elsewhere\n",
            "--> mlcd.yml:4",
            "outside the workspace",
        ),
        (
            "model: churn\ndeploy:\n  capture: {sample: 120%}\n",
            "mlcd.yml:3",
            "from 0 to 100, found 120",
        ),
        (
            "model: churn\ndeploy:\n  capture: {rotate-size: 100}\n",
            "mlcd.yml:3",
            "add the unit",
        ),
        (
            "model: churn\ndeploy:\n  capture: {rotate-size: 64MB, max-size: 16MB}\n",
            "mlcd.yml:3",
            "is below `rotate-size` (64MB)",
        ),
        (
            "model: churn\ndeploy:\n  rollback:\n    max-error-rate: 5\n",
            "--> mlcd.yml:4",
            "expected a share from 0 to 1",
        ),
        (
            "model: churn\ndeploy:\n  rollback: {max-p95-latency: 250}\n",
            "mlcd.yml:3",
            "a bare number is ambiguous",
        ),
    ];
    for (yaml, at, says) in cases {
        ws.write("mlcd.yml", yaml);
        let r = plan(&ws, &["deploy"]);
        r.assert_code(2);
        assert!(r.stderr.contains(at), "{yaml}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{yaml}: {}", r.stderr);
    }
    // SageMaker needs an S3 destination.
    ws.write(
        "mlcd.yml",
        "model: churn\nbackend: sagemaker\nsagemaker: {region: us-east-1, role-arn: \"arn:aws:iam::123456789012:role/x\"}\ndeploy:\n  capture: {sample: 10%}\n",
    );
    let r = plan(&ws, &["deploy"]);
    r.assert_code(2);
    assert!(
        r.stderr
            .contains("needs an `s3://bucket/prefix`, found nothing"),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_endpoint_prediction_settings_point_at_their_line() {
    let ws = Workspace::new();
    ws.write("data/train.csv", "a,y\n1,0\n");
    let head = "model: churn\nmonitor:\n  reference: data/train.csv\n  current: data/train.csv\n  labels: y\n  predictions-from: endpoint\n";
    let cases = [
        (
            "  predict-rate: 0\n",
            "--> mlcd.yml:7",
            "`monitor.predict-rate` is 0",
        ),
        (
            "  predict-max-rows: 0\n",
            "--> mlcd.yml:7",
            "expected at least 1 row",
        ),
        (
            "",
            "--> mlcd.yml:6:3",
            "unknown predictions-from `endpoints`: did you mean `endpoint`?",
        ),
    ];
    for (extra, at, says) in cases {
        let yaml = if extra.is_empty() {
            head.replace("from: endpoint", "from: endpoints")
        } else {
            format!("{head}{extra}")
        };
        ws.write("mlcd.yml", &yaml);
        let r = plan(&ws, &["monitor"]);
        r.assert_code(2);
        assert!(r.stderr.contains(at), "{yaml}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{yaml}: {}", r.stderr);
    }
    // Only the local and SageMaker endpoints are asked.
    ws.write("mlcd.yml", &format!("{head}backend: kubernetes\n"));
    let r = plan(&ws, &["monitor"]);
    r.assert_code(2);
    assert!(r.stderr.contains("--> mlcd.yml:6"), "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "is supported with backends `local` and `sagemaker`; backend `kubernetes` is not supported yet"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn a_bad_word_deep_in_a_section_points_at_its_own_line() {
    let ws = Workspace::new();
    let head = "model: churn\nmonitor:\n  reference: data/a.csv\n  current: data/b.csv\n  drift-share: 0.5\n";
    let cases = [
        (
            "  method: kss\n",
            "unknown drift method `kss`: did you mean `ks`?",
        ),
        (
            "  on-drift: retrain\n",
            "unknown on-drift `retrain`: expected one of `report`, `fail`, `dispatch`",
        ),
        (
            "  methods: {age: wassersten}\n",
            "unknown drift method `wassersten`",
        ),
    ];
    for (extra, says) in cases {
        let yaml = format!("{head}{extra}");
        ws.write("mlcd.yml", &yaml);
        let r = plan(&ws, &["monitor"]);
        r.assert_code(2);
        // Line 6, the key's own, not line 3 (`reference:`, the section's first key).
        assert!(r.stderr.contains("--> mlcd.yml:6:"), "{yaml}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{yaml}: {}", r.stderr);
    }
    // The same holds in other sections (the fix is in the config reader).
    ws.write(
        "mlcd.yml",
        "model: churn\ndeploy:\n  endpoint: churn\n  interval: 5m\n  strategy: canery\n",
    );
    let r = plan(&ws, &["deploy"]);
    r.assert_code(2);
    assert!(r.stderr.contains("--> mlcd.yml:5:3"), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean `canary`"), "{}", r.stderr);
}
