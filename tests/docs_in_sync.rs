//! action.yml, the JSON schema and the README's input/output reference are
//! generated from the code's tables; these tests fail when a committed copy is
//! stale. Regenerate with `MLCD_BLESS=1 cargo test --test docs_in_sync`.

use std::path::PathBuf;

use mlcd::inputs::{InputKind, INPUTS};
use mlcd::report::names::OUTPUTS;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bless() -> bool {
    std::env::var("MLCD_BLESS").is_ok_and(|v| v == "1")
}

fn check(rel: &str, expected: &str) {
    let path = root().join(rel);
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    if actual != expected {
        if bless() {
            std::fs::write(&path, expected).unwrap();
            return;
        }
        panic!(
            "{rel} is out of date with the code. Regenerate it with:\n\n    MLCD_BLESS=1 cargo test --test docs_in_sync\n"
        );
    }
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn modes_text(modes: &[mlcd::config::values::Mode]) -> String {
    if modes.is_empty() {
        "all".into()
    } else {
        modes
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The action's image: the release workflow publishes it (see release.yml).
const ACTION_IMAGE: &str = "docker://ghcr.io/mlcd-dev/mlcd:v0";

fn action_yml() -> String {
    let mut s = String::from(
        "# Generated from src/inputs.rs and src/report/names.rs by tests/docs_in_sync.rs:\n\
         # edit those tables, then run `MLCD_BLESS=1 cargo test --test docs_in_sync`.\n\
         name: mlcd\n\
         description: Continuous delivery for ML models - build model images, train on an instance type, deploy as shadow, canary or blue-green with verification and rollback.\n\
         author: mlcd\n\
         branding:\n  icon: cpu\n  color: purple\n\
         inputs:\n",
    );
    for i in INPUTS.iter().filter(|i| i.action) {
        s.push_str(&format!(
            "  {}:\n    description: {}\n",
            i.name,
            yaml_str(i.description)
        ));
        s.push_str(&format!("    required: {}\n", i.name == "mode"));
        if let Some(d) = i.action_default {
            s.push_str(&format!("    default: {}\n", yaml_str(d)));
        }
        for alias in i.aliases {
            s.push_str(&format!(
                "  {alias}:\n    description: {}\n    required: false\n",
                yaml_str(&format!(
                    "Alias of `{}` (the name Qwak's actions used).",
                    i.name
                ))
            ));
        }
    }
    s.push_str("outputs:\n");
    for o in OUTPUTS {
        s.push_str(&format!(
            "  {}:\n    description: {}\n",
            o.name,
            yaml_str(o.description)
        ));
    }
    s.push_str(&format!(
        "runs:\n  using: docker\n  # A prebuilt image: a workflow never compiles Rust. Tests substitute a local build.\n  image: {ACTION_IMAGE}\n"
    ));
    s
}

fn readme_reference() -> String {
    let mut s = String::from("| input | modes | meaning |\n|---|---|---|\n");
    for i in INPUTS {
        let mut name = format!("`{}`", i.name);
        for a in i.aliases {
            name.push_str(&format!(" (alias `{a}`)"));
        }
        let mut meaning = i.description.replace('|', "\\|");
        if !i.action {
            meaning.push_str(" *(CLI only)*");
        }
        if !i.cli {
            meaning.push_str(" *(action only; the CLI takes it as the subcommand)*");
        }
        if i.kind == InputKind::Secret {
            meaning.push_str(" Masked; never printed.");
        }
        if let Some(env) = i.cli_env {
            meaning.push_str(&format!(" CLI fallback: `${env}`."));
        }
        s.push_str(&format!(
            "| {name} | {} | {meaning} |\n",
            modes_text(i.modes)
        ));
    }
    s.push_str("\n| output | modes | meaning |\n|---|---|---|\n");
    for o in OUTPUTS {
        s.push_str(&format!(
            "| `{}` | {} | {} |\n",
            o.name,
            modes_text(o.modes),
            o.description.replace('|', "\\|")
        ));
    }
    s
}

#[test]
fn action_yml_declares_every_input_and_output() {
    check("action.yml", &action_yml());
}

#[test]
fn the_committed_schema_is_current() {
    check("schema/mlcd.schema.json", &mlcd::config::schema_json());
}

#[test]
fn the_readme_reference_is_current() {
    let path = root().join("README.md");
    let text = std::fs::read_to_string(&path).expect("README.md exists");
    let (start, end) = ("<!-- reference:start -->\n", "<!-- reference:end -->");
    let a = text
        .find(start)
        .expect("README has the reference:start marker")
        + start.len();
    let b = text.find(end).expect("README has the reference:end marker");
    let expected = format!("{}{}{}", &text[..a], readme_reference(), &text[b..]);
    check("README.md", &expected);
}

#[test]
fn action_yml_is_valid_yaml_with_the_runner_fields() {
    let v: serde_yaml::Value = serde_yaml::from_str(&action_yml()).unwrap();
    assert_eq!(v["runs"]["using"].as_str(), Some("docker"));
    assert_eq!(v["inputs"]["mode"]["required"].as_bool(), Some(true));
    assert_eq!(
        v["inputs"]["github-token"]["default"].as_str(),
        Some("${{ github.token }}")
    );
    // Inputs the config file can set must not have action defaults, or they would
    // always override the config.
    for name in [
        "backend", "wait", "timeout", "strategy", "instance", "config",
    ] {
        assert!(
            v["inputs"][name]["default"].is_null(),
            "{name} has a default"
        );
    }
}
