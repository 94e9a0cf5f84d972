//! mlcd run as the container action: inputs from INPUT_* variables (hyphens kept),
//! outputs in $GITHUB_OUTPUT, the plan in $GITHUB_STEP_SUMMARY, secrets masked
//! first and never printed, and the event payload deciding what is acted on.
//! Event payloads are GitHub's own examples (fixtures/events, from
//! @octokit/webhooks-examples).

mod common;
use common::*;

const CONFIG: &str = "model: churn\nbuild:\n  registry: ghcr.io/acme\ntrain:\n  hyperparameters: {epochs: 5, lr: 0.01}\ndeploy:\n  strategy: canary\n  steps: [10, 50, 100]\n";

fn event(name: &str) -> String {
    root()
        .join("fixtures/events")
        .join(name)
        .display()
        .to_string()
}

fn plan_json(ws: &Workspace) -> serde_json::Value {
    let outputs = parse_outputs(&ws.read("out/output"));
    serde_json::from_str(outputs.get("plan").expect("a plan output")).unwrap()
}

#[test]
fn a_dry_run_sets_outputs_and_the_summary_and_touches_nothing() {
    let ws = Workspace::new();
    ws.write("ci/mlcd.yml", CONFIG);
    ws.write("ci/Dockerfile", "FROM scratch\n");
    let r = action(
        &ws,
        &[
            ("INPUT_MODE", "build"),
            ("INPUT_CONFIG", "ci/mlcd.yml"),
            ("INPUT_DRY-RUN", "true"),
            ("INPUT_TAGS", "gpu, nightly"),
        ],
    );
    r.assert_code(0);
    let outputs = parse_outputs(&ws.read("out/output"));
    assert_eq!(outputs["status"], "planned");
    let tags: Vec<&str> = outputs["tags"].lines().collect();
    assert_eq!(
        tags,
        [
            format!("ghcr.io/acme/churn:{SHA}").as_str(),
            "ghcr.io/acme/churn:0123456",
            "ghcr.io/acme/churn:main",
            "ghcr.io/acme/churn:gpu",
            "ghcr.io/acme/churn:nightly",
        ]
    );
    let plan = plan_json(&ws);
    assert_eq!(plan["mode"], "build");
    assert_eq!(plan["build"]["context"], "ci");
    assert_eq!(
        plan["build"]["labels"]["org.opencontainers.image.revision"],
        SHA
    );
    let summary = ws.read("out/summary");
    assert!(
        summary.contains("### mlcd plan: build `churn` on local (dry run: nothing is touched)"),
        "{summary}"
    );
    assert!(
        summary.contains("| repositories | ghcr.io/acme/churn |"),
        "{summary}"
    );
    assert!(r.stderr.contains("Plan: build `churn`"), "{}", r.stderr);
}

#[test]
fn secrets_are_masked_before_anything_and_never_printed() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    let token = "ghs_Sup3rSecretTokenValue0123456789";
    let password = "registry-pa55word-value";
    let r = action(
        &ws,
        &[
            ("INPUT_MODE", "deploy"),
            ("INPUT_GITHUB-TOKEN", token),
            ("INPUT_REGISTRY-PASSWORD", password),
            ("INPUT_DRY-RUN", "true"),
            ("INPUT_CHECKS", "false"),
            // A secret echoed into a bad input must not leak through the error.
            ("INPUT_STRATEGY", "ghs_Sup3rSecretTokenValue0123456789"),
        ],
    );
    r.assert_code(2);
    let mut lines = r.stdout.lines();
    let first_two: Vec<&str> = lines.by_ref().take(2).collect();
    assert!(
        first_two.contains(&format!("::add-mask::{token}").as_str()),
        "{}",
        r.stdout
    );
    assert!(
        first_two.contains(&format!("::add-mask::{password}").as_str()),
        "{}",
        r.stdout
    );
    let rest: String = lines.collect::<Vec<_>>().join("\n");
    for s in [token, password] {
        assert!(!rest.contains(s), "secret leaked on stdout: {rest}");
        assert!(
            !r.stderr.contains(s),
            "secret leaked on stderr: {}",
            r.stderr
        );
        assert!(!ws.read("out/output").contains(s));
        assert!(!ws.read("out/summary").contains(s));
    }
    assert!(rest.contains("unknown strategy `***`"), "{rest}");
}

