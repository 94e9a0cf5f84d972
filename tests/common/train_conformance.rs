//! The conformance suite every [`TrainingBackend`] passes. Jobs are steered with
//! the example model's hyperparameters, which every peer honours: the example
//! image itself on the local engine, the scripted SageMaker fake by design:
//! `sleep` (seconds InProgress before training), `fail` (fail with the reason
//! "fail requested by hyperparameter").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mlcd::identity::Recorded;
use mlcd::train::{JobSpec, JobState, JobStatus, LogCursor, Submitted, TrainingBackend};

/// How long any one job may take in the suite.
const JOB_BOUND: Duration = Duration::from_secs(180);

fn with_hp(base: &JobSpec, name: &str, hp: &[(&str, &str)]) -> JobSpec {
    let mut spec = base.clone();
    spec.name = name.to_string();
    for (k, v) in hp {
        spec.hyperparameters.insert(k.to_string(), v.to_string());
    }
    spec
}

async fn until(
    backend: &dyn TrainingBackend,
    name: &str,
    what: &str,
    done: impl Fn(&JobStatus) -> bool,
) -> JobStatus {
    let start = Instant::now();
    loop {
        let s = backend
            .describe(name)
            .await
            .unwrap_or_else(|e| panic!("describe {name}: {e}"))
            .unwrap_or_else(|| panic!("job {name} vanished"));
        if done(&s) {
            return s;
        }
        assert!(
            start.elapsed() < JOB_BOUND,
            "job {name} never became {what}; last status {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs the whole suite. `base` is a spec that completes (the example model with
/// its data); job names are `prefix` + a suffix, so each run needs a fresh prefix.
pub async fn run(backend: &dyn TrainingBackend, base: &JobSpec, prefix: &str) {
    // An unknown job is None, not an error.
    assert_eq!(
        backend
            .describe(&format!("{prefix}-never-submitted"))
            .await
            .expect("describe of an unknown job"),
        None
    );

    // Identity: nothing recorded for an unknown job.
    assert_eq!(
        backend
            .identity(&format!("{prefix}-never-submitted"))
            .await
            .expect("identity of an unknown job"),
        Recorded::Absent
    );

    backend
        .preflight(base)
        .await
        .expect("preflight of a valid spec");

    // A completing job: created once, a second submit finds it.
    let ok = with_hp(base, &format!("{prefix}-ok"), &[]);
    assert_eq!(
        backend.submit(&ok).await.expect("submit"),
        Submitted::Created
    );
    assert_eq!(
        backend.submit(&ok).await.expect("second submit"),
        Submitted::AlreadyExists,
        "a second submit of the same name must not start another job"
    );
    // The job carries the identity of the run that started it, while it runs…
    assert_eq!(
        backend.identity(&ok.name).await.expect("identity"),
        Recorded::Run(ok.identity.clone()),
        "a job records the identity it was started for"
    );
    let done = until(backend, &ok.name, "terminal", |s| s.state.is_terminal()).await;
    // …and after it finished (and, locally, was collected).
    assert_eq!(
        backend.identity(&ok.name).await.expect("identity"),
        Recorded::Run(ok.identity.clone()),
        "a finished job still names the run it was started for"
    );
    assert_eq!(done.state, JobState::Completed, "{done:?}");
    assert_eq!(done.name, ok.name);
    assert!(done.failure_reason.is_none(), "{done:?}");
    assert!(
        done.artifact.is_some(),
        "a completed job has an artifact: {done:?}"
    );
    for (k, v) in &ok.hyperparameters {
        assert_eq!(done.hyperparameters.get(k), Some(v), "hyperparameter {k}");
    }
    // Logs: some lines, and a second read from the advanced cursor repeats none.
    let mut cursor = LogCursor::default();
    let first = backend.logs(&ok.name, &mut cursor).await.expect("logs");
    assert!(!first.is_empty(), "a finished job has log lines");
    let again = backend
        .logs(&ok.name, &mut cursor)
        .await
        .expect("logs again");
    assert!(again.is_empty(), "the cursor was not advanced: {again:?}");

    // A failing job: Failed, with the container's reason.
    let bad = with_hp(base, &format!("{prefix}-fail"), &[("fail", "true")]);
    assert_eq!(
        backend.submit(&bad).await.expect("submit"),
        Submitted::Created
    );
    let failed = until(backend, &bad.name, "terminal", |s| s.state.is_terminal()).await;
    assert_eq!(failed.state, JobState::Failed, "{failed:?}");
    let reason = failed.failure_reason.clone().unwrap_or_default();
    assert!(
        reason.contains("fail requested by hyperparameter"),
        "failure reason: {reason:?}"
    );

    // A long job: stopped on request.
    let slow = with_hp(base, &format!("{prefix}-stop"), &[("sleep", "120")]);
    assert_eq!(
        backend.submit(&slow).await.expect("submit"),
        Submitted::Created
    );
    until(backend, &slow.name, "InProgress", |s| {
        s.state == JobState::InProgress
    })
    .await;
    backend.stop(&slow.name).await.expect("stop");
    let stopped = until(backend, &slow.name, "terminal", |s| s.state.is_terminal()).await;
    assert_eq!(stopped.state, JobState::Stopped, "{stopped:?}");
    // Stopping a stopped job is harmless.
    backend.stop(&slow.name).await.expect("a second stop");
}

/// Hyperparameters of the example as strings.
pub fn example_hyperparameters() -> BTreeMap<String, String> {
    [("epochs", "50"), ("lr", "0.1"), ("l2", "0.001")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
