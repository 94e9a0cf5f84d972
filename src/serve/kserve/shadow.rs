//! A shadow on KServe. KServe (and Knative) cannot mirror live traffic, so a
//! shadow here is the candidate applied beside the rolled-out revision with
//! `canaryTrafficPercent: 0` — a revision of its own, answering at its `latest`
//! tag URL and taking no traffic — which the shared shadow step (modes/deploy.rs,
//! serve/verify.rs) compares with the live revision on the replayed sample
//! requests: answer agreement and p50/p95 latency. The revision is recorded as a
//! shadow (status reports it so); retiring it applies the live version's spec
//! again; a later canary of the same version takes it over without a new
//! revision. Standard (RawDeployment) mode runs one version at a time: refused.

use crate::error::UserError;

/// Refuses a shadow KServe cannot run: in Standard mode (no second revision), or
/// with nothing rolled out to compare with.
pub fn check(
    endpoint: &str,
    namespace: &str,
    raw: bool,
    rolled_out: bool,
) -> Result<(), UserError> {
    if raw {
        return Err(UserError::invalid(format!(
            "a shadow of InferenceService {namespace}/{endpoint} needs KServe's serverless mode: it runs in Standard (RawDeployment) mode, one version at a time, so there is no second revision to compare"
        ))
        .hint("use `strategy: blue-green` or `all-at-once` in Standard mode, or `kubernetes.deployment-mode: serverless` (Knative)"));
    }
    if !rolled_out {
        return Err(UserError::invalid(format!(
            "InferenceService {namespace}/{endpoint} has no rolled-out revision: there is nothing for a shadow to be compared with"
        ))
        .hint("deploy a first version with `canary`, `blue-green` or `all-at-once`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_mode_and_an_empty_endpoint_refuse_a_shadow() {
        let e = check("churn", "ml", true, true).unwrap_err();
        assert!(
            e.message.contains("Standard (RawDeployment)"),
            "{}",
            e.message
        );
        let e = check("churn", "ml", false, false).unwrap_err();
        assert!(
            e.message.contains("no rolled-out revision"),
            "{}",
            e.message
        );
        assert!(check("churn", "ml", false, true).is_ok());
    }
}
