//! A small Amazon S3 client over the shared signing client ([`AwsClient`]): the few
//! REST-XML calls mlcd needs to put local data where SageMaker reads it —
//! HeadBucket, CreateBucket, HeadObject, PutObject (streamed from the file, never
//! read whole) and, for files over [`MULTIPART_THRESHOLD`], a multipart upload.
//! The endpoint follows `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` like every other
//! service; a configured endpoint (moto, MinIO, a VPC endpoint) is addressed
//! path-style (`{endpoint}/{bucket}/{key}`), AWS itself virtual-hosted
//! (`{bucket}.s3.{region}.amazonaws.com`). S3's XML error bodies become the shared
//! [`AwsError`], so throttling (`SlowDown`) and 5xx are retried through the shared
//! [`retry`](crate::cloud::retry) and refused credentials are not.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use sha2::{Digest, Sha256};

use crate::cloud::aws::{self, AwsClient, AwsError, Payload, Signing};
use crate::cloud::retry::retry;
use crate::error::UserError;
use crate::secrets::redact;

/// Files larger than this go up as a multipart upload, in parts of this size.
pub const MULTIPART_THRESHOLD: u64 = 64 * 1024 * 1024;

/// The SHA-256 of an empty body, as S3 wants it in `x-amz-content-sha256`.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// How much of a file one read of the upload stream takes.
const CHUNK: usize = 256 * 1024;

/// The slowest upload speed tolerated before a request times out (bytes per
/// second), on top of the client's usual minute: a 64 MiB part gets 60 s + 128 s.
const MIN_UPLOAD_RATE: u64 = 512 * 1024;

/// An S3 client for one region.
#[derive(Debug, Clone)]
pub struct S3Client {
    aws: AwsClient,
    endpoint: Url,
    path_style: bool,
}

/// What HeadObject tells of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Bytes.
    pub size: u64,
    /// `Last-Modified`, as S3 sends it.
    pub last_modified: Option<String>,
    /// `ETag`, as S3 sends it.
    pub etag: Option<String>,
}

/// Whether a bucket is there for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketState {
    /// It exists and these credentials may use it.
    Ours,
    /// No bucket has that name.
    Missing,
}

impl S3Client {
    /// A client for `aws`'s region; the endpoint from `AWS_ENDPOINT_URL_S3` /
    /// `AWS_ENDPOINT_URL` in `env` (path-style), else AWS's (virtual-hosted).
    pub fn new(aws: AwsClient, env: &BTreeMap<String, String>) -> Result<Self, UserError> {
        let region = aws.region().to_string();
        let endpoint = aws::endpoint(&aws::S3, &region, env)?;
        let configured = endpoint != aws::endpoint(&aws::S3, &region, &BTreeMap::new())?;
        let endpoint = Url::parse(&endpoint)
            .map_err(|e| UserError::invalid(format!("the S3 endpoint `{endpoint}`: {e}")))?;
        Ok(S3Client {
            aws,
            endpoint,
            path_style: configured,
        })
    }

    /// The region the client signs for.
    pub fn region(&self) -> &str {
        self.aws.region()
    }

