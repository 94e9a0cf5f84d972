//! The local endpoint's router (`mlcd route`) against fake upstreams on
//! loopback: the weighted split is exact, shadows get copies and answer nobody,
//! a changed config is picked up and a broken one keeps the routes in force
//! (reported once), and a failing upstream is a 502 naming the version; each
//! version's requests, 5xx answers and latency are counted on `/_mlcd/stats`;
//! captured traffic is SageMaker capture records, and a capture queue that
//! overflows drops records, never requests.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mlcd::serve::capture::CaptureSettings;
use mlcd::serve::router::{RouteConfig, RouterStats, Upstream};
use tokio::net::TcpListener;

/// What a fake upstream received: each request's path and body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A fake model server answering `<name> <path>` after `delay`, recording
/// every request's path and body.
struct Fake {
    url: String,
    seen: Seen,
}

async fn fake(name: &'static str, delay: Duration, status: u16) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let path = req.uri().to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        tokio::time::sleep(delay).await;
                        log.lock().unwrap().push((path.clone(), body.to_vec()));
                        let mut r = Response::new(Full::new(Bytes::from(format!("{name} {path}"))));
                        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Fake { url, seen }
}

fn up(version: &str, url: &str, weight: u8, shadow: bool) -> Upstream {
    Upstream {
        version: version.into(),
        url: url.into(),
        weight,
        shadow,
    }
}

fn write_config(path: &Path, upstreams: Vec<Upstream>, timeout_ms: Option<u64>) {
    let c = RouteConfig {
        upstreams,
        timeout_ms,
        capture: None,
    };
    std::fs::write(path, c.to_json()).unwrap();
}

