//! What mlcd does inside a Kubernetes training pod for `s3://` storage (the
//! hidden `mlcd pod-storage` subcommand, run from the mlcd image): `fetch`
//! copies a channel's objects into the directory the trainer sees as
//! `/opt/ml/input/data/<channel>` (an init container), and `keep-model` waits
//! for the pod's end (SIGTERM, as a native sidecar) and uploads `/opt/ml/model`
//! as `model.tar.gz`, unless the training wrote `/opt/ml/output/failure`.
//! Credentials come from mlcd's AWS chain (environment, web identity), never
//! from arguments.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::cloud::aws::{AwsClient, AwsCredentials};
use crate::cloud::s3::{sha256_hex_of, S3Client};
use crate::error::UserError;
use crate::train::upload::{hash_dir, show_bytes};

/// The environment variable the `mlcd-fetch` container reads its channels
/// from: a JSON object `{"train": "s3://bucket/prefix", …}`.
pub const FETCH_ENV: &str = "MLCD_FETCH";
/// The environment variable the `mlcd-keep-model` container reads the model's
/// destination from (`s3://bucket/key/model.tar.gz`); unset, it keeps nothing.
pub const MODEL_ENV: &str = "MLCD_MODEL_URI";
/// How `keep-model` says the training failed (its message, which mlcd reads
/// back as the failure's reason): `<prefix><reason><suffix>`.
pub const FAILED_PREFIX: &str = "the training failed: ";
/// See [`FAILED_PREFIX`].
pub const NOT_UPLOADED_SUFFIX: &str = "; no model uploaded";
/// How `keep-model`'s message starts when the model was uploaded (mlcd checks it).
pub const UPLOADED_PREFIX: &str = "uploaded ";
/// Where channels go in the pod (the SageMaker container contract).
pub const DATA_DIR: &str = "/opt/ml/input/data";
/// What the trainer leaves as its model.
pub const MODEL_DIR: &str = "/opt/ml/model";
/// What the trainer writes when it fails.
pub const FAILURE_FILE: &str = "/opt/ml/output/failure";

/// One `mlcd pod-storage` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodStorage {
    /// Copy every object under `from` (an `s3://bucket/prefix`) into `to`;
    /// without them, every channel of [`FETCH_ENV`] into `DATA_DIR/<channel>`.
    Fetch {
        from: Option<String>,
        to: Option<PathBuf>,
    },
    /// On SIGTERM, pack `from` as a gzip'd tar and upload it to `to` (an
    /// `s3://bucket/key` object; default [`MODEL_ENV`]), unless `failure`
    /// holds a reason; what was done goes to `message` (the container's termination
    /// message file) too.
    KeepModel {
        from: PathBuf,
        to: Option<String>,
        failure: PathBuf,
        message: Option<PathBuf>,
    },
}

/// `s3://bucket/key-or-prefix` → (bucket, key-or-prefix).
pub fn parse_s3(uri: &str) -> Result<(String, String), String> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| format!("`{uri}` is not an s3:// URI"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!(
            "`{uri}` names no bucket: expected s3://bucket/path"
        ));
    }
    Ok((bucket.to_string(), key.to_string()))
}

/// Where the object `key`, listed under `prefix`, goes below the channel
/// directory; `None` for folder markers. A key that is the prefix itself (a
/// channel naming one object) keeps its file name. Refuses `..`.
fn relative(prefix: &str, key: &str) -> Result<Option<PathBuf>, String> {
    if key.ends_with('/') {
        return Ok(None);
    }
    let rel = if key == prefix {
        key.rsplit('/').next().unwrap_or(key)
    } else {
        key[prefix.len()..].trim_start_matches('/')
    };
    let path = PathBuf::from(rel);
    if rel.is_empty()
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "object key `{key}` does not make a path below the channel directory"
        ));
    }
    Ok(Some(path))
}

fn client(env: &BTreeMap<String, String>) -> Result<S3Client, UserError> {
    let region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|k| env.get(*k).filter(|v| !v.is_empty()))
        .ok_or_else(|| {
            UserError::invalid("mlcd pod-storage needs AWS_REGION (or AWS_DEFAULT_REGION)")
                .hint("give the container AWS_REGION (from the secret its credentials come from, or its env)")
        })?;
    let creds = AwsCredentials::from_env(env)?;
    S3Client::new(AwsClient::new(creds, region.as_str())?, env)
}

