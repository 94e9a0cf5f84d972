//! Resolving paths from the config and inputs, and refusing any that leave the
//! workspace (a symlink included): mlcd reads only files inside the workspace.

use std::path::{Component, Path, PathBuf};

/// A path resolved inside the workspace.
#[derive(Debug, Clone)]
pub struct WorkspacePath {
    /// Absolute path.
    pub abs: PathBuf,
    /// Relative to the workspace, with `/` separators (`.` for the workspace).
    pub display: String,
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Resolves `rel` against `base` and checks it lies inside `workspace`, following
/// symlinks for paths that exist. `what` names the input or key in the error.
pub fn inside_workspace(
    workspace: &Path,
    base: &Path,
    rel: &Path,
    what: &str,
) -> Result<WorkspacePath, String> {
    let ws = workspace
        .canonicalize()
        .unwrap_or_else(|_| normalize(workspace));
    let joined = normalize(&base.join(rel));
    let real = joined.canonicalize().unwrap_or_else(|_| joined.clone());
    if !real.starts_with(&ws) {
        let via_link = real != joined && joined.starts_with(&ws);
        return Err(format!(
            "{what} `{}` resolves to {}{}, outside the workspace {}: mlcd reads only files inside \
             the workspace (GITHUB_WORKSPACE, or the current directory)",
            rel.display(),
            real.display(),
            if via_link { " through a symlink" } else { "" },
            ws.display()
        ));
    }
    let display = real
        .strip_prefix(&ws)
        .map(|p| {
            let s = p.to_string_lossy().replace('\\', "/");
            if s.is_empty() {
                ".".to_string()
            } else {
                s
            }
        })
        .unwrap_or_else(|_| real.display().to_string());
    Ok(WorkspacePath { abs: real, display })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_resolve_and_outside_are_refused() {
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir(ws.path().join("model")).unwrap();
        let p = inside_workspace(ws.path(), ws.path(), Path::new("model/../model"), "ctx").unwrap();
        assert_eq!(p.display, "model");
        let e = inside_workspace(ws.path(), ws.path(), Path::new("../etc"), "`build.context`")
            .unwrap_err();
        assert!(e.contains("outside the workspace"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_escaping_the_workspace_is_refused() {
        let ws = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), ws.path().join("link")).unwrap();
        let e = inside_workspace(ws.path(), ws.path(), Path::new("link"), "ctx").unwrap_err();
        assert!(e.contains("through a symlink"), "{e}");
    }
}
