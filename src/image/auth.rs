//! Registry credentials, most specific first: the `registry-username` /
//! `registry-password` inputs, then Docker's config (`$DOCKER_CONFIG/config.json`:
//! `auths`, `credHelpers`, `credsStore`), then the github-token for GHCR, then an
//! OAuth access token for Google Artifact Registry, then, for an ECR host, a token
//! exchanged for the AWS credentials in the environment. Which source was chosen is
//! logged — never a value; every value is registered with the masker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use crate::error::UserError;
use crate::image::ecr;
use crate::image::registry::Credentials;
use crate::secrets::Secret;

/// Credentials for one registry host, and where they came from.
pub struct Resolved {
    /// The credentials, or None for anonymous access.
    pub credentials: Option<Credentials>,
    /// Where they came from, for the log (never the value).
    pub source: String,
}

/// What the resolver may use.
pub struct Sources<'a> {
    /// `registry-username` input.
    pub username: Option<&'a str>,
    /// `registry-password` input.
    pub password: Option<&'a Secret>,
    /// `github-token` input.
    pub github_token: Option<&'a Secret>,
    /// Environment variables.
    pub env: &'a BTreeMap<String, String>,
}

fn docker_config_path(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    if let Some(d) = env.get("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(Path::new(d).join("config.json"));
    }
    env.get("HOME")
        .map(|h| Path::new(h).join(".docker/config.json"))
}

fn config_keys(host: &str) -> Vec<String> {
    let mut keys = vec![
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
    ];
    if host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io" {
        keys.push("https://index.docker.io/v1/".into());
    }
    keys
}

fn from_helper(helper: &str, host: &str) -> Result<Option<Credentials>, UserError> {
    use std::io::Write;
    let program = format!("docker-credential-{helper}");
    let child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return Err(UserError::invalid(format!(
            "the Docker config names the credential helper `{helper}` for {host}, but `{program}` cannot be run"
        ))
        .hint("install the helper, or give registry-username and registry-password"));
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(host.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| UserError::failed(format!("credential helper `{program}` failed: {e}")))?;
    if !out.status.success() {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    match (v["Username"].as_str(), v["Secret"].as_str()) {
        (Some(u), Some(s)) if !s.is_empty() => Ok(Some(Credentials {
            username: u.to_string(),
            password: Secret::new(s),
        })),
        _ => Ok(None),
    }
}

fn from_docker_config(path: &Path, host: &str) -> Result<Option<Credentials>, UserError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        UserError::invalid(format!(
            "the Docker config {} is not valid JSON: {e}",
            path.display()
        ))
        .hint("fix or remove it, or set DOCKER_CONFIG to another directory")
    })?;
    if let Some(helper) = v["credHelpers"][host].as_str() {
        return from_helper(helper, host);
    }
    for key in config_keys(host) {
        let entry = &v["auths"][&key];
        if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    UserError::invalid(format!(
                        "the Docker config {} has an `auth` entry for {key} that is not base64 of user:password",
                        path.display()
                    ))
                })?;
            let (u, p) = decoded.split_once(':').ok_or_else(|| {
                UserError::invalid(format!(
                    "the Docker config {} entry for {key} has no `:`",
                    path.display()
                ))
            })?;
            return Ok(Some(Credentials {
                username: u.to_string(),
                password: Secret::new(p),
            }));
        }
    }
    if let Some(store) = v["credsStore"].as_str() {
        return from_helper(store, host);
    }
    Ok(None)
}

