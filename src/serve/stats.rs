//! Live traffic numbers per version and the rollout guards that read them:
//! cumulative counters (requests, 5xx answers, a latency histogram) that the
//! local router keeps and serves, the difference of two readings as one
//! interval's [`VersionStats`] (error rate, p95), and the check of those
//! against `rollback.max-error-rate` / `rollback.max-p95-latency`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Upper bounds of the latency buckets, in microseconds: 50 µs growing by 10%
/// a bucket up to about 10 minutes (a p95 read from them is within 10%).
fn bounds() -> &'static [u64] {
    static B: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    B.get_or_init(|| {
        let mut out = Vec::new();
        let mut b = 50.0f64;
        while b < 600_000_000.0 {
            out.push(b.round() as u64);
            b *= 1.1;
        }
        out
    })
}

/// A latency histogram with fixed buckets (see [`bounds`]); the last bucket
/// holds everything above the last bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Counts per bucket, trailing empty buckets left out.
    pub counts: Vec<u64>,
}

impl Histogram {
    /// Counts one observation.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let b = bounds();
        let i = b.partition_point(|&x| x < us);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
    }

    /// The observations in `self` not in `earlier` (bucket by bucket).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let counts = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| c.saturating_sub(earlier.counts.get(i).copied().unwrap_or(0)))
            .collect();
        Histogram { counts }
    }

    /// How many observations.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0 to 1), interpolated within its bucket; None when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0);
        let b = bounds();
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if (seen + c) as f64 >= rank {
                let lower = if i == 0 { 0 } else { b[i - 1] } as f64;
                let upper = b.get(i).copied().unwrap_or(b[b.len() - 1]) as f64;
                let within = (rank - seen as f64) / c as f64;
                let us = lower + (upper - lower) * within;
                return Some(Duration::from_micros(us.round() as u64));
            }
            seen += c;
        }
        None
    }
}

/// One version's cumulative counters since its router started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionCounters {
    /// Live requests it answered (or failed to).
    pub requests: u64,
    /// Of those, answers with a 5xx status (the router's own 502/504 included).
    pub errors: u64,
    /// Time from the request's arrival at the router to the whole answer.
    pub latency: Histogram,
}

/// A reading taken at the start of an interval, to measure the interval from.
#[derive(Debug, Clone)]
pub struct TrafficMark {
    /// When it was taken (backends that query by time window use this).
    pub at: SystemTime,
    /// Cumulative counters per version (backends that count use these).
    pub counters: BTreeMap<String, VersionCounters>,
}

impl TrafficMark {
    /// A mark with no counters, at the current time.
    pub fn now() -> TrafficMark {
        TrafficMark {
            at: SystemTime::now(),
            counters: BTreeMap::new(),
        }
    }
}

/// One version's live traffic over an interval.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionStats {
    /// Requests it answered.
    pub requests: u64,
    /// Of those, 5xx answers.
    pub errors: u64,
    /// The 95th-percentile latency, when measured.
    pub p95: Option<Duration>,
}

impl VersionStats {
    /// The share of 5xx answers (0 when there were no requests).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// The stats between two cumulative readings.
    pub fn between(before: Option<&VersionCounters>, now: &VersionCounters) -> VersionStats {
        let zero = VersionCounters::default();
        let before = before.unwrap_or(&zero);
        let latency = now.latency.since(&before.latency);
        VersionStats {
            requests: now.requests.saturating_sub(before.requests),
            errors: now.errors.saturating_sub(before.errors),
            p95: latency.quantile(0.95),
        }
    }

    /// `37 requests, 2.7% 5xx (1), p95 12.3 ms`.
    pub fn describe(&self) -> String {
        format!(
            "{} requests, {:.1}% 5xx ({}), p95 {}",
            self.requests,
            100.0 * self.error_rate(),
            self.errors,
            self.p95
                .map_or("n/a".to_string(), |d| format!("{:.1} ms", ms(d)))
        )
    }
}

/// What one guarded interval measured.
#[derive(Debug, Clone, Default)]
pub struct Bake {
    /// The summary table's cell: the candidate's (and the live version's) numbers.
    pub cell: String,
    /// Why the candidate broke a limit, when it did.
    pub breach: Option<String>,
}

