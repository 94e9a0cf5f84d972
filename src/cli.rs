//! The command line (`mlcd build|train|deploy|plan|validate`), built from the
//! same input table as action.yml, and the action entry point: inside GitHub
//! Actions with no arguments, inputs come from `INPUT_*` variables.

use std::collections::BTreeMap;
use std::ffi::OsString;

use clap::{Arg, ArgAction, ArgMatches, Command as Clap};

use crate::config::suggest;
use crate::config::values::Mode;
use crate::error::UserError;
use crate::inputs::{Command, InputKind, RawInputs, Source, INPUTS};
use crate::train::pod_storage;

/// What the process was asked to do.
#[derive(Debug)]
pub enum Invocation {
    /// Run a command with these inputs.
    Run(Command, RawInputs),
    /// Print the config JSON schema.
    Schema,
    /// Run the local endpoint's traffic router (hidden; started by the local
    /// serving backend inside the endpoint's container).
    Route {
        /// The route config file (JSON).
        config: std::path::PathBuf,
        /// The address to listen on.
        listen: String,
    },
    /// Fetch a channel or keep the model inside a Kubernetes training pod
    /// (hidden; run from the mlcd image by the pods `mlcd render train` shows).
    PodStorage(crate::train::pod_storage::PodStorage),
}

const ABOUT: &str =
    "Continuous delivery for machine-learning models: build model images, train on an \
instance type, deploy as shadow, canary or blue-green with verification and rollback.";

const AFTER: &str = "Inside GitHub Actions with no arguments, mlcd reads its inputs from INPUT_* variables \
(the container action). Exit codes: 0 success or plan, 1 failed, 2 invalid input, 3 timed out, 4 cancelled.";

fn input_args(mode: Option<Mode>, only: Option<&[&str]>) -> Vec<Arg> {
    INPUTS
        .iter()
        .filter(|s| s.cli)
        .filter(|s| match mode {
            Some(m) => s.modes.is_empty() || s.modes.contains(&m),
            None => true,
        })
        .filter(|s| only.is_none_or(|o| o.contains(&s.name)))
        .map(|s| {
            let mut a = Arg::new(s.name)
                .long(s.name)
                .help(s.description)
                .action(ArgAction::Set);
            for alias in s.aliases {
                a = a.alias(*alias);
            }
            match s.kind {
                InputKind::Bool => {
                    a = a
                        .num_args(0..=1)
                        .require_equals(true)
                        .default_missing_value("true")
                        .value_name("BOOL");
                }
                InputKind::Secret => {
                    a = a.value_name("SECRET").hide_env_values(true);
                }
                InputKind::Text => {
                    a = a.value_name("VALUE");
                }
            }
            if let Some(env) = s.cli_env {
                a = a.env(env);
            }
            a
        })
        .collect()
}

