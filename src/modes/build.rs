//! `mode: build`: hash the context, compute the build id, skip the build when a
//! registry already holds an image for it (adding the new tags), else stream the
//! context to the Docker engine, build, push the layers once (with the build-id
//! tag, retried) and add the other tags as manifests, and report image, digest, tags.

use std::time::Instant;

use sha2::{Digest, Sha256};

use super::ModeEnv;
use crate::cloud::retry::Backoff;
use crate::error::{Outcome, UserError};
use crate::image::auth::{self, Sources};
use crate::image::context::{self, BuildContext};
use crate::image::engine::{BuildSpec, Engine, PushError};
use crate::image::registry::{Registry, RegistryError};
use crate::plan::{BuildPlan, Plan};
use crate::report::Reporter;

/// The build id: a digest of everything that decides the image — the files the
/// context sends, the Dockerfile, build arguments, target and platforms — and
/// nothing that changes per run (labels with the run URL are left out).
pub fn build_id(ctx: &BuildContext, b: &BuildPlan) -> String {
    let mut h = Sha256::new();
    let mut field = |k: &str, v: &str| {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    };
    field("context", &ctx.digest);
    field("dockerfile", &ctx.dockerfile);
    for (k, v) in &b.args {
        field(&format!("arg:{k}"), v);
    }
    field("target", b.target.as_deref().unwrap_or(""));
    field("platforms", &b.platforms.join(","));
    format!("sha256:{:x}", h.finalize())
}

fn split_repo(repository: &str) -> (&str, &str) {
    repository.split_once('/').unwrap_or(("", repository))
}

/// Refused credentials and exhausted retries carry the registry client's own
/// hints; anything else is prefixed with the host.
fn registry_error(e: RegistryError, host: &str) -> UserError {
    match e {
        RegistryError::Unauthorized { .. } | RegistryError::Transient(_) => UserError::from(e),
        other => UserError::failed(format!("registry {host}: {other}")),
    }
}

