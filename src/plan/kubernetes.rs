//! The Kubernetes settings a training or serving plan carries (`kubernetes:` in
//! mlcd.yml, checked here so that a bad namespace or storage URI fails before any
//! cluster is contacted).

use serde::Serialize;

use super::Inputs;
use crate::cloud::eks::EksCluster;
use crate::config::types::{KserveMode, KubeTrainer};
use crate::error::UserError;

/// The runtime a TrainJob uses when `kubernetes.runtime` is not set.
pub const DEFAULT_RUNTIME: &str = "torch-distributed";

/// The Kubernetes settings a job needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct KubernetesPlan {
    /// The namespace jobs are created in.
    pub namespace: String,
    /// The kubeconfig context; none: the current one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The EKS cluster whose tokens mlcd makes (`kubernetes.eks-cluster`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eks: Option<EksCluster>,
    /// `trainjob` or `pytorchjob`.
    pub trainer: KubeTrainer,
    /// The ClusterTrainingRuntime (TrainJob only).
    pub runtime: String,
    /// Where `/opt/ml/model` is kept (`pvc://claim/path` or `s3://bucket/prefix`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_uri: Option<String>,
    /// The service account training pods run as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The image of mlcd's storage containers (`kubernetes.mlcd-image`).
    pub mlcd_image: String,
    /// The Secret with the storage containers' S3 credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_secret: Option<String>,
}

/// The image mlcd's storage containers run from when `kubernetes.mlcd-image` is
/// not set: this very version, so that the pod speaks the same protocol.
pub fn default_mlcd_image() -> String {
    format!("ghcr.io/mlcd-dev/mlcd:{}", env!("CARGO_PKG_VERSION"))
}

/// The Kubernetes settings a KServe InferenceService needs (`mode: deploy`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServingKubernetesPlan {
    /// The namespace the InferenceService is created in.
    pub namespace: String,
    /// The kubeconfig context; none: the current one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The EKS cluster whose tokens mlcd makes (`kubernetes.eks-cluster`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eks: Option<EksCluster>,
    /// Where KServe's storage initializer downloads the model from into
    /// `/opt/ml/model` (`s3://`, `gs://`, `pvc://`, …); none: the image carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_uri: Option<String>,
    /// The service account the predictor runs as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// KServe's deployment mode (`kubernetes.deployment-mode`); none: the
    /// cluster's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_mode: Option<KserveMode>,
}

/// The URI schemes KServe's default storage initializer reads (its
/// ClusterStorageContainer `supportedUriFormats`, plus `pvc://`, which KServe
/// mounts itself).
pub const KSERVE_STORAGE_SCHEMES: &[&str] = &[
    "s3://",
    "gs://",
    "pvc://",
    "hdfs://",
    "webhdfs://",
    "https://",
    "http://",
    "hf://",
];

/// Checks that KServe can read the model from `uri`.
pub fn check_kserve_storage_uri(uri: &str) -> Result<(), String> {
    let supported = KSERVE_STORAGE_SCHEMES.join(", ");
    let Some(scheme) = KSERVE_STORAGE_SCHEMES.iter().find(|s| uri.starts_with(*s)) else {
        return Err(match uri.split_once("://") {
            Some((scheme, _)) => format!(
                "`{uri}`: KServe's storage initializer cannot read `{scheme}://` URIs (it reads {supported})"
            ),
            None => format!(
                "`{uri}` is not a URI: KServe downloads the model from a URI ({supported}), not from a path on this machine"
            ),
        });
    };
    if uri.len() == scheme.len() {
        return Err(format!("`{uri}` names no bucket, claim or host"));
    }
    if *scheme == "pvc://" {
        parse_pvc(uri)?;
    }
    Ok(())
}

/// The `kubernetes:` block as a serving plan, for `backend: kubernetes`.
pub(super) fn serving_plan(inputs: &Inputs) -> Result<ServingKubernetesPlan, UserError> {
    let k = &inputs.cfg().kubernetes;
    let namespace = k.namespace.clone().unwrap_or_else(|| "default".into());
    if !is_dns_label(&namespace) {
        return Err(inputs
            .config_error(
                &["kubernetes", "namespace"],
                format!("`kubernetes.namespace` is `{namespace}`, which is not a Kubernetes namespace name (lowercase letters, digits and `-`, at most 63 characters)"),
            )
            .hint("set `kubernetes.namespace` to the namespace your endpoints run in, like `ml`"));
    }
    let storage_uri = k.storage_uri.clone().filter(|u| !u.trim().is_empty());
    if let Some(u) = &storage_uri {
        check_kserve_storage_uri(u).map_err(|e| {
            inputs
                .config_error(
                    &["kubernetes", "storage-uri"],
                    format!("`kubernetes.storage-uri`: {e}"),
                )
                .hint("give the model's location as KServe reads it, like `s3://acme-models/churn` or `pvc://models/churn`; leave it out when the image carries its model")
        })?;
    }
    Ok(ServingKubernetesPlan {
        namespace,
        context: k.context.clone().filter(|c| !c.trim().is_empty()),
        eks: eks_plan(inputs)?,
        storage_uri,
        service_account: k.service_account.clone(),
        deployment_mode: k.deployment_mode,
    })
}

