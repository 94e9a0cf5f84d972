//! What a monitoring run shows people: the verdict, the per-column table for the
//! step summary (column, type, method, score, threshold, drifted, rows), and a
//! self-contained HTML report with an inline SVG histogram of reference against
//! current for every drifted column.

use std::fmt::Write as _;

use super::drift::{Chart, ColumnDrift};
use super::quality::Quality;
use super::Analysis;

/// The verdict of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No drift, quality fine.
    Ok,
    /// The dataset drifted.
    Drifted,
    /// The model's metric fell below the production version's.
    Degraded,
    /// Too little data (or an unscorable column) to say.
    Inconclusive,
}

impl Status {
    /// The `status` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Drifted => "drifted",
            Status::Degraded => "degraded",
            Status::Inconclusive => "inconclusive",
        }
    }
}

/// The status from the analysis and the quality check: inconclusive first (no
/// verdict is a false "ok"), then degraded, then drifted.
pub fn status(a: &Analysis, q: Option<&Quality>) -> Status {
    if a.inconclusive.is_some() {
        Status::Inconclusive
    } else if q.is_some_and(|q| q.degraded) {
        Status::Degraded
    } else if a.drifted {
        Status::Drifted
    } else {
        Status::Ok
    }
}

/// A score with enough digits to compare with its threshold.
pub fn num(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    if x.abs() < 1e-4 {
        format!("{x:.3e}")
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// One line: the verdict in words.
pub fn headline(s: Status, a: &Analysis, q: Option<&Quality>) -> String {
    let drifted = a.columns.iter().filter(|c| c.drifted).count();
    let cols = format!(
        "{drifted} of {} columns drifted (share {}, threshold reached: {})",
        a.columns.len(),
        num(a.drift_share),
        if a.drifted { "yes" } else { "no" }
    );
    match s {
        Status::Inconclusive => format!(
            "inconclusive: {}",
            a.inconclusive.as_deref().unwrap_or("no verdict")
        ),
        Status::Degraded => {
            let q = q.expect("degraded has a quality result");
            format!(
                "degraded: {} {} on recent data against {} for the production version; {cols}",
                q.metric,
                num(q.value),
                q.baseline.map(num).unwrap_or_default()
            )
        }
        Status::Drifted => format!("drifted: {cols}"),
        Status::Ok => format!("ok: {cols}"),
    }
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The step summary's Markdown.
pub fn markdown(
    s: Status,
    a: &Analysis,
    q: Option<&Quality>,
    reference: &str,
    current: &str,
    report_path: &str,
) -> String {
    let mut out = format!("### mlcd monitor: {}\n\n", md(&headline(s, a, q)));
    let _ = writeln!(
        out,
        "Reference `{}` ({} rows) against current `{}` ({} rows).\n",
        md(reference),
        a.reference_rows,
        md(current),
        a.current_rows
    );
    if !a.columns.is_empty() {
        out.push_str("| column | type | method | score | threshold | drifted | rows (reference / current) |\n|---|---|---|---|---|---|---|\n");
        for c in &a.columns {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} | {} / {} |",
                md(&c.column),
                c.kind,
                c.method,
                num(c.score),
                num(c.threshold),
                if c.drifted { "**yes**" } else { "no" },
                c.reference_rows,
                c.current_rows
            );
        }
        out.push('\n');
        for c in a.columns.iter().filter(|c| c.note.is_some()) {
            let _ = writeln!(
                out,
                "- `{}`: {}",
                md(&c.column),
                md(c.note.as_deref().unwrap_or(""))
            );
        }
    }
    if let Some(q) = q {
        let _ = writeln!(
            out,
            "\n| quality | recent data | production{} | tolerance | degraded |\n|---|---|---|---|---|\n| {} | {} ({} rows) | {} | {} | {} |",
            q.baseline_version.as_deref().map(|v| format!(" (v{v})")).unwrap_or_default(),
            q.metric,
            num(q.value),
            q.rows,
            q.baseline.map(num).unwrap_or_else(|| "—".into()),
            num(q.tolerance),
            if q.degraded { "**yes**" } else { "no" }
        );
        if let Some(n) = &q.note {
            let _ = writeln!(out, "\n{}", md(n));
        }
    }
    let _ = writeln!(
        out,
        "\nHistograms of every drifted column: `{report_path}` (the HTML report)."
    );
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG bar chart of reference (grey) against current (orange) shares.
pub fn svg(title: &str, chart: &Chart) -> String {
    let n = chart.labels.len().max(1);
    let (w, h, left, bottom, top) = (640.0, 240.0, 40.0, 60.0, 24.0);
    let plot_h = h - bottom - top;
    let slot = (w - left - 10.0) / n as f64;
    let max = chart
        .reference
        .iter()
        .chain(&chart.current)
        .copied()
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(title)
    );
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{y}" x2="{x2}" y2="{y}" stroke="#444"/>"##,
        y = h - bottom,
        x2 = w - 10.0
    );
    let _ = write!(
        s,
        r##"<text x="{left}" y="14" font-size="11" fill="#555">share of rows (max {})</text>"##,
        num(max)
    );
    for (i, label) in chart.labels.iter().enumerate() {
        let x = left + i as f64 * slot;
        let bw = slot * 0.4;
        for (j, (v, color, name)) in [
            (chart.reference[i], "#8c8c8c", "reference"),
            (chart.current[i], "#e8710a", "current"),
        ]
        .into_iter()
        .enumerate()
        {
            let bh = v / max * plot_h;
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{} {name}: {}</title></rect>"#,
                x + slot * 0.1 + j as f64 * bw,
                h - bottom - bh,
                bw,
                bh,
                esc(label),
                num(v)
            );
        }
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#333" transform="rotate(45 {:.1} {:.1})">{}</text>"##,
            x + slot * 0.3,
            h - bottom + 12.0,
            x + slot * 0.3,
            h - bottom + 12.0,
            esc(&label.chars().take(14).collect::<String>())
        );
    }
    s.push_str("</svg>");
    s
}

