//! `mlcd train` with `backend: sagemaker`, the binary end to end: the example's
//! config switched to SageMaker runs against moto (job and model package), and
//! against the scripted fake SageMaker (every request validated against
//! botocore's model) for what moto cannot do — a failing job's reason, a
//! timeout that stops the job, SIGTERM that stops it, a champion gate on the
//! MLflow registry.
//!
//! Needs `scripts/testbed up moto mlflow` (scripts/test does it).

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const ROLE: &str = "arn:aws:iam::123456789012:role/train";

/// The example's config, switched to SageMaker with S3 channels and output.
fn sagemaker_config(registry: &str) -> String {
    format!(
        "model: churn
backend: sagemaker
train:
  image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:0123456
  instance: cpu.small
  hyperparameters: {{epochs: 50, lr: 0.1}}
  channels:
    train: s3://mlcd-test/churn/train/
    validation: s3://mlcd-test/churn/validation/
  output: s3://mlcd-test/churn/output/
  timeout: 10m
  metrics:
    - name: train-loss
      regex: \"loss=([0-9.]+)\"
{registry}sagemaker:
  region: us-east-1
  role-arn: {ROLE}
"
    )
}

fn run_train(
    ws: &Workspace,
    endpoint: &str,
    extra: &[(&str, &str)],
) -> (Run, std::collections::BTreeMap<String, String>) {
    let _ = std::fs::remove_file(ws.path().join("out/output"));
    let mut env = actions_env(ws);
    env.retain(|(k, _)| k != "GITHUB_RUN_ID");
    env.push(("GITHUB_RUN_ID".into(), unique().to_string()));
    for (k, v) in [
        ("INPUT_MODE", "train"),
        ("AWS_ACCESS_KEY_ID", "AKIDMLCDTESTKEY0001"),
        ("AWS_SECRET_ACCESS_KEY", "mlcd-test-secret/0001"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("MLCD_POLL_INTERVAL_MS", "100"),
        ("MLCD_RETRY_INITIAL_MS", "50"),
    ]
    .iter()
    .chain(extra)
    {
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v.to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = mlcd(ws.path(), &[], &env);
    let out = parse_outputs(&ws.read("out/output"));
    (r, out)
}

#[test]
fn the_example_config_on_sagemaker_trains_and_registers_a_model_package_on_moto() {
    let tb = testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        &sagemaker_config("registry:\n  type: sagemaker\n"),
    );
    let moto = &tb["MLCD_TESTBED_MOTO_URL"];
    // A model (package group) of this test's own: moto outlives one test run.
    let model = format!("churn-{}", unique());
    let (r, out) = run_train(&ws, moto, &[("INPUT_MODEL-ID", model.as_str())]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded");
    let job = &out["job-id"];
    assert!(job.starts_with(&format!("{model}-")), "{out:?}");
    assert!(out["job-url"].contains(&format!("#/jobs/{job}")), "{out:?}");
    assert!(out["artifact"].starts_with("s3://"), "{out:?}");
    assert_eq!(out["model-version"], "1");
    // moto holds the package, with the lineage.
    let summary = ws.read("out/summary");
    assert!(summary.contains("Completed"), "{summary}");
    assert!(summary.contains("sagemaker registry"), "{summary}");
}

#[test]
fn a_failed_sagemaker_job_fails_the_step_with_its_failure_reason() {
    let fake = FakeSagemaker::start();
    let ws = Workspace::new();
    ws.write("mlcd.yml", &sagemaker_config(""));
    let (r, out) = run_train(
        &ws,
        &fake.url,
        &[("INPUT_PARAM-LIST", "fail=true,sleep=0.3")],
    );
    r.assert_code(1);
    assert_eq!(out["status"], "failed");
    assert!(
        r.stdout
            .contains("AlgorithmError: fail requested by hyperparameter"),
        "{}",
        r.stdout
    );
    // Status transitions were shown.
    assert!(r.stderr.contains(": InProgress"), "{}", r.stderr);
    assert!(r.stderr.contains(": Failed"), "{}", r.stderr);
    assert!(
        !ws.path().join(".mlcd/registry/churn").exists(),
        "nothing registered"
    );
    fake.assert_no_violations();
}

#[test]
fn a_timeout_stops_the_sagemaker_job_and_reports_timed_out() {
    let fake = FakeSagemaker::start();
    let ws = Workspace::new();
    ws.write("mlcd.yml", &sagemaker_config(""));
    let (r, out) = run_train(
        &ws,
        &fake.url,
        &[("INPUT_PARAM-LIST", "sleep=600"), ("INPUT_TIMEOUT", "2s")],
    );
    r.assert_code(3);
    assert_eq!(out["status"], "timed_out");
    let stops = fake.calls("StopTrainingJob");
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(stops[0]["body"]["TrainingJobName"], out["job-id"].as_str());
    assert!(
        r.stdout.contains("it was stopped (Stopped)"),
        "{}",
        r.stdout
    );
    // Waiting was bounded: describes at the (test) poll interval, no storm.
    let describes = fake.calls("DescribeTrainingJob").len();
    assert!((3..200).contains(&describes), "{describes} describes");
    fake.assert_no_violations();
}

#[test]
fn on_timeout_leave_leaves_the_job_running_and_says_how_to_attach() {
    let fake = FakeSagemaker::start();
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        &sagemaker_config("").replace("  timeout: 10m\n", "  timeout: 1s\n  on-timeout: leave\n"),
    );
    let (r, out) = run_train(&ws, &fake.url, &[("INPUT_PARAM-LIST", "sleep=600")]);
    r.assert_code(3);
    assert!(fake.calls("StopTrainingJob").is_empty());
    assert!(
        r.stdout.contains(&format!("attach: {}", out["job-id"])),
        "{}",
        r.stdout
    );
    // A later step attaches by id and sees it still running (bounded again).
    let (r2, out2) = run_train(
        &ws,
        &fake.url,
        &[
            ("INPUT_ATTACH", out["job-id"].as_str()),
            ("INPUT_TIMEOUT", "1s"),
        ],
    );
    r2.assert_code(3);
    assert_eq!(out2["job-id"], out["job-id"]);
    assert_eq!(
        fake.calls("CreateTrainingJob").len(),
        1,
        "attach submits nothing"
    );
    fake.assert_no_violations();
}

#[test]
fn sigterm_stops_the_sagemaker_job_and_reports_cancelled() {
    let fake = FakeSagemaker::start();
    let ws = Workspace::new();
    ws.write("mlcd.yml", &sagemaker_config(""));
    let mut env = actions_env(&ws);
    for (k, v) in [
        ("INPUT_MODE", "train"),
        ("INPUT_PARAM-LIST", "sleep=600"),
        ("AWS_ACCESS_KEY_ID", "AKIDMLCDTESTKEY0001"),
        ("AWS_SECRET_ACCESS_KEY", "mlcd-test-secret/0001"),
        ("AWS_ENDPOINT_URL", fake.url.as_str()),
        ("MLCD_POLL_INTERVAL_MS", "100"),
    ] {
        env.push((k.into(), v.into()));
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mlcd"));
    cmd.current_dir(ws.path())
        .env_clear()
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen.push_str(&l);
        seen.push('\n');
        if l.contains(": InProgress") {
            break;
        }
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(4), "{seen}{}", rest.join("\n"));
    let stops = fake.calls("StopTrainingJob");
    assert_eq!(stops.len(), 1, "the job was asked to stop: {stops:?}");
    fake.assert_no_violations();
}

#[test]
fn a_re_run_of_the_same_attempt_attaches_instead_of_creating_a_second_job() {
    let fake = FakeSagemaker::start();
    let ws = Workspace::new();
    ws.write("mlcd.yml", &sagemaker_config(""));
    let run_id = unique().to_string();
    let pinned = [
        ("GITHUB_RUN_ID", run_id.as_str()),
        ("INPUT_PARAM-LIST", "sleep=0.2"),
    ];
    let (r1, out1) = run_train(&ws, &fake.url, &pinned);
    r1.assert_code(0);
    let (r2, out2) = run_train(&ws, &fake.url, &pinned);
    r2.assert_code(0);
    assert_eq!(out1["job-id"], out2["job-id"]);
    assert!(r2.stderr.contains("exists already"), "{}", r2.stderr);
    assert_eq!(fake.calls("CreateTrainingJob").len(), 1, "one job, not two");
    assert_eq!(
        out2["model-version"], out1["model-version"],
        "registered once"
    );
    assert_eq!(
        std::fs::read_dir(ws.path().join(".mlcd/registry/churn/versions"))
            .unwrap()
            .count(),
        1
    );
    fake.assert_no_violations();
}

#[test]
fn a_challenger_worse_than_the_mlflow_champion_is_not_registered() {
    let tb = testbed_env(&["MLCD_TESTBED_MLFLOW_URL"]);
    let fake = FakeSagemaker::start();
    let ws = Workspace::new();
    let model = format!("churn-champ-{}", unique());
    // The fake reports train-loss from its log lines; lower is better.
    let registry = format!(
        "registry:\n  type: mlflow\n  tracking-uri: {}\n  model-name: {model}\n  alias: production\n",
        tb["MLCD_TESTBED_MLFLOW_URL"]
    );
    ws.write("mlcd.yml", &sagemaker_config(&registry));
    let (r1, out1) = run_train(&ws, &fake.url, &[("INPUT_PARAM-LIST", "sleep=0.2")]);
    r1.assert_code(0);
    assert_eq!(out1["model-version"], "1");
    let champion_metric: serde_json::Value = serde_json::from_str(&out1["metrics"]).unwrap();
    let loss = champion_metric["train-loss"]
        .as_f64()
        .expect("train-loss from the log");

    // The champion gate: the challenger must have train-loss <= the champion's.
    let cfg = sagemaker_config(&registry).replace(
        "  timeout: 10m\n",
        "  timeout: 10m\n  champion: {metric: train-loss, better: lower}\n  gates:\n    train-loss: \"< 1000\"\n",
    );
    ws.write("mlcd.yml", &cfg);
    // A challenger with the same loss passes (at least as good) and takes the alias.
    let (r2, out2) = run_train(&ws, &fake.url, &[("INPUT_PARAM-LIST", "sleep=0.2")]);
    r2.assert_code(0);
    assert_eq!(out2["model-version"], "2");
    let summary = ws.read("out/summary");
    assert!(summary.contains("champion v1"), "{summary}");
    // The fake's loss lines depend on the learning rate: a worse one fails the champion gate.
    let (r3, out3) = run_train(&ws, &fake.url, &[("INPUT_PARAM-LIST", "sleep=0.2,lr=0.01")]);
    r3.assert_code(1);
    let m3: serde_json::Value = serde_json::from_str(&out3["metrics"]).unwrap();
    assert!(m3["train-loss"].as_f64().unwrap() > loss, "{m3} vs {loss}");
    let ann = r3
        .stdout
        .lines()
        .find(|l| l.contains("gate failed"))
        .unwrap_or_else(|| panic!("{}", r3.stdout));
    assert!(
        ann.contains("train-loss") && ann.contains("champion v2"),
        "{ann}"
    );
    assert!(!out3.contains_key("model-version"), "{out3:?}");
    fake.assert_no_violations();
}

/// Two workspaces (another checkout, another commit) with the same model id and
/// run id: the second finds a job of its name and must not take it for its own.
/// `calls` counts the CreateTrainingJob requests the peer received.
fn another_runs_job_is_refused(endpoint: &str, calls: impl Fn() -> usize) {
    let run_id = unique().to_string();
    let first = Workspace::new();
    first.write("mlcd.yml", &sagemaker_config(""));
    let (r1, out1) = run_train(
        &first,
        endpoint,
        &[
            ("GITHUB_RUN_ID", run_id.as_str()),
            ("INPUT_PARAM-LIST", "sleep=30"),
            ("INPUT_WAIT", "false"),
        ],
    );
    r1.assert_code(0);
    let job = out1["job-id"].clone();
    let created = calls();

    let second = Workspace::new();
    second.write("mlcd.yml", &sagemaker_config(""));
    let other_sha = "fedcba9876543210fedcba9876543210fedcba98";
    let (r2, out2) = run_train(
        &second,
        endpoint,
        &[
            ("GITHUB_RUN_ID", run_id.as_str()),
            ("GITHUB_SHA", other_sha),
            ("INPUT_PARAM-LIST", "sleep=30"),
        ],
    );
    r2.assert_code(1);
    let text = format!("{}{}", r2.stdout, r2.stderr);
    assert!(
        text.contains(&format!("training job `{job}` belongs to another run")),
        "{text}"
    );
    assert!(
        text.contains(&format!("commit `{SHA}` (this run: `{other_sha}`)")),
        "{text}"
    );
    assert!(
        text.contains("different model id"),
        "the fix is named: {text}"
    );
    assert_eq!(calls(), created, "no second job was created");
    assert_eq!(out2.get("model-version"), None, "nothing registered");
    assert_eq!(out2.get("metrics"), None, "none of its results reported");
    assert!(!second.path().join(".mlcd/registry/churn").exists());

    // `attach` with that job's id from the other commit is refused too.
    let (r3, _) = run_train(
        &second,
        endpoint,
        &[("GITHUB_SHA", other_sha), ("INPUT_ATTACH", job.as_str())],
    );
    r3.assert_code(1);
    assert!(
        r3.stdout.contains("belongs to another run"),
        "{}",
        r3.stdout
    );

    // The run that started it attaches (another step of the same run and commit).
    let (r4, out4) = run_train(
        &first,
        endpoint,
        &[
            ("GITHUB_RUN_ID", run_id.as_str()),
            ("INPUT_ATTACH", job.as_str()),
            ("INPUT_WAIT", "false"),
        ],
    );
    r4.assert_code(0);
    assert_eq!(out4["job-id"], job);
}

#[test]
fn a_job_of_another_run_with_the_same_name_is_never_taken_for_ours() {
    let fake = FakeSagemaker::start();
    another_runs_job_is_refused(&fake.url, || fake.calls("CreateTrainingJob").len());
    fake.assert_no_violations();
}

#[test]
fn a_job_of_another_run_with_the_same_name_is_never_taken_for_ours_on_moto() {
    let tb = testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    // moto keeps no request log to count creates; what is checked here is that
    // the identity is read back from moto's own tags (ListTags) and compared.
    another_runs_job_is_refused(&tb["MLCD_TESTBED_MOTO_URL"], || 0);
}

/// While a job runs, mlcd makes at most 12 SageMaker + CloudWatch Logs calls a
/// minute. With the poll interval at 100 ms instead of 10 s, a minute of mlcd's
/// waiting is 600 ms: every window of 600 ms while the scripted job runs (12 s:
/// Starting, Downloading, Training, a third each) must hold at most 12 calls.
/// A slow machine can only spread the calls out, never add any.
#[test]
fn a_running_sagemaker_job_costs_at_most_12_api_calls_a_minute() {
    let fake = FakeSagemaker::start();
    let ws = Workspace::new();
    ws.write("mlcd.yml", &sagemaker_config(""));
    let (r, out) = run_train(&ws, &fake.url, &[("INPUT_PARAM-LIST", "sleep=12")]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded");
    // The log still arrives in full, the last lines once the job has ended.
    for line in [
        "starting with hyperparameters",
        "epoch=3 loss=",
        "Training complete, model saved to /opt/ml/model",
    ] {
        assert!(r.stderr.contains(line), "{line}: {}", r.stderr);
    }
    fake.assert_no_violations();

    let requests = fake.requests();
    let created = requests
        .iter()
        .find(|q| q["operation"] == "CreateTrainingJob")
        .and_then(|q| q["time"].as_f64())
        .expect("the job was created");
    let running: Vec<f64> = requests
        .iter()
        .filter_map(|q| q["time"].as_f64())
        .filter(|t| *t > created && *t < created + 12.0)
        .collect();
    let minute = 0.6;
    let busiest = running
        .iter()
        .map(|start| {
            running
                .iter()
                .filter(|t| **t >= *start && **t < start + minute)
                .count()
        })
        .max()
        .unwrap_or(0);
    let per_minute = running.len() as f64 / (12.0 / minute);
    let count = |op: &str| requests.iter().filter(|q| q["operation"] == op).count();
    let seen = format!(
        "{} calls while the job ran ({per_minute:.1} a minute on average, {busiest} in the busiest minute): \
         {} DescribeTrainingJob, {} DescribeLogStreams, {} GetLogEvents",
        running.len(),
        count("DescribeTrainingJob"),
        count("DescribeLogStreams"),
        count("GetLogEvents")
    );
    eprintln!("{seen}");
    assert!(busiest <= 12, "{seen}");
    assert!(per_minute <= 12.0, "{seen}");
    // The streams are listed when the status changes, not on every poll.
    assert!(
        count("DescribeLogStreams") * 2 < count("DescribeTrainingJob"),
        "{seen}"
    );
}

/// An S3 client for moto (region eu-west-1).
fn s3_on_moto(moto: &str) -> mlcd::cloud::s3::S3Client {
    use mlcd::cloud::aws::{AwsClient, AwsCredentials};
    let env: std::collections::BTreeMap<String, String> =
        [("AWS_ENDPOINT_URL".to_string(), moto.to_string())].into();
    let creds = AwsCredentials::new("AKIDMLCDTESTKEY0001", "mlcd-test-secret/0001", None);
    mlcd::cloud::s3::S3Client::new(AwsClient::new(creds, "eu-west-1").unwrap(), &env).unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// What moto's S3 holds of the channel directory `dir` of `model`, uploaded to
/// `bucket`: the manifest's and every file's Last-Modified (None when missing).
fn channel_objects(
    moto: &str,
    bucket: &str,
    model: &str,
    channel: &str,
    dir: &std::path::Path,
) -> (String, Vec<(String, Option<String>)>) {
    use mlcd::train::upload::{channel_keys, hash_dir};
    let s3 = s3_on_moto(moto);
    let manifest = hash_dir(dir).unwrap();
    let keys = channel_keys(model, channel, &manifest.digest);
    let mut wanted = vec![keys.marker.clone()];
    wanted.extend(
        manifest
            .files
            .iter()
            .map(|f| format!("{}{}", keys.prefix, f.rel)),
    );
    let found = wanted
        .into_iter()
        .map(|key| {
            let info = block_on(s3.head_object(bucket, &key)).unwrap();
            (key, info.and_then(|i| i.last_modified))
        })
        .collect();
    (format!("s3://{bucket}/{}", keys.prefix), found)
}

/// moto's DescribeTrainingJob answer for `job` (region eu-west-1).
fn describe_on_moto(moto: &str, job: &str) -> serde_json::Value {
    use mlcd::cloud::aws::{AwsClient, AwsCredentials};
    let creds = AwsCredentials::new("AKIDMLCDTESTKEY0001", "mlcd-test-secret/0001", None);
    let client = AwsClient::new(creds, "eu-west-1").unwrap();
    block_on(client.json_call(
        "sagemaker",
        moto,
        "SageMaker.DescribeTrainingJob",
        &serde_json::json!({ "TrainingJobName": job }),
    ))
    .unwrap()
}

#[test]
fn the_example_trains_on_sagemaker_with_its_local_channels_uploaded_once_to_the_default_bucket_on_moto(
) {
    let tb = testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    let moto = &tb["MLCD_TESTBED_MOTO_URL"];
    // The bundled example as it is (`backend: local`, local channel directories,
    // no output location), switched to SageMaker by the `backend` input. Only its
    // gate goes: moto's jobs report no metrics.
    let ws = Workspace::with_example();
    let config = ws.read("example/mlcd.yml");
    assert!(config.contains("backend: local") && config.contains("    train: data/train"));
    assert!(
        !config.contains("\n  output:") && !config.contains("output-path"),
        "the example sets no output location"
    );
    ws.write(
        "example/mlcd.yml",
        &config.replace("  gates:\n    accuracy: \">= 0.80\"", ""),
    );
    // Channel paths are per model: a model of this test's own (moto outlives a run).
    let model = format!("churn-s3-{}", unique());
    // Moto's account; a region outside us-east-1, so the bucket gets a LocationConstraint.
    let bucket = "sagemaker-eu-west-1-123456789012";
    let inputs = [
        ("INPUT_CONFIG", "example/mlcd.yml"),
        ("INPUT_BACKEND", "sagemaker"),
        ("INPUT_MODEL-ID", model.as_str()),
        (
            "INPUT_IMAGE",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/churn:0123456",
        ),
        ("INPUT_IAM-ROLE-ARN", ROLE),
        ("AWS_REGION", "eu-west-1"),
    ];
    let (r, out) = run_train(&ws, moto, &inputs);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{out:?}");
    let train_dir = ws.path().join("example/data/train");
    for ch in ["train", "validation"] {
        assert!(
            r.stderr
                .contains(&format!("channel `{ch}`: uploading 1 file (")),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr
                .contains(&format!("channel `{ch}`: uploaded 1 file (")),
            "{}",
            r.stderr
        );
    }
    assert!(
        r.stderr.contains(&format!("output: s3://{bucket}/ ")),
        "{}",
        r.stderr
    );
    assert!(
        out["artifact"].starts_with(&format!("s3://{bucket}/{}/", out["job-id"])),
        "{out:?}"
    );
    let (uri, first) = channel_objects(moto, bucket, &model, "train", &train_dir);
    assert!(r.stderr.contains(&uri), "{}", r.stderr);
    // The job reads the channel from that prefix and writes to the bucket's root.
    let job = describe_on_moto(moto, &out["job-id"]);
    let channels = job["InputDataConfig"].as_array().expect("channels");
    assert!(
        channels.iter().any(|c| c["ChannelName"] == "train"
            && c["DataSource"]["S3DataSource"]["S3Uri"] == uri.as_str()),
        "{channels:?}"
    );
    assert_eq!(
        job["OutputDataConfig"]["S3OutputPath"],
        format!("s3://{bucket}/").as_str()
    );
    assert!(
        first.iter().all(|(_, modified)| modified.is_some()),
        "every file and the manifest are in moto's S3: {first:?}"
    );

    // A second run (another job: another run id) finds the manifests and
    // uploads nothing: the objects keep their Last-Modified.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (r2, out2) = run_train(&ws, moto, &inputs);
    r2.assert_code(0);
    assert_ne!(out2["job-id"], out["job-id"]);
    for ch in ["train", "validation"] {
        assert!(
            r2.stderr.contains(&format!("channel `{ch}`: 1 file (")),
            "{}",
            r2.stderr
        );
    }
    assert_eq!(
        r2.stderr.matches("already in S3 at").count(),
        2,
        "{}",
        r2.stderr
    );
    assert!(!r2.stderr.contains("uploading"), "{}", r2.stderr);
    assert!(
        !r2.stderr.contains("created the S3 bucket"),
        "{}",
        r2.stderr
    );
    let (_, second) = channel_objects(moto, bucket, &model, "train", &train_dir);
    assert_eq!(first, second, "nothing was uploaded again");

    // Changed data is a new digest: uploaded under a new prefix.
    std::fs::write(train_dir.join("more.csv"), "tenure,churn\n1,0\n").unwrap();
    let (r3, _) = run_train(&ws, moto, &inputs);
    r3.assert_code(0);
    assert!(
        r3.stderr.contains("channel `train`: uploaded 2 files ("),
        "{}",
        r3.stderr
    );
    assert!(
        r3.stderr.contains("channel `validation`: 1 file ("),
        "{}",
        r3.stderr
    );

    // An interrupted upload (a partial file under the prefix, no manifest) is
    // done again in full.
    let model2 = format!("churn-s3-{}", unique());
    let validation = ws.path().join("example/data/validation");
    let manifest = mlcd::train::upload::hash_dir(&validation).unwrap();
    let keys = mlcd::train::upload::channel_keys(&model2, "validation", &manifest.digest);
    let s3 = s3_on_moto(moto);
    let partial = format!("{}churn.csv", keys.prefix);
    block_on(s3.put_bytes(bucket, &partial, b"tenure,ch".to_vec(), "text/csv")).unwrap();
    let inputs2: Vec<(&str, &str)> = inputs
        .iter()
        .map(|(k, v)| {
            if *k == "INPUT_MODEL-ID" {
                (*k, model2.as_str())
            } else {
                (*k, *v)
            }
        })
        .collect();
    let (r4, _) = run_train(&ws, moto, &inputs2);
    r4.assert_code(0);
    assert!(
        r4.stderr
            .contains("channel `validation`: uploaded 1 file ("),
        "{}",
        r4.stderr
    );
    let whole = block_on(s3.head_object(bucket, &partial)).unwrap().unwrap();
    assert_eq!(whole.size, manifest.bytes, "the partial file was replaced");
    assert!(block_on(s3.head_object(bucket, &keys.marker))
        .unwrap()
        .is_some());
}
