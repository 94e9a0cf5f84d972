//! Cloud Storage through its JSON API, as far as local channels need it: does an
//! object exist (`objects.get`), and upload one (`objects.insert`, a simple
//! media upload streamed from disk) — the [`ObjectStore`] Vertex AI training
//! uploads channel directories with.

use std::path::Path;

use async_trait::async_trait;
use reqwest::Method;

use super::client::{GcpClient, GcpError};
use crate::cloud::store::ObjectStore;
use crate::error::UserError;

/// A Cloud Storage client: the JSON API's root (`https://storage.googleapis.com/`,
/// or `CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE`).
pub struct Storage {
    client: GcpClient,
    root: String,
}

/// An object name as one path segment or query value of a URL (`/` included:
/// `%2F`), with the same unreserved set S3 uses.
fn segment(s: &str) -> String {
    crate::cloud::s3::encode(s, true)
}

impl Storage {
    /// A client on `root` (ending in `/`), sharing `client`'s tokens.
    pub fn new(client: GcpClient, root: String) -> Storage {
        Storage { client, root }
    }

    fn upload_url(&self, bucket: &str, key: &str) -> String {
        format!(
            "{}upload/storage/v1/b/{}/o?uploadType=media&name={}",
            self.root,
            segment(bucket),
            segment(key)
        )
    }
}

#[async_trait]
impl ObjectStore for Storage {
    type Error = GcpError;

    fn scheme(&self) -> &'static str {
        "gs"
    }

    fn name(&self) -> &'static str {
        "Cloud Storage"
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, GcpError> {
        let url = format!(
            "{}storage/v1/b/{}/o/{}",
            self.root,
            segment(bucket),
            segment(key)
        );
        match self
            .client
            .call(
                &format!("Cloud Storage get gs://{bucket}/{key}"),
                Method::GET,
                &url,
                None,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        _size: u64,
        _sha256: &str,
    ) -> Result<(), GcpError> {
        self.client
            .upload_file(
                &format!("Cloud Storage upload gs://{bucket}/{key}"),
                &self.upload_url(bucket, key),
                path,
                "application/octet-stream",
            )
            .await
            .map(|_| ())
    }

    async fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), GcpError> {
        self.client
            .upload_bytes(
                &format!("Cloud Storage upload gs://{bucket}/{key}"),
                &self.upload_url(bucket, key),
                &body,
                content_type,
            )
            .await
            .map(|_| ())
    }

    fn upload_error(&self, channel: &str, bucket: &str, e: GcpError) -> UserError {
        let forbidden = matches!(&e, GcpError::Api { status: 403, .. } | GcpError::Auth(_));
        let err = UserError::failed(format!(
            "uploading channel `{channel}` to gs://{bucket}: {e}"
        ));
        if forbidden {
            err.hint(format!(
                "the credentials may not write to gs://{bucket}: grant roles/storage.objectAdmin on the bucket (vertex.staging-bucket), or upload the data yourself and set `train.channels.{channel}` to its gs:// URI"
            ))
        } else {
            err
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_one_path_segment() {
        assert_eq!(
            segment("mlcd/channels/churn/train/ab c.csv"),
            "mlcd%2Fchannels%2Fchurn%2Ftrain%2Fab%20c.csv"
        );
    }
}
