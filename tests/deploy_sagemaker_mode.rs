//! `mlcd deploy` with `backend: sagemaker`, the binary end to end as a container
//! action runs it: against the scripted fake SageMaker (every request checked
//! against botocore's sagemaker and sagemaker-runtime models) a first image
//! creates the endpoint, a second one goes out as a canary 10 → 50 → 100 and the
//! old version is retired; a candidate whose smoke tests fail is rolled back; an
//! endpoint another deployment is updating is waited for, then refused; the
//! `rollback` input puts the previous version back; a canary whose variant's
//! CloudWatch metrics (moto's CloudWatch) show 40% 5xx is rolled back by the
//! error-rate guard. Against moto, a first
//! deploy of a new endpoint (moto answers UpdateEndpoint with HTTP 500, so only
//! that).
//!
//! Needs `scripts/testbed up moto` for the moto test (scripts/test does it).

mod common;
use common::*;

use std::collections::BTreeMap;
use std::process::Command;

const REPO: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn";

fn image(tag: &str) -> String {
    format!("{REPO}:{tag}")
}

fn config(endpoint: &str) -> String {
    format!(
        "model: churn
backend: sagemaker
deploy:
  endpoint: {endpoint}
  instance: cpu.small
  strategy: canary
  steps: [10, 50, 100]
  interval: 1s
  ready-timeout: 30s
  smoke:
    - request: sample.json
      expect-status: 200
sagemaker:
  region: us-east-1
  role-arn: arn:aws:iam::123456789012:role/serve
"
    )
}

/// A workspace deploying to its own endpoint on `aws` (the fake or moto), with
/// the fake GitHub taking the deployments.
struct Bed {
    ws: Workspace,
    gh: FakeGitHub,
    aws: String,
    endpoint: String,
}

impl Bed {
    fn new(aws: &str) -> Bed {
        let ws = Workspace::new();
        let endpoint = format!("churn-{}", unique());
        ws.write("mlcd.yml", &config(&endpoint));
        ws.write("sample.json", "{\"instances\": [[0.1, 0.2, 0.3]]}\n");
        Bed {
            ws,
            gh: FakeGitHub::start(),
            aws: aws.to_string(),
            endpoint,
        }
    }

