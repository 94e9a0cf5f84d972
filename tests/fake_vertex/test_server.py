"""The fake Vertex AI refuses what Google's discovery documents refuse, and keeps
the service's rules (run: python3 -m unittest discover -s tests/fake_vertex)."""

import json
import os
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PARENT = "/v1/projects/mlcd-test/locations/us-central1"


def job(**extra):
    body = {"displayName": "j", "jobSpec": {"workerPoolSpecs": [{
        "machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": "1",
        "containerSpec": {"imageUri": "img", "env": [{"name": "SM_HPS", "value": "{}"}]}}]}}
    body.update(extra)
    return body


class FakeVertexTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Without a Docker engine: deployed models answer what /_fake/serving scripts.
        env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
        cls.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "server.py"), "--quiet"],
                                    stdout=subprocess.PIPE, text=True, env=env)
        cls.url = cls.proc.stdout.readline().split()[1]

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait()

    def setUp(self):
        self.call("POST", "/_fake/reset", {}, token=None)

    def call(self, method, path, body=None, token="ya29.test"):
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def violations(self):
        return self.call("GET", "/_fake/violations", token=None)[1]

    def test_a_valid_job_is_created_and_runs_to_success(self):
        status, out = self.call("POST", PARENT + "/customJobs", job())
        self.assertEqual(status, 200, out)
        self.assertTrue(out["name"].startswith("projects/424242424242/"))
        self.assertEqual(out["state"], "JOB_STATE_QUEUED")
        time.sleep(0.5)
        _, out = self.call("GET", "/v1/" + out["name"])
        self.assertEqual(out["state"], "JOB_STATE_SUCCEEDED")
        self.assertEqual(self.violations(), [])

    def test_contract_violations_are_refused_and_recorded(self):
        cases = {
            "unknown field": (job(colour="red"), "unknown field"),
            "output only": (job(state="JOB_STATE_RUNNING"), "output only"),
            "int64 as number": ({**job(), "jobSpec": {"workerPoolSpecs": [{"replicaCount": 1}]}}, "int64"),
            "duration": ({**job(), "jobSpec": {**job()["jobSpec"], "scheduling": {"timeout": "10m"}}}, "duration"),
            "enum": ({**job(), "jobSpec": {"workerPoolSpecs": [{"machineSpec": {"acceleratorType": "TPU_V9"}}]}}, "is not one of"),
            "required": ({"jobSpec": job()["jobSpec"]}, "displayName: is required"),
        }
        for what, (body, expect) in cases.items():
            status, out = self.call("POST", PARENT + "/customJobs", body)
            self.assertEqual(status, 400, what)
            self.assertIn(expect, out["error"]["message"], what)
        self.assertEqual(len(self.violations()), len(cases))

    def test_no_token_is_a_violation_and_an_expired_token_is_refused(self):
        status, _ = self.call("GET", PARENT + "/customJobs", token=None)
        self.assertEqual(status, 401)
        self.assertEqual(len(self.violations()), 1)
        self.call("POST", "/_fake/config", {"token_lifetime": 0}, token=None)
        self.call("GET", "/_oidc/token?audience=x", token="ghs-oidc-request-token")
        oidc = self.call("GET", "/_oidc/token?audience=x", token="ghs-oidc-request-token")[1]["value"]
        status, sts = self.call("POST", "/v1/token", {
            "grantType": "urn:ietf:params:oauth:grant-type:token-exchange",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
            "subjectToken": oidc, "subjectTokenType": "urn:ietf:params:oauth:token-type:jwt",
            "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token",
            "scope": "https://www.googleapis.com/auth/cloud-platform"}, token=None)
        self.assertEqual(status, 200, sts)
        time.sleep(0.05)
        status, _ = self.call("GET", PARENT + "/customJobs", token=sts["access_token"])
        self.assertEqual(status, 401)

    def test_unknown_paths_and_query_parameters_are_violations(self):
        self.assertEqual(self.call("GET", PARENT + "/trainingPipelines")[0], 404)
        self.assertEqual(self.call("GET", PARENT + "/customJobs?colour=red")[0], 400)
        self.assertEqual(len(self.violations()), 2)

    def test_traffic_split_rules(self):
        for m in ("a", "b"):
            _, op = self.call("POST", PARENT + "/models:upload", {
                "modelId": m, "model": {"displayName": m, "containerSpec": {"imageUri": "img"}}})
            self.call("GET", "/v1/" + op["name"])
            self.call("GET", "/v1/" + op["name"])
        _, op = self.call("POST", PARENT + "/endpoints?endpointId=7", {"displayName": "e"})
        self.call("GET", "/v1/" + op["name"]), self.call("GET", "/v1/" + op["name"])

        def deploy(model, split):
            status, op = self.call("POST", PARENT + "/endpoints/7:deployModel", {
                "deployedModel": {"model": f"projects/mlcd-test/locations/us-central1/models/{model}",
                                  "dedicatedResources": {"machineSpec": {"machineType": "n1-standard-2"},
                                                         "minReplicaCount": 1}},
                "trafficSplit": split})
            if status == 200:
                self.call("GET", "/v1/" + op["name"])
                self.call("GET", "/v1/" + op["name"])
            return status, op
        self.assertEqual(deploy("a", {"0": 100})[0], 200)
        _, ep = self.call("GET", PARENT + "/endpoints/7")
        a = ep["deployedModels"][0]["id"]
        self.assertEqual(deploy("b", {"0": 10, a: 80})[0], 400, "sums to 90")
        self.assertEqual(deploy("b", {"0": 10, a: 90})[0], 200)
        _, ep = self.call("GET", PARENT + "/endpoints/7")
        b = [d["id"] for d in ep["deployedModels"] if d["id"] != a][0]
        status, out = self.call("PATCH", PARENT + f"/endpoints/7?updateMask=traffic_split", {"trafficSplit": {"0": 50, a: 50}})
        self.assertEqual(status, 400)
        self.assertIn('"0"', out["error"]["message"])
        status, out = self.call("POST", PARENT + "/endpoints/7:undeployModel", {"deployedModelId": a})
        self.assertEqual(status, 400, "a model with traffic")
        self.assertEqual(self.call("PATCH", PARENT + f"/endpoints/7?updateMask=traffic_split", {"trafficSplit": {b: 100}})[0], 200)
        status, op = self.call("POST", PARENT + "/endpoints/7:undeployModel", {"deployedModelId": a})
        self.assertEqual(status, 200)
        self.call("GET", "/v1/" + op["name"]), self.call("GET", "/v1/" + op["name"])
        status, out = self.call("DELETE", PARENT + "/endpoints/7")
        self.assertEqual(status, 400)
        self.assertIn("has deployed models", out["error"]["message"], "b is still deployed")
        self.assertEqual(self.violations(), [])


if __name__ == "__main__":
    unittest.main()