/// The clap command tree.
pub fn command() -> Clap {
    let mode_cmd = |m: Mode, about: &'static str| {
        Clap::new(m.as_str())
            .about(about)
            .args(input_args(Some(m), None))
    };
    Clap::new("mlcd")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .after_help(AFTER)
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(mode_cmd(
            Mode::Build,
            "Build the model image and push it to registries",
        ))
        .subcommand(mode_cmd(Mode::Train, "Train the model on an instance type"))
        .subcommand(mode_cmd(
            Mode::Deploy,
            "Deploy the model behind an endpoint",
        ))
        .subcommand(mode_cmd(
            Mode::Monitor,
            "Check recent data for drift and the model's quality; retrain on drift",
        ))
        .subcommand(
            Clap::new("plan")
                .about("Print a mode's plan and touch nothing (the same as --dry-run)")
                .arg(
                    Arg::new("MODE")
                        .required(true)
                        .help("build, train, deploy or monitor")
                        .value_parser(Mode::NAMES.to_vec()),
                )
                .args(
                    input_args(None, None)
                        .into_iter()
                        .filter(|a| a.get_id() != "dry-run"),
                ),
        )
        .subcommand(
            Clap::new("render")
                .about("Print the Kubernetes objects a mode would apply (YAML) and touch nothing")
                .arg(
                    Arg::new("MODE")
                        .required(true)
                        .help("train (a TrainJob or PyTorchJob), deploy (a KServe InferenceService), or runtime (the ClusterTrainingRuntime with mlcd's storage containers, for TrainJobs with s3:// storage)")
                        .value_parser(["train", "deploy", "runtime"]),
                )
                .args(
                    input_args(None, None)
                        .into_iter()
                        .filter(|a| a.get_id() != "dry-run"),
                ),
        )
        .subcommand(
            Clap::new("validate")
                .about("Check the config file; exit non-zero on any error")
                .args(input_args(
                    None,
                    Some(&["config", "model-id", "output", "checks", "github-token"]),
                )),
        )
        .subcommand(
            Clap::new("schema")
                .about("Print the JSON schema of mlcd.yml")
                .hide(true),
        )
        .subcommand(
            Clap::new("pod-storage")
                .about("Inside a Kubernetes training pod: fetch an s3:// channel, or upload /opt/ml/model at the pod's end")
                .hide(true)
                .subcommand_required(true)
                .subcommand(
                    Clap::new("fetch")
                        .about("Copy an s3:// prefix into a directory; without --from/--to, every channel of MLCD_FETCH into /opt/ml/input/data/<channel>")
                        .arg(Arg::new("from").long("from").requires("to").value_name("S3_URI"))
                        .arg(Arg::new("to").long("to").requires("from").value_name("DIR")),
                )
                .subcommand(
                    Clap::new("keep-model")
                        .about("Wait for SIGTERM, then upload the model directory as model.tar.gz to --to (default: MLCD_MODEL_URI)")
                        .arg(
                            Arg::new("from")
                                .long("from")
                                .value_name("DIR")
                                .default_value(pod_storage::MODEL_DIR),
                        )
                        .arg(Arg::new("to").long("to").value_name("S3_URI"))
                        .arg(
                            Arg::new("failure")
                                .long("failure")
                                .value_name("FILE")
                                .default_value(pod_storage::FAILURE_FILE),
                        )
                        .arg(
                            Arg::new("message-file")
                                .long("message-file")
                                .value_name("FILE")
                                .help("Where to write what was done (the container's terminationMessagePath)"),
                        ),
                ),
        )
        .subcommand(
            Clap::new("route")
                .about(
                    "Run a local endpoint's traffic router (started by the local serving backend)",
                )
                .hide(true)
                .arg(
                    Arg::new("config")
                        .long("config")
                        .required(true)
                        .value_name("FILE")
                        .help("The route config (JSON), re-read when it changes"),
                )
                .arg(
                    Arg::new("listen")
                        .long("listen")
                        .required(true)
                        .value_name("ADDR")
                        .help("The address to listen on, like 127.0.0.1:8080"),
                ),
        )
}

fn raw_from_matches(m: &ArgMatches) -> Result<RawInputs, UserError> {
    let mut raw = RawInputs::default();
    for spec in INPUTS.iter().filter(|s| s.cli) {
        if let Ok(Some(v)) = m.try_get_one::<String>(spec.name) {
            let source = match m.value_source(spec.name) {
                Some(clap::parser::ValueSource::EnvVariable) => {
                    Source::CliEnv(spec.cli_env.unwrap_or_default().to_string())
                }
                _ => Source::Flag(spec.name.to_string()),
            };
            raw.set(spec.name, v, source)?;
        }
    }
    Ok(raw)
}

