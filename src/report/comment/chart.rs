//! Mermaid `xychart-beta` charts GitHub renders itself in a comment: a training
//! metric's curve (the values the metric regexes read from the log, in order)
//! and a metric across the registry's last versions beside this run's value.

use super::VersionMetrics;
use crate::train::metrics::show;

/// At most this many points per chart: longer curves are thinned evenly (the
/// first and last points always kept).
pub const MAX_POINTS: usize = 60;

/// Text safe inside a Mermaid double-quoted string.
fn quoted(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| match c {
            '"' | '\n' | '\r' | '`' | '[' | ']' | ';' => ' ',
            c => c,
        })
        .collect();
    format!("\"{}\"", clean.trim())
}

/// Indices of at most `max` points spread evenly over `n`, first and last included.
fn thin(n: usize, max: usize) -> Vec<usize> {
    if n <= max || max < 2 {
        return (0..n).collect();
    }
    (0..max).map(|i| i * (n - 1) / (max - 1)).collect()
}

/// A strong colour for the plot (Mermaid's default is a pale lavender).
const THEME: &str =
    r##"%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": "#1f6feb"}}}}%%"##;

fn fenced(lines: &[String]) -> String {
    format!("```mermaid\n{THEME}\n{}\n```", lines.join("\n"))
}

fn finite(v: &[f64]) -> bool {
    v.iter().all(|x| x.is_finite())
}

/// A line chart of one metric's values in log order; none for fewer than two points.
pub fn curve(metric: &str, values: &[f64]) -> Option<String> {
    if values.len() < 2 || !finite(values) {
        return None;
    }
    let idx = thin(values.len(), MAX_POINTS);
    let ys: Vec<String> = idx.iter().map(|i| show(values[*i])).collect();
    Some(fenced(&[
        "xychart-beta".into(),
        format!("    title {}", quoted(&format!("{metric} over training"))),
        // A numeric axis: the thinned points stay evenly spread over the steps.
        format!("    x-axis \"log step\" 1 --> {}", values.len()),
        format!("    y-axis {}", quoted(metric)),
        format!("    line [{}]", ys.join(", ")),
    ]))
}

/// A bar chart of `metric` across the registry's last versions (oldest first)
/// and this run's value; none when fewer than two values are known.
pub fn versions(metric: &str, recent: &[VersionMetrics], this_run: Option<f64>) -> Option<String> {
    let mut xs: Vec<String> = Vec::new();
    let mut ys: Vec<f64> = Vec::new();
    for v in recent {
        if let Some(m) = v.metrics.get(metric) {
            xs.push(quoted(&format!("v{}", v.version)));
            ys.push(*m);
        }
    }
    if let Some(m) = this_run {
        xs.push(quoted("this commit"));
        ys.push(m);
    }
    if ys.len() < 2 || !finite(&ys) {
        return None;
    }
    let keep = ys.len().saturating_sub(MAX_POINTS);
    let ys = &ys[keep..];
    // Bars start at zero when every value is positive, so their heights compare.
    let max = ys.iter().copied().fold(f64::MIN, f64::max);
    let axis = if max > 0.0 && ys.iter().all(|v| *v >= 0.0) {
        format!(" 0 --> {}", show(max))
    } else {
        String::new()
    };
    let ys: Vec<String> = ys.iter().map(|v| show(*v)).collect();
    Some(fenced(&[
        "xychart-beta".into(),
        format!(
            "    title {}",
            quoted(&format!("{metric} of the last registry versions"))
        ),
        format!("    x-axis [{}]", xs[keep..].join(", ")),
        format!("    y-axis {}{axis}", quoted(metric)),
        format!("    bar [{}]", ys.join(", ")),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_curve_is_an_xychart_with_one_point_per_log_value() {
        let c = curve("loss", &[0.9, 0.5, 0.25]).unwrap();
        assert_eq!(
            c,
            format!("```mermaid\n{THEME}\nxychart-beta\n    title \"loss over training\"\n    x-axis \"log step\" 1 --> 3\n    y-axis \"loss\"\n    line [0.9, 0.5, 0.25]\n```")
        );
        assert!(curve("loss", &[0.9]).is_none());
        assert!(curve("loss", &[0.9, f64::NAN]).is_none());
    }

    #[test]
    fn a_long_curve_is_thinned_keeping_its_ends() {
        let values: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let c = curve("loss", &values).unwrap();
        let line = c
            .lines()
            .find(|l| l.trim_start().starts_with("line"))
            .unwrap();
        assert_eq!(line.matches(',').count(), MAX_POINTS - 1);
        assert!(line.contains("[0, ") && line.ends_with(", 999]"));
    }

    #[test]
    fn versions_chart_names_each_version_and_this_commit() {
        let v = |n: &str, acc: f64| VersionMetrics {
            version: n.into(),
            metrics: [("accuracy".to_string(), acc)].into(),
        };
        let c = versions("accuracy", &[v("1", 0.8), v("2", 0.85)], Some(0.9)).unwrap();
        assert!(
            c.contains("x-axis [\"v1\", \"v2\", \"this commit\"]"),
            "{c}"
        );
        assert!(c.contains("bar [0.8, 0.85, 0.9]"));
        assert!(c.contains("y-axis \"accuracy\" 0 --> 0.9"), "{c}");
        assert!(versions("accuracy", &[], Some(0.9)).is_none());
        assert_eq!(quoted("a \"b\" [c]"), "\"a  b   c\"");
    }
}
