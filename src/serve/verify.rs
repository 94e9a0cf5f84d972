//! Verification of a version, the same for every backend: smoke tests (status,
//! expected output compared as JSON, latency budget), and the shadow report
//! (output agreement and latency percentiles of two versions on the same
//! requests).

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::{Answer, Invocation, ServingBackend};
use crate::error::UserError;
use crate::plan::SmokePlan;

/// A smoke test read from its files.
#[derive(Debug, Clone)]
pub struct Smoke {
    /// The request file, as the plan names it.
    pub name: String,
    /// The request.
    pub request: Invocation,
    /// The status the answer must have.
    pub expect_status: u16,
    /// The answer it must give (compared as JSON when both parse).
    pub expect_output: Option<Vec<u8>>,
    /// The slowest acceptable answer.
    pub max_latency: Option<Duration>,
}

/// One smoke test's result.
#[derive(Debug, Clone, Serialize)]
pub struct SmokeResult {
    /// The request file.
    pub name: String,
    /// The version it ran against.
    pub version: String,
    /// Whether it passed.
    pub passed: bool,
    /// The answer's status (0 when no answer came).
    pub status: u16,
    /// The measured latency.
    pub latency_ms: f64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Reads the smoke tests' files (paths relative to the workspace).
pub fn load(workspace: &Path, plans: &[SmokePlan]) -> Result<Vec<Smoke>, UserError> {
    plans
        .iter()
        .map(|p| {
            let read = |rel: &str| {
                std::fs::read(workspace.join(rel)).map_err(|e| {
                    UserError::invalid(format!("cannot read the smoke-test file `{rel}`: {e}"))
                })
            };
            Ok(Smoke {
                name: p.request.clone(),
                request: Invocation {
                    body: read(&p.request)?,
                    content_type: "application/json".into(),
                },
                expect_status: p.expect_status,
                expect_output: p.expect_output.as_deref().map(read).transpose()?,
                max_latency: p.max_latency.map(|d| d.0),
            })
        })
        .collect()
}

/// Whether two answers are the same: as JSON values when both parse (numbers
/// equal within 1e-9 relative), else byte for byte.
pub fn same_output(a: &[u8], b: &[u8]) -> bool {
    match (
        serde_json::from_slice::<Value>(a),
        serde_json::from_slice::<Value>(b),
    ) {
        (Ok(x), Ok(y)) => json_eq(&x, &y),
        _ => a == b,
    }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Judges one answer against a smoke test.
pub fn judge(smoke: &Smoke, version: &str, answer: Result<&Answer, &UserError>) -> SmokeResult {
    let mut r = SmokeResult {
        name: smoke.name.clone(),
        version: version.to_string(),
        passed: false,
        status: 0,
        latency_ms: 0.0,
        reason: None,
    };
    let a = match answer {
        Ok(a) => a,
        Err(e) => {
            r.reason = Some(format!("no answer: {}", e.message));
            return r;
        }
    };
    r.status = a.status;
    r.latency_ms = a.latency.as_secs_f64() * 1000.0;
    r.reason = if a.status != smoke.expect_status {
        let body = String::from_utf8_lossy(&a.body);
        let body: String = body.chars().take(300).collect();
        Some(format!(
            "status {} (expected {}): {body}",
            a.status, smoke.expect_status
        ))
    } else if smoke
        .expect_output
        .as_deref()
        .is_some_and(|e| !same_output(e, &a.body))
    {
        let body: String = String::from_utf8_lossy(&a.body).chars().take(300).collect();
        Some(format!(
            "the answer differs from the expected output: {body}"
        ))
    } else if smoke.max_latency.is_some_and(|m| a.latency > m) {
        Some(format!(
            "took {:.0} ms, over the budget of {} ms",
            r.latency_ms,
            smoke.max_latency.unwrap_or_default().as_millis()
        ))
    } else {
        None
    };
    r.passed = r.reason.is_none();
    r
}

/// Runs every smoke test against one version.
pub async fn smoke(
    backend: &dyn ServingBackend,
    endpoint: &str,
    version: &str,
    tests: &[Smoke],
) -> Vec<SmokeResult> {
    let mut out = Vec::new();
    for t in tests {
        let a = backend.invoke(endpoint, version, &t.request).await;
        out.push(judge(t, version, a.as_ref()));
    }
    out
}

/// The `p`-th percentile (0–100) of some latencies, nearest rank.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// The shadow comparison of two versions on the same requests.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowReport {
    /// Requests sent to each.
    pub requests: usize,
    /// Requests both answered alike.
    pub agreeing: usize,
    /// Latency percentiles of the live version (p50, p95), in ms.
    pub live_ms: (f64, f64),
    /// Latency percentiles of the candidate (p50, p95), in ms.
    pub candidate_ms: (f64, f64),
    /// Errors (no answer or non-2xx) of the candidate.
    pub candidate_errors: usize,
}

/// Replays each request `rounds` times to both versions.
pub async fn shadow(
    backend: &dyn ServingBackend,
    endpoint: &str,
    live: &str,
    candidate: &str,
    tests: &[Smoke],
    rounds: usize,
) -> ShadowReport {
    let (mut l, mut c) = (Vec::new(), Vec::new());
    let mut report = ShadowReport {
        requests: 0,
        agreeing: 0,
        live_ms: (0.0, 0.0),
        candidate_ms: (0.0, 0.0),
        candidate_errors: 0,
    };
    for _ in 0..rounds {
        for t in tests {
            report.requests += 1;
            let a = backend.invoke(endpoint, live, &t.request).await;
            let b = backend.invoke(endpoint, candidate, &t.request).await;
            if let Ok(a) = &a {
                l.push(a.latency.as_secs_f64() * 1000.0);
            }
            match &b {
                Ok(b) if (200..300).contains(&b.status) => c.push(b.latency.as_secs_f64() * 1000.0),
                Ok(b) => {
                    c.push(b.latency.as_secs_f64() * 1000.0);
                    report.candidate_errors += 1;
                }
                Err(_) => report.candidate_errors += 1,
            }
            if let (Ok(a), Ok(b)) = (&a, &b) {
                if a.status == b.status && same_output(&a.body, &b.body) {
                    report.agreeing += 1;
                }
            }
        }
    }
    report.live_ms = (percentile(&l, 50.0), percentile(&l, 95.0));
    report.candidate_ms = (percentile(&c, 50.0), percentile(&c, 95.0));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smoke(expect: Option<&str>, max_ms: Option<u64>) -> Smoke {
        Smoke {
            name: "sample.json".into(),
            request: Invocation {
                body: b"{}".to_vec(),
                content_type: "application/json".into(),
            },
            expect_status: 200,
            expect_output: expect.map(|e| e.as_bytes().to_vec()),
            max_latency: max_ms.map(Duration::from_millis),
        }
    }

    fn answer(status: u16, body: &str, ms: u64) -> Answer {
        Answer {
            status,
            body: body.as_bytes().to_vec(),
            latency: Duration::from_millis(ms),
        }
    }

    #[test]
    fn outputs_compare_as_json() {
        assert!(same_output(br#"{"a": [1, 2.0]}"#, br#"{"a":[1.0,2]}"#));
        assert!(same_output(
            b"{\"p\": 0.30000000000000004}",
            b"{\"p\": 0.3}"
        ));
        assert!(!same_output(br#"{"a": [1, 2]}"#, br#"{"a": [2, 1]}"#));
        assert!(!same_output(br#"{"a": 1}"#, br#"{"a": 1, "b": 2}"#));
        assert!(same_output(b"plain", b"plain") && !same_output(b"plain", b"other"));
    }

    #[test]
    fn a_smoke_test_fails_on_status_output_or_latency() {
        let ok = judge(
            &smoke(Some(r#"{"y": 1}"#), Some(500)),
            "v1",
            Ok(&answer(200, r#"{"y":1}"#, 20)),
        );
        assert!(ok.passed, "{ok:?}");
        let status = judge(&smoke(None, None), "v1", Ok(&answer(500, "model error", 5)));
        assert!(!status.passed && status.reason.unwrap().contains("status 500 (expected 200)"));
        let output = judge(
            &smoke(Some(r#"{"y": 1}"#), None),
            "v1",
            Ok(&answer(200, r#"{"y":0}"#, 5)),
        );
        assert!(!output.passed && output.reason.unwrap().contains("differs"));
        let slow = judge(&smoke(None, Some(100)), "v1", Ok(&answer(200, "{}", 250)));
        assert!(!slow.passed && slow.reason.unwrap().contains("over the budget of 100 ms"));
        let none = judge(
            &smoke(None, None),
            "v1",
            Err(&UserError::failed("connection refused")),
        );
        assert!(!none.passed && none.reason.unwrap().contains("connection refused"));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
