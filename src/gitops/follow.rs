//! Following a commit through Argo CD: the verdict on one answer is data
//! ([`judge`]); the loop around it is bounded by `ready-timeout`, and a Healthy
//! answer must hold for the cool-down before the rollout counts as done.

use std::time::{Duration, Instant};

use super::argocd::{AppStatus, ArgoCd};
use super::github::Repo;

/// What one answer says about the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not there yet, and why.
    Wait(String),
    /// Synced at the commit, operation Succeeded, Healthy.
    Healthy,
    /// The commit failed: the sync failed or the application is Degraded.
    Failed(String),
}

/// The verdict on `s` for `commit`; `contains` says whether the synced revision is
/// the commit or a later one containing it.
pub fn judge(s: &AppStatus, commit: &str, contains: bool) -> Verdict {
    let at_commit = s.revision.as_deref() == Some(commit) || contains;
    let op_at_commit = s.operation_revision.as_deref() == Some(commit)
        || (contains && s.operation_revision == s.revision);
    let failed_phase = matches!(s.phase.as_deref(), Some("Failed" | "Error"));
    if failed_phase && (op_at_commit || at_commit) {
        return Verdict::Failed(format!(
            "the sync of {} failed: {}",
            short(commit),
            s.message.as_deref().unwrap_or("(no message)")
        ));
    }
    if !at_commit {
        return Verdict::Wait(format!(
            "Argo CD has not synced {} yet ({})",
            short(commit),
            s.line()
        ));
    }
    if s.health == "Degraded" {
        return Verdict::Failed(format!(
            "the application is Degraded at {}{}",
            short(commit),
            s.health_message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ));
    }
    if s.sync == "Synced"
        && s.phase.as_deref().is_none_or(|p| p == "Succeeded")
        && s.health == "Healthy"
    {
        return Verdict::Healthy;
    }
    Verdict::Wait(format!("{} at {}: {}", s.sync, short(commit), s.line()))
}

fn short(c: &str) -> &str {
    &c[..c.len().min(12)]
}

/// How following ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// Healthy, held for the cool-down.
    Healthy {
        /// Time from the start of following to the first Healthy answer.
        first_healthy: Duration,
    },
    /// The commit failed, and why.
    Failed(String),
    /// The bound ran out; the last answer.
    TimedOut(String),
}

/// Polls `app` until `commit` (or a later commit containing it, as `repo` says)
/// is synced and Healthy for `cooldown`, it fails, or `timeout` passes. `log`
/// sees each change of state.
#[allow(clippy::too_many_arguments)]
pub async fn follow(
    argo: &mut ArgoCd,
    repo: &mut Repo,
    app: &str,
    commit: &str,
    timeout: Duration,
    cooldown: Duration,
    poll: Duration,
    log: impl FnMut(&str),
) -> Result<Followed, String> {
    follow_with(
        argo,
        repo,
        app,
        commit,
        timeout,
        cooldown,
        poll,
        Until::Healthy,
        log,
    )
    .await
}

/// [`follow`] until Argo CD has synced `commit` (Synced, operation Succeeded),
/// whatever the application's health short of Degraded: what comes after the
/// sync is followed on the cluster (an Argo Rollouts Rollout's own steps and
/// pauses, [`super::argo_rollout`]), which Argo CD's health sums up as
/// Progressing or Suspended.
pub async fn follow_synced(
    argo: &mut ArgoCd,
    repo: &mut Repo,
    app: &str,
    commit: &str,
    timeout: Duration,
    poll: Duration,
    log: impl FnMut(&str),
) -> Result<Followed, String> {
    follow_with(
        argo,
        repo,
        app,
        commit,
        timeout,
        Duration::ZERO,
        poll,
        Until::Synced,
        log,
    )
    .await
}

/// When following ends well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Healthy for the cool-down.
    Healthy,
    /// Healthy for the cool-down, Degraded answers waited out (a revert).
    HealthyPatient,
    /// Synced at the commit.
    Synced,
}

/// Whether `s` has synced `commit` (or a later commit containing it) successfully.
fn synced(s: &AppStatus, commit: &str, contains: bool) -> bool {
    let at_commit = s.revision.as_deref() == Some(commit) || contains;
    at_commit && s.sync == "Synced" && s.phase.as_deref().is_none_or(|p| p == "Succeeded")
}

