//! The registry client against the test bed's real registries: docker-registry
//! over plain HTTP and over TLS, both with htpasswd (Basic) auth. An image is
//! pushed with the docker CLI first, then looked up and re-tagged through the
//! client. The bearer-token flow and 5xx retries, which docker-registry with
//! htpasswd cannot show, run against a small scripted server.
//!
//! Needs the test bed: `scripts/testbed up docker base-image registry`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use mlcd::cloud::retry::Backoff;
use mlcd::image::registry::{Credentials, Registry, RegistryError};
use mlcd::secrets::Secret;

const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
];

/// The test bed's variables: from the environment, else from `.testbed/env`.
struct Bed {
    vars: BTreeMap<String, String>,
}

impl Bed {
    fn get(&self, k: &str) -> &str {
        &self.vars[k]
    }
}

fn bed() -> &'static Bed {
    static BED: OnceLock<Bed> = OnceLock::new();
    BED.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let file = std::env::var("MLCD_TESTBED_DIR")
            .map(|d| Path::new(&d).join("env"))
            .unwrap_or_else(|_| root.join(".testbed/env"));
        let mut vars = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(&file) {
            for line in text.lines() {
                if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
                    vars.insert(k.to_string(), v.trim_matches(['"', '\'']).to_string());
                }
            }
        }
        let needed = [
            "DOCKER_HOST",
            "MLCD_TESTBED_REGISTRY",
            "MLCD_TESTBED_REGISTRY_USER",
            "MLCD_TESTBED_REGISTRY_PASSWORD",
            "MLCD_TESTBED_TLS_REGISTRY",
            "MLCD_TESTBED_TLS_CA",
        ];
        for k in needed.iter().chain(&["MLCD_TESTBED_BUSYBOX_IMAGE"]) {
            if let Ok(v) = std::env::var(k) {
                vars.insert(k.to_string(), v);
            }
        }
        for k in needed {
            assert!(
                vars.contains_key(k),
                "{k} is not set (looked in the environment and {}): start the test bed first with \
                 `scripts/testbed up docker base-image registry`",
                file.display()
            );
        }
        vars.entry("MLCD_TESTBED_BUSYBOX_IMAGE".into())
            .or_insert_with(|| "local/busybox:latest".into());
        Bed { vars }
    })
}

fn creds() -> Credentials {
    Credentials {
        username: bed().get("MLCD_TESTBED_REGISTRY_USER").to_string(),
        password: Secret::new(bed().get("MLCD_TESTBED_REGISTRY_PASSWORD")),
    }
}

fn registry() -> Registry {
    Registry::new(bed().get("MLCD_TESTBED_REGISTRY"), Some(creds()), None).unwrap()
}

/// A repository name no other test run uses.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("it/{what}-{}-{nanos}", std::process::id())
}

struct Pushed {
    repo: String,
    digest: String,
}

fn docker(config: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", bed().get("DOCKER_HOST"))
        .env("DOCKER_CONFIG", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("docker {}: {e} (is the docker CLI installed?)", args[0]));
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "docker {} failed ({}):\n{stdout}\n{}\n(is the test bed up? `scripts/testbed up docker base-image registry`)",
        args[0],
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The busybox image pushed once with the docker CLI, as `<registry>/it/…:v1`;
/// the digest is the one `docker push` reported.
fn pushed() -> &'static Pushed {
    static PUSHED: OnceLock<Pushed> = OnceLock::new();
    PUSHED.get_or_init(|| {
        let bed = bed();
        let reg = bed.get("MLCD_TESTBED_REGISTRY");
        let config = tempfile::tempdir().unwrap();
        docker(
            config.path(),
            &[
                "login",
                reg,
                "-u",
                bed.get("MLCD_TESTBED_REGISTRY_USER"),
                "--password-stdin",
            ],
            Some(bed.get("MLCD_TESTBED_REGISTRY_PASSWORD")),
        );
        let repo = unique("busybox");
        let image = format!("{reg}/{repo}:v1");
        docker(
            config.path(),
            &["tag", bed.get("MLCD_TESTBED_BUSYBOX_IMAGE"), &image],
            None,
        );
        let out = docker(config.path(), &["push", &image], None);
        docker(config.path(), &["rmi", &image], None);
        let digest = out
            .lines()
            .find_map(|l| l.split("digest: ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no digest in the output of docker push:\n{out}"))
            .to_string();
        assert!(digest.starts_with("sha256:"), "{digest}");
        Pushed { repo, digest }
    })
}

