//! Reading a planned source into a [`Sample`]: a file or directory in the
//! workspace, the local endpoint's capture directory, or an `s3://` prefix
//! (listed with ListObjectsV2, each object fetched and read in turn; SageMaker
//! rotates its capture files, so an object is small, and only one is held at a
//! time).

use std::collections::BTreeMap;
use std::path::Path;

use super::column::Sample;
use super::parquet;
use super::read::{self, Positional};
use crate::cloud::aws::{AwsClient, AwsCredentials};
use crate::cloud::s3::S3Client;
use crate::error::UserError;
use crate::plan::monitor::SourcePlan;

/// Reads `source` into `sample`. `what` names it in errors (`reference`, `current`).
pub async fn read_source(
    sample: &mut Sample,
    source: &SourcePlan,
    what: &str,
    workspace: &Path,
    region: Option<&str>,
    env: &BTreeMap<String, String>,
    positional: &Positional,
) -> Result<(), UserError> {
    match source {
        SourcePlan::Path { path } => {
            read_local(sample, &workspace.join(path), path, what, positional)
        }
        SourcePlan::Capture { path, .. } => {
            let abs = workspace.join(path);
            if !abs.is_dir() {
                return Err(UserError::invalid(format!(
                    "`monitor.{what}: capture`: no captured traffic at `{path}/`"
                ))
                .hint("deploy the endpoint with capture on (`deploy.capture`), send it traffic, then monitor; or set `monitor.current` to a file or directory of recent data"));
            }
            read_local(sample, &abs, path, what, positional)
        }
        SourcePlan::S3 { uri } => read_s3(sample, uri, what, region, env, positional).await,
    }
}

/// Reads a local file or directory (`abs`, shown as `display`) into `sample`.
pub fn read_local(
    sample: &mut Sample,
    abs: &Path,
    display: &str,
    what: &str,
    positional: &Positional,
) -> Result<(), UserError> {
    let key = format!("`monitor.{what}`");
    for file in read::files_of(abs, &key)? {
        let format = read::format_of(&file).ok_or_else(|| {
            UserError::invalid(format!(
                "{key}: `{display}` is not a {} file",
                read::ENDINGS
            ))
        })?;
        let shown = match file.strip_prefix(abs) {
            Ok(rel) if !rel.as_os_str().is_empty() => format!("{display}/{}", rel.display()),
            _ => display.to_string(),
        };
        if format == read::Format::Parquet {
            parquet::read_file(sample, &file, &shown)?;
            continue;
        }
        let f = std::fs::File::open(&file)
            .map_err(|e| UserError::invalid(format!("{key}: cannot open `{shown}`: {e}")))?;
        read::read_into(sample, f, format, &shown, positional)?;
    }
    Ok(())
}

/// Whether `source` is a workspace file or directory of CSV and Parquet files
/// only: each names its own columns (a header, a schema), so it needs no column
/// names from the reference and can be read while the reference is.
pub fn local_csv_only(source: &SourcePlan, workspace: &Path) -> bool {
    let SourcePlan::Path { path } = source else {
        return false;
    };
    read::files_of(&workspace.join(path), "")
        .map(|files| {
            !files.is_empty()
                && files.iter().all(|f| {
                    matches!(
                        read::format_of(f),
                        Some(read::Format::Csv | read::Format::Parquet)
                    )
                })
        })
        .unwrap_or(false)
}

async fn read_s3(
    sample: &mut Sample,
    uri: &str,
    what: &str,
    region: Option<&str>,
    env: &BTreeMap<String, String>,
    positional: &Positional,
) -> Result<(), UserError> {
    let (s3, bucket, prefix) = open_s3(uri, what, region, env).await?;
    let bucket = bucket.as_str();
    let objects = s3
        .list_objects(bucket, &prefix)
        .await
        .map_err(UserError::from)?;
    let readable: Vec<_> = objects
        .iter()
        .filter_map(|(k, _)| read::format_of(Path::new(k)).map(|f| (k, f)))
        .collect();
    if readable.is_empty() {
        return Err(UserError::invalid(format!(
            "`monitor.{what}`: no {} object under `{uri}` ({} objects listed)",
            read::ENDINGS,
            objects.len()
        ))
        .hint("SageMaker writes data capture files under <prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl: give that prefix"));
    }
    for (key, format) in readable {
        let body = s3.get_object(bucket, key).await.map_err(UserError::from)?;
        let shown = format!("s3://{bucket}/{key}");
        if format == read::Format::Parquet {
            parquet::read_bytes(sample, body, &shown)?;
        } else {
            read::read_into(sample, body.as_slice(), format, &shown, positional)?;
        }
    }
    Ok(())
}

/// An S3 client for `uri` (`s3://bucket/prefix`, `monitor.<what>` in errors),
/// with the bucket and the prefix.
pub async fn open_s3(
    uri: &str,
    what: &str,
    region: Option<&str>,
    env: &BTreeMap<String, String>,
) -> Result<(S3Client, String, String), UserError> {
    let rest = uri.trim_start_matches("s3://");
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let region = region.ok_or_else(|| {
        UserError::invalid(format!("`monitor.{what}` `{uri}` needs an AWS region"))
            .hint("set `sagemaker.region` in mlcd.yml or AWS_REGION")
    })?;
    let creds = AwsCredentials::from_env(env)?;
    let client = AwsClient::new(creds, region).map_err(UserError::from)?;
    let s3 = S3Client::new(client, env)?;
    Ok((s3, bucket.to_string(), prefix.to_string()))
}
