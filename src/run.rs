//! One invocation from start to exit code: parse the inputs, mask secrets, read
//! the event, open the check run, load the config, plan, execute or print the
//! plan, and report — every error printed once, with its location and hint.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::{self, Invocation};
use crate::config::values::Mode;
use crate::config::{self, LoadedConfig};
use crate::context::GitHubContext;
use crate::error::{outcome_of, user_error, Outcome, UserError};
use crate::inputs::{self, Command, InputKind, OutputFormat, RawInputs, Request};
use crate::plan::{self, paths::inside_workspace, render, Plan};
use crate::report::commands::{Annotation, Level};
use crate::report::{self, Reporter};
use crate::{modes, secrets};

/// Runs the process's invocation and returns its exit code.
pub async fn main_with(args: Vec<OsString>, env: BTreeMap<String, String>) -> u8 {
    let invocation = match cli::parse(args, &env) {
        Err(clap_err) => {
            let _ = clap_err.print();
            return if clap_err.use_stderr() {
                Outcome::Invalid.exit_code()
            } else {
                0
            };
        }
        Ok(inv) => inv,
    };
    let in_actions = env.get("GITHUB_ACTIONS").map(String::as_str) == Some("true");
    match invocation {
        Ok(Invocation::Schema) => {
            print!("{}", config::schema_json());
            0
        }
        Ok(Invocation::Run(cmd, raw)) => run_command(cmd, raw, &env).await.exit_code(),
        Ok(Invocation::Route { config, listen }) => {
            match crate::serve::router::run(&config, &listen).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e}");
                    if let Some(h) = &e.hint {
                        eprintln!("hint: {h}");
                    }
                    e.kind.exit_code()
                }
            }
        }
        Ok(Invocation::PodStorage(cmd)) => match crate::train::pod_storage::run(cmd, &env).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                if let Some(h) = &e.hint {
                    eprintln!("hint: {h}");
                }
                e.kind.exit_code()
            }
        },
        Err(e) => {
            // Invalid before any input was parsed (no mode): report and stop.
            let mut reporter = Reporter::new(in_actions, OutputFormat::Text, &env);
            report_error(&mut reporter, &anyhow::Error::new(e));
            reporter
                .finish(Outcome::Invalid, "mlcd: invalid input")
                .await;
            Outcome::Invalid.exit_code()
        }
    }
}

fn command_name(cmd: Command) -> String {
    match cmd {
        Command::Run(m) => format!("mlcd {m}"),
        Command::Plan(m) => format!("mlcd plan {m}"),
        Command::Render(m) => format!("mlcd render {m}"),
        Command::RenderRuntime => "mlcd render runtime".into(),
        Command::Validate => "mlcd validate".into(),
    }
}

async fn run_command(cmd: Command, raw: RawInputs, env: &BTreeMap<String, String>) -> Outcome {
    // Secrets first: masked before anything else is printed.
    for (name, given) in raw.iter() {
        if inputs::spec(name).is_some_and(|s| s.kind == InputKind::Secret) {
            secrets::register(&given.value);
        }
    }
    let in_actions = env.get("GITHUB_ACTIONS").map(String::as_str) == Some("true");
    report::mask_secrets(in_actions);
    let format = match raw.get("output").map(|g| g.value.as_str()) {
        Some("json") => OutputFormat::Json,
        _ => OutputFormat::Text,
    };
    let mut reporter = Reporter::new(in_actions, format, env);
    for name in &raw.unknown {
        reporter.warn(format!(
            "unknown input `{name}` is ignored (see action.yml for the inputs mlcd takes)"
        ));
    }
    if let Some(mode) = match cmd {
        Command::Run(m) | Command::Plan(m) | Command::Render(m) => Some(m),
        Command::RenderRuntime => Some(Mode::Train),
        Command::Validate => None,
    } {
        for name in inputs::inapplicable(&raw, mode) {
            reporter.warn(format!("input `{name}` has no effect in mode {mode}"));
        }
    }

    let ctx = match GitHubContext::from_env(env) {
        Ok(c) => c,
        Err(e) => {
            report_error(&mut reporter, &anyhow::Error::new(e));
            reporter
                .finish(Outcome::Invalid, "mlcd: invalid event")
                .await;
            return Outcome::Invalid;
        }
    };

    let checks_on = raw
        .get("checks")
        .is_none_or(|g| config::values::parse_bool(&g.value) != Ok(false));
    if checks_on && in_actions {
        let token = raw
            .get("github-token")
            .map(|g| secrets::Secret::new(g.value.clone()));
        let run_url = ctx.run_url();
        reporter
            .start_check(
                &ctx.api_url,
                token.as_ref(),
                ctx.repository.as_deref(),
                ctx.sha.as_deref(),
                &command_name(cmd),
                run_url.as_deref(),
            )
            .await;
    }

    let (outcome, title) = match execute(cmd, &raw, &ctx, env, &mut reporter).await {
        Ok(done) => done,
        Err(e) => {
            let outcome = outcome_of(&e);
            report_error(&mut reporter, &e);
            let title = match user_error(&e) {
                Some(u) => u.message.clone(),
                None => e.to_string(),
            };
            (outcome, format!("{}: {}", command_name(cmd), title))
        }
    };
    reporter.finish(outcome, &title).await;
    outcome
}

