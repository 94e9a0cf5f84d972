//! The report comment's Mermaid charts, checked by the real thing: every chart a
//! train section holds parses with npm `mermaid` 11 (the parser GitHub's renderer
//! is built on), a broken one is refused (so the check can fail), and the charts
//! render in headless Chromium to a screenshot kept under
//! target/test-artifacts/ (the README's picture comes from it).
//!
//! Needs `scripts/testbed up npm chromium`.

#[path = "common/mermaid.rs"]
mod mermaid;

use std::collections::BTreeMap;
use std::path::PathBuf;

use mlcd::error::Outcome;
use mlcd::report::comment::body::{self, Header, Section};
use mlcd::report::comment::sections::{render, RunReport};
use mlcd::report::comment::{GateRow, TrainFacts, VersionMetrics};

fn train_section() -> String {
    let loss: Vec<f64> = (1..=200)
        .map(|e| 0.7 * (-(e as f64) / 40.0).exp() + 0.3)
        .collect();
    let facts = TrainFacts {
        job: "churn-8123-1-3f2a".into(),
        state: "Completed".into(),
        metrics: [("accuracy".into(), 0.9125), ("loss".into(), 0.2871)].into(),
        gates: vec![GateRow {
            metric: "accuracy".into(),
            value: Some(0.9125),
            condition: ">= 0.8".into(),
            passed: true,
        }],
        production: Some(VersionMetrics {
            version: "4".into(),
            metrics: [("accuracy".into(), 0.8975), ("loss".into(), 0.301)].into(),
        }),
        recent: (1..=4)
            .map(|v| VersionMetrics {
                version: v.to_string(),
                metrics: [("accuracy".into(), 0.85 + v as f64 * 0.012)].into(),
            })
            .collect(),
        curves: [
            ("train-loss".to_string(), loss),
            (
                "train-accuracy".to_string(),
                vec![0.61, 0.74, 0.83, 0.88, 0.9],
            ),
        ]
        .into(),
    };
    let outputs = BTreeMap::from([
        (
            "job-url".to_string(),
            serde_json::Value::from("https://github.com/acme/churn/actions/runs/8123"),
        ),
        ("model-version".to_string(), serde_json::Value::from("5")),
    ]);
    let section = render(&RunReport {
        mode: "train",
        outcome: Outcome::Succeeded,
        outputs: &outputs,
        summary: "",
        annotations: &[],
        train: Some(&facts),
        run_url: Some("https://github.com/acme/churn/actions/runs/8123"),
    });
    body::assemble(
        &Header {
            model: "churn",
            commit: "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
            commit_url: None,
            run_url: None,
        },
        None,
        Section {
            mode: "train".into(),
            commit: "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into(),
            body: section,
        },
    )
}

#[test]
fn every_chart_of_a_train_section_parses_with_mermaid_11() {
    let md = train_section();
    assert_eq!(
        mermaid::assert_charts_parse(&md),
        3,
        "two curves and the registry chart: {md}"
    );
    let (_, json) = mermaid::run_script("check.mjs", &md, &[]);
    assert!(
        json["mermaid"].as_str().unwrap().starts_with("11."),
        "{json}"
    );
}

#[test]
fn a_broken_chart_is_refused_by_the_parser() {
    let md = "```mermaid\nxychart-beta\n    x-axis [\"v1\", \"v2\"]\n    bar [0.8, 0.9\n```\n";
    let (code, json) = mermaid::run_script("check.mjs", md, &[]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["charts"][0]["ok"], false);
    assert!(
        json["charts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("Parse error"),
        "{json}"
    );
}

#[test]
fn the_charts_render_in_headless_chromium_and_a_screenshot_is_kept() {
    let browser =
        std::env::var("MLCD_TESTBED_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&browser).is_file(),
        "no Chromium at {browser}: run `scripts/testbed up chromium` (or set MLCD_TESTBED_CHROMIUM)"
    );
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("pr-comment-charts.png");
    let _ = std::fs::remove_file(&png);
    let (code, json) =
        mermaid::run_script("render.mjs", &train_section(), &[png.to_str().unwrap()]);
    assert_eq!(code, 0, "{json}");
    let charts = json["charts"].as_array().unwrap();
    assert_eq!(charts.len(), 3, "{json}");
    // Drawn, not just parsed: each curve is one line, the registry chart has a
    // bar per version and one for this commit.
    assert_eq!(charts[0]["lines"], 1, "{json}");
    assert_eq!(charts[1]["lines"], 1, "{json}");
    assert_eq!(charts[2]["bars"], 5, "{json}");
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        bytes.len() > 10_000,
        "a real picture, {} bytes",
        bytes.len()
    );
    eprintln!("screenshot: {}", png.display());
}
