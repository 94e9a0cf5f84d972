//! `mlcd build` against a registry that fails in the middle of a push: the real
//! Docker engine and the real OCI registry of the test bed, with a small
//! fault-injecting HTTP proxy (a thread in this test) between them. The example
//! config's `build.registry` points at the proxy, so mlcd's own registry client
//! and dockerd's pusher both go through it.
//!
//! What dockerd 20.10 does on a failing registry (measured here with
//! `docker push` through this kind of proxy), which decides how the faults are
//! injected:
//! - a blob upload answered 5xx, or whose connection is dropped, is retried by
//!   dockerd itself: 5 attempts per layer, waiting 5, 10, 15 and 20 s, so about
//!   50 s before mlcd hears of it ("received unexpected HTTP status: 503
//!   Service Unavailable", or just "EOF"). With mlcd's retry on top, failing
//!   blob uploads for good would take over 100 s even with
//!   `MLCD_RETRY_ATTEMPTS=2`;
//! - a manifest PUT answered 503 is not retried by dockerd: the push fails at
//!   once with "received unexpected HTTP status: 503 Service Unavailable";
//! - a 429 with the registry's JSON error body is not retried by dockerd
//!   either: the push fails at once with "toomanyrequests: <message>";
//! - dockerd probes HTTPS first even for a 127.0.0.0/8 registry: the proxy
//!   hangs up on a TLS ClientHello so that it falls back to HTTP at once (a
//!   proxy that waits for an HTTP request head costs 10 s per probe).
//!
//! So the registry here "goes down" once it has accepted the layers: from the
//! first manifest PUT on, every write (blob upload POST/PATCH/PUT, manifest
//! PUT) is answered 503 while reads still work, and each of mlcd's attempts
//! fails in well under a second (on a retry dockerd finds the blobs and only
//! PUTs the manifest). The recovering registry fails the first blob upload
//! (dockerd's own retry covers it, 5 s) and the first manifest PUT (which only
//! mlcd's retry covers); a rate-limited one answers 429 to the first upload.
//!
//! Needs `scripts/testbed up docker base-image registry` (scripts/test does it).

mod common;
use common::*;

use std::collections::BTreeMap;
use std::time::Instant;

use fault_proxy::{FaultProxy, Faults, Kind, Reply};

const NEED: &[&str] = &[
    "DOCKER_HOST",
    "MLCD_TESTBED_REGISTRY",
    "MLCD_TESTBED_REGISTRY_USER",
    "MLCD_TESTBED_REGISTRY_PASSWORD",
    "MLCD_TESTBED_BASE_IMAGE",
];

/// Runs `mlcd build` on the example with mlcd's retry shortened to `attempts`.
fn build(
    ws: &Workspace,
    tb: &BTreeMap<String, String>,
    attempts: &str,
) -> (Run, serde_json::Value) {
    let docker_config = ws.path().join("docker-config");
    std::fs::create_dir_all(&docker_config).unwrap();
    let dc = docker_config.display().to_string();
    let env = [
        ("DOCKER_HOST", tb["DOCKER_HOST"].as_str()),
        ("DOCKER_CONFIG", dc.as_str()),
        (
            "MLCD_REGISTRY_PASSWORD",
            tb["MLCD_TESTBED_REGISTRY_PASSWORD"].as_str(),
        ),
        ("GITHUB_SHA", SHA),
        ("GITHUB_REF", "refs/heads/main"),
        ("MLCD_RETRY_ATTEMPTS", attempts),
        ("MLCD_RETRY_INITIAL_MS", "200"),
        ("MLCD_LOG", "warn"),
    ];
    let args = [
        "build",
        "--config",
        "example/mlcd.yml",
        "--registry-username",
        tb["MLCD_TESTBED_REGISTRY_USER"].as_str(),
        "--output",
        "json",
    ];
    let r = mlcd(ws.path(), &args, &env);
    let v = serde_json::from_str(r.stdout.trim()).unwrap_or(serde_json::Value::Null);
    (r, v)
}

