//! Kubernetes training with `s3://` channels and an `s3://` storage URI, end to
//! end through the binary: the fake API server runs the pods as REAL containers
//! on the test bed's Docker engine (`FakeKube::with_containers`), so mlcd's own
//! image (the project's Dockerfile around this build's binary) really copies
//! the channels from moto's S3 in an init container, the bundled example really
//! trains on them, and the native sidecar really uploads `model.tar.gz` to moto.
//! What is asserted is what a user sees: outputs, the log, the failure reason,
//! and the object in S3.

mod common;
use common::*;
#[path = "common/fake_kube.rs"]
mod fake_kube;
use fake_kube::{docker, example_image, FakeKube};

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use mlcd::cloud::aws::{AwsClient, AwsCredentials};
use mlcd::cloud::s3::S3Client;

const KEY_ID: &str = "AKIDMLCDKUBES3TEST01";
const SECRET: &str = "mlcd-kube-s3-secret/0001";

fn testbed() -> BTreeMap<String, String> {
    testbed_env(&[
        "DOCKER_HOST",
        "MLCD_TESTBED_MOTO_URL",
        "MLCD_TESTBED_BASE_IMAGE",
    ])
}

/// The bundled example's image and mlcd's own image (the Dockerfile's
/// `prebuilt` stage around this build's binary, stripped), built once.
fn images(tb: &BTreeMap<String, String>) -> (&'static str, &'static str) {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let (train, storage) = (example_image(tb), "mlcd-test/mlcd:dev");
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !*built {
        let ctx = tempfile::tempdir().unwrap();
        std::fs::copy(root().join("Dockerfile"), ctx.path().join("Dockerfile")).unwrap();
        let bin = ctx.path().join("mlcd");
        let stripped = Command::new("strip")
            .arg("-o")
            .arg(&bin)
            .arg(env!("CARGO_BIN_EXE_mlcd"))
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(env!("CARGO_BIN_EXE_mlcd"), &bin).unwrap();
        }
        let runtime = format!("RUNTIME_IMAGE={}", tb["MLCD_TESTBED_BASE_IMAGE"]);
        docker(
            tb,
            &[
                "build",
                "-q",
                "--target",
                "prebuilt",
                "--build-arg",
                &runtime,
                "--build-arg",
                "BINARY=mlcd",
                "-t",
                storage,
                &ctx.path().display().to_string(),
            ],
        );
        *built = true;
    }
    (train, storage)
}

fn s3(tb: &BTreeMap<String, String>) -> S3Client {
    let env = BTreeMap::from([
        ("AWS_ACCESS_KEY_ID".to_string(), KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), SECRET.to_string()),
        (
            "AWS_ENDPOINT_URL".to_string(),
            tb["MLCD_TESTBED_MOTO_URL"].clone(),
        ),
    ]);
    S3Client::new(
        AwsClient::new(AwsCredentials::from_env(&env).unwrap(), "us-east-1").unwrap(),
        &env,
    )
    .unwrap()
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A data bucket holding the example's two channels and an empty model bucket.
fn buckets(tb: &BTreeMap<String, String>) -> (String, String) {
    let n = unique();
    let (data, models) = (format!("kube-data-{n}"), format!("kube-models-{n}"));
    let s3 = s3(tb);
    block_on(async {
        s3.create_bucket(&data).await.unwrap();
        s3.create_bucket(&models).await.unwrap();
        for ch in ["train", "validation"] {
            let csv = std::fs::read(root().join(format!("fixtures/example/data/{ch}/churn.csv")))
                .unwrap();
            s3.put_bytes(&data, &format!("churn/{ch}/churn.csv"), csv, "text/csv")
                .await
                .unwrap();
        }
    });
    (data, models)
}

