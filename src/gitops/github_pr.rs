//! Branches and pull requests of the manifests repository through GitHub's REST
//! API (octocrab): read, create, move (forced) and delete a branch's ref; find the
//! open pull request of a head branch, open one, edit its title and body. The
//! calls of GitOps pull-request mode ([`super::pull`]); each bounded like the
//! contents calls in [`super::github`].

use serde_json::{json, Value};

use super::github::{bounded, url_path, Repo, RepoError};

/// A pull request as mlcd needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// Its number.
    pub number: u64,
    /// Its page on GitHub.
    pub url: String,
}

fn pull_of(v: &Value) -> Result<PullRequest, RepoError> {
    match (v["number"].as_u64(), v["html_url"].as_str()) {
        (Some(number), Some(url)) => Ok(PullRequest {
            number,
            url: url.to_string(),
        }),
        _ => Err(RepoError::Other(format!(
            "GitHub answered with a pull request without number or html_url: {v}"
        ))),
    }
}

impl Repo {
    /// The commit branch `branch` points at; `None` when there is no such branch.
    pub async fn branch_head(&mut self, branch: &str) -> Result<Option<String>, RepoError> {
        self.calls += 1;
        let route = format!("/repos/{}/git/ref/heads/{}", self.name, url_path(branch));
        match bounded(self.octo.get::<Value, _, _>(route, None::<&()>)).await {
            Ok(v) => v["object"]["sha"]
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| {
                    RepoError::Other(format!("GitHub answered a ref without a SHA: {v}"))
                }),
            Err(RepoError::Other(m)) if m.starts_with("HTTP 404") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates branch `branch` at commit `sha`.
    pub async fn create_branch(&mut self, branch: &str, sha: &str) -> Result<(), RepoError> {
        self.calls += 1;
        let body = json!({"ref": format!("refs/heads/{branch}"), "sha": sha});
        let route = format!("/repos/{}/git/refs", self.name);
        let _: Value = bounded(self.octo.post(route, Some(&body))).await?;
        Ok(())
    }

    /// Points branch `branch` at commit `sha`, whatever it held (a forced update).
    pub async fn reset_branch(&mut self, branch: &str, sha: &str) -> Result<(), RepoError> {
        self.calls += 1;
        let body = json!({"sha": sha, "force": true});
        let route = format!("/repos/{}/git/refs/heads/{}", self.name, url_path(branch));
        let _: Value = bounded(self.octo.patch(route, Some(&body))).await?;
        Ok(())
    }

    /// Deletes branch `branch` (GitHub answers 204 without a body).
    pub async fn delete_branch(&mut self, branch: &str) -> Result<(), RepoError> {
        self.calls += 1;
        let uri = format!(
            "{}/repos/{}/git/refs/heads/{}",
            self.api,
            self.name,
            url_path(branch)
        );
        let octo = self.octo.clone();
        bounded(async move {
            let resp = octo._delete(uri, None::<&()>).await?;
            octocrab::map_github_error(resp).await.map(|_| ())
        })
        .await
    }

    /// The open pull request from `head` (a branch of this repository) into `base`.
    pub async fn open_pull(
        &mut self,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, RepoError> {
        self.calls += 1;
        let owner = self.name.split('/').next().unwrap_or_default();
        let route = format!(
            "/repos/{}/pulls?state=open&head={}&base={}&per_page=10",
            self.name,
            url_path(&format!("{owner}:{head}")),
            url_path(base)
        );
        let v: Value = bounded(self.octo.get(route, None::<&()>)).await?;
        match v.as_array().and_then(|a| a.first()) {
            Some(p) => pull_of(p).map(Some),
            None => Ok(None),
        }
    }

    /// Opens a pull request from `head` into `base`.
    pub async fn create_pull(
        &mut self,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
    ) -> Result<PullRequest, RepoError> {
        self.calls += 1;
        let req = json!({"title": title, "head": head, "base": base, "body": body});
        let route = format!("/repos/{}/pulls", self.name);
        let v: Value = bounded(self.octo.post(route, Some(&req))).await?;
        pull_of(&v)
    }

    /// Replaces the title and body of pull request `number`.
    pub async fn update_pull(
        &mut self,
        number: u64,
        title: &str,
        body: &str,
    ) -> Result<PullRequest, RepoError> {
        self.calls += 1;
        let req = json!({"title": title, "body": body});
        let route = format!("/repos/{}/pulls/{number}", self.name);
        let v: Value = bounded(self.octo.patch(route, Some(&req))).await?;
        pull_of(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_request_needs_its_number_and_page() {
        let p = pull_of(&json!({"number": 7, "html_url": "https://github.com/a/b/pull/7"}));
        assert_eq!(
            p,
            Ok(PullRequest {
                number: 7,
                url: "https://github.com/a/b/pull/7".into()
            })
        );
        assert!(pull_of(&json!({"number": 7})).is_err());
    }
}
