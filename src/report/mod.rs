//! Reporting back: outputs, the step summary, workflow commands, check runs, the
//! pull-request comment. One
//! [`Reporter`] per run gathers what the run says and writes it where the
//! surroundings expect it — the runner's files and GitHub's API in Actions,
//! human text on stderr and `--output json` on stdout elsewhere. Everything
//! written passes through the secret masker first.

pub mod checks;
pub mod commands;
pub mod comment;
pub mod deployments;
pub mod files;
pub mod names;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde_json::Value;

use crate::error::Outcome;
use crate::inputs::OutputFormat;
use crate::secrets::{self, redact, Secret};
use checks::{CheckError, CheckRun};
use commands::{command, Annotation, Level};

/// Gathers a run's outputs, annotations and summary and writes them out.
pub struct Reporter {
    in_actions: bool,
    format: OutputFormat,
    output_file: Option<PathBuf>,
    summary_file: Option<PathBuf>,
    outputs: BTreeMap<String, Value>,
    annotations: Vec<Annotation>,
    summary: String,
    check: Option<CheckRun>,
    check_note: Option<String>,
    verdict: Option<(String, String)>,
    facts: comment::Facts,
    comment: Option<(comment::post::Target, String)>,
    comment_calls: usize,
}

fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", redact(line));
    let _ = stdout.flush();
}

fn err(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{}", redact(line));
}