/// Parses the process's arguments. Inside Actions with no arguments, the inputs
/// come from `INPUT_*` variables and `INPUT_MODE` says the mode.
pub fn parse(
    args: Vec<OsString>,
    env: &BTreeMap<String, String>,
) -> Result<Result<Invocation, UserError>, clap::Error> {
    let in_actions = env.get("GITHUB_ACTIONS").map(String::as_str) == Some("true");
    if args.len() <= 1 && in_actions {
        return Ok(action_invocation(env));
    }
    let args = join_bool_values(args);
    let m = match command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => return bad_bool_value(&args, &e).map(Err).ok_or(e),
    };
    let (name, sub) = m.subcommand().expect("a subcommand is required");
    let cmd = match name {
        "schema" => return Ok(Ok(Invocation::Schema)),
        "route" => {
            let arg = |n: &str| sub.get_one::<String>(n).expect("required").clone();
            return Ok(Ok(Invocation::Route {
                config: arg("config").into(),
                listen: arg("listen"),
            }));
        }
        "pod-storage" => {
            use crate::train::pod_storage::PodStorage;
            let (what, m) = sub.subcommand().expect("a subcommand is required");
            let arg = |n: &str| m.get_one::<String>(n).cloned();
            return Ok(Ok(Invocation::PodStorage(match what {
                "fetch" => PodStorage::Fetch {
                    from: arg("from"),
                    to: arg("to").map(Into::into),
                },
                _ => PodStorage::KeepModel {
                    from: arg("from").expect("has a default").into(),
                    to: arg("to"),
                    failure: arg("failure").expect("has a default").into(),
                    message: arg("message-file").map(Into::into),
                },
            })));
        }
        "validate" => Command::Validate,
        "plan" => {
            let mode: Mode = sub
                .get_one::<String>("MODE")
                .expect("required")
                .parse()
                .expect("clap checked the value");
            Command::Plan(mode)
        }
        "render" if sub.get_one::<String>("MODE").map(String::as_str) == Some("runtime") => {
            Command::RenderRuntime
        }
        "render" => {
            let mode: Mode = sub
                .get_one::<String>("MODE")
                .expect("required")
                .parse()
                .expect("clap checked the value");
            Command::Render(mode)
        }
        other => Command::Run(other.parse().expect("subcommands are modes")),
    };
    Ok(raw_from_matches(sub).map(|raw| Invocation::Run(cmd, raw)))
}

/// The names (and aliases) of the boolean flags.
fn bool_flags() -> impl Iterator<Item = &'static str> {
    INPUTS
        .iter()
        .filter(|s| s.cli && s.kind == InputKind::Bool)
        .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()))
}

/// The boolean flag `arg` spells without a value (`--wait`), if it is one.
fn bare_bool_flag(arg: &OsString) -> Option<&'static str> {
    let name = arg.to_str()?.strip_prefix("--")?;
    bool_flags().find(|f| *f == name)
}

/// `--wait true` becomes `--wait=true`, for every boolean flag and every spelling
/// of a boolean the inputs take. Boolean flags take a value only after `=` for clap
/// (so that a bare `--dry-run` before a positional argument stays bare); a word
/// that is not a boolean is left for clap to refuse. `--` ends the flags.
fn join_bool_values(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut rest = args.into_iter().peekable();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            out.push(arg);
            out.extend(rest);
            break;
        }
        let value = bare_bool_flag(&arg).and_then(|_| {
            rest.peek()
                .and_then(|next| next.to_str())
                .filter(|next| crate::config::values::parse_bool(next).is_ok())
                .map(str::to_string)
        });
        match value {
            Some(v) => {
                rest.next();
                let mut joined = arg;
                joined.push("=");
                joined.push(v);
                out.push(joined);
            }
            None => out.push(arg),
        }
    }
    out
}

/// When clap refuses a stray word that follows a boolean flag (`--wait yes`), the
/// error says what the flag takes instead of "unexpected argument".
fn bad_bool_value(args: &[OsString], e: &clap::Error) -> Option<UserError> {
    if e.kind() != clap::error::ErrorKind::UnknownArgument {
        return None;
    }
    let word = match e.get(clap::error::ContextKind::InvalidArg)? {
        clap::error::ContextValue::String(s) => s.clone(),
        _ => return None,
    };
    let flag = args
        .windows(2)
        .find(|w| w[1].to_str() == Some(word.as_str()))
        .and_then(|w| bare_bool_flag(&w[0]))?;
    Some(
        UserError::invalid(format!(
            "`--{flag}` takes `true` or `false`, not `{word}`"
        ))
        .hint(format!(
            "write `--{flag}` or `--{flag} true` to turn it on, `--{flag} false` or `--{flag}=false` to turn it off (also `True`, `TRUE`, `False`, `FALSE`)"
        )),
    )
}