    /// Deploys `tag` (or whatever `extra` says) as the action would.
    fn deploy(&self, tag: &str, extra: &[(&str, &str)]) -> (Run, BTreeMap<String, String>) {
        let _ = std::fs::remove_file(self.ws.path().join("out/output"));
        let _ = std::fs::remove_file(self.ws.path().join("out/summary"));
        let mut env = actions_env(&self.ws);
        env.retain(|(k, _)| k != "GITHUB_RUN_ID");
        let image = image(tag);
        for (k, v) in [
            ("GITHUB_RUN_ID", unique().to_string().as_str()),
            ("GITHUB_API_URL", self.gh.url.as_str()),
            ("INPUT_GITHUB-TOKEN", "ghs_faketoken0123456789"),
            ("INPUT_MODE", "deploy"),
            ("INPUT_IMAGE", image.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIDMLCDTESTKEY0001"),
            ("AWS_SECRET_ACCESS_KEY", "mlcd-test-secret/0001"),
            ("AWS_ENDPOINT_URL", self.aws.as_str()),
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
        let r = mlcd(self.ws.path(), &[], &env);
        let out = parse_outputs(&self.ws.read("out/output"));
        (r, out)
    }

    fn url(&self) -> String {
        format!("{}/endpoints/{}/invocations", self.aws, self.endpoint)
    }

    fn deployments(&self) -> Vec<serde_json::Value> {
        self.gh.state()["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn last_deployment_states(&self) -> Vec<String> {
        self.deployments().last().expect("a deployment")["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["state"].as_str().unwrap().to_string())
            .collect()
    }
}

/// A control call on the fake.
fn control(
    fake: &FakeSagemaker,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut cmd = Command::new("curl");
    cmd.args(["-sf", "-X", method, &format!("{}{path}", fake.url)]);
    if let Some(b) = &body {
        cmd.args(["-H", "content-type: application/json", "-d", &b.to_string()]);
    }
    let out = cmd.output().expect("curl runs");
    assert!(out.status.success(), "control call {path} {body:?} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Weights as percents of their sum.
fn shares(weights: Vec<(String, f64)>) -> Vec<(String, f64)> {
    let total: f64 = weights.iter().map(|w| w.1).sum();
    weights
        .into_iter()
        .map(|(n, w)| {
            (
                n,
                if total > 0.0 {
                    (w / total * 100.0).round()
                } else {
                    0.0
                },
            )
        })
        .collect()
}

/// The fake's endpoint: its status and the production variants it runs (name, % of traffic).
fn endpoint_state(fake: &FakeSagemaker, endpoint: &str) -> (String, Vec<(String, f64)>) {
    let view = control(fake, "GET", "/_fake/endpoints", None);
    let e = &view[endpoint];
    let variants = e["production"]
        .as_array()
        .unwrap_or_else(|| panic!("no endpoint {endpoint}: {view:#}"))
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["weight"].as_f64().unwrap(),
            )
        })
        .collect();
    (e["status"].as_str().unwrap().to_string(), shares(variants))
}

/// The production variants of an endpoint in service: (name, % of traffic).
fn production(fake: &FakeSagemaker, endpoint: &str) -> Vec<(String, f64)> {
    let (status, variants) = endpoint_state(fake, endpoint);
    assert_eq!(status, "InService", "{variants:?}");
    variants
}

/// The production variants (name, % of traffic) of the newest endpoint configuration mlcd wrote.
fn last_config(fake: &FakeSagemaker) -> Vec<(String, f64)> {
    let configs = fake.calls("CreateEndpointConfig");
    shares(
        configs.last().expect("a configuration")["body"]["ProductionVariants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["VariantName"].as_str().unwrap().to_string(),
                    v["InitialVariantWeight"].as_f64().unwrap_or(1.0),
                )
            })
            .collect(),
    )
}

/// The weights mlcd asked for `version`, in order.
fn weights_for(fake: &FakeSagemaker, version: &str) -> Vec<f64> {
    fake.calls("UpdateEndpointWeightsAndCapacities")
        .iter()
        .map(|c| {
            c["body"]["DesiredWeightsAndCapacities"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["VariantName"] == version)
                .unwrap_or_else(|| panic!("no weight for {version}: {c}"))["DesiredWeight"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

/// The variants mlcd invoked, in order.
fn invoked(fake: &FakeSagemaker) -> Vec<String> {
    fake.calls("InvokeEndpoint")
        .iter()
        .map(|c| {
            c["body"]["TargetVariant"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// v1 deployed to a new endpoint, then v2 rolled out as a canary over it.
fn v1_then_v2(fake: &FakeSagemaker, bed: &Bed) {
    // A first deploy creates the endpoint, smoke-tests the version, 100% at once.
    let (r, out) = bed.deploy("v1", &[]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{out:?}");
    assert_eq!(out["endpoint"], bed.endpoint);
    assert_eq!(out["traffic"], "100");
    assert_eq!(out["url"], bed.url());
    assert!(!out.contains_key("previous-version"), "{out:?}");
    assert!(
        r.stdout.contains("deploying the image") && r.stdout.contains(&image("v1")),
        "the image is deployed alone: {}",
        r.stdout
    );
    let creates = fake.calls("CreateEndpoint");
    assert_eq!(creates.len(), 1, "{creates:#?}");
    assert_eq!(creates[0]["body"]["EndpointName"], bed.endpoint.as_str());
    let models = fake.calls("CreateModel");
    assert_eq!(models.len(), 1, "{models:#?}");
    assert_eq!(
        models[0]["body"]["ModelName"],
        format!("{}-i-v1", bed.endpoint)
    );
    assert_eq!(models[0]["body"]["PrimaryContainer"]["Image"], image("v1"));
    assert!(fake.calls("UpdateEndpoint").is_empty());
    assert!(fake.calls("UpdateEndpointWeightsAndCapacities").is_empty());
    assert_eq!(
        invoked(fake),
        ["i-v1", "i-v1"],
        "before traffic, then at 100%"
    );
    for c in fake.calls("InvokeEndpoint") {
        assert_eq!(c["body"]["EndpointName"], bed.endpoint.as_str());
        assert!(c["body"]["Body"].as_str().unwrap().contains("instances"));
    }
    assert_eq!(
        production(fake, &bed.endpoint),
        [("i-v1".to_string(), 100.0)]
    );
    let summary = bed.ws.read("out/summary");
    assert!(
        summary.contains(&format!("### Deploy `i-v1` → `{}` (canary)", bed.endpoint)),
        "{summary}"
    );
    assert!(
        summary.contains("| before traffic | 0% | ✅ 1/1 |"),
        "{summary}"
    );
    assert!(summary.contains("| 1 | 100% | ✅ 1/1 |"), "{summary}");
    assert!(summary.contains("previous version: `none`"), "{summary}");
    assert!(summary.contains("#### Smoke tests"), "{summary}");
    assert_eq!(bed.deployments().len(), 1);
    assert_eq!(bed.last_deployment_states(), ["in_progress", "success"]);
    assert_eq!(out["deployment-id"], bed.deployments()[0]["id"].to_string());

    // A second image: beside v1 at 0%, verified, then 10 → 50 → 100, v1 retired.
    let (r, out) = bed.deploy("v2", &[]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{out:?}");
    assert_eq!(out["previous-version"], "i-v1");
    assert_eq!(out["traffic"], "100");
    assert_eq!(out["url"], bed.url());
    assert_eq!(fake.calls("CreateEndpoint").len(), 1, "created once");
    assert_eq!(weights_for(fake, "i-v2"), [10.0, 50.0, 100.0]);
    assert_eq!(weights_for(fake, "i-v1"), [90.0, 50.0, 0.0]);
    // UpdateEndpoint: v2 beside v1, then v1 retired.
    let updates = fake.calls("UpdateEndpoint");
    assert_eq!(updates.len(), 2, "{updates:#?}");
    let v2_invokes: Vec<String> = invoked(fake).into_iter().skip(2).collect();
    assert_eq!(v2_invokes, ["i-v2"; 4], "before traffic and at each step");
    // The retirement: a configuration with v2 alone, the endpoint pointed at it.
    assert_eq!(last_config(fake), [("i-v2".to_string(), 100.0)]);
    let (_, variants) = endpoint_state(fake, &bed.endpoint);
    assert_eq!(
        variants.iter().find(|v| v.0 == "i-v2").map(|v| v.1),
        Some(100.0),
        "{variants:?}"
    );
    for step in ["v2 takes 10% of the traffic", "v2 takes 50% of the traffic"] {
        assert!(r.stderr.contains(step), "{step}: {}", r.stderr);
    }
    let summary = bed.ws.read("out/summary");
    for step in [
        "| 1 | 10% | ✅ 1/1 |",
        "| 2 | 50% | ✅ 1/1 |",
        "| 3 | 100% | ✅ 1/1 |",
    ] {
        assert!(summary.contains(step), "{step}: {summary}");
    }
    assert!(
        summary.contains(&format!(
            "`i-v2` serves 100% of `{}`; previous version: `i-v1`.",
            bed.endpoint
        )),
        "{summary}"
    );
    assert_eq!(bed.deployments().len(), 2);
    assert_eq!(bed.last_deployment_states(), ["in_progress", "success"]);
}

#[test]
fn a_first_image_creates_the_endpoint_and_a_second_goes_out_as_a_canary() {
    let fake = FakeSagemaker::start();
    let bed = Bed::new(&fake.url);
    v1_then_v2(&fake, &bed);
    // Right after the step: has the retirement of v1 finished (the step said it
    // did)? Asserted at the end, the rest of the story goes on.
    let after_v2 = endpoint_state(&fake, &bed.endpoint);

    // The same image again: nothing to do, nothing sent.
    let before = fake.requests().len();
    let (r, out) = bed.deploy("v2", &[]);
    r.assert_code(0);
    assert_eq!(out["traffic"], "100");
    assert!(
        r.stderr.contains("already serves version i-v2"),
        "{}",
        r.stderr
    );
    let after: Vec<serde_json::Value> = fake.requests().into_iter().skip(before).collect();
    // Only reads: the endpoint's state, and its tags (whose endpoint it is).
    assert!(
        after
            .iter()
            .all(|r| r["operation"] == "DescribeEndpoint" || r["operation"] == "ListTags"),
        "{after:#?}"
    );
    assert_eq!(
        production(&fake, &bed.endpoint),
        [("i-v2".to_string(), 100.0)]
    );
    assert_eq!(bed.gh.violations(), Vec::<serde_json::Value>::new());
    fake.assert_no_violations();
    assert_eq!(
        after_v2,
        ("InService".to_string(), vec![("i-v2".to_string(), 100.0)]),
        "when the step reports success, v1 is retired and the endpoint is in service \
         (mlcd must wait for its own retiring update to finish)"
    );
}

#[test]
fn a_candidate_failing_its_smoke_tests_is_rolled_back() {
    let fake = FakeSagemaker::start();
    let bed = Bed::new(&fake.url);
    bed.deploy("v1", &[]).0.assert_code(0);
    let (r, out) = bed.deploy("v2", &[("INPUT_ENV-VARS", "MODEL_FAIL_SMOKE=true")]);
    r.assert_code(1);
    assert_eq!(out["status"], "failed", "{out:?}");
    assert_eq!(out["previous-version"], "i-v1");
    assert_eq!(out["url"], bed.url());
    assert!(
        r.stdout
            .contains("smoke tests failed on i-v2 before it took traffic"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("rolled back: i-v1 serves all the traffic again"),
        "{}",
        r.stdout
    );
    // The candidate was created with the environment, invoked, never given traffic.
    let model = fake
        .calls("CreateModel")
        .into_iter()
        .find(|m| m["body"]["ModelName"] == format!("{}-i-v2", bed.endpoint))
        .expect("the candidate's model");
    assert_eq!(
        model["body"]["PrimaryContainer"]["Environment"]["MODEL_FAIL_SMOKE"],
        "true"
    );
    assert_eq!(invoked(&fake).last().map(String::as_str), Some("i-v2"));
    assert!(fake.calls("UpdateEndpointWeightsAndCapacities").is_empty());
    // v2 beside v1, then v1 alone again.
    assert_eq!(fake.calls("UpdateEndpoint").len(), 2);
    assert_eq!(
        production(&fake, &bed.endpoint),
        [("i-v1".to_string(), 100.0)]
    );
    let summary = bed.ws.read("out/summary");
    assert!(
        summary.contains("| before traffic | 0% | ❌ 0/1 |"),
        "{summary}"
    );
    assert!(summary.contains("`i-v2`"), "{summary}");
    assert_eq!(bed.last_deployment_states(), ["in_progress", "failure"]);
    assert_eq!(bed.gh.violations(), Vec::<serde_json::Value>::new());
    fake.assert_no_violations();
}

#[test]
fn an_endpoint_another_deployment_is_updating_is_waited_for_then_refused() {
    let fake = FakeSagemaker::start();
    let bed = Bed::new(&fake.url);
    bed.deploy("v1", &[]).0.assert_code(0);
    let models = fake.calls("CreateModel").len();
    let configs = fake.calls("CreateEndpointConfig").len();
    control(
        &fake,
        "POST",
        "/_fake/endpoint",
        Some(serde_json::json!({"name": bed.endpoint, "status": "Updating"})),
    );
    let started = std::time::Instant::now();
    let (r, out) = bed.deploy("v2", &[("INPUT_PARAM-LIST", "ready-timeout=3s")]);
    let took = started.elapsed();
    r.assert_code(1);
    assert_eq!(out["status"], "failed", "{out:?}");
    assert!(
        r.stdout.contains("another change is under way"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("Updating"), "{}", r.stdout);
    assert!(
        r.stderr.contains("waiting for that change to finish"),
        "{}",
        r.stderr
    );
    assert!(took.as_secs_f64() >= 3.0, "waited for the bound: {took:?}");
    assert!(took.as_secs_f64() < 25.0, "bounded: {took:?}");
    // mlcd changed nothing.
    assert!(fake.calls("UpdateEndpoint").is_empty());
    assert!(fake.calls("UpdateEndpointWeightsAndCapacities").is_empty());
    assert_eq!(fake.calls("CreateModel").len(), models);
    assert_eq!(fake.calls("CreateEndpointConfig").len(), configs);
    assert!(fake.calls("DeleteEndpoint").is_empty());
    let view = control(&fake, "GET", "/_fake/endpoints", None);
    assert_eq!(view[&bed.endpoint]["status"], "Updating");
    // Once the other change is over, the same step goes through.
    control(
        &fake,
        "POST",
        "/_fake/endpoint",
        Some(serde_json::json!({"name": bed.endpoint, "status": "InService"})),
    );
    let (r, out) = bed.deploy("v2", &[("INPUT_PARAM-LIST", "ready-timeout=3s")]);
    r.assert_code(0);
    assert_eq!(out["previous-version"], "i-v1");
    assert_eq!(weights_for(&fake, "i-v2"), [10.0, 50.0, 100.0]);
    fake.assert_no_violations();
}

#[test]
fn the_rollback_input_puts_the_previous_version_back() {
    let fake = FakeSagemaker::start();
    let bed = Bed::new(&fake.url);
    v1_then_v2(&fake, &bed);
    let (r, out) = bed.deploy("v2", &[("INPUT_ROLLBACK", "true")]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{out:?}");
    assert_eq!(out["previous-version"], "i-v2");
    assert_eq!(out["traffic"], "100");
    assert_eq!(out["url"], bed.url());
    assert_eq!(
        production(&fake, &bed.endpoint),
        [("i-v1".to_string(), 100.0)]
    );
    assert!(
        r.stderr
            .contains(&format!("rolled back {} to i-v1 (was i-v2)", bed.endpoint)),
        "{}",
        r.stderr
    );
    let summary = bed.ws.read("out/summary");
    assert!(
        summary.contains(&format!("### Rollback of `{}`", bed.endpoint)),
        "{summary}"
    );
    assert!(summary.contains("`i-v1` serves 100% again"), "{summary}");
    assert_eq!(fake.calls("CreateEndpoint").len(), 1);
    assert_eq!(bed.last_deployment_states(), ["in_progress", "success"]);
    assert_eq!(bed.gh.violations(), Vec::<serde_json::Value>::new());
    fake.assert_no_violations();
}

#[test]
fn a_first_deploy_creates_an_endpoint_on_moto() {
    let tb = testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    let bed = Bed::new(&tb["MLCD_TESTBED_MOTO_URL"]);
    let (r, out) = bed.deploy("v1", &[]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{out:?}");
    assert_eq!(out["endpoint"], bed.endpoint);
    assert_eq!(out["traffic"], "100");
    assert!(!out.contains_key("previous-version"), "{out:?}");
    assert!(out["url"].contains(&bed.endpoint), "{out:?}");
    let summary = bed.ws.read("out/summary");
    assert!(summary.contains("| 1 | 100% |"), "{summary}");
    assert_eq!(bed.last_deployment_states(), ["in_progress", "success"]);
}

#[test]
fn an_endpoint_of_another_repository_is_refused_and_one_without_an_owner_is_taken_with_a_warning() {
    let fake = FakeSagemaker::start();
    let bed = Bed::new(&fake.url);
    bed.deploy("v1", &[]).0.assert_code(0);
    let updates = fake.calls("UpdateEndpoint").len();
    let models = fake.calls("CreateModel").len();

    // Another repository deploying to an endpoint of the same name: refused
    // before anything is created or changed.
    let (r, _) = bed.deploy("v2", &[("GITHUB_REPOSITORY", "other/churn")]);
    r.assert_code(1);
    assert!(
        r.stdout.contains(&format!(
            "endpoint `{}` belongs to another run",
            bed.endpoint
        )) && r
            .stdout
            .contains("source `github.com/acme/churn` (this run: `github.com/other/churn`)"),
        "{}",
        r.stdout
    );
    assert_eq!(fake.calls("UpdateEndpoint").len(), updates);
    assert_eq!(fake.calls("CreateModel").len(), models);

    // An endpoint that records no owner (made before mlcd recorded one): changed,
    // with a warning that says so.
    control(
        &fake,
        "POST",
        "/_fake/endpoint",
        Some(serde_json::json!({"name": bed.endpoint, "tags": []})),
    );
    let (r, _) = bed.deploy("v2", &[("INPUT_STRATEGY", "all-at-once")]);
    r.assert_code(0);
    assert!(r.stdout.contains("records no owner"), "{}", r.stdout);
    assert_eq!(
        production(&fake, &bed.endpoint),
        [("i-v2".to_string(), 100.0)]
    );
    fake.assert_no_violations();
}

/// Puts data points into moto's CloudWatch as SageMaker would for some
/// variants (botocore, the real client), time-stamped now: (variant,
/// invocations, 5xx errors).
fn put_variant_metrics(moto: &str, endpoint: &str, variants: &[(&str, u32, u32)]) {
    let script = r#"
import sys, datetime, boto3
url, endpoint, *rest = sys.argv[1:]
cw = boto3.client("cloudwatch", endpoint_url=url, region_name="us-east-1",
                  aws_access_key_id="AKIDMLCDTESTKEY0001", aws_secret_access_key="mlcd-test-secret/0001")
now = datetime.datetime.now(datetime.timezone.utc)
for variant, inv, err in zip(rest[0::3], rest[1::3], rest[2::3]):
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "Invocations", "Dimensions": dims, "Value": float(inv), "Unit": "None", "Timestamp": now},
        {"MetricName": "Invocation5XXErrors", "Dimensions": dims, "Value": float(err), "Unit": "None", "Timestamp": now},
        {"MetricName": "ModelLatency", "Dimensions": dims, "Value": 20000.0, "Unit": "Microseconds", "Timestamp": now},
    ])
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script, moto, endpoint]);
    for (v, inv, err) in variants {
        cmd.arg(v).arg(inv.to_string()).arg(err.to_string());
    }
    let out = cmd.output().expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The live guards on SageMaker: between canary steps mlcd reads each variant's
/// `Invocations` / `Invocation5XXErrors` from CloudWatch (moto's, scripted by
/// the test while the step bakes; the endpoint itself on the fake SageMaker).
/// A candidate answering 40% 5xx breaks `max-error-rate: 0.1`: rolled back,
/// exit 1, the numbers in the summary. moto does not compute the `p95`
/// extended statistic (HTTP 500), so the p95 is reported as not measured.
#[test]
fn a_canary_over_its_error_rate_on_cloudwatch_is_rolled_back() {
    let tb = testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    let moto = tb["MLCD_TESTBED_MOTO_URL"].clone();
    let fake = FakeSagemaker::start();
    let bed = Bed::new(&fake.url);
    bed.ws.write(
        "mlcd.yml",
        &config(&bed.endpoint).replace(
            "  interval: 1s\n",
            "  interval: 5s\n  rollback:\n    max-error-rate: 0.1\n",
        ),
    );
    let cw = [("AWS_ENDPOINT_URL_CLOUDWATCH", moto.as_str())];
    bed.deploy("v1", &cw).0.assert_code(0);

    let (r, out) = std::thread::scope(|s| {
        let deploy = s.spawn(|| bed.deploy("v2", &cw));
        // Once v2 takes its first 10%, the step bakes for 5 s: script its traffic.
        let started = std::time::Instant::now();
        while weights_for(&fake, "i-v2").is_empty() {
            assert!(started.elapsed().as_secs() < 60, "v2 never took traffic");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        std::thread::sleep(std::time::Duration::from_millis(1000));
        put_variant_metrics(&moto, &bed.endpoint, &[("i-v2", 50, 20), ("i-v1", 450, 0)]);
        deploy.join().unwrap()
    });
    r.assert_code(1);
    assert_eq!(out["status"], "failed", "{out:?}");
    assert_eq!(out["previous-version"], "i-v1");
    assert!(
        // (`%` escaped as the runner's workflow commands need it)
        r.stdout.contains("its error rate 40.0%25 (20 of 50 answers were 5xx) is above `rollback.max-error-rate: 0.1`"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stdout
            .contains("rolled back: i-v1 serves all the traffic again"),
        "{}",
        r.stdout
    );
    assert_eq!(
        weights_for(&fake, "i-v2"),
        [10.0],
        "never past its first step"
    );
    assert_eq!(
        production(&fake, &bed.endpoint),
        [("i-v1".to_string(), 100.0)]
    );
    let summary = bed.ws.read("out/summary");
    assert!(
        summary.contains("❌ `i-v2`: 50 requests, 40.0% 5xx (20), p95 n/a; `i-v1`: 450 requests, 0.0% 5xx (0), p95 n/a"),
        "{summary}"
    );
    assert!(
        r.stderr
            .contains("CloudWatch did not answer the p95 of ModelLatency"),
        "{}",
        r.stderr
    );
    assert_eq!(bed.last_deployment_states(), ["in_progress", "failure"]);
    fake.assert_no_violations();
}
