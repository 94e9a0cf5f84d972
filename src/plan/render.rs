//! Renders a plan for people: aligned text for the terminal and a Markdown
//! table for the step summary and the check run. Both come from the same rows.

use serde_json::Value;

use super::Plan;
use crate::context::Trigger;

/// One line of a plan: a setting and its value as text.
pub type Row = (String, String);

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "none".into(),
        Value::Object(m) if m.is_empty() => "none".into(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(", "),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", scalar(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// What started the run, in words (``repository_dispatch `retrain`: drift``).
pub fn trigger_text(t: &Trigger) -> String {
    match t {
        Trigger::Local => "run by hand (outside GitHub Actions)".into(),
        Trigger::Push => "push".into(),
        Trigger::PullRequest {
            number,
            action,
            merged,
            base_ref,
        } => {
            if *merged {
                format!("pull request #{number} merged into {base_ref}")
            } else {
                format!("pull request #{number} {action}")
            }
        }
        Trigger::WorkflowRun {
            workflow,
            conclusion,
            ..
        } => {
            format!("workflow_run after `{workflow}` ({conclusion})")
        }
        Trigger::WorkflowDispatch { inputs } if inputs.is_empty() => "workflow_dispatch".into(),
        Trigger::WorkflowDispatch { inputs } => format!(
            "workflow_dispatch ({})",
            inputs
                .iter()
                .map(|(k, v)| format!("{k}={}", scalar(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Trigger::RepositoryDispatch { action, reason, .. } => match reason {
            Some(r) => format!("repository_dispatch `{action}`: {r}"),
            None => format!("repository_dispatch `{action}`"),
        },
        Trigger::Schedule { cron } => format!("schedule `{cron}`"),
        Trigger::Other { name } => name.clone(),
    }
}

/// The plan's rows, source first, then the mode's settings in declaration order.
pub fn rows(plan: &Plan) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let s = &plan.source;
    let mut source = String::new();
    if let Some(r) = &s.repository {
        source.push_str(r);
        source.push(' ');
    }
    match &s.commit {
        Some(c) if s.repository.is_some() => {
            source.push_str(&format!("@ {}", &c[..c.len().min(12)]))
        }
        Some(c) => source.push_str(&format!("commit {}", &c[..c.len().min(12)])),
        None => source.push_str("(no commit)"),
    }
    if let Some(b) = &s.branch {
        source.push_str(&format!(" on {b}"));
    }
    if let Some(t) = &s.tag {
        source.push_str(&format!(" tag {t}"));
    }
    rows.push(("source".into(), source));
    rows.push(("trigger".into(), trigger_text(&s.trigger)));
    if let Some(c) = &plan.config {
        rows.push((
            "config".into(),
            format!("{} ({})", c.path, &c.digest[..c.digest.len().min(19)]),
        ));
    }
    let section = serde_json::to_value(plan)
        .ok()
        .and_then(|v| v.get(plan.mode.as_str()).cloned())
        .unwrap_or(Value::Null);
    if let Value::Object(m) = section {
        for (k, v) in m {
            let text = match (k.as_str(), &v) {
                // Commit, image and config show in their own rows: the source
                // is what the identity adds (whose job or endpoint this is).
                ("identity", Value::Object(o)) => scalar(o.get("source").unwrap_or(&Value::Null)),
                ("instance", Value::Object(o)) => format!(
                    "{} → {}",
                    scalar(o.get("requested").unwrap_or(&Value::Null)),
                    scalar(o.get("native").unwrap_or(&Value::Null))
                ),
                ("gates", Value::Object(o)) => o
                    .iter()
                    .map(|(k, v)| format!("{k} {}", scalar(v)))
                    .collect::<Vec<_>>()
                    .join(", "),
                ("metrics", Value::Object(o)) => o
                    .iter()
                    .map(|(k, v)| format!("{k} from /{}/", scalar(v)))
                    .collect::<Vec<_>>()
                    .join(", "),
                ("reference" | "current", Value::Object(o)) => {
                    let at = o
                        .get("path")
                        .or_else(|| o.get("uri"))
                        .unwrap_or(&Value::Null);
                    match o.get("kind").and_then(Value::as_str) {
                        Some("capture") => format!("captured traffic in {}", scalar(at)),
                        _ => scalar(at),
                    }
                }
                ("gitops", Value::Object(o)) => gitops_text(o),
                ("steps", Value::Array(a)) => a
                    .iter()
                    .map(|p| format!("{}%", scalar(p)))
                    .collect::<Vec<_>>()
                    .join(" → "),
                _ => scalar(&v),
            };
            rows.push((k, text));
        }
    }
    rows
}

/// A GitOps plan: where, then one line per commit (file, values, traffic).
fn gitops_text(o: &serde_json::Map<String, Value>) -> String {
    let get = |k: &str| scalar(o.get(k).unwrap_or(&Value::Null));
    let mut s = format!(
        "{} {}@{}:{} ({})",
        if o.get("pull-request") == Some(&Value::Bool(true)) {
            "pull request to"
        } else {
            "commit to"
        },
        get("repo"),
        get("branch"),
        get("file"),
        get("format")
    );
    match o.get("argocd-app") {
        Some(a) => s.push_str(&format!(", followed through Argo CD app {}", scalar(a))),
        None => s.push_str(", not followed (no argocd)"),
    }
    if let Some(r) = o.get("rollout") {
        s.push_str(&format!(", then Rollout {}", scalar(r)));
    }
    for c in o
        .get("commits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let sets = c["sets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(scalar)
            .collect::<Vec<_>>()
            .join("; ");
        s.push_str(&format!(
            "\n  commit {}: traffic {}: {sets}",
            scalar(&c["step"]),
            scalar(&c["traffic"])
        ));
    }
    s
}

/// The headline: what the run will do.
pub fn headline(plan: &Plan) -> String {
    format!(
        "{} `{}` on {}{}",
        plan.mode,
        plan.model_id,
        plan.backend,
        if plan.dry_run {
            " (dry run: nothing is touched)"
        } else {
            ""
        }
    )
}

/// Aligned text for the terminal.
pub fn text(plan: &Plan) -> String {
    let rows = rows(plan);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!("Plan: {}\n", headline(plan));
    for (k, v) in rows {
        out.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    out
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', "<br>")
}

/// A Markdown table of the plan, with the full JSON folded below it.
pub fn markdown(plan: &Plan) -> String {
    let mut out = format!(
        "### mlcd plan: {}\n\n| setting | value |\n|---|---|\n",
        headline(plan)
    );
    for (k, v) in rows(plan) {
        out.push_str(&format!("| {} | {} |\n", md_cell(&k), md_cell(&v)));
    }
    let json = serde_json::to_string_pretty(plan).unwrap_or_default();
    out.push_str(&format!(
        "\n<details><summary>Plan as JSON (the <code>plan</code> output)</summary>\n\n```json\n{json}\n```\n\n</details>\n"
    ));
    out
}
