//! Google long-running operations (`google.longrunning.Operation`): polled with
//! `operations.get` until `done`, bounded; a done operation's `error` becomes the
//! failure, its `response` the result. Shared by the Vertex AI registry
//! (models.upload) and serving (endpoints create / delete / deployModel /
//! undeployModel).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use super::client::GcpClient;
use crate::error::UserError;

/// Polls `op` (as a method returned it) every `poll` until it is done, for at
/// most `bound`; its `response`. `root` is the API root the operation's name
/// hangs under (`https://…/v1/`); `what` names the change in messages.
pub async fn wait(
    client: &GcpClient,
    root: &str,
    op: Value,
    what: &str,
    poll: Duration,
    bound: Duration,
) -> Result<Value, UserError> {
    let start = Instant::now();
    let mut op = op;
    loop {
        if op["done"].as_bool() == Some(true) {
            if let Some(e) = op.get("error") {
                return Err(UserError::failed(format!(
                    "{what} failed: {} (code {})",
                    e["message"].as_str().unwrap_or("no message"),
                    e["code"]
                )));
            }
            return Ok(op["response"].clone());
        }
        let name = op["name"].as_str().unwrap_or_default().to_string();
        if start.elapsed() >= bound {
            return Err(UserError::failed(format!(
                "{what} did not finish within {} (operation {name})",
                humantime::format_duration(bound)
            ))
            .hint("the operation goes on at Google: `gcloud ai operations describe` shows it; run the step again once it is done"));
        }
        tokio::time::sleep(poll.min(bound.saturating_sub(start.elapsed()))).await;
        op = client
            .call(
                "operations.get",
                Method::GET,
                &format!("{root}{name}"),
                None,
            )
            .await
            .map_err(|e| e.user(&format!("waiting for {what}")))?;
    }
}
