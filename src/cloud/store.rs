//! One capability two clouds share: the object store local channel directories
//! are uploaded to (S3 for SageMaker, Cloud Storage for Vertex AI), as
//! `train::upload` uses it.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::error::UserError;

/// An object store: enough to upload a directory content-addressed.
#[async_trait]
pub trait ObjectStore: Sync {
    /// What a call fails with.
    type Error: Send;

    /// The URI scheme of its objects: `s3` or `gs`.
    fn scheme(&self) -> &'static str;

    /// Its name in messages ("S3", "Cloud Storage").
    fn name(&self) -> &'static str;

    /// Whether `key` exists in `bucket`.
    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, Self::Error>;

    /// Uploads the file at `path` (`size` bytes, content SHA-256 `sha256`, hex).
    async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        size: u64,
        sha256: &str,
    ) -> Result<(), Self::Error>;

    /// Uploads `body` as `key`.
    async fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), Self::Error>;

    /// A failure while uploading channel `channel` to `bucket`, with what to do.
    fn upload_error(&self, channel: &str, bucket: &str, e: Self::Error) -> UserError;
}

/// A request body streaming `len` bytes of the file at `path` from `offset`.
pub fn file_body(path: PathBuf, offset: u64, len: u64) -> reqwest::Body {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let state = (path, None::<tokio::io::Take<tokio::fs::File>>);
    let stream = futures_util::stream::try_unfold(state, move |(path, file)| async move {
        let mut file = match file {
            Some(f) => f,
            None => {
                let mut f = tokio::fs::File::open(&path).await?;
                f.seek(std::io::SeekFrom::Start(offset)).await?;
                f.take(len)
            }
        };
        let mut buf = vec![0; 256 * 1024];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((buf, (path, Some(file)))))
    });
    reqwest::Body::wrap_stream(stream)
}
