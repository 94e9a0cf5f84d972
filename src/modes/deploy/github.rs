//! The GitHub deployment of a rollout: created in progress, finished with the
//! outcome (GitOps deploys report through it too).

use super::{Candidate, ModeEnv};
use crate::plan::{DeployPlan, Plan};
use crate::report::deployments::{self, Deployment};
use crate::report::Reporter;

/// The GitHub deployment of this rollout, when running in Actions with a token
/// (GitOps deploys report through it too).
pub(crate) struct GitHub {
    client: Option<Deployment>,
    id: Option<u64>,
    log_url: Option<String>,
    /// A final status was posted.
    finished: bool,
}

impl GitHub {
    pub(crate) async fn start(
        plan: &Plan,
        d: &DeployPlan,
        env: &ModeEnv<'_>,
        c: &Candidate,
        reporter: &mut Reporter,
    ) -> GitHub {
        let mut g = GitHub {
            client: None,
            id: None,
            log_url: plan.source.run_url.clone(),
            finished: false,
        };
        let in_actions = env.env.get("GITHUB_ACTIONS").map(String::as_str) == Some("true");
        let (Some(token), Some(repo), Some(sha)) = (
            env.request.github_token.as_ref(),
            plan.source.repository.as_deref(),
            plan.source.commit.as_deref(),
        ) else {
            return g;
        };
        if !in_actions {
            return g;
        }
        let api = env
            .env
            .get("GITHUB_API_URL")
            .cloned()
            .unwrap_or_else(|| "https://api.github.com".into());
        let mut client = match Deployment::client(&api, token, repo) {
            Ok(c) => c,
            Err(e) => {
                reporter.warn(format!("mlcd could not report a GitHub deployment: {e}"));
                return g;
            }
        };
        let payload = serde_json::json!({
            "endpoint": d.endpoint, "version": c.version, "image": c.image,
            "strategy": d.strategy.to_string(),
        });
        let desc = format!("{} {} → {}", d.strategy, c.version, d.endpoint);
        match client.create(sha, &d.environment, &desc, payload).await {
            Ok(id) => {
                g.id = Some(id);
                reporter.set_output("deployment-id", id.to_string());
                if let Err(e) = client
                    .status(
                        id,
                        deployments::State::InProgress,
                        &desc,
                        None,
                        g.log_url.as_deref(),
                    )
                    .await
                {
                    reporter.warn(format!("mlcd could not update the GitHub deployment: {e}"));
                }
                g.client = Some(client);
            }
            Err(e) => reporter.warn(format!(
                "mlcd could not create a GitHub deployment: {e}; the rollout carries on"
            )),
        }
        g
    }

    pub(crate) async fn finish(
        &mut self,
        state: deployments::State,
        desc: &str,
        url: Option<&str>,
        reporter: &mut Reporter,
    ) {
        self.finished = true;
        if let (Some(c), Some(id)) = (self.client.as_mut(), self.id) {
            if let Err(e) = c
                .status(id, state, desc, url, self.log_url.as_deref())
                .await
            {
                reporter.warn(format!("mlcd could not update the GitHub deployment: {e}"));
            }
        }
    }

    /// Ends a deployment no status has ended yet as failed with `err`: a step
    /// that stopped on an error never leaves its deployment `in_progress`.
    pub(crate) async fn fail_if_open(&mut self, err: &anyhow::Error, reporter: &mut Reporter) {
        if !self.finished {
            let why = format!("{err:#}");
            self.finish(deployments::State::Failure, &why, None, reporter)
                .await;
        }
    }
}
