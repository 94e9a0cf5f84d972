//! An Argo Rollouts `Rollout` followed on the cluster after Argo CD syncs a
//! commit that changed its pod template (`deploy.gitops.rollout`). Argo CD's
//! health of a Rollout says only Healthy / Progressing / Suspended / Degraded;
//! the Rollout's own status says which canary step it is at, the weight, and
//! whether a pause ends by itself (`pause: {duration}`) or waits for a person
//! (`pause: {}`). The verdict on one read is data ([`judge`]); [`follow`] loops
//! over reads (a watch, [`crate::cloud::kube_follow`]) bounded by ready-timeout.
//!
//! A pause without a duration is never waited out to the timeout: it is a gate
//! the manifests' author put there for a person, so mlcd stops at once, names
//! the Rollout, the step and the command that promotes it, and a later run
//! (the file already holds the version, nothing is committed) follows the
//! Rollout on from where it is.

use std::time::{Duration, Instant};

use kube::api::Api;
use serde_json::Value;

use crate::cloud::kube as k;
use crate::cloud::kube_follow::Followed;
use crate::error::UserError;
use crate::plan::ServingKubernetesPlan;

/// Where a Rollout is, as one line and as data for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The current step, 1-based (0: none yet), and how many there are.
    pub step: usize,
    /// The number of steps.
    pub of: usize,
    /// What the current step does (`setWeight 20`, `pause 10s`, `pause (until promoted)`).
    pub what: String,
    /// The canary's weight.
    pub weight: u64,
    /// `status.phase`.
    pub phase: String,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.of == 0 {
            return write!(f, "{}, canary weight {}%", self.phase, self.weight);
        }
        write!(
            f,
            "{}, step {}/{} ({}), canary weight {}%",
            self.phase, self.step, self.of, self.what, self.weight
        )
    }
}

/// What one read of the Rollout says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not there yet (progressing, a timed pause), and why.
    Wait(String, Option<Position>),
    /// The new template is stable and the Rollout Healthy.
    Healthy(Position),
    /// Degraded or aborted, and the Rollout's message.
    Failed(String),
    /// Paused until a person promotes it.
    Human(Position),
}

fn step_text(step: &Value) -> String {
    if let Some(w) = step["setWeight"].as_u64() {
        return format!("setWeight {w}");
    }
    if let Some(p) = step.get("pause") {
        return match &p["duration"] {
            Value::Null => "pause until promoted".into(),
            Value::Number(n) => format!("pause {n}s"),
            Value::String(s) => format!("pause {s}"),
            other => format!("pause {other}"),
        };
    }
    step.as_object()
        .and_then(|o| o.keys().next().cloned())
        .unwrap_or_else(|| "step".into())
}

/// Whether `obj`'s pod template runs `image` (exactly, or pinned by its digest).
fn runs(obj: &Value, image: &str) -> bool {
    let digest = image.split_once('@').map(|(_, d)| d);
    obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["image"].as_str())
        .any(|i| i == image || digest.is_some_and(|d| i.ends_with(&format!("@{d}"))))
}

/// The verdict on the Rollout `obj` for the version `image`.
pub fn judge(obj: &Value, image: &str) -> Verdict {
    let st = &obj["status"];
    let steps = obj["spec"]["strategy"]["canary"]["steps"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let index = st["currentStepIndex"].as_u64().unwrap_or(0) as usize;
    let pos = Position {
        step: (index + 1).min(steps.len()),
        of: steps.len(),
        what: steps
            .get(index)
            .map(step_text)
            .unwrap_or_else(|| "done".into()),
        weight: st["canary"]["weights"]["canary"]["weight"]
            .as_u64()
            .unwrap_or(0),
        phase: st["phase"].as_str().unwrap_or("(no phase yet)").to_string(),
    };
    if !runs(obj, image) {
        return Verdict::Wait(
            format!("its pod template does not run {image} yet (Argo CD has not applied it)"),
            None,
        );
    }
    let generation = obj["metadata"]["generation"].as_u64().unwrap_or(0);
    let observed = match &st["observedGeneration"] {
        Value::String(s) => s.parse().unwrap_or(0),
        v => v.as_u64().unwrap_or(0),
    };
    if observed < generation {
        return Verdict::Wait(
            format!("the Rollouts controller has not observed generation {generation} yet"),
            None,
        );
    }
    let message = st["message"].as_str().unwrap_or("").to_string();
    if st["abort"].as_bool() == Some(true) || pos.phase == "Degraded" {
        let what = if st["abort"].as_bool() == Some(true) {
            "aborted"
        } else {
            "Degraded"
        };
        return Verdict::Failed(format!(
            "the Rollout is {what}{}",
            if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            }
        ));
    }
    let stable = st["stableRS"].as_str();
    let current = st["currentPodHash"].as_str();
    if pos.phase == "Healthy" && stable.is_some() && stable == current {
        return Verdict::Healthy(pos);
    }
    if pos.phase == "Paused" {
        let indefinite = obj["spec"]["paused"].as_bool() == Some(true)
            || steps
                .get(index)
                .is_some_and(|s| s.get("pause").is_some() && s["pause"]["duration"].is_null());
        if indefinite {
            return Verdict::Human(pos);
        }
    }
    let why = format!(
        "{pos}{}",
        if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        }
    );
    Verdict::Wait(why, Some(pos))
}

