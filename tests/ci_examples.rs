//! The CircleCI and Jenkins examples (examples/circleci/config.yml,
//! examples/jenkins/Jenkinsfile): the CircleCI config validates against
//! CircleCI's published schema (check-jsonschema's vendored copy), the
//! Jenkinsfile compiles with Groovy 2.4 (the Groovy Jenkins runs pipelines
//! with; Debian's `groovy`), both run the same mlcd and jq commands per stage,
//! and those commands — the CircleCI steps as written — run here against the
//! embedded default: the real Docker engine, the test bed's registry, a local
//! model registry and endpoint, with jq reading every output.
//!
//! Needs `scripts/testbed up docker base-image registry groovy` (Debian's groovy
//! and jq) and check-jsonschema from PyPI (scripts/test installs it).

mod common;
use common::*;

use std::path::Path;
use std::process::Command;

const CIRCLECI: &str = "examples/circleci/config.yml";
const JENKINSFILE: &str = "examples/jenkins/Jenkinsfile";
const STAGES: &[&str] = &["Build", "Train", "Deploy"];

/// The `run` commands of the CircleCI job's steps named `Build`, `Train`, `Deploy`.
fn circleci_steps() -> Vec<(String, String)> {
    let cfg: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root().join(CIRCLECI)).unwrap()).unwrap();
    let steps = cfg["jobs"]["pipeline"]["steps"].as_sequence().unwrap();
    steps
        .iter()
        .filter_map(|s| {
            let run = s.get("run")?;
            let name = run.get("name")?.as_str()?;
            STAGES.contains(&name).then(|| {
                (
                    name.to_string(),
                    run["command"].as_str().unwrap().to_string(),
                )
            })
        })
        .collect()
}

/// The `sh '''…'''` block of each Jenkins stage.
fn jenkins_stages() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join(JENKINSFILE)).unwrap();
    STAGES
        .iter()
        .map(|s| {
            let at = text
                .find(&format!("stage('{s}')"))
                .unwrap_or_else(|| panic!("no stage('{s}') in the Jenkinsfile"));
            let rest = &text[at..];
            let open = rest.find("sh '''").expect("an sh ''' block") + "sh '''".len();
            let close = rest[open..].find("'''").unwrap() + open;
            (s.to_string(), rest[open..close].to_string())
        })
        .collect()
}

/// The lines that run mlcd or read its outputs with jq.
fn mlcd_lines(script: &str) -> Vec<String> {
    script
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("mlcd ") || l.contains("jq "))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_circleci_example_is_valid_against_circlecis_schema() {
    let check = |path: &Path| {
        Command::new("check-jsonschema")
            .args(["--builtin-schema", "vendor.circle-ci"])
            .arg(path)
            .output()
            .expect("check-jsonschema runs (pip install check-jsonschema; scripts/test does it)")
    };
    let out = check(&root().join(CIRCLECI));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The schema does refuse a broken config (a step that is not a step).
    let ws = Workspace::new();
    let broken = std::fs::read_to_string(root().join(CIRCLECI))
        .unwrap()
        .replace(
            "    resource_class: medium\n",
            "    resource_class: [medium]\n",
        );
    let out = check(&ws.write("config.yml", &broken));
    assert!(
        !out.status.success(),
        "a list as resource_class was accepted"
    );
}

/// JAVA_HOME, else the JDK of the `java` on PATH (Debian's groovyc wants it and
/// looks for /usr/lib/jvm/default-java, which only default-jre provides).
fn java_home() -> String {
    if let Ok(h) = std::env::var("JAVA_HOME") {
        return h;
    }
    let out = Command::new("readlink")
        .args(["-f", "/usr/bin/java"])
        .output()
        .expect("java is installed");
    let java = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&java)
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("no JDK around {java}"))
        .display()
        .to_string()
}

