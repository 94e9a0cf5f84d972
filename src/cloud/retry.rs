//! Retries with exponential backoff and jitter for transient failures (5xx, 429,
//! connection resets), written once and used by every client. Auth errors and
//! other permanent failures are never retried.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use rand::Rng;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Total attempts, the first included.
    pub attempts: u32,
    /// Delay before the first retry.
    pub initial: Duration,
    /// Longest delay between two attempts.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            attempts: 5,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(8),
        }
    }
}

impl Backoff {
    /// The default, with `MLCD_RETRY_ATTEMPTS` and `MLCD_RETRY_INITIAL_MS` applied
    /// (tests shorten the waits; users of flaky registries lengthen them).
    pub fn from_env() -> Self {
        let mut b = Backoff::default();
        if let Some(n) = std::env::var("MLCD_RETRY_ATTEMPTS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            b.attempts = std::cmp::max(1, n);
        }
        if let Some(ms) = std::env::var("MLCD_RETRY_INITIAL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            b.initial = Duration::from_millis(ms);
        }
        b
    }

    /// The delay before retry number `n` (1-based): doubling, capped, with up to
    /// 25% random jitter so parallel jobs do not retry in lockstep.
    pub fn delay(&self, n: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << n.saturating_sub(1).min(16));
        let base = base.min(self.max);
        let jitter = rand::thread_rng().gen_range(0.0..0.25);
        base.mul_f64(1.0 + jitter).min(self.max)
    }
}

/// Runs `op` until it succeeds, fails permanently (`is_transient` says no), or
/// the attempts run out; logs each retry with `what`.
pub async fn retry<T, E, F, Fut>(
    what: &str,
    backoff: &Backoff,
    is_transient: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < backoff.attempts && is_transient(&e) => {
                let delay = backoff.delay(attempt);
                log::warn!(
                    "{what} failed ({}); retry {attempt} of {} in {:.1}s",
                    crate::secrets::redact(&e.to_string()),
                    backoff.attempts - 1,
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn fast(attempts: u32) -> Backoff {
        Backoff {
            attempts,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(4),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn transient_errors_are_retried_until_success() {
        let calls = Cell::new(0);
        let r: Result<u32, String> = retry(
            "op",
            &fast(5),
            |_| true,
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 3 {
                        Err("503".to_string())
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!(r, Ok(3));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn permanent_errors_are_not_retried_and_attempts_are_bounded() {
        let calls = Cell::new(0);
        let r: Result<(), String> = retry(
            "op",
            &fast(5),
            |e: &String| e != "401",
            || {
                calls.set(calls.get() + 1);
                async { Err("401".to_string()) }
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls.get(), 1);
        calls.set(0);
        let _: Result<(), String> = retry(
            "op",
            &fast(3),
            |_| true,
            || {
                calls.set(calls.get() + 1);
                async { Err("503".to_string()) }
            },
        )
        .await;
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn delays_double_and_are_capped() {
        let b = Backoff {
            attempts: 10,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert!(
            b.delay(1) >= Duration::from_millis(100) && b.delay(1) <= Duration::from_millis(125)
        );
        assert!(b.delay(2) >= Duration::from_millis(200));
        assert_eq!(b.delay(9), Duration::from_secs(1));
    }
}
