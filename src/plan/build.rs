//! The build plan: context, Dockerfile, arguments, image repositories, tags and
//! lineage labels.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::paths::inside_workspace;
use super::{tags, Inputs};
use crate::config::values::ModelId;
use crate::error::UserError;

/// What `mode: build` will build and push.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BuildPlan {
    /// The build context, relative to the workspace.
    pub context: String,
    /// The Dockerfile, relative to the workspace.
    pub dockerfile: String,
    /// The stage to build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Build arguments.
    pub args: BTreeMap<String, String>,
    /// Target platforms.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Image repositories the image is tagged in (one per registry).
    pub repositories: Vec<String>,
    /// Tags applied in every repository.
    pub tags: Vec<String>,
    /// Image labels (OCI lineage; `org.opencontainers.image.created` is added at build time).
    pub labels: BTreeMap<String, String>,
    /// Whether the image is pushed (false when no registry is configured).
    pub push: bool,
}

/// Plans a build.
pub fn plan(inputs: &Inputs, model: &ModelId) -> Result<BuildPlan, UserError> {
    let cfg = &inputs.cfg().build;
    let ws = &inputs.context.workspace;
    let base = inputs.config.map_or(ws.as_path(), |c| c.dir.as_path());

    let (context_rel, context_key, context_base) = match &inputs.request.model_path {
        Some(p) => (p.clone(), "input `model-path`".to_string(), ws.as_path()),
        None => (
            Path::new(cfg.context.as_deref().unwrap_or(".")).to_path_buf(),
            "`build.context`".to_string(),
            base,
        ),
    };
    let context = inside_workspace(ws, context_base, &context_rel, &context_key)
        .map_err(|e| inputs.config_error(&["build", "context"], e))?;
    if !context.abs.is_dir() {
        return Err(inputs.config_error(
            &["build", "context"],
            format!(
                "{context_key} `{}` is not a directory",
                context_rel.display()
            ),
        ));
    }
    let dockerfile_rel = cfg.dockerfile.as_deref().unwrap_or("Dockerfile");
    let dockerfile = inside_workspace(
        ws,
        &context.abs,
        Path::new(dockerfile_rel),
        "`build.dockerfile`",
    )
    .map_err(|e| inputs.config_error(&["build", "dockerfile"], e))?;
    if !dockerfile.abs.is_file() {
        return Err(inputs
            .config_error(
                &["build", "dockerfile"],
                format!(
                    "missing Dockerfile: `{}` does not exist in the build context `{}`",
                    dockerfile_rel, context.display
                ),
            )
            .hint("set `build.dockerfile` to the Dockerfile's path relative to the context"));
    }

    let mut args: BTreeMap<String, String> = cfg
        .args
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    if let Some(b) = &inputs.request.base_image {
        args.insert("BASE_IMAGE".into(), b.clone());
    }
    for (k, v) in &inputs.request.params {
        args.insert(k.clone(), v.clone());
    }

    let mut registries: Vec<_> = cfg.registry.iter().chain(cfg.registries.iter()).collect();
    registries.dedup();
    let push = !registries.is_empty();
    let repositories = if push {
        registries.iter().map(|r| r.repository(model)).collect()
    } else {
        vec![model.to_string()]
    };

    let mut extra = cfg.tags.clone();
    extra.extend(inputs.request.tags.iter().cloned());
    let tags = tags::compute(inputs.context, &extra)
        .into_iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>();
    if tags.is_empty() {
        return Err(UserError::invalid(
            "no image tag could be computed: there is no commit (not a git checkout, no GITHUB_SHA) and no `tags` input",
        )
        .hint("run inside a git checkout, or give `tags` (CLI: --tags 1.0.0)"));
    }

    let mut labels = cfg.labels.clone();
    let ctx = inputs.context;
    if let Some(repo) = &ctx.repository {
        labels.insert(
            "org.opencontainers.image.source".into(),
            format!("{}/{repo}", ctx.server_url),
        );
    }
    if let Some(sha) = &ctx.sha {
        labels.insert("org.opencontainers.image.revision".into(), sha.clone());
    }
    labels.insert("dev.mlcd.model-id".into(), model.to_string());
    if let Some(c) = inputs.config {
        labels.insert("dev.mlcd.config-digest".into(), c.digest.clone());
    }
    if let Some(url) = ctx.run_url() {
        labels.insert("dev.mlcd.run-url".into(), url);
    }

    Ok(BuildPlan {
        context: context.display,
        dockerfile: dockerfile.display,
        target: cfg.target.clone(),
        args,
        platforms: cfg.platforms.clone(),
        repositories,
        tags,
        labels,
        push,
    })
}
