"""KServe's controller for the fake API server: InferenceServices
(serving.kserve.io/v1beta1) in serverless (Knative) mode, and in Standard
(`serving.kserve.io/deploymentMode: RawDeployment` or `Standard`) mode.

Serverless, as KServe v0.20 over Knative Serving does it:
  - each change of the predictor (its spec without `canaryTrafficPercent`, and the
    object's labels and annotations, which KServe copies onto the revision
    template) creates a revision `<name>-predictor-0000N`;
  - traffic: with `canaryTrafficPercent` P and a rolled-out revision, the latest
    revision gets P% (tag `latest`) and the latest rolled-out one the rest (tag
    `prev`); without it the latest revision gets 100%. A latest revision that is
    not ready is not routed to: its target resolves to the latest READY revision,
    and nothing else says so but `latestCreatedRevision` != the target's revision
    (and the conditions) — Knative's behaviour;
  - a revision that reaches 100% becomes `latestRolledoutRevision` (the one before
    it `previousRolledoutRevision`);
  - tag URLs only with the annotation `serving.kserve.io/enable-tag-routing: "true"`;
  - `observedGeneration` follows `metadata.generation` one tick BEFORE the revision
    of that generation exists (the conditions then still describe the old one):
    a client trusting observedGeneration alone is fooled, as on a real cluster.
Standard mode: a new revision replaces the old by a rolling update (the old keeps
serving until the new is ready); `canaryTrafficPercent` is ignored; no tags; the
status names no revisions, and observedGeneration moves with the new revision.

Revisions are served by real containers: given DOCKER_HOST, the predictor's first
container runs on that Docker engine with `--network host` and `--pull never`, its
port 8080 moved to a free port (a pod has its own network namespace; these share
the host's), `SAGEMAKER_BIND_TO_PORT` and `PORT` set to it. Ready once its
readinessProbe path answers 200; failed when the container cannot start or exits
(its last log lines are the message), or never ready within `ready_seconds`.
Without DOCKER_HOST every revision fails, saying so.

URLs (HTTP proxies on the fake's own port, to the revision's container):
  /proxy/<ns>/<name>/...                 the service (status.url), split by traffic
  /proxy/<ns>/<name>-predictor/...       the predictor component (same split)
  /proxy/<ns>/<tag>-<name>-predictor/... one traffic target (its tag URL)
Each answer carries `x-fake-kserve-revision: <revision>`.

The storage initializer: only when a test gives the fake S3 settings for an
InferenceService (`"s3"` below, what an administrator gives KServe through the
service account's Secret), each `s3://` entry of the predictor's `storageUris` is
downloaded with boto3 before the container starts — one object, or every object
under a prefix — and a `.tar.gz`/`.tgz` object is unpacked, as KServe's storage
initializer does; the directory is mounted read-only at the entry's `mountPath`.
A download that fails fails the revision with the initializer's message. Without
those settings `storageUris` are not fetched (the image must carry its model).

Control: POST /_fake/kserve {"name": isvc, "broken": true, "message": "...",
"ready_seconds": 120, "start_delay": 0, "s3": {"endpoint_url", "access_key_id",
"secret_access_key", "region"}} sets how the NEXT revisions of that
InferenceService behave (broken: never ready, the condition says `message`;
start_delay: seconds before the container starts, like a slow image pull);
GET /_fake/kserve shows the revisions, their state and containers.
"""

import copy
import datetime
import http.client
import logging
import os
import random
import socket
import string
import subprocess
import threading
import time

log = logging.getLogger("fake-kube")

RAW_MODES = ("RawDeployment", "Standard")
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
TAG_ANNOTATION = "serving.kserve.io/enable-tag-routing"
COND_TYPES = ("IngressReady", "LatestDeploymentReady", "PredictorConfigurationReady",
              "PredictorReady", "PredictorRouteReady", "Ready")
