//! Runs the Mermaid scripts under tests/mermaid/ (the real npm `mermaid` parser,
//! and headless Chromium for rendering) on Markdown, for the tests that check the
//! report comment's charts. Needs `scripts/testbed up npm chromium`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The node_modules holding mermaid, jsdom and playwright-core.
pub fn node_modules() -> String {
    let dir = std::env::var("MLCD_TESTBED_NODE_MODULES")
        .unwrap_or_else(|_| "/var/cache/mlcd-testbed/npm/node_modules".into());
    assert!(
        Path::new(&dir).join("mermaid/package.json").is_file(),
        "npm mermaid is not installed in {dir}: run `scripts/testbed up npm` (or set MLCD_TESTBED_NODE_MODULES)"
    );
    dir
}

/// Runs `tests/mermaid/<script>` on `markdown` (written to a temp file) with
/// `extra` arguments: the exit code and the JSON it printed.
pub fn run_script(script: &str, markdown: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("comment.md");
    std::fs::write(&md, markdown).unwrap();
    let out = Command::new("node")
        .arg(root().join("tests/mermaid").join(script))
        .arg(&md)
        .args(extra)
        .env("MLCD_TESTBED_NODE_MODULES", node_modules())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "{script} printed no JSON (exit {:?}): {stdout}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

/// Parses every ```mermaid block of `markdown` with the Mermaid parser; panics
/// naming the chart that does not parse. Returns how many there were.
pub fn assert_charts_parse(markdown: &str) -> usize {
    let (code, json) = run_script("check.mjs", markdown, &[]);
    assert_eq!(code, 0, "a chart does not parse: {json}\n{markdown}");
    let charts = json["charts"].as_array().unwrap();
    for c in charts {
        assert_eq!(c["type"], "xychart", "{json}");
    }
    charts.len()
}
