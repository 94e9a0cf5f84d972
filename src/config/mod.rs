//! The config file: loading `mlcd.yml` strictly, with every error pointing at its
//! file, line and column, and the JSON schema generated from the types.

pub mod gitops;
pub mod locate;
pub mod suggest;
pub mod types;
pub mod values;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use types::Config;

use crate::error::{Location, UserError};

/// A config file that was read and parsed.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The parsed config.
    pub config: Config,
    /// The file as given, relative to the workspace.
    pub path: PathBuf,
    /// The directory relative paths in the file resolve against (absolute).
    pub dir: PathBuf,
    /// `sha256:…` of the file's bytes (an image label and plan field).
    pub digest: String,
    /// The file's text, to locate keys for errors found after parsing.
    pub text: String,
}

impl LoadedConfig {
    /// Where the key at `path` is written in the file, if it is.
    pub fn locate(&self, path: &[&str]) -> Option<Location> {
        locate::key_position(&self.text, path).map(|(line, column)| Location {
            file: self.path.clone(),
            line,
            column: Some(column),
        })
    }
}

/// The JSON schema of `mlcd.yml`, as committed in `schema/mlcd.schema.json`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Config);
    let mut s = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    s.push('\n');
    s
}

/// Parses config text. `display_path` names the file in errors.
pub fn parse(text: &str, display_path: &Path) -> Result<Config, UserError> {
    if text.trim().is_empty()
        || text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(UserError::invalid(format!(
            "the config file {} is empty: expected a YAML mapping with keys such as `model`, `build`, `train` or `deploy`",
            display_path.display()
        ))
        .hint("see the example in fixtures/example/mlcd.yml, or remove the file to use inputs only"));
    }
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
        let section = section_of(e.path());
        let keys = key_path(e.path());
        let inner = e.into_inner();
        let location = inner.location().map(|l| {
            // An error a value's own parser raises (an unknown `method:`, a bad
            // duration) comes back from serde_yaml marked at the start of the
            // mapping holding it, not at the value: the key's own line, found
            // from the path, is later in the file then, and is the right one.
            let (line, column) = keys
                .as_ref()
                .and_then(|k| {
                    let k: Vec<&str> = k.iter().map(String::as_str).collect();
                    locate::key_position(text, &k)
                })
                .filter(|&(line, _)| line > l.line())
                .unwrap_or((l.line(), l.column()));
            Location {
                file: display_path.to_path_buf(),
                line,
                column: Some(column),
            }
        });
        let raw = strip_path_prefix(&strip_position(&inner.to_string()), &section);
        let parent = section.rsplit_once('.').map_or("", |(p, _)| p);
        let message = suggest::rewrite_unknown_field(&raw, parent).unwrap_or_else(|| {
            if section.is_empty() || raw.contains(&format!("`{section}`")) {
                raw.clone()
            } else {
                format!("`{section}`: {raw}")
            }
        });
        let hint = if raw.starts_with("unknown field") {
            "fix the key's spelling; every key is in mlcd's JSON schema (schema/mlcd.schema.json in the mlcd repository; point your editor's YAML schema at it for completion)"
        } else if raw.contains("invalid type") {
            "check the value's type against mlcd's JSON schema (schema/mlcd.schema.json in the mlcd repository)"
        } else {
            "fix the value and run `mlcd validate` again"
        };
        let mut err = UserError::invalid(format!("invalid config: {message}")).hint(hint);
        if let Some(l) = location {
            err = err.at(l);
        }
        err
    })
}

/// Reads and parses the config file at `path` (absolute, already checked to lie in
/// the workspace); `display_path` is how errors name it.
pub fn load(path: &Path, display_path: &Path) -> Result<LoadedConfig, UserError> {
    let bytes = std::fs::read(path).map_err(|e| {
        UserError::invalid(format!(
            "cannot read the config file {}: {e}",
            display_path.display()
        ))
        .hint("check the `config` input (or `--config`): it is a path relative to the workspace")
    })?;
    let text = String::from_utf8(bytes.clone()).map_err(|_| {
        UserError::invalid(format!(
            "the config file {} is not UTF-8 text",
            display_path.display()
        ))
    })?;
    let config = parse(&text, display_path)?;
    let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
    Ok(LoadedConfig {
        config,
        path: display_path.to_path_buf(),
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        digest,
        text,
    })
}