#[test]
fn workflow_run_acts_on_the_upstream_commit() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    let r = action(
        &ws,
        &[
            ("INPUT_MODE", "train"),
            ("INPUT_DRY-RUN", "true"),
            ("GITHUB_RUN_ID", "4242"),
            ("GITHUB_EVENT_NAME", "workflow_run"),
            (
                "GITHUB_EVENT_PATH",
                &event("workflow_run.completed.success.json"),
            ),
        ],
    );
    r.assert_code(0);
    let plan = plan_json(&ws);
    assert_eq!(
        plan["source"]["commit"],
        "3484a3fb816e0859fd6e1cea078d76385ff50625"
    );
    assert_eq!(plan["source"]["branch"], "master");
    assert_eq!(plan["source"]["trigger"]["event"], "workflow_run");
    assert_eq!(plan["source"]["trigger"]["conclusion"], "success");
    assert_eq!(
        plan["train"]["image"],
        "ghcr.io/acme/churn:3484a3fb816e0859fd6e1cea078d76385ff50625"
    );
    let name = plan["train"]["job-name"].as_str().unwrap();
    assert!(name.starts_with("churn-4242-1-"), "{name}");
}

/// The job name a dry run of `mode: train` derives in `ws` with `env`.
fn planned_job_name(ws: &Workspace, env: &[(&str, &str)]) -> String {
    let mut all = vec![
        ("INPUT_MODE", "train"),
        ("INPUT_DRY-RUN", "true"),
        ("GITHUB_RUN_ID", "4242"),
    ];
    all.extend_from_slice(env);
    action(ws, &all).assert_code(0);
    plan_json(ws)["train"]["job-name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn two_repositories_with_the_same_model_and_run_id_get_different_job_names() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    let ours = planned_job_name(&ws, &[("GITHUB_REPOSITORY", "acme/churn")]);
    let again = planned_job_name(&ws, &[("GITHUB_REPOSITORY", "acme/churn")]);
    let theirs = planned_job_name(&ws, &[("GITHUB_REPOSITORY", "other/churn")]);
    assert_eq!(
        ours, again,
        "a re-run of the same attempt derives the same name"
    );
    assert_ne!(ours, theirs, "another repository must not share the name");
    for n in [&ours, &theirs] {
        assert!(n.starts_with("churn-4242-1-"), "{n}");
        assert!(n.len() <= 63, "{n}");
    }
    // Other hyperparameters (a matrix over param-list) get a name of their own.
    let lr = planned_job_name(&ws, &[("INPUT_PARAM-LIST", "lr=0.5")]);
    assert_ne!(ours, lr);
    // A model id of the longest kind still fits SageMaker's and Kubernetes' 63.
    let long = "m".repeat(40);
    let n = planned_job_name(
        &ws,
        &[
            ("INPUT_MODEL-ID", long.as_str()),
            ("GITHUB_RUN_ID", "98765432109"),
        ],
    );
    assert!(n.len() <= 63 && n.ends_with(&n[n.len() - 6..]), "{n}");
    assert!(n.contains("-98765432109-1-"), "{n}");
}

#[test]
fn two_workspaces_on_the_cli_get_different_job_names() {
    let a = Workspace::new();
    let b = Workspace::new();
    for ws in [&a, &b] {
        ws.write("mlcd.yml", CONFIG);
    }
    let name = |ws: &Workspace| {
        let r = mlcd(
            ws.path(),
            &[
                "plan",
                "train",
                "--config",
                "mlcd.yml",
                "--output",
                "json",
                "--image",
                "x/churn:1",
            ],
            &[],
        );
        r.assert_code(0);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["plan"]["train"]["job-name"].as_str().unwrap().to_string()
    };
    assert_eq!(name(&a), name(&a), "stable in one workspace");
    assert_ne!(name(&a), name(&b), "two checkouts on one machine differ");
}

#[test]
fn a_failed_upstream_run_is_refused_unless_allowed() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    let ev = event("workflow_run.completed.failure.json");
    let base = [
        ("INPUT_MODE", "train"),
        ("GITHUB_EVENT_NAME", "workflow_run"),
        ("GITHUB_EVENT_PATH", ev.as_str()),
    ];
    let r = action(&ws, &base);
    r.assert_code(1);
    assert!(
        r.stdout
            .contains("refusing to train: the upstream workflow run"),
        "{}",
        r.stdout
    );
    // The example payload's run has an empty `name`: the workflow's name stands in.
    assert!(
        r.stdout
            .contains("the upstream workflow run `test` ended `failure`"),
        "{}",
        r.stdout
    );
    assert_eq!(parse_outputs(&ws.read("out/output"))["status"], "failed");

    let mut allowed = base.to_vec();
    allowed.extend([
        ("INPUT_ALLOW-FAILED-UPSTREAM", "true"),
        ("INPUT_DRY-RUN", "true"),
    ]);
    std::fs::remove_file(ws.path().join("out/output")).unwrap();
    action(&ws, &allowed).assert_code(0);
}

