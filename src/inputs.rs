//! The inputs: one table of every input (the single source for the CLI flags,
//! the `INPUT_*` variables and action.yml), and the typed [`Request`] both
//! sources are parsed into.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::config::suggest;
use crate::config::values::{
    parse_bool, Backend, DeployType, DurationSpec, ImageRef, InstanceType, Mode, ModelId, Percent,
    Strategy, Tag,
};
use crate::error::UserError;
use crate::secrets::Secret;

/// What kind of value an input takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Free text, parsed by the request.
    Text,
    /// `true|True|TRUE|false|False|FALSE`.
    Bool,
    /// A credential: masked at once, never printed.
    Secret,
}

/// One input, as action.yml declares it and the CLI takes it (`--name`).
#[derive(Debug, Clone, Copy)]
pub struct InputSpec {
    /// The kebab-case name.
    pub name: &'static str,
    /// Other names accepted for it (Qwak's actions' names).
    pub aliases: &'static [&'static str],
    /// One line for action.yml and `--help`.
    pub description: &'static str,
    /// The kind of value.
    pub kind: InputKind,
    /// The modes it applies to; empty means all.
    pub modes: &'static [Mode],
    /// Declared in action.yml (false: CLI only).
    pub action: bool,
    /// Taken as a CLI flag (false: action only).
    pub cli: bool,
    /// action.yml's `default:` (only where the runner must fill it in).
    pub action_default: Option<&'static str>,
    /// For the CLI: an environment variable read when the flag is absent.
    pub cli_env: Option<&'static str>,
}

const ALL: &[Mode] = &[];
const TRAIN: &[Mode] = &[Mode::Train];
const DEPLOY: &[Mode] = &[Mode::Deploy];
const BUILD: &[Mode] = &[Mode::Build];
const TRAIN_DEPLOY: &[Mode] = &[Mode::Train, Mode::Deploy];

const fn input(name: &'static str, description: &'static str) -> InputSpec {
    InputSpec {
        name,
        aliases: &[],
        description,
        kind: InputKind::Text,
        modes: ALL,
        action: true,
        cli: true,
        action_default: None,
        cli_env: None,
    }
}

const fn modes(mut s: InputSpec, m: &'static [Mode]) -> InputSpec {
    s.modes = m;
    s
}

const fn boolean(mut s: InputSpec) -> InputSpec {
    s.kind = InputKind::Bool;
    s
}