    /// The URL of `key` in `bucket` (the bucket itself when `key` is empty), with
    /// `query` (names and values percent-encoded here).
    pub fn url(&self, bucket: &str, key: &str, query: &[(&str, &str)]) -> Url {
        let key = encode(key, false);
        // Virtual-hosted unless a configured endpoint, or a bucket with dots
        // (which breaks the wildcard certificate).
        let mut s = if self.path_style || bucket.contains('.') {
            let base = self.endpoint.as_str().trim_end_matches('/');
            format!("{base}/{}/{key}", encode(bucket, true))
        } else {
            let host = self.endpoint.host_str().unwrap_or_default();
            let port = self
                .endpoint
                .port()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            format!("{}://{bucket}.{host}{port}/{key}", self.endpoint.scheme())
        };
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        encode(k, true)
                    } else {
                        format!("{}={}", encode(k, true), encode(v, true))
                    }
                })
                .collect();
            s.push('?');
            s.push_str(&q.join("&"));
        }
        Url::parse(&s).expect("an S3 URL built from a parsed endpoint")
    }

    /// One request, retried while the failure is transient: `make` builds it anew
    /// for each attempt (a streamed body cannot be sent twice) and `read` turns a
    /// successful answer into the result.
    async fn call<T, M, R, Fut>(&self, what: &str, make: M, read: R) -> Result<T, AwsError>
    where
        M: Fn() -> Result<reqwest::RequestBuilder, AwsError>,
        R: Fn(reqwest::Response) -> Fut,
        Fut: std::future::Future<Output = Result<T, AwsError>>,
    {
        retry(what, self.aws.backoff(), AwsError::is_transient, || async {
            let resp = make()?
                .send()
                .await
                .map_err(|e| aws::send_error(what, &e))?;
            let status = resp.status();
            if !status.is_success() {
                let region = resp
                    .headers()
                    .get("x-amz-bucket-region")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = resp.bytes().await.unwrap_or_default();
                return Err(parse_error(status.as_u16(), &body, region.as_deref()));
            }
            read(resp).await
        })
        .await
    }

    fn request(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, &str)],
        payload: Payload<'_>,
    ) -> Result<reqwest::RequestBuilder, AwsError> {
        self.aws.signed(
            aws::S3.signing_name,
            Signing::S3,
            method,
            url,
            headers,
            payload,
        )
    }

    /// HeadBucket: whether `bucket` exists for these credentials. A bucket that
    /// exists but is not theirs is an [`AwsError::Auth`] (HTTP 403).
    pub async fn head_bucket(&self, bucket: &str) -> Result<BucketState, AwsError> {
        let url = self.url(bucket, "", &[]);
        let what = format!("S3 HeadBucket {bucket}");
        let r = self
            .call(
                &what,
                || self.request(Method::HEAD, &url, &[], Payload::Bytes(b"")),
                |_| async { Ok(()) },
            )
            .await;
        match r {
            Ok(()) => Ok(BucketState::Ours),
            Err(e) if is_not_found(&e) => Ok(BucketState::Missing),
            Err(e) => Err(e),
        }
    }

    /// CreateBucket in the client's region (a `LocationConstraint` everywhere but
    /// us-east-1, as S3 wants). A bucket these credentials already own is fine.
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), AwsError> {
        let url = self.url(bucket, "", &[]);
        let body = create_bucket_body(self.region());
        let hash = sha256_hex(body.as_bytes());
        let what = format!("S3 CreateBucket {bucket}");
        let r = self
            .call(
                &what,
                || {
                    let payload = if body.is_empty() {
                        Payload::Sha256(EMPTY_SHA256)
                    } else {
                        Payload::Sha256(&hash)
                    };
                    Ok(self
                        .request(Method::PUT, &url, &[], payload)?
                        .body(body.clone()))
                },
                |_| async { Ok(()) },
            )
            .await;
        match r {
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            other => other,
        }
    }

    /// HeadObject: the object's size and time, or `None` when there is no such key.
    pub async fn head_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectInfo>, AwsError> {
        let url = self.url(bucket, key, &[]);
        let what = format!("S3 HeadObject s3://{bucket}/{key}");
        let r = self
            .call(
                &what,
                || self.request(Method::HEAD, &url, &[], Payload::Bytes(b"")),
                |resp| async move {
                    let header = |name: &str| {
                        resp.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    Ok(ObjectInfo {
                        size: header("content-length")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0),
                        last_modified: header("last-modified"),
                        etag: header("etag"),
                    })
                },
            )
            .await;
        match r {
            Ok(info) => Ok(Some(info)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// ListObjectsV2: every key under `prefix` with its size, in key order
    /// (following continuation tokens).
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<(String, u64)>, AwsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(t) = &token {
                query.push(("continuation-token", t.as_str()));
            }
            let url = self.url(bucket, "", &query);
            let what = format!("S3 ListObjectsV2 s3://{bucket}/{prefix}");
            let page: ListBucketXml = self
                .call(
                    &what,
                    || self.request(Method::GET, &url, &[], Payload::Bytes(b"")),
                    |resp| async move {
                        let text = resp
                            .text()
                            .await
                            .map_err(|e| aws::send_error("S3 ListObjectsV2", &e))?;
                        quick_xml::de::from_str::<ListBucketXml>(&text).map_err(|e| {
                            AwsError::other(format!(
                                "S3 ListObjectsV2: an answer that does not parse: {e}"
                            ))
                        })
                    },
                )
                .await?;
            out.extend(page.contents.into_iter().map(|c| (c.key, c.size)));
            match page.next_continuation_token {
                Some(t) if page.is_truncated => token = Some(t),
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }

    /// GetObject: the object's bytes.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, AwsError> {
        let url = self.url(bucket, key, &[]);
        let what = format!("S3 GetObject s3://{bucket}/{key}");
        self.call(
            &what,
            || self.request(Method::GET, &url, &[], Payload::Bytes(b"")),
            |resp| async move {
                resp.bytes()
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| aws::send_error("S3 GetObject", &e))
            },
        )
        .await
    }

    /// PutObject of a small body held in memory.
    pub async fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), AwsError> {
        let url = self.url(bucket, key, &[]);
        let hash = sha256_hex(&body);
        let what = format!("S3 PutObject s3://{bucket}/{key}");
        let headers = [("content-type", content_type)];
        self.call(
            &what,
            || {
                Ok(self
                    .request(Method::PUT, &url, &headers, Payload::Sha256(&hash))?
                    .body(body.clone()))
            },
            |_| async { Ok(()) },
        )
        .await
    }

    /// Uploads the file at `path` (`size` bytes, content SHA-256 `sha256` in hex,
    /// both as hashed beforehand) to `key`: one streamed PutObject, or a multipart
    /// upload above [`MULTIPART_THRESHOLD`]. S3 checks the content against the
    /// hash, so a file changed since it was hashed fails instead of landing.
    pub async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        size: u64,
        sha256: &str,
    ) -> Result<(), AwsError> {
        if size > MULTIPART_THRESHOLD {
            return self.put_multipart(bucket, key, path, size).await;
        }
        let url = self.url(bucket, key, &[]);
        let what = format!("S3 PutObject s3://{bucket}/{key}");
        let length = size.to_string();
        let headers = [
            ("content-type", "application/octet-stream"),
            ("content-length", length.as_str()),
        ];
        self.call(
            &what,
            || {
                Ok(self
                    .request(Method::PUT, &url, &headers, Payload::Sha256(sha256))?
                    .timeout(upload_timeout(size))
                    .body(crate::cloud::store::file_body(path.to_path_buf(), 0, size)))
            },
            |_| async { Ok(()) },
        )
        .await
    }

    async fn put_multipart(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        size: u64,
    ) -> Result<(), AwsError> {
        let what = format!("S3 CreateMultipartUpload s3://{bucket}/{key}");
        let url = self.url(bucket, key, &[("uploads", "")]);
        let headers = [("content-type", "application/octet-stream")];
        let upload_id = self
            .call(
                &what,
                || self.request(Method::POST, &url, &headers, Payload::Sha256(EMPTY_SHA256)),
                |resp| async move {
                    let text = resp.text().await.map_err(|e| aws::send_error("S3", &e))?;
                    upload_id(&text).ok_or_else(|| {
                        AwsError::other("S3 CreateMultipartUpload answered without an UploadId")
                    })
                },
            )
            .await?;
        match self.upload_parts(bucket, key, path, size, &upload_id).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Best effort: parts of an abandoned upload are billed until aborted.
                let url = self.url(bucket, key, &[("uploadId", &upload_id)]);
                let abort = self
                    .call(
                        "S3 AbortMultipartUpload",
                        || self.request(Method::DELETE, &url, &[], Payload::Sha256(EMPTY_SHA256)),
                        |_| async { Ok(()) },
                    )
                    .await;
                if let Err(a) = abort {
                    log::warn!("could not abort the multipart upload of s3://{bucket}/{key}: {a}");
                }
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        size: u64,
        upload_id: &str,
    ) -> Result<(), AwsError> {
        let mut etags = Vec::new();
        for (n, (offset, len)) in parts(size, MULTIPART_THRESHOLD).into_iter().enumerate() {
            let number = (n + 1).to_string();
            let hash = hash_range(path, offset, len).await?;
            let url = self.url(
                bucket,
                key,
                &[("partNumber", &number), ("uploadId", upload_id)],
            );
            let length = len.to_string();
            let headers = [("content-length", length.as_str())];
            let what = format!("S3 UploadPart {number} of s3://{bucket}/{key}");
            let etag = self
                .call(
                    &what,
                    || {
                        Ok(self
                            .request(Method::PUT, &url, &headers, Payload::Sha256(&hash))?
                            .timeout(upload_timeout(len))
                            .body(crate::cloud::store::file_body(
                                path.to_path_buf(),
                                offset,
                                len,
                            )))
                    },
                    |resp| async move {
                        resp.headers()
                            .get("etag")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                            .ok_or_else(|| {
                                AwsError::other("S3 UploadPart answered without an ETag")
                            })
                    },
                )
                .await?;
            etags.push(etag);
        }
        let body = complete_body(&etags);
        let hash = sha256_hex(body.as_bytes());
        let url = self.url(bucket, key, &[("uploadId", upload_id)]);
        let headers = [("content-type", "application/xml")];
        self.call(
            &format!("S3 CompleteMultipartUpload s3://{bucket}/{key}"),
            || {
                Ok(self
                    .request(Method::POST, &url, &headers, Payload::Sha256(&hash))?
                    .timeout(Duration::from_secs(600))
                    .body(body.clone()))
            },
            |resp| async move {
                // S3 may answer 200 and put the error in the body.
                let text = resp.text().await.map_err(|e| aws::send_error("S3", &e))?;
                if text.contains("<Error>") {
                    return Err(parse_error(500, text.as_bytes(), None));
                }
                Ok(())
            },
        )
        .await
    }
}

