"""Tests of the fake SageMaker (tests/fake_sagemaker/server.py), driven by botocore's own
clients (so the answers must parse the way the AWS SDK parses the real service's).

Run from the repository root:
    python3 -m unittest discover -s tests/fake_sagemaker -v

The server runs as a subprocess on port 0, exactly as mlcd's tests start it.
"""

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import uuid

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "server.py")
ROLE = "arn:aws:iam::123456789012:role/train"


def job_request(name, hp=None, **extra):
    req = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:1",
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "train-loss", "Regex": "epoch=[0-9]+ loss=([0-9.]+)"}],
        },
        "RoleArn": ROLE,
        "HyperParameters": hp or {},
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    req.update(extra)
    return req


class FakeSagemakerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stderr = tempfile.TemporaryFile()
        cls.proc = subprocess.Popen(
            [sys.executable, SERVER, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=cls.stderr,
            text=True,
        )
        line = cls.proc.stdout.readline().strip()
        if not line.startswith("LISTENING http://127.0.0.1:"):
            cls.proc.kill()
            cls.stderr.seek(0)
            raise RuntimeError(f"server did not start: {line!r}\n{cls.stderr.read().decode()}")
        cls.url = line.split(" ", 1)[1]
        parsed = urllib.parse.urlsplit(cls.url)
        cls.host, cls.port = parsed.hostname, parsed.port
        session = botocore.session.get_session()
        cfg = Config(retries={"total_max_attempts": 1})
        kw = dict(
            region_name="us-east-1",
            endpoint_url=cls.url,
            aws_access_key_id="AKIDFAKESAGEMAKER",
            aws_secret_access_key="fakesecret",
            config=cfg,
        )
        cls.sm = session.create_client("sagemaker", **kw)
        cls.logs = session.create_client("logs", **kw)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(10)
        cls.stderr.close()

    def setUp(self):
        self.control("POST", "/_fake/reset")

    def control(self, method, path, body=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        out = json.loads(resp.read() or b"null")
        conn.close()
        self.assertEqual(resp.status, 200, out)
        return out

    def raw(self, target, body, headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        h = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
        h.update(headers or {})
        conn.request("POST", "/", body=json.dumps(body).encode(), headers=h)
        resp = conn.getresponse()
        out = json.loads(resp.read() or b"null")
        conn.close()
        return resp.status, out

    def violations(self):
        return self.control("GET", "/_fake/violations")

    def wait_for(self, name, statuses, bound=15):
        start = time.time()
        while True:
            d = self.sm.describe_training_job(TrainingJobName=name)
            if d["TrainingJobStatus"] in statuses:
                return d
            self.assertLess(time.time() - start, bound, d)
            time.sleep(0.1)

    def test_a_job_completes_with_metrics_and_artifacts_and_a_duplicate_is_in_use(self):
        name = f"ok-{uuid.uuid4().hex[:8]}"
        arn = self.sm.create_training_job(**job_request(name, {"sleep": "0.6"}))["TrainingJobArn"]
        self.assertTrue(arn.endswith(f"training-job/{name}"))
        first = self.sm.describe_training_job(TrainingJobName=name)
        self.assertEqual(first["TrainingJobStatus"], "InProgress")
        self.assertEqual(first["SecondaryStatus"], "Starting")
        self.assertNotIn("ModelArtifacts", first)
        done = self.wait_for(name, {"Completed"})
        self.assertEqual(done["ModelArtifacts"]["S3ModelArtifacts"], f"s3://bucket/out/{name}/output/model.tar.gz")
        metrics = {m["MetricName"]: m["Value"] for m in done["FinalMetricDataList"]}
        self.assertAlmostEqual(metrics["train-loss"], 0.5 / 3, places=3)
        self.assertEqual(done["HyperParameters"], {"sleep": "0.6"})
        with self.assertRaises(ClientError) as ctx:
            self.sm.create_training_job(**job_request(name))
        self.assertEqual(ctx.exception.response["Error"]["Code"], "ResourceInUse")
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        self.assertEqual(self.violations(), [])

    def test_a_failing_job_fails_with_the_reason(self):
        self.sm.create_training_job(**job_request("bad", {"fail": "true"}))
        d = self.wait_for("bad", {"Failed", "Completed"})
        self.assertEqual(d["TrainingJobStatus"], "Failed")
        self.assertIn("fail requested by hyperparameter", d["FailureReason"])
        self.assertEqual(self.violations(), [])

    def test_a_stopped_job_is_stopping_then_stopped_and_a_second_stop_is_refused(self):
        self.sm.create_training_job(**job_request("slow", {"sleep": "60"}))
        self.sm.stop_training_job(TrainingJobName="slow")
        self.assertEqual(self.sm.describe_training_job(TrainingJobName="slow")["TrainingJobStatus"], "Stopping")
        self.assertEqual(self.sm.describe_training_job(TrainingJobName="slow")["TrainingJobStatus"], "Stopped")
        with self.assertRaises(ClientError) as ctx:
            self.sm.stop_training_job(TrainingJobName="slow")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "ValidationException")
        self.assertIn("Stopped", ctx.exception.response["Error"]["Message"])
        self.assertEqual(self.violations(), [])

    def test_an_unknown_job_is_a_validation_exception(self):
        with self.assertRaises(ClientError) as ctx:
            self.sm.describe_training_job(TrainingJobName="nobody")
        err = ctx.exception.response["Error"]
        self.assertEqual((err["Code"], err["Message"]), ("ValidationException", "Requested resource not found."))

    def test_logs_are_read_with_forward_tokens(self):
        with self.assertRaises(ClientError) as ctx:
            self.logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix="j1/")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "ResourceNotFoundException")
        self.sm.create_training_job(**job_request("j1"))
        self.wait_for("j1", {"Completed"})
        streams = self.logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix="j1/")
        names = [s["logStreamName"] for s in streams["logStreams"]]
        self.assertEqual(len(names), 1)
        self.assertTrue(names[0].startswith("j1/algo-1-"))
        page = self.logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=names[0], startFromHead=True)
        lines = [e["message"] for e in page["events"]]
        self.assertIn("epoch=1 loss=0.5000", lines)
        again = self.logs.get_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=names[0], startFromHead=True, nextToken=page["nextForwardToken"]
        )
        self.assertEqual(again["events"], [])
        self.assertEqual(again["nextForwardToken"], page["nextForwardToken"])
        self.assertEqual(self.violations(), [])

    def test_faults_are_injected_per_operation_in_order(self):
        self.sm.create_training_job(**job_request("f1"))
        self.control("POST", "/_fake/fault", {"operation": "DescribeTrainingJob", "kind": "throttle", "times": 2})
        self.control("POST", "/_fake/fault", {"operation": "DescribeTrainingJob", "kind": "503"})
        codes = []
        for _ in range(4):
            try:
                self.sm.describe_training_job(TrainingJobName="f1")
                codes.append("ok")
            except ClientError as e:
                codes.append((e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]))
        self.assertEqual(codes, [(400, "ThrottlingException"), (400, "ThrottlingException"), (503, "ServiceUnavailable"), "ok"])
        faults = [r["fault"] for r in self.control("GET", "/_fake/requests") if r["operation"] == "DescribeTrainingJob"]
        self.assertEqual(faults, ["throttle", "throttle", "503", None])

    def test_requests_that_break_the_model_are_refused_and_recorded(self):
        bad = job_request("bad_name!", Unknown=1)
        bad["ResourceConfig"]["InstanceType"] = "ml.nonexistent"
        bad["StoppingCondition"]["MaxRuntimeInSeconds"] = 0
        bad["Tags"] = [{"Key": "a#b", "Value": "x"}]
        del bad["RoleArn"]
        # botocore would refuse these itself: sign and send them by hand
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        req = AWSRequest(
            method="POST",
            url=self.url + "/",
            data=json.dumps(bad),
            headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.CreateTrainingJob"},
        )
        SigV4Auth(Credentials("AKIDFAKE", "secret"), "sagemaker", "us-east-1").add_auth(req)
        status, out = self.raw("SageMaker.CreateTrainingJob", bad, dict(req.headers.items()))
        self.assertEqual(status, 400)
        self.assertEqual(out["__type"], "ValidationException")
        kinds = {(v["path"], v["kind"]) for v in self.violations()}
        for expected in [
            ("/TrainingJobName", "pattern"),
            ("/Unknown", "unknown"),
            ("/RoleArn", "required"),
            ("/ResourceConfig/InstanceType", "enum"),
            ("/StoppingCondition/MaxRuntimeInSeconds", "min"),
            ("/Tags/0/Key", "pattern"),
        ]:
            self.assertIn(expected, kinds)
        self.assertEqual(self.control("GET", "/_fake/jobs"), {})

    def test_unsigned_or_wrongly_scoped_requests_are_refused(self):
        status, out = self.raw("SageMaker.DescribeTrainingJob", {"TrainingJobName": "x"})
        self.assertEqual((status, out["__type"]), (403, "MissingAuthenticationTokenException"))
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        req = AWSRequest(
            method="POST",
            url=self.url + "/",
            data=json.dumps({"TrainingJobName": "x"}),
            headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.DescribeTrainingJob"},
        )
        SigV4Auth(Credentials("AKIDFAKE", "secret"), "ecr", "us-east-1").add_auth(req)
        status, out = self.raw("SageMaker.DescribeTrainingJob", {"TrainingJobName": "x"}, dict(req.headers.items()))
        self.assertEqual((status, out["__type"]), (403, "InvalidSignatureException"))
        messages = [v["message"] for v in self.violations()]
        self.assertTrue(any("no Authorization header" in m for m in messages), messages)
        self.assertTrue(any("'ecr'" in m for m in messages), messages)
        status, out = self.raw("SageMaker.NoSuchOperation", {})
        self.assertEqual(status, 400)


if __name__ == "__main__":
    unittest.main()
