//! Image tags from the run's context, the way docker/metadata-action computes
//! them: commit SHAs, branch, semver from a version tag, `latest` on the
//! default branch only, then the user's own tags.

use crate::config::values::Tag;
use crate::context::GitHubContext;

/// The tags for an image built in `ctx`, followed by `extra`, without duplicates.
pub fn compute(ctx: &GitHubContext, extra: &[Tag]) -> Vec<Tag> {
    let mut tags: Vec<Tag> = Vec::new();
    let mut push = |t: Option<Tag>| {
        if let Some(t) = t {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
    };
    if let Some(sha) = &ctx.sha {
        push(sha.parse().ok());
        push(sha.get(..7).and_then(|s| s.parse().ok()));
    }
    if let Some(tag) = &ctx.tag {
        let version = tag.strip_prefix('v').unwrap_or(tag);
        match semver::Version::parse(version) {
            Ok(v) => {
                push(v.to_string().parse().ok());
                if v.pre.is_empty() {
                    push(format!("{}.{}", v.major, v.minor).parse().ok());
                    if v.major > 0 {
                        push(v.major.to_string().parse().ok());
                    }
                }
            }
            Err(_) => push(Tag::sanitized(tag)),
        }
    }
    if let Some(branch) = &ctx.branch {
        push(Tag::sanitized(branch));
        if ctx.default_branch.as_deref() == Some(branch.as_str()) {
            push("latest".parse().ok());
        }
    }
    for t in extra {
        push(Some(t.clone()));
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Trigger;

    fn ctx(branch: Option<&str>, tag: Option<&str>) -> GitHubContext {
        GitHubContext {
            in_actions: true,
            workspace: ".".into(),
            repository: Some("acme/churn".into()),
            sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
            branch: branch.map(Into::into),
            tag: tag.map(Into::into),
            default_branch: Some("main".into()),
            run_id: None,
            run_attempt: None,
            server_url: "https://github.com".into(),
            api_url: "https://api.github.com".into(),
            trigger: Trigger::Push,
            pull_requests: Vec::new(),
        }
    }

    fn names(tags: Vec<Tag>) -> Vec<String> {
        tags.into_iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn default_branch_gets_latest() {
        assert_eq!(
            names(compute(&ctx(Some("main"), None), &[])),
            [
                "0123456789abcdef0123456789abcdef01234567",
                "0123456",
                "main",
                "latest"
            ]
        );
    }

    #[test]
    fn other_branches_do_not_get_latest() {
        let t = names(compute(&ctx(Some("feature/x"), None), &[]));
        assert!(t.contains(&"feature-x".to_string()));
        assert!(!t.contains(&"latest".to_string()));
    }

    #[test]
    fn version_tags_give_semver_tags() {
        let t = names(compute(
            &ctx(None, Some("v1.2.3")),
            &["gpu".parse().unwrap()],
        ));
        assert_eq!(&t[2..], ["1.2.3", "1.2", "1", "gpu"]);
        let t = names(compute(&ctx(None, Some("v2.0.0-rc.1")), &[]));
        assert_eq!(&t[2..], ["2.0.0-rc.1"]);
    }
}
