//! The fake Argo CD (tests/fake_argocd/server.py) for tests: started on a free
//! port, stopped when dropped; its control endpoints (applications following a
//! git-backed repository of the fake GitHub, scripted health, recorded requests).

use std::process::{Child, Command};

use crate::common::{control_call, spawn_fake};

/// The fake Argo CD API server.
pub struct FakeArgoCd {
    child: Child,
    pub url: String,
}

impl FakeArgoCd {
    pub fn start() -> Self {
        let (child, url) = spawn_fake(
            "fake Argo CD",
            "tests/fake_argocd/server.py",
            &["--port".as_ref(), "0".as_ref()],
            "",
        );
        FakeArgoCd { child, url }
    }

    pub fn call(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        control_call(
            "fake Argo CD",
            &self.url,
            "POST",
            path,
            Some(&body.to_string()),
        )
    }

    pub fn requests(&self) -> Vec<serde_json::Value> {
        control_call("fake Argo CD", &self.url, "GET", "/_fake/requests", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn violations(&self) -> Vec<serde_json::Value> {
        control_call("fake Argo CD", &self.url, "GET", "/_fake/violations", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for FakeArgoCd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
