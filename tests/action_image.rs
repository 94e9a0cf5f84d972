//! The published action image, built from the project's Dockerfile (`runtime`
//! target, FROM scratch) on the test bed's real Docker engine: it holds the
//! static mlcd and the CA certificates and nothing else, `mlcd --version` runs
//! in it with no libc beside it, its ENTRYPOINT is exec-form, and it stays
//! within the size a runner should pull (≤ 15 MB compressed).
//!
//! No Rust image can be pulled here, so the build stage gets the binary
//! scripts/build-static made (`PREBUILT`) on the test bed's local base image
//! (which has `sh`, `cp` and the CA bundle) instead of compiling it itself.
//!
//! Needs `scripts/testbed up docker base-image` (scripts/test does it).

mod common;

use common::*;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Command;

const NEED: &[&str] = &["DOCKER_HOST", "MLCD_TESTBED_BASE_IMAGE"];
const IMAGE: &str = "mlcd-test/action:runtime";
/// What a runner pulls at most: the image's layers, gzip-compressed.
const MAX_COMPRESSED: u64 = 15 * 1000 * 1000;

fn docker(tb: &BTreeMap<String, String>) -> Command {
    let mut c = Command::new("docker");
    c.env("DOCKER_HOST", &tb["DOCKER_HOST"]);
    c
}

fn ok(mut c: Command, what: &str) -> Vec<u8> {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The static binary, as the release builds it (a no-op when it is current).
fn static_binary() -> std::path::PathBuf {
    let mut c = Command::new(root().join("scripts/build-static"));
    c.current_dir(root());
    let out = ok(c, "scripts/build-static");
    std::path::PathBuf::from(String::from_utf8(out).unwrap().trim())
}

/// The sizes of the image's layers: (as stored, gzip-compressed as pushed),
/// the layers `docker save`'s manifest.json names.
fn layer_sizes(tb: &BTreeMap<String, String>) -> Vec<(u64, u64)> {
    let mut c = docker(tb);
    c.args(["save", IMAGE]);
    let saved = ok(c, "docker save");
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(saved.as_slice());
    for entry in archive.entries().unwrap() {
        let mut e = entry.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut raw = Vec::new();
        e.read_to_end(&mut raw).unwrap();
        files.insert(path, raw);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert!(!layers.is_empty(), "{manifest}");
    layers
        .iter()
        .map(|l| {
            let raw = &files[l.as_str().unwrap()];
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut gz, raw).unwrap();
            (raw.len() as u64, gz.finish().unwrap().len() as u64)
        })
        .collect()
}

#[test]
fn the_runtime_image_is_a_static_mlcd_and_ca_certificates_within_15_mb() {
    let tb = testbed_env(NEED);
    let binary = static_binary();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("Dockerfile"), ctx.path().join("Dockerfile")).unwrap();
    std::fs::copy(&binary, ctx.path().join("mlcd")).unwrap();
    let mut c = docker(&tb);
    let base = &tb["MLCD_TESTBED_BASE_IMAGE"];
    // The classic builder also builds the `prebuilt` stage before `runtime`:
    // it gets the small busybox base (a COPY only) and the same binary.
    let busybox = tb
        .get("MLCD_TESTBED_BUSYBOX_IMAGE")
        .cloned()
        .unwrap_or_else(|| "local/busybox:latest".into());
    c.args(["build", "-q", "--target", "runtime"])
        .args(["--build-arg", &format!("RUST_IMAGE={base}")])
        .args(["--build-arg", &format!("RUNTIME_IMAGE={busybox}")])
        .args(["--build-arg", "BINARY=mlcd", "--build-arg", "PREBUILT=mlcd"])
        .args(["-t", IMAGE])
        .arg(ctx.path());
    ok(c, "docker build --target runtime");

    // It runs with nothing beside it (FROM scratch: no libc, no shell).
    let mut c = docker(&tb);
    c.args(["run", "--rm", "--network", "none", IMAGE, "--version"]);
    let version = String::from_utf8(ok(c, "mlcd --version in the image")).unwrap();
    assert_eq!(
        version.trim(),
        format!("mlcd {}", env!("CARGO_PKG_VERSION"))
    );

    // Exec-form ENTRYPOINT: the runner's INPUT_MODEL-ID reaches mlcd.
    let mut c = docker(&tb);
    c.args([
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}}",
        IMAGE,
    ]);
    let entrypoint = String::from_utf8(ok(c, "docker image inspect")).unwrap();
    assert_eq!(entrypoint.trim(), r#"["/usr/local/bin/mlcd"]"#);

    // Exactly two files: the executable and the CA bundle.
    let mut c = docker(&tb);
    c.args(["create", IMAGE]);
    let id = String::from_utf8(ok(c, "docker create")).unwrap();
    let id = id.trim();
    let mut c = docker(&tb);
    c.args(["export", id]);
    let exported = ok(c, "docker export");
    let mut c = docker(&tb);
    c.args(["rm", id]);
    ok(c, "docker rm");
    let mut files = Vec::new();
    for entry in tar::Archive::new(exported.as_slice()).entries().unwrap() {
        let e = entry.unwrap();
        let path = e.path().unwrap().display().to_string();
        // The engine adds its own mount points (/.dockerenv, /etc/hosts, …) empty.
        if e.header().entry_type().is_file() && e.size() > 0 {
            files.push(path);
        }
    }
    files.sort();
    assert_eq!(
        files,
        ["etc/ssl/certs/ca-certificates.crt", "usr/local/bin/mlcd"]
    );

    let layers = layer_sizes(&tb);
    let stored: u64 = layers.iter().map(|l| l.0).sum();
    let compressed: u64 = layers.iter().map(|l| l.1).sum();
    eprintln!(
        "action image: {} layers, {stored} bytes uncompressed, {compressed} bytes gzip-compressed",
        layers.len()
    );
    assert!(
        compressed <= MAX_COMPRESSED,
        "the image's layers compress to {compressed} bytes, more than {MAX_COMPRESSED}"
    );
}
