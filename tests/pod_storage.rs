//! `mlcd pod-storage`, what the mlcd image does inside a Kubernetes training pod
//! for `s3://` storage, through the binary against moto's S3 on the test bed:
//! `fetch` copies a channel prefix into a directory (whole path segments only),
//! `keep-model` waits for SIGTERM and uploads the model directory as
//! model.tar.gz, or uploads nothing when the training wrote its failure file.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mlcd::cloud::aws::{AwsClient, AwsCredentials};
use mlcd::cloud::s3::S3Client;

fn moto_env() -> BTreeMap<String, String> {
    let tb = testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    [
        ("AWS_ACCESS_KEY_ID", "AKIDMLCDTESTKEY0001"),
        ("AWS_SECRET_ACCESS_KEY", "mlcd-test-secret/0001"),
        ("AWS_ENDPOINT_URL", tb["MLCD_TESTBED_MOTO_URL"].as_str()),
        ("AWS_REGION", "us-east-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn s3(env: &BTreeMap<String, String>) -> S3Client {
    S3Client::new(
        AwsClient::new(AwsCredentials::from_env(env).unwrap(), "us-east-1").unwrap(),
        env,
    )
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn pairs(env: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn fetch_copies_a_channel_prefix_into_the_directory() {
    let env = moto_env();
    let bucket = format!("mlcd-channels-{}", unique());
    rt().block_on(async {
        let s3 = s3(&env);
        s3.create_bucket(&bucket).await.unwrap();
        for (key, body) in [
            ("data/train/a.csv", "x,y\n1,2\n"),
            ("data/train/sub/b.csv", "x,y\n3,4\n"),
            ("data/train2/not-this.csv", "no\n"),
        ] {
            s3.put_bytes(&bucket, key, body.as_bytes().to_vec(), "text/csv")
                .await
                .unwrap();
        }
    });
    let ws = Workspace::new();
    let to = ws.path().join("data/train");
    let from = format!("s3://{bucket}/data/train");
    let r = mlcd(
        ws.path(),
        &[
            "pod-storage",
            "fetch",
            "--from",
            &from,
            "--to",
            to.to_str().unwrap(),
        ],
        &pairs(&env),
    );
    r.assert_code(0);
    assert!(r.stderr.contains("2 files"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(to.join("a.csv")).unwrap(),
        "x,y\n1,2\n"
    );
    assert_eq!(
        std::fs::read_to_string(to.join("sub/b.csv")).unwrap(),
        "x,y\n3,4\n"
    );
    assert!(!to.join("not-this.csv").exists());
    assert!(!ws.path().join("data/train2").exists());

    // An empty prefix is an error naming it, not an empty channel.
    let empty = format!("s3://{bucket}/data/nothing");
    let r = mlcd(
        ws.path(),
        &[
            "pod-storage",
            "fetch",
            "--from",
            &empty,
            "--to",
            to.to_str().unwrap(),
        ],
        &pairs(&env),
    );
    r.assert_code(2);
    assert!(
        r.stderr.contains(&format!("no object under `{empty}`")),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("mlcd-test-secret"), "{}", r.stderr);
}

/// Starts `keep-model`, waits until it says it keeps the directory, sends it
/// SIGTERM as the kubelet does when the pod's main containers ended; its exit
/// code and stderr.
fn keep_model(env: &BTreeMap<String, String>, args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mlcd"));
    cmd.args(["pod-storage", "keep-model"])
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    while !seen.contains("until the pod ends") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never ready: {seen}"
        );
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "exited early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Still waiting: nothing is uploaded before the pod ends.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "it must wait for SIGTERM"
    );
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    stderr.read_to_string(&mut seen).unwrap();
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (code, seen)
}

#[test]
fn keep_model_uploads_the_model_directory_as_model_tar_gz_on_sigterm() {
    let env = moto_env();
    let bucket = format!("mlcd-models-{}", unique());
    rt().block_on(async { s3(&env).create_bucket(&bucket).await.unwrap() });
    let ws = Workspace::new();
    ws.write("model/model.json", "{\"w\": [1, 2]}");
    ws.write("model/extra/vocab.txt", "a\nb\n");
    let failure = ws.path().join("output/failure");
    let to = format!("s3://{bucket}/churn/job-1/model.tar.gz");
    let (code, err) = keep_model(
        &env,
        &[
            "--from",
            ws.path().join("model").to_str().unwrap(),
            "--to",
            &to,
            "--failure",
            failure.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("as {to}")), "{err}");
    let body = rt().block_on(async {
        s3(&env)
            .get_object(&bucket, "churn/job-1/model.tar.gz")
            .await
            .unwrap()
    });
    let mut files: Vec<(String, String)> =
        tar::Archive::new(flate2::read::GzDecoder::new(&body[..]))
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().display().to_string();
                let mut text = String::new();
                e.read_to_string(&mut text).unwrap();
                (name, text)
            })
            .collect();
    files.sort();
    assert_eq!(
        files,
        [
            ("extra/vocab.txt".to_string(), "a\nb\n".to_string()),
            ("model.json".to_string(), "{\"w\": [1, 2]}".to_string()),
        ]
    );

    // The training failed (it wrote /opt/ml/output/failure): nothing uploaded.
    ws.write("output/failure", "loss diverged");
    let to2 = format!("s3://{bucket}/churn/job-2/model.tar.gz");
    let (code, err) = keep_model(
        &env,
        &[
            "--from",
            ws.path().join("model").to_str().unwrap(),
            "--to",
            &to2,
            "--failure",
            failure.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no model uploaded"), "{err}");
    let listed =
        rt().block_on(async { s3(&env).list_objects(&bucket, "churn/job-2").await.unwrap() });
    assert!(listed.is_empty(), "{listed:?}");
}