/// The request timeout for an upload of `len` bytes.
fn upload_timeout(len: u64) -> Duration {
    Duration::from_secs(60 + len / MIN_UPLOAD_RATE)
}

/// `(offset, length)` of each part of a `size`-byte file cut in `part`-byte parts.
fn parts(size: u64, part: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < size {
        let len = part.min(size - offset);
        out.push((offset, len));
        offset += len;
    }
    out
}

/// The hex SHA-256 of everything `reader` gives, read in chunks (files of any size).
pub fn sha256_hex_of(mut reader: impl std::io::Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; CHUNK];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The hex SHA-256 of `len` bytes of the file at `path` from `offset`.
async fn hash_range(path: &Path, offset: u64, len: u64) -> Result<String, AwsError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use std::io::{Read, Seek};
        let mut f = std::fs::File::open(&path)?;
        f.seek(std::io::SeekFrom::Start(offset))?;
        sha256_hex_of(f.take(len))
    })
    .await
    .map_err(|e| AwsError::other(format!("hashing a part failed: {e}")))?
    .map_err(|e| AwsError::other(format!("cannot read the file to upload: {e}")))
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// CreateBucket's body: a `LocationConstraint` outside us-east-1 (where S3
/// refuses one), none there.
pub fn create_bucket_body(region: &str) -> String {
    if region == "us-east-1" {
        String::new()
    } else {
        format!(
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
        )
    }
}