#[test]
fn a_merged_pull_request_deploys_the_merge_commit() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    let r = action(
        &ws,
        &[
            ("INPUT_MODE", "deploy"),
            ("INPUT_DRY-RUN", "true"),
            ("INPUT_PARAM-LIST", "variation-name=shadow,strategy=shadow"),
            ("GITHUB_EVENT_NAME", "pull_request"),
            (
                "GITHUB_EVENT_PATH",
                &event("pull_request.closed.merged.json"),
            ),
        ],
    );
    r.assert_code(0);
    let plan = plan_json(&ws);
    assert_eq!(
        plan["source"]["commit"],
        "c4295bd74fb0f4fda03689c3df3f2803b658fd85"
    );
    assert_eq!(plan["source"]["trigger"]["merged"], true);
    assert_eq!(plan["deploy"]["strategy"], "shadow");
    assert_eq!(plan["deploy"]["variation"], "shadow");
    let outputs = parse_outputs(&ws.read("out/output"));
    assert_eq!(outputs["endpoint"], "churn");
    assert_eq!(outputs["traffic"], "100");
}

#[test]
fn dispatch_and_schedule_triggers_are_in_the_plan() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    // A monitoring webhook asking to retrain, with its reason.
    let dispatch = ws.write(
        "dispatch.json",
        &serde_json::json!({
            "action": "retrain",
            "client_payload": {"reason": "data drift on feature tenure_months", "model-id": "churn"},
            "repository": {"full_name": "acme/churn", "default_branch": "main"}
        })
        .to_string(),
    );
    action(
        &ws,
        &[
            ("INPUT_MODE", "train"),
            ("INPUT_DRY-RUN", "true"),
            ("GITHUB_EVENT_NAME", "repository_dispatch"),
            ("GITHUB_EVENT_PATH", &dispatch.display().to_string()),
        ],
    )
    .assert_code(0);
    let plan = plan_json(&ws);
    assert_eq!(
        plan["source"]["trigger"]["reason"],
        "data drift on feature tenure_months"
    );
    assert!(ws
        .read("out/summary")
        .contains("repository_dispatch `retrain`: data drift on feature tenure_months"));

    for (name, file, key) in [
        ("schedule", "schedule.json", "cron"),
        ("workflow_dispatch", "workflow_dispatch.json", "inputs"),
        ("repository_dispatch", "repository_dispatch.json", "action"),
    ] {
        std::fs::remove_file(ws.path().join("out/output")).unwrap();
        action(
            &ws,
            &[
                ("INPUT_MODE", "train"),
                ("INPUT_DRY-RUN", "true"),
                ("GITHUB_EVENT_NAME", name),
                ("GITHUB_EVENT_PATH", &event(file)),
            ],
        )
        .assert_code(0);
        let plan = plan_json(&ws);
        assert_eq!(plan["source"]["trigger"]["event"], name);
        assert!(
            !plan["source"]["trigger"][key].is_null(),
            "{name}: {}",
            plan["source"]
        );
    }
}

