//! The smoke-test rows of the step summary.

use crate::report::Reporter;
use crate::serve::verify::SmokeResult;

pub(super) fn passed(r: &[SmokeResult]) -> String {
    if r.is_empty() {
        return "none configured".into();
    }
    let ok = r.iter().filter(|x| x.passed).count();
    if ok == r.len() {
        format!("✅ {ok}/{}", r.len())
    } else {
        format!("❌ {ok}/{}", r.len())
    }
}

pub(super) fn failures(r: &[SmokeResult]) -> String {
    r.iter()
        .filter(|x| !x.passed)
        .map(|x| format!("{}: {}", x.name, x.reason.as_deref().unwrap_or("failed")))
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn summary_smoke(reporter: &mut Reporter, results: &[SmokeResult]) {
    if results.is_empty() {
        return;
    }
    let mut md = String::from("\n#### Smoke tests\n\n| request | version | status | latency | result |\n|---|---|---|---|---|\n");
    for r in results {
        md.push_str(&format!(
            "| `{}` | `{}` | {} | {:.1} ms | {} |\n",
            r.name,
            r.version,
            r.status,
            r.latency_ms,
            if r.passed {
                "✅ pass".to_string()
            } else {
                format!(
                    "❌ {}",
                    r.reason
                        .as_deref()
                        .unwrap_or("failed")
                        .trim()
                        .replace('|', "\\|")
                        .replace('\n', " ")
                )
            }
        ));
    }
    reporter.add_summary(&md);
}