fn action_invocation(env: &BTreeMap<String, String>) -> Result<Invocation, UserError> {
    let raw = RawInputs::from_action_env(env)?;
    let mode = match raw.get("mode") {
        None => {
            return Err(UserError::invalid(
                "missing required input `mode` (INPUT_MODE): expected `build`, `train` or `deploy`",
            )
            .hint("add `mode: build` (or train, deploy) under `with:` in the step that uses mlcd"))
        }
        Some(g) => g.value.parse::<Mode>().map_err(|_| {
            UserError::invalid(format!(
                "{}: {}",
                g.source,
                suggest::unknown_word("mode", &g.value, Mode::NAMES)
            ))
        })?,
    };
    Ok(Invocation::Run(Command::Run(mode), raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_clap_tree_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn flags_fill_the_same_inputs() {
        let inv = parse(
            args(&[
                "mlcd",
                "train",
                "--model-id",
                "churn",
                "--wait=false",
                "--dry-run",
            ]),
            &BTreeMap::new(),
        )
        .unwrap()
        .unwrap();
        let Invocation::Run(Command::Run(Mode::Train), raw) = inv else {
            panic!()
        };
        assert_eq!(raw.get("model-id").unwrap().value, "churn");
        assert_eq!(raw.get("wait").unwrap().value, "false");
        assert_eq!(raw.get("dry-run").unwrap().value, "true");
    }

    fn run_inputs(a: &[&str]) -> RawInputs {
        match parse(args(a), &BTreeMap::new()) {
            Ok(Ok(Invocation::Run(_, raw))) => raw,
            Ok(Ok(other)) => panic!("{other:?}"),
            Ok(Err(e)) => panic!("{}", e.message),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn every_boolean_flag_takes_true_or_false_as_the_next_word() {
        for flag in bool_flags() {
            let Some(cmd) = ["train", "deploy", "build"].into_iter().find(|c| {
                command()
                    .find_subcommand(c)
                    .is_some_and(|s| s.get_arguments().any(|a| a.get_long() == Some(flag)))
            }) else {
                continue;
            };
            let long = format!("--{flag}");
            for (words, want) in [
                (vec![long.as_str(), "true"], "true"),
                (vec![long.as_str(), "FALSE"], "FALSE"),
                (vec![long.as_str(), "False", "--model-id", "m"], "False"),
                (vec![long.as_str()], "true"),
            ] {
                let mut a = vec!["mlcd", cmd];
                a.extend(words.iter().copied());
                let raw = run_inputs(&a);
                let canonical = INPUTS
                    .iter()
                    .find(|s| s.name == flag || s.aliases.contains(&flag))
                    .unwrap()
                    .name;
                assert_eq!(
                    raw.get(canonical).map(|g| g.value.as_str()),
                    Some(want),
                    "{a:?}"
                );
            }
        }
        // A bare flag before a positional argument stays bare.
        let inv = parse(args(&["mlcd", "plan", "--wait", "train"]), &BTreeMap::new());
        let Ok(Ok(Invocation::Run(Command::Plan(Mode::Train), raw))) = inv else {
            panic!("{inv:?}")
        };
        assert_eq!(raw.get("wait").unwrap().value, "true");
    }

    #[test]
    fn a_word_after_a_boolean_flag_that_is_not_a_boolean_says_what_the_flag_takes() {
        let e = parse(args(&["mlcd", "train", "--wait", "yes"]), &BTreeMap::new())
            .unwrap()
            .unwrap_err();
        assert_eq!(e.message, "`--wait` takes `true` or `false`, not `yes`");
        assert!(e.hint.unwrap().contains("`--wait false`"));
        // Anything else stray is clap's own error.
        assert!(parse(args(&["mlcd", "train", "stray"]), &BTreeMap::new()).is_err());
    }

    #[test]
    fn deploy_only_flags_are_refused_for_build() {
        assert!(parse(
            args(&["mlcd", "build", "--strategy", "canary"]),
            &BTreeMap::new()
        )
        .is_err());
    }

    #[test]
    fn route_is_a_hidden_command() {
        let inv = parse(
            args(&[
                "mlcd",
                "route",
                "--config",
                "r.json",
                "--listen",
                "127.0.0.1:1",
            ]),
            &BTreeMap::new(),
        )
        .unwrap()
        .unwrap();
        assert!(matches!(inv, Invocation::Route { ref listen, .. } if listen == "127.0.0.1:1"));
        let help = command().render_help().to_string();
        assert!(!help.contains("route"), "{help}");
    }

    #[test]
    fn action_mode_needs_a_known_mode() {
        let mut env = BTreeMap::new();
        env.insert("GITHUB_ACTIONS".to_string(), "true".to_string());
        let e = parse(args(&["mlcd"]), &env).unwrap().unwrap_err();
        assert!(e.message.contains("INPUT_MODE"));
        env.insert("INPUT_MODE".into(), "biuld".into());
        let e = parse(args(&["mlcd"]), &env).unwrap().unwrap_err();
        assert!(e.message.contains("did you mean `build`"), "{}", e.message);
    }
}
