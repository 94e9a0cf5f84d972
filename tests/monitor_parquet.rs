//! Parquet input of `mlcd monitor` (cargo feature `parquet`), on files a real
//! writer made: tests/monitor/make_parquet.py wrote the seeded drift samples of
//! tests/monitor/fixtures again as Parquet with pyarrow (snappy, zstd, gzip in
//! three row groups, lz4; dictionary and plain strings; ints where the CSV has
//! 3.0), a file of every type with nulls beside the CSV text of its values, a
//! brotli file and a truncated one. The same data as CSV and as Parquet must
//! give the same columns, scores and verdicts.
#![cfg(feature = "parquet")]

mod common;
use common::*;

use std::collections::BTreeMap;

use mlcd::config::values::DriftMethod;
use mlcd::monitor::column::Sample;
use mlcd::monitor::read::{self, Format, Positional};
use mlcd::monitor::{analyse, parquet, Settings};
use serde_json::Value;

fn fix(name: &str) -> std::path::PathBuf {
    root().join("tests/monitor/fixtures").join(name)
}

fn csv(name: &str) -> Sample {
    let mut s = Sample::new(&BTreeMap::new());
    let f = std::fs::File::open(fix(name)).unwrap();
    read::read_into(&mut s, f, Format::Csv, name, &Positional::default()).unwrap();
    s
}

fn pq(name: &str) -> Sample {
    let mut s = Sample::new(&BTreeMap::new());
    parquet::read_file(&mut s, &fix(name), name).unwrap_or_else(|e| panic!("{name}: {e:?}"));
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

fn same_analysis(label: &str) {
    let by_csv = analyse(
        &csv(&format!("{label}-reference.csv")),
        &csv(&format!("{label}-current.csv")),
        &settings(),
    )
    .unwrap();
    let by_parquet = analyse(
        &pq(&format!("parquet/{label}-reference.parquet")),
        &pq(&format!("parquet/{label}-current.parquet")),
        &settings(),
    )
    .unwrap();
    assert_eq!(by_parquet.reference_rows, by_csv.reference_rows);
    assert_eq!(by_parquet.current_rows, by_csv.current_rows);
    assert_eq!(by_parquet.columns.len(), 7);
    assert_eq!(by_parquet.columns.len(), by_csv.columns.len());
    for (p, c) in by_parquet.columns.iter().zip(&by_csv.columns) {
        assert_eq!(p.column, c.column);
        assert_eq!(p.kind, c.kind, "{label} {}", c.column);
        assert_eq!(p.method, c.method, "{label} {}", c.column);
        assert_eq!(
            p.score.to_bits(),
            c.score.to_bits(),
            "{label} {}: Parquet {} CSV {}",
            c.column,
            p.score,
            c.score
        );
        assert_eq!(p.drifted, c.drifted, "{label} {}", c.column);
    }
    assert_eq!(by_parquet.drift_share, by_csv.drift_share);
    assert_eq!(by_parquet.drifted, by_csv.drifted);
    // Not a vacuous comparison: the samples do drift.
    assert!(by_csv.columns.iter().any(|c| c.drifted));
}

#[test]
fn small_samples_in_snappy_and_zstd_parquet_score_exactly_like_their_csv() {
    same_analysis("small");
}

#[test]
fn large_samples_in_gzip_row_groups_and_lz4_parquet_score_exactly_like_their_csv() {
    same_analysis("large");
}

#[test]
fn every_parquet_type_reads_as_the_csv_text_of_its_values_and_nulls_as_missing() {
    let p = pq("parquet/types.parquet");
    let c = csv("parquet/types.csv");
    // The list column `tags` is left out; the flat ones keep their order.
    assert_eq!(
        p.names,
        ["i32", "u64", "dec", "bigdec", "f32", "flag", "color", "day"]
    );
    assert_eq!(p.names, c.names);
    assert_eq!((p.rows, c.rows), (300, 300));
    for name in &c.names {
        let (pc, cc) = (p.column(name).unwrap(), c.column(name).unwrap());
        assert_eq!(pc.missing, cc.missing, "{name}: missing");
        assert_eq!(pc.is_numeric(), cc.is_numeric(), "{name}: numeric");
        assert_eq!(pc.sorted_numbers(), cc.sorted_numbers(), "{name}: numbers");
        if !cc.is_numeric() {
            assert_eq!(pc.counts(), cc.counts(), "{name}: counts");
        }
    }
    // Nulls (and NaN) are missing values, as an empty CSV cell is.
    for name in ["i32", "dec", "f32", "flag", "color", "day"] {
        assert!(p.column(name).unwrap().missing > 0, "{name} has nulls");
    }
    assert!(p.column("u64").unwrap().is_numeric());
    assert!(p.column("dec").unwrap().is_numeric());
    assert!(!p.column("color").unwrap().is_numeric());
    let flags = p.column("flag").unwrap().counts().unwrap();
    assert_eq!(
        flags
            .keys()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>(),
        ["false", "true"].into()
    );
}

// ---- through the binary ----------------------------------------------------

fn ws_with(files: &[(&str, &str)], extra: &str) -> Workspace {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path().join("data")).unwrap();
    for (from, to) in files {
        std::fs::copy(fix(from), ws.path().join(to)).unwrap();
    }
    ws.write("mlcd.yml", &format!("model: churn\nmonitor:\n{extra}"));
    ws
}

