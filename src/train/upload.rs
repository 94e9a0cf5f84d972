//! Local channel directories made reachable by SageMaker (S3) and Vertex AI (Cloud
//! Storage), content-addressed: a directory is walked and hashed (sorted relative
//! paths, sizes and contents' SHA-256), and uploaded to
//! `<scheme>://<bucket>/mlcd/channels/<model>/<channel>/<digest>/…` with a manifest
//! written LAST at `…/<channel>/<digest>.complete`. A run that finds the manifest
//! (one read) uploads nothing — build-once, for data; an upload that was
//! interrupted left no manifest and is done again. The manifest sits beside the
//! prefix, not under it, so the training service never copies it into the container.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};

use crate::cloud::store::ObjectStore;
use crate::error::UserError;

/// How many files go up at once.
const PARALLEL_UPLOADS: usize = 8;

/// How deep a channel directory may nest (a guard against symlink loops).
const MAX_DEPTH: usize = 64;

/// One file of a channel directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The path below the channel directory, `/`-separated (the S3 key's tail).
    pub rel: String,
    /// Bytes.
    pub size: u64,
    /// The content's SHA-256, hex.
    pub sha256: String,
}

/// A channel directory, walked and hashed.
#[derive(Debug, Clone)]
pub struct DirManifest {
    /// The directory.
    pub root: PathBuf,
    /// Its files, sorted by `rel`.
    pub files: Vec<FileEntry>,
    /// Their total size.
    pub bytes: u64,
    /// SHA-256 (hex) over every file's path, size and content hash, in order:
    /// the same files give the same digest on every machine, whatever their mtimes.
    pub digest: String,
}

/// Walks and hashes `root` (symlinks followed; special files refused). Blocking:
/// reads every byte once.
pub fn hash_dir(root: &Path) -> Result<DirManifest, io::Error> {
    let mut files = Vec::new();
    walk(root, "", 0, &mut files)?;
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    let mut hasher = Sha256::new();
    hasher.update(b"mlcd-channel-v1\n");
    let mut bytes = 0u64;
    for f in &files {
        hasher.update(f.rel.as_bytes());
        hasher.update(b"\0");
        hasher.update(f.size.to_string().as_bytes());
        hasher.update(b"\0");
        hasher.update(f.sha256.as_bytes());
        hasher.update(b"\n");
        bytes += f.size;
    }
    Ok(DirManifest {
        root: root.to_path_buf(),
        files,
        bytes,
        digest: format!("{:x}", hasher.finalize()),
    })
}

