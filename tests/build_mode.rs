//! `mlcd build` against the real Docker engine and the real OCI registry of the
//! test bed (htpasswd auth; one test over TLS with a self-signed CA): first
//! build and push, the unchanged rerun skipped, a changed file rebuilt, a wrong
//! password refused without a retry storm, an unreachable registry retried then
//! failed, a failing Dockerfile instruction annotated on its line, and bad input
//! refused before anything is pushed.
//!
//! Needs `scripts/testbed up docker base-image registry` (scripts/test does it).

mod common;
use common::*;

use std::collections::BTreeMap;
use std::time::Instant;

const NEED: &[&str] = &[
    "DOCKER_HOST",
    "MLCD_TESTBED_REGISTRY",
    "MLCD_TESTBED_REGISTRY_USER",
    "MLCD_TESTBED_REGISTRY_PASSWORD",
    "MLCD_TESTBED_BASE_IMAGE",
];

/// A copy of the example pushing to a namespace of its own in `registry`;
/// returns the workspace and the image repository.
fn example(registry: &str, base: &str) -> (Workspace, String) {
    let (ws, ns) = example_pushing_to(registry, base, "t");
    (ws, format!("{registry}/{ns}/churn"))
}

fn build(
    ws: &Workspace,
    tb: &BTreeMap<String, String>,
    password: &str,
    extra_env: &[(&str, &str)],
    extra_args: &[&str],
) -> (Run, serde_json::Value) {
    let docker_config = ws.path().join("docker-config");
    std::fs::create_dir_all(&docker_config).unwrap();
    let dc = docker_config.display().to_string();
    let mut env: Vec<(&str, &str)> = vec![
        ("DOCKER_HOST", tb["DOCKER_HOST"].as_str()),
        ("DOCKER_CONFIG", dc.as_str()),
        ("MLCD_REGISTRY_PASSWORD", password),
        ("GITHUB_SHA", SHA),
        ("GITHUB_REF", "refs/heads/main"),
    ];
    env.extend_from_slice(extra_env);
    let mut args = vec![
        "build",
        "--config",
        "example/mlcd.yml",
        "--registry-username",
        tb["MLCD_TESTBED_REGISTRY_USER"].as_str(),
        "--output",
        "json",
    ];
    args.extend_from_slice(extra_args);
    let r = mlcd(ws.path(), &args, &env);
    let v = serde_json::from_str(r.stdout.trim()).unwrap_or(serde_json::Value::Null);
    (r, v)
}

