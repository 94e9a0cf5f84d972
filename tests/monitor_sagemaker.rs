//! `mlcd monitor`'s quality check on SageMaker, through the binary: predictions
//! asked of the endpoint with InvokeEndpoint (the fake SageMaker validates every
//! request against botocore's sagemaker-runtime model and answers from a real
//! container of the trained example on the test bed's engine), and predictions
//! joined by inference id from SageMaker data capture files in moto's S3; `ok`
//! on the true labels, `degraded` with them flipped; and the bad cases (no such
//! endpoint, capture records without an inference id, unsupported backends).
//!
//! Needs the test bed (docker, base-image, moto): `scripts/testbed up`.

mod common;
use common::*;
#[path = "common/fake_kube.rs"]
mod fake_kube;

use mlcd::registry::{local::LocalRegistry, ModelRegistry, NewVersion};
use serde_json::{json, Value};

const CREDS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "AKIDMLCDTESTKEY0001"),
    ("AWS_SECRET_ACCESS_KEY", "mlcd-test-secret/0001"),
    ("AWS_REGION", "us-east-1"),
];

/// A workspace with the example's data, `mlcd.yml` for SageMaker endpoint
/// `endpoint` with `monitor` (YAML lines under `monitor:`) and `deploy_extra`,
/// and a local registry whose production version recorded accuracy 0.9.
fn workspace(endpoint: &str, deploy_extra: &str, monitor: &str) -> Workspace {
    let ws = Workspace::new();
    copy_dir(
        &root().join("fixtures/example/data"),
        &ws.path().join("data"),
    );
    ws.write(
        "mlcd.yml",
        &format!(
            "model: churn
backend: sagemaker
deploy:
  endpoint: {endpoint}
  instance: cpu.small
  strategy: all-at-once
  ready-timeout: 60s
{deploy_extra}sagemaker:
  region: us-east-1
  role-arn: arn:aws:iam::123456789012:role/serve
registry:
  type: local
monitor:
  reference: data/train
  labels: churn
  metric-below-baseline: 0.05
{monitor}"
        ),
    );
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
                backend: "sagemaker".into(),
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
    ws
}

/// `mlcd monitor --output json` against `aws` (AWS_ENDPOINT_URL).
fn monitor(ws: &Workspace, aws: &str) -> (Run, Value) {
    let mut env: Vec<(&str, &str)> = CREDS.to_vec();
    env.push(("AWS_ENDPOINT_URL", aws));
    let run = mlcd(ws.path(), &["monitor", "--output", "json"], &env);
    let out = serde_json::from_str(run.stdout.trim()).unwrap_or(Value::Null);
    (run, out)
}

/// The accuracy the HTML report gives for the recent data.
fn reported_accuracy(ws: &Workspace) -> f64 {
    let html = ws.read(".mlcd/monitor/churn.html");
    let at = html
        .find("accuracy on recent data: ")
        .unwrap_or_else(|| panic!("no quality in the report: {html}"));
    let rest = &html[at + "accuracy on recent data: ".len()..];
    rest[..rest.find(' ').unwrap()].parse().unwrap()
}

/// The validation data with its labels flipped (0 ↔ 1).
fn flip_labels(ws: &Workspace, from: &str, to: &str) {
    let text = ws.read(from);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let at = header.split(',').position(|c| c == "churn").unwrap();
    let mut out = format!("{header}\n");
    for l in lines {
        let mut cells: Vec<String> = l.split(',').map(str::to_string).collect();
        cells[at] = if cells[at] == "1" { "0" } else { "1" }.into();
        out.push_str(&(cells.join(",") + "\n"));
    }
    ws.write(to, &out);
}

