//! `mlcd monitor` through the binary: what a user sees — outputs, exit codes,
//! the step summary, the HTML report, the check run and the repository_dispatch
//! (sent to the fake GitHub, which validates it against GitHub's OpenAPI
//! description) — on the seeded samples of tests/monitor/fixtures, on captured
//! traffic, with a quality check against the local registry, and on bad input.

mod common;
use common::*;

use serde_json::Value;

const FIX: &str = "tests/monitor/fixtures";

/// A workspace with the small seeded reference and current samples (3 of 7
/// columns drift there: age, calls, plan).
fn drift_ws(extra: &str) -> Workspace {
    let ws = Workspace::new();
    for (from, to) in [
        ("small-reference.csv", "data/reference.csv"),
        ("small-current.csv", "data/current.csv"),
    ] {
        ws.write(
            to,
            &std::fs::read_to_string(root().join(FIX).join(from)).unwrap(),
        );
    }
    ws.write(
        "mlcd.yml",
        &format!(
            "model: churn\nmonitor:\n  reference: data/reference.csv\n  current: data/current.csv\n  drift-share: 0.4\n{extra}"
        ),
    );
    ws
}

fn json_out(run: &Run) -> Value {
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}\n--- stderr\n{}",
            run.stdout, run.stderr
        )
    })
}

