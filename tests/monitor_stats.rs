//! The drift statistics against scipy: tests/monitor/make_expected.py (seeded
//! data, scipy's functions applied the way Evidently applies them) wrote the
//! CSV samples and the expected numbers in tests/monitor/fixtures/; here mlcd
//! reads the same CSV files through its own reader and must find the same
//! method, score (within the method's tolerance) and verdict for every column.

use std::collections::BTreeMap;

use mlcd::config::values::DriftMethod;
use mlcd::monitor::column::{Kind, Sample};
use mlcd::monitor::drift::{self, Pair};
use mlcd::monitor::read::{self, Format, Positional};
use mlcd::monitor::stats;
use mlcd::monitor::{analyse, Settings};
use serde_json::Value;

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/monitor/fixtures")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
        .unwrap()
}

fn sample(name: &str) -> Sample {
    let mut s = Sample::new(&BTreeMap::new());
    let f = std::fs::File::open(fixtures().join(name)).unwrap();
    read::read_into(&mut s, f, Format::Csv, name, &Positional::default()).unwrap();
    s
}

fn settings() -> Settings {
    Settings {
        columns: vec![],
        exclude: vec![],
        types: BTreeMap::new(),
        method: DriftMethod::Auto,
        methods: BTreeMap::new(),
        threshold: None,
        thresholds: BTreeMap::new(),
        drift_share: 0.5,
        min_rows: 30,
        not_features: vec![],
    }
}

/// How close mlcd must be: p-values and distances are computed the same way as
/// scipy does, in f64, so they agree to rounding (relative 1e-9, or 1e-12
/// absolute near 0); scipy's exact KS p-value is a recursion whose rounding
/// differs slightly, so 1e-7.
fn close(method: &str, got: f64, want: f64) -> bool {
    let tol = match method {
        "ks" => 1e-7,
        _ => 1e-9,
    };
    (got - want).abs() <= tol * want.abs().max(1.0) || (got - want).abs() < 1e-12
}

fn check_set(label: &str) {
    let exp = expected();
    let set = &exp["sets"][label];
    let reference = sample(&format!("{label}-reference.csv"));
    let current = sample(&format!("{label}-current.csv"));
    assert_eq!(reference.rows, set["reference_rows"].as_u64().unwrap());
    assert_eq!(current.rows, set["current_rows"].as_u64().unwrap());

    let a = analyse(&reference, &current, &settings()).unwrap();
    let cols = set["columns"].as_object().unwrap();
    assert_eq!(a.columns.len(), cols.len());
    let mut failures = Vec::new();
    for c in &a.columns {
        let want = &cols[&c.column];
        let kind = if c.kind == Kind::Numeric {
            "numeric"
        } else {
            "categorical"
        };
        assert_eq!(kind, want["type"], "{label} {}: type", c.column);
        assert_eq!(
            c.method.as_str(),
            want["auto"],
            "{label} {}: auto method",
            c.column
        );
        let ws = want["auto_score"].as_f64().unwrap();
        if !close(c.method.as_str(), c.score, ws) {
            failures.push(format!(
                "{label} {} auto {}: mlcd {} scipy {ws}",
                c.column, c.method, c.score
            ));
        }
        assert_eq!(
            c.drifted, want["auto_drifted"],
            "{label} {}: drifted",
            c.column
        );

        // Every method that suits the column, not only the one auto picks.
        let pair = Pair {
            name: &c.column,
            kind: c.kind,
            reference: reference.column(&c.column).unwrap(),
            current: current.column(&c.column).unwrap(),
        };
        for (m, wv) in want["methods"].as_object().unwrap() {
            let method: DriftMethod = m.parse().unwrap();
            let got = drift::score(&pair, method).unwrap();
            let wv = wv.as_f64().unwrap();
            if !close(m, got, wv) {
                failures.push(format!("{label} {} {m}: mlcd {got} scipy {wv}", c.column));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "differences from scipy:\n{}",
        failures.join("\n")
    );
    // The dataset verdict: Evidently's share rule.
    let drifted = a.columns.iter().filter(|c| c.drifted).count();
    assert_eq!(a.drift_share, drifted as f64 / a.columns.len() as f64);
    assert_eq!(a.drifted, a.drift_share >= 0.5);
}

#[test]
fn small_reference_uses_ks_chi_squared_and_z_as_evidently_and_agrees_with_scipy() {
    check_set("small");
}

#[test]
fn large_reference_uses_wasserstein_and_jensen_shannon_as_evidently_and_agrees_with_scipy() {
    check_set("large");
}

fn lattice(n: usize, mult: u64, shift: f64) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n as u64)
        .map(|i| ((i * mult) % 10007) as f64 / 10007.0 + shift)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

#[test]
fn ks_p_values_match_scipy_exact_and_asymptotic() {
    for case in expected()["ks"].as_array().unwrap() {
        let (n1, n2) = (
            case["n1"].as_u64().unwrap() as usize,
            case["n2"].as_u64().unwrap() as usize,
        );
        let shift = case["shift"].as_f64().unwrap();
        let a = lattice(n1, 7919, 0.0);
        let b = lattice(n2, 104729, shift);
        let (d, p) = stats::ks_2samp(&a, &b);
        let (wd, wp) = (case["d"].as_f64().unwrap(), case["p"].as_f64().unwrap());
        assert!((d - wd).abs() < 1e-12, "{n1}x{n2}: D {d} scipy {wd}");
        // Exact up to 10 000 values a side (scipy's recursion); above that the
        // Kolmogorov limit with Stephens' correction, which stays within 1e-3
        // of scipy's kstwo for these sizes.
        let tol = if n1.max(n2) <= 10_000 { 1e-7 } else { 1e-3 };
        assert!((p - wp).abs() < tol, "{n1}x{n2}: p {p} scipy {wp}");
    }
}