/// A client of the real registry (not the proxy).
fn real_registry(tb: &BTreeMap<String, String>) -> mlcd::image::registry::Registry {
    mlcd::image::registry::Registry::new(
        &tb["MLCD_TESTBED_REGISTRY"],
        Some(mlcd::image::registry::Credentials {
            username: tb["MLCD_TESTBED_REGISTRY_USER"].clone(),
            password: mlcd::secrets::Secret::new(tb["MLCD_TESTBED_REGISTRY_PASSWORD"].clone()),
        }),
        None,
    )
    .unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn assert_no_password(r: &Run, tb: &BTreeMap<String, String>) {
    let pw = &tb["MLCD_TESTBED_REGISTRY_PASSWORD"];
    assert!(
        !r.stdout.contains(pw.as_str()) && !r.stderr.contains(pw.as_str()),
        "the password leaked"
    );
}

/// Asserts a successful build through the proxy and that the real registry
/// holds the image under every reported tag with the reported digest.
fn assert_pushed(r: &Run, out: &serde_json::Value, tb: &BTreeMap<String, String>, ns: &str) {
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["skipped"], "false", "{out}");
    let digest = out["digest"].as_str().unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let tags: Vec<&str> = out["tags"].as_str().unwrap().lines().collect();
    assert!(
        tags.iter().any(|t| t.ends_with(&format!(":{SHA}"))),
        "{tags:?}"
    );
    let reg = real_registry(tb);
    let path = format!("{ns}/churn");
    for t in &tags {
        let tag = t.rsplit_once(':').unwrap().1;
        let m = block_on(reg.manifest(&path, tag))
            .unwrap()
            .unwrap_or_else(|| panic!("{t} is not in the real registry"));
        assert_eq!(m.digest, digest, "{t}");
    }
}