fn json_out(run: &Run) -> Value {
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}:\n{}\n--- stderr\n{}", run.stdout, run.stderr))
}

#[test]
fn drift_in_parquet_data_is_reported_by_mlcd_monitor() {
    let ws = ws_with(
        &[
            ("parquet/small-reference.parquet", "data/reference.parquet"),
            ("parquet/small-current.parquet", "data/current.parquet"),
        ],
        "  reference: data/reference.parquet\n  current: data/current.parquet\n  drift-share: 0.4\n",
    );
    let run = mlcd(ws.path(), &["monitor", "--output", "json"], &[]);
    run.assert_code(0);
    let out = json_out(&run);
    // The same verdict monitor_mode.rs pins for these samples as CSV.
    assert_eq!(out["status"], "drifted");
    assert_eq!(out["drift-share"], "0.4286");
    assert_eq!(out["drifted-columns"], r#"["age","calls","plan"]"#);
    assert!(
        run.stderr.contains("read 500 reference rows") && run.stderr.contains("400 current rows"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_parquet_reference_and_a_csv_current_sample_compare_like_two_csv_files() {
    let ws = ws_with(
        &[
            ("parquet/large-reference.parquet", "data/reference.parquet"),
            ("large-current.csv", "data/current.csv"),
        ],
        "  reference: data/reference.parquet\n  current: data/current.csv\n",
    );
    let both_csv = ws_with(
        &[
            ("large-reference.csv", "data/reference.csv"),
            ("large-current.csv", "data/current.csv"),
        ],
        "  reference: data/reference.csv\n  current: data/current.csv\n",
    );
    let mixed = mlcd(ws.path(), &["monitor", "--output", "json"], &[]);
    mixed.assert_code(0);
    let csv_only = mlcd(both_csv.path(), &["monitor", "--output", "json"], &[]);
    csv_only.assert_code(0);
    let (a, b) = (json_out(&mixed), json_out(&csv_only));
    for k in ["status", "drifted", "drift-share", "drifted-columns"] {
        assert_eq!(a[k], b[k], "{k}");
    }
    assert_ne!(a["drifted-columns"], "[]");
}

#[test]
fn a_directory_of_parquet_files_is_read_whole() {
    let ws = ws_with(
        &[("parquet/small-reference.parquet", "data/reference.parquet")],
        "  reference: data/reference.parquet\n  current: data/current\n  drift-share: 0.4\n",
    );
    std::fs::create_dir_all(ws.path().join("data/current/day=1")).unwrap();
    std::fs::copy(
        fix("parquet/small-current.parquet"),
        ws.path().join("data/current/day=1/part-0.parquet"),
    )
    .unwrap();
    std::fs::copy(
        fix("parquet/small-current.parquet"),
        ws.path().join("data/current/part-1.parquet"),
    )
    .unwrap();
    let run = mlcd(ws.path(), &["monitor", "--output", "json"], &[]);
    run.assert_code(0);
    assert!(run.stderr.contains("800 current rows"), "{}", run.stderr);
    assert_eq!(json_out(&run)["status"], "drifted");
}

#[test]
fn a_parquet_file_in_a_codec_mlcd_does_not_read_is_an_error_naming_file_and_codec() {
    let ws = ws_with(
        &[
            ("parquet/small-reference.parquet", "data/reference.parquet"),
            ("parquet/brotli.parquet", "data/current.parquet"),
        ],
        "  reference: data/reference.parquet\n  current: data/current.parquet\n",
    );
    let run = mlcd(ws.path(), &["monitor"], &[]);
    run.assert_code(2);
    assert!(
        run.stderr.contains(
            "`data/current.parquet`: column `age` (row group 0) is compressed with BROTLI"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("SNAPPY, ZSTD"), "{}", run.stderr);
    assert!(
        run.stderr.contains("compression=\"zstd\""),
        "{}",
        run.stderr
    );
}

#[test]
fn a_truncated_parquet_file_is_an_error_naming_it() {
    let ws = ws_with(
        &[
            ("parquet/truncated.parquet", "data/reference.parquet"),
            ("small-current.csv", "data/current.csv"),
        ],
        "  reference: data/reference.parquet\n  current: data/current.csv\n",
    );
    let run = mlcd(ws.path(), &["monitor"], &[]);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("`data/reference.parquet` is not a readable Parquet file"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("written completely"), "{}", run.stderr);
}