/// Prints an error once: the chain as one message, its location, and its hint.
pub fn report_error(reporter: &mut Reporter, e: &anyhow::Error) {
    let ue = user_error(e);
    let parts: Vec<String> = e
        .chain()
        .map(|c| match c.downcast_ref::<UserError>() {
            Some(u) => u.message.clone(),
            None => c.to_string(),
        })
        .collect();
    let mut message = parts.join(": ");
    if let Some(h) = ue.and_then(|u| u.hint.as_ref()) {
        message.push_str(&format!("\nhint: {h}"));
    }
    let title = match ue.map(|u| u.kind) {
        Some(Outcome::Invalid) => "mlcd: invalid input",
        Some(Outcome::TimedOut) => "mlcd: timed out",
        Some(Outcome::Cancelled) => "mlcd: cancelled",
        _ => "mlcd: failed",
    };
    reporter.annotate(Annotation {
        level: Level::Error,
        title: title.into(),
        message,
        location: ue.and_then(|u| u.location.clone()),
    });
}

/// Finds the config file: the `config`/`from-file` input (or `from-file` in
/// `param-list`), else `mlcd.yml`/`mlcd.yaml` in the workspace if present.
fn load_config(
    request: &mut Request,
    ctx: &GitHubContext,
) -> Result<Option<LoadedConfig>, UserError> {
    let from_params = request
        .params
        .iter()
        .position(|(k, _)| k == "from-file")
        .map(|i| request.params.remove(i).1);
    let given: Option<(PathBuf, &str)> = match (&request.config, from_params) {
        (Some(c), Some(p)) if Path::new(&p) != c => {
            return Err(UserError::invalid(format!(
            "the config file is given twice: `config` is `{}` but param-list `from-file` is `{p}`",
            c.display()
        )))
        }
        (Some(c), _) => Some((c.clone(), "input `config`")),
        (None, Some(p)) => Some((PathBuf::from(p), "param-list `from-file`")),
        (None, None) => None,
    };
    let ws = &ctx.workspace;
    let (path, what) = match given {
        Some(g) => g,
        None => match ["mlcd.yml", "mlcd.yaml"]
            .iter()
            .map(|n| ws.join(n))
            .find(|p| p.is_file())
        {
            Some(p) => (p, "the default config"),
            None => return Ok(None),
        },
    };
    let resolved = inside_workspace(ws, ws, &path, what).map_err(|e| {
        UserError::invalid(e).hint("give the config file as a path inside the repository, like `mlcd.yml` or `models/churn/mlcd.yml`")
    })?;
    if !resolved.abs.is_file() {
        return Err(UserError::invalid(format!(
            "{what}: the config file `{}` does not exist in the workspace {}",
            path.display(),
            ws.display()
        ))
        .hint("paths are relative to the workspace (the repository root in Actions)"));
    }
    request.config = Some(PathBuf::from(&resolved.display));
    config::load(&resolved.abs, Path::new(&resolved.display)).map(Some)
}

