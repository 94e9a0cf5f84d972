//! The fake Argo CD (tests/fake_argocd/server.py) for tests: started on a free
//! port, stopped when dropped; its control endpoints (applications following a
//! git-backed repository of the fake GitHub, scripted health, recorded requests).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::common::{control_call, root};

/// The fake Argo CD API server.
pub struct FakeArgoCd {
    child: Child,
    pub url: String,
}

impl FakeArgoCd {
    pub fn start() -> Self {
        let mut child = Command::new("python3")
            .arg(root().join("tests/fake_argocd/server.py"))
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the fake Argo CD");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("fake Argo CD did not start: {line:?}"))
            .to_string();
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
