//! Shared cloud plumbing: retries with backoff (used by every HTTP client and by
//! image pushes), the AWS client (SigV4, JSON protocol, errors), AWS credential
//! resolution (static keys or web identity through STS), a small S3 client (local
//! channels uploaded for SageMaker; `store` is the trait it shares with Cloud
//! Storage), Kubernetes cluster access (`kube`) and objects
//! followed by watches (`kube_follow`), and Google Cloud (`gcp`: endpoints, tokens,
//! a JSON client) for Vertex AI.

pub mod aws;
pub mod eks;
pub mod gcp;
pub mod kube;
pub mod kube_follow;
pub mod retry;
pub mod s3;
pub mod store;
pub mod sts;