#[test]
fn first_build_pushes_an_unchanged_rerun_is_skipped_and_a_change_rebuilds() {
    let tb = testbed_env(NEED);
    let (ws, repo) = example(&tb["MLCD_TESTBED_REGISTRY"], &tb["MLCD_TESTBED_BASE_IMAGE"]);
    let pw = tb["MLCD_TESTBED_REGISTRY_PASSWORD"].clone();

    let (r, first) = build(&ws, &tb, &pw, &[], &[]);
    r.assert_code(0);
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["skipped"], "false");
    let digest = first["digest"].as_str().unwrap().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert_eq!(first["image"], format!("{repo}@{digest}"));
    let tags: Vec<&str> = first["tags"].as_str().unwrap().lines().collect();
    assert!(tags.contains(&format!("{repo}:{SHA}").as_str()), "{tags:?}");
    assert!(
        !tags.contains(&format!("{repo}:latest").as_str()),
        "main is not the known default branch outside GitHub"
    );
    assert!(
        !r.stderr.contains(&pw) && !r.stdout.contains(&pw),
        "the password leaked"
    );

    // The registry holds it under every tag, with the digest mlcd reported.
    let reg = mlcd::image::registry::Registry::new(
        &tb["MLCD_TESTBED_REGISTRY"],
        Some(mlcd::image::registry::Credentials {
            username: tb["MLCD_TESTBED_REGISTRY_USER"].clone(),
            password: mlcd::secrets::Secret::new(pw.clone()),
        }),
        None,
    )
    .unwrap();
    let path = repo.split_once('/').unwrap().1.to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for t in &tags {
        let tag = t.rsplit_once(':').unwrap().1;
        let m = rt
            .block_on(reg.manifest(&path, tag))
            .unwrap()
            .expect("pushed");
        assert_eq!(m.digest, digest, "{t}");
    }
    // What was pushed carries mlcd's labels (added without a commit).
    let inspect = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{json .Config.Labels}}"])
        .arg(format!("{repo}@{digest}"))
        .env("DOCKER_HOST", &tb["DOCKER_HOST"])
        .output()
        .unwrap();
    let labels: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap_or_default();
    assert_eq!(
        labels["dev.mlcd.build-id"], first["build-id"],
        "{inspect:?}"
    );

    // Unchanged rerun (an ignored file changed too): skipped, same digest, new tag added.
    ws.write("example/tests/notes.txt", "ignored by .dockerignore\n");
    let started = Instant::now();
    let (r, second) = build(&ws, &tb, &pw, &[], &["--tags", "rerun"]);
    let took = started.elapsed();
    r.assert_code(0);
    assert_eq!(second["skipped"], "true", "{}", r.stderr);
    assert_eq!(second["digest"], digest.as_str());
    assert_eq!(second["build-id"], first["build-id"]);
    let m = rt
        .block_on(reg.manifest(&path, "rerun"))
        .unwrap()
        .expect("re-tagged");
    assert_eq!(m.digest, digest);
    eprintln!("unchanged rerun took {took:?}");

    // One file of the context changed: a new build id, rebuilt and pushed.
    let serve = ws.read("example/serve.py");
    ws.write("example/serve.py", &format!("{serve}\n# changed\n"));
    let (r, third) = build(&ws, &tb, &pw, &[], &[]);
    r.assert_code(0);
    assert_eq!(third["skipped"], "false");
    assert_ne!(third["build-id"], first["build-id"]);
    assert_ne!(third["digest"], digest.as_str());
}

#[test]
fn a_wrong_password_is_a_clear_auth_error_without_a_retry_storm() {
    let tb = testbed_env(NEED);
    let (ws, _) = example(&tb["MLCD_TESTBED_REGISTRY"], &tb["MLCD_TESTBED_BASE_IMAGE"]);
    let started = Instant::now();
    let (r, out) = build(&ws, &tb, "definitely-not-the-password", &[], &[]);
    r.assert_code(1);
    assert!(
        started.elapsed().as_secs() < 10,
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out["status"], "failed");
    assert!(
        r.stderr.contains("refused the credentials")
            || r.stderr.contains("unauthorized")
            || r.stderr.contains("Unauthorized"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("registry-password"),
        "the hint names the input: {}",
        r.stderr
    );
    assert!(!r.stderr.contains("definitely-not-the-password"));
    assert!(
        !r.stderr.contains("retry"),
        "no retries on refused credentials: {}",
        r.stderr
    );
}

#[test]
fn an_unreachable_registry_is_retried_then_fails_clearly() {
    let tb = testbed_env(NEED);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ws, _) = example(&format!("127.0.0.1:{port}"), &tb["MLCD_TESTBED_BASE_IMAGE"]);
    let (r, out) = build(
        &ws,
        &tb,
        "x",
        &[
            ("MLCD_RETRY_ATTEMPTS", "3"),
            ("MLCD_RETRY_INITIAL_MS", "50"),
            ("MLCD_LOG", "warn"),
        ],
        &[],
    );
    r.assert_code(1);
    assert_eq!(out["status"], "failed");
    assert_eq!(
        r.stderr.matches("; retry ").count(),
        2,
        "two retries after the first attempt: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("gave up after 3 attempts"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        r.stderr
    );
}