/// Every input. action.yml, the CLI and the README reference are checked against it.
pub const INPUTS: &[InputSpec] = &[
    InputSpec {
        cli: false,
        ..input("mode", "What to do: `build`, `train`, `deploy` or `monitor` (required).")
    },
    input("model-id", "The model's slug; names images, jobs, endpoints and registry entries. Default: `model` in the config file."),
    InputSpec {
        aliases: &["from-file"],
        ..input("config", "The YAML config file, relative to the workspace (alias `from-file`). Default: `mlcd.yml` when it exists. Inputs override it.")
    },
    input("backend", "Where jobs and endpoints run: `local` (default), `sagemaker`, `vertex`, `kubernetes`."),
    input("instance", "Instance type: a portable name (`cpu.small`, `gpu.t4.xl`, …) or a native type."),
    input("tags", "Extra image tags (build) or labels, separated by commas or newlines."),
    input("param-list", "`k=v,k=v` overrides: build arguments in build, hyperparameters in train, deploy settings in deploy (`variation-name=shadow,from-file=…`)."),
    modes(input("build-id", "What to train or deploy: a build id (image digest or tag) from a build step. Default: the image built for this commit."), TRAIN_DEPLOY),
    modes(input("image", "What to train or deploy: a full image reference. Default: the image built for this commit."), TRAIN_DEPLOY),
    modes(boolean(input("wait", "Wait for the job or rollout to finish (`true`/`false`). Default: true.")), TRAIN_DEPLOY),
    InputSpec {
        aliases: &["timeout-after"],
        ..input("timeout", "Upper bound on every wait, like `90m` or `2h`: the build and its pushes (default 1h), the training job, the rollout (`timeout-after`: minutes, as Qwak took it).")
    },
    modes(input("strategy", "Deploy strategy: `all-at-once`, `canary`, `linear`, `blue-green`, `shadow`."), DEPLOY),
    modes(input("traffic", "Deploy: the first step's traffic percentage, 0 to 100."), DEPLOY),
    boolean(input("dry-run", "Plan only: print the plan, set the `plan` output, touch nothing.")),
    InputSpec {
        kind: InputKind::Secret,
        action_default: Some("${{ github.token }}"),
        cli_env: Some("GITHUB_TOKEN"),
        ..input("github-token", "Token for check runs, deployments, comments and monitor's `repository_dispatch` (that needs `contents: write`). Default: the workflow token (`github.token`).")
    },
    input("registry-username", "Container registry user name."),
    InputSpec {
        kind: InputKind::Secret,
        cli_env: Some("MLCD_REGISTRY_PASSWORD"),
        ..input("registry-password", "Container registry password or token (CLI: prefer the MLCD_REGISTRY_PASSWORD variable).")
    },
    modes(input("attach", "Train: a job id to wait for and collect instead of submitting a new job."), TRAIN),
    modes(boolean(input("rollback", "Deploy: put the endpoint's previous version back with all the traffic (needs only the endpoint name).")), DEPLOY),
    InputSpec {
        action: false,
        ..input("output", "CLI only: `text` (default) or `json` on stdout.")
    },
    modes(boolean(input("allow-failed-upstream", "Train/deploy on a `workflow_run` whose upstream run did not succeed (refused by default).")), TRAIN_DEPLOY),
    boolean(input("checks", "Report a check run with annotations (`true`/`false`). Default: true.")),
    boolean(input("comment", "Write the report comment (`true`/`false`): one per model on the pull request, edited in place by later runs; a commit comment when the run has no pull request. Default: `comment` in the config file, else true.")),
    modes(input("model-path", "Build: the build context directory (Qwak's name). Default: `build.context` or the config file's directory."), BUILD),
    input("env-vars", "`NAME=VALUE,…` environment variables for the training or serving container (Qwak's name)."),
    modes(input("replicas", "Deploy: number of serving replicas."), DEPLOY),
    modes(input("environment", "Deploy: the GitHub environment the deployment is reported to."), DEPLOY),
    modes(input("deploy-type", "Deploy: `realtime` (Qwak's name; `batch` and `stream` are not supported)."), DEPLOY),
    input("iam-role-arn", "SageMaker: the execution role ARN (overrides `sagemaker.role-arn`)."),
    modes(input("base-image", "Build: passed as the `BASE_IMAGE` build argument."), BUILD),
    InputSpec {
        kind: InputKind::Secret,
        modes: DEPLOY,
        cli_env: Some("MLCD_GITOPS_TOKEN"),
        ..input("gitops-token", "Deploy with `deploy.gitops`: a token that may push to the manifests repository when it is not this one (`contents: write`, and `pull-requests: write` for pull-request mode). Default: `github-token`.")
    },
];

/// Looks an input up by its name or an alias.
pub fn spec(name: &str) -> Option<&'static InputSpec> {
    INPUTS
        .iter()
        .find(|s| s.name == name || s.aliases.contains(&name))
}

/// Where a raw value came from, so errors can name it as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A CLI flag (`--traffic`).
    Flag(String),
    /// A CLI flag's environment fallback.
    CliEnv(String),
    /// An `INPUT_*` variable set by the runner.
    Env(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(n) => write!(f, "--{n}"),
            Source::CliEnv(v) => write!(f, "${v}"),
            Source::Env(n) => {
                let var = format!("INPUT_{}", n.to_uppercase());
                write!(f, "input `{n}` ({var})")
            }
        }
    }
}