#[test]
fn quality_predictions_are_asked_of_the_sagemaker_endpoint_with_invoke_endpoint() {
    let tb = testbed_env(&["DOCKER_HOST", "MLCD_TESTBED_BASE_IMAGE"]);
    let image = fake_kube::kserve_image(&tb);
    let fake = FakeSagemaker::with_containers(&tb["DOCKER_HOST"]);
    let endpoint = format!("churn-q{}", unique());
    let ws = workspace(
        &endpoint,
        "",
        "  current: data/validation\n  predictions-from: endpoint\n  predict-rate: 50\n",
    );

    // The endpoint, deployed by mlcd; its variant serves the trained example.
    let mut env: Vec<(&str, &str)> = CREDS.to_vec();
    env.push(("AWS_ENDPOINT_URL", &fake.url));
    env.push(("MLCD_POLL_INTERVAL_MS", "100"));
    let deploy = mlcd(ws.path(), &["deploy", "--image", &image], &env);
    deploy.assert_code(0);
    let before = fake.calls("InvokeEndpoint").len();

    let started = std::time::Instant::now();
    let (run, out) = monitor(&ws, &fake.url);
    let took = started.elapsed();
    run.assert_code(0);
    assert_eq!(out["status"], "ok", "{}", run.stderr);
    let accuracy = reported_accuracy(&ws);
    eprintln!("accuracy of the SageMaker endpoint's answers: {accuracy} ({took:.1?})");
    assert!(accuracy >= 0.85, "{accuracy}");
    assert!(
        run.stderr.contains(&format!(
            "asking endpoint `{endpoint}` on sagemaker for the predictions of 100 labelled row(s), at most 50 a second"
        )),
        "{}",
        run.stderr
    );
    // Each labelled row went to the live variant through InvokeEndpoint, at
    // most 50 a second.
    let calls: Vec<Value> = fake.calls("InvokeEndpoint")[before..].to_vec();
    assert_eq!(calls.len(), 100);
    let variants: std::collections::BTreeSet<&str> = calls
        .iter()
        .map(|c| c["body"]["TargetVariant"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(variants.len(), 1, "{variants:?}");
    assert!(
        calls[0]["body"]["Body"]
            .as_str()
            .unwrap()
            .contains("\"tenure_months\""),
        "{}",
        calls[0]
    );
    assert!(took >= std::time::Duration::from_millis(1900), "{took:?}");

    // The same rows with their labels flipped: the real model's answers now
    // disagree with most labels.
    flip_labels(&ws, "data/validation/churn.csv", "data/flipped/churn.csv");
    let cfg = ws
        .read("mlcd.yml")
        .replace("current: data/validation", "current: data/flipped");
    ws.write("mlcd.yml", &cfg);
    let (run, out) = monitor(&ws, &fake.url);
    run.assert_code(0);
    assert_eq!(out["status"], "degraded", "{}", run.stderr);
    assert!(
        run.stderr
            .contains("on recent data against 0.9 for the production version"),
        "{}",
        run.stderr
    );
    let flipped = reported_accuracy(&ws);
    assert!(
        (accuracy + flipped - 1.0).abs() < 1e-9,
        "the same answers against flipped labels: {accuracy} + {flipped}"
    );
    fake.assert_no_violations();

    // No such endpoint: named, with what to do.
    let cfg = ws
        .read("mlcd.yml")
        .replace(&format!("endpoint: {endpoint}"), "endpoint: churn-missing");
    ws.write("mlcd.yml", &cfg);
    let (run, _) = monitor(&ws, &fake.url);
    run.assert_code(2);
    assert!(
        run.stderr.contains(
            "`monitor.predictions-from: endpoint`: endpoint `churn-missing` does not exist on the sagemaker backend"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("deploy the model first"),
        "{}",
        run.stderr
    );
}

/// One SageMaker data capture record: the request's row, the model's answer
/// `prediction`, and the caller's inference id (when given).
fn capture_record(row: &Value, prediction: &str, id: Option<&str>) -> String {
    let mut meta =
        json!({"eventId": format!("e-{}", unique()), "inferenceTime": "2026-11-29T10:00:00Z"});
    if let Some(id) = id {
        meta["inferenceId"] = id.into();
    }
    json!({
        "captureData": {
            "endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                              "data": json!({"instances": [row]}).to_string(), "encoding": "JSON"},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                               "data": json!({"predictions": [{"churn": prediction.parse::<i64>().unwrap(), "churn_probability": 0.5}]}).to_string(),
                               "encoding": "JSON"}
        },
        "eventMetadata": meta,
        "eventVersion": "0"
    })
    .to_string()
}

/// Writes `objects` (key → lines) to `bucket` on moto's S3.
fn put_objects(env: &[(&str, &str)], bucket: &str, objects: &[(String, Vec<String>)]) {
    use mlcd::cloud::aws::{AwsClient, AwsCredentials};
    use mlcd::cloud::s3::S3Client;
    let env: std::collections::BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
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
        let _ = s3.create_bucket(bucket).await;
        for (key, lines) in objects {
            s3.put_bytes(
                bucket,
                key,
                (lines.join("\n") + "\n").into_bytes(),
                "application/jsonl",
            )
            .await
            .unwrap();
        }
    });
}

