//! Check runs against the fake GitHub API, which validates every request against
//! GitHub's OpenAPI description (@octokit/openapi): created in_progress, completed
//! with the right conclusion and annotations on the YAML line, annotations sent
//! 50 a request, and a token without `checks: write` warned about once.

mod common;
use common::*;

use mlcd::error::{Location, Outcome};
use mlcd::report::checks::CheckRun;
use mlcd::report::commands::{Annotation, Level};
use mlcd::secrets::Secret;

const CONFIG: &str = "model: churn\ndeploy:\n  strategy: canary\n";

fn run_with_fake(ws: &Workspace, gh: &FakeGitHub, extra: &[(&str, &str)]) -> Run {
    let mut env = vec![
        ("GITHUB_API_URL", gh.url.as_str()),
        ("INPUT_GITHUB-TOKEN", "ghs_faketoken0123456789"),
    ];
    env.extend_from_slice(extra);
    action(ws, &env)
}

#[test]
fn a_dry_run_reports_one_check_run_in_two_calls() {
    let gh = FakeGitHub::start();
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    run_with_fake(
        &ws,
        &gh,
        &[("INPUT_MODE", "deploy"), ("INPUT_DRY-RUN", "true")],
    )
    .assert_code(0);
    assert_eq!(gh.violations(), Vec::<serde_json::Value>::new());
    let reqs = gh.requests();
    let ops: Vec<&str> = reqs
        .iter()
        .map(|r| r["operation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["checks/create", "checks/update"]);
    assert_eq!(reqs[0]["body"]["status"], "in_progress");
    assert_eq!(reqs[0]["body"]["head_sha"], SHA);
    assert_eq!(reqs[0]["body"]["name"], "mlcd deploy");
    let state = gh.state();
    let run = &state["check_runs"][0];
    assert_eq!(run["status"], "completed");
    assert_eq!(run["conclusion"], "neutral");
    assert!(run["output"]["title"]
        .as_str()
        .unwrap()
        .starts_with("Plan: deploy `churn`"));
    assert!(run["output"]["summary"]
        .as_str()
        .unwrap()
        .contains("| strategy | canary |"));
    let outputs = parse_outputs(&ws.read("out/output"));
    assert_eq!(outputs["report-url"], run["html_url"].as_str().unwrap());
}

#[test]
fn a_config_error_fails_the_check_with_an_annotation_on_its_line() {
    let gh = FakeGitHub::start();
    let ws = Workspace::new();
    ws.write("mlcd.yml", "model: churn\ndeploy:\n  stratgy: canary\n");
    run_with_fake(&ws, &gh, &[("INPUT_MODE", "deploy")]).assert_code(2);
    assert_eq!(gh.violations(), Vec::<serde_json::Value>::new());
    let state = gh.state();
    let run = &state["check_runs"][0];
    assert_eq!(run["conclusion"], "failure");
    let ann = &run["annotations"][0];
    assert_eq!(ann["path"], "mlcd.yml");
    assert_eq!(ann["start_line"], 3);
    assert_eq!(ann["annotation_level"], "failure");
    assert!(ann["message"]
        .as_str()
        .unwrap()
        .contains("did you mean `strategy`"));
}

#[test]
fn a_token_without_checks_write_gets_one_warning_and_the_run_carries_on() {
    let gh = FakeGitHub::start();
    gh.deny("/repos/acme/churn/check-runs", 403);
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    let r = run_with_fake(
        &ws,
        &gh,
        &[("INPUT_MODE", "deploy"), ("INPUT_DRY-RUN", "true")],
    );
    r.assert_code(0);
    let warnings: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("::warning"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", r.stdout);
    assert!(warnings[0].contains("checks: write"), "{}", warnings[0]);
    assert_eq!(gh.requests().len(), 1, "no further calls after the refusal");
    assert_eq!(parse_outputs(&ws.read("out/output"))["status"], "planned");
}

#[test]
fn checks_false_makes_no_api_call() {
    let gh = FakeGitHub::start();
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    run_with_fake(
        &ws,
        &gh,
        &[
            ("INPUT_MODE", "deploy"),
            ("INPUT_DRY-RUN", "true"),
            ("INPUT_CHECKS", "false"),
        ],
    )
    .assert_code(0);
    assert!(gh.requests().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn more_than_50_annotations_go_in_batches_of_50() {
    let gh = FakeGitHub::start();
    let token = Secret::new("ghs_batchtoken0123456789");
    let mut run = CheckRun::client(&gh.url, &token, "acme/churn").unwrap();
    run.start("mlcd train", SHA, None).await.unwrap();
    let annotations: Vec<Annotation> = (1..=120)
        .map(|i| Annotation {
            level: Level::Warning,
            title: format!("gate {i}"),
            message: format!("metric {i} below threshold"),
            location: Some(Location {
                file: "mlcd.yml".into(),
                line: i,
                column: None,
            }),
        })
        .collect();
    run.complete(
        Outcome::Failed,
        "3 gates failed",
        "summary",
        None,
        &annotations,
    )
    .await
    .unwrap();
    assert_eq!(run.calls, 4);
    assert_eq!(gh.violations(), Vec::<serde_json::Value>::new());
    let reqs = gh.requests();
    let sizes: Vec<usize> = reqs[1..]
        .iter()
        .map(|r| {
            r["body"]["output"]["annotations"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .collect();
    assert_eq!(sizes, [50, 50, 20]);
    assert!(
        reqs[1]["body"].get("conclusion").is_none(),
        "the run completes with the last batch"
    );
    assert_eq!(reqs[3]["body"]["conclusion"], "failure");
    let state = gh.state();
    assert_eq!(
        state["check_runs"][0]["annotations"]
            .as_array()
            .unwrap()
            .len(),
        120
    );
    assert_eq!(state["check_runs"][0]["output"]["annotations_count"], 120);
}