#[test]
fn inputs_override_the_config_and_param_list_sets_hyperparameters() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    action(
        &ws,
        &[
            ("INPUT_MODE", "train"),
            ("INPUT_DRY-RUN", "true"),
            ("INPUT_PARAM-LIST", "lr=0.2,batch=64"),
            ("INPUT_INSTANCE", "gpu.t4.xl"),
            ("INPUT_WAIT", "False"),
            ("INPUT_TIMEOUT", "90m"),
        ],
    )
    .assert_code(0);
    let plan = plan_json(&ws);
    let t = &plan["train"];
    assert_eq!(
        t["hyperparameters"],
        serde_json::json!({"batch": "64", "epochs": "5", "lr": "0.2"})
    );
    assert_eq!(t["instance"]["requested"], "gpu.t4.xl");
    assert_eq!(t["instance"]["gpus"], 1);
    assert_eq!(t["wait"], false);
    assert_eq!(t["timeout"], "1h 30m");
}

#[test]
fn a_real_run_without_a_docker_engine_fails_clearly_and_still_reports_the_plan() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    let r = action(
        &ws,
        &[
            ("INPUT_MODE", "train"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
    );
    r.assert_code(1);
    assert!(
        r.stdout
            .contains("cannot connect to the Docker engine at unix:///nonexistent/docker.sock"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("hint: start the Docker engine"),
        "{}",
        r.stdout
    );
    let outputs = parse_outputs(&ws.read("out/output"));
    assert_eq!(outputs["status"], "failed");
    assert!(
        outputs.contains_key("plan"),
        "the plan is reported even when execution fails"
    );
}

#[test]
fn json_output_prints_one_object_of_the_outputs() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    let r = mlcd(
        ws.path(),
        &["plan", "deploy", "--output", "json"],
        &[("GITHUB_SHA", SHA)],
    );
    r.assert_code(0);
    let v: serde_json::Value =
        serde_json::from_str(r.stdout.trim()).expect("stdout is one JSON object");
    assert_eq!(v["status"], "planned");
    assert_eq!(v["endpoint"], "churn");
    assert_eq!(v["traffic"], "10");
    assert_eq!(
        v["plan"]["deploy"]["steps"],
        serde_json::json!([10, 50, 100])
    );
    assert!(
        r.stderr.is_empty() || !r.stderr.contains('{'),
        "logs stay on stderr"
    );
}

#[test]
fn validate_accepts_a_good_config_and_lists_every_error_of_a_bad_one() {
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    ws.write("Dockerfile", "FROM scratch\n");
    let r = mlcd(ws.path(), &["validate"], &[]);
    r.assert_code(0);
    assert!(r.stderr.contains("mlcd.yml is valid"), "{}", r.stderr);

    ws.write(
        "mlcd.yml",
        "model: churn\nbuild:\n  dockerfile: missing.Dockerfile\ntrain:\n  instance: gpu.t4.xxl\ndeploy:\n  strategy: all-at-once\n  steps: [10, 100]\n",
    );
    let r = mlcd(ws.path(), &["validate"], &[]);
    r.assert_code(2);
    assert!(r.stderr.contains("--> mlcd.yml:3:3"), "{}", r.stderr);
    assert!(r.stderr.contains("--> mlcd.yml:5:3"), "{}", r.stderr);
    assert!(
        r.stderr.contains("did you mean `gpu.t4.xl`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("takes no traffic steps"), "{}", r.stderr);
    assert!(r.stderr.contains("mlcd.yml has 3 errors"), "{}", r.stderr);
}