/// A value as given: trimmed, non-empty, with its source.
#[derive(Debug, Clone)]
pub struct Given {
    /// The trimmed value.
    pub value: String,
    /// The name it was given under (the input name or an alias).
    pub name: &'static str,
    /// Where it came from.
    pub source: Source,
}

/// The command a run performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Run a mode (or plan it when `dry-run`).
    Run(Mode),
    /// Print a mode's plan (`mlcd plan MODE`), touching nothing.
    Plan(Mode),
    /// Check the config file.
    Validate,
    /// Print the Kubernetes objects a mode would apply (`mlcd render MODE`),
    /// touching nothing.
    Render(Mode),
    /// Print the ClusterTrainingRuntime with mlcd's storage containers that
    /// TrainJobs with `s3://` storage need (`mlcd render runtime`).
    RenderRuntime,
}

/// Raw values keyed by canonical input name.
#[derive(Debug, Clone, Default)]
pub struct RawInputs {
    values: BTreeMap<&'static str, Given>,
    /// Inputs that were given but do not exist (action mode), for a warning.
    pub unknown: Vec<String>,
}

impl RawInputs {
    /// Records a value (trimmed; empty means unset). Two names of the same input with
    /// different values are an error.
    pub fn set(&mut self, name: &str, value: &str, source: Source) -> Result<(), UserError> {
        let Some(spec) = spec(name) else {
            self.unknown.push(name.to_string());
            return Ok(());
        };
        let value = value.trim();
        if value.is_empty() {
            return Ok(());
        }
        let used = std::iter::once(spec.name)
            .chain(spec.aliases.iter().copied())
            .find(|n| *n == name)
            .unwrap_or(spec.name);
        if let Some(prev) = self.values.get(spec.name) {
            if prev.value != value {
                return Err(UserError::invalid(format!(
                    "{} and {} are the same input but were given different values",
                    prev.source, source
                ))
                .hint(format!("give only one of `{}` and its alias", spec.name)));
            }
        }
        self.values.insert(
            spec.name,
            Given {
                value: value.to_string(),
                name: used,
                source,
            },
        );
        Ok(())
    }

    /// The value given for an input, if any.
    pub fn get(&self, name: &str) -> Option<&Given> {
        self.values.get(name)
    }

    /// Every value given, by canonical name.
    pub fn iter(&self) -> impl Iterator<Item = (&&'static str, &Given)> {
        self.values.iter()
    }

    /// Reads the `INPUT_*` variables GitHub's runner sets for a container action:
    /// the input name upper-cased with hyphens kept (`INPUT_MODEL-ID`). The
    /// underscore form (`INPUT_MODEL_ID`) is accepted too, for wrappers that set it.
    pub fn from_action_env(env: &BTreeMap<String, String>) -> Result<Self, UserError> {
        let mut raw = RawInputs::default();
        let mut known_vars = Vec::new();
        for spec in INPUTS.iter().filter(|s| s.action) {
            for name in std::iter::once(spec.name).chain(spec.aliases.iter().copied()) {
                let upper = name.to_uppercase();
                for var in [
                    format!("INPUT_{upper}"),
                    format!("INPUT_{}", upper.replace('-', "_")),
                ] {
                    if let Some(v) = env.get(&var) {
                        raw.set(name, v, Source::Env(name.to_string()))?;
                    }
                    known_vars.push(var);
                }
            }
        }
        for (k, v) in env {
            if let Some(name) = k.strip_prefix("INPUT_") {
                if !v.trim().is_empty() && !known_vars.contains(k) {
                    raw.unknown.push(name.to_lowercase());
                }
            }
        }
        Ok(raw)
    }
}

/// How results are printed on stdout by the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Human text on stderr; nothing on stdout but workflow commands in GitHub.
    #[default]
    Text,
    /// One JSON object of the outputs on stdout.
    Json,
}