async fn execute(
    cmd: Command,
    raw: &RawInputs,
    ctx: &GitHubContext,
    env: &BTreeMap<String, String>,
    reporter: &mut Reporter,
) -> anyhow::Result<(Outcome, String)> {
    let mut request = Request::from_raw(cmd, raw)?;
    reporter.set_format(request.output);
    let loaded = load_config(&mut request, ctx)?;

    let mode = match cmd {
        Command::Validate => return validate(&request, loaded.as_ref(), ctx, env, reporter),
        Command::Run(m) | Command::Plan(m) | Command::Render(m) => m,
        Command::RenderRuntime => Mode::Train,
    };

    if matches!(mode, Mode::Train | Mode::Deploy) {
        if let Some(why) = ctx.upstream_failure() {
            if !request.allow_failed_upstream {
                let msg = format!("refusing to {mode}: {why}");
                if request.dry_run {
                    reporter.warn(format!("{msg}; a real run would stop here"));
                } else {
                    return Err(UserError::failed(msg)
                        .hint("fix the upstream run first; to act anyway set `allow-failed-upstream: true`, or guard the job with `if: github.event.workflow_run.conclusion == 'success'`")
                        .into());
                }
            }
        }
    }

    let inputs = plan::Inputs {
        request: &request,
        config: loaded.as_ref(),
        context: ctx,
        env,
    };
    let mut plan = plan::make(mode, &inputs).with_context(|| format!("planning {mode}"))?;
    let gitops = loaded
        .as_ref()
        .and_then(|l| l.config.deploy.gitops.as_ref());
    if let (true, Some(g)) = (plan.deploy.is_some(), gitops) {
        // The commits a GitOps deploy makes are part of its plan (no network).
        let mode_env = modes::ModeEnv {
            workspace: &ctx.workspace,
            request: &request,
            env,
            config: loaded.as_ref(),
        };
        let gitops = crate::gitops::plan::describe(&plan, g, &mode_env)
            .with_context(|| format!("planning {mode}"))?;
        plan.deploy.as_mut().expect("checked above").gitops = Some(gitops);
    }
    set_plan_outputs(reporter, &plan);

    if cmd == Command::RenderRuntime {
        let yaml = modes::train::render_runtime(&plan)?;
        print!("{yaml}");
        return Ok((
            Outcome::Planned,
            format!("Rendered: {}", render::headline(&plan)),
        ));
    }
    if let Command::Render(mode) = cmd {
        let mode_env = modes::ModeEnv {
            workspace: &ctx.workspace,
            request: &request,
            env,
            config: loaded.as_ref(),
        };
        let yaml = match mode {
            Mode::Train => modes::train::render(&plan, &mode_env)?,
            Mode::Deploy => modes::deploy::render(&plan)?,
            other => {
                return Err(UserError::invalid(format!(
                    "`mlcd render {other}` is not available: render prints the Kubernetes objects of `train` and `deploy`"
                ))
                .into())
            }
        };
        print!("{yaml}");
        return Ok((
            Outcome::Planned,
            format!("Rendered: {}", render::headline(&plan)),
        ));
    }

    if request.dry_run {
        let text = render::text(&plan);
        if request.output == OutputFormat::Text || reporter_in_actions(env) {
            reporter.info(text.trim_end());
        }
        reporter.add_summary(&render::markdown(&plan));
        return Ok((
            Outcome::Planned,
            format!("Plan: {}", render::headline(&plan)),
        ));
    }
    if let Some(target) = comment_target(&request, loaded.as_ref(), ctx, &plan) {
        reporter.comment_on(target, mode.as_str());
    }
    let mode_env = modes::ModeEnv {
        workspace: &ctx.workspace,
        request: &request,
        env,
        config: loaded.as_ref(),
    };
    let outcome = modes::run(&plan, &mode_env, reporter).await?;
    Ok((outcome, render::headline(&plan)))
}