/// Copies every object under `from` into `to`; returns (files, bytes).
pub async fn fetch(s3: &S3Client, from: &str, to: &Path) -> Result<(usize, u64), UserError> {
    let (bucket, prefix) = parse_s3(from).map_err(UserError::invalid)?;
    let objects = s3.list_objects(&bucket, &prefix).await?;
    // `data/train` must not take `data/train2/…`: whole path segments only.
    let objects: Vec<_> = objects
        .into_iter()
        .filter(|(k, _)| {
            prefix.is_empty()
                || prefix.ends_with('/')
                || *k == prefix
                || k[prefix.len()..].starts_with('/')
        })
        .collect();
    if objects.is_empty() {
        return Err(UserError::invalid(format!(
            "no object under `{from}`: the channel would be empty"
        ))
        .hint("check the channel's URI in `train.channels` and that the data was uploaded there"));
    }
    let (mut files, mut bytes) = (0, 0);
    for (key, size) in objects {
        let Some(rel) = relative(&prefix, &key).map_err(UserError::invalid)? else {
            continue;
        };
        let target = to.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                UserError::failed(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let body = s3.get_object(&bucket, &key).await?;
        std::fs::write(&target, &body)
            .map_err(|e| UserError::failed(format!("cannot write {}: {e}", target.display())))?;
        files += 1;
        bytes += size;
    }
    Ok((files, bytes))
}

/// Packs the files below `dir` (paths relative to it, as SageMaker's
/// model.tar.gz holds them) into the gzip'd tar `target`.
pub fn pack(dir: &Path, target: &Path) -> std::io::Result<()> {
    let manifest = hash_dir(dir)?;
    let file = std::fs::File::create(target)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut out = tar::Builder::new(gz);
    out.follow_symlinks(true);
    for f in &manifest.files {
        out.append_path_with_name(dir.join(&f.rel), &f.rel)?;
    }
    out.into_inner()?.finish()?.sync_all()
}

/// Packs `from` and uploads it to `to` unless `failure` exists; returns what
/// was done, for the log.
pub async fn upload_model(
    s3: &S3Client,
    from: &Path,
    to: &str,
    failure: &Path,
) -> Result<String, UserError> {
    // Non-empty only: the kubelet creates an empty file there when it is the
    // trainer's terminationMessagePath (it bind-mounts the message file).
    let reason = std::fs::read_to_string(failure).unwrap_or_default();
    if !reason.trim().is_empty() {
        let reason: String = reason.trim().chars().take(1024).collect();
        return Ok(format!("{FAILED_PREFIX}{reason}{NOT_UPLOADED_SUFFIX}"));
    }
    let (bucket, key) = parse_s3(to).map_err(UserError::invalid)?;
    let tmp = std::env::temp_dir().join(format!("mlcd-model-{}.tar.gz", std::process::id()));
    let (f, t) = (from.to_path_buf(), tmp.clone());
    tokio::task::spawn_blocking(move || pack(&f, &t))
        .await
        .map_err(|e| UserError::failed(format!("packing the model: {e}")))?
        .map_err(|e| UserError::failed(format!("cannot pack {}: {e}", from.display())))?;
    let size = std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
    let sha = std::fs::File::open(&tmp)
        .and_then(sha256_hex_of)
        .map_err(|e| UserError::failed(format!("cannot read {}: {e}", tmp.display())))?;
    let put = s3.put_file(&bucket, &key, &tmp, size, &sha).await;
    let _ = std::fs::remove_file(&tmp);
    put?;
    Ok(format!("{UPLOADED_PREFIX}{} as {to}", show_bytes(size)))
}

/// The channels of [`FETCH_ENV`]: `{"channel": "s3://…"}`.
pub fn channels_from_env(
    env: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, UserError> {
    let Some(text) = env.get(FETCH_ENV).filter(|t| !t.trim().is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let channels: BTreeMap<String, String> = serde_json::from_str(text).map_err(|e| {
        UserError::invalid(format!(
            "{FETCH_ENV} is not a JSON object of channel names to s3:// URIs: {e}"
        ))
        .hint("the pod's mlcd-fetch container gets it from mlcd: re-render the job with the same mlcd version as the image")
    })?;
    for ch in channels.keys() {
        if ch.is_empty() || ch.contains(['/', '\\']) || ch == "." || ch == ".." {
            return Err(UserError::invalid(format!(
                "{FETCH_ENV} names the channel `{ch}`, which is not a directory name"
            )));
        }
    }
    Ok(channels)
}

/// The node index of an Indexed Job's pod (`JOB_COMPLETION_INDEX`), if any:
/// only node 0 keeps the model, as SageMaker keeps the first host's.
fn node_index(env: &BTreeMap<String, String>) -> Option<String> {
    env.get("JOB_COMPLETION_INDEX")
        .filter(|i| !i.trim().is_empty() && i.trim() != "0")
        .cloned()
}

/// Waits for SIGTERM or SIGINT (a native sidecar is stopped with SIGTERM once
/// the pod's main containers have ended).
async fn until_terminated() -> Result<(), UserError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| UserError::failed(format!("cannot wait for SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| UserError::failed(format!("cannot wait for SIGINT: {e}")))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// Runs one command.
pub async fn run(cmd: PodStorage, env: &BTreeMap<String, String>) -> Result<(), UserError> {
    match cmd {
        PodStorage::Fetch { from, to } => {
            let jobs: Vec<(String, PathBuf)> = match (from, to) {
                (Some(from), Some(to)) => vec![(from, to)],
                _ => channels_from_env(env)?
                    .into_iter()
                    .map(|(ch, uri)| (uri, Path::new(DATA_DIR).join(ch)))
                    .collect(),
            };
            if jobs.is_empty() {
                eprintln!("mlcd pod-storage: no s3:// channel to fetch");
                return Ok(());
            }
            let s3 = client(env)?;
            for (from, to) in jobs {
                let (files, bytes) = fetch(&s3, &from, &to).await?;
                eprintln!(
                    "mlcd pod-storage: {files} files, {} from {from} into {}",
                    show_bytes(bytes),
                    to.display()
                );
            }
        }
        PodStorage::KeepModel {
            from,
            to,
            failure,
            message,
        } => {
            let to = to.or_else(|| env.get(MODEL_ENV).filter(|t| !t.is_empty()).cloned());
            let say = |text: &str| {
                eprintln!("mlcd pod-storage: {text}");
                if let Some(m) = &message {
                    if let Err(e) = std::fs::write(m, text) {
                        eprintln!("mlcd pod-storage: cannot write {}: {e}", m.display());
                    }
                }
            };
            // Checked before waiting, so that a bad setup shows in the log at
            // once; the credentials too, unless this pod keeps nothing.
            let keep = match (&to, node_index(env)) {
                (Some(to), None) => Some((to.clone(), client(env)?)),
                _ => None,
            };
            match &keep {
                Some((to, _)) => eprintln!(
                    "mlcd pod-storage: keeping {} for {to} until the pod ends",
                    from.display()
                ),
                None => eprintln!(
                    "mlcd pod-storage: nothing to keep from this pod; waiting for its end"
                ),
            }
            until_terminated().await?;
            let Some((to, s3)) = keep else {
                match node_index(env) {
                    Some(i) => say(&format!("node {i}: only node 0 keeps the model")),
                    None => say(&format!("{MODEL_ENV} is not set: no model kept")),
                }
                return Ok(());
            };
            match upload_model(&s3, &from, &to, &failure).await {
                Ok(done) => say(&done),
                Err(e) => {
                    say(&format!(
                        "the model was not uploaded to {to}: {}",
                        e.message
                    ));
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_uris_split_into_bucket_and_key() {
        assert_eq!(
            parse_s3("s3://b/data/train").unwrap(),
            ("b".into(), "data/train".into())
        );
        assert_eq!(parse_s3("s3://b").unwrap(), ("b".into(), "".into()));
        assert!(parse_s3("gs://b/x").is_err());
        assert!(parse_s3("s3:///x").is_err());
    }

    #[test]
    fn keys_land_below_the_channel_directory() {
        let rel = |p: &str, k: &str| relative(p, k).map(|o| o.map(|p| p.display().to_string()));
        assert_eq!(
            rel("data/train", "data/train/a.csv"),
            Ok(Some("a.csv".into()))
        );
        assert_eq!(
            rel("data/train/", "data/train/x/b.csv"),
            Ok(Some("x/b.csv".into()))
        );
        assert_eq!(rel("data/t.csv", "data/t.csv"), Ok(Some("t.csv".into())));
        assert_eq!(rel("data/train", "data/train/"), Ok(None));
        assert!(rel("data", "data/../etc/passwd").is_err());
    }

    #[test]
    fn pack_keeps_paths_relative_to_the_model_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("m/sub")).unwrap();
        std::fs::write(dir.path().join("m/model.json"), "{}").unwrap();
        std::fs::write(dir.path().join("m/sub/w.bin"), [1u8, 2, 3]).unwrap();
        let tgz = dir.path().join("model.tar.gz");
        pack(&dir.path().join("m"), &tgz).unwrap();
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(&tgz).unwrap());
        let mut names: Vec<String> = tar::Archive::new(gz)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["model.json", "sub/w.bin"]);
    }
}