/// `kubernetes.eks-cluster` / `eks-region`, checked.
fn eks_plan(inputs: &Inputs) -> Result<Option<EksCluster>, UserError> {
    let k = &inputs.cfg().kubernetes;
    let region = k.eks_region.clone().filter(|r| !r.trim().is_empty());
    let Some(name) = k.eks_cluster.clone().filter(|c| !c.trim().is_empty()) else {
        if region.is_some() {
            return Err(inputs
                .config_error(
                    &["kubernetes", "eks-region"],
                    "`kubernetes.eks-region` is set but `kubernetes.eks-cluster` is not: there is no EKS cluster to make tokens for",
                )
                .hint("set `kubernetes.eks-cluster` to the cluster's name, or remove `kubernetes.eks-region`"));
        }
        return Ok(None);
    };
    let valid = name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(inputs
            .config_error(
                &["kubernetes", "eks-cluster"],
                format!("`kubernetes.eks-cluster` is `{name}`, which is not an EKS cluster name (letters, digits, `-` and `_`, starting with a letter or digit, at most 100)"),
            )
            .hint("give the name `aws eks list-clusters` shows"));
    }
    if let Some(r) = &region {
        if !crate::cloud::aws::is_region(r) {
            return Err(inputs
                .config_error(
                    &["kubernetes", "eks-region"],
                    format!("`kubernetes.eks-region` is `{r}`, which is not an AWS region name (like us-east-1)"),
                )
                .hint("give the region the cluster runs in, or leave it out to use AWS_REGION"));
        }
    }
    Ok(Some(EksCluster { name, region }))
}

/// Whether `s` is a DNS-1123 label (namespaces, runtime names): lowercase
/// letters, digits and `-`, starting and ending alphanumeric, at most 63.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The `kubernetes:` block as a plan, for `backend: kubernetes`.
pub(super) fn plan(inputs: &Inputs) -> Result<KubernetesPlan, UserError> {
    let k = &inputs.cfg().kubernetes;
    let namespace = k.namespace.clone().unwrap_or_else(|| "default".into());
    if !is_dns_label(&namespace) {
        return Err(inputs
            .config_error(
                &["kubernetes", "namespace"],
                format!("`kubernetes.namespace` is `{namespace}`, which is not a Kubernetes namespace name (lowercase letters, digits and `-`, at most 63 characters)"),
            )
            .hint("set `kubernetes.namespace` to the namespace your jobs run in, like `ml`"));
    }
    let runtime = k.runtime.clone().unwrap_or_else(|| DEFAULT_RUNTIME.into());
    if !is_dns_label(&runtime) {
        return Err(inputs
            .config_error(
                &["kubernetes", "runtime"],
                format!("`kubernetes.runtime` is `{runtime}`, which is not a ClusterTrainingRuntime name (lowercase letters, digits and `-`)"),
            )
            .hint("list the runtimes your cluster has with `kubectl get clustertrainingruntimes`"));
    }
    let storage_uri = k
        .storage_uri
        .clone()
        .or_else(|| inputs.cfg().train.output.clone());
    if let Some(u) = &storage_uri {
        check_training_storage(u).map_err(|e| {
            inputs
                .config_error(
                    &["kubernetes", "storage-uri"],
                    format!("`kubernetes.storage-uri`: {e}"),
                )
                .hint("give a PersistentVolumeClaim and a path in it, like `pvc://models/churn`, or an S3 prefix, like `s3://acme-models/churn`")
        })?;
    }
    let mlcd_image = k
        .mlcd_image
        .clone()
        .filter(|i| !i.trim().is_empty())
        .unwrap_or_else(default_mlcd_image);
    if mlcd_image.contains(char::is_whitespace) || mlcd_image.contains("://") {
        return Err(inputs
            .config_error(
                &["kubernetes", "mlcd-image"],
                format!("`kubernetes.mlcd-image` is `{mlcd_image}`, which is not an image reference (`registry/repository:tag`, no scheme, no spaces)"),
            )
            .hint("give the mlcd image your cluster pulls, like `registry.acme.dev/mlcd:0.1.0`"));
    }
    let aws_secret = k.aws_secret.clone().filter(|s| !s.trim().is_empty());
    if let Some(sec) = &aws_secret {
        if !is_dns_subdomain(sec) {
            return Err(inputs
                .config_error(
                    &["kubernetes", "aws-secret"],
                    format!("`kubernetes.aws-secret` is `{sec}`, which is not a Secret name (lowercase letters, digits, `-` and `.`)"),
                )
                .hint("give the name of a Secret in the job's namespace (`kubectl get secrets`)"));
        }
    }
    Ok(KubernetesPlan {
        namespace,
        context: k.context.clone().filter(|c| !c.trim().is_empty()),
        eks: eks_plan(inputs)?,
        trainer: k.trainer.unwrap_or_default(),
        runtime,
        storage_uri,
        service_account: k.service_account.clone(),
        mlcd_image,
        aws_secret,
    })
}

