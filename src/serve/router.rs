//! The local endpoint's traffic router (`mlcd route --config FILE --listen ADDR`,
//! a hidden subcommand): a small HTTP/1.1 reverse proxy that sends each request
//! to one production upstream chosen by smooth weighted round-robin (90/10 is
//! exactly 9 in 10, not 9 in 10 on average), copies it to every shadow upstream
//! without waiting for their answers, and names the answering version in an
//! `x-mlcd-version` header. The config file is re-read when it changes (polled
//! every 150 ms); a file that does not parse keeps the config in force.
//!
//! It also counts each version's live requests, 5xx answers and latency, served
//! as JSON on `GET /_mlcd/stats` (the rollout guards read them), and with a
//! `capture` section writes sampled inference requests and answers to capture
//! files off the request path (see capture.rs).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::capture::{self, CaptureSettings, CounterSnapshot, Exchange, Sink};
use super::stats::VersionCounters;
use crate::error::UserError;

/// The header naming the version that answered.
pub const VERSION_HEADER: &str = "x-mlcd-version";
/// The router's own paths (never forwarded, counted or captured).
pub const ADMIN_PREFIX: &str = "/_mlcd/";
/// Where the router serves its counters ([`RouterStats`] as JSON).
pub const STATS_PATH: &str = "/_mlcd/stats";
/// The request header whose value becomes a capture record's `inferenceId`
/// (SageMaker's InvokeEndpoint `InferenceId`).
pub const INFERENCE_ID_HEADER: &str = "x-amzn-sagemaker-inference-id";

/// How often the config file is checked for changes.
const RELOAD_EVERY: Duration = Duration::from_millis(150);
/// How long connecting to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The request timeout when the config names none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request body forwarded (SageMaker's own limit is 6 MB).
const MAX_BODY: usize = 32 * 1024 * 1024;
/// Shadow copies in flight at once; more are dropped (a shadow must never slow
/// or exhaust the production path).
const MAX_SHADOW_IN_FLIGHT: usize = 64;

/// The router's config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Where requests go.
    pub upstreams: Vec<Upstream>,
    /// The request timeout in milliseconds (default 60 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Traffic capture; none: nothing is captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureSettings>,
}

/// What `GET /_mlcd/stats` answers: cumulative counters since the router started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterStats {
    /// Per version that answered live traffic.
    pub versions: BTreeMap<String, VersionCounters>,
    /// Capture counters (all zero when capture was never on).
    pub capture: CounterSnapshot,
}

/// One version behind the router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// The version's id (the `x-mlcd-version` value).
    pub version: String,
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Its share of live traffic (relative to the other production upstreams).
    #[serde(default)]
    pub weight: u8,
    /// A shadow gets a copy of every request and answers nobody.
    #[serde(default)]
    pub shadow: bool,
}

impl RouteConfig {
    /// Parses and checks a config file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<RouteConfig, String> {
        let c: RouteConfig = serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "expected JSON {{\"upstreams\": [{{\"version\", \"url\", \"weight\", \"shadow\"}}, …]}}: {e}"
            )
        })?;
        c.check()?;
        Ok(c)
    }

    /// Checks the config: unique versions, http URLs, shadows at weight 0.
    pub fn check(&self) -> Result<(), String> {
        for (i, u) in self.upstreams.iter().enumerate() {
            if u.version.trim().is_empty() {
                return Err(format!("upstreams[{i}]: `version` is empty"));
            }
            if self.upstreams[..i].iter().any(|o| o.version == u.version) {
                return Err(format!(
                    "upstreams[{i}]: version `{}` is listed twice",
                    u.version
                ));
            }
            match reqwest::Url::parse(&u.url) {
                Ok(url) if url.scheme() == "http" && url.host().is_some() => {}
                _ => {
                    return Err(format!(
                        "upstreams[{i}] (`{}`): url `{}` is not an http://HOST:PORT URL",
                        u.version, u.url
                    ))
                }
            }
            if u.weight > 100 {
                return Err(format!(
                    "upstreams[{i}] (`{}`): weight {} is above 100",
                    u.version, u.weight
                ));
            }
            if u.shadow && u.weight > 0 {
                return Err(format!(
                    "upstreams[{i}] (`{}`): a shadow takes no live traffic, so its weight must be 0 (got {})",
                    u.version, u.weight
                ));
            }
        }
        if self.timeout_ms == Some(0) {
            return Err("`timeout_ms` must be above 0".into());
        }
        if let Some(c) = &self.capture {
            c.check()?;
        }
        Ok(())
    }

    /// The config as the router reads it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a route config serializes")
    }

    fn timeout(&self) -> Duration {
        self.timeout_ms
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
    }
}

