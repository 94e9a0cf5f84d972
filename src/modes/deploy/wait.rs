//! Bounded waits on an endpoint: until no change is under way, and until a
//! version is ready; which version is live.

use std::time::{Duration, Instant};

use crate::error::UserError;
use crate::report::Reporter;
use crate::serve::{EndpointState, EndpointStatus, ServingBackend};

/// The production version taking the most traffic.
pub(super) fn live_version(s: &EndpointStatus) -> Option<String> {
    s.variants
        .iter()
        .filter(|v| !v.shadow)
        .max_by_key(|v| v.weight)
        .map(|v| v.version.clone())
}

/// Waits (bounded) until no change is under way; refuses to race another one.
pub(super) async fn settled(
    backend: &dyn ServingBackend,
    endpoint: &str,
    bound: Duration,
    reporter: &Reporter,
) -> Result<Option<EndpointStatus>, UserError> {
    let deadline = Instant::now() + bound;
    let mut said = false;
    loop {
        let Some(s) = backend.status(endpoint).await? else {
            return Ok(None);
        };
        if !s.state.is_changing() {
            return Ok(Some(s));
        }
        if !said {
            reporter.info(&format!(
                "endpoint {endpoint} is {:?}: waiting for that change to finish (up to {})",
                s.state,
                humantime::format_duration(bound)
            ));
            said = true;
        }
        if Instant::now() >= deadline {
            return Err(UserError::failed(format!(
                "endpoint {endpoint} is still {:?} after {}: another change is under way, and mlcd never starts a second concurrent update",
                s.state,
                humantime::format_duration(bound)
            ))
            .hint("wait for the other deployment to finish, then run this one again"));
        }
        backend.pause(endpoint).await;
    }
}

/// Waits (bounded) until `version` is ready behind an endpoint in service.
pub(super) async fn ready(
    backend: &dyn ServingBackend,
    endpoint: &str,
    version: &str,
    bound: Duration,
) -> Result<EndpointStatus, String> {
    let deadline = Instant::now() + bound;
    let mut last: Option<EndpointStatus>;
    loop {
        match backend.status(endpoint).await {
            Ok(Some(s)) => {
                if matches!(
                    s.state,
                    EndpointState::Failed | EndpointState::UpdateRollbackFailed
                ) {
                    return Err(format!(
                        "endpoint {endpoint} is {:?}: {}",
                        s.state,
                        s.failure_reason.as_deref().unwrap_or("no reason given")
                    ));
                }
                if s.state == EndpointState::InService
                    && s.variants.iter().any(|v| v.version == version && v.ready)
                {
                    return Ok(s);
                }
                last = Some(s);
            }
            Ok(None) => return Err(format!("endpoint {endpoint} disappeared")),
            Err(e) => return Err(e.message),
        }
        if Instant::now() >= deadline {
            let state = last.map_or("unknown".to_string(), |s| format!("{:?}", s.state));
            return Err(format!(
                "version {version} did not become ready within {} (endpoint {state})",
                humantime::format_duration(bound)
            ));
        }
        backend.pause(endpoint).await;
    }
}