/// A typed request: everything the inputs said, parsed and checked.
#[derive(Debug, Clone)]
pub struct Request {
    /// What to do.
    pub command: Command,
    /// The model id input.
    pub model_id: Option<ModelId>,
    /// The config file path as given (relative to the workspace).
    pub config: Option<PathBuf>,
    /// Backend override.
    pub backend: Option<Backend>,
    /// Instance override.
    pub instance: Option<InstanceType>,
    /// Extra tags.
    pub tags: Vec<Tag>,
    /// `param-list` pairs, in order.
    pub params: Vec<(String, String)>,
    /// Build id to train or deploy.
    pub build_id: Option<String>,
    /// Image to train or deploy.
    pub image: Option<ImageRef>,
    /// Wait override.
    pub wait: Option<bool>,
    /// Timeout override.
    pub timeout: Option<DurationSpec>,
    /// Strategy override.
    pub strategy: Option<Strategy>,
    /// First traffic step override.
    pub traffic: Option<Percent>,
    /// Plan only.
    pub dry_run: bool,
    /// Token for GitHub's API.
    pub github_token: Option<Secret>,
    /// Registry user.
    pub registry_username: Option<String>,
    /// Registry password.
    pub registry_password: Option<Secret>,
    /// Job to attach to.
    pub attach: Option<String>,
    /// Stdout format.
    pub output: OutputFormat,
    /// Act on a failed upstream `workflow_run`.
    pub allow_failed_upstream: bool,
    /// Deploy: roll the endpoint back to its previous version.
    pub rollback: bool,
    /// Report a check run.
    pub checks: bool,
    /// Write the report comment (unset: the config file decides).
    pub comment: Option<bool>,
    /// Build context override (`model-path`).
    pub model_path: Option<PathBuf>,
    /// Container environment (`env-vars`).
    pub env_vars: Vec<(String, String)>,
    /// Replicas override.
    pub replicas: Option<u32>,
    /// GitHub environment override.
    pub environment: Option<String>,
    /// SageMaker role override.
    pub iam_role_arn: Option<String>,
    /// `BASE_IMAGE` build argument.
    pub base_image: Option<String>,
    /// Token for a GitOps manifests repository other than this one.
    pub gitops_token: Option<Secret>,
}

fn invalid_input(given: &Given, expected: impl fmt::Display) -> UserError {
    UserError::invalid(format!("{}: {expected}", given.source))
}

fn parsed<T: std::str::FromStr<Err = String>>(g: Option<&Given>) -> Result<Option<T>, UserError> {
    g.map(|g| g.value.parse::<T>().map_err(|e| invalid_input(g, e)))
        .transpose()
}