#[test]
fn the_jenkinsfile_compiles_with_the_groovy_jenkins_uses() {
    let ws = Workspace::new();
    let compile = |text: &str| {
        // groovyc compiles a script file; a pipeline is a script of method calls
        // with closures, so this is Jenkins' own first step (syntax and structure).
        let src = ws.write("Jenkinsfile.groovy", text);
        let _ = std::fs::remove_dir_all(ws.path().join("classes"));
        Command::new("groovyc")
            .env("JAVA_HOME", java_home())
            .arg("-d")
            .arg(ws.path().join("classes"))
            .arg(&src)
            .output()
            .expect("groovyc runs (apt-get install groovy; scripts/testbed up groovy)")
    };
    let text = std::fs::read_to_string(root().join(JENKINSFILE)).unwrap();
    let out = compile(&text);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ws.path().join("classes/Jenkinsfile.class").is_file());
    // A syntax error is caught (so the check can fail).
    let out = compile(&text.replacen("stage('Train') {", "stage('Train') ", 1));
    assert!(!out.status.success(), "a missing brace compiled");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Jenkinsfile.groovy"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn circleci_and_jenkins_run_the_same_mlcd_and_jq_commands_per_stage() {
    let circle = circleci_steps();
    let jenkins = jenkins_stages();
    assert_eq!(circle.len(), 3, "{circle:?}");
    for ((cs, cscript), (js, jscript)) in circle.iter().zip(&jenkins) {
        assert_eq!(cs, js);
        let lines = mlcd_lines(cscript);
        assert!(
            lines.iter().any(|l| l.contains("--output json")),
            "{cs}: {lines:?}"
        );
        assert!(lines.iter().any(|l| l.contains("jq ")), "{cs}: {lines:?}");
        assert_eq!(lines, mlcd_lines(jscript), "stage {cs}");
    }
}

#[test]
fn the_example_commands_build_train_and_deploy_on_the_local_engine() {
    let tb = testbed_env(&[
        "DOCKER_HOST",
        "MLCD_TESTBED_BASE_IMAGE",
        "MLCD_TESTBED_REGISTRY",
        "MLCD_TESTBED_REGISTRY_USER",
        "MLCD_TESTBED_REGISTRY_PASSWORD",
    ]);
    let (ws, _) = example_pushing_to(
        &tb["MLCD_TESTBED_REGISTRY"],
        &tb["MLCD_TESTBED_BASE_IMAGE"],
        "ci",
    );
    let endpoint = format!("churn-ci{}", unique());
    let cfg = ws
        .read("example/mlcd.yml")
        .replace("  endpoint: churn\n", &format!("  endpoint: {endpoint}\n"));
    ws.write("example/mlcd.yml", &cfg);
    let dir = ws.path().join("example");
    // A CI checkout is a git repository: mlcd reads the commit from it.
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            "model",
        ],
    ] {
        let ok = Command::new("git")
            .args(args)
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(ok.success(), "git {args:?}");
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_mlcd")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let bash_env = ws.write("bash_env", "");
    let cleanup = || {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("name={endpoint}")])
            .env("DOCKER_HOST", &tb["DOCKER_HOST"])
            .output()
            .unwrap();
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .env("DOCKER_HOST", &tb["DOCKER_HOST"])
                .output();
        }
    };
    let mut logs = Vec::new();
    for (stage, script) in circleci_steps() {
        // As CircleCI runs a step: bash, with $BASH_ENV sourced first.
        let out = Command::new("bash")
            .args(["-c", &script])
            .current_dir(&dir)
            .env("PATH", &path)
            .env("BASH_ENV", &bash_env)
            .env("DOCKER_HOST", &tb["DOCKER_HOST"])
            .env("REGISTRY_USER", &tb["MLCD_TESTBED_REGISTRY_USER"])
            .env(
                "MLCD_REGISTRY_PASSWORD",
                &tb["MLCD_TESTBED_REGISTRY_PASSWORD"],
            )
            .env_remove("GITHUB_ACTIONS")
            .env("MLCD_POLL_INTERVAL_MS", "200")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            cleanup();
            panic!(
                "stage {stage} failed ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        logs.push((stage, stdout));
    }
    cleanup();
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap()
    };
    let build = read("build.json");
    let image = build["image"].as_str().unwrap();
    assert!(
        image.starts_with(&format!("{}/", tb["MLCD_TESTBED_REGISTRY"]))
            && image.contains("@sha256:"),
        "{build}"
    );
    assert!(
        logs[0]
            .1
            .contains(&format!("built {image} (skipped: false)")),
        "{logs:?}"
    );
    let train = read("train.json");
    assert_eq!(train["model-version"], "1", "{train}");
    assert!(
        logs[1].1.contains("model version 1: {\"accuracy\":"),
        "jq read the outputs: {logs:?}"
    );
    let deploy = read("deploy.json");
    assert_eq!(deploy["status"], "succeeded");
    let url = deploy["url"].as_str().unwrap();
    assert!(
        logs[2]
            .1
            .contains(&format!("serving at {url} (100% of traffic)")),
        "{logs:?}"
    );
}