#[test]
fn a_registry_going_down_mid_push_is_retried_then_fails_clearly() {
    let tb = testbed_env(NEED);
    let proxy = FaultProxy::start(
        &tb["MLCD_TESTBED_REGISTRY"],
        Faults {
            down_from_first_manifest_put: true,
            ..Faults::default()
        },
    );
    let (ws, ns) = example_pushing_to(&proxy.addr, &tb["MLCD_TESTBED_BASE_IMAGE"], "f");
    let repo = format!("{}/{ns}/churn", proxy.addr);

    let started = Instant::now();
    let (r, out) = build(&ws, &tb, "2");
    let took = started.elapsed();
    let seen = proxy.seen();
    eprintln!("registry down mid-push: mlcd took {took:?}");
    eprintln!("{}", fault_proxy::describe(&seen));

    r.assert_code(1);
    assert_eq!(out["status"], "failed", "{out}");
    assert_no_password(&r, &tb);

    // Layers went up before the registry went down: it really was mid-push.
    assert!(
        seen.iter()
            .any(|s| s.kind == Kind::BlobUpload && s.method == "PUT" && s.status == 201),
        "no blob upload completed before the registry went down\n{}",
        fault_proxy::describe(&seen)
    );
    // One manifest PUT per attempt of mlcd (dockerd does not retry those), all refused.
    let puts: Vec<_> = seen
        .iter()
        .filter(|s| s.kind == Kind::ManifestPut)
        .collect();
    assert_eq!(puts.len(), 2, "{}", fault_proxy::describe(&seen));
    assert!(puts.iter().all(|s| s.injected && s.status == 503));

    // mlcd retried once, then gave up naming the repository and tag.
    assert_eq!(
        r.stderr.matches("; retry ").count(),
        1,
        "one retry after the first attempt: {}",
        r.stderr
    );
    assert!(r.stderr.contains("; retry 1 of 1"), "{}", r.stderr);
    // The layers go up once, under the build-id tag; the other tags come after.
    assert!(
        r.stderr.contains(&format!("pushing {repo}:build-")) && r.stderr.contains(" failed"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("503 Service Unavailable"), "{}", r.stderr);
    assert!(
        r.stderr.contains("gave up after 2 attempts"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("rerun when it is back"),
        "the hint: {}",
        r.stderr
    );

    // Nothing was tagged in the real registry.
    let reg = real_registry(&tb);
    assert!(block_on(reg.manifest(&format!("{ns}/churn"), SHA))
        .unwrap()
        .is_none());
    // Bounded: mlcd's retry came at once, not after dockerd's 50 s of upload retries.
    let retry_took = puts[1].at - puts[0].at;
    eprintln!(
        "push phase {:.1}s; mlcd's retry {retry_took:.2}s after the first failure",
        fault_proxy::push_phase(&seen)
    );
    assert!(retry_took < 10.0, "{retry_took}s");
}

#[test]
fn a_registry_failing_transiently_recovers_and_the_push_succeeds_after_a_retry() {
    let tb = testbed_env(NEED);
    let proxy = FaultProxy::start(
        &tb["MLCD_TESTBED_REGISTRY"],
        Faults {
            first: vec![
                // dockerd retries this one itself (after 5 s): mlcd never hears of it.
                (Kind::BlobUpload, 1, Reply::Unavailable),
                // dockerd gives up at once on this one: mlcd's retry pushes again.
                (Kind::ManifestPut, 1, Reply::Unavailable),
            ],
            ..Faults::default()
        },
    );
    let (ws, ns) = example_pushing_to(&proxy.addr, &tb["MLCD_TESTBED_BASE_IMAGE"], "f");

    let started = Instant::now();
    let (r, out) = build(&ws, &tb, "2");
    let took = started.elapsed();
    let seen = proxy.seen();
    eprintln!("transient failures: mlcd took {took:?}");
    eprintln!("{}", fault_proxy::describe(&seen));

    assert_pushed(&r, &out, &tb, &ns);
    assert_no_password(&r, &tb);
    assert_eq!(
        r.stderr.matches("; retry ").count(),
        1,
        "exactly one retry of mlcd: {}",
        r.stderr
    );
    assert!(r.stderr.contains("; retry 1 of 1"), "{}", r.stderr);
    assert!(r.stderr.contains("503 Service Unavailable"), "{}", r.stderr);
    let injected: Vec<_> = seen.iter().filter(|s| s.injected).collect();
    assert_eq!(injected.len(), 2, "{}", fault_proxy::describe(&seen));
    // dockerd's own retry of the upload (5 s) then mlcd's retry of the push.
    let push = fault_proxy::push_phase(&seen);
    eprintln!("push phase {push:.1}s");
    assert!(push < 60.0, "the push took {push}s");
}

#[test]
fn a_rate_limited_blob_upload_is_retried_by_mlcd() {
    let tb = testbed_env(NEED);
    let proxy = FaultProxy::start(
        &tb["MLCD_TESTBED_REGISTRY"],
        Faults {
            // dockerd does not retry a 429 ("toomanyrequests: …"); mlcd must.
            first: vec![(Kind::BlobUpload, 1, Reply::TooManyRequests)],
            ..Faults::default()
        },
    );
    let (ws, ns) = example_pushing_to(&proxy.addr, &tb["MLCD_TESTBED_BASE_IMAGE"], "f");

    let started = Instant::now();
    let (r, out) = build(&ws, &tb, "2");
    let took = started.elapsed();
    let seen = proxy.seen();
    eprintln!("rate limited: mlcd took {took:?}");
    eprintln!("{}", fault_proxy::describe(&seen));

    assert_pushed(&r, &out, &tb, &ns);
    assert_no_password(&r, &tb);
    assert!(r.stderr.contains("; retry 1 of 1"), "{}", r.stderr);
    assert!(r.stderr.contains("toomanyrequests"), "{}", r.stderr);
    let injected: Vec<_> = seen.iter().filter(|s| s.injected).collect();
    assert_eq!(injected.len(), 1, "{}", fault_proxy::describe(&seen));
    let push = fault_proxy::push_phase(&seen);
    eprintln!("push phase {push:.1}s");
    assert!(push < 60.0, "the push took {push}s");
}

/// A plain HTTP/1.1 forwarding proxy in front of a registry that injects
/// failures. Every connection carries one request: the proxy forces
/// `Connection: close` upstream (the registry then says so in its answer) and
/// relays bytes both ways, so request bodies (chunked layer uploads) need no
/// parsing. Stopped when dropped.
mod fault_proxy {
    use std::collections::HashMap;
    use std::io::{self, Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::Duration;

    /// How long a socket may stay silent (a 160 MB layer PUT is verified
    /// before the registry answers).
    const IO_TIMEOUT: Duration = Duration::from_secs(120);

    /// What a request is, for the registry API.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Kind {
        /// `POST|PATCH|PUT /v2/<name>/blobs/uploads/…`
        BlobUpload,
        /// `PUT /v2/<name>/manifests/<ref>`
        ManifestPut,
        /// `GET` or `HEAD` of anything (the `/v2/` ping, manifests, blobs).
        Read,
        /// Any other write.
        OtherWrite,
    }

    /// An injected answer.
    #[derive(Clone, Copy, Debug)]
    pub enum Reply {
        /// `503 Service Unavailable`, a plain text body.
        Unavailable,
        /// `429 Too Many Requests` with the registry's JSON error body.
        TooManyRequests,
    }

    /// Which requests fail.
    #[derive(Default, Clone)]
    pub struct Faults {
        /// The first `n` requests of a kind get the reply.
        pub first: Vec<(Kind, usize, Reply)>,
        /// From the first manifest PUT on, every write is answered 503 (the
        /// registry is down for writes; reads still work).
        pub down_from_first_manifest_put: bool,
    }

    /// One request the proxy saw.
    #[derive(Clone, Debug)]
    pub struct Seen {
        pub method: String,
        pub path: String,
        pub kind: Kind,
        /// Answered by the proxy rather than the registry.
        pub injected: bool,
        /// The status answered (0 when the registry's answer was not read).
        pub status: u16,
        /// Seconds since the proxy started.
        pub at: f64,
    }

    struct State {
        upstream: String,
        faults: Faults,
        started: std::time::Instant,
        inner: Mutex<Inner>,
    }

    #[derive(Default)]
    struct Inner {
        counts: HashMap<Kind, usize>,
        down: bool,
        seen: Vec<Seen>,
    }

    pub struct FaultProxy {
        /// `127.0.0.1:<port>`.
        pub addr: String,
        state: Arc<State>,
        stop: Arc<AtomicBool>,
        accept: Option<JoinHandle<()>>,
    }

    impl FaultProxy {
        pub fn start(upstream: &str, faults: Faults) -> FaultProxy {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let state = Arc::new(State {
                upstream: upstream.to_string(),
                faults,
                started: std::time::Instant::now(),
                inner: Mutex::new(Inner::default()),
            });
            let stop = Arc::new(AtomicBool::new(false));
            let (st, sp) = (state.clone(), stop.clone());
            let accept = std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if sp.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(c) = conn {
                        let st = st.clone();
                        std::thread::spawn(move || {
                            let _ = serve(c, &st);
                        });
                    }
                }
            });
            FaultProxy {
                addr,
                state,
                stop,
                accept: Some(accept),
            }
        }

        /// The requests seen so far, in order.
        pub fn seen(&self) -> Vec<Seen> {
            self.state.inner.lock().unwrap().seen.clone()
        }
    }

    impl Drop for FaultProxy {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(&self.addr);
            if let Some(h) = self.accept.take() {
                let _ = h.join();
            }
        }
    }

    /// The request log, one line a request (for failure messages).
    pub fn describe(seen: &[Seen]) -> String {
        seen.iter()
            .map(|s| {
                let path = if s.path.len() > 90 {
                    format!("{}…", &s.path[..90])
                } else {
                    s.path.clone()
                };
                format!(
                    "{:7.2}s {} {} {path} -> {}{}",
                    s.at,
                    if s.injected { "!" } else { " " },
                    s.method,
                    s.status,
                    if s.injected { " (injected)" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Seconds from the first write (dockerd's push starting) to the last request.
    pub fn push_phase(seen: &[Seen]) -> f64 {
        let first = seen
            .iter()
            .find(|s| s.kind != Kind::Read)
            .map_or(0.0, |s| s.at);
        seen.last().map_or(0.0, |s| s.at) - first
    }

    fn kind(method: &str, path: &str) -> Kind {
        match method {
            "GET" | "HEAD" => Kind::Read,
            "POST" | "PATCH" | "PUT" if path.contains("/blobs/uploads") => Kind::BlobUpload,
            "PUT" if path.contains("/manifests/") => Kind::ManifestPut,
            _ => Kind::OtherWrite,
        }
    }

    impl State {
        /// Records the request; returns the injected reply, if any, and the log index.
        fn decide(&self, method: &str, path: &str) -> (Option<Reply>, usize) {
            let kind = kind(method, path);
            let mut inner = self.inner.lock().unwrap();
            let n = {
                let c = inner.counts.entry(kind).or_default();
                *c += 1;
                *c
            };
            if self.faults.down_from_first_manifest_put && kind == Kind::ManifestPut {
                inner.down = true;
            }
            let reply = if inner.down && kind != Kind::Read {
                Some(Reply::Unavailable)
            } else {
                self.faults
                    .first
                    .iter()
                    .find(|(k, count, _)| *k == kind && n <= *count)
                    .map(|(_, _, r)| *r)
            };
            inner.seen.push(Seen {
                method: method.to_string(),
                path: path.to_string(),
                kind,
                injected: reply.is_some(),
                status: match reply {
                    Some(Reply::Unavailable) => 503,
                    Some(Reply::TooManyRequests) => 429,
                    None => 0,
                },
                at: self.started.elapsed().as_secs_f64(),
            });
            (reply, inner.seen.len() - 1)
        }

        fn record_status(&self, index: usize, status: u16) {
            self.inner.lock().unwrap().seen[index].status = status;
        }
    }

    /// Reads up to the end of the request head; returns it and the bytes after it.
    fn read_head(s: &mut TcpStream) -> io::Result<(String, Vec<u8>)> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = buf.split_off(i + 4);
                buf.truncate(i);
                return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
            }
            if buf.len() > 256 * 1024 {
                return Err(io::Error::other("request head too long"));
            }
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn serve(mut client: TcpStream, state: &State) -> io::Result<()> {
        client.set_read_timeout(Some(IO_TIMEOUT))?;
        // dockerd tries HTTPS first: hang up on a TLS ClientHello (0x16) so it
        // falls back to plain HTTP at once, as the plain registry itself does.
        let mut first = [0u8; 1];
        if client.peek(&mut first)? == 0 || first[0] == 0x16 {
            return Ok(());
        }
        let (head, rest) = read_head(&mut client)?;
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let (reply, index) = state.decide(&method, &path);

        if let Some(reply) = reply {
            let (status, body) = match reply {
                Reply::Unavailable => (
                    "503 Service Unavailable",
                    "registry unavailable (injected by the test)\n".to_string(),
                ),
                Reply::TooManyRequests => (
                    "429 Too Many Requests",
                    r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"rate limit exceeded, slow down (injected by the test)"}]}"#
                        .to_string(),
                ),
            };
            let ctype = match reply {
                Reply::Unavailable => "text/plain",
                Reply::TooManyRequests => "application/json",
            };
            write!(
                client,
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            client.flush()?;
            // Read what the client still sends (a request body) before closing,
            // so that it sees the answer rather than a reset.
            let _ = client.shutdown(Shutdown::Write);
            client.set_read_timeout(Some(Duration::from_secs(2)))?;
            let _ = io::copy(&mut client, &mut io::sink());
            return Ok(());
        }

        let mut upstream = TcpStream::connect(&state.upstream)?;
        upstream.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut out = String::with_capacity(head.len() + 32);
        out.push_str(&request_line);
        out.push_str("\r\n");
        for l in lines {
            let name = l.split(':').next().unwrap_or_default().trim();
            if ["connection", "keep-alive", "proxy-connection"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
            {
                continue;
            }
            out.push_str(l);
            out.push_str("\r\n");
        }
        out.push_str("Connection: close\r\n\r\n");
        upstream.write_all(out.as_bytes())?;
        upstream.write_all(&rest)?;

        // Client → registry (the body) in a thread; registry → client here.
        let (mut c2, mut u2) = (client.try_clone()?, upstream.try_clone()?);
        let body = std::thread::spawn(move || {
            let _ = io::copy(&mut c2, &mut u2);
            let _ = u2.shutdown(Shutdown::Write);
        });
        let mut buf = vec![0u8; 64 * 1024];
        let mut head_seen = Vec::new();
        let mut status_read = false;
        loop {
            let n = match upstream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !status_read {
                head_seen.extend_from_slice(&buf[..n.min(64)]);
                if let Some(line) = head_seen.split(|b| *b == b'\n').next() {
                    if head_seen.contains(&b'\n') {
                        status_read = true;
                        let status = String::from_utf8_lossy(line)
                            .split(' ')
                            .nth(1)
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        state.record_status(index, status);
                    }
                }
            }
            if client.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        let _ = body.join();
        Ok(())
    }
}
