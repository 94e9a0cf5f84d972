"""Tests of the fake Argo CD (tests/fake_argocd/server.py): it validates what it is
asked and what it answers against Argo CD's swagger, and follows a real git repository.

Run from the repository root: python3 -m unittest discover -s tests/fake_argocd -v
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "fake_github"))
sys.path.insert(0, HERE)
import gitrepo  # noqa: E402
import server  # noqa: E402


class FakeArgoCdTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        seed = os.path.join(self.tmp, "seed", "apps", "churn")
        os.makedirs(seed)
        for f in ("kustomization.yaml", "deployment.yaml"):
            shutil.copy(os.path.join(ROOT, "fixtures", "gitops", "kustomize", f), seed)
        self.repos = gitrepo.Repos(root=self.tmp)
        self.git_dir = self.repos.init("acme/deploy", os.path.join(self.tmp, "seed"))["git_dir"]
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "server.py")], stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().split()[1]
        self.call("/_fake/app", {"name": "churn", "git_dir": self.git_dir, "branch": "main", "path": "apps/churn"})

    def tearDown(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        shutil.rmtree(self.tmp)

    def call(self, path, body=None, token="t"):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode() if body is not None else None)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def test_a_new_commit_is_synced_progressing_then_healthy_and_answers_match_the_swagger(self):
        head = self.repos.head("acme/deploy", "main")
        s1, a1 = self.call("/api/v1/applications/churn?refresh=normal")
        s2, a2 = self.call("/api/v1/applications/churn?refresh=normal")
        self.assertEqual((s1, s2), (200, 200))
        self.assertEqual(a1["status"]["sync"]["revision"], head)
        self.assertEqual(a1["status"]["health"]["status"], "Progressing")
        self.assertEqual(a2["status"]["health"]["status"], "Healthy")
        self.assertEqual(a2["status"]["operationState"]["phase"], "Succeeded")
        spec = server.Spec(server.SPEC)
        self.assertEqual(spec.validate("v1alpha1Application", a2), [])
        self.assertEqual(self.call("/_fake/violations")[1], [])

    def test_a_manifest_kustomize_cannot_build_is_a_failed_sync(self):
        self.repos.write("acme/deploy", "main", "apps/churn/kustomization.yaml", b"resources: [missing.yaml]\n", "break it")
        _, a = self.call("/api/v1/applications/churn?refresh=normal")
        self.assertEqual(a["status"]["operationState"]["phase"], "Failed")
        self.assertIn("Manifest generation error", a["status"]["operationState"]["message"])

    def test_requests_outside_the_swagger_are_violations_and_a_missing_token_is_401(self):
        self.assertEqual(self.call("/api/v1/applications/churn", token=None)[0], 401)
        self.call("/api/v1/applications/churn?refresh=sometimes")
        self.call("/api/v1/applications/churn?bogus=1")
        self.assertEqual(self.call("/api/v1/nope")[0], 404)
        v = self.call("/_fake/violations")[1]
        self.assertEqual(len(v), 3, v)

    def test_the_answer_validator_catches_a_wrong_type(self):
        spec = server.Spec(server.SPEC)
        self.assertTrue(spec.validate("v1alpha1Application", {"status": {"health": {"status": 1}}}))


if __name__ == "__main__":
    unittest.main()
