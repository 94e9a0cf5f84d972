#!/usr/bin/env python3
"""Scripted fake Amazon SageMaker (training jobs, hosting, the runtime's InvokeEndpoint)
and CloudWatch Logs for mlcd's tests: the states moto never reaches (InProgress, Failed,
Stopping, Stopped, training logs, endpoints Creating/Updating/RollingBack/Failed,
throttling, 5xx). Every request is validated against botocore's own service models
(sagemaker 2017-07-24, sagemaker-runtime 2017-05-13, logs 2014-03-28), loaded at start.
The hosting operations live in hosting.py (see its docstring for the scripted states).

Usage:
    python3 tests/fake_sagemaker/server.py [--sagemaker-model PATH] [--logs-model PATH]
                                           [--runtime-model PATH]
                                           [--host 127.0.0.1] [--port 0] [--quiet]

The model paths default to the installed botocore package's
`data/<service>/<version>/service-2.json(.gz)`. Once listening it prints exactly one
line on stdout, `LISTENING http://127.0.0.1:PORT`, and flushes; logs go to stderr.
SIGTERM or SIGINT stops it cleanly.

Each request (AWS JSON 1.1: `POST /`, `X-Amz-Target: <targetPrefix>.<Operation>`):
  * must be SigV4-signed: `Authorization: AWS4-HMAC-SHA256 Credential=<key>/<date>/
    <region>/<service>/aws4_request, SignedHeaders=..., Signature=...` whose service is
    the model's signing name (`sagemaker`, `logs`), with `X-Amz-Date` and `host` signed;
    else 403 (`MissingAuthenticationTokenException` / `IncompleteSignatureException`);
  * must carry `Content-Type: application/x-amz-json-1.1` and a JSON object body;
  * is validated against the operation's input shape: required members, unknown
    members, types, enums, string length and pattern (Java regexes through the
    `regex` module when installed), list/map sizes, numeric min/max; a failure is
    answered 400 `ValidationException` like SageMaker's ("1 validation error detected:
    ...") and recorded as a violation.

Answers (jobs are scripted by their hyperparameters):
  CreateTrainingJob    {"TrainingJobArn"}; a duplicate name -> 400 ResourceInUse.
  DescribeTrainingJob  `sleep` (seconds) InProgress with SecondaryStatus Starting ->
                       Downloading -> Training (a third each), then Completed with
                       FinalMetricDataList (each MetricDefinitions regex applied to the
                       job's log lines, last match, as SageMaker does) and ModelArtifacts;
                       `fail=true` -> Failed, FailureReason "AlgorithmError: fail requested
                       by hyperparameter". After StopTrainingJob: Stopping once, then
                       Stopped. Unknown name -> 400 ValidationException "Requested
                       resource not found." (what the live service answers).
                       ModelArtifacts is left out until the job has ended, as the live
                       service does, although the model marks it required.
  StopTrainingJob      {}; a job that is no longer InProgress -> 400 ValidationException.
  Create/Describe/DeleteModel, Create/Describe/Delete/ListEndpointConfig(s),
  Create/Describe/Update/DeleteEndpoint, UpdateEndpointWeightsAndCapacities: hosting.py.
  InvokeEndpoint (REST-JSON: POST /endpoints/{EndpointName}/invocations, signed as
                       `sagemaker`, headers and body validated against InvokeEndpointInput):
                       hosting.py (scripted answers, or with --run-containers a real
                       container of the variant's image answers); recorded with service "SageMakerRuntime" and the body
                       {EndpointName, TargetVariant, ContentType, Body (text)}.
  DescribeLogStreams / GetLogEvents   group /aws/sagemaker/TrainingJobs, one stream per
                       instance `<job>/algo-<n>-<epoch>` once the job is past Starting;
                       forward tokens `f/<index>` (the same token back at the end).
                       No stream yet in the whole group -> ResourceNotFoundException.

Control endpoints (never validated nor recorded):
    GET  /_fake/requests     recorded requests: {seq, service, operation, body, scope, fault,
                             time (SageMaker and Logs: seconds since the epoch, on arrival)};
                             scope: {date, region, service, temporary (an ASIA… key),
                             session_token (signed X-Amz-Security-Token)}
    GET  /_fake/violations   every violation so far: {seq, operation, kind, path, message}
    GET  /_fake/jobs         the jobs and their current status
    GET  /_fake/endpoints    the endpoints: status, config, variants, failure, DeploymentConfig
    POST /_fake/endpoint     {"name", "status": Updating|RollingBack|Failed|InService|…,
                              "failure_reason", "describes": N (else until told)}: script an
                             endpoint's state; {"default_describes": N}: how many describes
                             a transition lasts (default 2)
    GET  /_fake/health       {"ok": true, "models": {...}}
    POST /_fake/reset        forget requests, violations, jobs, faults
    POST /_fake/fault        {"operation": "DescribeTrainingJob", "kind": "throttle"|"500"|"503",
                              "times": 2}: the next `times` calls of that operation answer
                             ThrottlingException (HTTP 400), InternalFailure (HTTP 500) or
                             ServiceUnavailable (HTTP 503); queued in order; {"clear": true}
"""