#[tokio::test]
async fn manifest_reports_the_digest_docker_pushed() {
    let p = pushed();
    let r = registry();
    let m = r.manifest(&p.repo, "v1").await.unwrap().expect("v1 exists");
    assert_eq!(m.digest, p.digest);
    assert!(
        MANIFEST_TYPES.contains(&m.media_type.as_str()),
        "{}",
        m.media_type
    );
    assert!(m.size > 0);
    let by_digest = r.manifest(&p.repo, &p.digest).await.unwrap();
    assert_eq!(by_digest, Some(m));
}

#[tokio::test]
async fn a_missing_tag_or_repository_is_none() {
    let p = pushed();
    let r = registry();
    assert_eq!(r.manifest(&p.repo, "no-such-tag").await.unwrap(), None);
    assert_eq!(
        r.manifest(&unique("never-pushed"), "v1").await.unwrap(),
        None
    );
    // One 401 to learn the auth scheme, then Basic up front: two lookups, three requests.
    assert_eq!(r.requests(), 3);
}

#[tokio::test]
async fn tag_adds_a_tag_to_the_same_manifest() {
    let p = pushed();
    let r = registry();
    r.tag(&p.repo, &p.digest, "v2").await.unwrap();
    let v2 = r
        .manifest(&p.repo, "v2")
        .await
        .unwrap()
        .expect("v2 after tag");
    assert_eq!(v2.digest, p.digest);

    let absent = format!("sha256:{}", "0".repeat(64));
    let err = r.tag(&p.repo, &absent, "v3").await.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound), "{err:?}");
    assert_eq!(r.manifest(&p.repo, "v3").await.unwrap(), None);
}

#[tokio::test]
async fn push_access_is_granted_to_the_testbed_user_and_refused_to_anonymous() {
    let repo = unique("push-check");
    registry().check_push_access(&repo).await.unwrap();

    let anonymous = Registry::new(bed().get("MLCD_TESTBED_REGISTRY"), None, None).unwrap();
    let err = anonymous.check_push_access(&repo).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(text.contains("none were given"), "{text}");
    assert!(
        text.contains("registry-username / registry-password"),
        "{text}"
    );
}

#[tokio::test]
async fn a_wrong_password_is_refused_at_once_without_leaking_it() {
    let p = pushed();
    let wrong = "wrong-pw-5f1c9a7e";
    let bad = Credentials {
        username: bed().get("MLCD_TESTBED_REGISTRY_USER").to_string(),
        password: Secret::new(wrong),
    };
    // The default backoff (5 attempts from 500 ms): a retry would show in the time.
    let r = Registry::new(bed().get("MLCD_TESTBED_REGISTRY"), Some(bad), None)
        .unwrap()
        .with_backoff(Backoff::default());
    let t0 = Instant::now();
    let err = r.manifest(&p.repo, "v1").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(r.requests(), 2, "anonymous, then Basic; no retry");
    assert!(
        text.starts_with(&format!(
            "registry {} refused the credentials for user `mlcd`",
            bed().get("MLCD_TESTBED_REGISTRY")
        )),
        "{text}"
    );
    assert!(
        text.ends_with("check registry-username / registry-password"),
        "{text}"
    );
    assert!(
        !text.contains(wrong) && !format!("{err:?}").contains(wrong),
        "{text}"
    );

    // A request with a body carries the registry's own message.
    let err = r.check_push_access(&p.repo).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("authentication required"), "{text}");
    assert!(!text.contains(wrong), "{text}");
    assert_eq!(r.requests(), 3, "Basic up front, refused, not retried");
}

