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


IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:1"


def variant(name, weight=1.0, model=None):
    return {
        "VariantName": name,
        "ModelName": model or f"ep-{name}",
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
        "InitialVariantWeight": weight,
    }


class ServerCase(unittest.TestCase):
    """One fake server for the class, reset before each test."""
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
        cls.rt = session.create_client("sagemaker-runtime", **kw)

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


class FakeSagemakerTest(ServerCase):
    """Training jobs and their logs."""

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


class FakeHostingTest(ServerCase):
    """Models, endpoint configurations, endpoints and InvokeEndpoint."""

    def model(self, name, env=None):
        container = {"Image": IMAGE, "ModelDataUrl": "s3://bucket/model.tar.gz"}
        if env:
            container["Environment"] = env
        self.sm.create_model(ModelName=name, PrimaryContainer=container, ExecutionRoleArn=ROLE)

    def settle(self, name, bound=10):
        start = time.time()
        while True:
            d = self.sm.describe_endpoint(EndpointName=name)
            if d["EndpointStatus"] not in ("Creating", "Updating", "RollingBack"):
                return d
            self.assertLess(time.time() - start, bound, d)

    def endpoint(self, name="ep"):
        self.model("ep-v1")
        self.sm.create_endpoint_config(EndpointConfigName="ep-c1", ProductionVariants=[variant("v1")])
        self.sm.create_endpoint(EndpointName=name, EndpointConfigName="ep-c1")

    def test_an_endpoint_is_creating_then_in_service_and_updates_apply_a_new_config(self):
        self.endpoint()
        first = self.sm.describe_endpoint(EndpointName="ep")
        self.assertEqual(first["EndpointStatus"], "Creating")
        self.assertNotIn("ProductionVariants", first)
        d = self.settle("ep")
        self.assertEqual(d["EndpointStatus"], "InService")
        self.assertEqual([v["VariantName"] for v in d["ProductionVariants"]], ["v1"])
        self.assertEqual(d["ProductionVariants"][0]["DeployedImages"][0]["SpecifiedImage"], IMAGE)
        self.model("ep-v2")
        self.sm.create_endpoint_config(
            EndpointConfigName="ep-c2", ProductionVariants=[variant("v1"), variant("v2", 0.0)]
        )
        self.sm.update_endpoint(EndpointName="ep", EndpointConfigName="ep-c2")
        self.assertEqual(self.sm.describe_endpoint(EndpointName="ep")["EndpointStatus"], "Updating")
        # A second update while the first runs is refused, as SageMaker does.
        with self.assertRaises(ClientError) as ctx:
            self.sm.update_endpoint(EndpointName="ep", EndpointConfigName="ep-c1")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "ValidationException")
        self.assertIn("Cannot update in-progress endpoint", ctx.exception.response["Error"]["Message"])
        d = self.settle("ep")
        self.assertEqual(d["EndpointConfigName"], "ep-c2")
        self.assertEqual({v["VariantName"]: v["CurrentWeight"] for v in d["ProductionVariants"]}, {"v1": 1.0, "v2": 0.0})
        self.sm.update_endpoint_weights_and_capacities(
            EndpointName="ep",
            DesiredWeightsAndCapacities=[{"VariantName": "v1", "DesiredWeight": 50.0}, {"VariantName": "v2", "DesiredWeight": 50.0}],
        )
        d = self.settle("ep")
        self.assertEqual({v["VariantName"]: v["CurrentWeight"] for v in d["ProductionVariants"]}, {"v1": 50.0, "v2": 50.0})
        with self.assertRaises(ClientError) as ctx:
            self.sm.update_endpoint_weights_and_capacities(
                EndpointName="ep", DesiredWeightsAndCapacities=[{"VariantName": "v9", "DesiredWeight": 1.0}]
            )
        self.assertIn("v9", ctx.exception.response["Error"]["Message"])
        self.assertEqual(self.violations(), [])

    def test_configs_models_and_endpoints_are_described_listed_and_deleted(self):
        self.endpoint()
        c = self.sm.describe_endpoint_config(EndpointConfigName="ep-c1")
        self.assertEqual(c["ProductionVariants"][0]["ModelName"], "ep-v1")
        self.assertEqual(self.sm.describe_model(ModelName="ep-v1")["PrimaryContainer"]["Image"], IMAGE)
        names = [x["EndpointConfigName"] for x in self.sm.list_endpoint_configs(NameContains="ep-c")["EndpointConfigs"]]
        self.assertEqual(names, ["ep-c1"])
        with self.assertRaises(ClientError) as ctx:
            self.model("ep-v1")
        self.assertIn("already existing model", ctx.exception.response["Error"]["Message"])
        self.settle("ep")
        self.sm.delete_endpoint(EndpointName="ep")
        self.assertEqual(self.sm.describe_endpoint(EndpointName="ep")["EndpointStatus"], "Deleting")
        with self.assertRaises(ClientError) as ctx:
            for _ in range(5):
                self.sm.describe_endpoint(EndpointName="ep")
        self.assertIn("Could not find endpoint", ctx.exception.response["Error"]["Message"])
        self.sm.delete_endpoint_config(EndpointConfigName="ep-c1")
        self.sm.delete_model(ModelName="ep-v1")
        with self.assertRaises(ClientError):
            self.sm.describe_model(ModelName="ep-v1")
        with self.assertRaises(ClientError) as ctx:
            self.sm.create_endpoint_config(EndpointConfigName="ep-c3", ProductionVariants=[variant("v1")])
        self.assertIn("Could not find model", ctx.exception.response["Error"]["Message"])
        self.assertEqual(self.violations(), [])

    def test_states_are_scripted_by_the_control_endpoint(self):
        self.endpoint()
        self.settle("ep")
        self.control("POST", "/_fake/endpoint", {"name": "ep", "status": "Updating"})
        for _ in range(5):
            self.assertEqual(self.sm.describe_endpoint(EndpointName="ep")["EndpointStatus"], "Updating")
        self.control("POST", "/_fake/endpoint", {"name": "ep", "status": "RollingBack", "describes": 2, "failure_reason": "alarm latency-high fired"})
        d = self.sm.describe_endpoint(EndpointName="ep")
        self.assertEqual(d["EndpointStatus"], "RollingBack")
        d = self.settle("ep")
        self.assertEqual(d["EndpointStatus"], "InService")
        self.assertEqual(d["FailureReason"], "alarm latency-high fired")
        self.control("POST", "/_fake/endpoint", {"name": "ep", "status": "Failed", "failure_reason": "image cannot be pulled"})
        d = self.sm.describe_endpoint(EndpointName="ep")
        self.assertEqual((d["EndpointStatus"], d["FailureReason"]), ("Failed", "image cannot be pulled"))
        view = self.control("GET", "/_fake/endpoints")
        self.assertEqual(view["ep"]["status"], "Failed")

    def test_invoke_answers_per_variant_and_a_failing_model_is_a_model_error(self):
        self.endpoint()
        self.model("ep-bad", {"MODEL_FAIL_SMOKE": "true"})
        self.settle("ep")
        self.sm.create_endpoint_config(
            EndpointConfigName="ep-c2", ProductionVariants=[variant("v1"), variant("bad", 0.0, "ep-bad")]
        )
        self.sm.update_endpoint(EndpointName="ep", EndpointConfigName="ep-c2")
        self.settle("ep")
        body = json.dumps({"instances": [[1, 2], [3, 4]]})
        a = self.rt.invoke_endpoint(EndpointName="ep", Body=body, ContentType="application/json", TargetVariant="v1")
        self.assertEqual(a["InvokedProductionVariant"], "v1")
        self.assertEqual(json.loads(a["Body"].read())["predictions"], [0.5, 0.5])
        with self.assertRaises(ClientError) as ctx:
            self.rt.invoke_endpoint(EndpointName="ep", Body=body, ContentType="application/json", TargetVariant="bad")
        err = ctx.exception.response
        self.assertEqual(err["Error"]["Code"], "ModelError")
        self.assertEqual(err["ResponseMetadata"]["HTTPStatusCode"], 424)
        self.assertEqual(err["OriginalStatusCode"], 500)
        with self.assertRaises(ClientError) as ctx:
            self.rt.invoke_endpoint(EndpointName="ep", Body=body, TargetVariant="v9")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "ValidationError")
        recorded = [r for r in self.control("GET", "/_fake/requests") if r["operation"] == "InvokeEndpoint"]
        self.assertEqual([r["body"].get("TargetVariant") for r in recorded], ["v1", "bad", "v9"])
        self.assertEqual(recorded[0]["scope"]["service"], "sagemaker")
        self.assertEqual(self.violations(), [])

    def test_bad_hosting_requests_are_violations(self):
        self.model("ep-v1")
        status, out = self.raw(
            "SageMaker.CreateEndpointConfig",
            {"EndpointConfigName": "ep-c1", "ProductionVariants": [variant("v1"), variant("v1")], "Bogus": 1},
        )
        self.assertEqual(status, 403)  # unsigned: refused before validation
        self.control("POST", "/_fake/reset")
        self.model("ep-v1")
        with self.assertRaises(ClientError) as ctx:
            self.sm.create_endpoint_config(
                EndpointConfigName="ep-c1",
                ProductionVariants=[variant("v1", 0.0)],
                ShadowProductionVariants=[variant("v1")],
            )
        self.assertEqual(ctx.exception.response["Error"]["Code"], "ValidationException")
        kinds = {v["kind"] for v in self.violations()}
        self.assertEqual(kinds, {"semantic"})
