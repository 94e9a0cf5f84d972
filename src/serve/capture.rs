//! Traffic capture for the local endpoint's router: sampled request/answer
//! pairs written as JSON lines in SageMaker's data capture record format
//! (`captureData.endpointInput` / `endpointOutput`, `eventMetadata`,
//! `eventVersion: "0"`), so one reader handles local and SageMaker capture.
//!
//! The request path only offers an [`Exchange`] (cheap: the bodies are
//! reference-counted) to a bounded queue, never waking anything; a writer
//! thread, waking every 100 ms, turns each into a line
//! and appends it to `<dir>/<UTC time>-<version>.jsonl`, closing a file at
//! `rotate_bytes` and deleting the oldest files past `max_bytes`. A full queue
//! drops the record and counts it: capture never blocks or fails a request.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};

/// Content types captured as CSV text (SageMaker's default `CsvContentTypes`).
pub const CSV_CONTENT_TYPES: &[&str] = &["text/csv"];
/// Content types captured as JSON text (SageMaker's default `JsonContentTypes`).
pub const JSON_CONTENT_TYPES: &[&str] = &["application/json"];

/// How often the writer writes what queued up (a record waits at most this long).
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Where the router keeps capture files inside its container (local backend).
pub const ROUTER_CAPTURE_DIR: &str = "/mlcd/capture";

/// The capture settings in the router's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSettings {
    /// The share of inference requests captured, 0 to 100.
    pub sample_percent: u8,
    /// The directory capture files are written to.
    pub dir: String,
    /// A file is closed and a new one started at this size.
    pub rotate_bytes: u64,
    /// The most capture data kept in `dir`; the oldest files go past it.
    pub max_bytes: u64,
    /// Records waiting for the writer; when full, records are dropped.
    pub queue: u32,
}

impl CaptureSettings {
    /// Checks the settings (the router refuses a config that fails).
    pub fn check(&self) -> Result<(), String> {
        if self.sample_percent > 100 {
            return Err(format!(
                "capture.sample_percent {} is above 100",
                self.sample_percent
            ));
        }
        if self.dir.trim().is_empty() {
            return Err("capture.dir is empty".into());
        }
        if self.rotate_bytes == 0 || self.max_bytes < self.rotate_bytes {
            return Err(format!(
                "capture: max_bytes ({}) must be at least rotate_bytes ({}), and both above 0",
                self.max_bytes, self.rotate_bytes
            ));
        }
        if self.queue == 0 {
            return Err("capture.queue must be above 0".into());
        }
        Ok(())
    }
}

/// One request and its answer, as the router saw them.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The version that answered.
    pub version: String,
    /// When the request arrived.
    pub at: SystemTime,
    /// The request's content type (`application/octet-stream` when absent).
    pub request_type: String,
    /// The request body.
    pub request: Bytes,
    /// The answer's content type.
    pub response_type: String,
    /// The answer body.
    pub response: Bytes,
    /// The caller's `X-Amzn-SageMaker-Inference-Id`, when given.
    pub inference_id: Option<String>,
}

/// How many records were sampled, written, dropped (queue full) and lost
/// (the writer could not write them).
#[derive(Debug, Default)]
pub struct Counters {
    sampled: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// The counters as the router's stats endpoint shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterSnapshot {
    /// Requests chosen by the sample.
    pub sampled: u64,
    /// Records written to a capture file.
    pub written: u64,
    /// Records dropped because the queue was full.
    pub dropped: u64,
    /// Records the writer could not write (disk full, directory gone).
    pub failed: u64,
}

impl Counters {
    /// The counters now.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            sampled: self.sampled.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// The request path's end of the capture queue.
pub struct Sink {
    settings: CaptureSettings,
    tx: SyncSender<Exchange>,
    seen: AtomicU64,
    counters: Arc<Counters>,
}

impl Sink {
    /// A sink and the receiving end its writer reads (see [`spawn_writer`]).
    pub fn new(settings: CaptureSettings, counters: Arc<Counters>) -> (Sink, Receiver<Exchange>) {
        let (tx, rx) = sync_channel(settings.queue as usize);
        (
            Sink {
                settings,
                tx,
                seen: AtomicU64::new(0),
                counters,
            },
            rx,
        )
    }