/// Where this run's report comment goes: in Actions, with a token, a repository
/// and a commit, unless `comment: false` (input, else config file).
fn comment_target(
    request: &Request,
    loaded: Option<&LoadedConfig>,
    ctx: &GitHubContext,
    plan: &Plan,
) -> Option<report::comment::post::Target> {
    use crate::context::Trigger;
    use report::comment::post::{Place, Target};
    let on = request
        .comment
        .or_else(|| loaded.and_then(|l| l.config.comment))
        .unwrap_or(true);
    if !on || !ctx.in_actions {
        return None;
    }
    let place = match &ctx.trigger {
        Trigger::Local => return None,
        Trigger::PullRequest { .. } => Place::Pulls(ctx.pull_requests.clone()),
        Trigger::WorkflowRun { .. } if !ctx.pull_requests.is_empty() => {
            Place::Pulls(ctx.pull_requests.clone())
        }
        Trigger::WorkflowRun { .. } | Trigger::Push => Place::LookUp,
        _ => Place::Commit,
    };
    Some(Target {
        api_url: ctx.api_url.clone(),
        server_url: ctx.server_url.clone(),
        token: request.github_token.clone()?,
        repository: ctx.repository.clone()?,
        sha: ctx.sha.clone()?,
        place,
        model: plan.model_id.to_string(),
        run_url: ctx.run_url(),
    })
}

fn reporter_in_actions(env: &BTreeMap<String, String>) -> bool {
    env.get("GITHUB_ACTIONS").map(String::as_str) == Some("true")
}

/// Sets `plan` and the outputs already known from it.
fn set_plan_outputs(reporter: &mut Reporter, plan: &Plan) {
    reporter.set_output("plan", serde_json::to_value(plan).unwrap_or_default());
    if let Some(b) = &plan.build {
        let refs: Vec<String> = b
            .repositories
            .iter()
            .flat_map(|r| b.tags.iter().map(move |t| format!("{r}:{t}")))
            .collect();
        reporter.set_output("tags", refs.join("\n"));
    }
    if let Some(t) = &plan.train {
        reporter.set_output(
            "job-id",
            t.attach.clone().unwrap_or_else(|| t.job_name.clone()),
        );
    }
    if let Some(d) = &plan.deploy {
        reporter.set_output("endpoint", d.endpoint.clone());
        reporter.set_output(
            "traffic",
            d.steps.first().copied().unwrap_or(100).to_string(),
        );
    }
}

fn validate(
    request: &Request,
    loaded: Option<&LoadedConfig>,
    ctx: &GitHubContext,
    env: &BTreeMap<String, String>,
    reporter: &mut Reporter,
) -> anyhow::Result<(Outcome, String)> {
    let Some(loaded) = loaded else {
        return Err(UserError::invalid(
            "no config file to validate: no `config` input and no mlcd.yml in the workspace",
        )
        .hint("give the file: mlcd validate --config path/to/mlcd.yml")
        .into());
    };
    // Check what each configured section refers to (files, instance types, steps),
    // as planning would; a placeholder commit stands in outside a git checkout.
    let mut ctx = ctx.clone();
    if ctx.sha.is_none() {
        ctx.sha = Some("0".repeat(40));
    }
    let mut errors = 0;
    if request.model_id.is_some() || loaded.config.model.is_some() {
        for (mode, key) in [
            (Mode::Build, "build"),
            (Mode::Train, "train"),
            (Mode::Deploy, "deploy"),
            (Mode::Monitor, "monitor"),
        ] {
            if loaded.locate(&[key]).is_none() {
                continue;
            }
            let mut req = request.clone();
            req.command = Command::Plan(mode);
            req.dry_run = true;
            let inputs = plan::Inputs {
                request: &req,
                config: Some(loaded),
                context: &ctx,
                env,
            };
            if let Err(e) = plan::make(mode, &inputs) {
                errors += 1;
                report_error(reporter, &anyhow::Error::new(e));
            }
        }
    }
    if errors > 0 {
        return Err(UserError::invalid(format!(
            "{} has {errors} error{}",
            loaded.path.display(),
            if errors == 1 { "" } else { "s" }
        ))
        .into());
    }
    let msg = format!("{} is valid", loaded.path.display());
    reporter.info(&msg);
    reporter.add_summary(&format!(
        "### mlcd validate\n\n`{}` is valid ({}).\n",
        loaded.path.display(),
        loaded.digest
    ));
    Ok((Outcome::Succeeded, msg))
}