/// Resolves credentials for `host`. Only the ECR exchange makes a request.
pub async fn resolve(host: &str, s: &Sources<'_>) -> Result<Resolved, UserError> {
    match (s.username, s.password) {
        (Some(u), Some(p)) => {
            return Ok(Resolved {
                credentials: Some(Credentials {
                    username: u.to_string(),
                    password: p.clone(),
                }),
                source: "the registry-username and registry-password inputs".into(),
            })
        }
        (Some(_), None) => {
            return Err(UserError::invalid(
                "`registry-username` is set but `registry-password` is not",
            )
            .hint(
                "pass the password from a secret: registry-password: ${{ secrets.REGISTRY_TOKEN }}",
            ))
        }
        (None, Some(_)) => {
            return Err(UserError::invalid(
                "`registry-password` is set but `registry-username` is not",
            )
            .hint("give the user name too (for GHCR: ${{ github.actor }})"))
        }
        (None, None) => {}
    }
    if let Some(path) = docker_config_path(s.env) {
        if let Some(c) = from_docker_config(&path, host)? {
            return Ok(Resolved {
                credentials: Some(c),
                source: format!("the Docker config {}", path.display()),
            });
        }
    }
    if host == "ghcr.io" {
        if let Some(t) = s.github_token {
            let user = s
                .env
                .get("GITHUB_ACTOR")
                .cloned()
                .unwrap_or_else(|| "github-actions".into());
            return Ok(Resolved {
                credentials: Some(Credentials {
                    username: user,
                    password: t.clone(),
                }),
                source: "the github-token input (GHCR)".into(),
            });
        }
    }
    if host.ends_with("-docker.pkg.dev") || host == "gcr.io" || host.ends_with(".gcr.io") {
        // The same Google credentials as Vertex AI: an access-token variable, a
        // service-account key or Workload Identity Federation.
        let given = [
            "GOOGLE_OAUTH_ACCESS_TOKEN",
            "CLOUDSDK_AUTH_ACCESS_TOKEN",
            "GOOGLE_APPLICATION_CREDENTIALS",
        ]
        .iter()
        .any(|v| s.env.get(*v).is_some_and(|t| !t.trim().is_empty()));
        if given {
            let google = crate::cloud::gcp::auth::TokenSource::from_env(s.env)?;
            let token = google
                .token()
                .await
                .map_err(|e| e.user(&format!("getting a Google access token for {host}")))?;
            return Ok(Resolved {
                credentials: Some(Credentials {
                    username: "oauth2accesstoken".into(),
                    password: token,
                }),
                source: format!("a Google access token from {}", google.describe()),
            });
        }
    }
    if ecr::is_ecr_host(host).is_some() {
        return Ok(Resolved {
            credentials: Some(ecr::credentials(host, s.env).await?),
            source: ecr::SOURCE.into(),
        });
    }
    Ok(Resolved {
        credentials: None,
        source: "no credentials (anonymous)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn inputs_win_over_the_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("cfguser:cfgpass");
        std::fs::write(
            dir.path().join("config.json"),
            format!("{{\"auths\": {{\"127.0.0.1:15000\": {{\"auth\": \"{auth}\"}}}}}}"),
        )
        .unwrap();
        let e = env(&[("DOCKER_CONFIG", dir.path().to_str().unwrap())]);
        let pw = Secret::new("inputpass-1234");
        let r = resolve(
            "127.0.0.1:15000",
            &Sources {
                username: Some("me"),
                password: Some(&pw),
                github_token: None,
                env: &e,
            },
        )
        .await
        .unwrap();
        assert_eq!(r.credentials.unwrap().username, "me");
        let r = resolve(
            "127.0.0.1:15000",
            &Sources {
                username: None,
                password: None,
                github_token: None,
                env: &e,
            },
        )
        .await
        .unwrap();
        let c = r.credentials.unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.expose()),
            ("cfguser", "cfgpass")
        );
        assert!(r.source.contains("Docker config"));
        assert!(!r.source.contains("cfgpass"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn ghcr_uses_the_github_token_and_unknown_hosts_are_anonymous() {
        let e = env(&[("GITHUB_ACTOR", "octocat")]);
        let t = Secret::new("ghs_token_for_ghcr_0001");
        let r = resolve(
            "ghcr.io",
            &Sources {
                username: None,
                password: None,
                github_token: Some(&t),
                env: &e,
            },
        )
        .await
        .unwrap();
        assert_eq!(r.credentials.unwrap().username, "octocat");
        let r = resolve(
            "registry.example.com",
            &Sources {
                username: None,
                password: None,
                github_token: Some(&t),
                env: &e,
            },
        )
        .await
        .unwrap();
        assert!(r.credentials.is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_password_without_a_user_is_an_error() {
        let e = env(&[]);
        let pw = Secret::new("lonely-password-1");
        assert!(resolve(
            "ghcr.io",
            &Sources {
                username: None,
                password: Some(&pw),
                github_token: None,
                env: &e
            }
        )
        .await
        .is_err());
    }
}