/// [`follow`] for a revert commit: right after Argo CD syncs it, the health can
/// still describe the failed version (KServe reports the new revision only a
/// moment later), and there is nothing left to do but wait, so a Degraded
/// answer is waited out until Healthy or the `timeout`.
#[allow(clippy::too_many_arguments)]
pub async fn follow_revert(
    argo: &mut ArgoCd,
    repo: &mut Repo,
    app: &str,
    commit: &str,
    timeout: Duration,
    cooldown: Duration,
    poll: Duration,
    log: impl FnMut(&str),
) -> Result<Followed, String> {
    follow_with(
        argo,
        repo,
        app,
        commit,
        timeout,
        cooldown,
        poll,
        Until::HealthyPatient,
        log,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn follow_with(
    argo: &mut ArgoCd,
    repo: &mut Repo,
    app: &str,
    commit: &str,
    timeout: Duration,
    cooldown: Duration,
    poll: Duration,
    until: Until,
    mut log: impl FnMut(&str),
) -> Result<Followed, String> {
    let start = Instant::now();
    let mut healthy_since: Option<Instant> = None;
    let mut first_healthy = None;
    let mut last = String::new();
    let mut known: Option<(String, bool)> = None;
    loop {
        let s = argo.get(app).await?;
        let answered = Instant::now();
        let contains = match s.revision.as_deref() {
            Some(r) if r != commit => match &known {
                Some((k, c)) if k == r => *c,
                _ => {
                    let c = repo
                        .contains(r, commit)
                        .await
                        .map_err(|e| format!("asking GitHub whether {r} contains {commit}: {e}"))?;
                    if c {
                        log(&format!(
                            "Argo CD synced {}, a later commit that contains {}",
                            short(r),
                            short(commit)
                        ));
                    }
                    known = Some((r.to_string(), c));
                    c
                }
            },
            _ => false,
        };
        let line = s.line();
        if line != last {
            log(&format!("Argo CD application {app}: {line}"));
            last = line;
        }
        let verdict = judge(&s, commit, contains);
        if until == Until::Synced
            && !matches!(verdict, Verdict::Failed(_))
            && synced(&s, commit, contains)
        {
            return Ok(Followed::Healthy {
                first_healthy: answered - start,
            });
        }
        match verdict {
            Verdict::Failed(why) if until != Until::HealthyPatient => {
                return Ok(Followed::Failed(why))
            }
            Verdict::Failed(_) => healthy_since = None,
            Verdict::Healthy => {
                let since = *healthy_since.get_or_insert(answered);
                first_healthy.get_or_insert(answered - start);
                if answered - since >= cooldown {
                    return Ok(Followed::Healthy {
                        first_healthy: first_healthy.unwrap_or_default(),
                    });
                }
            }
            Verdict::Wait(_) => healthy_since = None,
        }
        if start.elapsed() >= timeout {
            return Ok(Followed::TimedOut(last));
        }
        let left = timeout.saturating_sub(start.elapsed());
        // Near the end of the cool-down, ask again right when it is over.
        let next = match healthy_since {
            Some(since) => poll.min(cooldown.saturating_sub(since.elapsed())),
            None => poll,
        };
        tokio::time::sleep(next.min(left).max(Duration::from_millis(10))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(rev: &str, sync: &str, phase: &str, health: &str) -> AppStatus {
        AppStatus {
            sync: sync.into(),
            revision: Some(rev.into()),
            phase: Some(phase.into()),
            operation_revision: Some(rev.into()),
            message: Some("msg".into()),
            health: health.into(),
            health_message: None,
        }
    }

    fn judge_(s: &AppStatus, c: &str) -> Verdict {
        judge(s, c, false)
    }

    #[test]
    fn a_later_commit_containing_ours_counts_as_ours() {
        assert_eq!(
            judge(&status("c2", "Synced", "Succeeded", "Healthy"), "c1", true),
            Verdict::Healthy
        );
        assert!(matches!(
            judge(&status("c2", "Synced", "Succeeded", "Degraded"), "c1", true),
            Verdict::Failed(_)
        ));
    }

    #[test]
    fn only_synced_succeeded_and_healthy_at_our_commit_is_healthy() {
        assert_eq!(
            judge_(&status("c1", "Synced", "Succeeded", "Healthy"), "c1"),
            Verdict::Healthy
        );
        // Healthy, but at the previous commit: wait.
        assert!(matches!(
            judge_(&status("c0", "Synced", "Succeeded", "Healthy"), "c1"),
            Verdict::Wait(_)
        ));
        assert!(matches!(
            judge_(&status("c1", "Synced", "Running", "Healthy"), "c1"),
            Verdict::Wait(_)
        ));
        assert!(matches!(
            judge_(&status("c1", "Synced", "Succeeded", "Progressing"), "c1"),
            Verdict::Wait(_)
        ));
        assert!(matches!(
            judge_(&status("c1", "OutOfSync", "Succeeded", "Healthy"), "c1"),
            Verdict::Wait(_)
        ));
    }

    #[test]
    fn degraded_or_a_failed_sync_of_our_commit_fails() {
        assert!(matches!(
            judge_(&status("c1", "Synced", "Succeeded", "Degraded"), "c1"),
            Verdict::Failed(_)
        ));
        assert!(matches!(
            judge_(&status("c1", "Unknown", "Failed", "Healthy"), "c1"),
            Verdict::Failed(_)
        ));
        // An older commit's failure is not ours.
        assert!(matches!(
            judge_(&status("c0", "Synced", "Failed", "Degraded"), "c1"),
            Verdict::Wait(_)
        ));
    }
}