/// Splits `k=v,k=v` (commas or newlines) into pairs; an item without `=` is an error.
pub fn parse_pairs(given: &Given) -> Result<Vec<(String, String)>, UserError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in given.value.split([',', '\n']) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            return Err(invalid_input(
                given,
                format!("`{item}` has no `=`: expected NAME=VALUE pairs separated by commas, like `epochs=5,lr=0.01`"),
            ));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(invalid_input(
                given,
                format!("`{item}` has an empty name before `=`"),
            ));
        }
        if out.iter().any(|(prev, _)| prev == k) {
            return Err(invalid_input(given, format!("`{k}` is given twice")));
        }
        out.push((k.to_string(), v.trim().to_string()));
    }
    Ok(out)
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split([',', '\n'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

impl Request {
    /// Parses raw inputs into a request for `command`. Errors name the input as given.
    pub fn from_raw(command: Command, raw: &RawInputs) -> Result<Request, UserError> {
        let get = |n: &str| raw.get(n);
        let bool_of = |n: &str| -> Result<Option<bool>, UserError> {
            get(n)
                .map(|g| parse_bool(&g.value).map_err(|e| invalid_input(g, e)))
                .transpose()
        };

        let timeout = match get("timeout") {
            Some(g) if g.name == "timeout-after" && g.value.bytes().all(|b| b.is_ascii_digit()) => {
                let minutes: u64 = g.value.parse().map_err(|_| {
                    invalid_input(
                        g,
                        format!("expected a number of minutes, found `{}`", g.value),
                    )
                })?;
                if minutes == 0 {
                    return Err(invalid_input(g, "expected a number of minutes above zero"));
                }
                Some(DurationSpec(std::time::Duration::from_secs(minutes * 60)))
            }
            g => parsed::<DurationSpec>(g)?,
        };

        let tags = match get("tags") {
            Some(g) => split_list(&g.value)
                .map(|t| t.parse::<Tag>().map_err(|e| invalid_input(g, e)))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };

        let output = match get("output") {
            None => OutputFormat::Text,
            Some(g) => match g.value.as_str() {
                "text" => OutputFormat::Text,
                "json" => OutputFormat::Json,
                other => {
                    return Err(invalid_input(
                        g,
                        suggest::unknown_word("output format", other, &["text", "json"]),
                    ))
                }
            },
        };

        if let Some(g) = get("deploy-type") {
            let t: DeployType = g.value.parse().map_err(|e| invalid_input(g, e))?;
            if t != DeployType::Realtime {
                return Err(invalid_input(
                    g,
                    format!("`{t}` deployments are not supported: mlcd deploys realtime endpoints"),
                )
                .hint("remove `deploy-type` or set it to `realtime`"));
            }
        }

        let replicas =
            match get("replicas") {
                Some(g) => Some(g.value.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(
                    || {
                        invalid_input(
                            g,
                            format!(
                                "expected a whole number of replicas, at least 1, found `{}`",
                                g.value
                            ),
                        )
                    },
                )?),
                None => None,
            };

        let params = get("param-list")
            .map(parse_pairs)
            .transpose()?
            .unwrap_or_default();
        let env_vars = get("env-vars")
            .map(parse_pairs)
            .transpose()?
            .unwrap_or_default();

        Ok(Request {
            command,
            model_id: parsed(get("model-id"))?,
            config: get("config").map(|g| PathBuf::from(&g.value)),
            backend: parsed(get("backend"))?,
            instance: parsed(get("instance"))?,
            tags,
            params,
            build_id: get("build-id").map(|g| g.value.clone()),
            image: parsed(get("image"))?,
            wait: bool_of("wait")?,
            timeout,
            strategy: parsed(get("strategy"))?,
            traffic: parsed(get("traffic"))?,
            dry_run: bool_of("dry-run")?.unwrap_or(false)
                || matches!(
                    command,
                    Command::Plan(_) | Command::Render(_) | Command::RenderRuntime
                ),
            github_token: get("github-token").map(|g| Secret::new(g.value.clone())),
            registry_username: get("registry-username").map(|g| g.value.clone()),
            registry_password: get("registry-password").map(|g| Secret::new(g.value.clone())),
            attach: get("attach").map(|g| g.value.clone()),
            output,
            allow_failed_upstream: bool_of("allow-failed-upstream")?.unwrap_or(false),
            rollback: bool_of("rollback")?.unwrap_or(false),
            checks: bool_of("checks")?.unwrap_or(true),
            comment: bool_of("comment")?,
            model_path: get("model-path").map(|g| PathBuf::from(&g.value)),
            env_vars,
            replicas,
            environment: get("environment").map(|g| g.value.clone()),
            iam_role_arn: get("iam-role-arn").map(|g| g.value.clone()),
            base_image: get("base-image").map(|g| g.value.clone()),
            gitops_token: get("gitops-token").map(|g| Secret::new(g.value.clone())),
        })
    }

    /// The mode this request acts in, if any.
    pub fn mode(&self) -> Option<Mode> {
        match self.command {
            Command::Run(m) | Command::Plan(m) | Command::Render(m) => Some(m),
            Command::RenderRuntime => Some(Mode::Train),
            Command::Validate => None,
        }
    }
}

/// Inputs that were given but have no effect in `mode`, for a warning.
pub fn inapplicable(raw: &RawInputs, mode: Mode) -> Vec<&'static str> {
    raw.iter()
        .filter_map(|(name, _)| spec(name))
        .filter(|s| !s.modes.is_empty() && !s.modes.contains(&mode))
        .map(|s| s.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn hyphenated_inputs_are_read_as_the_runner_sets_them() {
        let raw = RawInputs::from_action_env(&env(&[
            ("INPUT_MODE", " train "),
            ("INPUT_MODEL-ID", "churn"),
            ("INPUT_PARAM-LIST", "epochs=5, lr=0.01"),
            ("INPUT_WAIT", ""),
        ]))
        .unwrap();
        assert_eq!(raw.get("mode").unwrap().value, "train");
        let r = Request::from_raw(Command::Run(Mode::Train), &raw).unwrap();
        assert_eq!(r.model_id.unwrap().as_str(), "churn");
        assert_eq!(
            r.params,
            vec![("epochs".into(), "5".into()), ("lr".into(), "0.01".into())]
        );
        assert_eq!(r.wait, None, "an empty input means unset");
    }

    #[test]
    fn a_bad_boolean_names_the_variable() {
        let raw = RawInputs::from_action_env(&env(&[("INPUT_DRY-RUN", "yes")])).unwrap();
        let e = Request::from_raw(Command::Run(Mode::Build), &raw).unwrap_err();
        assert!(e.message.contains("INPUT_DRY-RUN"), "{}", e.message);
        assert!(e.message.contains("`yes`"), "{}", e.message);
    }

    #[test]
    fn param_list_items_need_an_equals_sign() {
        let raw = RawInputs::from_action_env(&env(&[("INPUT_PARAM-LIST", "epochs=5,lr")])).unwrap();
        let e = Request::from_raw(Command::Run(Mode::Train), &raw).unwrap_err();
        assert!(e.message.contains("`lr` has no `=`"), "{}", e.message);
    }

    #[test]
    fn qwak_names_are_accepted() {
        let raw = RawInputs::from_action_env(&env(&[
            ("INPUT_FROM-FILE", "mlcd.yml"),
            ("INPUT_TIMEOUT-AFTER", "30"),
            ("INPUT_DEPLOY-TYPE", "realtime"),
        ]))
        .unwrap();
        let r = Request::from_raw(Command::Run(Mode::Deploy), &raw).unwrap();
        assert_eq!(r.config.unwrap(), PathBuf::from("mlcd.yml"));
        assert_eq!(r.timeout.unwrap().0.as_secs(), 1800);
    }

    #[test]
    fn batch_deploy_type_is_refused_clearly() {
        let raw = RawInputs::from_action_env(&env(&[("INPUT_DEPLOY-TYPE", "batch")])).unwrap();
        let e = Request::from_raw(Command::Run(Mode::Deploy), &raw).unwrap_err();
        assert!(e.message.contains("not supported"), "{}", e.message);
    }

    #[test]
    fn an_alias_conflicting_with_its_input_is_an_error() {
        let e = RawInputs::from_action_env(&env(&[
            ("INPUT_CONFIG", "a.yml"),
            ("INPUT_FROM-FILE", "b.yml"),
        ]))
        .unwrap_err();
        assert!(e.message.contains("different values"), "{}", e.message);
    }

    #[test]
    fn traffic_out_of_range_is_refused() {
        for bad in ["-1", "101"] {
            let raw = RawInputs::from_action_env(&env(&[("INPUT_TRAFFIC", bad)])).unwrap();
            let e = Request::from_raw(Command::Run(Mode::Deploy), &raw).unwrap_err();
            assert!(e.message.contains("INPUT_TRAFFIC"), "{}", e.message);
        }
    }

    #[test]
    fn every_input_name_is_unique() {
        let mut names: Vec<&str> = INPUTS
            .iter()
            .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()))
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(n, names.len());
    }
}