#[test]
fn quality_predictions_are_joined_from_sagemaker_capture_files_in_s3_by_inference_id() {
    let tb = testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    let moto = tb["MLCD_TESTBED_MOTO_URL"].clone();
    let bucket = format!("mlcd-capture-{}", unique());
    let endpoint = format!("churn-c{}", unique());
    let ws = workspace(
        &endpoint,
        &format!("  capture: {{path: s3://{bucket}/capture}}\n"),
        "  current: data/labelled.csv\n  predictions-from: capture\n",
    );

    // The labelled rows as callers keep them: the features, the label they
    // learnt later, and the inference id they sent with the request.
    let validation = ws.read("data/validation/churn.csv");
    let mut lines = validation.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let at = header.iter().position(|c| *c == "churn").unwrap();
    let mut labelled = format!("{},inference_id\n", header.join(","));
    let mut records = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        labelled.push_str(&format!("{},req-{i}\n", r.join(",")));
        let row: serde_json::Map<String, Value> = header
            .iter()
            .zip(r)
            .filter(|(k, _)| **k != "churn")
            .map(|(k, v)| (k.to_string(), json!(v.parse::<f64>().unwrap())))
            .collect();
        // The model was right 9 times in 10.
        let truth = r[at];
        let prediction = if i % 10 == 9 {
            if truth == "1" {
                "0"
            } else {
                "1"
            }
        } else {
            truth
        };
        records.push(capture_record(
            &Value::Object(row),
            prediction,
            Some(&format!("req-{i}")),
        ));
    }
    // Traffic nobody labelled (no inference id): read, not joinable.
    records.push(capture_record(&json!({"tenure_months": 1}), "0", None));
    ws.write("data/labelled.csv", &labelled);
    let mut env: Vec<(&str, &str)> = CREDS.to_vec();
    env.push(("AWS_ENDPOINT_URL", &moto));
    let half = records.len() / 2;
    put_objects(
        &env,
        &bucket,
        &[
            (
                format!("capture/{endpoint}/AllTraffic/2026/11/29/09/a.jsonl"),
                records[..half].to_vec(),
            ),
            (
                format!("capture/{endpoint}/AllTraffic/2026/11/29/10/b.jsonl"),
                records[half..].to_vec(),
            ),
        ],
    );

    let (run, out) = monitor(&ws, &moto);
    run.assert_code(0);
    assert_eq!(out["status"], "ok", "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "read 101 captured response(s) under s3://{bucket}/capture/{endpoint}/: 100 with an inference id, 1 without an inference id or a response (not joinable)"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("joined 100 labelled row(s) to captured predictions by `inference_id`"),
        "{}",
        run.stderr
    );

    // The labels flipped: accuracy 0.1 against 0.9.
    flip_labels(&ws, "data/labelled.csv", "data/flipped.csv");
    let cfg = ws
        .read("mlcd.yml")
        .replace("current: data/labelled.csv", "current: data/flipped.csv");
    ws.write("mlcd.yml", &cfg);
    let (run, out) = monitor(&ws, &moto);
    run.assert_code(0);
    assert_eq!(out["status"], "degraded", "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "degraded: accuracy 0.1 on recent data against 0.9 for the production version"
        ),
        "{}",
        run.stderr
    );

    // A capture whose records carry no inference id: nothing can be joined.
    let other = format!("churn-n{}", unique());
    let unlabelled: Vec<String> = (0..5)
        .map(|i| capture_record(&json!({"tenure_months": i}), "0", None))
        .collect();
    put_objects(
        &env,
        &bucket,
        &[(
            format!("capture/{other}/AllTraffic/2026/11/29/10/c.jsonl"),
            unlabelled,
        )],
    );
    let cfg = ws.read("mlcd.yml").replace(
        &format!("endpoint: {endpoint}"),
        &format!("endpoint: {other}"),
    );
    ws.write("mlcd.yml", &cfg);
    let (run, _) = monitor(&ws, &moto);
    run.assert_code(2);
    assert!(
        run.stderr.contains(&format!(
            "none of the 5 captured record(s) under s3://{bucket}/capture/{other}/ has an inference id (`eventMetadata.inferenceId`)"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("X-Amzn-SageMaker-Inference-Id"),
        "{}",
        run.stderr
    );
    // An endpoint that has captured nothing yet.
    let quiet = format!("churn-z{}", unique());
    let cfg = ws
        .read("mlcd.yml")
        .replace(&format!("endpoint: {other}"), &format!("endpoint: {quiet}"));
    ws.write("mlcd.yml", &cfg);
    let (run, _) = monitor(&ws, &moto);
    run.assert_code(2);
    assert!(
        run.stderr.contains(&format!(
            "`monitor.predictions-from: capture`: no data capture file (.jsonl) under `s3://{bucket}/capture/{quiet}/`"
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn predictions_from_the_endpoint_or_capture_elsewhere_are_refused_at_their_line() {
    let ws = Workspace::new();
    ws.write("data/recent.csv", "a,churn\n1,0\n");
    for (backend, extra, expected) in [
        (
            "vertex",
            "vertex: {project: acme-ml, region: us-central1}\n",
            "`monitor.predictions-from: endpoint` is supported with backends `local` and `sagemaker`; backend `vertex` is not supported yet",
        ),
        (
            "kubernetes",
            "",
            "`monitor.predictions-from: endpoint` is supported with backends `local` and `sagemaker`; backend `kubernetes` is not supported yet",
        ),
    ] {
        ws.write(
            "mlcd.yml",
            &format!(
                "model: churn\nbackend: {backend}\n{extra}monitor:\n  reference: data/recent.csv\n  current: data/recent.csv\n  labels: churn\n\n  predictions-from: endpoint\n"
            ),
        );
        let run = mlcd(ws.path(), &["monitor"], &CREDS);
        run.assert_code(2);
        assert!(run.stderr.contains(expected), "{}", run.stderr);
        let line = ws
            .read("mlcd.yml")
            .lines()
            .position(|l| l.contains("predictions-from"))
            .unwrap()
            + 1;
        assert!(
            run.stderr.contains(&format!("mlcd.yml:{line}")),
            "{}",
            run.stderr
        );
    }
    // Capture on SageMaker needs the endpoint's S3 capture prefix.
    ws.write(
        "mlcd.yml",
        "model: churn\nbackend: sagemaker\nsagemaker: {region: us-east-1, role-arn: \"arn:aws:iam::123456789012:role/serve\"}\nmonitor:\n  reference: data/recent.csv\n  current: data/recent.csv\n  labels: churn\n  predictions-from: capture\n",
    );
    let run = mlcd(ws.path(), &["monitor"], &CREDS);
    run.assert_code(2);
    assert!(
        run.stderr.contains("`monitor.predictions-from: capture` on SageMaker reads the endpoint's data capture files in S3, but `deploy.capture` is not set"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("mlcd.yml:8"), "{}", run.stderr);
}