/// CompleteMultipartUpload's body for the parts' ETags, in order.
fn complete_body(etags: &[String]) -> String {
    let mut s =
        String::from("<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (i, etag) in etags.iter().enumerate() {
        let etag = etag.replace('&', "&amp;").replace('"', "&quot;");
        s.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{etag}</ETag></Part>",
            i + 1
        ));
    }
    s.push_str("</CompleteMultipartUpload>");
    s
}

/// S3's URI encoding: every byte but `A-Za-z0-9-._~` as `%XX`; `/` kept in keys
/// unless `slash` says to encode it too (query values, bucket names).
pub fn encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (b == b'/' && !slash) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// S3's XML error body (`<Error><Code>…</Code><Message>…</Message></Error>`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorXml {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// CreateMultipartUpload's answer.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InitiateXml {
    upload_id: String,
}

/// The `UploadId` of a CreateMultipartUpload answer.
fn upload_id(xml: &str) -> Option<String> {
    quick_xml::de::from_str::<InitiateXml>(xml)
        .ok()
        .map(|i| i.upload_id.trim().to_string())
        .filter(|id| !id.is_empty())
}

/// S3's error answer (`<Error><Code>…</Code><Message>…</Message></Error>`, or
/// nothing for a HEAD) as an [`AwsError`], classified like every AWS error.
/// `RequestTimeout` (S3 gave up on a slow body) is retried; a HEAD's bare 404 is
/// `NotFound`; a 301 names the bucket's region.
pub fn parse_error(status: u16, body: &[u8], bucket_region: Option<&str>) -> AwsError {
    let text = String::from_utf8_lossy(body);
    let ErrorXml {
        mut code,
        mut message,
    } = quick_xml::de::from_str(&text).unwrap_or_default();
    if code.is_empty() {
        code = match status {
            404 => "NotFound".into(),
            301 => "PermanentRedirect".into(),
            _ => String::new(),
        };
    }
    if code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed" {
        if let Some(r) = bucket_region {
            message = format!("the bucket is in region {r}");
        }
    }
    if code == "RequestTimeout" {
        return AwsError::Transient(redact(&format!(
            "S3 RequestTimeout (HTTP {status}): {message}"
        )));
    }
    let json = serde_json::json!({ "__type": code, "message": message });
    let body = if code.is_empty() && message.is_empty() {
        Vec::new()
    } else {
        json.to_string().into_bytes()
    };
    aws::parse_error(status, None, &body)
}

