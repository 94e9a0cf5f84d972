//! A run's own section, from what the [`crate::report::Reporter`] gathered:
//! build from its outputs (image, digest, skipped); train from the job's facts
//! (metrics beside production's with the difference, each gate ✓/✗ with value
//! and threshold, charts); deploy from its outputs and the rollout's summary
//! tables (strategy, traffic steps, smoke results with latencies, the shadow's
//! agreement and p50/p95, rollback). Errors of the run close every section.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{chart, TrainFacts};
use crate::error::Outcome;
use crate::report::commands::{Annotation, Level};
use crate::train::metrics::show;

/// What one run gives its section.
pub struct RunReport<'a> {
    /// `build`, `train` or `deploy`.
    pub mode: &'a str,
    /// How the run ended.
    pub outcome: Outcome,
    /// Its outputs.
    pub outputs: &'a BTreeMap<String, Value>,
    /// Its step summary (Markdown).
    pub summary: &'a str,
    /// Its annotations (errors are shown).
    pub annotations: &'a [Annotation],
    /// Train: the job's facts.
    pub train: Option<&'a TrainFacts>,
    /// The run's page.
    pub run_url: Option<&'a str>,
}

fn verdict(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded => "✅ succeeded",
        Outcome::Planned => "📝 planned",
        Outcome::Submitted => "📤 submitted (not waited for)",
        Outcome::Failed => "❌ failed",
        Outcome::Invalid => "❌ invalid input",
        Outcome::TimedOut => "⏱️ timed out",
        Outcome::Cancelled => "🚫 cancelled",
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn out<'a>(r: &'a RunReport<'_>, name: &str) -> Option<&'a str> {
    r.outputs
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn rows(md: &mut String, rows: &[(&str, String)]) {
    if rows.is_empty() {
        return;
    }
    md.push_str("| | |\n|---|---|\n");
    for (k, v) in rows {
        md.push_str(&format!("| {k} | {} |\n", cell(v)));
    }
    md.push('\n');
}

/// Step-summary headings one level down (`###` → `#####`), so they nest under
/// the section's own heading.
fn nested(summary: &str) -> String {
    summary
        .lines()
        .map(|l| {
            if l.starts_with("###") {
                format!("##{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn errors(md: &mut String, annotations: &[Annotation]) {
    for a in annotations.iter().filter(|a| a.level == Level::Error) {
        let text: Vec<String> = a.message.lines().map(|l| format!("> {l}")).collect();
        md.push_str(&format!("\n> ❌ **{}**\n{}\n", a.title, text.join("\n")));
    }
}

fn build(r: &RunReport<'_>, md: &mut String) {
    let mut rs: Vec<(&str, String)> = Vec::new();
    if let Some(i) = out(r, "image") {
        rs.push(("image", format!("`{i}`")));
    }
    if let Some(d) = out(r, "digest") {
        rs.push(("digest", format!("`{d}`")));
    }
    if let Some(s) = out(r, "skipped") {
        rs.push((
            "skipped",
            if s == "true" {
                "yes: an image with the same build inputs existed, it was re-tagged".into()
            } else {
                "no: built and pushed".into()
            },
        ));
    }
    if let Some(b) = out(r, "build-id") {
        rs.push(("build id", format!("`{b}`")));
    }
    if let Some(t) = out(r, "tags") {
        let tags: Vec<String> = t.lines().map(|t| format!("`{t}`")).collect();
        rs.push(("tags", tags.join(", ")));
    }
    rows(md, &rs);
}

fn diff(this: Option<f64>, prod: Option<f64>) -> String {
    match (this, prod) {
        (Some(a), Some(b)) => {
            let d = a - b;
            let sign = if d > 0.0 {
                "+"
            } else if d < 0.0 {
                "−"
            } else {
                "±"
            };
            let pct = if b != 0.0 {
                format!(" ({sign}{:.1}%)", (d / b * 100.0).abs())
            } else {
                String::new()
            };
            format!("{sign}{}{pct}", show(d.abs()))
        }
        _ => "—".into(),
    }
}

fn train(r: &RunReport<'_>, t: &TrainFacts, md: &mut String) {
    let job = match out(r, "job-url") {
        Some(u) => format!("[`{}`]({u})", t.job),
        None => format!("`{}`", t.job),
    };
    let mut rs = vec![("job", format!("{job} ({})", t.state))];
    if let Some(v) = out(r, "model-version") {
        rs.push(("registered", format!("version {v}")));
    }
    rows(md, &rs);
    let mut names: Vec<&String> = t.metrics.keys().collect();
    for g in &t.gates {
        if !names.contains(&&g.metric) {
            names.push(&g.metric);
        }
    }
    if !names.is_empty() {
        let prod_head = match &t.production {
            Some(p) => format!("production (v{})", p.version),
            None => "production".into(),
        };
        md.push_str(&format!(
            "**Metrics**\n\n| metric | this commit | {prod_head} | difference |\n|---|---|---|---|\n"
        ));
        for m in names {
            let this = t.metrics.get(m).copied();
            let prod = t
                .production
                .as_ref()
                .and_then(|p| p.metrics.get(m).copied());
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                cell(m),
                this.map_or("—".into(), show),
                prod.map_or("—".into(), show),
                diff(this, prod)
            ));
        }
        if t.production.is_none() {
            md.push_str("\nNo version has the `production` alias yet: nothing to compare with.\n");
        }
        md.push('\n');
    }
    if !t.gates.is_empty() {
        md.push_str("**Gates**\n\n| | gate | value | threshold |\n|---|---|---|---|\n");
        for g in &t.gates {
            md.push_str(&format!(
                "| {} | {} | {} | `{}` |\n",
                if g.passed { "✓" } else { "✗" },
                cell(&g.metric),
                g.value.map_or("not reported".into(), show),
                cell(&g.condition)
            ));
        }
        md.push('\n');
    }
    let mut charts = Vec::new();
    for (m, v) in t.curves.iter().filter(|(_, v)| v.len() >= 2).take(3) {
        if let Some(c) = chart::curve(m, v) {
            charts.push(c);
        }
    }
    let key = t
        .gates
        .first()
        .map(|g| g.metric.clone())
        .or_else(|| t.metrics.keys().next().cloned());
    if let Some(k) = key {
        if let Some(c) = chart::versions(&k, &t.recent, t.metrics.get(&k).copied()) {
            charts.push(c);
        }
    }
    if !charts.is_empty() {
        md.push_str(&charts.join("\n\n"));
        md.push_str("\n\n");
    }
}

fn deploy(r: &RunReport<'_>, md: &mut String) {
    let strategy = r
        .outputs
        .get("plan")
        .and_then(|p| p.pointer("/deploy/strategy"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut rs: Vec<(&str, String)> = Vec::new();
    if let Some(e) = out(r, "endpoint") {
        rs.push(("endpoint", format!("`{e}`")));
    }
    if let Some(s) = strategy {
        rs.push(("strategy", s));
    }
    if let Some(t) = out(r, "traffic") {
        rs.push(("traffic to the new version", format!("{t}%")));
    }
    if let Some(p) = out(r, "previous-version") {
        rs.push(("previous version", format!("`{p}`")));
    }
    if let Some(u) = out(r, "url") {
        rs.push(("url", u.to_string()));
    }
    rows(md, &rs);
}

fn monitor(r: &RunReport<'_>, md: &mut String) {
    let mut rs: Vec<(&str, String)> = Vec::new();
    if let Some(s) = out(r, "status") {
        rs.push(("verdict", format!("`{s}`")));
    }
    if let Some(s) = out(r, "drift-share") {
        rs.push(("share of drifted columns", s.to_string()));
    }
    if let Some(c) = out(r, "drifted-columns").filter(|c| *c != "[]") {
        rs.push(("drifted columns", c.to_string()));
    }
    if let Some(p) = out(r, "report-path") {
        rs.push(("report", format!("`{p}`")));
    }
    rows(md, &rs);
}

/// The section's Markdown for this run.
pub fn render(r: &RunReport<'_>) -> String {
    let title = match r.mode {
        "build" => "🏗️ Build",
        "train" => "🧪 Train",
        "deploy" => "🚀 Deploy",
        "monitor" => "📈 Monitor",
        other => other,
    };
    let mut md = format!("### {title} — {}\n\n", verdict(r.outcome));
    match (r.mode, r.train) {
        ("build", _) => build(r, &mut md),
        ("train", Some(t)) => train(r, t, &mut md),
        ("deploy", _) => {
            deploy(r, &mut md);
            md.push_str(&nested(r.summary));
            md.push('\n');
        }
        ("monitor", _) => {
            monitor(r, &mut md);
            md.push_str(&nested(r.summary));
            md.push('\n');
        }
        // A train run that ended before it had a job's facts: its summary.
        _ => {
            md.push_str(&nested(r.summary));
            md.push('\n');
        }
    }
    errors(&mut md, r.annotations);
    if let Some(u) = r.run_url {
        md.push_str(&format!("\n[The run]({u})\n"));
    }
    md.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::comment::{GateRow, VersionMetrics};

    fn report<'a>(
        mode: &'a str,
        outcome: Outcome,
        outputs: &'a BTreeMap<String, Value>,
        summary: &'a str,
        annotations: &'a [Annotation],
        train: Option<&'a TrainFacts>,
    ) -> RunReport<'a> {
        RunReport {
            mode,
            outcome,
            outputs,
            summary,
            annotations,
            train,
            run_url: Some("https://github.com/acme/churn/actions/runs/7"),
        }
    }

    #[test]
    fn a_train_section_compares_with_production_and_shows_each_gate() {
        let facts = TrainFacts {
            job: "churn-7-1".into(),
            state: "Completed".into(),
            metrics: [("accuracy".into(), 0.85), ("loss".into(), 0.3)].into(),
            gates: vec![GateRow {
                metric: "accuracy".into(),
                value: Some(0.85),
                condition: ">= 0.9".into(),
                passed: false,
            }],
            production: Some(VersionMetrics {
                version: "3".into(),
                metrics: [("accuracy".into(), 0.8)].into(),
            }),
            recent: vec![],
            curves: [("loss".into(), vec![0.9, 0.5, 0.3])].into(),
        };
        let outputs =
            BTreeMap::from([("job-url".to_string(), Value::from("http://jobs/churn-7-1"))]);
        let md = render(&report(
            "train",
            Outcome::Failed,
            &outputs,
            "",
            &[],
            Some(&facts),
        ));
        assert!(md.starts_with("### 🧪 Train — ❌ failed"), "{md}");
        assert!(md.contains("[`churn-7-1`](http://jobs/churn-7-1) (Completed)"));
        assert!(md.contains("| metric | this commit | production (v3) | difference |"));
        assert!(
            md.contains("| accuracy | 0.85 | 0.8 | +0.05 (+6.2%) |"),
            "{md}"
        );
        assert!(md.contains("| loss | 0.3 | — | — |"));
        assert!(md.contains("| ✗ | accuracy | 0.85 | `>= 0.9` |"));
        assert!(md.contains("xychart-beta\n    title \"loss over training\""));
    }

    #[test]
    fn a_deploy_section_carries_the_rollout_tables_and_the_error() {
        let outputs = BTreeMap::from([
            ("endpoint".to_string(), Value::from("churn")),
            ("traffic".to_string(), Value::from("0")),
            (
                "plan".to_string(),
                serde_json::json!({"deploy": {"strategy": "canary"}}),
            ),
        ]);
        let summary =
            "### Deploy `v2` → `churn` (canary)\n\n| step | traffic |\n|---|---|\n| 1 | 10% |\n";
        let errs = [Annotation {
            level: Level::Error,
            title: "mlcd: failed".into(),
            message: "smoke tests failed; rolled back: v1 serves all the traffic again".into(),
            location: None,
        }];
        let md = render(&report(
            "deploy",
            Outcome::Failed,
            &outputs,
            summary,
            &errs,
            None,
        ));
        assert!(md.contains("| strategy | canary |"));
        assert!(md.contains("##### Deploy `v2` → `churn` (canary)"));
        assert!(md.contains("| 1 | 10% |"));
        assert!(md.contains("> smoke tests failed; rolled back: v1 serves all the traffic again"));
    }

    #[test]
    fn a_build_section_names_image_digest_and_whether_it_was_skipped() {
        let outputs = BTreeMap::from([
            ("image".to_string(), Value::from("r/churn@sha256:ab")),
            ("digest".to_string(), Value::from("sha256:ab")),
            ("skipped".to_string(), Value::from("true")),
        ]);
        let md = render(&report(
            "build",
            Outcome::Succeeded,
            &outputs,
            "",
            &[],
            None,
        ));
        assert!(md.contains("| image | `r/churn@sha256:ab` |"));
        assert!(md.contains("| skipped | yes: an image with the same build inputs existed"));
    }

    #[test]
    fn a_monitor_section_gives_the_verdict_and_the_drifted_columns() {
        let outputs = BTreeMap::from([
            ("status".to_string(), Value::from("drifted")),
            ("drift-share".to_string(), Value::from("0.5")),
            (
                "drifted-columns".to_string(),
                Value::from("[\"tenure_months\",\"monthly_charges\"]"),
            ),
            (
                "report-path".to_string(),
                Value::from(".mlcd/monitor/churn.html"),
            ),
        ]);
        let summary = "| column | type |\n|---|---|\n| tenure_months | numeric |\n";
        let md = render(&report(
            "monitor",
            Outcome::Succeeded,
            &outputs,
            summary,
            &[],
            None,
        ));
        assert!(md.starts_with("### 📈 Monitor"), "{md}");
        assert!(md.contains("| verdict | `drifted` |"), "{md}");
        assert!(md.contains("| share of drifted columns | 0.5 |"), "{md}");
        assert!(md.contains("tenure_months"), "{md}");
        assert!(
            md.contains("| report | `.mlcd/monitor/churn.html` |"),
            "{md}"
        );
    }
}