/// Smooth weighted round-robin (nginx's): over any run of `sum(weights)` picks
/// from a fresh start, each upstream is picked exactly its weight times, spread
/// evenly rather than in bursts.
#[derive(Debug, Default)]
pub struct Picker {
    current: Vec<i64>,
}

impl Picker {
    /// The index of the next production upstream, or None when no production
    /// upstream has a weight above 0.
    pub fn pick(&mut self, upstreams: &[Upstream]) -> Option<usize> {
        if self.current.len() != upstreams.len() {
            self.current = vec![0; upstreams.len()];
        }
        let live = |u: &Upstream| !u.shadow && u.weight > 0;
        let total: i64 = upstreams
            .iter()
            .filter(|u| live(u))
            .map(|u| i64::from(u.weight))
            .sum();
        if total == 0 {
            return None;
        }
        let mut best: Option<usize> = None;
        for (i, u) in upstreams.iter().enumerate() {
            if !live(u) {
                continue;
            }
            self.current[i] += i64::from(u.weight);
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best.expect("total > 0 means one live upstream");
        self.current[b] -= total;
        Some(b)
    }
}

struct State {
    config: RouteConfig,
    picker: Picker,
    sink: Option<Arc<Sink>>,
}

struct Router {
    state: Mutex<State>,
    client: reqwest::Client,
    shadows: Arc<Semaphore>,
    config_path: PathBuf,
    counters: Mutex<BTreeMap<String, VersionCounters>>,
    captured: Arc<capture::Counters>,
}

/// What one request is sent to.
struct Route {
    target: Option<Upstream>,
    shadows: Vec<Upstream>,
    timeout: Duration,
    sink: Option<Arc<Sink>>,
}

/// A capture sink for `settings` with its writer thread running (None, and
/// logged, when the thread cannot start: the router serves without capture).
fn start_capture(
    settings: Option<&CaptureSettings>,
    counters: &Arc<capture::Counters>,
) -> Option<Arc<Sink>> {
    let settings = settings?.clone();
    let (sink, rx) = Sink::new(settings.clone(), counters.clone());
    match capture::spawn_writer(settings.clone(), rx, counters.clone()) {
        Ok(_) => {
            log::info!(
                "capturing {}% of inference requests to {}",
                settings.sample_percent,
                settings.dir
            );
            Some(Arc::new(sink))
        }
        Err(e) => {
            log::warn!("capture is off: cannot start its writer thread: {e}");
            None
        }
    }
}

impl Router {
    fn route(&self) -> Route {
        let mut st = self
            .state
            .lock()
            .expect("the router state is never poisoned");
        let State {
            config,
            picker,
            sink,
        } = &mut *st;
        let target = picker
            .pick(&config.upstreams)
            .map(|i| config.upstreams[i].clone());
        Route {
            target,
            shadows: config
                .upstreams
                .iter()
                .filter(|u| u.shadow)
                .cloned()
                .collect(),
            timeout: config.timeout(),
            sink: sink.clone(),
        }
    }

    fn stats(&self) -> RouterStats {
        RouterStats {
            versions: self
                .counters
                .lock()
                .expect("the counters are never poisoned")
                .clone(),
            capture: self.captured.snapshot(),
        }
    }

