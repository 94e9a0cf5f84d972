//! The local endpoint's router (`mlcd route`) against fake upstreams on
//! loopback: the weighted split is exact, shadows get copies and answer nobody,
//! a changed config is picked up and a broken one keeps the routes in force
//! (reported once), and a failing upstream is a 502 naming the version.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mlcd::serve::router::{RouteConfig, Upstream};
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
    };
    std::fs::write(path, c.to_json()).unwrap();
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