import argparse
import base64
import copy
import gzip
import http.server
import itertools
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hosting import AwsFault, Hosting  # noqa: E402

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

try:
    import regex as java_re  # understands \p{L} and friends, as AWS's Java patterns use
except ImportError:  # pragma: no cover
    java_re = re

ACCOUNT = "123456789012"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
JSON_1_1 = "application/x-amz-json-1.1"
AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z0-9-]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)
FAULTS = {
    "throttle": (400, "ThrottlingException", "Rate exceeded"),
    "500": (500, "InternalFailure", "We encountered an internal error. Please try again."),
    "503": (503, "ServiceUnavailable", "Service is unavailable. Please try again."),
}

log = logging.getLogger("fake-sagemaker")


def botocore_model(service):
    """The path of botocore's newest model for `service` (json or json.gz)."""
    import botocore

    base = os.path.join(os.path.dirname(botocore.__file__), "data", service)
    version = sorted(os.listdir(base))[-1]
    for name in ("service-2.json", "service-2.json.gz"):
        p = os.path.join(base, version, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"no service-2.json under {base}/{version}")


def load_json(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


class Model:
    """One botocore service model: operations, shapes, target prefix, signing name."""

    def __init__(self, path):
        self.path = path
        self.doc = load_json(path)
        meta = self.doc["metadata"]
        self.target_prefix = meta.get("targetPrefix")
        self.protocol = meta["protocol"]
        self.signing_name = meta.get("signingName") or meta["endpointPrefix"]
        self.service_id = meta.get("serviceId", meta["endpointPrefix"])
        self.api_version = meta["apiVersion"]
        self.shapes = self.doc["shapes"]
        self.operations = self.doc["operations"]
        self._patterns = {}
        self.bad_patterns = set()

    def pattern(self, p):
        if p not in self._patterns:
            try:
                self._patterns[p] = java_re.compile(p)
            except Exception:  # a Java construct Python cannot compile: length/type checks still apply
                self._patterns[p] = None
                self.bad_patterns.add(p)
        return self._patterns[p]

    def validate(self, shape_name, value, path, errors):
        s = self.shapes[shape_name]
        t = s["type"]
        where = path or "(body)"
        if t == "structure":
            if not isinstance(value, dict):
                errors.append((where, "type", f"expected an object ({shape_name}), got {type(value).__name__}"))
                return
            members = s.get("members", {})
            for req in s.get("required", []):
                if req not in value:
                    errors.append((f"{path}/{req}", "required", f"Member must not be null ({shape_name}.{req} is required)"))
            for k, v in value.items():
                if k not in members:
                    errors.append((f"{path}/{k}", "unknown", f"{k} is not a member of {shape_name}"))
                elif v is None:
                    errors.append((f"{path}/{k}", "type", "null is not a value in AWS JSON (leave the member out)"))
                else:
                    self.validate(members[k]["shape"], v, f"{path}/{k}", errors)
        elif t == "list":
            if not isinstance(value, list):
                errors.append((where, "type", f"expected a list ({shape_name})"))
                return
            self._size(s, len(value), where, errors, "items")
            for i, v in enumerate(value):
                self.validate(s["member"]["shape"], v, f"{path}/{i}", errors)
        elif t == "map":
            if not isinstance(value, dict):
                errors.append((where, "type", f"expected a map ({shape_name})"))
                return
            self._size(s, len(value), where, errors, "entries")
            for k, v in value.items():
                self.validate(s["key"]["shape"], k, f"{path}/{k}(key)", errors)
                self.validate(s["value"]["shape"], v, f"{path}/{k}", errors)
        elif t == "string":
            if not isinstance(value, str):
                errors.append((where, "type", f"expected a string ({shape_name}), got {type(value).__name__}"))
                return
            if "enum" in s and value not in s["enum"]:
                errors.append((where, "enum", f"Member must satisfy enum value set: {shape_name} ({value!r} is not one)"))
            self._size(s, len(value), where, errors, "characters")
            p = s.get("pattern")
            if p is not None:
                rx = self.pattern(p)
                if rx is not None and not rx.fullmatch(value):
                    errors.append((where, "pattern", f"Member must satisfy regular expression pattern: {p} ({value!r})"))
        elif t in ("integer", "long"):
            if not isinstance(value, int) or isinstance(value, bool):
                errors.append((where, "type", f"expected an integer ({shape_name}), got {value!r}"))
                return
            self._range(s, value, where, errors)
        elif t in ("double", "float"):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                errors.append((where, "type", f"expected a number ({shape_name})"))
                return
            self._range(s, value, where, errors)
        elif t == "boolean":
            if not isinstance(value, bool):
                errors.append((where, "type", f"expected a boolean ({shape_name}), got {value!r}"))
        elif t == "timestamp":
            if not isinstance(value, (int, float, str)) or isinstance(value, bool):
                errors.append((where, "type", f"expected a timestamp ({shape_name})"))
        elif t == "blob":
            if not isinstance(value, str):
                errors.append((where, "type", f"expected base64 text ({shape_name})"))

    @staticmethod
    def _size(s, n, where, errors, unit):
        if "min" in s and n < s["min"]:
            errors.append((where, "min", f"Member must have length greater than or equal to {s['min']} (has {n} {unit})"))
        if "max" in s and n > s["max"]:
            errors.append((where, "max", f"Member must have length less than or equal to {s['max']} (has {n} {unit})"))

    @staticmethod
    def _range(s, v, where, errors):
        if "min" in s and v < s["min"]:
            errors.append((where, "min", f"Member must have value greater than or equal to {s['min']} ({v})"))
        if "max" in s and v > s["max"]:
            errors.append((where, "max", f"Member must have value less than or equal to {s['max']} ({v})"))


def log_lines(job):
    """The job's scripted log lines (all of them, once it has ended)."""
    hp = job["request"].get("HyperParameters", {})
    lines = [f"Training job {job['name']} starting with hyperparameters {json.dumps(hp, sort_keys=True)}"]
    # A smaller learning rate learns slower: the loss scales with 0.1 / lr, so
    # tests can script a worse challenger (lr=0.01 ends at 10x the loss).
    try:
        scale = 0.1 / float(hp.get("lr", "0.1"))
    except (ValueError, ZeroDivisionError):
        scale = 1.0
    lines += [f"epoch={i} loss={0.5 * scale / i:.4f}" for i in range(1, 4)]
    if str(hp.get("fail", "")).lower() == "true":
        lines.append("AlgorithmError: fail requested by hyperparameter")
    else:
        lines += ["validation accuracy=0.9000", "Training complete, model saved to /opt/ml/model"]
    return lines


class Fake:
    def __init__(self, sagemaker, logs, runtime):
        self.models = {sagemaker.target_prefix: sagemaker, logs.target_prefix: logs}
        self.runtime = runtime
        self.hosting = Hosting()
        self.lock = threading.RLock()
        self.reset()

    def reset(self):
        self.requests = []
        self.violations = []
        self.jobs = {}
        self.faults = {}
        self.seq = itertools.count(1)
        self.hosting.reset()

    # --- state ---------------------------------------------------------------

    def status(self, job, now=None, describing=False):
        """The job's status now; a describe after a stop moves Stopping -> Stopped."""
        now = time.time() if now is None else now
        hp = job["request"].get("HyperParameters", {})
        try:
            sleep = max(0.0, float(hp.get("sleep", 0)))
        except ValueError:
            sleep = 0.0
        fail = str(hp.get("fail", "")).lower() == "true"
        elapsed = now - job["created"]
        if job["stop"] is not None:
            if job["stop"] == "Stopping" and describing:
                job["stop_describes"] += 1
                if job["stop_describes"] > 1:
                    job["stop"] = "Stopped"
                    job["ended"] = now
            return (job["stop"], job["stop"])
        if elapsed < sleep:
            third = sleep / 3
            secondary = "Starting" if elapsed < third else "Downloading" if elapsed < 2 * third else "Training"
            return ("InProgress", secondary)
        if job.get("ended") is None:
            job["ended"] = job["created"] + sleep
        return ("Failed", "Failed") if fail else ("Completed", "Completed")

    def visible_lines(self, job, now=None):
        status, secondary = self.status(job, now)
        lines = log_lines(job)
        if status == "InProgress":
            return [] if secondary == "Starting" else lines[:1]
        return lines

    def streams(self, job, now=None):
        status, secondary = self.status(job, now)
        if status == "InProgress" and secondary == "Starting":
            return []
        count = job["request"].get("ResourceConfig", {}).get("InstanceCount", 1) or 1
        stamp = int(job["created"])
        return [f"{job['name']}/algo-{i}-{stamp}" for i in range(1, count + 1)]

    # --- operations ----------------------------------------------------------

    def arn(self, region, name):
        return f"arn:aws:sagemaker:{region}:{ACCOUNT}:training-job/{name.lower()}"

    def op_create(self, body, region):
        name = body["TrainingJobName"]
        if name in self.jobs:
            raise AwsFault(
                400,
                "ResourceInUse",
                "Training job names must be unique within an AWS account and region, and a training job "
                f"with this name already exists ({self.arn(region, name)})",
                member="Message",
            )
        self.jobs[name] = {
            "name": name,
            "request": copy.deepcopy(body),
            "region": region,
            "created": time.time(),
            "stop": None,
            "stop_describes": 0,
            "ended": None,
        }
        return {"TrainingJobArn": self.arn(region, name)}

    def job(self, name):
        job = self.jobs.get(name)
        if job is None:
            raise AwsFault(400, "ValidationException", "Requested resource not found.")
        return job

    def op_describe(self, body, region):
        job = self.job(body["TrainingJobName"])
        status, secondary = self.status(job, describing=True)
        req = job["request"]
        out = {
            "TrainingJobName": job["name"],
            "TrainingJobArn": self.arn(job["region"], job["name"]),
            "TrainingJobStatus": status,
            "SecondaryStatus": secondary,
            "HyperParameters": req.get("HyperParameters", {}),
            "AlgorithmSpecification": req.get("AlgorithmSpecification", {}),
            "RoleArn": req["RoleArn"],
            "OutputDataConfig": req["OutputDataConfig"],
            "ResourceConfig": req.get("ResourceConfig", {}),
            "StoppingCondition": req.get("StoppingCondition", {}),
            "CreationTime": job["created"],
            "LastModifiedTime": time.time(),
            "SecondaryStatusTransitions": [{"Status": secondary, "StartTime": job["created"]}],
        }
        for key in ("InputDataConfig", "VpcConfig", "Environment"):
            if key in req:
                out[key] = req[key]
        if status != "InProgress" or secondary != "Starting":
            out["TrainingStartTime"] = job["created"]
        if status in ("Completed", "Failed", "Stopped"):
            out["TrainingEndTime"] = job["ended"] or time.time()
        if status in ("Completed", "Stopped"):
            out["ModelArtifacts"] = {
                "S3ModelArtifacts": f"{req['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{job['name']}/output/model.tar.gz"
            }
        if status == "Failed":
            out["FailureReason"] = "AlgorithmError: fail requested by hyperparameter"
        if status == "Completed":
            metrics = []
            lines = log_lines(job)
            for d in req.get("AlgorithmSpecification", {}).get("MetricDefinitions", []):
                value = None
                for line in lines:
                    m = java_re.search(d["Regex"], line)
                    if m and m.groups():
                        try:
                            value = float(m.group(1))
                        except ValueError:
                            pass
                if value is not None:
                    metrics.append({"MetricName": d["Name"], "Value": value, "Timestamp": out["TrainingEndTime"]})
            out["FinalMetricDataList"] = metrics
        return out

    def op_list_tags(self, body, region):
        """ListTags of a training job (tags as created) or an endpoint."""
        target = body["ResourceArn"]
        for job in self.jobs.values():
            if self.arn(job["region"], job["name"]) == target:
                return {"Tags": job["request"].get("Tags", [])}
        tags = self.hosting.tags_of(target)
        if tags is not None:
            return {"Tags": tags}
        raise AwsFault(400, "ValidationException", f"Resource {target} not found.")

    def op_stop(self, body, region):
        job = self.job(body["TrainingJobName"])
        status, _ = self.status(job)
        if status != "InProgress":
            raise AwsFault(
                400,
                "ValidationException",
                f"The request was rejected because the training job is in status {status}.",
            )
        job["stop"] = "Stopping"
        return {}

    def op_describe_log_streams(self, body, region):
        group = body.get("logGroupName") or body.get("logGroupIdentifier")
        all_streams = [s for job in self.jobs.values() for s in self.streams(job)]
        if group != LOG_GROUP or not all_streams:
            raise AwsFault(400, "ResourceNotFoundException", "The specified log group does not exist.")
        prefix = body.get("logStreamNamePrefix", "")
        found = sorted(s for s in all_streams if s.startswith(prefix))
        return {
            "logStreams": [
                {
                    "logStreamName": s,
                    "creationTime": int(self.jobs[s.split("/")[0]]["created"] * 1000),
                    "arn": f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{LOG_GROUP}:log-stream:{s}",
                    "storedBytes": 0,
                }
                for s in found
            ]
        }

    def op_get_log_events(self, body, region):
        group = body.get("logGroupName") or body.get("logGroupIdentifier")
        stream = body["logStreamName"]
        job = self.jobs.get(stream.split("/")[0])
        if group != LOG_GROUP or job is None or stream not in self.streams(job):
            raise AwsFault(400, "ResourceNotFoundException", "The specified log stream does not exist.")
        lines = self.visible_lines(job)
        token = body.get("nextToken")
        start = 0
        if token is not None:
            m = re.fullmatch(r"[fb]/(\d+)", token)
            if not m:
                raise AwsFault(400, "InvalidParameterException", "The specified nextToken is invalid.")
            start = int(m.group(1))
        elif not body.get("startFromHead", False):
            start = max(0, len(lines) - body.get("limit", 10000))
        limit = body.get("limit", 10000)
        chunk = lines[start : start + limit]
        end = start + len(chunk)
        base_ms = int(job["created"] * 1000)
        return {
            "events": [
                {"timestamp": base_ms + (start + i) * 10, "message": line, "ingestionTime": base_ms + (start + i) * 10 + 5}
                for i, line in enumerate(chunk)
            ],
            "nextForwardToken": f"f/{end}",
            "nextBackwardToken": f"b/{start}",
        }

    HANDLERS = {
        ("SageMaker", "CreateTrainingJob"): op_create,
        ("SageMaker", "DescribeTrainingJob"): op_describe,
        ("SageMaker", "StopTrainingJob"): op_stop,
        ("SageMaker", "ListTags"): op_list_tags,
        ("Logs_20140328", "DescribeLogStreams"): op_describe_log_streams,
        ("Logs_20140328", "GetLogEvents"): op_get_log_events,
        ("SageMaker", "CreateModel"): lambda self, b, r: self.hosting.create_model(b, r),
        ("SageMaker", "DescribeModel"): lambda self, b, r: self.hosting.describe_model(b, r),
        ("SageMaker", "DeleteModel"): lambda self, b, r: self.hosting.delete_model(b, r),
        ("SageMaker", "CreateEndpointConfig"): lambda self, b, r: self.hosting.create_config(b, r),
        ("SageMaker", "DescribeEndpointConfig"): lambda self, b, r: self.hosting.describe_config(b, r),
        ("SageMaker", "DeleteEndpointConfig"): lambda self, b, r: self.hosting.delete_config(b, r),
        ("SageMaker", "ListEndpointConfigs"): lambda self, b, r: self.hosting.list_configs(b, r),
        ("SageMaker", "CreateEndpoint"): lambda self, b, r: self.hosting.create_endpoint(b, r),
        ("SageMaker", "DescribeEndpoint"): lambda self, b, r: self.hosting.describe_endpoint(b, r),
        ("SageMaker", "UpdateEndpoint"): lambda self, b, r: self.hosting.update_endpoint(b, r),
        ("SageMaker", "UpdateEndpointWeightsAndCapacities"): lambda self, b, r: self.hosting.update_weights(b, r),
        ("SageMaker", "DeleteEndpoint"): lambda self, b, r: self.hosting.delete_endpoint(b, r),
    }

    # --- requests ------------------------------------------------------------

    def violation(self, seq, operation, kind, path, message):
        v = {"seq": seq, "operation": operation, "kind": kind, "path": path, "message": message}
        self.violations.append(v)
        log.warning("VIOLATION %s %s %s: %s", operation, kind, path, message)

    def handle(self, method, path, headers, raw):
        """(status, body) for one AWS request."""
        with self.lock:
            seq = next(self.seq)
            target = headers.get("X-Amz-Target") or ""
            prefix, _, operation = target.partition(".")
            model = self.models.get(prefix)
            rec = {"seq": seq, "service": prefix, "operation": operation or None, "body": None, "scope": None, "fault": None, "time": time.time()}
            self.requests.append(rec)
            if method != "POST" or path.split("?")[0] != "/":
                self.violation(seq, target, "protocol", path, f"AWS JSON 1.1 requests are POST /, got {method} {path}")
                raise AwsFault(404, "UnknownOperationException", f"no such path {method} {path}")
            if model is None or operation not in model.operations:
                self.violation(seq, target, "protocol", "X-Amz-Target", f"unknown operation target {target!r}")
                raise AwsFault(400, "UnknownOperationException", f"Unknown operation {target}")
            auth = headers.get("Authorization") or ""
            m = AUTH_RE.match(auth)
            if not auth:
                self.violation(seq, operation, "auth", "Authorization", "request is not signed (no Authorization header)")
                raise AwsFault(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
            if not m:
                self.violation(seq, operation, "auth", "Authorization", "Authorization is not a SigV4 header")
                raise AwsFault(403, "IncompleteSignatureException", "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.")
            signed = m["signed"].split(";")
            # What kind of credentials signed (never the key itself): ASIA… keys are temporary.
            rec["scope"] = {
                "date": m["date"],
                "region": m["region"],
                "service": m["service"],
                "temporary": m["key"].startswith("ASIA"),
                "session_token": bool(headers.get("X-Amz-Security-Token")) and "x-amz-security-token" in signed,
            }
            problems = []
            if m["service"] != model.signing_name:
                problems.append(f"credential scope names service {m['service']!r}, expected {model.signing_name!r}")
            for h in ("host", "x-amz-date"):
                if h not in signed:
                    problems.append(f"{h} is not among the signed headers")
            if "x-amz-target" not in signed:
                problems.append("x-amz-target is not among the signed headers")
            if not headers.get("X-Amz-Date", "").startswith(m["date"]):
                problems.append("X-Amz-Date is missing or does not match the credential scope's date")
            if problems:
                for p in problems:
                    self.violation(seq, operation, "auth", "Authorization", p)
                raise AwsFault(403, "InvalidSignatureException", "; ".join(problems))
            ctype = (headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype != JSON_1_1:
                self.violation(seq, operation, "protocol", "Content-Type", f"expected {JSON_1_1}, got {ctype!r}")
            try:
                body = json.loads(raw or b"{}")
            except ValueError as e:
                self.violation(seq, operation, "protocol", "(body)", f"body is not JSON: {e}")
                raise AwsFault(400, "SerializationException", "body is not JSON") from None
            rec["body"] = body
            errors = []
            input_shape = model.operations[operation].get("input", {}).get("shape")
            if input_shape:
                model.validate(input_shape, body, "", errors)
            errors += self.semantic(operation, body)
            for where, kind, message in errors:
                self.violation(seq, operation, kind, where, message)
            if errors:
                n = len(errors)
                detail = "; ".join(f"Value at '{w}' failed to satisfy constraint: {msg}" for w, _, msg in errors[:5])
                raise AwsFault(400, "ValidationException", f"{n} validation error{'s' if n > 1 else ''} detected: {detail}")
            queue = self.faults.get(operation)
            if queue:
                kind = queue[0]["kind"]
                queue[0]["times"] -= 1
                if queue[0]["times"] <= 0:
                    queue.pop(0)
                rec["fault"] = kind
                status, code, message = FAULTS[kind]
                raise AwsFault(status, code, message)
            handler = self.HANDLERS.get((prefix, operation))
            if handler is None:
                raise AwsFault(400, "UnknownOperationException", f"the fake does not implement {operation}")
            return 200, handler(self, body, m["region"])

    def handle_runtime(self, method, path, headers, raw):
        """(status, headers, body) for one SageMaker runtime request (REST-JSON)."""
        with self.lock:
            seq = next(self.seq)
            model = self.runtime
            rec = {"seq": seq, "service": "SageMakerRuntime", "operation": "InvokeEndpoint", "body": None, "scope": None, "fault": None}
            self.requests.append(rec)
            op = model.operations["InvokeEndpoint"]
            prefix = op["http"]["requestUri"].split("{")[0]
            parts = path.split("?")[0][len(prefix):].split("/")
            if method != op["http"]["method"] or len(parts) != 2 or parts[1] != "invocations" or not parts[0]:
                self.violation(seq, "InvokeEndpoint", "protocol", path, f"expected POST /endpoints/{{EndpointName}}/invocations, got {method} {path}")
                raise AwsFault(404, "UnknownOperationException", f"no such path {method} {path}")
            auth = headers.get("Authorization") or ""
            m = AUTH_RE.match(auth)
            if not m:
                self.violation(seq, "InvokeEndpoint", "auth", "Authorization", "request is not SigV4-signed")
                raise AwsFault(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
            signed = m["signed"].split(";")
            rec["scope"] = {
                "date": m["date"],
                "region": m["region"],
                "service": m["service"],
                "temporary": m["key"].startswith("ASIA"),
                "session_token": bool(headers.get("X-Amz-Security-Token")) and "x-amz-security-token" in signed,
            }
            problems = []
            if m["service"] != model.signing_name:
                problems.append(f"credential scope names service {m['service']!r}, expected {model.signing_name!r}")
            for h in ("host", "x-amz-date"):
                if h not in signed:
                    problems.append(f"{h} is not among the signed headers")
            if headers.get("X-Amzn-SageMaker-Target-Variant") is not None and "x-amzn-sagemaker-target-variant" not in signed:
                problems.append("x-amzn-sagemaker-target-variant is not among the signed headers")
            if problems:
                for p in problems:
                    self.violation(seq, "InvokeEndpoint", "auth", "Authorization", p)
                raise AwsFault(403, "InvalidSignatureException", "; ".join(problems))
            # The operation's input as botocore sees it: members from the URI, headers, payload.
            shape = model.shapes[op["input"]["shape"]]
            body = {}
            for member, spec in shape["members"].items():
                loc = spec.get("location")
                if loc == "uri":
                    body[member] = urllib.parse.unquote(parts[0])
                elif loc == "header" and headers.get(spec["locationName"]) is not None:
                    body[member] = headers.get(spec["locationName"])
                elif member == shape.get("payload"):
                    body[member] = base64.b64encode(raw).decode("ascii")
            errors = []
            model.validate(op["input"]["shape"], body, "", errors)
            rec["body"] = {k: v for k, v in body.items() if k != "Body"}
            rec["body"]["Body"] = raw.decode("utf-8", "replace")
            for where, kind, message in errors:
                self.violation(seq, "InvokeEndpoint", kind, where, message)
            if errors:
                raise AwsFault(400, "ValidationError", "; ".join(msg for _, _, msg in errors[:5]))
            queue = self.faults.get("InvokeEndpoint")
            if queue:
                kind = queue[0]["kind"]
                queue[0]["times"] -= 1
                if queue[0]["times"] <= 0:
                    queue.pop(0)
                rec["fault"] = kind
                status, code, message = FAULTS[kind]
                raise AwsFault(status, code, message)
            return self.hosting.invoke(body["EndpointName"], body.get("TargetVariant"), raw, m["region"], headers.get("Content-Type"))

    @staticmethod
    def semantic(operation, body):
        """Rules of the service the model cannot express."""
        errors = []
        if operation == "CreateEndpointConfig" and isinstance(body, dict):
            production = body.get("ProductionVariants") or []
            shadows = body.get("ShadowProductionVariants") or []
            names = [v.get("VariantName") for v in production + shadows if isinstance(v, dict)]
            if len(names) != len(set(names)):
                errors.append(("/ProductionVariants", "semantic", f"variant names must be unique across production and shadow variants: {names}"))
            if shadows and len(production) != 1:
                errors.append(("/ShadowProductionVariants", "semantic", "a shadow variant needs exactly one production variant"))
            for i, v in enumerate(production + shadows):
                if isinstance(v, dict) and not v.get("InstanceType") and not v.get("ServerlessConfig"):
                    errors.append((f"/ProductionVariants/{i}/InstanceType", "semantic", "InstanceType (or ServerlessConfig) is required"))
            if production and sum(float(v.get("InitialVariantWeight", 1.0)) for v in production if isinstance(v, dict)) <= 0:
                errors.append(("/ProductionVariants", "semantic", "the production variants' weights sum to 0: no variant would take traffic"))
        if operation == "CreateTrainingJob" and isinstance(body, dict):
            algo = body.get("AlgorithmSpecification") or {}
            if not algo.get("TrainingImage") and not algo.get("AlgorithmName"):
                errors.append(("/AlgorithmSpecification", "semantic", "one of TrainingImage or AlgorithmName is required"))
            rc = body.get("ResourceConfig") or {}
            if not body.get("ResourceConfig"):
                errors.append(("/ResourceConfig", "semantic", "ResourceConfig is required for a training job"))
            elif not rc.get("InstanceType") and not rc.get("InstanceGroups"):
                errors.append(("/ResourceConfig/InstanceType", "semantic", "InstanceType (or InstanceGroups) is required"))
            if not (body.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds"):
                errors.append(("/StoppingCondition/MaxRuntimeInSeconds", "semantic", "a training job needs MaxRuntimeInSeconds"))
            for i, tag in enumerate(body.get("Tags") or []):
                if isinstance(tag, dict) and str(tag.get("Key", "")).lower().startswith("aws:"):
                    errors.append((f"/Tags/{i}/Key", "semantic", "tag keys starting with aws: are reserved"))
        return errors

    def add_fault(self, spec):
        if spec.get("clear"):
            self.faults = {}
            return self.faults
        op = spec.get("operation")
        kind = str(spec.get("kind"))
        times = int(spec.get("times", 1))
        if not op or kind not in FAULTS or times < 1:
            raise ValueError(f"a fault needs operation, kind in {sorted(FAULTS)} and times >= 1: {spec}")
        self.faults.setdefault(op, []).append({"kind": kind, "times": times})
        return self.faults

    def jobs_view(self):
        out = {}
        for name, job in self.jobs.items():
            status, secondary = self.status(job)
            out[name] = {"status": status, "secondary": secondary, "request": job["request"]}
        return out


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body, extra=None, content_type=JSON_1_1):
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _any(self):
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        path = self.path.split("?")[0]
        if path.startswith("/_fake/"):
            self._control(fake, path, raw)
            return
        if path.startswith("/endpoints/"):
            try:
                status, headers, body = fake.handle_runtime(self.command, self.path, self.headers, raw)
                if isinstance(body, bytes):  # a real container's answer, as it is
                    headers = dict(headers)
                    self._send(status, body, headers, content_type=headers.pop("Content-Type"))
                else:
                    self._send(status, body, headers, content_type="application/json")
            except AwsFault as f:
                self._send(f.status, {f.member: f.message, **f.extra}, {"x-amzn-ErrorType": f.code}, content_type="application/json")
            return
        try:
            status, body = fake.handle(self.command, self.path, self.headers, raw)
            log.info("%s -> %d", self.headers.get("X-Amz-Target"), status)
            self._send(status, body)
        except AwsFault as f:
            log.info("%s -> %d %s", self.headers.get("X-Amz-Target"), f.status, f.code)
            self._send(f.status, {"__type": f.code, f.member: f.message, **f.extra}, {"x-amzn-ErrorType": f.code})

    def _control(self, fake, path, raw):
        try:
            body = json.loads(raw) if raw else {}
        except ValueError as e:
            self._send(400, {"message": f"control body is not JSON: {e}"})
            return
        with fake.lock:
            if self.command == "GET" and path == "/_fake/requests":
                self._send(200, copy.deepcopy(fake.requests))
            elif self.command == "GET" and path == "/_fake/violations":
                self._send(200, copy.deepcopy(fake.violations))
            elif self.command == "GET" and path == "/_fake/jobs":
                self._send(200, fake.jobs_view())
            elif self.command == "GET" and path == "/_fake/endpoints":
                self._send(200, copy.deepcopy(fake.hosting.view()))
            elif self.command == "POST" and path == "/_fake/endpoint":
                try:
                    view = fake.hosting.control(body)
                except (ValueError, TypeError) as e:
                    self._send(400, {"message": str(e)})
                    return
                self._send(200, copy.deepcopy(view))
            elif self.command == "GET" and path == "/_fake/health":
                models = {m.service_id: m.path for m in list(fake.models.values()) + [fake.runtime]}
                self._send(200, {"ok": True, "models": models})
            elif self.command == "POST" and path == "/_fake/reset":
                fake.reset()
                self._send(200, {"ok": True})
            elif self.command == "POST" and path == "/_fake/fault":
                try:
                    faults = fake.add_fault(body)
                except (ValueError, TypeError) as e:
                    self._send(400, {"message": str(e)})
                    return
                self._send(200, {"ok": True, "faults": copy.deepcopy(faults)})
            else:
                self._send(404, {"message": f"unknown control endpoint {self.command} {path}"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv=None):
    ap = argparse.ArgumentParser(description="Scripted fake SageMaker training + CloudWatch Logs, validated against botocore's models.")
    ap.add_argument("--sagemaker-model", help="botocore's sagemaker service-2.json(.gz) (default: from the botocore package)")
    ap.add_argument("--logs-model", help="botocore's logs service-2.json(.gz) (default: from the botocore package)")
    ap.add_argument("--runtime-model", help="botocore's sagemaker-runtime service-2.json(.gz) (default: from the botocore package)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--quiet", action="store_true", help="log only violations and errors")
    ap.add_argument("--run-containers", action="store_true",
                    help="InvokeEndpoint runs the variant's image on DOCKER_HOST's engine and proxies to it (hosting.py)")
    args = ap.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING if args.quiet else logging.INFO,
        format="fake-sagemaker %(levelname)s %(message)s",
    )
    sagemaker = Model(args.sagemaker_model or botocore_model("sagemaker"))
    logs = Model(args.logs_model or botocore_model("logs"))
    runtime = Model(args.runtime_model or botocore_model("sagemaker-runtime"))
    for m in (sagemaker, logs, runtime):
        log.info("model %s (%s, %s): %d operations", m.path, m.service_id, m.api_version, len(m.operations))
    if java_re is re:
        log.warning("the `regex` module is missing: patterns with \\p{..} classes are not checked")
    fake = Fake(sagemaker, logs, runtime)
    if args.run_containers:
        if not os.environ.get("DOCKER_HOST"):
            ap.error("--run-containers needs DOCKER_HOST (the test bed's engine)")
        fake.hosting.run_containers()
    server = Server((args.host, args.port), Handler)
    server.fake = fake
    host, port = server.server_address[:2]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    signal.signal(signal.SIGINT, lambda s, f: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    print(f"LISTENING http://{host}:{port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    if fake.hosting.runner is not None:
        fake.hosting.runner.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