/// The mapping keys of an error's path (`["monitor", "method"]`), or None when
/// it goes through a list or a variant, which [`locate::key_position`] cannot follow.
fn key_path(path: &serde_path_to_error::Path) -> Option<Vec<String>> {
    path.iter()
        .map(|seg| match seg {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

/// `build.args.X` → `build` style section names for messages: the path up to the
/// last mapping key.
fn section_of(path: &serde_path_to_error::Path) -> String {
    let parts: Vec<String> = path
        .iter()
        .map(|seg| match seg {
            serde_path_to_error::Segment::Seq { index } => format!("[{index}]"),
            serde_path_to_error::Segment::Map { key } => key.clone(),
            serde_path_to_error::Segment::Enum { variant } => variant.clone(),
            serde_path_to_error::Segment::Unknown => "?".into(),
        })
        .collect();
    let mut out = String::new();
    for p in parts {
        if p.starts_with('[') {
            out.push_str(&p);
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&p);
        }
    }
    out
}

/// serde_yaml prefixes its message with the path of the value (`train.count: …`);
/// the path is reported by the caller, so drop it.
fn strip_path_prefix(msg: &str, section: &str) -> String {
    if let Some((prefix, rest)) = msg.split_once(": ") {
        let pathlike = prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.[]-".contains(&b));
        if pathlike && !prefix.is_empty() && section.starts_with(prefix) {
            return rest.to_string();
        }
    }
    msg.to_string()
}

/// serde_yaml appends " at line L column C"; the location is reported separately.
fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> UserError {
        parse(text, Path::new("mlcd.yml")).unwrap_err()
    }

    #[test]
    fn a_typo_points_at_its_line_and_suggests_the_key() {
        let e = err("model: churn\ndeploy:\n  strategy: canary\n  endpont: x\n");
        assert_eq!(e.location.as_ref().unwrap().line, 4, "{e}");
        assert!(
            e.message.contains("did you mean `endpoint`"),
            "{}",
            e.message
        );
        assert!(e.message.contains("in `deploy`"), "{}", e.message);
    }

    #[test]
    fn a_bad_value_names_the_key_and_the_line() {
        let e = err("model: churn\ntrain:\n  timeout: 90\n");
        assert_eq!(e.location.as_ref().unwrap().line, 3);
        assert!(e.message.contains("train.timeout"), "{}", e.message);
        assert!(e.message.contains("add the unit"), "{}", e.message);
    }

    #[test]
    fn a_bad_word_inside_a_section_points_at_its_own_line_not_the_sections_first_key() {
        let e =
            err("model: churn\nmonitor:\n  reference: a.csv\n  current: b.csv\n  method: kss\n");
        assert!(e.message.contains("`monitor.method`"), "{}", e.message);
        let l = e.location.unwrap();
        assert_eq!((l.line, l.column), (5, Some(3)));
        let e = err("deploy:\n  endpoint: e\n  interval: 5m\n  steps: [10, 50, 150]\n");
        assert_eq!(e.location.unwrap().line, 4, "{}", e.message);
    }

    #[test]
    fn traffic_steps_above_100_are_refused() {
        let e = err("deploy:\n  steps: [10, 50, 150]\n");
        assert!(e.message.contains("0 to 100"), "{}", e.message);
        assert_eq!(e.location.unwrap().line, 2);
    }

    #[test]
    fn wrong_type_is_reported() {
        let e = err("train:\n  count: many\n");
        assert!(e.message.contains("invalid type"), "{}", e.message);
        assert_eq!(e.location.unwrap().line, 2);
    }

    #[test]
    fn hyperparameters_must_be_scalars() {
        let e = err("train:\n  hyperparameters:\n    layers: [64, 128]\n");
        assert!(e.message.contains("found a list"), "{}", e.message);
    }

    #[test]
    fn malformed_yaml_has_a_position() {
        let e = err("model: churn\ntrain: [\n");
        assert!(e.location.is_some(), "{e}");
    }

    #[test]
    fn the_design_example_parses() {
        let text = r#"
model: churn
backend: local
build:
  context: .
  dockerfile: Dockerfile
  registry: ghcr.io/acme
  args: {PYTHON: "3.11"}
train:
  instance: gpu.t4.xl
  hyperparameters: {epochs: 5, lr: 0.01}
  channels: {train: data/train}
  timeout: 2h
  gates: {accuracy: ">= 0.90"}
deploy:
  endpoint: churn
  strategy: canary
  steps: [10, 50, 100]
  interval: 5m
  env: {LOG_LEVEL: info}
  smoke:
    - request: tests/sample.json
      expect-status: 200
      max-latency: 500ms
registry:
  type: local
sagemaker: {region: us-east-1, role-arn: "arn:aws:iam::123456789012:role/train"}
"#;
        let c = parse(text, Path::new("mlcd.yml")).unwrap();
        assert_eq!(c.model.unwrap().as_str(), "churn");
        assert_eq!(c.deploy.steps.unwrap().0.len(), 3);
    }
}