/// Prints `::add-mask::` for every registered secret (each line of it), before
/// anything else is printed. Outside Actions it does nothing: masking is the
/// runner's; [`redact`] still hides secrets from every line mlcd writes.
pub fn mask_secrets(in_actions: bool) {
    if !in_actions {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    for s in secrets::registered() {
        // Written raw: this is the one line that must carry the value.
        let _ = writeln!(stdout, "{}", command("add-mask", &[], &s));
    }
    let _ = stdout.flush();
    secrets::announce_new_secrets();
}

impl Reporter {
    /// A reporter for a run inside Actions (`in_actions`) or not.
    pub fn new(in_actions: bool, format: OutputFormat, env: &BTreeMap<String, String>) -> Self {
        let file = |k: &str| env.get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        Reporter {
            in_actions,
            format,
            output_file: file("GITHUB_OUTPUT"),
            summary_file: file("GITHUB_STEP_SUMMARY"),
            outputs: BTreeMap::new(),
            annotations: Vec::new(),
            summary: String::new(),
            check: None,
            check_note: None,
            verdict: None,
            facts: comment::Facts::default(),
            comment: None,
            comment_calls: 0,
        }
    }

    /// Sets the stdout format (known only once inputs are parsed).
    pub fn set_format(&mut self, format: OutputFormat) {
        self.format = format;
    }

    /// Sets an output (strings as they are; other JSON values serialized).
    pub fn set_output(&mut self, name: &str, value: impl Into<Value>) {
        self.outputs.insert(name.to_string(), value.into());
    }

    /// A mode's own verdict (`mode: monitor`: `ok`, `drifted`, …): the `status`
    /// output and the check run's title, when the run ends without an error.
    pub fn set_verdict(&mut self, status: &str, title: &str) {
        self.verdict = Some((status.to_string(), title.to_string()));
    }

    /// The outputs set so far.
    pub fn outputs(&self) -> &BTreeMap<String, Value> {
        &self.outputs
    }

    /// Records an annotation and prints it: a workflow command in Actions,
    /// `error: …` text on stderr elsewhere.
    pub fn annotate(&mut self, a: Annotation) {
        if self.in_actions {
            out(&a.to_command());
        } else {
            let mut lines = a.message.lines();
            let mut text = format!(
                "{}: {}",
                a.level.command(),
                lines.next().unwrap_or_default()
            );
            if let Some(l) = &a.location {
                text.push_str(&format!("\n  --> {l}"));
            }
            for more in lines {
                text.push_str(&format!("\n  = {more}"));
            }
            err(&text);
        }
        self.annotations.push(a);
    }

    /// A warning without a location.
    pub fn warn(&mut self, message: impl Into<String>) {
        self.annotate(Annotation {
            level: Level::Warning,
            title: "mlcd".into(),
            message: message.into(),
            location: None,
        });
    }

    /// A line of progress on stderr (logs never go to stdout).
    pub fn info(&self, message: &str) {
        err(message);
    }

    /// Starts a collapsible log group (Actions only).
    pub fn group(&self, title: &str) {
        if self.in_actions {
            out(&command("group", &[], title));
        } else {
            err(&format!("── {title}"));
        }
    }

    /// Ends the current log group.
    pub fn end_group(&self) {
        if self.in_actions {
            out("::endgroup::");
        }
    }

    /// Adds Markdown to the step summary.
    pub fn add_summary(&mut self, markdown: &str) {
        self.summary.push_str(markdown);
        if !markdown.ends_with('\n') {
            self.summary.push('\n');
        }
    }

    /// The annotations recorded so far.
    pub fn annotations(&self) -> &[Annotation] {
        &self.annotations
    }

    /// Creates the check run, when there is a token, a repository and a commit.
    /// A refusal is reported once as a warning and the run carries on.
    pub async fn start_check(
        &mut self,
        api_url: &str,
        token: Option<&Secret>,
        repository: Option<&str>,
        sha: Option<&str>,
        name: &str,
        details_url: Option<&str>,
    ) {
        let (Some(token), Some(repo), Some(sha)) = (token, repository, sha) else {
            log::debug!("no check run: a token, GITHUB_REPOSITORY and a commit are all needed");
            return;
        };
        let mut run = match CheckRun::client(api_url, token, repo) {
            Ok(r) => r,
            Err(e) => {
                self.warn(format!("mlcd could not report a check run: {e}"));
                return;
            }
        };
        match run.start(name, sha, details_url).await {
            Ok(()) => {
                if let Some(url) = run.html_url.clone() {
                    self.set_output("report-url", url);
                }
                self.check = Some(run);
            }
            Err(e) => self.check_failed(e),
        }
    }

    fn check_failed(&mut self, e: CheckError) {
        let msg = match &e {
            CheckError::Forbidden { .. } => format!(
                "mlcd could not create a check run: {e}. The token lacks the `checks: write` permission \
                 (a pull request from a fork never has it). Add `permissions: {{ checks: write }}` to the \
                 job, or set the `checks` input to false; the run carries on without a check run."
            ),
            CheckError::Other(_) => format!("mlcd could not report the check run: {e}; the run carries on without it."),
        };
        if self.check_note.is_none() {
            self.check_note = Some(msg.clone());
            self.warn(msg);
        }
    }

    /// GitHub API calls made by this run.
    pub fn github_calls(&self) -> usize {
        self.check.as_ref().map_or(0, |c| c.calls) + self.comment_calls
    }

    /// What the mode gathers for the pull-request comment.
    pub fn facts_mut(&mut self) -> &mut comment::Facts {
        &mut self.facts
    }

    /// Asks for the pull-request comment of `mode`'s run, written when the run
    /// finishes (not for a dry run).
    pub fn comment_on(&mut self, target: comment::post::Target, mode: &str) {
        self.comment = Some((target, mode.to_string()));
    }

    /// Writes this run's section into the model's comment. A refusal is one
    /// warning; the run carries on.
    async fn post_comment(&mut self, outcome: Outcome) {
        let Some((target, mode)) = self.comment.take() else {
            return;
        };
        if outcome == Outcome::Planned {
            return;
        }
        let summary = redact(&self.summary);
        let section = comment::sections::render(&comment::sections::RunReport {
            mode: &mode,
            outcome,
            outputs: &self.outputs,
            summary: &summary,
            annotations: &self.annotations,
            train: self.facts.train.as_ref(),
            run_url: target.run_url.as_deref(),
        });
        let (result, calls) = comment::post::publish(&target, &mode, &redact(&section)).await;
        self.comment_calls += calls;
        match result {
            Ok(posted) => {
                for p in posted {
                    self.info(&format!(
                        "{} the report comment: {}",
                        if p.edited { "updated" } else { "wrote" },
                        p.html_url
                    ));
                }
            }
            Err(e @ comment::post::CommentError::Forbidden { .. }) => self.warn(format!(
                "mlcd could not write its report comment ({e}). The token needs `pull-requests: write` \
                 (or `issues: write`; a commit comment needs `contents: write`), which a pull request \
                 from a fork never has: add it to the job's `permissions:`, or set `comment: false`. \
                 The run carries on without the comment."
            )),
            Err(e) => self.warn(format!(
                "mlcd could not write its report comment: {e}; the run carries on without it."
            )),
        }
    }

    /// Writes everything out: the `status` output, the pull-request comment, the
    /// outputs file, the step summary, the JSON on stdout, and the completed
    /// check run.
    pub async fn finish(&mut self, outcome: Outcome, title: &str) {
        let mut title = title.to_string();
        match self.verdict.take() {
            Some((status, verdict)) if matches!(outcome, Outcome::Succeeded | Outcome::Failed) => {
                self.set_output("status", status);
                title = verdict;
            }
            _ => self.set_output("status", outcome.status()),
        }
        let title = title.as_str();
        self.post_comment(outcome).await;
        let rendered: Vec<(String, String)> = self
            .outputs
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), redact(&s))
            })
            .collect();
        if let Some(path) = &self.output_file {
            if let Err(e) =
                files::write_outputs(path, rendered.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            {
                err(&format!(
                    "error: cannot write outputs to {} (GITHUB_OUTPUT): {e}",
                    path.display()
                ));
            }
        }
        let mut summary = redact(&self.summary);
        if !self.annotations.is_empty() {
            summary.push_str("\n#### Annotations\n\n");
            for a in &self.annotations {
                let at = a
                    .location
                    .as_ref()
                    .map(|l| format!(" (`{l}`)"))
                    .unwrap_or_default();
                summary.push_str(&format!(
                    "- **{}**{at}: {}\n",
                    a.level.command(),
                    redact(&a.message).replace('\n', " ")
                ));
            }
        }
        if let Some(path) = &self.summary_file {
            if let Err(e) = files::write_summary(path, &summary) {
                err(&format!(
                    "error: cannot write the step summary to {} (GITHUB_STEP_SUMMARY): {e}",
                    path.display()
                ));
            }
        }
        if self.format == OutputFormat::Json {
            let obj: serde_json::Map<String, Value> =
                self.outputs
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::String(s) => Value::String(redact(s)),
                            other => serde_json::from_str(&redact(&other.to_string()))
                                .unwrap_or(Value::Null),
                        };
                        (k.clone(), v)
                    })
                    .collect();
            out(&Value::Object(obj).to_string());
        }
        if let Some(mut check) = self.check.take() {
            let title = redact(title);
            let result = check
                .complete(outcome, &title, &summary, None, &self.annotations)
                .await;
            let calls = check.calls;
            self.check = Some(check);
            if let Err(e) = result {
                self.check_failed(e);
            }
            log::debug!("GitHub API calls this run: {calls}");
        }
    }
}
