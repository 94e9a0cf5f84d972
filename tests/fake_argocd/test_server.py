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
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "fake_github"))
sys.path.insert(0, HERE)
import gitrepo  # noqa: E402
import health  # noqa: E402
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

    def test_with_a_cluster_the_sync_applies_the_objects_and_health_comes_from_their_status(self):
        kube = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "fake_kube", "server.py"), "--port", "0", "--quiet"],
                                stdout=subprocess.PIPE, text=True, env={k: v for k, v in os.environ.items() if k != "DOCKER_HOST"})
        try:
            kube_url = kube.stdout.readline().split()[1]
            isvc = open(os.path.join(ROOT, "fixtures", "gitops", "kserve", "churn.yaml")).read()
            self.repos.write("acme/deploy", "main", "apps/isvc/churn.yaml", isvc.encode(), "add the InferenceService")
            self.call("/_fake/app", {"name": "isvc", "git_dir": self.git_dir, "branch": "main", "path": "apps/isvc",
                                     "namespace": "ml", "kube_url": kube_url})
            head = self.repos.head("acme/deploy", "main")
            _, a = self.call("/api/v1/applications/isvc?refresh=normal")
            self.assertEqual(a["status"]["sync"]["revision"], head)
            self.assertEqual(a["status"]["operationState"]["phase"], "Succeeded", a["status"]["operationState"])
            with urllib.request.urlopen(kube_url + "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/churn") as r:
                live = json.load(r)
            self.assertEqual(live["spec"]["predictor"]["containers"][0]["image"], "127.0.0.1:5000/churn:v1")
            self.assertIn("argocd-controller", [m["manager"] for m in live["metadata"]["managedFields"]])
            # Without a Docker engine the fake KServe's revision fails: Ready False, RevisionFailed → Degraded.
            for _ in range(100):
                _, a = self.call("/api/v1/applications/isvc?refresh=normal")
                if a["status"]["health"]["status"] == "Degraded":
                    break
                time.sleep(0.1)
            self.assertEqual(a["status"]["health"]["status"], "Degraded", a["status"])
            self.assertIn("RevisionFailed", a["status"]["health"]["message"])
            self.assertEqual(a["status"]["resources"][0]["kind"], "InferenceService")
            # An object the CRD refuses (an unknown field, strict validation) is a failed sync.
            self.repos.write("acme/deploy", "main", "apps/isvc/churn.yaml", isvc.replace("  predictor:", "  bogus: 1\n  predictor:").encode(), "break it")
            _, a = self.call("/api/v1/applications/isvc?refresh=normal")
            self.assertEqual(a["status"]["operationState"]["phase"], "Failed")
            self.assertIn("bogus", a["status"]["operationState"]["message"])
            self.assertEqual(self.call("/_fake/violations")[1], [])
        finally:
            kube.terminate()
            kube.wait(timeout=10)
            kube.stdout.close()

    def test_health_checks_read_each_kinds_status_as_argo_cd_does(self):
        isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "m"}}
        cond = lambda s, r=None: dict(isvc, status={"conditions": [{"type": "Ready", "status": s, **({"reason": r} if r else {})}]})  # noqa: E731
        self.assertEqual(health.check(isvc)[0], "Progressing")
        self.assertEqual(health.check(cond("True"))[0], "Healthy")
        self.assertEqual(health.check(cond("False", "RevisionFailed"))[0], "Degraded")
        self.assertEqual(health.check(cond("Unknown", "RevisionMissing"))[0], "Progressing")
        dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "generation": 2}, "spec": {"replicas": 2}}
        self.assertEqual(health.check(dict(dep, status={"observedGeneration": 1}))[0], "Progressing")
        self.assertEqual(health.check(dict(dep, status={"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}))[0], "Progressing")
        self.assertEqual(health.check(dict(dep, status={"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}))[0], "Healthy")
        self.assertEqual(health.check(dict(dep, status={"observedGeneration": 2, "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]}))[0], "Degraded")
        ro = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "r"}}
        self.assertEqual(health.check(dict(ro, status={"phase": "Healthy"}))[0], "Healthy")
        self.assertEqual(health.check(dict(ro, status={"phase": "Paused"}))[0], "Suspended")
        self.assertEqual(health.check(dict(ro, status={"phase": "Progressing", "abort": True}))[0], "Degraded")
        # Its observedGeneration is a string, as the Rollout CRD types it.
        ro2 = dict(ro, metadata={"name": "r", "generation": 2})
        self.assertEqual(health.check(dict(ro2, status={"observedGeneration": "1", "phase": "Healthy"}))[0], "Progressing")
        self.assertEqual(health.check(dict(ro2, status={"observedGeneration": "2", "phase": "Healthy"}))[0], "Healthy")
        self.assertIsNone(health.check({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}))
        self.assertEqual(health.worst(["Healthy", "Degraded", "Progressing"]), "Degraded")

    def test_objects_dropped_from_the_repository_are_pruned_only_when_the_sync_policy_prunes(self):
        kube = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "fake_kube", "server.py"), "--port", "0", "--quiet"],
                                stdout=subprocess.PIPE, text=True, env={k: v for k, v in os.environ.items() if k != "DOCKER_HOST"})
        try:
            kube_url = kube.stdout.readline().split()[1]
            cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: ml}}\ndata: {{k: v}}\n"

            def live(name):
                try:
                    with urllib.request.urlopen(f"{kube_url}/api/v1/namespaces/ml/configmaps/{name}") as r:
                        return r.status
                except urllib.error.HTTPError as e:
                    return e.code

            for app, prune in (("pruned", True), ("kept", False)):
                both = cm.format(name=f"{app}-a") + "---\n" + cm.format(name=f"{app}-b")
                self.repos.write("acme/deploy", "main", f"apps/{app}/objects.yaml", both.encode(), f"add {app}")
                self.call("/_fake/app", {"name": app, "git_dir": self.git_dir, "branch": "main", "path": f"apps/{app}",
                                         "namespace": "ml", "kube_url": kube_url, "prune": prune})
                _, a = self.call(f"/api/v1/applications/{app}?refresh=normal")
                self.assertEqual(a["status"]["sync"]["status"], "Synced", a["status"])
                self.assertEqual((live(f"{app}-a"), live(f"{app}-b")), (200, 200))
                self.assertEqual(a["spec"]["syncPolicy"]["automated"]["prune"], prune)
                # The second object leaves the repository.
                self.repos.write("acme/deploy", "main", f"apps/{app}/objects.yaml", cm.format(name=f"{app}-a").encode(), f"drop {app}-b")
                head = self.repos.head("acme/deploy", "main")
                _, a = self.call(f"/api/v1/applications/{app}?refresh=normal")
                self.assertEqual(a["status"]["sync"]["revision"], head)
                self.assertEqual(a["status"]["operationState"]["phase"], "Succeeded")
                results = {r["name"]: r["status"] for r in a["status"]["operationState"]["syncResult"]["resources"]}
                if prune:
                    self.assertEqual(live(f"{app}-b"), 404)
                    self.assertEqual(results, {f"{app}-a": "Synced", f"{app}-b": "Pruned"})
                    self.assertEqual(a["status"]["sync"]["status"], "Synced")
                else:
                    self.assertEqual(live(f"{app}-b"), 200)
                    self.assertEqual(a["status"]["sync"]["status"], "OutOfSync")
                    orphan = [r for r in a["status"]["resources"] if r["name"] == f"{app}-b"]
                    self.assertEqual(orphan[0].get("requiresPruning"), True, a["status"]["resources"])
                self.assertEqual(live(f"{app}-a"), 200)
            self.assertEqual(self.call("/_fake/violations")[1], [])
        finally:
            kube.terminate()
            kube.wait(timeout=10)
            kube.stdout.close()

    def test_the_answer_validator_catches_a_wrong_type(self):
        spec = server.Spec(server.SPEC)
        self.assertTrue(spec.validate("v1alpha1Application", {"status": {"health": {"status": 1}}}))


if __name__ == "__main__":
    unittest.main()
