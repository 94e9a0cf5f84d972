//! Training metrics: regexes over log lines (SageMaker MetricDefinitions), the
//! gates a model must pass, and the champion/challenger comparison — the same
//! for every backend.

use std::collections::BTreeMap;

use regex::Regex;

use crate::config::types::Better;
use crate::config::values::Gate;

/// At most this many values of one metric are kept for its curve.
pub const MAX_CURVE: usize = 100_000;

/// Metric definitions compiled once; the last match of each wins, as SageMaker
/// reports a metric's final value.
pub struct Scanner {
    defs: Vec<(String, Regex)>,
    found: BTreeMap<String, f64>,
    curves: BTreeMap<String, Vec<f64>>,
}

impl Scanner {
    /// Compiles the definitions; a bad regex names its metric.
    pub fn new(defs: &BTreeMap<String, String>) -> Result<Scanner, String> {
        let mut out = Vec::new();
        for (name, re) in defs {
            let r = Regex::new(re).map_err(|e| {
                format!("metric `{name}`: `{re}` is not a valid regular expression: {e}")
            })?;
            if r.captures_len() < 2 {
                return Err(format!(
                    "metric `{name}`: `{re}` has no group; its first group must capture the value, like `loss=([0-9.]+)`"
                ));
            }
            out.push((name.clone(), r));
        }
        Ok(Scanner {
            defs: out,
            found: BTreeMap::new(),
            curves: BTreeMap::new(),
        })
    }

    /// Reads one log line.
    pub fn scan(&mut self, line: &str) {
        for (name, re) in &self.defs {
            if let Some(v) = re
                .captures_iter(line)
                .last()
                .and_then(|c| c.get(1))
                .and_then(|m| m.as_str().parse::<f64>().ok())
                .filter(|v| v.is_finite())
            {
                self.found.insert(name.clone(), v);
                let curve = self.curves.entry(name.clone()).or_default();
                // Bounded: a chart shows at most a few dozen points anyway.
                if curve.len() < MAX_CURVE {
                    curve.push(v);
                }
            }
        }
    }

    /// Each metric's values in log order (the first [`MAX_CURVE`]): the curve
    /// the report comment charts.
    pub fn curves(&self) -> &BTreeMap<String, Vec<f64>> {
        &self.curves
    }

    /// The last value of each metric seen so far.
    pub fn found(&self) -> &BTreeMap<String, f64> {
        &self.found
    }
}

/// One gate's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The metric.
    pub metric: String,
    /// The job's value, if it reported one.
    pub value: Option<f64>,
    /// What it had to satisfy (`>= 0.9`, or `>= 0.87 (champion v3)`).
    pub condition: String,
    /// Whether it passed.
    pub passed: bool,
}

/// Checks every gate against the metrics; a metric the job did not report fails
/// its gate.
pub fn check_gates(
    gates: &BTreeMap<String, Gate>,
    metrics: &BTreeMap<String, f64>,
) -> Vec<Verdict> {
    gates
        .iter()
        .map(|(metric, gate)| {
            let value = metrics.get(metric).copied();
            Verdict {
                metric: metric.clone(),
                value,
                condition: gate.to_string(),
                passed: value.is_some_and(|v| gate.passes(v)),
            }
        })
        .collect()
}

/// The challenger against the champion on one metric: it must be at least as good.
pub fn against_champion(
    metric: &str,
    better: Better,
    challenger: Option<f64>,
    champion: f64,
    champion_name: &str,
) -> Verdict {
    let (op, passed) = match better {
        Better::Higher => (">=", challenger.is_some_and(|c| c >= champion)),
        Better::Lower => ("<=", challenger.is_some_and(|c| c <= champion)),
    };
    Verdict {
        metric: metric.to_string(),
        value: challenger,
        condition: format!("{op} {champion} ({champion_name})"),
        passed,
    }
}

/// A metric value as a person reads it.
pub fn show(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_last_match_of_each_metric_wins() {
        let mut s = Scanner::new(&defs(&[
            ("loss", "loss=([0-9.]+)"),
            ("acc", "acc=([0-9.]+)"),
        ]))
        .unwrap();
        for l in [
            "epoch=1 loss=0.9",
            "epoch=2 loss=0.5 acc=0.7",
            "noise",
            "epoch=3 loss=0.25",
        ] {
            s.scan(l);
        }
        assert_eq!(s.found().get("loss"), Some(&0.25));
        assert_eq!(s.found().get("acc"), Some(&0.7));
        // The curve keeps every value in log order.
        assert_eq!(s.curves()["loss"], [0.9, 0.5, 0.25]);
        assert_eq!(s.curves()["acc"], [0.7]);
    }

    #[test]
    fn a_regex_without_a_group_or_invalid_is_refused_naming_the_metric() {
        let e = Scanner::new(&defs(&[("loss", "loss=[0-9.]+")]))
            .err()
            .unwrap();
        assert!(e.contains("metric `loss`") && e.contains("group"), "{e}");
        let e = Scanner::new(&defs(&[("acc", "acc=(")])).err().unwrap();
        assert!(
            e.contains("metric `acc`") && e.contains("not a valid"),
            "{e}"
        );
    }

    #[test]
    fn gates_fail_on_a_low_or_missing_metric() {
        let gates: BTreeMap<String, Gate> = [
            ("accuracy".to_string(), ">= 0.9".parse().unwrap()),
            ("loss".to_string(), "< 0.3".parse().unwrap()),
            ("auc".to_string(), "> 0.5".parse().unwrap()),
        ]
        .into();
        let metrics = [("accuracy".to_string(), 0.85), ("loss".to_string(), 0.2)].into();
        let v = check_gates(&gates, &metrics);
        let by = |m: &str| v.iter().find(|x| x.metric == m).unwrap().clone();
        assert!(!by("accuracy").passed);
        assert_eq!(by("accuracy").value, Some(0.85));
        assert!(by("loss").passed);
        assert!(!by("auc").passed && by("auc").value.is_none());
    }

    #[test]
    fn the_champion_comparison_follows_the_better_direction() {
        assert!(against_champion("acc", Better::Higher, Some(0.9), 0.9, "v1").passed);
        assert!(!against_champion("acc", Better::Higher, Some(0.89), 0.9, "v1").passed);
        assert!(against_champion("loss", Better::Lower, Some(0.2), 0.3, "v1").passed);
        assert!(!against_champion("loss", Better::Lower, Some(0.4), 0.3, "v1").passed);
        assert!(!against_champion("loss", Better::Lower, None, 0.3, "v1").passed);
    }

    #[test]
    fn values_print_without_float_noise() {
        assert_eq!(show(0.8125), "0.8125");
        assert_eq!(show(3.0), "3");
        assert_eq!(show(0.1 + 0.2), "0.3");
    }
}