/// Runs the build.
pub async fn run(
    plan: &Plan,
    env: &ModeEnv<'_>,
    reporter: &mut Reporter,
) -> anyhow::Result<Outcome> {
    let b = plan.build.as_ref().expect("a build plan");
    let started = Instant::now();
    let ws = env.workspace;
    let context_dir = ws.join(&b.context);
    let dockerfile_path = ws.join(&b.dockerfile);
    let ctx = {
        let (c, d) = (context_dir.clone(), dockerfile_path.clone());
        std::sync::Arc::new(tokio::task::spawn_blocking(move || context::pack(&c, &d)).await??)
    };
    let id = build_id(&ctx, b);
    let key_tag = format!("build-{}", &id["sha256:".len().."sha256:".len() + 12]);
    reporter.info(&format!(
        "build context {}: {} files, {} KiB; build id {id}",
        b.context,
        ctx.files,
        ctx.bytes / 1024
    ));
    let mut tags: Vec<String> = b.tags.clone();
    tags.push(key_tag.clone());
    let backoff = Backoff::from_env();

    // Registries and their credentials (most specific source first; logged, never printed).
    let mut registries: Vec<(String, String, Registry)> = Vec::new();
    if b.push {
        let ca = match env
            .env
            .get("MLCD_REGISTRY_CA_FILE")
            .filter(|p| !p.is_empty())
        {
            Some(p) => Some(std::fs::read(p).map_err(|e| {
                UserError::invalid(format!("cannot read MLCD_REGISTRY_CA_FILE {p}: {e}"))
            })?),
            None => None,
        };
        for repo in &b.repositories {
            let (host, path) = split_repo(repo);
            let resolved = auth::resolve(
                host,
                &Sources {
                    username: env.request.registry_username.as_deref(),
                    password: env.request.registry_password.as_ref(),
                    github_token: env.request.github_token.as_ref(),
                    env: env.env,
                },
            )
            .await?;
            reporter.info(&format!(
                "registry {host}: credentials from {}",
                resolved.source
            ));
            let mut reg = Registry::new(host, resolved.credentials, ca.as_deref())
                .map_err(|e| registry_error(e, host))?;
            if ca.is_some() {
                reg = reg.with_https();
            }
            registries.push((host.to_string(), path.to_string(), reg));
        }
    }

    // Build once: an image for this build id in every registry → re-tag, no build.
    let mut existing: Option<String> = None;
    if b.push {
        let mut digests = Vec::new();
        for (host, path, reg) in &registries {
            let found = reg
                .manifest(path, &key_tag)
                .await
                .map_err(|e| registry_error(e, host))?;
            digests.push(found.map(|m| m.digest));
        }
        if let Some(Some(first)) = digests.first() {
            if digests.iter().all(|d| d.as_deref() == Some(first.as_str())) {
                existing = Some(first.clone());
            }
        }
    }

    let (digest, skipped, size) = if let Some(digest) = existing {
        reporter.info(&format!("an image for build id {id} is already in the registry ({digest}): adding tags, not rebuilding"));
        for (host, path, reg) in &registries {
            for t in &tags {
                reg.tag(path, &digest, t)
                    .await
                    .map_err(|e| registry_error(e, host))?;
            }
        }
        (digest, true, None)
    } else {
        let engine = Engine::connect().await?;
        let first_repo = b.repositories.first().expect("a repository");
        let local_name = format!("{first_repo}:{key_tag}");
        let existing_local = if b.push {
            None
        } else {
            engine.local(&local_name).await
        };
        if let Some(found) = existing_local {
            reporter.info(&format!(
                "{local_name} already exists in the local engine: not rebuilding"
            ));
            for t in &tags {
                engine.tag(&local_name, first_repo, t).await?;
            }
            // Without a registry there is no manifest digest: the image id stands for it.
            (found.id, true, Some(found.size))
        } else {
            let dockerfile_text = std::fs::read_to_string(&dockerfile_path).unwrap_or_default();
            let platform = b.platforms.first().map(String::as_str);
            if b.platforms.len() > 1 {
                reporter.warn(format!(
                    "the classic builder builds one platform at a time: building {} only (of {})",
                    b.platforms[0],
                    b.platforms.join(", ")
                ));
            }
            let mut labels = b.labels.clone();
            labels.insert(
                "org.opencontainers.image.created".into(),
                chrono::Utc::now().to_rfc3339(),
            );
            labels.insert("dev.mlcd.build-id".into(), id.clone());
            let spec = BuildSpec {
                dockerfile: &ctx.dockerfile,
                dockerfile_display: &b.dockerfile,
                dockerfile_text: &dockerfile_text,
                target: b.target.as_deref(),
                args: &b.args,
                labels: &labels,
                platform,
                name: &local_name,
            };
            reporter.group(&format!("Build {local_name}"));
            let built = {
                let r: &Reporter = reporter;
                engine
                    .build(ctx.clone(), &spec, &mut |line| r.info(line))
                    .await
            };
            reporter.end_group();
            let built = built?;
            for repo in &b.repositories {
                for t in &tags {
                    engine.tag(&built.id, repo, t).await?;
                }
            }
            let mut digest = built.id.clone();
            if b.push {
                for (repo, (host, path, reg)) in b.repositories.iter().zip(&registries) {
                    // The layers go up once, with the build-id tag (so an interrupted
                    // run is found and finished by the next one); every other tag is
                    // the same manifest put again under another name.
                    reporter.group(&format!("Push {repo}"));
                    let r = engine
                        .push(repo, &key_tag, reg.credentials(), &backoff)
                        .await;
                    if let Err(e) = r {
                        reporter.end_group();
                        let msg = format!("pushing {repo}:{key_tag} failed: {e}");
                        return Err(match e {
                            PushError::Unauthorized(_) => UserError::failed(msg)
                                .hint("check registry-username / registry-password; refused credentials are not retried"),
                            PushError::Transient(_) => UserError::failed(format!("{msg} (gave up after {} attempts)", backoff.attempts))
                                .hint("the registry was unreachable or failing; rerun when it is back"),
                            PushError::Other(_) => UserError::failed(msg),
                        }
                        .into());
                    }
                    reporter.info(&format!("pushed {repo}:{key_tag}"));
                    let m = reg
                        .manifest(path, &key_tag)
                        .await
                        .map_err(|e| registry_error(e, host))?
                        .ok_or_else(|| {
                            UserError::failed(format!(
                                "{repo}:{key_tag} is not in the registry after the push"
                            ))
                        })?;
                    for t in tags.iter().filter(|t| **t != key_tag) {
                        let tagged = reg.tag(path, &m.digest, t).await;
                        if let Err(e) = tagged {
                            reporter.end_group();
                            return Err(registry_error(e, host).into());
                        }
                        reporter.info(&format!("tagged {repo}:{t}"));
                    }
                    reporter.end_group();
                    digest = m.digest;
                }
            }
            (digest, false, Some(built.size))
        }
    };

    let refs: Vec<String> = b
        .repositories
        .iter()
        .flat_map(|r| tags.iter().map(move |t| format!("{r}:{t}")))
        .collect();
    let image = if b.push {
        format!("{}@{digest}", b.repositories[0])
    } else {
        format!("{}:{key_tag}", b.repositories[0])
    };
    reporter.set_output("image", image.clone());
    reporter.set_output("digest", digest.clone());
    reporter.set_output("tags", refs.join("\n"));
    reporter.set_output("build-id", id.clone());
    reporter.set_output("skipped", skipped.to_string());
    reporter.add_summary(&summary(
        &image,
        &digest,
        &refs,
        &id,
        skipped,
        size,
        started.elapsed().as_secs_f64(),
        &ctx,
    ));
    Ok(Outcome::Succeeded)
}

#[allow(clippy::too_many_arguments)]
fn summary(
    image: &str,
    digest: &str,
    refs: &[String],
    id: &str,
    skipped: bool,
    size: Option<u64>,
    secs: f64,
    ctx: &BuildContext,
) -> String {
    let mut s = format!(
        "### mlcd build: {}\n\n| | |\n|---|---|\n| image | `{image}` |\n| digest | `{digest}` |\n| build id | `{id}` |\n| skipped | {} |\n| build time | {secs:.1} s |\n| context | {} files, {} KiB |\n",
        if skipped { "unchanged, re-tagged (no rebuild)" } else { "built and pushed" },
        if skipped { "yes: an image for this build id existed" } else { "no" },
        ctx.files,
        ctx.bytes / 1024,
    );
    if let Some(sz) = size {
        s.push_str(&format!("| size | {:.1} MiB |\n", sz as f64 / 1048576.0));
    }
    s.push_str("\n| tags |\n|---|\n");
    for r in refs {
        s.push_str(&format!("| `{r}` |\n"));
    }
    s
}