/// The namespace's Secret with the storage containers' S3 credentials, made
/// with the real kubectl.
fn credentials_secret(fake: &FakeKube, tb: &BTreeMap<String, String>) {
    let r = fake.kubectl(&[
        "create",
        "secret",
        "generic",
        "s3-creds",
        "-n",
        "ml",
        &format!("--from-literal=AWS_ACCESS_KEY_ID={KEY_ID}"),
        &format!("--from-literal=AWS_SECRET_ACCESS_KEY={SECRET}"),
        "--from-literal=AWS_REGION=us-east-1",
        &format!(
            "--from-literal=AWS_ENDPOINT_URL={}",
            tb["MLCD_TESTBED_MOTO_URL"]
        ),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

/// The test bed, both images, a fake cluster running real containers with the
/// credentials Secret, and the two buckets.
struct Bed {
    tb: BTreeMap<String, String>,
    train_image: &'static str,
    mlcd_image: &'static str,
    fake: FakeKube,
    data: String,
    models: String,
}

impl Bed {
    fn new() -> Self {
        let tb = testbed();
        let (train_image, mlcd_image) = images(&tb);
        let fake = FakeKube::with_containers(&tb);
        credentials_secret(&fake, &tb);
        let (data, models) = buckets(&tb);
        Bed {
            tb,
            train_image,
            mlcd_image,
            fake,
            data,
            models,
        }
    }

    /// A workspace whose mlcd.yml trains the example from the data bucket.
    fn workspace(&self, storage: &str, hyper: &str, kube: &str) -> Workspace {
        let ws = Workspace::new();
        ws.write(
            "mlcd.yml",
            &format!(
                "model: churn
backend: kubernetes
train:
  image: {}
  instance: cpu.small
  hyperparameters: {{{hyper}}}
  channels:
    train: s3://{data}/churn/train
    validation: s3://{data}/churn/validation
  timeout: 4m
  metrics:
    - name: train-loss
      regex: \"epoch=[0-9]+ loss=([0-9.]+)\"
kubernetes:
  namespace: ml
  storage-uri: {storage}
  mlcd-image: {}
  aws-secret: s3-creds
{kube}deploy:
  image: {}
  endpoint: churn
  instance: cpu.small
  strategy: all-at-once
  smoke:
    - request: sample.json
      expect-status: 200
",
                self.train_image,
                self.mlcd_image,
                self.train_image,
                data = self.data,
            ),
        );
        let sample =
            std::fs::read_to_string(root().join("fixtures/example/tests/sample.json")).unwrap();
        ws.write("sample.json", &sample);
        ws
    }

    /// The model bucket's prefix.
    fn model_storage(&self) -> String {
        format!("s3://{}/churn", self.models)
    }

    fn object(&self, bucket: &str, key: &str) -> Vec<u8> {
        block_on(s3(&self.tb).get_object(bucket, key))
            .unwrap_or_else(|e| panic!("s3://{bucket}/{key}: {e}"))
    }

    /// What the run showed, checked the way every test here ends.
    fn done(&self, r: &Run) {
        for text in [&r.stdout, &r.stderr] {
            assert!(!text.contains(SECRET), "the S3 secret key was printed");
            assert!(!text.contains("kube-secret-token-0001"));
        }
        self.fake.assert_no_violations();
    }
}

fn train(ws: &Workspace, fake: &FakeKube) -> (Run, BTreeMap<String, String>) {
    run_mode(ws, fake, "train")
}

/// Runs `mode` as the action would, with the fake's kubeconfig.
fn run_mode(ws: &Workspace, fake: &FakeKube, mode: &str) -> (Run, BTreeMap<String, String>) {
    let _ = std::fs::remove_file(ws.path().join("out/output"));
    let mut env = actions_env(ws);
    let kubeconfig = fake.kubeconfig().display().to_string();
    let run_id = unique().to_string();
    for (k, v) in [
        ("INPUT_MODE", mode),
        ("GITHUB_RUN_ID", run_id.as_str()),
        ("KUBECONFIG", kubeconfig.as_str()),
        ("MLCD_POLL_INTERVAL_MS", "300"),
    ] {
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v.to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = mlcd(ws.path(), &[], &env);
    let out = parse_outputs(&ws.read("out/output"));
    (r, out)
}

/// The file names in a gzip'd tar.
fn tar_names(bytes: &[u8]) -> Vec<String> {
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut names: Vec<String> = tar::Archive::new(gz)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

fn model_json(bytes: &[u8]) -> serde_json::Value {
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut ar = tar::Archive::new(gz);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap() == Path::new("model.json") {
            let mut text = String::new();
            e.read_to_string(&mut text).unwrap();
            return serde_json::from_str(&text).unwrap();
        }
    }
    panic!("no model.json in the archive");
}

/// What the run printed, both streams (errors are workflow commands on stdout).
fn printed(r: &Run) -> String {
    format!("{}\n{}", r.stdout, r.stderr)
}

#[test]
fn the_example_trains_from_s3_on_a_pytorchjob_and_kserve_serves_its_model_tar_gz() {
    let bed = Bed::new();
    let ws = bed.workspace(
        &bed.model_storage(),
        "epochs: 30, lr: 0.1",
        "  trainer: pytorchjob\n",
    );
    let (r, out) = train(&ws, &bed.fake);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{out:?}\n{}", printed(&r));
    let job = out["job-id"].clone();
    let key = format!("churn/{job}/model.tar.gz");
    assert_eq!(
        out["artifact"],
        format!("s3://{}/{key}", bed.models),
        "{out:?}"
    );
    // The example trained on both channels the init container copied from S3.
    assert!(r.stderr.contains("epoch=30 loss="), "{}", r.stderr);
    let metrics: serde_json::Value = serde_json::from_str(&out["metrics"]).unwrap();
    assert!(metrics["train-loss"].as_f64().unwrap() < 0.7, "{metrics}");
    // The sidecar uploaded what the example wrote to /opt/ml/model.
    let tgz = bed.object(&bed.models, &key);
    assert!(tar_names(&tgz).contains(&"model.json".to_string()));
    assert_eq!(model_json(&tgz)["hyperparameters"]["epochs"], 30);
    // What the pod says: the sidecar ended with what it did.
    let pods = bed.fake.get("/api/v1/namespaces/ml/pods");
    let master = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["metadata"]["labels"]["training.kubeflow.org/job-name"] == job.as_str()
                && p["metadata"]["labels"]["training.kubeflow.org/replica-type"] == "master"
        })
        .expect("the master pod");
    let keep = master["status"]["initContainerStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "mlcd-keep-model")
        .expect("the sidecar's status");
    let message = keep["state"]["terminated"]["message"].as_str().unwrap();
    assert!(
        message.contains("uploaded") && message.contains(&key),
        "{keep}"
    );
    bed.done(&r);

    // Deployed with KServe from that model.tar.gz: the fake's storage
    // initializer fetches and unpacks it into /opt/ml/model of the training
    // image, which carries no model of its own, and the smoke test passes.
    let s3_settings = serde_json::json!({"name": "churn", "s3": {
        "endpoint_url": bed.tb["MLCD_TESTBED_MOTO_URL"],
        "access_key_id": KEY_ID, "secret_access_key": SECRET, "region": "us-east-1"}});
    bed.fake
        .call("POST", "/_fake/kserve", Some(&s3_settings.to_string()));
    let (r, out) = run_mode(&ws, &bed.fake, "deploy");
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{out:?}\n{}", printed(&r));
    let isvc = bed
        .fake
        .get("/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/churn");
    assert_eq!(
        isvc["spec"]["predictor"]["storageUris"][0]["uri"],
        format!("s3://{}/{key}", bed.models),
        "{isvc}"
    );
    assert_eq!(
        isvc["spec"]["predictor"]["storageUris"][0]["mountPath"],
        "/opt/ml/model"
    );
    bed.done(&r);
}

#[test]
fn a_failed_training_says_why_and_keeps_no_model() {
    let bed = Bed::new();
    let ws = bed.workspace(
        &bed.model_storage(),
        "epochs: 3, fail: true",
        "  trainer: pytorchjob\n",
    );
    let (r, out) = train(&ws, &bed.fake);
    r.assert_code(1);
    assert_eq!(out["status"], "failed", "{out:?}");
    // The example's own reason, from its failure file (the termination message).
    let text = printed(&r);
    assert!(text.contains("fail requested by hyperparameter"), "{text}");
    let left = block_on(s3(&bed.tb).list_objects(&bed.models, "churn/")).unwrap();
    assert!(left.is_empty(), "a failed training left {left:?}");
    bed.done(&r);
}

#[test]
fn a_model_the_sidecar_cannot_upload_fails_the_step_naming_the_container() {
    let bed = Bed::new();
    let missing = format!("kube-missing-{}", unique());
    let ws = bed.workspace(
        &format!("s3://{missing}/churn"),
        "epochs: 3",
        "  trainer: pytorchjob\n",
    );
    let (r, out) = train(&ws, &bed.fake);
    r.assert_code(1);
    assert_eq!(out["status"], "failed", "{out:?}");
    let text = printed(&r);
    assert!(
        text.contains("model was not kept") && text.contains("mlcd-keep-model"),
        "{text}"
    );
    assert!(text.contains(&missing), "{text}");
    assert!(
        out.get("model-version").is_none_or(|v| v.is_empty()),
        "{out:?}"
    );
    bed.done(&r);
}

#[test]
fn a_trainjob_with_s3_storage_needs_mlcds_runtime_and_trains_on_it() {
    let bed = Bed::new();
    // Kubeflow's own torch-distributed has no storage containers: refused
    // before anything is created, saying how to install mlcd's runtime.
    let ws = bed.workspace(&bed.model_storage(), "epochs: 20", "");
    let (r, _) = train(&ws, &bed.fake);
    r.assert_code(2);
    let text = printed(&r);
    assert!(
        text.contains("kubernetes.runtime") && text.contains("mlcd render runtime"),
        "{text}"
    );
    let jobs = bed
        .fake
        .get("/apis/trainer.kubeflow.org/v1alpha1/namespaces/ml/trainjobs");
    assert_eq!(jobs["items"].as_array().unwrap().len(), 0, "{jobs}");
    // The runtime mlcd prints, applied by the real kubectl.
    let ws = bed.workspace(
        &bed.model_storage(),
        "epochs: 20",
        "  runtime: mlcd-torch-distributed\n",
    );
    let rendered = mlcd(
        ws.path(),
        &["render", "runtime", "--config", "mlcd.yml"],
        &[],
    );
    rendered.assert_code(0);
    let file = ws.write("runtime.yaml", &rendered.stdout);
    let r = bed
        .fake
        .kubectl(&["apply", "--server-side", "-f", &file.display().to_string()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (r, out) = train(&ws, &bed.fake);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{out:?}\n{}", printed(&r));
    let key = format!("churn/{}/model.tar.gz", out["job-id"]);
    assert_eq!(out["artifact"], format!("s3://{}/{key}", bed.models));
    let tgz = bed.object(&bed.models, &key);
    assert_eq!(model_json(&tgz)["hyperparameters"]["epochs"], 20);
    bed.done(&r);
}