/// The HTML report: verdict, table, and a histogram per drifted column.
pub fn html(
    model: &str,
    s: Status,
    a: &Analysis,
    q: Option<&Quality>,
    reference: &str,
    current: &str,
) -> String {
    let mut out = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>mlcd monitor: {m}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.yes{{color:#b00;font-weight:bold}}\
         .legend span{{display:inline-block;width:1em;height:1em;margin:0 .3em 0 1em;vertical-align:middle}}</style></head><body>\
         <h1>mlcd monitor: {m}</h1><p><strong>{h}</strong></p><p>Reference <code>{r}</code> ({rr} rows) against current <code>{c}</code> ({cr} rows).</p>",
        m = esc(model),
        h = esc(&headline(s, a, q)),
        r = esc(reference),
        c = esc(current),
        rr = a.reference_rows,
        cr = a.current_rows
    );
    if !a.columns.is_empty() {
        out.push_str("<table><tr><th>column</th><th>type</th><th>method</th><th>score</th><th>threshold</th><th>drifted</th><th>rows (reference / current)</th></tr>");
        for c in &a.columns {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{} / {}</td></tr>",
                esc(&c.column),
                c.kind,
                c.method,
                num(c.score),
                num(c.threshold),
                if c.drifted { "yes" } else { "no" },
                if c.drifted { "yes" } else { "no" },
                c.reference_rows,
                c.current_rows
            );
        }
        out.push_str("</table>");
    }
    if let Some(q) = q {
        let _ = write!(
            out,
            "<h2>Model quality</h2><p>{} on recent data: {} ({} rows); production: {}; tolerance {}; degraded: <span class=\"{}\">{}</span></p>",
            esc(&q.metric),
            num(q.value),
            q.rows,
            q.baseline.map(num).unwrap_or_else(|| "none recorded".into()),
            num(q.tolerance),
            if q.degraded { "yes" } else { "no" },
            if q.degraded { "yes" } else { "no" }
        );
    }
    let drifted: Vec<&ColumnDrift> = a.columns.iter().filter(|c| c.drifted).collect();
    if !drifted.is_empty() {
        out.push_str("<h2>Drifted columns</h2><p class=\"legend\"><span style=\"background:#8c8c8c\"></span>reference<span style=\"background:#e8710a\"></span>current</p>");
        for c in drifted {
            let _ = write!(
                out,
                "<h3>{}</h3><p>{} {} = {} (threshold {})</p>",
                esc(&c.column),
                c.kind,
                c.method,
                num(c.score),
                num(c.threshold)
            );
            if let Some(ch) = &c.chart {
                out.push_str(&svg(
                    &format!("{}: reference against current", c.column),
                    ch,
                ));
            }
        }
    }
    out.push_str("</body></html>\n");
    out
}