    /// Counts one live answer of `version`.
    fn count(&self, version: &str, status: StatusCode, latency: Duration) {
        let mut all = self
            .counters
            .lock()
            .expect("the counters are never poisoned");
        let c = all.entry(version.to_string()).or_default();
        c.requests += 1;
        if status.is_server_error() {
            c.errors += 1;
        }
        c.latency.record(latency);
    }

    fn admin(&self, parts: &hyper::http::request::Parts) -> Response<Full<Bytes>> {
        if parts.uri.path() == STATS_PATH && parts.method == hyper::Method::GET {
            let body = serde_json::to_vec(&self.stats()).expect("stats serialize");
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return resp;
        }
        error_response(
            StatusCode::NOT_FOUND,
            None,
            &format!(
                "{} {}: the router answers GET {STATS_PATH} under {ADMIN_PREFIX}",
                parts.method,
                parts.uri.path()
            ),
        )
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path().starts_with(ADMIN_PREFIX) {
            let (parts, _) = req.into_parts();
            return self.admin(&parts);
        }
        let arrived = std::time::Instant::now();
        let arrived_at = std::time::SystemTime::now();
        let route = self.route();
        let (parts, body) = req.into_parts();
        let body = match tokio::time::timeout(route.timeout, Limited::new(body, MAX_BODY).collect())
            .await
        {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) => {
                let too_big = e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                let (status, msg) = if too_big {
                    (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the request body is larger than {MAX_BODY} bytes"),
                    )
                } else {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the request body: {e}"),
                    )
                };
                return error_response(status, None, &msg);
            }
            Err(_) => {
                return error_response(
                    StatusCode::REQUEST_TIMEOUT,
                    None,
                    &format!(
                        "the request body did not arrive within {}",
                        humantime::format_duration(route.timeout)
                    ),
                )
            }
        };
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let headers = forwardable(&parts.headers);
        for shadow in route.shadows {
            let Ok(permit) = self.shadows.clone().try_acquire_owned() else {
                log::debug!(
                    "{MAX_SHADOW_IN_FLIGHT} shadow copies in flight: the copy of {} {path} to `{}` is dropped",
                    parts.method,
                    shadow.version
                );
                continue;
            };
            let req = self.request(
                &shadow,
                &parts.method,
                &path,
                &headers,
                body.clone(),
                route.timeout,
            );
            tokio::spawn(async move {
                let _permit = permit;
                match req.send().await {
                    Ok(r) => {
                        let status = r.status();
                        let _ = r.bytes().await;
                        log::debug!("shadow `{}` answered {status}", shadow.version);
                    }
                    Err(e) => log::debug!("shadow `{}` failed: {e}", shadow.version),
                }
            });
        }
        let Some(target) = route.target else {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                &format!(
                    "no production version takes traffic (every weight in {} is 0)",
                    self.config_path.display()
                ),
            );
        };
        let body_for_capture = body.clone();
        let sent = self
            .request(&target, &parts.method, &path, &headers, body, route.timeout)
            .send()
            .await;
        let answer = match sent {
            Ok(r) => {
                let status = r.status();
                let headers = forwardable(r.headers());
                r.bytes().await.map(|b| (status, headers, b))
            }
            Err(e) => Err(e),
        };
        let resp = match answer {
            Ok((status, headers, bytes)) => {
                if let Some(sink) = route
                    .sink
                    .as_ref()
                    .filter(|_| parts.method == hyper::Method::POST)
                {
                    if sink.sample() {
                        sink.offer(Exchange {
                            version: target.version.clone(),
                            at: arrived_at,
                            request_type: content_type(&parts.headers),
                            request: body_for_capture.clone(),
                            response_type: content_type(&headers),
                            response: bytes.clone(),
                            inference_id: parts
                                .headers
                                .get(INFERENCE_ID_HEADER)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string),
                        });
                    }
                }
                let mut resp = Response::new(Full::new(bytes));
                *resp.status_mut() = status;
                *resp.headers_mut() = headers;
                set_version(&mut resp, &target.version);
                resp
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    format!(
                        "did not answer within {}",
                        humantime::format_duration(route.timeout)
                    )
                } else if e.is_connect() {
                    "refused the connection (is its container running?)".to_string()
                } else {
                    format!("failed: {}", error_chain(&e))
                };
                log::warn!("version `{}` at {} {what}", target.version, target.url);
                error_response(
                    StatusCode::BAD_GATEWAY,
                    Some(&target.version),
                    &format!("version `{}` at {} {what}", target.version, target.url),
                )
            }
        };
        self.count(&target.version, resp.status(), arrived.elapsed());
        resp
    }

    fn request(
        &self,
        to: &Upstream,
        method: &hyper::Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", to.url.trim_end_matches('/'));
        self.client
            .request(method.clone(), url)
            .headers(headers.clone())
            .timeout(timeout)
            .body(body)
    }

    /// Re-reads the config when its bytes change; a file that does not parse
    /// (or cannot be read) keeps the old config and is reported once.
    async fn watch(self: Arc<Self>, mut last: Vec<u8>) {
        let mut reported: Option<Vec<u8>> = None;
        loop {
            tokio::time::sleep(RELOAD_EVERY).await;
            // A small file: read in place (the runtime may be single-threaded).
            let bytes = match std::fs::read(&self.config_path) {
                Ok(b) => b,
                Err(e) => {
                    let marker = format!("\0read error: {}", e.kind()).into_bytes();
                    if reported.as_ref() != Some(&marker) {
                        log::warn!(
                            "cannot read the route config {}: {e}; keeping the routes in force",
                            self.config_path.display()
                        );
                        reported = Some(marker);
                    }
                    continue;
                }
            };
            if bytes == last {
                continue;
            }
            match RouteConfig::parse(&bytes) {
                Ok(config) => {
                    log::info!("routes reloaded: {}", describe(&config));
                    let mut st = self
                        .state
                        .lock()
                        .expect("the router state is never poisoned");
                    if st.config.capture != config.capture {
                        st.sink = start_capture(config.capture.as_ref(), &self.captured);
                        if config.capture.is_none() {
                            log::info!("capture is off");
                        }
                    }
                    st.config = config;
                    st.picker = Picker::default();
                    drop(st);
                    last = bytes;
                    reported = None;
                }
                Err(e) => {
                    if reported.as_ref() != Some(&bytes) {
                        log::warn!(
                            "the route config {} is invalid ({e}); keeping the routes in force",
                            self.config_path.display()
                        );
                        reported = Some(bytes);
                    }
                }
            }
        }
    }
}