/// Whether S3 said there is no such bucket or key.
fn is_not_found(e: &AwsError) -> bool {
    matches!(
        e.code(),
        Some("NotFound" | "NoSuchKey" | "NoSuchBucket" | "404")
    ) || matches!(e, AwsError::Other { status: Some(s), .. } if *s == StatusCode::NOT_FOUND.as_u16())
}

#[async_trait::async_trait]
impl crate::cloud::store::ObjectStore for S3Client {
    type Error = AwsError;

    fn scheme(&self) -> &'static str {
        "s3"
    }

    fn name(&self) -> &'static str {
        "S3"
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, AwsError> {
        Ok(self.head_object(bucket, key).await?.is_some())
    }

    async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        size: u64,
        sha256: &str,
    ) -> Result<(), AwsError> {
        S3Client::put_file(self, bucket, key, path, size, sha256)
            .await
            .map_err(|e| match e {
                AwsError::Other {
                    status,
                    code,
                    message,
                } if code == "XAmzContentSHA256Mismatch" || code == "BadDigest" => {
                    AwsError::Other {
                        status,
                        code,
                        message: format!(
                            "{} changed while it was uploaded ({message})",
                            path.display()
                        ),
                    }
                }
                other => other,
            })
    }

    async fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), AwsError> {
        S3Client::put_bytes(self, bucket, key, body, content_type).await
    }

    fn upload_error(&self, channel: &str, bucket: &str, e: AwsError) -> UserError {
        s3_user_error(channel, bucket, e)
    }
}