/// Waits `interval` while `candidate` takes live traffic, measuring it (and
/// `live`) through the backend, and checks the candidate against `limits`.
/// A backend that cannot measure leaves the cell empty; a reading that fails
/// is reported in the cell and (with limits set) logged, never a rollback.
pub async fn bake(
    backend: &dyn super::ServingBackend,
    endpoint: &str,
    candidate: &str,
    live: Option<&str>,
    interval: Duration,
    limits: &Limits,
) -> Bake {
    let mark = backend.traffic_mark(endpoint).await;
    tokio::time::sleep(interval).await;
    let read = match mark {
        Ok(m) => backend.version_stats(endpoint, &m).await,
        Err(e) => Err(e),
    };
    let stats = match read {
        Ok(Some(s)) => s,
        Ok(None) => {
            if limits.any() {
                log::warn!(
                    "backend `{}` does not measure live traffic: `rollback.max-error-rate` / `max-p95-latency` are not applied",
                    backend.name()
                );
            }
            return Bake::default();
        }
        Err(e) => {
            log::warn!(
                "the live traffic of {endpoint} could not be read: {}",
                e.message
            );
            return Bake {
                cell: "not measured".into(),
                breach: None,
            };
        }
    };
    let idle = VersionStats {
        requests: 0,
        errors: 0,
        p95: None,
    };
    let c = stats.get(candidate).unwrap_or(&idle);
    let mut cell = format!("`{candidate}`: {}", c.describe());
    if let Some(l) = live {
        let l_stats = stats.get(l).unwrap_or(&idle);
        cell.push_str(&format!("; `{l}`: {}", l_stats.describe()));
    }
    if c.requests == 0 && limits.any() {
        log::warn!(
            "no live request reached {candidate} during the step: the guards had nothing to measure"
        );
    }
    Bake {
        breach: limits.breach(candidate, c),
        cell,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The guard limits: `rollback.max-error-rate` and `rollback.max-p95-latency`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// The largest acceptable share of 5xx answers.
    pub max_error_rate: Option<f64>,
    /// The slowest acceptable p95.
    pub max_p95: Option<Duration>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.max_error_rate.is_some() || self.max_p95.is_some()
    }

    /// Why `s` breaks a limit, or None when it keeps them (or measured no traffic).
    pub fn breach(&self, version: &str, s: &VersionStats) -> Option<String> {
        if s.requests == 0 {
            return None;
        }
        let mut why = Vec::new();
        if let Some(max) = self.max_error_rate {
            if s.error_rate() > max {
                why.push(format!(
                    "its error rate {:.1}% ({} of {} answers were 5xx) is above `rollback.max-error-rate: {max}`",
                    100.0 * s.error_rate(),
                    s.errors,
                    s.requests
                ));
            }
        }
        if let (Some(max), Some(p95)) = (self.max_p95, s.p95) {
            if p95 > max {
                why.push(format!(
                    "its p95 latency {:.1} ms (over {} requests) is above `rollback.max-p95-latency: {}`",
                    ms(p95),
                    s.requests,
                    humantime::format_duration(max)
                ));
            }
        }
        if why.is_empty() {
            None
        } else {
            Some(format!("{version} on live traffic: {}", why.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_read_within_a_bucket_of_the_truth() {
        let mut h = Histogram::default();
        for i in 1..=1000u64 {
            h.record(Duration::from_micros(i * 100));
        }
        let p95 = h.quantile(0.95).unwrap().as_micros() as f64;
        assert!((p95 - 95_000.0).abs() / 95_000.0 < 0.1, "{p95}");
        assert_eq!(Histogram::default().quantile(0.95), None);
    }

    #[test]
    fn an_interval_is_the_difference_of_two_readings() {
        let mut before = VersionCounters::default();
        for _ in 0..100 {
            before.latency.record(Duration::from_millis(500));
        }
        before.requests = 100;
        let mut now = before.clone();
        for _ in 0..20 {
            now.latency.record(Duration::from_millis(2));
        }
        now.requests += 20;
        now.errors += 5;
        let s = VersionStats::between(Some(&before), &now);
        assert_eq!((s.requests, s.errors), (20, 5));
        // The slow requests before the mark do not count.
        assert!(s.p95.unwrap() < Duration::from_millis(3), "{s:?}");
        assert!((s.error_rate() - 0.25).abs() < 1e-9);
    }

    #[test]
    fn limits_name_what_was_exceeded() {
        let limits = Limits {
            max_error_rate: Some(0.1),
            max_p95: Some(Duration::from_millis(250)),
        };
        let s = VersionStats {
            requests: 40,
            errors: 20,
            p95: Some(Duration::from_millis(300)),
        };
        let why = limits.breach("v2", &s).unwrap();
        assert!(
            why.contains("error rate 50.0% (20 of 40 answers were 5xx)"),
            "{why}"
        );
        assert!(why.contains("p95 latency 300.0 ms"), "{why}");
        let fine = VersionStats {
            requests: 40,
            errors: 2,
            p95: Some(Duration::from_millis(20)),
        };
        assert_eq!(limits.breach("v2", &fine), None);
        let idle = VersionStats {
            requests: 0,
            errors: 0,
            p95: None,
        };
        assert_eq!(limits.breach("v2", &idle), None);
    }
}