#[test]
fn drift_is_reported_with_outputs_and_an_html_report_with_a_histogram_per_drifted_column() {
    let ws = drift_ws("");
    let run = mlcd(ws.path(), &["monitor", "--output", "json"], &[]);
    run.assert_code(0);
    let out = json_out(&run);
    assert_eq!(out["status"], "drifted");
    assert_eq!(out["drifted"], "true");
    assert_eq!(out["drift-share"], "0.4286");
    assert_eq!(out["drifted-columns"], r#"["age","calls","plan"]"#);
    assert_eq!(out["report-path"], ".mlcd/monitor/churn.html");
    let html = ws.read(".mlcd/monitor/churn.html");
    assert_eq!(
        html.matches("<svg").count(),
        3,
        "one chart per drifted column"
    );
    assert!(html.contains("<h3>age</h3>"));
    assert!(!html.contains("<h3>income</h3>"));
    // The per-column verdicts on stderr.
    assert!(run.stderr.contains("age"), "{}", run.stderr);
    assert!(run.stderr.contains("DRIFTED"), "{}", run.stderr);
    assert!(
        run.stderr.contains("drifted: 3 of 7 columns drifted"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_step_summary_has_a_row_per_column_and_the_check_run_the_verdict() {
    let gh = FakeGitHub::start();
    let ws = drift_ws("");
    action(
        &ws,
        &[
            ("INPUT_MODE", "monitor"),
            ("GITHUB_API_URL", gh.url.as_str()),
            ("INPUT_GITHUB-TOKEN", "ghs_faketoken0123456789"),
        ],
    )
    .assert_code(0);
    let summary = ws.read("out/summary");
    assert!(
        summary.contains(
            "| column | type | method | score | threshold | drifted | rows (reference / current) |"
        ),
        "{summary}"
    );
    assert!(summary.contains("| `age` | numeric | ks |"), "{summary}");
    assert!(
        summary.contains("| `plan` | categorical | chisquare |"),
        "{summary}"
    );
    assert!(
        summary.contains("| `paid` | categorical | z |"),
        "{summary}"
    );
    assert!(summary.contains("| **yes** | 500 / 400 |"), "{summary}");
    let outputs = parse_outputs(&ws.read("out/output"));
    assert_eq!(outputs["status"], "drifted");
    assert_eq!(gh.violations(), Vec::<Value>::new());
    let state = gh.state();
    let check = &state["check_runs"][0];
    assert_eq!(check["name"], "mlcd monitor");
    assert_eq!(check["conclusion"], "success");
    assert!(check["output"]["title"]
        .as_str()
        .unwrap()
        .starts_with("mlcd monitor: drifted: 3 of 7 columns"));
    // on-drift defaults to report: no dispatch.
    assert_eq!(state["dispatches"], serde_json::json!([]));
}

#[test]
fn on_drift_fail_fails_the_step_with_the_verdict() {
    let ws = drift_ws("  on-drift: fail\n");
    let run = mlcd(ws.path(), &["monitor", "--output", "json"], &[]);
    run.assert_code(1);
    assert_eq!(json_out(&run)["status"], "drifted");
    assert!(
        run.stderr.contains("error: monitor `churn`: drifted"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_same_data_is_ok() {
    let ws = drift_ws("  on-drift: fail\n");
    ws.write("data/current.csv", &ws.read("data/reference.csv"));
    let run = mlcd(ws.path(), &["monitor", "--output", "json"], &[]);
    run.assert_code(0);
    let out = json_out(&run);
    assert_eq!(out["status"], "ok");
    assert_eq!(out["drifted"], "false");
    assert_eq!(out["drifted-columns"], "[]");
}

#[test]
fn on_drift_dispatch_sends_a_repository_dispatch_the_retrain_workflow_reads() {
    let gh = FakeGitHub::start();
    let ws = drift_ws("  on-drift: dispatch\n");
    action(
        &ws,
        &[
            ("INPUT_MODE", "monitor"),
            ("GITHUB_API_URL", gh.url.as_str()),
            ("INPUT_GITHUB-TOKEN", "ghs_faketoken0123456789"),
        ],
    )
    .assert_code(0);
    assert_eq!(gh.violations(), Vec::<Value>::new());
    let ops: Vec<String> = gh
        .requests()
        .iter()
        .map(|r| r["operation_id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        ops,
        [
            "checks/create",
            "repos/create-dispatch-event",
            // The report comment: no pull request for this commit → on the commit.
            "repos/list-pull-requests-associated-with-commit",
            "repos/list-comments-for-commit",
            "repos/create-commit-comment",
            "checks/update"
        ]
    );
    let comment = &gh.state()["commit_comments"][0]["body"];
    assert!(
        comment
            .as_str()
            .is_some_and(|b| b.contains("📈 Monitor") && b.contains("| verdict | `drifted` |")),
        "{comment}"
    );
    let state = gh.state();
    let d = &state["dispatches"][0];
    assert_eq!(d["repository"], "acme/churn");
    assert_eq!(d["event_type"], "retrain");
    let p = &d["client_payload"];
    assert_eq!(p["reason"], "drift");
    assert_eq!(p["model-id"], "churn");
    assert_eq!(p["status"], "drifted");
    assert_eq!(
        p["drifted-columns"],
        serde_json::json!(["age", "calls", "plan"])
    );
    assert_eq!(p["commit"], SHA);
    assert_eq!(
        p["run-url"],
        format!("https://github.com/acme/churn/actions/runs/{}", ws.run_id)
    );
    assert!(p.as_object().unwrap().len() <= 10);
    assert!(ws
        .read("out/summary")
        .contains("Sent `repository_dispatch` `retrain`"));

    // The retraining workflow's run: GitHub delivers the dispatch as a
    // repository_dispatch event (its own example payload, with this action and
    // client_payload); mlcd's train plan reads the reason and the model from it.
    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/events/repository_dispatch.json")).unwrap(),
    )
    .unwrap();
    event["action"] = d["event_type"].clone();
    event["client_payload"] = p.clone();
    ws.write("event.json", &event.to_string());
    ws.write("mlcd.yml", "model: other\n");
    let event_path = ws.path().join("event.json").display().to_string();
    let run = action(
        &ws,
        &[
            ("INPUT_MODE", "train"),
            ("INPUT_DRY-RUN", "true"),
            ("GITHUB_EVENT_NAME", "repository_dispatch"),
            ("GITHUB_EVENT_PATH", event_path.as_str()),
        ],
    );
    run.assert_code(0);
    let plan: Value = serde_json::from_str(&parse_outputs(&ws.read("out/output"))["plan"]).unwrap();
    assert_eq!(
        plan["model-id"], "churn",
        "the payload's model-id wins over the config's"
    );
    assert_eq!(plan["source"]["trigger"]["action"], "retrain");
    assert_eq!(plan["source"]["trigger"]["reason"], "drift");
}

#[test]
fn a_dispatch_without_a_repository_is_a_clear_error() {
    let ws = drift_ws("  on-drift: dispatch\n");
    let run = mlcd(ws.path(), &["monitor"], &[]);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("`on-drift: dispatch` needs the repository"),
        "{}",
        run.stderr
    );
}

#[test]
fn too_few_rows_are_inconclusive_never_ok() {
    let ws = drift_ws("");
    let text = ws.read("data/current.csv");
    let few: Vec<&str> = text.lines().take(11).collect();
    ws.write("data/current.csv", &(few.join("\n") + "\n"));
    let run = mlcd(ws.path(), &["monitor", "--output", "json"], &[]);
    run.assert_code(0);
    let out = json_out(&run);
    assert_eq!(out["status"], "inconclusive");
    assert_eq!(out["drifted"], "false");
    assert!(
        run.stderr.contains("10 rows, fewer than `min-rows` (30)"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_empty_current_sample_is_inconclusive() {
    let ws = drift_ws("");
    ws.write(
        "data/current.csv",
        "age,income,score,calls,plan,region,paid\n",
    );
    let run = mlcd(ws.path(), &["monitor", "--output", "json"], &[]);
    run.assert_code(0);
    assert_eq!(json_out(&run)["status"], "inconclusive");
    assert!(
        run.stderr.contains("the current sample has no rows"),
        "{}",
        run.stderr
    );
}

#[test]
fn no_column_in_common_is_an_error_naming_both_sides() {
    let ws = drift_ws("");
    ws.write("data/current.csv", "a,b\n1,2\n");
    let run = mlcd(ws.path(), &["monitor"], &[]);
    run.assert_code(2);
    assert!(run.stderr.contains("no column in common"), "{}", run.stderr);
    assert!(
        run.stderr.contains("current has `a`, `b`"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_numeric_column_that_turns_to_text_is_an_error_with_file_and_line() {
    let ws = drift_ws("");
    let mut lines: Vec<String> = ws
        .read("data/current.csv")
        .lines()
        .map(String::from)
        .collect();
    let cells: Vec<&str> = lines[2].split(',').collect();
    lines[2] = format!("forty,{}", cells[1..].join(","));
    ws.write("data/current.csv", &(lines.join("\n") + "\n"));
    let run = mlcd(ws.path(), &["monitor"], &[]);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("column `age` is numeric in the reference sample"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("text in the current sample (`forty` at data/current.csv:3)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("monitor.types: {age: categorical}"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_threshold_outside_its_methods_range_points_at_its_line() {
    let ws = drift_ws("  method: ks\n  threshold: 1.5\n");
    let run = mlcd(ws.path(), &["monitor"], &[]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("threshold 1.5 is outside (0, 1)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("mlcd.yml:7"), "{}", run.stderr);
}

#[test]
fn a_method_that_does_not_suit_the_column_is_a_clear_error() {
    let ws = drift_ws("  methods: {plan: ks}\n");
    let run = mlcd(ws.path(), &["monitor"], &[]);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("`ks` compares numbers, and column `plan` is categorical"),
        "{}",
        run.stderr
    );
}

/// A SageMaker data capture record holding `data` as `encoding`.
fn capture_line(id: usize, content_type: &str, encoding: &str, data: &str) -> String {
    serde_json::json!({
        "captureData": {
            "endpointInput": {"observedContentType": content_type, "mode": "INPUT", "data": data, "encoding": encoding},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", "data": "{\"predictions\":[0]}", "encoding": "JSON"}
        },
        "eventMetadata": {"eventId": format!("e{id}"), "inferenceTime": "2026-11-29T04:00:00Z"},
        "eventVersion": "0"
    })
    .to_string()
}

#[test]
fn captured_traffic_is_compared_with_the_training_channel() {
    // The bundled example: the reference defaults to train.channels.train, the
    // current sample to the endpoint's capture directory.
    let ws = Workspace::with_example();
    let train = ws.read("example/data/train/churn.csv");
    let rows: Vec<Vec<&str>> = train
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let mut lines = Vec::new();
    for (i, r) in rows.iter().take(200).enumerate() {
        // Shifted traffic: everyone has long tenure and high charges.
        let tenure: f64 = r[0].parse::<f64>().unwrap() + 40.0;
        let charges: f64 = r[1].parse::<f64>().unwrap() * 1.5;
        if i % 2 == 0 {
            let body = serde_json::json!({"instances": [{"tenure_months": tenure, "monthly_charges": charges, "support_calls": r[2].parse::<f64>().unwrap(), "contract_monthly": r[3].parse::<f64>().unwrap()}]});
            lines.push(capture_line(
                i,
                "application/json",
                "JSON",
                &body.to_string(),
            ));
        } else {
            // Headerless CSV, the features in the reference's order (label left out).
            let csv = format!("{tenure},{charges},{},{}", r[2], r[3]);
            lines.push(capture_line(i, "text/csv", "CSV", &csv));
        }
    }
    ws.write(
        ".mlcd/capture/churn/2026-11-29T04.jsonl",
        &(lines.join("\n") + "\n"),
    );
    // Requests carry no label: leave it out of the positional CSV columns.
    let config =
        ws.read("example/mlcd.yml") + "\nmonitor:\n  exclude: [churn]\n  on-drift: dispatch\n";
    ws.write("example/mlcd.yml", &config);
    let gh = FakeGitHub::start();
    let run = mlcd(
        ws.path(),
        &[
            "monitor",
            "--config",
            "example/mlcd.yml",
            "--output",
            "json",
        ],
        &[
            ("GITHUB_REPOSITORY", "acme/churn"),
            ("GITHUB_TOKEN", "ghs_faketoken0123456789"),
            ("GITHUB_API_URL", gh.url.as_str()),
        ],
    );
    run.assert_code(0);
    assert_eq!(gh.violations(), Vec::<Value>::new());
    let state = gh.state();
    assert_eq!(state["dispatches"][0]["event_type"], "retrain");
    assert_eq!(
        state["dispatches"][0]["client_payload"]["drifted-columns"],
        serde_json::json!(["tenure_months", "monthly_charges"])
    );
    let out = json_out(&run);
    assert_eq!(out["status"], "drifted", "{}", run.stderr);
    let cols: Vec<String> = serde_json::from_str(out["drifted-columns"].as_str().unwrap()).unwrap();
    assert_eq!(cols, ["tenure_months", "monthly_charges"]);
    assert!(
        run.stderr
            .contains("200 current rows from capture (.mlcd/capture/churn)"),
        "{}",
        run.stderr
    );
}

#[test]
fn monitoring_capture_before_any_traffic_says_how_to_get_some() {
    let ws = Workspace::with_example();
    let run = mlcd(ws.path(), &["monitor", "--config", "example/mlcd.yml"], &[]);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("no captured traffic at `.mlcd/capture/churn/`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("deploy.capture"), "{}", run.stderr);
}

#[test]
fn accuracy_below_the_production_versions_is_degraded() {
    use mlcd::registry::{local::LocalRegistry, ModelRegistry, NewVersion};
    let ws = drift_ws(
        "  labels: churned\n  predictions: predicted\n  metric-below-baseline: 0.05\n  on-drift: fail\n",
    );
    // The current sample = the reference (no drift) plus labels and predictions,
    // right 3 times in 5 (accuracy 0.6).
    let reference = ws.read("data/reference.csv");
    let mut lines = reference.lines();
    let mut out = format!("{},churned,predicted\n", lines.next().unwrap());
    for (i, l) in lines.enumerate() {
        let pred = if i % 5 < 3 { 1 } else { 0 };
        out.push_str(&format!("{l},1,{pred}\n"));
    }
    ws.write("data/current.csv", &out);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let reg = LocalRegistry::new(ws.path().join(".mlcd/registry"));
        let v = reg
            .register(&NewVersion {
                model_name: "churn".into(),
                job_id: "churn-1".into(),
                backend: "local".into(),
                commit: Some(SHA.into()),
                image: "churn:1".into(),
                artifact: None,
                hyperparameters: Default::default(),
                metrics: [("accuracy".to_string(), 0.9)].into(),
                channels: Default::default(),
                run_url: None,
                alias: None,
            })
            .await
            .unwrap();
        reg.set_alias("churn", &v.version, "production")
            .await
            .unwrap();
    });
    let run = mlcd(ws.path(), &["monitor", "--output", "json"], &[]);
    run.assert_code(1);
    let out = json_out(&run);
    assert_eq!(out["status"], "degraded");
    assert_eq!(out["drifted"], "false");
    assert!(
        run.stderr.contains(
            "degraded: accuracy 0.6 on recent data against 0.9 for the production version"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn sagemaker_capture_files_are_read_from_an_s3_prefix_on_moto() {
    use mlcd::cloud::aws::{AwsClient, AwsCredentials};
    use mlcd::cloud::s3::S3Client;
    let tb = testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    let moto = tb["MLCD_TESTBED_MOTO_URL"].clone();
    let bucket = format!("mlcd-capture-{}", unique());
    let env: std::collections::BTreeMap<String, String> = [
        ("AWS_ACCESS_KEY_ID", "AKIDMLCDTESTKEY0001"),
        ("AWS_SECRET_ACCESS_KEY", "mlcd-test-secret/0001"),
        ("AWS_ENDPOINT_URL", moto.as_str()),
        ("AWS_REGION", "us-east-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();

    // The seeded current sample as SageMaker writes capture files: JSON payloads
    // in hourly objects under <prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/.
    let ws = drift_ws("");
    let current = ws.read("data/current.csv");
    let mut lines = current.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let records: Vec<String> = lines
        .enumerate()
        .map(|(i, l)| {
            let row: serde_json::Map<String, Value> = header
                .iter()
                .zip(l.split(','))
                .map(|(k, v)| {
                    let v = match v.parse::<f64>() {
                        Ok(x) => serde_json::json!(x),
                        Err(_) => serde_json::json!(v),
                    };
                    (k.to_string(), v)
                })
                .collect();
            let body = serde_json::json!({"instances": [row]}).to_string();
            capture_line(i, "application/json", "JSON", &body)
        })
        .collect();
    let half = records.len() / 2;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s3 = S3Client::new(
            AwsClient::new(AwsCredentials::from_env(&env).unwrap(), "us-east-1").unwrap(),
            &env,
        )
        .unwrap();
        s3.create_bucket(&bucket).await.unwrap();
        for (key, part) in [
            (
                "capture/churn/AllTraffic/2026/11/29/03/a.jsonl",
                &records[..half],
            ),
            (
                "capture/churn/AllTraffic/2026/11/29/04/b.jsonl",
                &records[half..],
            ),
        ] {
            s3.put_bytes(
                &bucket,
                key,
                (part.join("\n") + "\n").into_bytes(),
                "application/jsonl",
            )
            .await
            .unwrap();
        }
        // Not a capture file: skipped.
        s3.put_bytes(
            &bucket,
            "capture/churn/README.txt",
            b"hello".to_vec(),
            "text/plain",
        )
        .await
        .unwrap();
    });
    let config = ws.read("mlcd.yml").replace(
        "current: data/current.csv",
        &format!("current: s3://{bucket}/capture/churn/"),
    );
    ws.write("mlcd.yml", &config);
    let env_vec: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = mlcd(ws.path(), &["monitor", "--output", "json"], &env_vec);
    run.assert_code(0);
    let out = json_out(&run);
    // The same rows as the CSV file: the same verdict, to the digit.
    assert_eq!(out["status"], "drifted");
    assert_eq!(out["drifted-columns"], r#"["age","calls","plan"]"#);
    assert_eq!(out["drift-share"], "0.4286");
    assert!(
        run.stderr.contains(&format!(
            "400 current rows from s3://{bucket}/capture/churn/"
        )),
        "{}",
        run.stderr
    );
}