    /// The settings this sink was made with.
    pub fn settings(&self) -> &CaptureSettings {
        &self.settings
    }

    /// Whether the next inference request is in the sample: exactly
    /// `sample_percent` of every 100 requests, spread evenly.
    pub fn sample(&self) -> bool {
        let p = u64::from(self.settings.sample_percent);
        let i = self.seen.fetch_add(1, Ordering::Relaxed);
        (i + 1) * p / 100 > i * p / 100
    }

    /// Queues a record without waiting; a full queue drops it (counted).
    pub fn offer(&self, exchange: Exchange) {
        self.counters.sampled.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(exchange) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Starts the writer thread for `rx`; it ends when every sender is gone.
pub fn spawn_writer(
    settings: CaptureSettings,
    rx: Receiver<Exchange>,
    counters: Arc<Counters>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("mlcd-capture".into())
        .spawn(move || Writer::new(settings, counters).run(rx))
}

/// How a body is written into a record: SageMaker's `encoding` and `data`
/// (text borrowed from the body, base64 made).
pub fn encode<'a>(content_type: &str, body: &'a [u8]) -> (&'static str, Cow<'a, str>) {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(body).ok();
    match text {
        Some(t) if CSV_CONTENT_TYPES.contains(&essence.as_str()) => ("CSV", Cow::Borrowed(t)),
        Some(t) if JSON_CONTENT_TYPES.contains(&essence.as_str()) => ("JSON", Cow::Borrowed(t)),
        _ => (
            "BASE64",
            Cow::Owned(base64::engine::general_purpose::STANDARD.encode(body)),
        ),
    }
}

/// A random (version 4) UUID, SageMaker's `eventId`.
fn event_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A capture record, serialized straight from the exchange's bodies.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    capture_data: CaptureData<'a>,
    event_metadata: EventMetadata<'a>,
    event_version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CaptureData<'a> {
    endpoint_input: Side<'a>,
    endpoint_output: Side<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Side<'a> {
    observed_content_type: &'a str,
    mode: &'static str,
    data: Cow<'a, str>,
    encoding: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventMetadata<'a> {
    event_id: String,
    inference_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    inference_id: Option<&'a str>,
}

fn side<'a>(content_type: &'a str, body: &'a [u8], mode: &'static str) -> Side<'a> {
    let (encoding, data) = encode(content_type, body);
    Side {
        observed_content_type: content_type,
        mode,
        data,
        encoding,
    }
}

/// Appends one JSON line in SageMaker's data capture record format, newline included.
pub fn write_record(e: &Exchange, out: &mut Vec<u8>) {
    let time: chrono::DateTime<chrono::Utc> = e.at.into();
    let record = Record {
        capture_data: CaptureData {
            endpoint_input: side(&e.request_type, &e.request, "INPUT"),
            endpoint_output: side(&e.response_type, &e.response, "OUTPUT"),
        },
        event_metadata: EventMetadata {
            event_id: event_id(),
            inference_time: time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            inference_id: e.inference_id.as_deref(),
        },
        event_version: "0",
    };
    serde_json::to_writer(&mut *out, &record).expect("a capture record serializes");
    out.push(b'\n');
}

