//! What a promotion records: the versions an endpoint served (in the
//! workspace, for `rollback`) and the registry's `production` alias.

use std::path::{Path, PathBuf};

use super::Candidate;
use crate::plan::DeployPlan;
use crate::registry::ModelRegistry;
use crate::report::Reporter;

/// Where rollbacks find the versions an endpoint served.
pub(super) fn history_path(workspace: &Path, endpoint: &str) -> PathBuf {
    workspace
        .join(".mlcd")
        .join("endpoints")
        .join(format!("{endpoint}.json"))
}

pub(super) fn read_history(workspace: &Path, endpoint: &str) -> Vec<Candidate> {
    std::fs::read(history_path(workspace, endpoint))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub(super) fn record(workspace: &Path, endpoint: &str, c: &Candidate) {
    let mut h = read_history(workspace, endpoint);
    h.retain(|x| x.version != c.version);
    h.push(c.clone());
    let path = history_path(workspace, endpoint);
    let write = std::fs::create_dir_all(path.parent().expect("a parent")).and_then(|()| {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&h).expect("serializes"))?;
        std::fs::rename(tmp, &path)
    });
    if let Err(e) = write {
        log::warn!(
            "cannot record the endpoint history in {}: {e}",
            path.display()
        );
    }
}

/// Records a promoted version: the endpoint's history, and — for the
/// `production` environment — the registry's `production` alias.
pub(super) async fn promoted(
    workspace: &Path,
    d: &DeployPlan,
    registry: &dyn ModelRegistry,
    c: &Candidate,
    reporter: &mut Reporter,
) {
    record(workspace, &d.endpoint, c);
    let (Some(v), "production") = (&c.registered, d.environment.as_str()) else {
        return;
    };
    match registry
        .set_alias(&d.registry.model_name, v, "production")
        .await
    {
        Ok(()) => reporter.info(&format!(
            "{} version {v} is now `production` in the {} registry",
            d.registry.model_name,
            registry.name()
        )),
        Err(e) => reporter.warn(format!("could not move the `production` alias: {e}")),
    }
}
