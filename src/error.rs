//! The error kinds a caller branches on, where in a file an error points, and the
//! documented exit codes they map to.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// How a run ended. Each variant has its own, documented exit code and `status` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The mode did what was asked (exit 0).
    Succeeded,
    /// A dry run: the plan was printed and nothing was touched (exit 0).
    Planned,
    /// A job was submitted and not waited for (`wait: false`; exit 0).
    Submitted,
    /// The job, build or deploy failed, or was rolled back (exit 1).
    Failed,
    /// Inputs, the config file or the event were invalid; nothing was started (exit 2).
    Invalid,
    /// A bounded wait ran out (exit 3).
    TimedOut,
    /// The run was cancelled by a signal (exit 4).
    Cancelled,
}

impl Outcome {
    /// The process exit code for this outcome.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Succeeded | Outcome::Planned | Outcome::Submitted => 0,
            Outcome::Failed => 1,
            Outcome::Invalid => 2,
            Outcome::TimedOut => 3,
            Outcome::Cancelled => 4,
        }
    }

    /// The value of the `status` output.
    pub fn status(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Planned => "planned",
            Outcome::Submitted => "submitted",
            Outcome::Failed => "failed",
            Outcome::Invalid => "invalid",
            Outcome::TimedOut => "timed_out",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// Whether the run counts as a success.
    pub fn is_success(self) -> bool {
        self.exit_code() == 0
    }
}

/// A place in a file (1-based line and column) that an error or annotation points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The file, relative to the workspace when it lies inside it.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, when known.
    pub column: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        if let Some(c) = self.column {
            write!(f, ":{c}")?;
        }
        Ok(())
    }
}

/// An error that says what went wrong in terms the user can act on: its kind (which
/// decides the exit code), the message, where it points, and a hint.
#[derive(Debug, Clone, thiserror::Error)]
pub struct UserError {
    /// Which outcome this error leads to.
    pub kind: Outcome,
    /// One paragraph: what was given, what was expected.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// Where in a file the problem is.
    pub location: Option<Location>,
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl UserError {
    /// Bad input: flags, `INPUT_*` variables, the config file or the event payload.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Outcome::Invalid, message)
    }

    /// The work itself failed.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Outcome::Failed, message)
    }

    /// An error of the given kind.
    pub fn new(kind: Outcome, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
            location: None,
        }
    }

    /// Adds what the user can do about it.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Points the error at a place in a file.
    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }
}

/// The [`UserError`] in an error chain, if there is one.
pub fn user_error(err: &anyhow::Error) -> Option<&UserError> {
    err.chain().find_map(|e| e.downcast_ref::<UserError>())
}

/// The outcome an error chain leads to: its [`UserError`]'s kind, else `Failed`.
pub fn outcome_of(err: &anyhow::Error) -> Outcome {
    user_error(err).map_or(Outcome::Failed, |e| e.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_for_failure_invalid_timeout_and_cancel() {
        let codes = [
            Outcome::Failed.exit_code(),
            Outcome::Invalid.exit_code(),
            Outcome::TimedOut.exit_code(),
            Outcome::Cancelled.exit_code(),
        ];
        let mut sorted = codes.to_vec();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
        assert!(codes.iter().all(|c| *c != 0));
        assert_eq!(Outcome::Planned.exit_code(), 0);
    }

    #[test]
    fn outcome_is_found_through_context_layers() {
        let err = anyhow::Error::new(UserError::new(Outcome::TimedOut, "waited too long"))
            .context("training churn");
        assert_eq!(outcome_of(&err), Outcome::TimedOut);
        assert_eq!(outcome_of(&anyhow::anyhow!("boom")), Outcome::Failed);
    }
}