/// How following a Rollout ended.
#[derive(Debug)]
pub enum Outcome {
    /// Healthy at the new template for the cool-down; the positions it went through.
    Healthy(Vec<Position>),
    /// Degraded or aborted.
    Failed(String, Vec<Position>),
    /// Paused until a person promotes it.
    Human(Position, Vec<Position>),
    /// `timeout` passed; the last state.
    TimedOut(String, Vec<Position>),
}

/// A Rollout on the cluster, read through a watch.
pub struct RolloutWatch {
    followed: Followed,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl RolloutWatch {
    /// Connects to the cluster of `kube` (no request yet).
    pub async fn open(
        kube: &ServingKubernetesPlan,
        env: &std::collections::BTreeMap<String, String>,
        name: &str,
    ) -> Result<RolloutWatch, UserError> {
        let (client, source) = k::connect(kube.context.as_deref(), kube.eks.as_ref(), env).await?;
        log::info!("kubernetes: credentials from {source}");
        let res = k::resource("argoproj.io/v1alpha1", "Rollout", "rollouts");
        Ok(RolloutWatch {
            followed: Followed::new(Api::namespaced_with(client, &kube.namespace, &res)),
            namespace: kube.namespace.clone(),
            name: name.to_string(),
        })
    }

    /// The command that promotes the Rollout past a pause.
    pub fn promote_command(&self) -> String {
        format!(
            "kubectl argo rollouts promote {} -n {}",
            self.name, self.namespace
        )
    }

    /// Follows the Rollout until the template running `image` is Healthy for
    /// `cooldown`, fails, waits for a person, or `timeout` passes. `log` sees
    /// each change.
    pub async fn follow(
        &self,
        image: &str,
        timeout: Duration,
        cooldown: Duration,
        poll: Duration,
        mut log: impl FnMut(&str),
    ) -> Result<Outcome, UserError> {
        let start = Instant::now();
        let mut trail: Vec<Position> = Vec::new();
        let mut last = String::new();
        let mut healthy_since: Option<Instant> = None;
        loop {
            let obj = self.followed.get(&self.name).await.map_err(|e| {
                k::error(
                    &format!("reading Rollout {}/{}", self.namespace, self.name),
                    &self.namespace,
                    &e,
                )
            })?;
            let verdict = match &obj {
                None => Verdict::Wait("not on the cluster yet".into(), None),
                Some(o) => judge(o, image),
            };
            let (line, pos) = match &verdict {
                Verdict::Wait(w, p) => (w.clone(), p.clone()),
                Verdict::Healthy(p) => (p.to_string(), Some(p.clone())),
                Verdict::Failed(w) => (w.clone(), None),
                Verdict::Human(p) => (p.to_string(), Some(p.clone())),
            };
            if line != last {
                log(&format!("Rollout {}/{}: {line}", self.namespace, self.name));
                last = line;
            }
            if let Some(p) = pos {
                let same_step = trail
                    .last()
                    .is_some_and(|l| l.step == p.step && l.phase == p.phase);
                if !same_step {
                    trail.push(p);
                }
            }
            match verdict {
                Verdict::Failed(why) => return Ok(Outcome::Failed(why, trail)),
                Verdict::Human(p) => return Ok(Outcome::Human(p, trail)),
                Verdict::Healthy(_) => {
                    let since = *healthy_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= cooldown {
                        return Ok(Outcome::Healthy(trail));
                    }
                }
                Verdict::Wait(..) => healthy_since = None,
            }
            if start.elapsed() >= timeout {
                return Ok(Outcome::TimedOut(last, trail));
            }
            tokio::time::sleep(poll.min(timeout.saturating_sub(start.elapsed()))).await;
        }
    }
}

/// The summary's table of the steps a Rollout went through.
pub fn trail_table(name: &str, trail: &[Position]) -> String {
    let mut s = format!(
        "Rollout `{name}` as mlcd saw it:\n\n| step | does | canary weight | phase |\n|---|---|---|---|\n"
    );
    for p in trail {
        let step = if p.of == 0 {
            "—".to_string()
        } else {
            format!("{}/{}", p.step, p.of)
        };
        s.push_str(&format!(
            "| {step} | {} | {}% | {} |\n",
            p.what, p.weight, p.phase
        ));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IMG: &str = "r.io/churn:v2@sha256:abc";

    fn rollout(status: Value) -> Value {
        json!({
            "metadata": {"name": "churn", "generation": 2},
            "spec": {
                "template": {"spec": {"containers": [{"name": "serve", "image": IMG}]}},
                "strategy": {"canary": {"steps": [
                    {"setWeight": 20}, {"pause": {"duration": "10s"}},
                    {"setWeight": 50}, {"pause": {}}
                ]}}
            },
            "status": status
        })
    }

    #[test]
    fn a_timed_pause_is_waited_and_a_pause_without_duration_waits_for_a_person() {
        let timed = judge(
            &rollout(
                json!({"observedGeneration": "2", "phase": "Paused", "currentStepIndex": 1,
                "stableRS": "a", "currentPodHash": "b",
                "canary": {"weights": {"canary": {"weight": 20}, "stable": {"weight": 80}}}}),
            ),
            IMG,
        );
        match timed {
            Verdict::Wait(line, Some(p)) => {
                assert_eq!(p.step, 2);
                assert_eq!(p.weight, 20);
                assert!(line.contains("step 2/4 (pause 10s)"), "{line}");
            }
            other => panic!("{other:?}"),
        }
        let human = judge(
            &rollout(
                json!({"observedGeneration": "2", "phase": "Paused", "currentStepIndex": 3,
                "stableRS": "a", "currentPodHash": "b",
                "canary": {"weights": {"canary": {"weight": 50}, "stable": {"weight": 50}}}}),
            ),
            IMG,
        );
        assert!(
            matches!(&human, Verdict::Human(p) if p.step == 4 && p.of == 4 && p.weight == 50 && p.what == "pause until promoted"),
            "{human:?}"
        );
    }

    #[test]
    fn healthy_needs_the_new_template_stable_and_aborted_fails() {
        let healthy = json!({"observedGeneration": "2", "phase": "Healthy", "currentStepIndex": 4,
            "stableRS": "b", "currentPodHash": "b"});
        assert!(matches!(
            judge(&rollout(healthy.clone()), IMG),
            Verdict::Healthy(_)
        ));
        // Another image in the template: Argo CD has not applied ours yet.
        assert!(matches!(
            judge(&rollout(healthy.clone()), "r.io/churn:v3"),
            Verdict::Wait(_, None)
        ));
        // The same image pinned by digest under another name still counts.
        assert!(matches!(
            judge(&rollout(healthy), "mirror.io/churn@sha256:abc"),
            Verdict::Healthy(_)
        ));
        // The controller has not observed the new generation.
        assert!(matches!(
            judge(
                &rollout(
                    json!({"observedGeneration": "1", "phase": "Healthy", "stableRS": "a", "currentPodHash": "a"})
                ),
                IMG
            ),
            Verdict::Wait(_, None)
        ));
        let aborted = judge(
            &rollout(
                json!({"observedGeneration": "2", "phase": "Degraded", "abort": true,
                "message": "RolloutAborted: Rollout aborted update to revision b", "stableRS": "a", "currentPodHash": "b"}),
            ),
            IMG,
        );
        assert!(
            matches!(&aborted, Verdict::Failed(m) if m.contains("aborted") && m.contains("revision b")),
            "{aborted:?}"
        );
    }
}