/// One JSON line in SageMaker's data capture record format (without the newline).
pub fn record_line(e: &Exchange) -> String {
    let mut out = Vec::new();
    write_record(e, &mut out);
    out.pop();
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// The complete lines of a capture file being written (a copy taken while the
/// writer appends may end in half a line).
pub fn complete_lines(bytes: &[u8]) -> &[u8] {
    match bytes.iter().rposition(|b| *b == b'\n') {
        Some(i) => &bytes[..=i],
        None => &[],
    }
}

/// Whether `name` is a capture file's name.
pub fn is_capture_file(name: &str) -> bool {
    name.ends_with(".jsonl") && !name.starts_with('.')
}

struct Open {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    size: u64,
}

struct Writer {
    settings: CaptureSettings,
    counters: Arc<Counters>,
    open: HashMap<String, Open>,
    dir: PathBuf,
    seq: u64,
    reported: bool,
    /// The line being written (its buffer reused from record to record).
    line: Vec<u8>,
}

impl Writer {
    fn new(settings: CaptureSettings, counters: Arc<Counters>) -> Writer {
        let dir = PathBuf::from(&settings.dir);
        Writer {
            settings,
            counters,
            open: HashMap::new(),
            dir,
            seq: 0,
            reported: false,
            line: Vec::new(),
        }
    }

    fn run(mut self, rx: Receiver<Exchange>) {
        // The writer wakes every FLUSH_EVERY and writes what queued up: a
        // request never wakes it (no wake-up, no context switch on the request
        // path), and readers see records within FLUSH_EVERY.
        loop {
            std::thread::sleep(FLUSH_EVERY);
            let mut wrote = false;
            loop {
                match rx.try_recv() {
                    Ok(e) => {
                        self.write(&e);
                        wrote = true;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.flush();
                        return;
                    }
                }
            }
            if wrote {
                self.flush();
            }
        }
    }

    fn write(&mut self, e: &Exchange) {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        write_record(e, &mut line);
        let written = self.append(&e.version, e.at, &line);
        self.line = line;
        match written {
            Ok(()) => {
                self.counters.written.fetch_add(1, Ordering::Relaxed);
                self.reported = false;
            }
            Err(err) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                // A file that failed may be half-written: start a new one next time.
                self.open.remove(&e.version);
                if !self.reported {
                    log::warn!(
                        "capture: cannot write to {}: {err}; records are counted as failed until it works again (requests are unaffected)",
                        self.dir.display()
                    );
                    self.reported = true;
                }
            }
        }
    }

    fn append(&mut self, version: &str, at: SystemTime, line: &[u8]) -> std::io::Result<()> {
        let full = self
            .open
            .get(version)
            .is_some_and(|o| o.size > 0 && o.size + line.len() as u64 > self.settings.rotate_bytes);
        if full {
            if let Some(mut o) = self.open.remove(version) {
                o.file.flush()?;
            }
            self.enforce_max()?;
        }
        if !self.open.contains_key(version) {
            std::fs::create_dir_all(&self.dir)?;
            let time: chrono::DateTime<chrono::Utc> = at.into();
            self.seq += 1;
            let name = format!(
                "{}-{:04}-{version}.jsonl",
                time.format("%Y%m%dT%H%M%S%.3fZ"),
                self.seq % 10_000
            );
            let path = self.dir.join(name);
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            self.open.insert(
                version.to_string(),
                Open {
                    file: std::io::BufWriter::new(file),
                    path,
                    size: 0,
                },
            );
        }
        let o = self.open.get_mut(version).expect("opened above");
        o.file.write_all(line)?;
        o.size += line.len() as u64;
        Ok(())
    }

    fn flush(&mut self) {
        for o in self.open.values_mut() {
            if let Err(e) = o.file.flush() {
                log::warn!("capture: cannot flush {}: {e}", o.path.display());
            }
        }
    }

    /// Deletes the oldest closed capture files until the directory holds at
    /// most `max_bytes` (files still open are never deleted).
    fn enforce_max(&self) -> std::io::Result<()> {
        let open_names: Vec<&PathBuf> = self.open.values().map(|o| &o.path).collect();
        let mut files = list(&self.dir)?;
        files.sort();
        let mut total: u64 = files.iter().map(|(_, s)| s).sum();
        for (path, size) in files {
            if total <= self.settings.max_bytes {
                break;
            }
            if open_names.contains(&&path) {
                continue;
            }
            std::fs::remove_file(&path)?;
            total -= size;
        }
        Ok(())
    }
}

