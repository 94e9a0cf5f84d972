//! Google Cloud plumbing for the Vertex AI backends: where each API lives
//! (regional Vertex AI, STS, IAM Credentials, Cloud Logging, Cloud Storage, overridable the way
//! gcloud does it), OAuth access tokens from the three sources Google's tooling
//! hands over ([`auth`]), and one JSON client with retries and token refresh
//! ([`client`]); long-running operations polled to `done` ([`operation`]).

pub mod auth;
pub mod client;
pub mod operation;
pub mod storage;

use std::collections::BTreeMap;

/// One Google API this crate calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Vertex AI (`{region}-aiplatform.googleapis.com`).
    Aiplatform,
    /// Cloud Logging (`logging.googleapis.com`).
    Logging,
    /// Cloud Storage's JSON API (`storage.googleapis.com`).
    Storage,
}

impl Api {
    /// gcloud's name for the API, as in `CLOUDSDK_API_ENDPOINT_OVERRIDES_<NAME>`.
    pub fn gcloud_name(self) -> &'static str {
        match self {
            Api::Aiplatform => "AIPLATFORM",
            Api::Logging => "LOGGING",
            Api::Storage => "STORAGE",
        }
    }
}

/// The root URL (ending in `/`) of `api` for `region`: `override_url` (the
/// `vertex.api-endpoint` key, Vertex AI only) wins, then
/// `CLOUDSDK_API_ENDPOINT_OVERRIDES_<API>` as gcloud reads it, then Google's
/// public endpoint (regional for Vertex AI).
pub fn root_url(
    api: Api,
    region: &str,
    override_url: Option<&str>,
    env: &BTreeMap<String, String>,
) -> String {
    let var = format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{}", api.gcloud_name());
    let chosen = override_url
        .filter(|_| api == Api::Aiplatform)
        .map(str::to_string)
        .or_else(|| {
            env.get(&var)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        });
    let mut url = chosen.unwrap_or_else(|| match api {
        Api::Aiplatform => format!("https://{region}-aiplatform.googleapis.com/"),
        Api::Logging => "https://logging.googleapis.com/".to_string(),
        Api::Storage => "https://storage.googleapis.com/".to_string(),
    });
    if !url.ends_with('/') {
        url.push('/');
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_regional_and_overridable_like_gcloud() {
        let mut env = BTreeMap::new();
        assert_eq!(
            root_url(Api::Aiplatform, "europe-west4", None, &env),
            "https://europe-west4-aiplatform.googleapis.com/"
        );
        env.insert(
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_AIPLATFORM".into(),
            "http://127.0.0.1:9/".into(),
        );
        env.insert(
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_LOGGING".into(),
            "http://127.0.0.1:8".into(),
        );
        assert_eq!(
            root_url(Api::Aiplatform, "us-central1", None, &env),
            "http://127.0.0.1:9/"
        );
        assert_eq!(
            root_url(Api::Logging, "us-central1", None, &env),
            "http://127.0.0.1:8/"
        );
        assert_eq!(
            root_url(
                Api::Aiplatform,
                "us-central1",
                Some("https://psc.example/"),
                &env
            ),
            "https://psc.example/",
            "vertex.api-endpoint wins"
        );
    }
}
