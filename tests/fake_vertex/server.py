#!/usr/bin/env python3
"""Fake Google Vertex AI (custom jobs, models, endpoints, operations), Security Token
Service, IAM Credentials, Cloud Logging, Cloud Storage objects (get, simple media
upload: the channels mlcd uploads), the OAuth token endpoint of service-account
keys and GitHub's OIDC token endpoint, for mlcd's tests. Every Google API request is
routed by the `flatPath` of the pinned discovery documents (fixtures/google/, see
scripts/vertex-fixtures) and its body validated against the method's request schema
(discovery.py: unknown fields, enums, int64 as strings, durations, output-only fields
and required fields in create bodies); every answer it sends is validated against the
response schema too. A problem is answered 400 INVALID_ARGUMENT as Google does and
recorded as a violation.

Usage:
    python3 tests/fake_vertex/server.py [--fixtures DIR] [--port 0] [--quiet]
Prints one line, `LISTENING http://127.0.0.1:PORT`, once it listens.

Projects: `mlcd-test` is project number 424242424242; URLs take either, names answered
carry the number (as Vertex does). Every Google API call needs `Authorization: Bearer
<token>`: a token this fake issued (STS, IAM Credentials, OAuth) must not have expired
(else 401 UNAUTHENTICATED, recorded with `expired: true`); any other token is taken as
a plain access token (gcloud's CLOUDSDK_AUTH_ACCESS_TOKEN).

Custom jobs are scripted by the hyperparameters mlcd passes in the container's
environment (`SM_HPS`, a JSON object): QUEUED, then PENDING (0.2 s each), RUNNING for
`sleep` seconds, then SUCCEEDED, or FAILED with `error` {code 3, "The replica
workerpool0-0 exited with a non-zero status of 1."} and an ERROR log entry
"AlgorithmError: fail requested by hyperparameter" when `fail=true`. cancel: CANCELLING
for one read, then CANCELLED (error code 1); cancelling a finished job is
FAILED_PRECONDITION. Log entries (`resource.type="ml_job"`, label `job_id`) appear
while RUNNING: `epoch=N loss=1/(N+1)` for N = 1..5. entries.list understands filters
of `resource.type`, `resource.labels.job_id`, `timestamp>=`/`timestamp>` and
`severity>=` joined by AND (anything else: 400, recorded as a violation).

Long-running operations (models.upload, endpoints create/deployModel/undeployModel/
update) are not done at the first get, done at the second (`/_fake/config`
{"operation_polls": N}); gcloud's `/v1beta1/…/operations/{id}` reads the same ones.
Endpoints keep deployedModels and trafficSplit with Vertex's rules: a split sums to
100, keys are deployed model ids, `"0"` (the model being deployed) only in
deployModel, a model with traffic is undeployed only with a new split that leaves it
out; an endpoint with deployed models is not deleted. predict / rawPredict go to a
deployed model drawn by the split. With DOCKER_HOST set (tests/fake_vertex/serving.py)
deployModel runs the Model's serving container on that Docker engine, its operation is
done once the health route answers 200 (or done with the error Vertex gives), and
rawPredict is proxied to that container — the body is the payload itself, as
google.api.HttpBody is over REST; without it, they answer what `/_fake/serving`
scripts for a model ({"predictions": […]}).

Control endpoints (not validated, not recorded):
    GET  /_fake/requests    [{seq, method (discovery id or "oauth.token"/"oidc.token"),
                              http, path, query, body, status, token (sha256 prefix),
                              expired, time}]
    GET  /_fake/violations  [{seq, method, path, message}]
    GET  /_fake/state       jobs, models, endpoints, operations, objects (gs://… → size, type)
    POST /_fake/fault       {"method": "customJobs.create" (suffix of the id),
                              "kind": "quota"|"internal"|"unavailable", "times": N}
    POST /_fake/config      {"token_lifetime": seconds, "operation_polls": N,
                              "oidc_token": "...", "fail_operation": {"method": …, "message": …},
                              "revoke": true (every token issued so far expires now),
                              "sa_key": {"kid", "public_pem"} (a service-account key's public half)}
    POST /_fake/reset
"""

import argparse
import base64
import hashlib
import http.server
import itertools
import json
import logging
import os
import re
import signal
import socketserver
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from discovery import load_all  # noqa: E402
from serving import Runner  # noqa: E402

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

