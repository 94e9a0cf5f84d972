//! The SageMaker serving backend against real peers: the shared serving
//! conformance suite against the scripted fake SageMaker (every request checked
//! against botocore's sagemaker and sagemaker-runtime models), the states moto
//! never reaches (another deployment's update, Failed, RollingBack), InvokeEndpoint
//! per variant, create/describe/weights/teardown against moto, data capture
//! (`DataCaptureConfig`) on every endpoint configuration, and bad setups
//! refused before any request.

mod common;
#[path = "common/serve_conformance.rs"]
mod serve_conformance;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{testbed_env, unique, FakeSagemaker};
use mlcd::config::values::{Backend, InstanceType, Protocol};
use mlcd::plan::SagemakerPlan;
use mlcd::serve::sagemaker::SagemakerServing;
use mlcd::serve::{EndpointState, Invocation, ServingBackend, VersionSpec};

const ROLE: &str = "arn:aws:iam::123456789012:role/mlcd-serve";
const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:0123456";

fn plan() -> SagemakerPlan {
    SagemakerPlan {
        region: "us-east-1".into(),
        role_arn: ROLE.into(),
        output_path: None,
        subnets: vec![],
        security_groups: vec![],
    }
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Static test keys, every AWS endpoint at `url`, fast polling.
fn env_for(url: &str) -> BTreeMap<String, String> {
    vars(&[
        ("AWS_ACCESS_KEY_ID", "AKIDMLCDTESTKEY0001"),
        ("AWS_SECRET_ACCESS_KEY", "mlcd-test-secret/0001"),
        ("AWS_ENDPOINT_URL", url),
        ("MLCD_POLL_INTERVAL_MS", "100"),
    ])
}

/// The example model as a SageMaker version: model data in S3.
fn base_spec(endpoint: &str) -> VersionSpec {
    let instance: InstanceType = "cpu.small".parse().unwrap();
    VersionSpec {
        endpoint: endpoint.to_string(),
        version: "v1".into(),
        image: IMAGE.into(),
        model_data: Some("s3://mlcd-test/churn/output/model.tar.gz".into()),
        model_name: "churn".into(),
        instance: mlcd::instance::resolve(&instance, Backend::Sagemaker).unwrap(),
        replicas: 1,
        env: vars(&[("LOG_LEVEL", "info")]),
        workers: Some(2),
        batching: None,
        request_timeout: Duration::from_secs(30),
        protocol: Protocol::Sagemaker,
        tags: vars(&[("mlcd:model", "churn")]),
        identity: common::test_identity("github.com/acme/churn"),
    }
}

fn sample() -> Invocation {
    Invocation {
        body: std::fs::read(common::root().join("fixtures/example/tests/sample.json")).unwrap(),
        content_type: "application/json".into(),
    }
}

async fn backend(env: &BTreeMap<String, String>) -> SagemakerServing {
    SagemakerServing::new(&plan(), env)
        .await
        .expect("the backend builds")
}

/// A control call on the fake (`/_fake/endpoint` …).
fn control(fake: &FakeSagemaker, path: &str, body: serde_json::Value) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sf", "-X", "POST", &format!("{}{path}", fake.url)])
        .args([
            "-H",
            "content-type: application/json",
            "-d",
            &body.to_string(),
        ])
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "control call {path} {body} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Deploys v1 on a new endpoint and waits until it serves.
async fn serving_v1(sm: &SagemakerServing, spec: &VersionSpec) {
    sm.deploy(spec, false).await.expect("deploy v1");
    serve_conformance::until(sm, &spec.endpoint, "serving v1", |s| {
        s.state == EndpointState::InService && s.variants.iter().any(|v| v.ready)
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_fake_passes_the_serving_conformance_suite() {
    let fake = FakeSagemaker::start();
    let sm = backend(&env_for(&fake.url)).await;
    assert_eq!(sm.name(), "sagemaker");
    assert_eq!(sm.poll_interval(), Duration::from_millis(100));
    serve_conformance::run(&sm, &base_spec("churn"), &sample()).await;
    fake.assert_no_violations();

    // What SageMaker was asked for: a model per version with the container's
    // settings, a fresh configuration per change, the new version at weight 0.
    let models = fake.calls("CreateModel");
    assert_eq!(models.len(), 3, "{models:#?}");
    let m = &models[0]["body"];
    assert_eq!(m["ModelName"], "churn-v1");
    assert_eq!(m["ExecutionRoleArn"], ROLE);
    assert_eq!(m["PrimaryContainer"]["Image"], IMAGE);
    assert_eq!(
        m["PrimaryContainer"]["ModelDataUrl"],
        "s3://mlcd-test/churn/output/model.tar.gz"
    );
    let env = &m["PrimaryContainer"]["Environment"];
    assert_eq!(env["SAGEMAKER_MODEL_SERVER_WORKERS"], "2");
    assert_eq!(env["LOG_LEVEL"], "info");
    let configs = fake.calls("CreateEndpointConfig");
    let names: Vec<&str> = configs
        .iter()
        .map(|c| c["body"]["EndpointConfigName"].as_str().unwrap())
        .collect();
    let mut unique_names = names.clone();
    unique_names.dedup();
    assert_eq!(names.len(), unique_names.len(), "{names:?}");
    let second = &configs[1]["body"]["ProductionVariants"];
    assert_eq!(second[0]["VariantName"], "v1");
    assert_eq!(second[0]["InitialVariantWeight"], 1.0);
    assert_eq!(second[1]["VariantName"], "v2");
    assert_eq!(second[1]["InitialVariantWeight"], 0.0);
    assert_eq!(second[1]["InstanceType"], "ml.m5.large");
    let shadow = configs
        .iter()
        .find(|c| c["body"]["ShadowProductionVariants"].is_array())
        .expect("a configuration with a shadow");
    assert_eq!(
        shadow["body"]["ShadowProductionVariants"][0]["VariantName"],
        "v3"
    );
    assert_eq!(fake.calls("CreateEndpoint").len(), 1);
    let weights = fake.calls("UpdateEndpointWeightsAndCapacities");
    assert_eq!(
        weights[0]["body"]["DesiredWeightsAndCapacities"],
        serde_json::json!([
            {"VariantName": "v1", "DesiredWeight": 50.0},
            {"VariantName": "v2", "DesiredWeight": 50.0}
        ])
    );
    // Teardown removed what mlcd made.
    assert!(fake.calls("DeleteEndpoint").len() == 1);
    let deleted: Vec<String> = fake
        .calls("DeleteModel")
        .iter()
        .map(|r| r["body"]["ModelName"].as_str().unwrap().to_string())
        .collect();
    for m in ["churn-v1", "churn-v2", "churn-v3"] {
        assert!(
            deleted.iter().any(|d| d == m),
            "{m} not deleted: {deleted:?}"
        );
    }
    assert_eq!(
        fake.calls("DeleteEndpointConfig").len(),
        configs.len(),
        "every configuration is deleted"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_update_by_someone_else_is_never_joined_by_a_second_one() {
    let fake = FakeSagemaker::start();
    let sm = backend(&env_for(&fake.url)).await;
    let spec = base_spec("busy");
    serving_v1(&sm, &spec).await;
    control(
        &fake,
        "/_fake/endpoint",
        serde_json::json!({"name": "busy", "status": "Updating"}),
    );
    let mut v2 = spec.clone();
    v2.version = "v2".into();
    let err = sm.deploy(&v2, false).await.unwrap_err();
    assert!(
        err.message.contains(
            "is being updated by another deployment; mlcd does not start a second update"
        ),
        "{err}"
    );
    assert!(err.message.contains("Updating"), "{err}");
    assert!(
        err.hint.as_deref().unwrap_or("").contains("InService"),
        "{err:?}"
    );
    let err = sm
        .set_traffic("busy", &BTreeMap::from([("v1".to_string(), 100)]))
        .await
        .unwrap_err();
    assert!(err.message.contains("another deployment"), "{err}");
    let err = sm.rollback("busy", "v1").await.unwrap_err();
    assert!(err.message.contains("another deployment"), "{err}");
    assert!(fake.calls("UpdateEndpoint").is_empty());
    assert!(fake.calls("UpdateEndpointWeightsAndCapacities").is_empty());
    assert_eq!(
        fake.calls("CreateModel").len(),
        1,
        "nothing is created for the refused version"
    );
    assert_eq!(fake.calls("CreateEndpointConfig").len(), 1);

    // With alarms, the update SageMaker runs is a blue/green one that rolls back.
    control(
        &fake,
        "/_fake/endpoint",
        serde_json::json!({"name": "busy", "status": "InService"}),
    );
    let sm = backend(&env_for(&fake.url))
        .await
        .with_alarms(vec!["churn-5xx".into(), " ".into()])
        .with_bake_time(Duration::from_secs(120));
    sm.deploy(&v2, false).await.expect("deploy v2 with alarms");
    let update = &fake.calls("UpdateEndpoint")[0]["body"];
    assert_eq!(
        update["DeploymentConfig"],
        serde_json::json!({
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 120},
                "TerminationWaitInSeconds": 120
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "churn-5xx"}]}
        })
    );
    fake.assert_no_violations();
}

#[tokio::test(flavor = "current_thread")]
async fn failed_and_rolling_back_endpoints_show_in_status() {
    let fake = FakeSagemaker::start();
    let sm = backend(&env_for(&fake.url)).await;
    assert!(sm.status("nowhere").await.unwrap().is_none());
    let spec = base_spec("flaky");
    serving_v1(&sm, &spec).await;

    control(
        &fake,
        "/_fake/endpoint",
        serde_json::json!({"name": "flaky", "status": "RollingBack", "describes": 2,
                           "failure_reason": "alarm churn-5xx went into ALARM"}),
    );
    let s = sm.status("flaky").await.unwrap().unwrap();
    assert_eq!(s.state, EndpointState::RollingBack);
    assert_eq!(
        s.failure_reason.as_deref(),
        Some("alarm churn-5xx went into ALARM")
    );
    let s = serve_conformance::until(&sm, "flaky", "back in service", |s| {
        s.state == EndpointState::InService
    })
    .await;
    assert_eq!(s.variants[0].version, "v1");
    assert_eq!(s.variants[0].image, IMAGE);
    assert_eq!(
        s.url.as_deref(),
        Some(format!("{}/endpoints/flaky/invocations", fake.url).as_str())
    );

    control(
        &fake,
        "/_fake/endpoint",
        serde_json::json!({"name": "flaky", "status": "Failed",
                           "failure_reason": "The primary container for production variant v1 did not pass the ping health check."}),
    );
    let s = sm.status("flaky").await.unwrap().unwrap();
    assert_eq!(s.state, EndpointState::Failed);
    assert!(s.failure_reason.unwrap().contains("ping health check"));
    let mut v2 = spec.clone();
    v2.version = "v2".into();
    let err = sm.deploy(&v2, false).await.unwrap_err();
    assert!(
        err.message.contains("Failed: it cannot be updated"),
        "{err}"
    );
    assert!(fake.calls("UpdateEndpoint").is_empty());

    control(
        &fake,
        "/_fake/endpoint",
        serde_json::json!({"name": "flaky", "status": "UpdateRollbackFailed"}),
    );
    let s = sm.status("flaky").await.unwrap().unwrap();
    assert_eq!(s.state, EndpointState::UpdateRollbackFailed);
    fake.assert_no_violations();
}

#[tokio::test(flavor = "current_thread")]
async fn invoke_targets_one_variant_and_a_model_error_is_an_answer() {
    let fake = FakeSagemaker::start();
    // The runtime is found through its own variable; nothing else answers.
    let dead = "http://127.0.0.1:9";
    let mut env = env_for(dead);
    env.insert("AWS_ENDPOINT_URL_SAGEMAKER".into(), fake.url.clone());
    env.insert(
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME".into(),
        fake.url.clone(),
    );
    let sm = backend(&env).await;
    let spec = base_spec("smoke");
    serving_v1(&sm, &spec).await;
    let mut bad = spec.clone();
    bad.version = "bad".into();
    bad.env.insert("MODEL_FAIL_SMOKE".into(), "true".into());
    sm.deploy(&bad, false)
        .await
        .expect("deploy the failing version");
    serve_conformance::until(&sm, "smoke", "serving both", |s| {
        s.state == EndpointState::InService && s.variants.len() == 2
    })
    .await;

    let a = sm.invoke("smoke", "v1", &sample()).await.unwrap();
    assert_eq!(a.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(body["predictions"].as_array().unwrap().len(), 2, "{body}");
    assert!(a.latency > Duration::ZERO);
    let a = sm.invoke("smoke", "bad", &sample()).await.unwrap();
    assert_eq!(a.status, 500, "{}", String::from_utf8_lossy(&a.body));
    assert!(String::from_utf8_lossy(&a.body).contains("MODEL_FAIL_SMOKE"));
    let err = sm.invoke("smoke", "v9", &sample()).await.unwrap_err();
    assert!(err.message.contains("v9"), "{err}");

    let calls = fake.calls("InvokeEndpoint");
    let targets: Vec<&str> = calls
        .iter()
        .map(|c| c["body"]["TargetVariant"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["v1", "bad", "v9"]);
    assert_eq!(calls[0]["body"]["ContentType"], "application/json");
    assert_eq!(calls[0]["body"]["EndpointName"], "smoke");
    assert_eq!(calls[0]["scope"]["service"], "sagemaker");
    fake.assert_no_violations();
}

/// One way to spoil a good spec.
type Change = Box<dyn Fn(&mut VersionSpec)>;

#[tokio::test(flavor = "current_thread")]
async fn bad_setups_are_refused_before_any_request() {
    let fake = FakeSagemaker::start();
    let env = env_for(&fake.url);
    let sm = backend(&env).await;
    let cases: Vec<(&str, Change)> = vec![
        (
            "not a SageMaker instance type",
            Box::new(|s| s.instance.native = "n1-standard-4".into()),
        ),
        (
            "is not an s3:// URI",
            Box::new(|s| s.model_data = Some("./model.tar.gz".into())),
        ),
        ("`deploy.replicas` is 0", Box::new(|s| s.replicas = 0)),
        (
            "Open Inference Protocol v2",
            Box::new(|s| s.protocol = Protocol::V2),
        ),
        (
            "not a valid SageMaker name",
            Box::new(|s| s.endpoint = "e".repeat(61)),
        ),
        (
            "`deploy.env` variable `1BAD`",
            Box::new(|s| {
                s.env.insert("1BAD".into(), "x".into());
            }),
        ),
    ];
    for (want, change) in cases {
        let mut spec = base_spec("refused");
        change(&mut spec);
        let err = sm.preflight(&spec).await.unwrap_err();
        assert!(err.message.contains(want), "{want}: {err}");
        let err = sm.deploy(&spec, false).await.unwrap_err();
        assert!(err.message.contains(want), "{want}: {err}");
    }
    let no_role = SagemakerServing::new(
        &SagemakerPlan {
            role_arn: " ".into(),
            ..plan()
        },
        &env,
    )
    .await
    .unwrap();
    let err = no_role.preflight(&base_spec("refused")).await.unwrap_err();
    assert!(
        err.message.contains("`sagemaker.role-arn` is not set"),
        "{err}"
    );
    let err = SagemakerServing::new(
        &SagemakerPlan {
            region: "US East".into(),
            ..plan()
        },
        &env,
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("`sagemaker.region`"), "{err}");
    let err = SagemakerServing::new(&plan(), &vars(&[("AWS_ENDPOINT_URL", &fake.url)]))
        .await
        .unwrap_err();
    assert!(err.message.contains("no AWS credentials"), "{err}");
    let err = sm
        .set_traffic("refused", &BTreeMap::from([("v1".to_string(), 90)]))
        .await
        .unwrap_err();
    assert!(err.message.contains("sum to 90%"), "{err}");
    assert!(
        fake.requests().is_empty(),
        "nothing may reach SageMaker: {:?}",
        fake.requests()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn create_describe_weights_and_teardown_against_moto() {
    let tb = testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    let moto = &tb["MLCD_TESTBED_MOTO_URL"];
    let sm = backend(&env_for(moto)).await;
    let endpoint = format!("moto{}", unique());
    let spec = base_spec(&endpoint);
    sm.preflight(&spec).await.unwrap();
    assert!(sm.status(&endpoint).await.unwrap().is_none());
    sm.deploy(&spec, false)
        .await
        .expect("CreateEndpoint on moto");
    // moto is InService at once; its DescribeEndpoint names no images, so the
    // image comes from the configuration's model.
    let s = sm.status(&endpoint).await.unwrap().expect("moto knows it");
    assert_eq!(s.state, EndpointState::InService);
    assert_eq!(s.variants.len(), 1, "{s:?}");
    let v = &s.variants[0];
    assert_eq!(
        (
            v.version.as_str(),
            v.weight,
            v.ready,
            v.shadow,
            v.image.as_str()
        ),
        ("v1", 100, true, false, IMAGE)
    );
    // A second deploy of the same version attaches instead of failing.
    sm.deploy(&spec, false).await.expect("re-run attaches");
    sm.set_traffic(&endpoint, &BTreeMap::from([("v1".to_string(), 100)]))
        .await
        .expect("UpdateEndpointWeightsAndCapacities on moto");
    let err = sm
        .set_traffic(&endpoint, &BTreeMap::from([("v2".to_string(), 100)]))
        .await
        .unwrap_err();
    assert!(
        err.message.contains("`v2` is not a production version"),
        "{err}"
    );
    let s = sm.status(&endpoint).await.unwrap().unwrap();
    assert_eq!(s.variants[0].weight, 100);
    let err = sm.retire(&endpoint, "v1").await.unwrap_err();
    assert!(err.message.contains("live traffic"), "{err}");
    sm.teardown(&endpoint).await.expect("teardown on moto");
    assert!(sm.status(&endpoint).await.unwrap().is_none());
    sm.teardown(&endpoint)
        .await
        .expect("a second teardown is a no-op");
}

#[tokio::test(flavor = "current_thread")]
async fn a_retired_version_comes_back_on_its_model_and_a_changed_image_is_refused() {
    let fake = FakeSagemaker::start();
    let sm = backend(&env_for(&fake.url)).await;
    let spec = base_spec("again");
    serving_v1(&sm, &spec).await;
    let mut v2 = spec.clone();
    v2.version = "v2".into();
    let both = |s: &mlcd::serve::EndpointStatus| {
        s.state == EndpointState::InService && s.variants.len() == 2
    };
    sm.deploy(&v2, false).await.unwrap();
    serve_conformance::until(&sm, "again", "serving v1 and v2", both).await;
    sm.retire("again", "v2").await.unwrap();
    serve_conformance::until(&sm, "again", "v1 alone", |s| {
        s.state == EndpointState::InService && s.variants.len() == 1
    })
    .await;
    // The model stayed: deploying v2 again reuses it.
    sm.deploy(&v2, false).await.expect("v2 again");
    serve_conformance::until(&sm, "again", "v2 back", both).await;
    assert_eq!(fake.calls("CreateModel").len(), 3, "one refused create");
    assert_eq!(fake.calls("DescribeModel").len(), 1);
    // Rolling back to a retired version serves its model again.
    sm.retire("again", "v2").await.unwrap();
    serve_conformance::until(&sm, "again", "v1 alone", |s| {
        s.state == EndpointState::InService && s.variants.len() == 1
    })
    .await;
    sm.rollback("again", "v2")
        .await
        .expect("rollback to retired v2");
    let s = serve_conformance::until(&sm, "again", "v2 alone", |s| {
        s.state == EndpointState::InService && s.variants.len() == 1
    })
    .await;
    assert_eq!(
        (s.variants[0].version.as_str(), s.variants[0].weight),
        ("v2", 100)
    );

    let mut v1_other = spec.clone();
    v1_other.image = format!("{IMAGE}-other");
    let err = sm.deploy(&v1_other, false).await.unwrap_err();
    assert!(err.message.contains("exists already with image"), "{err}");
    let err = sm.rollback("again", "v7").await.unwrap_err();
    assert!(
        err.message
            .contains("cannot roll SageMaker endpoint `again` back to `v7`"),
        "{err}"
    );
    fake.assert_no_violations();
}

#[tokio::test(flavor = "current_thread")]
async fn data_capture_is_on_every_endpoint_configuration() {
    let capture = Some((20u8, "s3://mlcd-capture/churn".to_string()));
    let fake = FakeSagemaker::start();
    let sm = backend(&env_for(&fake.url))
        .await
        .with_capture(capture.clone());
    let spec = base_spec("churn");
    serving_v1(&sm, &spec).await;
    let mut v2 = spec.clone();
    v2.version = "v2".into();
    sm.deploy(&v2, false).await.expect("deploy v2 beside v1");
    fake.assert_no_violations();
    let configs = fake.calls("CreateEndpointConfig");
    assert_eq!(configs.len(), 2, "{configs:#?}");
    for c in &configs {
        let d = &c["body"]["DataCaptureConfig"];
        assert_eq!(d["EnableCapture"], true);
        assert_eq!(d["InitialSamplingPercentage"], 20);
        assert_eq!(d["DestinationS3Uri"], "s3://mlcd-capture/churn");
        assert_eq!(
            d["CaptureOptions"],
            serde_json::json!([{"CaptureMode": "Input"}, {"CaptureMode": "Output"}])
        );
        assert_eq!(
            d["CaptureContentTypeHeader"]["JsonContentTypes"],
            serde_json::json!(["application/json"])
        );
    }
    sm.teardown("churn").await.unwrap();

    // moto takes the same request.
    let tb = testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    let sm = backend(&env_for(&tb["MLCD_TESTBED_MOTO_URL"]))
        .await
        .with_capture(capture);
    let endpoint = format!("capture{}", unique());
    sm.deploy(&base_spec(&endpoint), false)
        .await
        .expect("CreateEndpointConfig with DataCaptureConfig on moto");
    let s = sm.status(&endpoint).await.unwrap().expect("moto knows it");
    assert_eq!(s.state, EndpointState::InService);
    sm.teardown(&endpoint).await.unwrap();
}