fn tls_ca() -> Vec<u8> {
    let path = bed().get("MLCD_TESTBED_TLS_CA");
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test]
async fn the_tls_registry_works_with_its_ca() {
    let host = bed().get("MLCD_TESTBED_TLS_REGISTRY");
    let ca = tls_ca();
    let r = Registry::new(host, Some(creds()), Some(&ca))
        .unwrap()
        .with_https();
    let repo = unique("tls");
    r.check_push_access(&repo).await.unwrap();
    assert_eq!(r.manifest(&repo, "v1").await.unwrap(), None);
}

#[tokio::test]
async fn the_tls_registry_without_its_ca_fails_with_a_certificate_error() {
    let host = bed().get("MLCD_TESTBED_TLS_REGISTRY");
    let r = Registry::new(host, Some(creds()), None)
        .unwrap()
        .with_https()
        .with_backoff(Backoff::default());
    let t0 = Instant::now();
    let err = r.manifest(&unique("tls"), "v1").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RegistryError::Other(_)), "{err:?}");
    assert!(
        text.contains(&format!(
            "cannot verify the TLS certificate of registry {host}"
        )),
        "{text}"
    );
    assert!(text.contains("CA certificate"), "{text}");
    assert_eq!(r.requests(), 1, "a certificate error is not retried");
    assert!(t0.elapsed() < Duration::from_secs(3));
}

fn fast(attempts: u32) -> Backoff {
    Backoff {
        attempts,
        initial: Duration::from_millis(10),
        max: Duration::from_millis(40),
    }
}

#[tokio::test]
async fn a_registry_that_is_down_is_transient_after_bounded_retries() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = Registry::new(&format!("127.0.0.1:{port}"), Some(creds()), None)
        .unwrap()
        .with_backoff(fast(3));
    let err = r.manifest("it/x", "v1").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RegistryError::Transient(_)), "{err:?}");
    assert_eq!(r.requests(), 3);
    assert!(
        text.contains(&format!("registry 127.0.0.1:{port} could not connect")),
        "{text}"
    );
    assert!(text.contains("gave up after 3 attempts"), "{text}");
}

// ------------------------------------------------------------------ scripted server

/// One request the scripted server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    authorization: Option<String>,
}

type Answer = (u16, Vec<(&'static str, String)>, String);

/// An HTTP/1.1 server on 127.0.0.1 that answers each request (one per connection)
/// with `handler`, and records them. Its thread ends with the test process.
fn scripted(
    handler: impl Fn(&Seen, u16) -> Answer + Send + 'static,
) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some(req) = read_request(&mut stream) else {
                continue;
            };
            log.lock().unwrap().push(req.clone());
            let (status, headers, body) = handler(&req, port);
            let mut out = format!(
                "HTTP/1.1 {status} X\r\nConnection: close\r\nContent-Length: {}\r\n",
                body.len()
            );
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            if req.method != "HEAD" {
                out.push_str(&body);
            }
            let _ = stream.write_all(out.as_bytes());
        }
    });
    (port, seen)
}

fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next()?.split_whitespace();
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let mut authorization = None;
    let mut length = 0usize;
    for l in lines {
        let (k, v) = l.split_once(':')?;
        match k.trim().to_ascii_lowercase().as_str() {
            "authorization" => authorization = Some(v.trim().to_string()),
            "content-length" => length = v.trim().parse().ok()?,
            _ => {}
        }
    }
    let mut have = buf.len() - head_end - 4;
    while have < length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        have += n;
    }
    Some(Seen {
        method,
        target,
        authorization,
    })
}

const DIGEST: &str = "sha256:4a5f0e3c1e4bd1b2f3cf0a0c2d8f7e6b5a4938271605f4e3d2c1b0a998877665";

