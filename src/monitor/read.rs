//! Streaming readers: CSV with a header, JSON lines (one object a line), and
//! SageMaker data capture JSON lines (`captureData.endpointInput.data` holding
//! CSV, JSON or base64 of either). Each value goes straight into a [`Sample`]'s
//! columns; no file is ever held in memory whole. A directory is every such
//! file under it, in name order.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use super::column::{Origin, Sample};
use crate::error::UserError;

/// File endings read as CSV.
const CSV_EXT: &[&str] = &["csv"];
/// File endings read as JSON lines (data capture files are detected by content).
const JSONL_EXT: &[&str] = &["jsonl", "ndjson", "json"];
/// File endings read as Parquet (parquet.rs).
const PARQUET_EXT: &[&str] = &["parquet", "pq"];
/// The endings a data file may have, for messages.
pub const ENDINGS: &str = ".csv, .jsonl, .ndjson, .json or .parquet";

/// Names for positional values (CSV capture payloads without a header, JSON
/// arrays): the reference's columns, with and without the label columns.
#[derive(Debug, Clone, Default)]
pub struct Positional {
    /// Every reference column, in file order.
    pub all: Vec<String>,
    /// The reference columns a request carries (labels and predictions left out).
    pub features: Vec<String>,
}

/// The files a path names: itself, or every CSV / JSON lines file under it.
pub fn files_of(path: &Path, what: &str) -> Result<Vec<PathBuf>, UserError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(UserError::invalid(format!(
            "{what}: `{}` does not exist",
            path.display()
        ))
        .hint("give a CSV, JSON lines or Parquet file, or a directory of them, relative to the config file"));
    }
    let mut out = Vec::new();
    let mut todo = vec![path.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            UserError::invalid(format!("{what}: cannot list `{}`: {e}", dir.display()))
        })?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if format_of(&p).is_some() {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(UserError::invalid(format!(
            "{what}: the directory `{}` holds no {ENDINGS} file",
            path.display()
        ))
        .hint("point it at the data files, or a directory holding them"));
    }
    Ok(out)
}

/// A file's format by its ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header line.
    Csv,
    /// JSON lines: plain records or data capture records.
    JsonLines,
    /// Parquet, read by parquet.rs (it needs to seek, not a stream).
    Parquet,
}

/// The format a file name says.
pub fn format_of(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    if CSV_EXT.contains(&ext.as_str()) {
        Some(Format::Csv)
    } else if JSONL_EXT.contains(&ext.as_str()) {
        Some(Format::JsonLines)
    } else if PARQUET_EXT.contains(&ext.as_str()) {
        Some(Format::Parquet)
    } else {
        None
    }
}

/// Reads one CSV or JSON lines file (or any reader) into `sample`, named
/// `display` in errors (Parquet files go to [`super::parquet`]).
pub fn read_into(
    sample: &mut Sample,
    reader: impl Read,
    format: Format,
    display: &str,
    positional: &Positional,
) -> Result<(), UserError> {
    let file = sample.files.len();
    sample.files.push(display.to_string());
    match format {
        Format::Csv => read_csv(sample, reader, file, display),
        Format::JsonLines => read_jsonl(sample, reader, file, display, positional),
        Format::Parquet => Err(UserError::failed(format!(
            "{display}: a Parquet file was handed to the text reader"
        ))),
    }
}

fn read_csv(
    sample: &mut Sample,
    reader: impl Read,
    file: usize,
    display: &str,
) -> Result<(), UserError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(reader);
    let headers = rdr.headers().map_err(|e| csv_error(display, &e))?.clone();
    if headers.is_empty() || headers.iter().all(|h| h.trim().is_empty()) {
        return Err(UserError::invalid(format!(
            "{display}:1: expected a CSV header line naming the columns"
        )));
    }
    let idx: Vec<usize> = headers
        .iter()
        .map(|h| sample.column_index(h.trim()))
        .collect();
    let mut rec = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                let line = rec.position().map_or(0, |p| p.line());
                let origin = Origin { file, line };
                for (i, v) in rec.iter().enumerate() {
                    sample.push(idx[i], v, origin);
                }
                sample.end_row(origin);
            }
            Err(e) => return Err(csv_error(display, &e)),
        }
    }
    Ok(())
}