/// An S3 failure while uploading `channel`, with what to do.
fn s3_user_error(channel: &str, bucket: &str, e: AwsError) -> UserError {
    let hint = match &e {
        AwsError::Auth { .. } => Some(format!(
            "the AWS credentials may not write to s3://{bucket}: allow s3:PutObject and \
             s3:GetObject on arn:aws:s3:::{bucket}/mlcd/*, or upload the data yourself and \
             set `train.channels.{channel}` to its s3:// URI"
        )),
        _ => None,
    };
    let base = UserError::from(e);
    let err = UserError::failed(format!(
        "uploading channel `{channel}` to s3://{bucket}: {}",
        base.message
    ));
    match hint.or(base.hint) {
        Some(h) => err.hint(h),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::aws::AwsCredentials;

    fn client(env: &[(&str, &str)], region: &str) -> S3Client {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let c = AwsCredentials::new("AKIDEXAMPLE", "secret/EXAMPLE", None);
        S3Client::new(AwsClient::new(c, region).unwrap(), &env).unwrap()
    }

    #[test]
    fn aws_is_addressed_virtual_hosted_and_a_configured_endpoint_path_style() {
        let c = client(&[], "eu-west-1");
        assert_eq!(
            c.url("sagemaker-eu-west-1-123456789012", "mlcd/a b+c.csv", &[])
                .as_str(),
            "https://sagemaker-eu-west-1-123456789012.s3.eu-west-1.amazonaws.com/mlcd/a%20b%2Bc.csv"
        );
        assert_eq!(
            c.url("my.bucket", "k", &[]).as_str(),
            "https://s3.eu-west-1.amazonaws.com/my.bucket/k",
            "dots break the wildcard certificate"
        );
        let c = client(
            &[
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
                ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:5000/"),
            ],
            "us-east-1",
        );
        assert_eq!(c.url("b", "", &[]).as_str(), "http://127.0.0.1:5000/b/");
        assert_eq!(
            c.url(
                "b",
                "dir/ü.bin",
                &[("partNumber", "1"), ("uploadId", "a/b=")]
            )
            .as_str(),
            "http://127.0.0.1:5000/b/dir/%C3%BC.bin?partNumber=1&uploadId=a%2Fb%3D"
        );
        assert_eq!(
            c.url("b", "k", &[("uploads", "")]).as_str(),
            "http://127.0.0.1:5000/b/k?uploads"
        );
    }

    #[test]
    fn s3_requests_carry_the_payload_hash_and_sign_the_path_once() {
        // The expected signature was computed with botocore's S3SigV4Auth
        // (botocore 1.43.11) for the same request, body `hello`, at
        // 2015-08-30T12:36:00Z: the `%20` is signed as is, not encoded twice.
        let c = AwsCredentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
        );
        let time = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let hash = sha256_hex(b"hello");
        let signed = aws::sign_request(
            &c,
            "us-east-1",
            "s3",
            Signing::S3,
            "PUT",
            "http://127.0.0.1:5000/b/dir/a%20b.csv",
            &[("content-type", "application/octet-stream")],
            Payload::Sha256(&hash),
            time,
        )
        .unwrap();
        let get = |name: &str| {
            signed
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, v, _)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(get("x-amz-content-sha256"), hash);
        let auth = get("authorization");
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/aws4_request, \
             SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, \
             Signature=aec6a915259151ef5c5bd5e552171542741ca4ac12602b580fc39298aa0b7290"
        );
        let again = aws::sign_request(
            &c,
            "us-east-1",
            "s3",
            Signing::S3,
            "PUT",
            "http://127.0.0.1:5000/b/dir/a%20b.csv",
            &[("content-type", "application/octet-stream")],
            Payload::Sha256(&hash),
            time,
        )
        .unwrap();
        assert_eq!(signed, again);
    }

    #[test]
    fn s3_error_bodies_become_errors_a_caller_can_branch_on() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>b</BucketName><RequestId>1</RequestId></Error>"#;
        let e = parse_error(404, xml, None);
        assert_eq!(e.code(), Some("NoSuchBucket"));
        assert!(is_not_found(&e));
        assert!(
            e.to_string()
                .contains("The specified bucket does not exist"),
            "{e}"
        );

        // A HEAD has no body: the status says it.
        assert!(is_not_found(&parse_error(404, b"", None)));
        let e = parse_error(403, b"", None);
        assert!(matches!(e, AwsError::Auth { .. }), "{e:?}");
        let e = parse_error(
            403,
            b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
            None,
        );
        assert!(matches!(e, AwsError::Auth { .. }), "{e:?}");
        let e = parse_error(
            403,
            b"<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>",
            None,
        );
        assert!(matches!(e, AwsError::Auth { .. }), "{e:?}");

        let e = parse_error(
            503,
            b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
            None,
        );
        assert!(matches!(e, AwsError::Throttled { .. }), "{e:?}");
        let e = parse_error(
            400,
            b"<Error><Code>RequestTimeout</Code><Message>Your socket connection to the server was not read from or written to within the timeout period.</Message></Error>",
            None,
        );
        assert!(e.is_transient(), "{e:?}");
        assert!(parse_error(500, b"<html>oops</html>", None).is_transient());
        let e = parse_error(301, b"", Some("eu-central-1"));
        assert!(e.to_string().contains("eu-central-1"), "{e}");
        let e = parse_error(
            409,
            b"<Error><Code>BucketAlreadyOwnedByYou</Code><Message>yours</Message></Error>",
            None,
        );
        assert_eq!(e.code(), Some("BucketAlreadyOwnedByYou"));
        assert!(!e.is_transient());
    }

    #[test]
    fn buckets_outside_us_east_1_name_their_region() {
        assert_eq!(create_bucket_body("us-east-1"), "");
        assert!(create_bucket_body("eu-west-1")
            .contains("<LocationConstraint>eu-west-1</LocationConstraint>"));
    }

    #[test]
    fn large_files_are_cut_into_parts_and_completed_in_order() {
        assert_eq!(parts(0, 10), vec![]);
        assert_eq!(parts(10, 10), vec![(0, 10)]);
        assert_eq!(parts(25, 10), vec![(0, 10), (10, 10), (20, 5)]);
        let body = complete_body(&["\"a\"".into(), "\"b\"".into()]);
        assert!(body.contains(
            "<Part><PartNumber>1</PartNumber><ETag>&quot;a&quot;</ETag></Part><Part><PartNumber>2</PartNumber>"
        ));
        assert_eq!(
            upload_id(
                "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>xyz-1</UploadId></InitiateMultipartUploadResult>"
            )
            .as_deref(),
            Some("xyz-1")
        );
        assert!(upload_timeout(MULTIPART_THRESHOLD) >= Duration::from_secs(180));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_file_body_streams_the_range_it_was_given() {
        use http_body_util::BodyExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(CHUNK * 2 + 17)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let body = crate::cloud::store::file_body(path.clone(), 5, (CHUNK + 3) as u64);
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], &data[5..5 + CHUNK + 3]);
        assert_eq!(
            hash_range(&path, 5, (CHUNK + 3) as u64).await.unwrap(),
            sha256_hex(&data[5..5 + CHUNK + 3])
        );
    }
}

/// A ListObjectsV2 answer (the parts mlcd reads).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketXml {
    #[serde(default)]
    contents: Vec<ListedObjectXml>,
    #[serde(default)]
    is_truncated: bool,
    next_continuation_token: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedObjectXml {
    key: String,
    #[serde(default)]
    size: u64,
}