#[test]
fn a_failing_dockerfile_instruction_is_annotated_on_its_line() {
    let tb = testbed_env(NEED);
    let (ws, _) = example(&tb["MLCD_TESTBED_REGISTRY"], &tb["MLCD_TESTBED_BASE_IMAGE"]);
    let dockerfile = ws.read("example/Dockerfile");
    let line = dockerfile.lines().count() + 1;
    ws.write(
        "example/Dockerfile",
        &format!("{dockerfile}RUN echo about to fail && exit 3\n"),
    );
    let docker_config = ws.path().join("dc");
    std::fs::create_dir_all(&docker_config).unwrap();
    let r = action(
        &ws,
        &[
            ("INPUT_MODE", "build"),
            ("INPUT_CONFIG", "example/mlcd.yml"),
            ("INPUT_REGISTRY-USERNAME", &tb["MLCD_TESTBED_REGISTRY_USER"]),
            (
                "INPUT_REGISTRY-PASSWORD",
                &tb["MLCD_TESTBED_REGISTRY_PASSWORD"],
            ),
            ("INPUT_CHECKS", "false"),
            ("DOCKER_HOST", &tb["DOCKER_HOST"]),
            ("DOCKER_CONFIG", &docker_config.display().to_string()),
        ],
    );
    r.assert_code(1);
    let expected = format!(
        "::error file=example/Dockerfile,line={line},title=mlcd%3A failed::the image build failed"
    );
    assert!(r.stdout.contains(&expected), "{}", r.stdout);
    assert!(r.stdout.contains("exit 3"), "{}", r.stdout);
    assert!(
        r.stdout.contains("::group::Build "),
        "the build log is grouped: {}",
        r.stdout
    );
    assert_eq!(parse_outputs(&ws.read("out/output"))["status"], "failed");
}

#[test]
fn bad_build_input_is_refused_before_anything_is_pushed() {
    let tb = testbed_env(NEED);
    let (ws, _) = example(&tb["MLCD_TESTBED_REGISTRY"], &tb["MLCD_TESTBED_BASE_IMAGE"]);
    let pw = tb["MLCD_TESTBED_REGISTRY_PASSWORD"].clone();

    let (r, _) = build(&ws, &tb, &pw, &[], &["--tags", "bad tag!"]);
    r.assert_code(2);
    assert!(r.stderr.contains("`bad tag!`"), "{}", r.stderr);

    std::os::unix::fs::symlink("/etc", ws.path().join("example/escape")).unwrap();
    let (r, _) = build(&ws, &tb, &pw, &[], &[]);
    r.assert_code(2);
    assert!(r.stderr.contains("escape"), "{}", r.stderr);
    assert!(r.stderr.contains("/etc"), "{}", r.stderr);
    std::fs::remove_file(ws.path().join("example/escape")).unwrap();

    let cfg = ws
        .read("example/mlcd.yml")
        .replace("registry: 127.0.0.1", "registry: not_a_host/127.0.0.1");
    ws.write("example/mlcd.yml", &cfg);
    let (r, _) = build(&ws, &tb, &pw, &[], &[]);
    r.assert_code(2);
    assert!(r.stderr.contains("build.registry"), "{}", r.stderr);
}