fn errors(code: &str, message: &str) -> String {
    format!(r#"{{"errors":[{{"code":"{code}","message":"{message}","detail":null}}]}}"#)
}

/// A token-auth registry: `/token` grants `mlcd` what it asks, `reader` only
/// pull, anonymous nothing; tokens spell out what they grant.
fn token_registry() -> (u16, Arc<Mutex<Vec<Seen>>>) {
    scripted(|req, port| {
        let basic = |u: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:good-pw-1234"))
            )
        };
        if let Some(query) = req.target.strip_prefix("/token?") {
            let scope = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("scope="))
                .unwrap_or_default()
                .replace("%3A", ":")
                .replace("%2F", "/")
                .replace("%2C", ",");
            let auth = req.authorization.as_deref();
            return if auth == Some(basic("mlcd").as_str()) {
                (200, vec![], format!(r#"{{"token":"T~{scope}"}}"#))
            } else if auth == Some(basic("reader").as_str()) {
                let granted = scope.replace(":pull,push", ":pull");
                (
                    200,
                    vec![],
                    format!(r#"{{"access_token":"T~{granted}","expires_in":300}}"#),
                )
            } else if auth.is_none() {
                (200, vec![], r#"{"token":"T~"}"#.to_string())
            } else {
                (
                    401,
                    vec![],
                    errors("UNAUTHORIZED", "invalid username or password"),
                )
            };
        }
        let repo = req
            .target
            .trim_start_matches("/v2/")
            .split("/manifests/")
            .next()
            .unwrap_or("");
        let repo = repo.split("/blobs/").next().unwrap_or("");
        let need = if matches!(req.method.as_str(), "GET" | "HEAD") {
            "pull"
        } else {
            "pull,push"
        };
        let granted = req
            .authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer T~"))
            .unwrap_or("");
        let challenge = (
            "WWW-Authenticate",
            format!(
                r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake",scope="repository:{repo}:{need}""#
            ),
        );
        if granted.is_empty() {
            return (
                401,
                vec![challenge],
                errors("UNAUTHORIZED", "authentication required"),
            );
        }
        if granted != format!("repository:{repo}:{need}")
            && granted != format!("repository:{repo}:pull,push")
        {
            return (
                401,
                vec![challenge],
                errors("DENIED", "requested access to the resource is denied"),
            );
        }
        match req.method.as_str() {
            "HEAD" => (
                200,
                vec![
                    ("Docker-Content-Digest", DIGEST.to_string()),
                    (
                        "Content-Type",
                        "application/vnd.oci.image.manifest.v1+json".to_string(),
                    ),
                ],
                "x".repeat(321),
            ),
            "POST" => (
                202,
                vec![("Location", format!("/v2/{repo}/blobs/uploads/u-1"))],
                String::new(),
            ),
            "DELETE" => (204, vec![], String::new()),
            _ => (405, vec![], String::new()),
        }
    })
}

fn user(name: &str) -> Credentials {
    Credentials {
        username: name.to_string(),
        password: Secret::new("good-pw-1234"),
    }
}

#[tokio::test]
async fn bearer_tokens_are_fetched_per_scope_with_basic_credentials_and_cached() {
    let (port, seen) = token_registry();
    let r = Registry::new(&format!("127.0.0.1:{port}"), Some(user("mlcd")), None).unwrap();
    let m = r.manifest("it/model", "v1").await.unwrap().unwrap();
    assert_eq!((m.digest.as_str(), m.size), (DIGEST, 321));
    assert_eq!(r.requests(), 3, "HEAD 401, token, HEAD");
    r.manifest("it/model", "v1").await.unwrap().unwrap();
    assert_eq!(r.requests(), 4, "the pull token is cached");
    r.check_push_access("it/model").await.unwrap();
    assert_eq!(
        r.requests(),
        7,
        "push token up front, POST, DELETE of the upload"
    );

    let seen = seen.lock().unwrap().clone();
    let tokens: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.target.starts_with("/token"))
        .collect();
    assert_eq!(tokens.len(), 2, "{seen:#?}");
    assert!(
        tokens[0].target.contains("service=fake"),
        "{}",
        tokens[0].target
    );
    assert!(
        tokens[0]
            .target
            .contains("scope=repository%3Ait%2Fmodel%3Apull&"),
        "{}",
        tokens[0].target
    );
    assert!(
        tokens[1]
            .target
            .contains("scope=repository%3Ait%2Fmodel%3Apull%2Cpush"),
        "{}",
        tokens[1].target
    );
    assert!(tokens.iter().all(|t| t
        .authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("Basic "))));
    assert_eq!(seen.last().unwrap().method, "DELETE");
    assert_eq!(
        seen.last().unwrap().target,
        "/v2/it/model/blobs/uploads/u-1"
    );
}