fn describe(c: &RouteConfig) -> String {
    c.upstreams
        .iter()
        .map(|u| {
            if u.shadow {
                format!("{} (shadow)", u.version)
            } else {
                format!("{} {}%", u.version, u.weight)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Hop-by-hop headers stay on their hop; the length is set again for the body sent.
fn forwardable(headers: &HeaderMap) -> HeaderMap {
    const HOP: &[&str] = &[
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    ];
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        if !HOP.contains(&k.as_str()) {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

/// A message's content type (`application/octet-stream` when it names none).
fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string()
}

fn set_version<B>(resp: &mut Response<B>, version: &str) {
    if let Ok(v) = HeaderValue::from_str(version) {
        resp.headers_mut()
            .insert(HeaderName::from_static(VERSION_HEADER), v);
    }
}

fn error_response(
    status: StatusCode,
    version: Option<&str>,
    message: &str,
) -> Response<Full<Bytes>> {
    let mut body = serde_json::json!({ "error": message });
    if let Some(v) = version {
        body["version"] = v.into();
    }
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string() + "\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(v) = version {
        set_version(&mut resp, v);
    }
    resp
}

/// Reads and checks the config file (the first read must succeed).
pub fn load(config: &Path) -> Result<(RouteConfig, Vec<u8>), UserError> {
    let bytes = std::fs::read(config).map_err(|e| {
        UserError::invalid(format!(
            "--config {}: cannot read the route config: {e}",
            config.display()
        ))
    })?;
    let parsed = RouteConfig::parse(&bytes)
        .map_err(|e| UserError::invalid(format!("--config {}: {e}", config.display())))?;
    Ok((parsed, bytes))
}

/// Serves on `listener` until the task is dropped, routing by the config at
/// `config` (read now, then watched).
pub async fn serve(listener: TcpListener, config: PathBuf) -> Result<(), UserError> {
    let (parsed, bytes) = load(&config)?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| UserError::failed(format!("cannot set up the router's HTTP client: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| UserError::failed(format!("the router's socket has no address: {e}")))?;
    log::info!(
        "routing on http://{local} from {}: {}",
        config.display(),
        describe(&parsed)
    );
    let captured: Arc<capture::Counters> = Arc::default();
    let sink = start_capture(parsed.capture.as_ref(), &captured);
    let router = Arc::new(Router {
        state: Mutex::new(State {
            config: parsed,
            picker: Picker::default(),
            sink,
        }),
        client,
        shadows: Arc::new(Semaphore::new(MAX_SHADOW_IN_FLIGHT)),
        config_path: config,
        counters: Mutex::default(),
        captured,
    });
    let watcher = tokio::spawn(router.clone().watch(bytes));
    let _stop_watching = AbortOnDrop(watcher);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and the like: wait, do not spin.
                log::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let router = router.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let router = router.clone();
                async move { Ok::<_, Infallible>(router.handle(req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                log::debug!("connection from {peer}: {e}");
            }
        });
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `mlcd route`: binds `listen` and serves until SIGTERM or SIGINT.
pub async fn run(config: &Path, listen: &str) -> Result<(), UserError> {
    let addr: SocketAddr = listen.trim().parse().map_err(|_| {
        UserError::invalid(format!(
            "--listen `{listen}`: expected an address like 127.0.0.1:8080"
        ))
    })?;
    // Checked before binding, so a bad config never holds the port.
    load(config)?;
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        UserError::failed(format!("--listen {addr}: cannot listen there: {e}"))
            .hint("pick a free port")
    })?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| UserError::failed(format!("cannot watch SIGTERM: {e}")))?;
    tokio::select! {
        r = serve(listener, config.to_path_buf()) => r,
        _ = term.recv() => { log::info!("SIGTERM: the router stops"); Ok(()) }
        _ = tokio::signal::ctrl_c() => { log::info!("SIGINT: the router stops"); Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(v: &str, weight: u8, shadow: bool) -> Upstream {
        Upstream {
            version: v.into(),
            url: "http://127.0.0.1:1".into(),
            weight,
            shadow,
        }
    }

    #[test]
    fn weighted_round_robin_is_exact_and_spread() {
        let ups = [up("a", 90, false), up("b", 10, false), up("s", 0, true)];
        let mut p = Picker::default();
        let picks: Vec<usize> = (0..1000).map(|_| p.pick(&ups).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 900);
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 100);
        // Spread: every window of 10 picks holds exactly one `b`.
        for w in picks.chunks(10) {
            assert_eq!(w.iter().filter(|&&i| i == 1).count(), 1, "{w:?}");
        }
    }

    #[test]
    fn no_live_weight_means_no_pick() {
        let ups = [up("a", 0, false), up("s", 0, true)];
        assert_eq!(Picker::default().pick(&ups), None);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let e =
            RouteConfig::parse(br#"{"upstreams":[{"version":"a","url":"ftp://x","weight":1}]}"#)
                .unwrap_err();
        assert!(e.contains("http://HOST:PORT"), "{e}");
        let e = RouteConfig::parse(
            br#"{"upstreams":[{"version":"a","url":"http://h:1"},{"version":"a","url":"http://h:2"}]}"#,
        )
        .unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
        let e = RouteConfig::parse(
            br#"{"upstreams":[{"version":"a","url":"http://h:1","weight":5,"shadow":true}]}"#,
        )
        .unwrap_err();
        assert!(e.contains("weight must be 0"), "{e}");
        let e = RouteConfig::parse(br#"{"upstream":[]}"#).unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