/// The capture files in `dir` with their sizes.
pub fn list(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if is_capture_file(&name) && e.file_type()?.is_file() {
            out.push((e.path(), e.metadata()?.len()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, queue: u32) -> CaptureSettings {
        CaptureSettings {
            sample_percent: 100,
            dir: dir.display().to_string(),
            rotate_bytes: 1000,
            max_bytes: 3000,
            queue,
        }
    }

    fn exchange(version: &str, body: &str) -> Exchange {
        Exchange {
            version: version.into(),
            at: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123),
            request_type: "application/json".into(),
            request: Bytes::from(body.to_string()),
            response_type: "application/json".into(),
            response: Bytes::from_static(b"{\"predictions\":[1]}"),
            inference_id: None,
        }
    }

    #[test]
    fn a_record_has_sagemakers_shape() {
        let mut e = exchange("v1", r#"{"instances":[{"a":1}]}"#);
        e.inference_id = Some("req-7".into());
        let v: serde_json::Value = serde_json::from_str(&record_line(&e)).unwrap();
        let input = &v["captureData"]["endpointInput"];
        assert_eq!(input["observedContentType"], "application/json");
        assert_eq!(input["mode"], "INPUT");
        assert_eq!(input["encoding"], "JSON");
        assert_eq!(input["data"], r#"{"instances":[{"a":1}]}"#);
        assert_eq!(v["captureData"]["endpointOutput"]["mode"], "OUTPUT");
        assert_eq!(
            v["eventMetadata"]["inferenceTime"],
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(v["eventMetadata"]["inferenceId"], "req-7");
        assert_eq!(v["eventMetadata"]["eventId"].as_str().unwrap().len(), 36);
        assert_eq!(v["eventVersion"], "0");
    }

    #[test]
    fn csv_is_text_and_anything_else_base64() {
        assert_eq!(
            encode("text/csv; charset=utf-8", b"1,2\n"),
            ("CSV", "1,2\n".into())
        );
        assert_eq!(
            encode("application/x-npy", &[0, 159, 146]),
            ("BASE64", "AJ+S".into())
        );
        // Declared JSON that is not UTF-8 cannot be text.
        assert_eq!(encode("application/json", &[0xff]).0, "BASE64");
    }

    #[test]
    fn the_sample_takes_exactly_its_share() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path(), 8);
        s.sample_percent = 10;
        let (sink, _rx) = Sink::new(s, Arc::default());
        let taken = (0..1000).filter(|_| sink.sample()).count();
        assert_eq!(taken, 100);
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let counters: Arc<Counters> = Arc::default();
        // No writer reads the queue: it fills after 2 records.
        let (sink, _rx) = Sink::new(settings(dir.path(), 2), counters.clone());
        let started = std::time::Instant::now();
        for i in 0..50 {
            sink.offer(exchange("v1", &i.to_string()));
        }
        assert!(started.elapsed() < std::time::Duration::from_millis(200));
        let c = counters.snapshot();
        assert_eq!((c.sampled, c.dropped, c.written), (50, 48, 0));
    }

    #[test]
    fn files_rotate_at_their_size_and_the_oldest_go_past_the_maximum() {
        let dir = tempfile::tempdir().unwrap();
        let counters: Arc<Counters> = Arc::default();
        let (sink, rx) = Sink::new(settings(dir.path(), 1024), counters.clone());
        let writer = spawn_writer(sink.settings().clone(), rx, counters.clone()).unwrap();
        for i in 0..200 {
            sink.offer(exchange("v1", &format!("{{\"i\":{i}}}")));
        }
        drop(sink);
        writer.join().unwrap();
        let c = counters.snapshot();
        assert_eq!(c.written, 200);
        let files = list(dir.path()).unwrap();
        let total: u64 = files.iter().map(|(_, s)| s).sum();
        assert!(files.len() >= 3, "{files:?}");
        assert!(total <= 3000 + 1000, "{total} bytes in {files:?}");
        for (path, size) in &files {
            assert!(*size <= 1000, "{} is {size} bytes", path.display());
            let text = std::fs::read_to_string(path).unwrap();
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["eventVersion"], "0");
            }
        }
        // The newest record survived; the oldest were deleted.
        let all: String = files
            .iter()
            .map(|(p, _)| std::fs::read_to_string(p).unwrap())
            .collect();
        assert!(all.contains(r#"{\"i\":199}"#), "{all}");
        assert!(!all.contains(r#"{\"i\":0}"#));
    }

    #[test]
    fn a_partial_last_line_is_left_out() {
        assert_eq!(complete_lines(b"{}\n{\"a\""), b"{}\n");
        assert_eq!(complete_lines(b"{\"a\""), b"");
    }
}