/// Whether `s` is a DNS-1123 subdomain (Secret, claim names).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

/// Checks a training `kubernetes.storage-uri`: `pvc://claim/path` or
/// `s3://bucket/prefix`.
pub fn check_training_storage(uri: &str) -> Result<(), String> {
    if uri.starts_with("s3://") {
        return crate::train::pod_storage::parse_s3(uri).map(|_| ());
    }
    parse_pvc(uri).map(|_| ())
}

/// A `pvc://claim/path` URI: the claim and the path inside it (may be empty).
pub fn parse_pvc(uri: &str) -> Result<(String, String), String> {
    let Some(rest) = uri.strip_prefix("pvc://") else {
        let scheme = uri.split("://").next().unwrap_or(uri);
        return Err(if uri.contains("://") {
            format!("`{uri}`: a Kubernetes training job reads and keeps data on a PersistentVolumeClaim (`pvc://claim/path`) or in S3 (`s3://bucket/prefix`), not `{scheme}://`; for Cloud Storage mount the bucket as a PersistentVolumeClaim (GKE's Cloud Storage FUSE CSI driver) and give `pvc://`")
        } else {
            format!("`{uri}` is not a URI: expected `pvc://claim/path`")
        });
    };
    let (claim, path) = rest.split_once('/').unwrap_or((rest, ""));
    let subdomain = !claim.is_empty()
        && claim.len() <= 253
        && claim
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !subdomain {
        return Err(format!(
            "`{uri}`: `{claim}` is not a PersistentVolumeClaim name"
        ));
    }
    if path.split('/').any(|p| p == "..") {
        return Err(format!("`{uri}`: the path may not contain `..`"));
    }
    Ok((claim.to_string(), path.trim_matches('/').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvc_uris_split_into_claim_and_path() {
        assert_eq!(
            parse_pvc("pvc://models/churn/v1").unwrap(),
            ("models".into(), "churn/v1".into())
        );
        assert_eq!(
            parse_pvc("pvc://models").unwrap(),
            ("models".into(), "".into())
        );
        assert!(parse_pvc("gs://bucket/x")
            .unwrap_err()
            .contains("Cloud Storage FUSE"));
        // A training's storage: a claim or S3, nothing else.
        assert!(check_training_storage("s3://bucket/x").is_ok());
        assert!(check_training_storage("pvc://models/x").is_ok());
        assert!(check_training_storage("s3://").is_err());
        assert!(check_training_storage("gs://bucket/x").is_err());
        assert!(parse_pvc("pvc://Models/x").is_err());
        assert!(parse_pvc("pvc://m/../x").is_err());
    }

    #[test]
    fn kserve_reads_cloud_pvc_and_http_uris_only() {
        for ok in [
            "s3://acme-models/churn",
            "gs://b/m",
            "pvc://models/churn",
            "https://example.com/model.tar.gz",
            "hf://org/model",
        ] {
            assert!(check_kserve_storage_uri(ok).is_ok(), "{ok}");
        }
        let e = check_kserve_storage_uri("file:///models/churn").unwrap_err();
        assert!(e.contains("cannot read `file://`"), "{e}");
        let e = check_kserve_storage_uri("models/churn").unwrap_err();
        assert!(e.contains("not a URI"), "{e}");
        assert!(check_kserve_storage_uri("s3://").is_err());
        assert!(check_kserve_storage_uri("pvc://Models/x").is_err());
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("torch-distributed"));
        assert!(!is_dns_label("Torch"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}