#[test]
fn pushes_over_tls_with_a_self_signed_ca() {
    let tb = testbed_env(&[
        "DOCKER_HOST",
        "MLCD_TESTBED_TLS_REGISTRY",
        "MLCD_TESTBED_TLS_CA",
        "MLCD_TESTBED_REGISTRY_USER",
        "MLCD_TESTBED_REGISTRY_PASSWORD",
        "MLCD_TESTBED_BASE_IMAGE",
    ]);
    let (ws, repo) = example(
        &tb["MLCD_TESTBED_TLS_REGISTRY"],
        &tb["MLCD_TESTBED_BASE_IMAGE"],
    );
    let pw = tb["MLCD_TESTBED_REGISTRY_PASSWORD"].clone();
    let (r, out) = build(
        &ws,
        &tb,
        &pw,
        &[("MLCD_REGISTRY_CA_FILE", tb["MLCD_TESTBED_TLS_CA"].as_str())],
        &[],
    );
    r.assert_code(0);
    assert!(
        out["image"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{repo}@sha256:")),
        "{out}"
    );
    // The same build again is found over TLS and skipped.
    let (r, out) = build(
        &ws,
        &tb,
        &pw,
        &[("MLCD_REGISTRY_CA_FILE", tb["MLCD_TESTBED_TLS_CA"].as_str())],
        &[],
    );
    r.assert_code(0);
    assert_eq!(out["skipped"], "true");
}

#[test]
fn a_build_over_its_timeout_fails_as_timed_out() {
    let tb = testbed_env(NEED);
    let (ws, _) = example(&tb["MLCD_TESTBED_REGISTRY"], &tb["MLCD_TESTBED_BASE_IMAGE"]);
    // A step that takes 30 s and that no cache has seen, so the build cannot
    // finish within the timeout.
    let dockerfile = ws.read("example/Dockerfile");
    ws.write(
        "example/Dockerfile",
        &format!("{dockerfile}\nRUN sleep 30 # {}\n", unique()),
    );
    let pw = tb["MLCD_TESTBED_REGISTRY_PASSWORD"].clone();
    let started = Instant::now();
    let (r, out) = build(&ws, &tb, &pw, &[], &["--timeout", "1s"]);
    r.assert_code(3);
    assert_eq!(out["status"], "timed_out");
    assert!(
        r.stderr.contains("did not finish within 1s"),
        "{}",
        r.stderr
    );
    assert!(
        started.elapsed().as_secs() < 15,
        "bounded: {:?}",
        started.elapsed()
    );
}

#[test]
fn without_a_registry_the_image_stays_in_the_engine_and_a_rerun_is_skipped() {
    let tb = testbed_env(NEED);
    let (ws, _) = example(&tb["MLCD_TESTBED_REGISTRY"], &tb["MLCD_TESTBED_BASE_IMAGE"]);
    let cfg: String = ws
        .read("example/mlcd.yml")
        .lines()
        .filter(|l| !l.trim_start().starts_with("registry: 127.0.0.1"))
        .collect::<Vec<_>>()
        .join("\n");
    ws.write("example/mlcd.yml", &cfg);
    ws.write("example/extra.txt", &format!("{}\n", unique()));
    let (r, first) = build(&ws, &tb, "unused", &[], &[]);
    r.assert_code(0);
    assert_eq!(first["skipped"], "false");
    let id = first["digest"].as_str().unwrap().to_string();
    assert!(
        id.starts_with("sha256:"),
        "the image id stands for the digest: {first}"
    );
    assert!(
        first["image"].as_str().unwrap().starts_with("churn:build-"),
        "{first}"
    );
    // The image carries mlcd's labels, added without a commit (the engine's own
    // `labels` option makes one commit per label, each a copy of the root
    // filesystem under a copying storage driver), and keeps its history.
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &tb["DOCKER_HOST"])
            .output()
            .expect("docker runs");
        assert!(out.status.success(), "docker {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let labels: BTreeMap<String, String> = serde_json::from_str(&docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &id,
    ]))
    .unwrap();
    assert_eq!(labels["org.opencontainers.image.revision"], SHA);
    assert_eq!(labels["dev.mlcd.model-id"], "churn");
    assert_eq!(
        labels["dev.mlcd.build-id"],
        first["build-id"].as_str().unwrap()
    );
    let history = docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", &id]);
    assert!(!history.contains("LABEL"), "{history}");
    assert!(
        history.contains("COPY") && history.contains("ENTRYPOINT"),
        "the Dockerfile's steps are still in the history: {history}"
    );
    // It runs like the image it was made from.
    docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "python3",
        &id,
        "-c",
        "import model",
    ]);

    let (r, second) = build(&ws, &tb, "unused", &[], &[]);
    r.assert_code(0);
    assert_eq!(second["skipped"], "true");
    assert_eq!(second["digest"], id.as_str());
}