# Annotations KServe does not copy onto the revision template.
NOT_ON_TEMPLATE = ("kubectl.kubernetes.io/last-applied-configuration",)


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Revision:
    def __init__(self, name, template, index):
        self.name, self.template, self.index = name, template, index
        self.state = "starting"  # starting | ready | failed | stopped
        self.message = ""
        self.port = None
        self.container = None


class Service:
    def __init__(self, uid):
        self.uid = uid
        self.revisions = []
        self.rolled = None  # latestRolledoutRevision
        self.previous = None  # previousRolledoutRevision
        self.seen_generation = None
        self.routes = {}  # host -> [(Revision, percent)]


class KServe:
    def __init__(self, fake):
        self.fake = fake
        self.docker_host = os.environ.get("DOCKER_HOST")
        self.base = "http://127.0.0.1"
        self.services = {}  # object key -> Service
        self.knobs = {}  # isvc name -> {"broken", "message", "ready_seconds", "s3"}
        self.model_dirs = []  # what the storage initializer downloaded

    # --- the controller (called under fake.lock)

    def tick(self):
        f = self.fake
        r = next((x for x in f.resources if x.kind == "InferenceService"), None)
        if r is None:
            return
        keys = [k for k in f.objects if k[0] == r.group and k[1] == r.plural]
        for key in keys:
            try:
                self.step(r, key)
            except Exception as e:  # noqa: BLE001  the controller must not die
                log.exception("kserve controller: %s", e)
        for key in [k for k in self.services if k not in keys]:
            self.stop_all(self.services.pop(key))

    def step(self, r, key):
        f = self.fake
        obj = f.objects[key]
        ns, name = key[2], key[3]
        md = obj["metadata"]
        svc = self.services.get(key)
        if svc is None or svc.uid != md["uid"]:
            if svc is not None:
                self.stop_all(svc)
            svc = self.services[key] = Service(md["uid"])
        annotations = md.get("annotations") or {}
        raw = annotations.get(MODE_ANNOTATION) in RAW_MODES
        pred = (obj.get("spec") or {}).get("predictor") or {}
        template = {"predictor": {k: v for k, v in pred.items() if k != "canaryTrafficPercent"},
                    "labels": md.get("labels") or {},
                    "annotations": {k: v for k, v in annotations.items() if k not in NOT_ON_TEMPLATE}}
        latest = svc.revisions[-1] if svc.revisions else None
        generation = md.get("generation", 1)
        if latest is None or latest.template != template:
            if svc.seen_generation != generation and latest is not None and not raw:
                # Knative has not reconciled yet: the status already names the
                # new generation, the conditions and revisions are the old ones.
                svc.seen_generation = generation
                self.write_status(r, key, obj, self.status(obj, svc, raw, generation))
                return
            rev = Revision(f"{name}-predictor-{len(svc.revisions) + 1:05d}", copy.deepcopy(template),
                           len(svc.revisions) + 1)
            svc.revisions.append(rev)
            knob = dict(self.knobs.get(name) or {})
            threading.Thread(target=self.run_revision, args=(ns, rev, knob), daemon=True).start()
        svc.seen_generation = generation
        self.write_status(r, key, obj, self.status(obj, svc, raw, generation))

    def status(self, obj, svc, raw, generation):
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        annotations = obj["metadata"].get("annotations") or {}
        pred = (obj.get("spec") or {}).get("predictor") or {}
        latest = svc.revisions[-1] if svc.revisions else None
        ready = [x for x in svc.revisions if x.state == "ready"]
        latest_ready = ready[-1] if ready else None
        target = latest if latest is not None and latest.state == "ready" else latest_ready
        canary = pred.get("canaryTrafficPercent")
        tags = annotations.get(TAG_ANNOTATION) == "true" and not raw
        targets = []
        if target is not None:
            if canary is not None and svc.rolled and not raw:
                rolled = next(x for x in svc.revisions if x.name == svc.rolled)
                targets = [("latest", target, canary, True), ("prev", rolled, 100 - canary, False)]
            else:
                targets = [("latest", target, 100, True)]
        # A revision that takes all the traffic is rolled out.
        share = {}
        for _, rev, pct, _ in targets:
            share[rev.name] = share.get(rev.name, 0) + pct
        if target is not None and share.get(target.name) == 100 and svc.rolled != target.name:
            svc.previous, svc.rolled = svc.rolled, target.name
        # Routes for the proxy; revisions nobody routes to are scaled to zero.
        svc_url = f"{self.base}/proxy/{ns}/{name}"
        pred_host = f"{name}-predictor"
        routes = {name: [(rev, pct) for _, rev, pct, _ in targets],
                  pred_host: [(rev, pct) for _, rev, pct, _ in targets]}
        if tags:
            for tag, rev, pct, _ in targets:
                routes[f"{tag}-{pred_host}"] = [(rev, 100)]
        svc.routes = routes
        used = {rev.name for _, rev, _, _ in targets}
        for rev in svc.revisions:
            if rev is not latest and rev.name not in used and rev.state == "ready":
                self.stop(rev)

        conds = {}

        def cond(t, status, reason=None, message=None):
            c = {"type": t, "status": status}
            if reason:
                c["reason"] = reason
            if message:
                c["message"] = message
            conds[t] = c

        route_ok = "True" if targets else "Unknown"
        cond("IngressReady", route_ok)
        cond("PredictorRouteReady", route_ok, None if targets else "RevisionMissing",
             None if targets else f"Configuration \"{pred_host}\" does not have any ready Revision.")
        if latest is None or latest.state == "starting":
            msg = f"Revision \"{latest.name}\" is not ready yet." if latest else "waiting for a revision"
            for t in ("LatestDeploymentReady", "PredictorConfigurationReady", "PredictorReady", "Ready"):
                cond(t, "Unknown", "RevisionMissing" if t != "LatestDeploymentReady" else "Progressing", msg)
        elif latest.state == "failed":
            msg = f"Revision \"{latest.name}\" failed with message: {latest.message}."
            for t in ("LatestDeploymentReady", "PredictorConfigurationReady", "PredictorReady", "Ready"):
                cond(t, "False", "RevisionFailed", msg)
        else:
            for t in ("LatestDeploymentReady", "PredictorConfigurationReady", "PredictorReady"):
                cond(t, "True")
            cond("Ready", "True" if targets else "Unknown")
        comp = {"url": f"{self.base}/proxy/{ns}/{pred_host}",
                "address": {"url": f"{self.base}/proxy/{ns}/{pred_host}"}}
        if not raw:
            if latest is not None:
                comp["latestCreatedRevision"] = latest.name
            if latest_ready is not None:
                comp["latestReadyRevision"] = latest_ready.name
            if svc.rolled:
                comp["latestRolledoutRevision"] = svc.rolled
            if svc.previous:
                comp["previousRolledoutRevision"] = svc.previous
            traffic = []
            for tag, rev, pct, is_latest in targets:
                t = {"revisionName": rev.name, "percent": pct, "latestRevision": is_latest}
                if tags:
                    t["tag"] = tag
                    t["url"] = f"{self.base}/proxy/{ns}/{tag}-{pred_host}"
                traffic.append(t)
            comp["traffic"] = traffic
        st = {"observedGeneration": generation,
              "deploymentMode": "RawDeployment" if raw else "Serverless",
              "conditions": [conds[t] for t in COND_TYPES],
              "components": {"predictor": comp}}
        if targets:
            st["url"] = svc_url
            st["address"] = {"url": svc_url}
        return st

    def write_status(self, r, key, obj, status):
        old = obj.get("status") or {}
        before = {c["type"]: c for c in old.get("conditions") or []}
        for c in status["conditions"]:
            b = before.get(c["type"])
            c["lastTransitionTime"] = b["lastTransitionTime"] if b and b.get("status") == c["status"] and b.get("lastTransitionTime") else now()
        if status == old:
            return
        new = copy.deepcopy(obj)
        new["status"] = status
        try:
            self.fake.write(r, key[2], new, method="CONTROLLER", path="inferenceservices/status", old=obj,
                            subresource="status")
        except Exception as e:  # noqa: BLE001  recorded as a violation by write()
            log.error("kserve controller status refused: %s", e)

    # --- revisions as containers (threads; state changes under fake.lock)

    def set_state(self, rev, state, message=""):
        with self.fake.lock:
            if rev.state == "stopped":
                return
            rev.state, rev.message = state, message
            self.fake.lock.notify_all()

    def run_revision(self, ns, rev, knob):
        limit = float(knob.get("ready_seconds") or 120)
        time.sleep(float(knob.get("start_delay") or 0))  # a slow image pull
        if knob.get("broken"):
            time.sleep(min(limit, float(knob.get("seconds") or 0.5)))
            return self.set_state(rev, "failed", knob.get("message") or "Container kserve-container is in CrashLoopBackOff")
        if not self.docker_host:
            return self.set_state(rev, "failed", "the fake API server has no Docker engine (DOCKER_HOST is not set), so it runs no revision")
        containers = rev.template["predictor"].get("containers") or []
        if not containers:
            return self.set_state(rev, "failed", "the predictor has no containers (the fake runs custom predictors only)")
        c = containers[0]
        mounts = []
        if knob.get("s3"):
            for entry in rev.template["predictor"].get("storageUris") or []:
                if not entry.get("uri", "").startswith("s3://"):
                    continue
                try:
                    local = self.initialize_storage(entry["uri"], knob["s3"])
                except Exception as e:  # noqa: BLE001 — any failure is the initializer's
                    return self.set_state(rev, "failed", f"Init:Error: storage-initializer: {e}")
                mounts += ["-v", f"{local}:{entry.get('mountPath') or '/mnt/models'}:ro"]
        port = free_port()
        env = {e["name"]: e.get("value", "") for e in c.get("env") or [] if "valueFrom" not in e}
        env["SAGEMAKER_BIND_TO_PORT"] = env["PORT"] = str(port)
        suffix = "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(5))
        name = f"fake-kube-{ns}-{rev.name}-{suffix}"
        cmd = ["docker", "run", "-d", "--pull", "never", "--network", "host", "--name", name,
               "--label", "dev.mlcd.fake-kube=1"]
        for k, v in sorted(env.items()):
            cmd += ["-e", f"{k}={v}"]
        cmd += mounts
        args = list(c.get("args") or [])
        if c.get("command"):
            cmd += ["--entrypoint", c["command"][0]]
            args = list(c["command"][1:]) + args
        cmd += [c.get("image", ""), *args]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            return self.set_state(rev, "failed", f"the container did not start: {e}")
        if p.returncode != 0:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
            detail = (p.stderr.strip().splitlines() or ["docker run failed"])[-1]
            return self.set_state(rev, "failed", f"Unable to start container \"kserve-container\": {detail}")
        with self.fake.lock:
            rev.container, rev.port = name, port
            stopped = rev.state == "stopped"
        if stopped:
            return self.remove(name)
        path = ((c.get("readinessProbe") or {}).get("httpGet") or {}).get("path") or "/"
        deadline = time.time() + limit
        checks = 0
        while time.time() < deadline:
            if rev.state == "stopped":
                return
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", path)
                if conn.getresponse().status == 200:
                    return self.set_state(rev, "ready")
            except OSError:
                pass
            checks += 1
            if checks % 5 == 0:
                q = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True)
                if q.stdout.strip() != "true":
                    logs = subprocess.run(["docker", "logs", "--tail", "3", name], capture_output=True, text=True)
                    tail = " ".join((logs.stdout + logs.stderr).split())[-300:] or "no output"
                    return self.set_state(rev, "failed", f"Container failed with: {tail}")
            time.sleep(0.2)
        self.set_state(rev, "failed", f"Initial scale was never achieved: the readiness probe {path} did not answer 200 within {limit:g} s")

    def initialize_storage(self, uri, settings):
        """Downloads `uri` (an object or a prefix) into a new directory, unpacking
        a .tar.gz/.tgz object; returns the directory."""
        import boto3
        import tarfile
        import tempfile
        s3 = boto3.client("s3", endpoint_url=settings.get("endpoint_url"),
                          aws_access_key_id=settings.get("access_key_id"),
                          aws_secret_access_key=settings.get("secret_access_key"),
                          region_name=settings.get("region") or "us-east-1")
        bucket, _, key = uri[len("s3://"):].partition("/")
        out = tempfile.mkdtemp(prefix="fake-kserve-model-")
        self.model_dirs.append(out)
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents") or []
        objects = [o["Key"] for o in listed if o["Key"] == key or o["Key"].startswith(key.rstrip("/") + "/")]
        if not objects:
            raise RuntimeError(f"Failed to fetch model. No model found in {uri}.")
        for k in objects:
            target = os.path.join(out, os.path.relpath(k, key) if k != key else os.path.basename(k))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            s3.download_file(bucket, k, target)
            if target.endswith((".tar.gz", ".tgz")):
                with tarfile.open(target) as tar:
                    tar.extractall(os.path.dirname(target), filter="data")
                os.remove(target)
        for root, dirs, files in os.walk(out):  # readable by the container's user
            for n in dirs + files:
                os.chmod(os.path.join(root, n), 0o755)
        return out

    def stop(self, rev):
        if rev.state == "stopped":
            return
        rev.state = "stopped"
        if rev.container:
            name, rev.container = rev.container, None
            threading.Thread(target=self.remove, args=(name,), daemon=True).start()

    @staticmethod
    def remove(name):
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)

    def stop_all(self, svc):
        for rev in svc.revisions:
            self.stop(rev)

    def shutdown(self):
        """Removes every container the fake started (on exit)."""
        with self.fake.lock:
            names = [rev.container for svc in self.services.values() for rev in svc.revisions if rev.container]
            for svc in self.services.values():
                for rev in svc.revisions:
                    rev.state, rev.container = "stopped", None
        threads = [threading.Thread(target=self.remove, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        import shutil
        for d in self.model_dirs:
            shutil.rmtree(d, ignore_errors=True)

    # --- control and proxy (HTTP handler threads)

    def control(self, method, body):
        with self.fake.lock:
            if method == "POST":
                self.knobs[body["name"]] = body
                return {}
            return {f"{k[2]}/{k[3]}": {"rolled": s.rolled, "previous": s.previous,
                                       "revisions": [{"name": r.name, "state": r.state, "message": r.message,
                                                      "port": r.port, "container": r.container}
                                                     for r in s.revisions]}
                    for k, s in self.services.items()}

    def proxy(self, handler, method, path, query, raw):
        parts = path.split("/", 4)  # "", "proxy", ns, host, rest
        if len(parts) < 4:
            return handler.send_text(404, "no such service\n")
        ns, host = parts[2], parts[3]
        rest = "/" + (parts[4] if len(parts) > 4 else "")
        with self.fake.lock:
            routes = None
            for key, svc in self.services.items():
                if key[2] == ns and host in svc.routes:
                    routes = [(rev, pct) for rev, pct in svc.routes[host]
                              if rev.port and rev.state == "ready" and pct > 0]
                    break
        if not routes:
            return handler.send_text(503 if routes is not None else 404,
                                     f"no ready revision behind {host} in {ns}\n")
        pick = random.uniform(0, sum(p for _, p in routes) or 1)
        rev = routes[-1][0]
        for candidate, pct in routes:
            if pick <= pct:
                rev = candidate
                break
            pick -= pct
        headers = {k: v for k, v in handler.headers.items() if k.lower() in ("content-type", "accept")}
        try:
            conn = http.client.HTTPConnection("127.0.0.1", rev.port, timeout=60)
            conn.request(method, rest + (f"?{query}" if query else ""), body=raw or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            return handler.send_text(502, f"revision {rev.name} did not answer: {e}\n")
        handler.send_response(resp.status)
        handler.send_header("Content-Type", resp.getheader("Content-Type") or "application/octet-stream")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("x-fake-kserve-revision", rev.name)
        handler.end_headers()
        handler.wfile.write(data)