async fn stats(url: &str) -> RouterStats {
    client()
        .get(format!("{url}/_mlcd/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn each_versions_requests_errors_and_latency_are_counted() {
    let (v1, v2) = (
        fake("v1", Duration::from_millis(30), 200).await,
        fake("v2", Duration::ZERO, 503).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.json");
    write_config(
        &cfg,
        vec![up("v1", &v1.url, 50, false), up("v2", &v2.url, 50, false)],
        None,
    );
    let url = router(cfg).await;
    let c = client();
    let mut failed = 0;
    for _ in 0..40 {
        let r = c
            .post(format!("{url}/invocations"))
            .body("{}")
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            failed += 1;
        }
    }
    assert_eq!(failed, 20);
    let s = stats(&url).await;
    let (a, b) = (&s.versions["v1"], &s.versions["v2"]);
    assert_eq!((a.requests, a.errors), (20, 0));
    assert_eq!((b.requests, b.errors), (20, 20));
    let p95 = mlcd::serve::stats::VersionStats::between(None, a)
        .p95
        .unwrap();
    assert!(
        p95 >= Duration::from_millis(27) && p95 < Duration::from_secs(1),
        "{p95:?}"
    );
    // The router's own paths are neither forwarded nor counted.
    assert!(v1
        .seen
        .lock()
        .unwrap()
        .iter()
        .all(|(p, _)| !p.contains("_mlcd")));
    assert_eq!(stats(&url).await.versions["v1"].requests, 20);
}

fn capture_config(path: &Path, upstream: &str, dir: &Path, queue: u32) {
    let c = RouteConfig {
        upstreams: vec![up("v1", upstream, 100, false)],
        timeout_ms: None,
        capture: Some(CaptureSettings {
            sample_percent: 100,
            dir: dir.display().to_string(),
            rotate_bytes: 4096,
            max_bytes: 1 << 20,
            queue,
        }),
    };
    std::fs::write(path, c.to_json()).unwrap();
}

/// Every line of the capture files in `dir`, parsed.
fn records(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            for line in std::fs::read_to_string(&p).unwrap().lines() {
                out.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    out
}

#[tokio::test(flavor = "current_thread")]
async fn captured_requests_are_sagemaker_capture_records() {
    let v1 = fake("v1", Duration::ZERO, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("capture");
    let cfg = dir.path().join("routes.json");
    capture_config(&cfg, &v1.url, &cap, 1024);
    let url = router(cfg).await;
    let c = client();
    for i in 0..30 {
        let r = c
            .post(format!("{url}/invocations"))
            .header("content-type", "application/json")
            .header("x-amzn-sagemaker-inference-id", format!("id-{i}"))
            .body(format!("{{\"instances\":[{{\"x\":{i}}}]}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // GETs (health checks) are not inference: not captured.
    c.get(format!("{url}/ping")).send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    // Written off the request path, flushed within 200 ms.
    while (!cap.exists() || records(&cap).len() < 30) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = stats(&url).await.capture;
    assert_eq!((s.sampled, s.written, s.dropped, s.failed), (30, 30, 0, 0));
    let mut recs = records(&cap);
    assert_eq!(recs.len(), 30);
    recs.sort_by_key(|r| {
        r["eventMetadata"]["inferenceId"]
            .as_str()
            .unwrap()
            .trim_start_matches("id-")
            .parse::<u32>()
            .unwrap()
    });
    let r = &recs[7];
    let input = &r["captureData"]["endpointInput"];
    assert_eq!(input["mode"], "INPUT");
    assert_eq!(input["encoding"], "JSON");
    assert_eq!(input["observedContentType"], "application/json");
    assert_eq!(input["data"], r#"{"instances":[{"x":7}]}"#);
    let output = &r["captureData"]["endpointOutput"];
    assert_eq!(output["mode"], "OUTPUT");
    // The fake answers without a content type: captured as base64 of `v1 /invocations`.
    assert_eq!(output["encoding"], "BASE64");
    assert_eq!(output["data"], "djEgL2ludm9jYXRpb25z");
    assert_eq!(r["eventVersion"], "0");
    // Rotated at 4096 bytes: several files, each within the size.
    let files: Vec<_> = std::fs::read_dir(&cap)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert!(files.len() > 1, "{files:?}");
    assert!(files.iter().all(|f| f.metadata().unwrap().len() <= 4096));
}

#[tokio::test(flavor = "current_thread")]
async fn an_overflowing_capture_queue_drops_records_never_requests() {
    let v1 = fake("v1", Duration::ZERO, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("capture");
    let cfg = dir.path().join("routes.json");
    // A queue of one record and 64 requests at once (the writer is its own thread).
    capture_config(&cfg, &v1.url, &cap, 1);
    let url = router(cfg).await;
    let c = client();
    let sends = (0..400).map(|i| {
        let c = c.clone();
        let url = url.clone();
        async move {
            c.post(format!("{url}/invocations"))
                .header("content-type", "application/json")
                .body(format!("{{\"i\":{i}}}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses: Vec<_> = futures_util::stream::iter(sends)
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // The queue drains and the writer flushes within 200 ms of the last record.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = stats(&url).await.capture;
    while (s.written + s.dropped < 400
        || (!cap.exists() || records(&cap).len() as u64 != s.written))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s = stats(&url).await.capture;
    }
    assert_eq!(s.sampled, 400);
    assert_eq!(s.written + s.dropped, 400, "{s:?}");
    assert_eq!(records(&cap).len() as u64, s.written);
    eprintln!(
        "400 requests, queue of 1: {} written, {} dropped",
        s.written, s.dropped
    );
}

/// Starts the router in this process on a free port; returns its URL.
async fn router(config: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        mlcd::serve::router::serve(listener, config).await.unwrap();
    });
    url
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn count(client: &reqwest::Client, url: &str, n: usize) -> (usize, usize) {
    let (mut a, mut b) = (0, 0);
    for _ in 0..n {
        let r = client
            .post(format!("{url}/invocations"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        match r.headers()["x-mlcd-version"].to_str().unwrap() {
            "v1" => a += 1,
            "v2" => b += 1,
            other => panic!("answered by {other}"),
        }
    }
    (a, b)
}

#[tokio::test(flavor = "current_thread")]
async fn a_90_10_split_sends_exactly_900_of_1000_requests_to_v1() {
    let (v1, v2) = (
        fake("v1", Duration::ZERO, 200).await,
        fake("v2", Duration::ZERO, 200).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.json");
    write_config(
        &cfg,
        vec![up("v1", &v1.url, 90, false), up("v2", &v2.url, 10, false)],
        None,
    );
    let url = router(cfg).await;
    assert_eq!(count(&client(), &url, 1000).await, (900, 100));
    assert_eq!(v1.seen.lock().unwrap().len(), 900);
    assert_eq!(v2.seen.lock().unwrap().len(), 100);
    // The path, query and body reach the upstream unchanged; the answer is its own.
    let r = client()
        .post(format!("{url}/v2/models/churn/infer?x=1"))
        .body("payload")
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.ends_with(" /v2/models/churn/infer?x=1"), "{text}");
    let seen = v1.seen.lock().unwrap().clone();
    let seen2 = v2.seen.lock().unwrap().clone();
    let last = seen
        .iter()
        .chain(seen2.iter())
        .find(|(p, _)| p.contains("infer"))
        .unwrap();
    assert_eq!(last.1, b"payload");
}

#[tokio::test(flavor = "current_thread")]
async fn shadows_get_a_copy_of_every_request_and_answer_nobody() {
    let live = fake("v1", Duration::ZERO, 200).await;
    // A slow shadow that fails: the client neither waits for it nor sees its answer.
    let shadow = fake("v3", Duration::from_millis(1500), 500).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.json");
    write_config(
        &cfg,
        vec![
            up("v1", &live.url, 100, false),
            up("v3", &shadow.url, 0, true),
        ],
        None,
    );
    let url = router(cfg).await;
    let c = client();
    let start = Instant::now();
    for i in 0..5 {
        let r = c
            .post(format!("{url}/invocations"))
            .body(format!("request {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-mlcd-version"], "v1");
    }
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "the client waited for the shadow: {:?}",
        start.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while shadow.seen.lock().unwrap().len() < 5 {
        assert!(
            Instant::now() < deadline,
            "the shadow got {:?}",
            shadow.seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut bodies: Vec<String> = shadow
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(p, b)| format!("{p} {}", String::from_utf8_lossy(b)))
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        (0..5)
            .map(|i| format!("/invocations request {i}"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_upstream_is_a_502_naming_the_version() {
    // Nothing listens on a port just released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let slow = fake("v2", Duration::from_secs(5), 200).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.json");
    write_config(&cfg, vec![up("v1", &closed, 100, false)], None);
    let url = router(cfg.clone()).await;
    let c = client();
    let r = c.get(format!("{url}/ping")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-mlcd-version"], "v1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["version"], "v1");
    assert!(
        body["error"].as_str().unwrap().contains("version `v1`"),
        "{body}"
    );

    // An upstream slower than the timeout: a 502 within the bound.
    write_config(&cfg, vec![up("v2", &slow.url, 100, false)], Some(300));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let start = Instant::now();
    let r = c.get(format!("{url}/ping")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 300ms"),
        "{body}"
    );

    // No version with live weight: 503, said plainly.
    write_config(&cfg, vec![up("v2", &slow.url, 0, false)], None);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = c.get(format!("{url}/ping")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("every weight"));
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn mlcd_route_reloads_a_changed_config_and_keeps_the_old_one_when_the_new_one_is_broken() {
    let (v1, v2) = (
        fake("v1", Duration::ZERO, 200).await,
        fake("v2", Duration::ZERO, 200).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.json");
    write_config(
        &cfg,
        vec![up("v1", &v1.url, 100, false), up("v2", &v2.url, 0, false)],
        None,
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlcd"))
        .args(["route", "--config"])
        .arg(&cfg)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("MLCD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mlcd runs");
    let stderr = child.stderr.take().unwrap();
    let proc = Proc(child);
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mlcd route never listened: {:?}",
            lines.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = client();
    assert_eq!(count(&c, &url, 20).await, (20, 0));

    // 80/20: picked up within a few polls, exactly 80 of 100 after the reload.
    write_config(
        &cfg,
        vec![up("v1", &v1.url, 80, false), up("v2", &v2.url, 20, false)],
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("routes reloaded"))
    {
        assert!(
            Instant::now() < deadline,
            "no reload: {:?}",
            lines.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count(&c, &url, 100).await, (80, 20));

    // A broken file: the 80/20 routes stay, and it is reported once.
    std::fs::write(&cfg, b"{\"upstreams\": [").unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(count(&c, &url, 100).await, (80, 20));
    let reported = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("is invalid"))
        .count();
    assert_eq!(reported, 1, "{:?}", lines.lock().unwrap());
    drop(proc);
}

#[test]
fn mlcd_route_refuses_a_bad_config_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.json");
    std::fs::write(
        &cfg,
        br#"{"upstreams":[{"version":"v1","url":"localhost"}]}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mlcd"))
        .args(["route", "--config"])
        .arg(&cfg)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--config") && err.contains("not an http://HOST:PORT URL"),
        "{err}"
    );
}