#[tokio::test]
async fn a_token_without_push_is_unauthorized_with_the_registry_message() {
    let (port, _) = token_registry();
    let r = Registry::new(&format!("127.0.0.1:{port}"), Some(user("reader")), None)
        .unwrap()
        .with_backoff(Backoff::default());
    // `access_token` is accepted as well as `token`.
    assert!(r.manifest("it/model", "v1").await.unwrap().is_some());
    let before = r.requests();
    let err = r.check_push_access("it/model").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(
        text.contains("denied push access to `it/model` for user `reader`: requested access to the resource is denied"),
        "{text}"
    );
    assert!(!text.contains("good-pw-1234"), "{text}");
    assert_eq!(r.requests() - before, 2, "token, POST refused; no retry");

    let wrong = Credentials {
        username: "mlcd".into(),
        password: Secret::new("bad-pw-9876"),
    };
    let r = Registry::new(&format!("127.0.0.1:{port}"), Some(wrong), None).unwrap();
    let err = r.manifest("it/model", "v1").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("refused the credentials for user `mlcd` (pull access to `it/model`, via its token service 127.0.0.1): invalid username or password"),
        "{text}"
    );
    assert!(!text.contains("bad-pw-9876"));
}

#[tokio::test]
async fn anonymous_pulls_get_a_token_without_credentials() {
    let (port, seen) = token_registry();
    let r = Registry::new(&format!("127.0.0.1:{port}"), None, None).unwrap();
    let err = r.manifest("it/model", "v1").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("requires credentials for pull access to `it/model` and none were given"),
        "{err}"
    );
    let seen = seen.lock().unwrap();
    assert!(seen
        .iter()
        .all(|s| s.authorization.as_deref().unwrap_or("").is_empty()
            || s.authorization.as_deref() == Some("Bearer T~")));
}

#[tokio::test]
async fn server_errors_and_throttling_are_retried_then_given_up() {
    let calls = Arc::new(Mutex::new(0u32));
    let c = calls.clone();
    let (port, _) = scripted(move |_, _| {
        let mut n = c.lock().unwrap();
        *n += 1;
        match *n {
            1 => (503, vec![], errors("UNAVAILABLE", "try later")),
            2 => (
                429,
                vec![("Retry-After", "0".into())],
                errors("TOOMANYREQUESTS", "slow down"),
            ),
            3 => (
                200,
                vec![
                    ("Docker-Content-Digest", DIGEST.into()),
                    (
                        "Content-Type",
                        "application/vnd.docker.distribution.manifest.v2+json".into(),
                    ),
                ],
                "{}".into(),
            ),
            _ => (502, vec![], "<html>bad gateway</html>".into()),
        }
    });
    let r = Registry::new(&format!("127.0.0.1:{port}"), None, None)
        .unwrap()
        .with_backoff(fast(4));
    let m = r.manifest("it/model", "v1").await.unwrap().unwrap();
    assert_eq!(m.digest, DIGEST);
    assert_eq!(r.requests(), 3);

    let err = r.manifest("it/model", "v1").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RegistryError::Transient(_)), "{err:?}");
    assert_eq!(r.requests(), 7);
    assert!(
        text.contains("answered HEAD /v2/it/model/manifests/v1 with HTTP 502 Bad Gateway"),
        "{text}"
    );
    assert!(text.contains("gave up after 4 attempts"), "{text}");
}