fn csv_error(display: &str, e: &csv::Error) -> UserError {
    let line = e.position().map_or(1, |p| p.line());
    let what = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("a row has {len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "the file is not UTF-8 text".to_string(),
        _ => e.to_string(),
    };
    UserError::invalid(format!("{display}:{line}: {what}"))
        .hint("every row of a CSV file needs one value per header column")
}

fn scalar_text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::Null => Some("".into()),
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        Value::Bool(b) => Some(if *b { "true" } else { "false" }.into()),
        _ => None,
    }
}

fn push_object(sample: &mut Sample, obj: &serde_json::Map<String, Value>, origin: Origin) {
    for (k, v) in obj {
        let text = scalar_text(v).unwrap_or_else(|| v.to_string().into());
        let i = sample.column_index(k);
        sample.push(i, &text, origin);
    }
    sample.end_row(origin);
}

fn push_positional(
    sample: &mut Sample,
    values: &[std::borrow::Cow<'_, str>],
    origin: Origin,
    positional: &Positional,
    display: &str,
) -> Result<(), UserError> {
    let names = if values.len() == positional.features.len() {
        &positional.features
    } else if values.len() == positional.all.len() {
        &positional.all
    } else {
        return Err(UserError::invalid(format!(
            "{display}:{}: a record without column names has {} values, and the reference has {} columns ({}){}",
            origin.line,
            values.len(),
            positional.all.len(),
            positional.all.join(", "),
            if positional.features.len() != positional.all.len() {
                format!(", {} without labels and predictions", positional.features.len())
            } else {
                String::new()
            }
        ))
        .hint("the values of a headerless CSV payload or a JSON array are named after the reference's columns, in order; leave the label column out of that list with `monitor.exclude: [<label>]` (or name it in `monitor.labels`)"));
    };
    for (name, v) in names.iter().zip(values) {
        let i = sample.column_index(name);
        sample.push(i, v, origin);
    }
    sample.end_row(origin);
    Ok(())
}

/// A JSON value holding rows: `{"instances": [...]}`, `{"inputs": [...]}`, a
/// list of rows, or one row; a row is an object or a list of values.
fn push_json_rows(
    sample: &mut Sample,
    v: &Value,
    origin: Origin,
    positional: &Positional,
    display: &str,
) -> Result<(), UserError> {
    match v {
        Value::Object(m) => {
            for key in ["instances", "inputs", "data"] {
                if let Some(inner @ Value::Array(_)) = m.get(key) {
                    return push_json_rows(sample, inner, origin, positional, display);
                }
            }
            push_object(sample, m, origin);
            Ok(())
        }
        Value::Array(items) if items.iter().all(|i| !i.is_array() && !i.is_object()) => {
            let vals: Vec<_> = items
                .iter()
                .map(|i| scalar_text(i).unwrap_or_default())
                .collect();
            push_positional(sample, &vals, origin, positional, display)
        }
        Value::Array(items) => {
            for item in items {
                push_json_rows(sample, item, origin, positional, display)?;
            }
            Ok(())
        }
        _ => {
            Err(UserError::invalid(format!(
            "{display}:{}: expected a JSON object (one record) or an array of records, found `{}`",
            origin.line,
            crate::secrets::redact(&v.to_string()).chars().take(40).collect::<String>()
        )))
        }
    }
}

fn read_jsonl(
    sample: &mut Sample,
    reader: impl Read,
    file: usize,
    display: &str,
    positional: &Positional,
) -> Result<(), UserError> {
    let mut buf = BufReader::with_capacity(1 << 16, reader);
    let mut line = String::new();
    let mut n: u64 = 0;
    loop {
        line.clear();
        let read = buf
            .read_line(&mut line)
            .map_err(|e| UserError::invalid(format!("{display}:{}: cannot read: {e}", n + 1)))?;
        if read == 0 {
            break;
        }
        n += 1;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let origin = Origin { file, line: n };
        let v: Value = serde_json::from_str(text).map_err(|e| {
            UserError::invalid(format!(
                "{display}:{n}: not a JSON value ({e}): each line of a JSON lines file holds one record"
            ))
        })?;
        if let Some(capture) = v.get("captureData") {
            push_capture(sample, capture, origin, positional, display)?;
        } else {
            push_json_rows(sample, &v, origin, positional, display)?;
        }
    }
    Ok(())
}

/// One data capture record: the request's rows (`endpointInput`).
fn push_capture(
    sample: &mut Sample,
    capture: &Value,
    origin: Origin,
    positional: &Positional,
    display: &str,
) -> Result<(), UserError> {
    let bad = |what: &str| {
        UserError::invalid(format!(
            "{display}:{}: a data capture record {what}",
            origin.line
        ))
        .hint("data capture records look like {\"captureData\": {\"endpointInput\": {\"observedContentType\": \"text/csv\", \"mode\": \"INPUT\", \"data\": \"…\", \"encoding\": \"CSV\"}, …}, \"eventMetadata\": {…}, \"eventVersion\": \"0\"}")
    };
    let input = capture
        .get("endpointInput")
        .ok_or_else(|| bad("has no `captureData.endpointInput`"))?;
    let data = input
        .get("data")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("has no `endpointInput.data` text"))?;
    let encoding = input.get("encoding").and_then(Value::as_str).unwrap_or("");
    let content_type = input
        .get("observedContentType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let decoded;
    let (text, is_csv) = match encoding {
        "CSV" => (data, true),
        "JSON" => (data, false),
        "BASE64" => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| bad(&format!("has `data` that is not base64 ({e})")))?;
            decoded = String::from_utf8(bytes)
                .map_err(|_| bad("has base64 `data` that is not UTF-8 text"))?;
            let csv = content_type.contains("csv");
            if !csv && !content_type.contains("json") {
                return Err(bad(&format!(
                    "has content type `{content_type}`: only text/csv and application/json payloads are read"
                )));
            }
            (decoded.as_str(), csv)
        }
        other => {
            return Err(bad(&format!(
                "has encoding `{other}`: expected CSV, JSON or BASE64"
            )))
        }
    };
    if is_csv {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        for rec in rdr.records() {
            let rec =
                rec.map_err(|e| bad(&format!("has a CSV payload that does not parse: {e}")))?;
            let vals: Vec<std::borrow::Cow<str>> = rec.iter().map(Into::into).collect();
            push_positional(sample, &vals, origin, positional, display)?;
        }
        Ok(())
    } else {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| bad(&format!("has a JSON payload that does not parse: {e}")))?;
        push_json_rows(sample, &v, origin, positional, display)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pos() -> Positional {
        Positional {
            all: vec!["a".into(), "b".into(), "y".into()],
            features: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn capture_records_with_csv_json_and_base64_payloads_are_read() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("5,6\n7,8\n");
        let text = format!(
            "{}\n{}\n{}\n",
            r#"{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT","data":"1,2","encoding":"CSV"},"endpointOutput":{"observedContentType":"text/csv","mode":"OUTPUT","data":"0","encoding":"CSV"}},"eventMetadata":{"eventId":"e1","inferenceTime":"2026-01-01T00:00:00Z"},"eventVersion":"0"}"#,
            r#"{"captureData":{"endpointInput":{"observedContentType":"application/json","mode":"INPUT","data":"{\"instances\":[{\"a\":3,\"b\":4}]}","encoding":"JSON"}},"eventMetadata":{"eventId":"e2","inferenceTime":"2026-01-01T00:00:01Z"},"eventVersion":"0"}"#,
            format_args!(
                r#"{{"captureData":{{"endpointInput":{{"observedContentType":"text/csv","mode":"INPUT","data":"{b64}","encoding":"BASE64"}}}},"eventMetadata":{{"eventId":"e3","inferenceTime":"2026-01-01T00:00:02Z"}},"eventVersion":"0"}}"#
            )
        );
        let mut s = Sample::new(&BTreeMap::new());
        read_into(
            &mut s,
            text.as_bytes(),
            Format::JsonLines,
            "c.jsonl",
            &pos(),
        )
        .unwrap();
        assert_eq!(s.rows, 4);
        let a = s.column("a").unwrap().sorted_numbers().unwrap();
        assert_eq!(a, vec![1.0, 3.0, 5.0, 7.0]);
    }

    #[test]
    fn a_short_csv_row_names_its_file_and_line() {
        let mut s = Sample::new(&BTreeMap::new());
        let e = read_into(
            &mut s,
            "a,b\n1,2\n3\n".as_bytes(),
            Format::Csv,
            "d.csv",
            &pos(),
        )
        .unwrap_err();
        assert!(e.message.starts_with("d.csv:3:"), "{}", e.message);
        assert!(
            e.message.contains("1 fields where the header has 2"),
            "{}",
            e.message
        );
    }
}