PROJECT_ID = "mlcd-test"
PROJECT_NUMBER = "424242424242"
log = logging.getLogger("fake-vertex")
FAULTS = {
    "quota": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com/custom_model_training_cpus."),
    "internal": (500, "INTERNAL", "Internal error encountered."),
    "unavailable": (503, "UNAVAILABLE", "The service is currently unavailable."),
}
STATUS_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 500: 13, 503: 14}
STATUS_NAME = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
               404: "NOT_FOUND", 409: "ALREADY_EXISTS", 412: "FAILED_PRECONDITION"}


def now_rfc3339(t=None):
    t = time.time() if t is None else t
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ApiError(Exception):
    def __init__(self, http_status, message, status=None):
        super().__init__(message)
        self.http = http_status
        self.message = message
        self.status = status or STATUS_NAME.get(http_status, "UNKNOWN")


class Fake:
    def __init__(self, fixtures):
        self.docs = load_all(fixtures)
        self.lock = threading.RLock()
        self.routes = []
        def pattern(path):
            return re.compile("^/" + re.sub(r"\{[^}]+\}", "([^/:]+)",
                                            re.escape(path.lstrip("/")).replace(r"\{", "{").replace(r"\}", "}")) + "$")
        for short, doc in self.docs.items():
            for mid, m in doc.methods.items():
                flat = doc.doc.get("servicePath", "") + (m.get("flatPath") or m["path"])
                self.routes.append((m["httpMethod"], pattern(flat), short, mid, m))
                # Media upload (Cloud Storage objects.insert): its own path, the body is the data.
                simple = m.get("mediaUpload", {}).get("protocols", {}).get("simple")
                if simple:
                    self.routes.insert(0, (m["httpMethod"], pattern(simple["path"]), short, mid,
                                           dict(m, _media=True)))
        self.reset()

    def reset(self):
        with self.lock:
            self.requests, self.violations, self.faults = [], [], []
            self.jobs, self.models, self.endpoints, self.operations = {}, {}, {}, {}
            self.tokens = {}
            self.ids = itertools.count(1000)
            self.seq = itertools.count(1)
            self.log_seq = itertools.count(1)
            self.token_lifetime = 3600
            self.operation_polls = 1
            self.oidc_token = "ghs-oidc-request-token"
            self.fail_operation = {}
            self.serving = {}
            if getattr(self, "runner", None):
                self.runner.shutdown()
            self.runner = Runner()
            self.raw_content_type = "application/json"
            self.objects = {}  # (bucket, name) -> {"data", "contentType", "generation", "updated"}

    # ------------------------------------------------------------------ helpers
    def new_id(self):
        return str(next(self.ids)) + str(int(time.time() * 1000) % 100000)

    def parent(self, project, location):
        if project not in (PROJECT_ID, PROJECT_NUMBER):
            raise ApiError(403, f"Permission denied on resource project {project}.", "PERMISSION_DENIED")
        return f"projects/{PROJECT_NUMBER}/locations/{location}"

    def issue_token(self, prefix):
        tok = f"ya29.{prefix}-{self.new_id()}-{hashlib.sha256(os.urandom(8)).hexdigest()[:16]}"
        exp = time.time() + self.token_lifetime
        self.tokens[tok] = exp
        return tok, exp

    def operation(self, parent_name, method, response=None, metadata_type=None):
        op_id = self.new_id()
        name = f"{parent_name}/operations/{op_id}"
        fail = self.fail_operation if self.fail_operation.get("method", "\0") in method else None
        if fail:
            self.fail_operation = {}
        op = {"name": name, "polls": self.operation_polls, "response": response, "done": False,
              "error": {"code": 9, "message": fail["message"]} if fail else None,
              "metadata_type": metadata_type, "on_done": None}
        self.operations[op_id] = op
        return op

    def op_view(self, op):
        out = {"name": op["name"], "done": op["done"]}
        if op["metadata_type"]:
            out["metadata"] = {"@type": op["metadata_type"],
                               "genericMetadata": {"createTime": now_rfc3339(), "updateTime": now_rfc3339()}}
        if op["done"]:
            if op["error"]:
                out["error"] = op["error"]
            elif op["response"] is not None:
                out["response"] = op["response"]
        return out

    def poll_op(self, op):
        gate = op.get("gate")
        if gate and not op["done"]:
            if gate["state"] == "starting":  # the container is not healthy yet
                return self.op_view(op)
            if gate["state"] == "failed" and not op["error"]:
                op["error"] = {"code": 9, "message": gate["message"]}
        if not op["done"]:
            if op["polls"] <= 0:
                op["done"] = True
                if op["on_done"] and not op["error"]:
                    op["on_done"]()
                elif op["error"] and op.get("on_error"):
                    op["on_error"]()
            op["polls"] -= 1
        return self.op_view(op)

    # ------------------------------------------------------------------ custom jobs
    def job_hps(self, body):
        for pool in body.get("jobSpec", {}).get("workerPoolSpecs", []):
            for e in pool.get("containerSpec", {}).get("env", []):
                if e.get("name") == "SM_HPS":
                    try:
                        return json.loads(e.get("value", "{}"))
                    except ValueError:
                        return {}
        return {}

    def add_log(self, job, text, severity="INFO"):
        n = next(self.log_seq)
        job["logs"].append({
            "insertId": f"{n:012d}",
            "logName": f"projects/{PROJECT_ID}/logs/workerpool0-0",
            "resource": {"type": "ml_job", "labels": {"job_id": job["id"], "task_name": "workerpool0-0",
                                                     "project_id": PROJECT_ID}},
            "severity": severity,
            "textPayload": text,
            "timestamp": now_rfc3339(),
            "receiveTimestamp": now_rfc3339(),
        })

    def advance(self, job):
        t = time.time() - job["created"]
        hp = job["hps"]
        try:
            sleep = max(0.0, float(hp.get("sleep", 0)))
        except (TypeError, ValueError):
            sleep = 0.0
        fail = str(hp.get("fail", "")).lower() == "true"
        st = job["state"]
        if st in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
            return
        if st == "JOB_STATE_CANCELLING":
            if job["cancel_reads"] <= 0:
                job["state"] = "JOB_STATE_CANCELLED"
                job["end"] = time.time()
                job["error"] = {"code": 1, "message": "CANCELED"}
            job["cancel_reads"] -= 1
            return
        if t < 0.2:
            job["state"] = "JOB_STATE_QUEUED"
        elif t < 0.4:
            job["state"] = "JOB_STATE_PENDING"
        else:
            if job["start"] is None:
                job["start"] = job["created"] + 0.4
                self.add_log(job, "Starting training with SageMaker-style contract")
            if t < 0.4 + sleep:
                job["state"] = "JOB_STATE_RUNNING"
                return
            if not job["trained"]:
                job["trained"] = True
                if fail:
                    self.add_log(job, "AlgorithmError: fail requested by hyperparameter", "ERROR")
                else:
                    for e in range(1, 6):
                        self.add_log(job, f"epoch={e} loss={1 / (e + 1):.4f}")
            job["state"] = "JOB_STATE_FAILED" if fail else "JOB_STATE_SUCCEEDED"
            job["end"] = time.time()
            if fail:
                job["error"] = {"code": 3, "message": "The replica workerpool0-0 exited with a non-zero status of 1."}

    def job_view(self, job):
        self.advance(job)
        out = dict(job["body"])
        out.update({"name": job["name"], "state": job["state"], "createTime": now_rfc3339(job["created"]),
                    "updateTime": now_rfc3339()})
        if job["start"] is not None:
            out["startTime"] = now_rfc3339(job["start"])
        if job["end"] is not None:
            out["endTime"] = now_rfc3339(job["end"])
        if job.get("error"):
            out["error"] = job["error"]
        return out

    def custom_jobs(self, verb, params, query, body):
        if verb == "create":
            parent = self.parent(params[0], params[1])
            jid = self.new_id()
            job = {"id": jid, "name": f"{parent}/customJobs/{jid}", "body": body, "hps": self.job_hps(body),
                   "created": time.time(), "state": "JOB_STATE_QUEUED", "start": None, "end": None,
                   "trained": False, "logs": [], "cancel_reads": 1, "error": None}
            self.jobs[jid] = job
            return self.job_view(job)
        if verb == "list":
            parent = self.parent(params[0], params[1])
            flt = query.get("filter", [""])[0]
            want = dict(re.findall(r'labels\.([a-z0-9_-]+)\s*=\s*"?([^"\s]*)"?', flt))
            if flt and not want:
                raise ApiError(400, f"the fake understands only `labels.KEY=\"VALUE\"` filters joined by AND, not `{flt}`")
            jobs = [self.job_view(j) for j in self.jobs.values()
                    if j["name"].startswith(parent + "/")
                    and all(j["body"].get("labels", {}).get(k) == v for k, v in want.items())]
            return {"customJobs": jobs} if jobs else {}
        job = self.jobs.get(params[2])
        if job is None or params[0] not in (PROJECT_ID, PROJECT_NUMBER):
            raise ApiError(404, f'The CustomJob "projects/{params[0]}/locations/{params[1]}/customJobs/{params[2]}" is not found.')
        if verb == "get":
            return self.job_view(job)
        if verb == "cancel":
            self.advance(job)
            if job["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
                raise ApiError(400, f"Cannot cancel a CustomJob in state {job['state']}.", "FAILED_PRECONDITION")
            job["state"] = "JOB_STATE_CANCELLING"
            return {}
        raise ApiError(501, f"customJobs.{verb} is not implemented by the fake", "UNIMPLEMENTED")

    # ------------------------------------------------------------------ storage
    def object_view(self, bucket, name, o):
        return {"kind": "storage#object", "bucket": bucket, "name": name,
                "id": f"{bucket}/{name}/{o['generation']}", "generation": str(o["generation"]),
                "metageneration": "1", "size": str(len(o["data"])), "contentType": o["contentType"],
                "md5Hash": base64.b64encode(hashlib.md5(o["data"]).digest()).decode(),
                "selfLink": f"https://www.googleapis.com/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}",
                "timeCreated": now_rfc3339(o["updated"]), "updated": now_rfc3339(o["updated"])}

    def storage_call(self, verb, params, query, body, content_type):
        bucket = params[0]
        if verb == "insert":
            name = query["name"][0]
            o = {"data": body, "contentType": content_type or "application/octet-stream",
                 "generation": int(time.time() * 1e6), "updated": time.time()}
            self.objects[(bucket, name)] = o
            return self.object_view(bucket, name, o)
        if verb == "get":
            name = params[1]
            o = self.objects.get((bucket, name))
            if o is None:
                raise ApiError(404, f"No such object: {bucket}/{name}", "NOT_FOUND")
            return self.object_view(bucket, name, o)
        raise ApiError(501, f"objects.{verb} is not implemented by the fake", "UNIMPLEMENTED")

    # ------------------------------------------------------------------ logging
    def entries_list(self, body):
        flt = body.get("filter", "")
        terms = [t.strip() for t in re.split(r"\s+AND\s+", flt) if t.strip()]
        checks = []
        for term in terms:
            m = re.match(r'^(resource\.type|resource\.labels\.job_id|timestamp|severity)\s*(=|>=|>)\s*"([^"]*)"$', term)
            if not m:
                raise ApiError(400, f"the fake understands resource.type, resource.labels.job_id, timestamp and severity terms joined by AND, not `{term}`")
            checks.append(m.groups())
        order = {"DEFAULT": 0, "DEBUG": 100, "INFO": 200, "NOTICE": 300, "WARNING": 400, "ERROR": 500}

        def keep(e):
            for key, op, val in checks:
                if key == "resource.type":
                    got = e["resource"]["type"]
                elif key == "resource.labels.job_id":
                    got = e["resource"]["labels"]["job_id"]
                elif key == "severity":
                    if order.get(e["severity"], 0) < order.get(val, 0):
                        return False
                    continue
                else:
                    got = e["timestamp"]
                if op == "=" and got != val:
                    return False
                if op == ">=" and not got >= val:
                    return False
                if op == ">" and not got > val:
                    return False
            return True

        entries = []
        for job in self.jobs.values():
            self.advance(job)
            entries.extend(e for e in job["logs"] if keep(e))
        entries.sort(key=lambda e: (e["timestamp"], e["insertId"]),
                     reverse=body.get("orderBy", "timestamp asc").endswith("desc"))
        size = int(body.get("pageSize", 1000))
        start = int(body.get("pageToken", "0") or "0")
        page = entries[start:start + size]
        out = {"entries": page} if page else {}
        if start + size < len(entries):
            out["nextPageToken"] = str(start + size)
        return out

    # ------------------------------------------------------------------ auth services
    def sts_token(self, body):
        if body.get("grantType") != "urn:ietf:params:oauth:grant-type:token-exchange":
            raise ApiError(400, f"Invalid value for grant_type: {body.get('grantType')}")
        if body.get("subjectTokenType") not in ("urn:ietf:params:oauth:token-type:jwt",
                                                "urn:ietf:params:oauth:token-type:id_token"):
            raise ApiError(400, "Invalid subject_token_type")
        if body.get("subjectToken") != self.issued_oidc():
            raise ApiError(400, "The subject token is not the GitHub OIDC token this fake issued", "INVALID_ARGUMENT")
        aud = body.get("audience", "")
        if not re.match(r"^//iam\.googleapis\.com/projects/\d+/locations/global/workloadIdentityPools/[^/]+/providers/[^/]+$", aud):
            raise ApiError(400, f"Invalid audience {aud}")
        tok, _ = self.issue_token("sts")
        return {"access_token": tok, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer", "expires_in": self.token_lifetime}

    def issued_oidc(self):
        return getattr(self, "_oidc_value", None)

    def generate_access_token(self, sa, body, token):
        if not token.startswith("ya29.sts-") and not token.startswith("ya29.oauth-"):
            raise ApiError(403, "generateAccessToken needs a federated (STS) or service-account token", "PERMISSION_DENIED")
        if not body.get("scope"):
            raise ApiError(400, "scope is required")
        lifetime = body.get("lifetime", "3600s")
        tok, exp = self.issue_token("iam")
        return {"accessToken": tok, "expireTime": now_rfc3339(exp)[:19] + "Z", "_sa": sa, "_lifetime": lifetime}

    def oauth_token(self, form):
        """The JWT bearer grant of a service-account key (RFC 7523), signature checked."""
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            raise ApiError(400, "unsupported_grant_type")
        parts = form.get("assertion", "").split(".")
        if len(parts) != 3:
            raise ApiError(400, "invalid_grant: the assertion is not a JWT")

        def b64(s):
            return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
        header, claims = json.loads(b64(parts[0])), json.loads(b64(parts[1]))
        if header.get("alg") != "RS256":
            raise ApiError(400, f"invalid_grant: alg {header.get('alg')} (expected RS256)")
        key = self.sa_keys.get(header.get("kid")) if hasattr(self, "sa_keys") else None
        if key is None:
            raise ApiError(400, "invalid_grant: Invalid JWT Signature (unknown kid)")
        pub = serialization.load_pem_public_key(key.encode())
        try:
            pub.verify(b64(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except Exception:
            raise ApiError(400, "invalid_grant: Invalid JWT Signature.")
        for c in ("iss", "scope", "aud", "iat", "exp"):
            if c not in claims:
                raise ApiError(400, f"invalid_grant: the assertion has no `{c}` claim")
        if not (0 < claims["exp"] - claims["iat"] <= 3600):
            raise ApiError(400, "invalid_grant: exp must be within an hour of iat")
        tok, _ = self.issue_token("oauth")
        return {"access_token": tok, "token_type": "Bearer", "expires_in": self.token_lifetime}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake = None

    def log_message(self, fmt, *args):
        log.debug(fmt, *args)

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def handle_any(self, http_method):
        url = urllib.parse.urlsplit(self.path)
        path, query = url.path, urllib.parse.parse_qs(url.query)
        raw = self.read_body()
        fake = self.fake
        if path.startswith("/_fake/"):
            return self.control(http_method, path, raw)
        with fake.lock:
            rec = {"seq": next(fake.seq), "http": http_method, "path": path,
                   "query": {k: v[0] for k, v in query.items()}, "time": time.time(), "expired": False}
            fake.requests.append(rec)
            try:
                status, out = self.dispatch(http_method, path, query, raw, rec)
            except ApiError as e:
                status = e.http
                out = {"error": {"code": e.http, "message": e.message, "status": e.status}}
            rec["status"] = status
        if hasattr(out, "content_type"):  # rawPredict: the model server's own answer
            rec["deployed_model"] = out.deployed_model_id
            self.send_response(out.status)
            self.send_header("Content-Type", out.content_type)
            self.send_header("Content-Length", str(len(out.body)))
            self.end_headers()
            self.wfile.write(out.body)
            return
        self.send_json(status, out)

    def violation(self, rec, message):
        self.fake.violations.append({"seq": rec["seq"], "method": rec.get("method"), "path": rec["path"],
                                     "message": message})

    def dispatch(self, http_method, path, query, raw, rec):
        fake = self.fake
        # Non-discovery endpoints: GitHub's OIDC token URL and the OAuth token URI.
        if path == "/_oidc/token":
            rec["method"] = "oidc.token"
            if self.headers.get("Authorization") != f"Bearer {fake.oidc_token}":
                raise ApiError(401, "bad ACTIONS_ID_TOKEN_REQUEST_TOKEN")
            aud = query.get("audience", [""])[0]
            rec["body"] = {"audience": aud}
            hdr = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').rstrip(b"=").decode()
            claims = base64.urlsafe_b64encode(json.dumps(
                {"aud": aud, "iss": "https://token.actions.githubusercontent.com",
                 "sub": "repo:acme/churn:ref:refs/heads/main", "exp": int(time.time()) + 300}).encode()).rstrip(b"=").decode()
            fake._oidc_value = f"{hdr}.{claims}.c2ln"
            return 200, {"value": fake._oidc_value, "count": 1}
        if path == "/token":
            rec["method"] = "oauth.token"
            form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
            rec["body"] = {"grant_type": form.get("grant_type")}
            if not (self.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
                self.violation(rec, "the token request must be application/x-www-form-urlencoded")
                raise ApiError(400, "invalid_request")
            return 200, fake.oauth_token(form)
        if path.startswith("/v1beta1/") and "/operations/" in path:
            path = "/v1/" + path[len("/v1beta1/"):]  # gcloud polls endpoint operations on v1beta1
        for verb, rx, short, mid, m in fake.routes:
            mm = rx.match(path)
            if verb == http_method and mm:
                break
        else:
            rec["method"] = None
            self.violation(rec, f"no method of the pinned discovery documents is {http_method} {path}")
            raise ApiError(404, f"{http_method} {path} is not a method of the pinned discovery documents")
        rec["method"] = f"{short}.{mid}"
        params = [urllib.parse.unquote(p) for p in mm.groups()]
        body = None
        if m.get("_media"):
            # A simple media upload: the body is the object's data; only
            # uploadType=media is understood (multipart/resumable are not used by mlcd).
            if query.get("uploadType", [""])[0] != "media":
                self.violation(rec, "only uploadType=media simple uploads are implemented by the fake")
                raise ApiError(400, "uploadType must be media")
            if not query.get("name", [""])[0]:
                self.violation(rec, "a media upload needs the `name` query parameter")
                raise ApiError(400, "Required parameter: name")
            body = raw
            rec["body"] = {"bytes": len(raw), "contentType": self.headers.get("Content-Type")}
        elif mid.endswith("endpoints.rawPredict"):
            # google.api.HttpBody: over REST the request body is the payload itself.
            body = raw
            fake.raw_content_type = self.headers.get("Content-Type") or "application/json"
            rec["body"] = raw.decode("utf-8", "replace")
        elif "request" in m:
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self.violation(rec, "the body is not JSON")
                raise ApiError(400, "Invalid JSON payload received.")
            rec["body"] = body
            mode = "create" if mid.split(".")[-1] in ("create", "upload", "deployModel") else "request"
            problems = fake.docs[short].validate(body, m["request"]["$ref"], mode)
            if mid.endswith("endpoints.patch"):
                problems = [p for p in problems if "output only" not in p[1]]  # updateMask decides
            if problems:
                msg = "; ".join(f"{p}: {why}" for p, why in problems[:8])
                self.violation(rec, msg)
                raise ApiError(400, f"Invalid JSON payload received. {msg}")
        common = fake.docs[short].doc.get("parameters", {})
        for q in query:
            if q not in m.get("parameters", {}) and q not in common and q not in ("alt", "prettyPrint", "$alt", "key"):
                self.violation(rec, f"unknown query parameter `{q}`")
                raise ApiError(400, f"Invalid query parameter {q}")
        # Authorization: sts.token is the only unauthenticated call.
        token = None
        if mid != "v1.token":
            h = self.headers.get("Authorization") or ""
            if not h.startswith("Bearer ") or not h[7:].strip():
                self.violation(rec, "no Authorization: Bearer header")
                raise ApiError(401, "Request is missing required authentication credential.")
            token = h[7:].strip()
            rec["token"] = hashlib.sha256(token.encode()).hexdigest()[:12]
            exp = fake.tokens.get(token)
            if exp is not None and exp < time.time():
                rec["expired"] = True
                raise ApiError(401, "Request had invalid authentication credentials. Expected OAuth 2 access token.")
        for f in fake.faults:
            if f["times"] > 0 and mid.endswith(f["method"]):
                f["times"] -= 1
                code, status, message = FAULTS[f["kind"]]
                rec["fault"] = f["kind"]
                raise ApiError(code, message, status)
        out = self.call(short, mid, params, query, body, token)
        if hasattr(out, "content_type"):
            return out.status, out
        resp = m.get("response", {}).get("$ref")
        if resp and out is not None:
            extra = {k: out.pop(k) for k in [k for k in out if k.startswith("_")]}
            rec["extra"] = extra
            problems = fake.docs[short].validate(out, resp, "response")
            if problems:
                self.violation(rec, "the fake's own response breaks the schema: " + "; ".join(f"{p}: {w}" for p, w in problems[:8]))
        return 200, out

    def call(self, short, mid, params, query, body, token):
        fake = self.fake
        if short == "sts":
            return fake.sts_token(body)
        if short == "iamcredentials":
            return fake.generate_access_token(params[-1], body, token)
        if short == "logging":
            return fake.entries_list(body)
        if short == "storage":
            return fake.storage_call(mid.split(".")[-1], params, query, body, self.headers.get("Content-Type"))
        parts = mid.split(".")
        if parts[2] == "customJobs" and len(parts) == 4:
            return fake.custom_jobs(parts[3], params, query, body)
        if parts[-2] == "operations":
            op = fake.operations.get(params[-1])
            if op is None:
                raise ApiError(404, "Operation not found.")
            return fake.poll_op(op)
        if parts[2] == "models":
            return fake.models_call(parts[3], params, query, body)
        if parts[2] == "endpoints":
            return fake.endpoints_call(parts[3], params, query, body)
        raise ApiError(501, f"{mid} is not implemented by the fake", "UNIMPLEMENTED")

    def control(self, http_method, path, raw):
        fake = self.fake
        body = json.loads(raw or b"{}") if http_method == "POST" else {}
        with fake.lock:
            if path == "/_fake/requests":
                return self.send_json(200, fake.requests)
            if path == "/_fake/violations":
                return self.send_json(200, fake.violations)
            if path == "/_fake/state":
                return self.send_json(200, {
                    "jobs": {k: fake.job_view(j) for k, j in fake.jobs.items()},
                    "models": fake.models, "endpoints": fake.endpoints,
                    "objects": {f"gs://{b}/{n}": {"size": len(o["data"]), "contentType": o["contentType"]}
                                for (b, n), o in fake.objects.items()},
                    "operations": {k: fake.op_view(o) for k, o in fake.operations.items()}})
            if path == "/_fake/fault":
                fake.faults.append({"method": body["method"], "kind": body["kind"], "times": int(body.get("times", 1))})
                return self.send_json(200, {"ok": True})
            if path == "/_fake/config":
                for k in ("token_lifetime", "operation_polls", "oidc_token", "fail_operation", "serving"):
                    if k in body:
                        setattr(fake, k, body[k])
                if body.get("revoke"):
                    for tok in fake.tokens:
                        fake.tokens[tok] = 0.0
                if "sa_key" in body:
                    if not hasattr(fake, "sa_keys"):
                        fake.sa_keys = {}
                    fake.sa_keys[body["sa_key"]["kid"]] = body["sa_key"]["public_pem"]
                return self.send_json(200, {"ok": True})
            if path == "/_fake/reset":
                fake.reset()
                return self.send_json(200, {"ok": True})
            if path == "/_fake/health":
                return self.send_json(200, {"ok": True})
        self.send_json(404, {"error": "unknown control path"})


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.path.join(here, "..", "..", "fixtures", "google"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING if a.quiet else logging.DEBUG, stream=sys.stderr)
    sys.modules.setdefault("server", sys.modules[__name__])
    from models import install  # noqa: E402

    install(Fake)
    Handler.fake = Fake(a.fixtures)
    srv = Server((a.host, a.port), Handler)
    print(f"LISTENING http://{a.host}:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        Handler.fake.runner.shutdown()


if __name__ == "__main__":
    main()
