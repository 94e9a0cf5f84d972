//! The report comment through the binary, against the fake GitHub (every request
//! validated against GitHub's OpenAPI description) and the real Docker engine of
//! the test bed training the bundled example: the first run creates one comment
//! per model, later runs edit it (never a second one), a failed gate shows ✗ with
//! value and threshold, a rollback appears, a section of an older commit is
//! marked stale, a push without a pull request gets a commit comment, a token
//! without the permission costs one warning only, and a very long report stays
//! under GitHub's limit. The comment's charts are parsed with npm `mermaid`.
//!
//! Needs `scripts/testbed up docker base-image npm` (scripts/test does it).

mod common;
use common::*;
#[path = "common/mermaid.rs"]
mod mermaid;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

const IMAGE: &str = "mlcd-test/churn:train";
const HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
const NEWER: &str = "fedcba9876543210fedcba9876543210fedcba98";
const PR: u64 = 42;

fn example_image(tb: &BTreeMap<String, String>) {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new("docker")
            .args(["build", "-q", "-t", IMAGE, "--build-arg"])
            .arg(format!("BASE_IMAGE={}", tb["MLCD_TESTBED_BASE_IMAGE"]))
            .arg(root().join("fixtures/example"))
            .env("DOCKER_HOST", &tb["DOCKER_HOST"])
            .output()
            .expect("docker runs");
        assert!(
            out.status.success(),
            "building the example image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

struct Bed {
    ws: Workspace,
    tb: BTreeMap<String, String>,
    gh: FakeGitHub,
    endpoint: String,
}

impl Bed {
    fn new() -> Bed {
        let tb = testbed_env(&["DOCKER_HOST", "MLCD_TESTBED_BASE_IMAGE"]);
        example_image(&tb);
        let ws = Workspace::with_example();
        let endpoint = format!("churn-{}", unique());
        let cfg = ws
            .read("example/mlcd.yml")
            .replace("  endpoint: churn\n", &format!("  endpoint: {endpoint}\n"))
            .replace(
                "  interval: 30s\n",
                "  interval: 1s\n  ready-timeout: 60s\n",
            )
            // Every version trained here is `production`, so the next run has
            // something to compare with.
            .replace(
                "registry:\n  type: local\n",
                "registry:\n  type: local\n  alias: production\n",
            );
        ws.write("example/mlcd.yml", &cfg);
        Bed {
            ws,
            tb,
            gh: FakeGitHub::start(),
            endpoint,
        }
    }

    /// The real `pull_request.opened` example payload, for PR `PR` at `head`.
    fn pull_request_event(&self, head: &str) -> String {
        let mut ev: Value = serde_json::from_str(
            &std::fs::read_to_string(root().join("fixtures/events/pull_request.opened.json"))
                .unwrap(),
        )
        .unwrap();
        ev["pull_request"]["number"] = PR.into();
        ev["number"] = PR.into();
        ev["pull_request"]["head"]["sha"] = head.into();
        let path = self
            .ws
            .write(&format!("out/event-{head}.json"), &ev.to_string());
        path.display().to_string()
    }

    fn run(&self, mode: &str, extra: &[(&str, &str)]) -> Run {
        let mut env = actions_env(&self.ws);
        env.retain(|(k, _)| k != "GITHUB_RUN_ID");
        let event = self.pull_request_event(HEAD);
        for (k, v) in [
            ("GITHUB_RUN_ID", unique().to_string()),
            ("GITHUB_API_URL", self.gh.url.clone()),
            ("GITHUB_EVENT_NAME", "pull_request".into()),
            ("GITHUB_EVENT_PATH", event),
            ("GITHUB_REF", format!("refs/pull/{PR}/merge")),
            ("INPUT_GITHUB-TOKEN", "ghs_faketoken0123456789".into()),
            ("INPUT_CHECKS", "false".into()),
            ("DOCKER_HOST", self.tb["DOCKER_HOST"].clone()),
            ("MLCD_POLL_INTERVAL_MS", "200".into()),
            ("INPUT_MODE", mode.into()),
            ("INPUT_CONFIG", "example/mlcd.yml".into()),
            ("INPUT_IMAGE", IMAGE.into()),
        ] {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v));
        }
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        mlcd(self.ws.path(), &[], &env)
    }

    fn comments(&self) -> Vec<Value> {
        self.gh.state()["comments"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The one comment on the PR: its body.
    fn the_comment(&self) -> String {
        let c = self.comments();
        assert_eq!(c.len(), 1, "exactly one comment: {c:#?}");
        assert_eq!(c[0]["issue_number"], PR);
        c[0]["body"].as_str().unwrap().to_string()
    }

    fn ops(&self) -> Vec<String> {
        self.gh
            .requests()
            .iter()
            .map(|r| r["operation_id"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    fn no_violations(&self) {
        assert_eq!(self.gh.violations(), Vec::<Value>::new());
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("name={}", self.endpoint))
            .env("DOCKER_HOST", &self.tb["DOCKER_HOST"])
            .output();
        if let Ok(out) = out {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .env("DOCKER_HOST", &self.tb["DOCKER_HOST"])
                    .output();
            }
        }
    }
}

fn table_rows_are_whole(body: &str) {
    for line in body.lines().filter(|l| l.starts_with('|')) {
        assert!(line.ends_with('|'), "a table row was cut: {line}");
    }
}

#[test]
fn a_pull_request_gets_one_comment_that_later_runs_edit_with_gate_verdicts() {
    let bed = Bed::new();
    bed.run("train", &[]).assert_code(0);
    assert_eq!(
        bed.ops(),
        ["issues/list-comments", "issues/create-comment"],
        "the first run lists the PR's comments, finds none, creates one"
    );
    let first = bed.the_comment();
    assert!(first.starts_with("<!-- mlcd:model=churn -->"), "{first}");
    assert!(first.contains("For commit [`ec26c3e`]"), "{first}");
    assert!(first.contains("### 🧪 Train — ✅ succeeded"), "{first}");
    assert!(first.contains("| registered | version 1 |"), "{first}");
    assert!(
        first.contains("No version has the `production` alias yet"),
        "{first}"
    );
    assert!(first.contains("| ✓ | accuracy | 0."), "{first}");
    assert!(first.contains("| `>= 0.8` |"), "{first}");
    // The curve read from the log by the `train-loss` regex.
    assert!(
        first.contains("xychart-beta\n    title \"train-loss over training\""),
        "{first}"
    );
    // Every chart in the comment parses with the real Mermaid parser.
    assert_eq!(mermaid::assert_charts_parse(&first), 1, "{first}");

    // Second run, same PR: a gate the model cannot pass. Edited, not added.
    let cfg = bed
        .ws
        .read("example/mlcd.yml")
        .replace("accuracy: \">= 0.80\"", "accuracy: \">= 0.999\"");
    bed.ws.write("example/mlcd.yml", &cfg);
    let r = bed.run("train", &[("INPUT_PARAM-LIST", "sleep=0")]);
    r.assert_code(1);
    let ops = bed.ops();
    assert_eq!(
        &ops[2..],
        ["issues/list-comments", "issues/update-comment"],
        "{ops:?}"
    );
    let second = bed.the_comment();
    assert!(second.contains("### 🧪 Train — ❌ failed"), "{second}");
    let gate = second
        .lines()
        .find(|l| l.starts_with("| ✗ | accuracy |"))
        .unwrap_or_else(|| panic!("no failed gate row: {second}"));
    assert!(
        gate.contains("| `>= 0.999` |") && gate.contains("| 0."),
        "{gate}"
    );
    // Compared with production (version 1, from the first run), with the difference.
    assert!(
        second.contains("| metric | this commit | production (v1) | difference |"),
        "{second}"
    );
    let acc = second
        .lines()
        .find(|l| l.starts_with("| accuracy |"))
        .unwrap();
    assert_eq!(acc.matches('|').count(), 5, "{acc}");
    // The registry chart: version 1 beside this commit.
    assert!(
        second.contains("x-axis [\"v1\", \"this commit\"]"),
        "{second}"
    );
    assert!(
        !second.contains("✅ succeeded"),
        "the old verdict is replaced"
    );
    assert!(
        r.stderr.contains(
            "updated the report comment: https://github.com/acme/churn/issues/42#issuecomment-"
        ),
        "{}",
        r.stderr
    );
    bed.no_violations();
}

#[test]
fn a_rollback_and_the_train_section_of_the_same_commit_appear_and_an_older_commit_turns_stale() {
    let bed = Bed::new();
    bed.run("train", &[]).assert_code(0);
    bed.run("deploy", &[]).assert_code(0);
    let body = bed.the_comment();
    assert!(body.contains("### 🧪 Train — ✅ succeeded"), "{body}");
    assert!(body.contains("### 🚀 Deploy — ✅ succeeded"), "{body}");
    assert!(body.find("🧪 Train").unwrap() < body.find("🚀 Deploy").unwrap());
    assert!(body.contains("| strategy | canary |"), "{body}");

    bed.run("train", &[("INPUT_PARAM-LIST", "sleep=0")])
        .assert_code(0);
    bed.run("deploy", &[("INPUT_ENV-VARS", "MODEL_FAIL_SMOKE=true")])
        .assert_code(1);
    let body = bed.the_comment();
    assert!(body.contains("### 🚀 Deploy — ❌ failed"), "{body}");
    assert!(
        body.contains("rolled back: v1 serves all the traffic again"),
        "{body}"
    );
    // The smoke results with their latencies.
    assert!(
        body.contains("| request | version | status | latency | result |"),
        "{body}"
    );
    assert!(body.contains(" ms | ❌"), "{body}");
    table_rows_are_whole(&body);

    // A new commit pushed to the PR: its train section is current, the deploy
    // section (of the older commit) is folded away as stale.
    let event = bed.pull_request_event(NEWER);
    bed.run(
        "train",
        &[
            ("GITHUB_EVENT_PATH", event.as_str()),
            ("INPUT_PARAM-LIST", "sleep=0"),
        ],
    )
    .assert_code(0);
    let body = bed.the_comment();
    assert!(body.contains("For commit [`fedcba9`]"), "{body}");
    let stale = body
        .find("<b>deploy</b>: stale — from an earlier commit <code>ec26c3e</code>")
        .unwrap_or_else(|| panic!("{body}"));
    assert!(body[stale..].contains("rolled back: v1"), "{body}");
    assert!(body.find("### 🧪 Train").unwrap() < stale);
    bed.no_violations();
}

#[test]
fn a_token_without_the_permission_costs_one_warning_and_the_run_carries_on() {
    let bed = Bed::new();
    bed.gh.deny("/repos/acme/churn/issues", 403);
    let r = bed.run("train", &[]);
    r.assert_code(0);
    let warnings: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("::warning") && l.contains("comment"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", r.stdout);
    assert!(
        warnings[0].contains("pull-requests: write"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("HTTP 403"), "{}", warnings[0]);
    assert!(
        !r.stdout
            .lines()
            .chain(r.stderr.lines())
            .any(|l| l.contains("ghs_faketoken") && !l.starts_with("::add-mask::")),
        "the token is never printed (but masked)"
    );
    let out = parse_outputs(&bed.ws.read("out/output"));
    assert_eq!(out["status"], "succeeded");
    assert_eq!(out["model-version"], "1");
    assert!(bed.comments().is_empty());
    bed.no_violations();
}

#[test]
fn comment_false_writes_nothing_and_a_push_without_a_pull_request_gets_a_commit_comment() {
    let bed = Bed::new();
    bed.run("train", &[("INPUT_COMMENT", "false")])
        .assert_code(0);
    assert!(bed.gh.requests().is_empty(), "{:?}", bed.ops());

    // A push: GitHub knows no pull request of the commit, so the commit gets it;
    // a second push run edits that one.
    let push = [
        ("GITHUB_EVENT_NAME", "push"),
        ("GITHUB_EVENT_PATH", ""),
        ("GITHUB_REF", "refs/heads/main"),
        ("INPUT_PARAM-LIST", "sleep=0"),
    ];
    bed.run("train", &push).assert_code(0);
    bed.run("train", &push).assert_code(0);
    assert_eq!(
        bed.ops(),
        [
            "repos/list-pull-requests-associated-with-commit",
            "repos/list-comments-for-commit",
            "repos/create-commit-comment",
            "repos/list-pull-requests-associated-with-commit",
            "repos/list-comments-for-commit",
            "repos/update-commit-comment",
        ]
    );
    let state = bed.gh.state();
    let cc = state["commit_comments"].as_array().unwrap();
    assert_eq!(cc.len(), 1);
    assert_eq!(cc[0]["commit_id"], SHA);
    assert!(cc[0]["body"]
        .as_str()
        .unwrap()
        .contains("### 🧪 Train — ✅ succeeded"));

    // Once GitHub associates the commit with a pull request, the PR gets it.
    let pr = serde_json::json!({"repository": "acme/churn", "number": 7, "head_sha": SHA});
    control_call(
        "fake GitHub",
        &bed.gh.url,
        "POST",
        "/_fake/pulls",
        Some(&pr.to_string()),
    );
    bed.run("train", &push).assert_code(0);
    let c = bed.comments();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["issue_number"], 7);
    bed.no_violations();
}

#[test]
fn a_very_long_report_is_summarised_under_githubs_limit() {
    let bed = Bed::new();
    // 3000 metrics read from the log: a 3000-row metrics table.
    let mut defs = String::from("  metrics:\n");
    for i in 0..3000 {
        defs.push_str(&format!(
            "    - name: metric-{i:04}\n      regex: \"epoch=[0-9]+ loss=([0-9.]+)\"\n"
        ));
    }
    let cfg = bed.ws.read("example/mlcd.yml").replace(
        "  metrics:                               # read from the log; /opt/ml/output/metrics.json is read too\n    - name: train-loss\n      regex: \"epoch=[0-9]+ loss=([0-9.]+)\"\n",
        &defs,
    );
    assert!(
        cfg.contains("metric-2999"),
        "the example's metrics block moved"
    );
    bed.ws.write("example/mlcd.yml", &cfg);
    bed.run("train", &[]).assert_code(0);
    let body = bed.the_comment();
    assert!(body.len() <= 65_536, "{} bytes", body.len());
    table_rows_are_whole(&body);
    assert!(
        body.contains("| metric-0000 |"),
        "the table's first rows stay"
    );
    assert!(body.contains("more rows, left out to keep this comment under GitHub's limit"));
    assert!(body.contains("| ✓ | accuracy |"), "the gates stay: {body}");
    bed.no_violations();
}