fn walk(dir: &Path, rel: &str, depth: usize, out: &mut Vec<FileEntry>) -> Result<(), io::Error> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "{} nests deeper than {MAX_DEPTH} directories (a symlink loop?)",
            dir.display()
        )));
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| {
            io::Error::other(format!(
                "{} is not a UTF-8 name (S3 keys are UTF-8)",
                entry.path().display()
            ))
        })?;
        let child = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let path = entry.path();
        // Follows symlinks, as a bind mount of the directory would show them.
        let meta = std::fs::metadata(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        if meta.is_dir() {
            walk(&path, &child, depth + 1, out)?;
        } else if meta.is_file() {
            let sha256 = hash_file(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            out.push(FileEntry {
                rel: child,
                size: meta.len(),
                sha256,
            });
        } else {
            return Err(io::Error::other(format!(
                "{} is neither a file nor a directory (a socket or a device?)",
                path.display()
            )));
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> Result<String, io::Error> {
    crate::cloud::s3::sha256_hex_of(std::fs::File::open(path)?)
}

/// Where a channel's content goes in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelKeys {
    /// The key prefix of the files, ending in `/` (SageMaker's S3Prefix).
    pub prefix: String,
    /// The manifest, written last: its presence means the prefix is complete.
    pub marker: String,
}

/// `mlcd/channels/<model>/<channel>/<digest>/` and `…/<digest>.complete`.
pub fn channel_keys(model: &str, channel: &str, digest: &str) -> ChannelKeys {
    let base = format!("mlcd/channels/{model}/{channel}/{digest}");
    ChannelKeys {
        prefix: format!("{base}/"),
        marker: format!("{base}.complete"),
    }
}

/// The manifest's text: the digest and every file, as JSON.
pub fn manifest_json(m: &DirManifest) -> String {
    let files: Vec<serde_json::Value> = m
        .files
        .iter()
        .map(|f| serde_json::json!({ "path": f.rel, "size": f.size, "sha256": f.sha256 }))
        .collect();
    let doc = serde_json::json!({
        "mlcd-channel": 1,
        "digest": m.digest,
        "bytes": m.bytes,
        "files": files,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// `1 file`, `12 files`.
fn files(n: usize) -> String {
    if n == 1 {
        "1 file".into()
    } else {
        format!("{n} files")
    }
}

/// A size for people: `812 B`, `12.3 kB`, `4.1 MB`, `2.0 GB` (powers of 1000).
pub fn show_bytes(n: u64) -> String {
    let mut s = String::new();
    let f = n as f64;
    let _ = match n {
        0..1_000 => write!(s, "{n} B"),
        1_000..1_000_000 => write!(s, "{:.1} kB", f / 1e3),
        1_000_000..1_000_000_000 => write!(s, "{:.1} MB", f / 1e6),
        _ => write!(s, "{:.1} GB", f / 1e9),
    };
    s
}

/// What happened to a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its manifest was in S3: nothing was sent.
    Skipped,
    /// This many files and bytes were sent.
    Uploaded {
        /// Files sent.
        files: usize,
        /// Bytes sent.
        bytes: u64,
    },
}

/// Uploads the channel directory `dir` of `model` to `bucket` of `store` unless its
/// content is there already, and returns the `s3://…/` or `gs://…/` prefix the
/// training service reads it from. `say` gets one line when the upload starts and
/// one when it is done or skipped.
pub async fn upload_channel<S: ObjectStore>(
    store: &S,
    bucket: &str,
    model: &str,
    channel: &str,
    dir: &Path,
    say: &(dyn for<'l> Fn(&'l str) + Sync),
) -> Result<(String, Outcome), UserError> {
    let key_hint = format!("`train.channels.{channel}`");
    let meta = std::fs::metadata(dir).map_err(|e| {
        UserError::invalid(format!(
            "channel `{channel}` ({key_hint}): cannot read {}: {e}",
            dir.display()
        ))
        .hint(format!(
            "set {key_hint} to a directory of the workspace, or to an {}:// URI",
            store.scheme()
        ))
    })?;
    if !meta.is_dir() {
        return Err(UserError::invalid(format!(
            "channel `{channel}` ({key_hint}): {} is a file, not a directory",
            dir.display()
        ))
        .hint(format!(
            "a channel is a directory (mounted at /opt/ml/input/data/{channel}/): point {key_hint} at the directory holding the file"
        )));
    }
    let root = dir.to_path_buf();
    let manifest = tokio::task::spawn_blocking(move || hash_dir(&root))
        .await
        .map_err(|e| UserError::failed(format!("hashing channel `{channel}` failed: {e}")))?
        .map_err(|e| {
            UserError::invalid(format!(
                "channel `{channel}` ({key_hint}): cannot read {}: {e}",
                dir.display()
            ))
        })?;
    if manifest.files.is_empty() {
        return Err(UserError::invalid(format!(
            "channel `{channel}` ({key_hint}): {} holds no files, and a training job cannot mount an empty channel",
            dir.display()
        ))
        .hint(format!("put the data in it, or remove {key_hint}")));
    }
    let keys = channel_keys(model, channel, &manifest.digest);
    let uri = format!("{}://{bucket}/{}", store.scheme(), keys.prefix);
    let store_error = |e: S::Error| store.upload_error(channel, bucket, e);

    if store
        .exists(bucket, &keys.marker)
        .await
        .map_err(store_error)?
    {
        say(&format!(
            "channel `{channel}`: {} ({}) already in {} at {uri}, skipped",
            files(manifest.files.len()),
            show_bytes(manifest.bytes),
            store.name()
        ));
        return Ok((uri, Outcome::Skipped));
    }
    say(&format!(
        "channel `{channel}`: uploading {} ({}) from {} to {uri}",
        files(manifest.files.len()),
        show_bytes(manifest.bytes),
        dir.display()
    ));
    futures_util::stream::iter(manifest.files.iter().map(Ok::<_, S::Error>))
        .try_for_each_concurrent(PARALLEL_UPLOADS, |f| {
            let key = format!("{}{}", keys.prefix, f.rel);
            let path = dir.join(&f.rel);
            async move { store.put_file(bucket, &key, &path, f.size, &f.sha256).await }
        })
        .await
        .map_err(store_error)?;
    // Last: the manifest says the prefix is complete.
    store
        .put_bytes(
            bucket,
            &keys.marker,
            manifest_json(&manifest).into_bytes(),
            "application/json",
        )
        .await
        .map_err(store_error)?;
    say(&format!(
        "channel `{channel}`: uploaded {} ({})",
        files(manifest.files.len()),
        show_bytes(manifest.bytes)
    ));
    Ok((
        uri,
        Outcome::Uploaded {
            files: manifest.files.len(),
            bytes: manifest.bytes,
        },
    ))
}

/// `spec` with each local channel uploaded to `bucket` of `store` (see
/// [`upload_channel`]) and replaced by the URI the training service reads.
pub async fn stage_channels<S: ObjectStore>(
    store: &S,
    bucket: &str,
    spec: &super::JobSpec,
    say: &(dyn for<'l> Fn(&'l str) + Sync),
) -> Result<super::JobSpec, UserError> {
    let mut staged = spec.clone();
    for (name, channel) in &mut staged.channels {
        if let super::Channel::Local(dir) = channel {
            let (uri, _) =
                upload_channel(store, bucket, &spec.identity.model, name, dir, say).await?;
            *channel = super::Channel::Remote(uri);
        }
    }
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_depends_on_paths_and_contents_only() {
        let a = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(a.path().join("sub")).unwrap();
        std::fs::write(a.path().join("sub/x.csv"), "1,2\n").unwrap();
        std::fs::write(a.path().join("b.csv"), "3,4\n").unwrap();
        let m = hash_dir(a.path()).unwrap();
        assert_eq!(
            m.files.iter().map(|f| f.rel.as_str()).collect::<Vec<_>>(),
            ["b.csv", "sub/x.csv"]
        );
        assert_eq!(m.bytes, 8);
        assert_eq!(m.files[0].sha256, crate::cloud::s3::sha256_hex(b"3,4\n"));

        // The same files elsewhere, written in another order: the same digest.
        let b = tempfile::tempdir().unwrap();
        std::fs::write(b.path().join("b.csv"), "3,4\n").unwrap();
        std::fs::create_dir_all(b.path().join("sub")).unwrap();
        std::fs::write(b.path().join("sub/x.csv"), "1,2\n").unwrap();
        assert_eq!(hash_dir(b.path()).unwrap().digest, m.digest);

        // One byte changed, or a file renamed: another digest.
        std::fs::write(b.path().join("sub/x.csv"), "1,3\n").unwrap();
        assert_ne!(hash_dir(b.path()).unwrap().digest, m.digest);
        std::fs::write(b.path().join("sub/x.csv"), "1,2\n").unwrap();
        std::fs::rename(b.path().join("b.csv"), b.path().join("c.csv")).unwrap();
        assert_ne!(hash_dir(b.path()).unwrap().digest, m.digest);
    }

    #[test]
    fn the_manifest_sits_beside_the_prefix_not_under_it() {
        let k = channel_keys("churn", "train", "abc");
        assert_eq!(k.prefix, "mlcd/channels/churn/train/abc/");
        assert_eq!(k.marker, "mlcd/channels/churn/train/abc.complete");
        assert!(!k.marker.starts_with(&k.prefix));
    }

    #[test]
    fn the_manifest_lists_every_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "x").unwrap();
        let m = hash_dir(d.path()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&manifest_json(&m)).unwrap();
        assert_eq!(v["digest"], m.digest.as_str());
        assert_eq!(v["files"][0]["path"], "a");
        assert_eq!(v["files"][0]["size"], 1);
    }

    #[test]
    fn sizes_read_like_sizes() {
        assert_eq!(show_bytes(812), "812 B");
        assert_eq!(show_bytes(12_345), "12.3 kB");
        assert_eq!(show_bytes(4_100_000), "4.1 MB");
        assert_eq!(show_bytes(2_000_000_000), "2.0 GB");
        assert_eq!(files(1), "1 file");
        assert_eq!(files(3), "3 files");
    }
}
