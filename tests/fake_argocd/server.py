#!/usr/bin/env python3
"""Fake Argo CD API server for mlcd's tests.

Every request is validated against Argo CD's own REST API description (the subset
in fixtures/argocd/swagger-subset.json, cut from argo-cd v3.5.1's assets/swagger.json
by scripts/argocd-fixtures), and so is every answer the fake gives.

An application follows a REAL git repository (a bare repository on disk, as the
fake GitHub keeps them): on each GET with `refresh` it "syncs" the branch head —
reads the manifests at that commit with git, builds a kustomization with the real
`kubectl kustomize` (a build error is a failed sync, as Argo CD's ComparisonError)
— and reports `status.sync.revision`, `status.sync.status`, `status.operationState`
and `status.health`. A new revision is `Progressing` for one answer, then its health.

With a Kubernetes API server (`kube_url` of the application: the fake API server
of tests/fake_kube), syncing is real: every object of the revision is applied to
it by server-side apply under the field manager `argocd-controller`
(fieldValidation=Strict: a refused object is a failed sync, as in Argo CD), and
the health is read from the live objects' status on every answer, as Argo CD's
health checks judge it (health.py: InferenceService conditions, Deployment
replicas, Rollout phase), the application's being its worst resource's; the
answer lists them under `status.resources`. Objects an earlier sync applied and
the repository has since dropped are pruned (deleted from the cluster, result
`Pruned`) when the application's `syncPolicy.automated.prune` is on (the default
here; `"prune": false` in /_fake/app turns it off); without it they stay live, the
application stays `OutOfSync` and each is listed with `requiresPruning`, as Argo CD
does.

Without `kube_url` the health is SCRIPTED (no workload runs): the fake marks an
application Degraded when a container image in the synced manifests contains a
string registered with POST /_fake/degraded, else Healthy.

Usage: python3 tests/fake_argocd/server.py [--port 0]; prints `LISTENING http://127.0.0.1:PORT`.

Control (not validated, not recorded):
    POST /_fake/app       {"name", "git_dir", "branch", "path", "namespace", "kube_url", "prune"}
    POST /_fake/degraded  {"image_contains": "sha256:…"}
    POST /_fake/frozen    {"name": "churn"}: the application never syncs again
    POST /_fake/push-before-sync {"name", "path", "content"}: before its next sync,
                          another writer commits this file (a later commit
                          containing mlcd's is what Argo CD then syncs)
    GET  /_fake/requests  GET /_fake/violations
"""

import datetime
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import yaml
from jsonschema import Draft4Validator

import health
from kube import Kube, KubeError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fake_github"))
import gitrepo  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.normpath(os.path.join(HERE, "..", "..", "fixtures", "argocd", "swagger-subset.json"))


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Spec:
    def __init__(self, path):
        self.doc = json.load(open(path))
        self.routes = []
        for tpl, item in self.doc["paths"].items():
            for method, op in item.items():
                rx = "^" + re.sub(r"\\{([^}]+)\\}", r"(?P<\1>[^/]+)", re.escape(tpl)) + "$"
                self.routes.append((method.upper(), re.compile(rx), op))

    def match(self, method, path):
        for m, rx, op in self.routes:
            hit = rx.match(path)
            if m == method and hit:
                return op, hit.groupdict()
        return None, None

    def validate(self, ref, instance):
        schema = {"$ref": f"#/definitions/{ref}", "definitions": self.doc["definitions"]}
        return [e.message for e in Draft4Validator(schema).iter_errors(instance)]


def git(git_dir, *args):
    p = subprocess.run(["git", *args], env=dict(os.environ, GIT_DIR=git_dir), capture_output=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.decode(errors="replace").strip())
    return p.stdout


def build(git_dir, revision, path):
    """The manifests at revision: `kubectl kustomize` of the path, else its YAML files."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = git(git_dir, "archive", revision, path)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        root = os.path.join(tmp, path)
        if os.path.exists(os.path.join(root, "kustomization.yaml")):
            p = subprocess.run(["kubectl", "kustomize", root], capture_output=True, env=dict(os.environ, HOME=tmp))
            if p.returncode != 0:
                raise RuntimeError(p.stderr.decode(errors="replace").strip())
            return p.stdout.decode()
        out = []
        for top, _d, names in os.walk(root):
            for n in sorted(names):
                if n.endswith((".yaml", ".yml")):
                    out.append(open(os.path.join(top, n)).read())
        return "\n---\n".join(out)


def ident(obj, ns):
    """Which live object `obj` is: (apiVersion, kind, namespace, name)."""
    md = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], md.get("namespace") or ns, md["name"])


class Fake:
    def __init__(self, spec):
        self.spec = spec
        self.lock = threading.RLock()
        self.apps = {}
        self.degraded = []
        self.requests = []
        self.violations = []

    def sync(self, app):
        if app.get("frozen"):
            return
        for push in app.pop("pushes", []):  # another writer's push lands before this sync
            repos = gitrepo.Repos(root=os.path.dirname(app["git_dir"]))
            repos.repos["r"] = app["git_dir"]
            repos.write("r", app["branch"], push["path"], push["content"].encode(), "A teammate's change", ("Teammate", "teammate@example.com"))
        head = git(app["git_dir"], "rev-parse", app["branch"]).decode().strip()
        if head == app.get("revision") and app.get("seen", 0) > 0:
            app["seen"] += 1
            if app.get("kube_url"):
                return self.observe(app)
            if app["health"] == "Progressing":
                app["health"] = app["target_health"]
            return
        started = now()
        try:
            manifests = build(app["git_dir"], head, app["path"])
        except RuntimeError as e:
            app.update(
                revision=head, sync="Unknown", phase="Failed", health=app.get("health", "Missing"),
                message=f"rpc error: code = Unknown desc = Manifest generation error: {e}", started=started, seen=1,
            )
            return
        if app.get("kube_url"):
            return self.apply(app, head, started, manifests)
        images = re.findall(r"image:\s*(\S+)", manifests)
        bad = any(s in img for s in self.degraded for img in images)
        app.update(
            revision=head, sync="Synced", phase="Succeeded", message="successfully synced (all tasks run)",
            started=started, seen=1, health="Progressing", target_health="Degraded" if bad else "Healthy",
            images=images,
        )

    def apply(self, app, head, started, manifests):
        """Argo CD's sync of `head`: every object applied to the cluster."""
        kube = app.setdefault("kube", Kube(app["kube_url"]))
        ns = app.get("namespace", "default")
        applied, results = [], []
        try:
            objects = [o for o in yaml.safe_load_all(manifests) if o]
            for o in objects:
                kube.apply(o, ns)
                applied.append(o)
                results.append({"group": o["apiVersion"].rpartition("/")[0], "version": o["apiVersion"].rpartition("/")[2],
                                "kind": o["kind"], "name": o["metadata"]["name"],
                                "namespace": o["metadata"].get("namespace") or ns,
                                "status": "Synced", "message": f"{o['kind'].lower()} serverside-applied"})
        except (KubeError, yaml.YAMLError, KeyError, TypeError) as e:
            app.update(revision=head, sync="OutOfSync", phase="Failed", started=started, seen=1,
                       message=f"one or more objects failed to apply, reason: {e}", results=results)
            self.observe(app)
            return
        # What an earlier sync applied and this revision no longer holds.
        kept = {ident(o, ns) for o in applied}
        gone = [o for o in app.get("objects", []) if ident(o, ns) not in kept]
        orphans = []
        for o in gone:
            res = {"group": o["apiVersion"].rpartition("/")[0], "version": o["apiVersion"].rpartition("/")[2],
                   "kind": o["kind"], "name": o["metadata"]["name"], "namespace": o["metadata"].get("namespace") or ns}
            if not app.get("prune", True):
                orphans.append(o)
                continue
            try:
                kube.delete(o, ns)
                results.append(dict(res, status="Pruned", message="pruned"))
            except KubeError as e:
                results.append(dict(res, status="SyncFailed", message=str(e)))
        app.update(revision=head, sync="OutOfSync" if orphans else "Synced", phase="Succeeded",
                   message="successfully synced (all tasks run)", started=started, seen=1,
                   objects=applied + orphans, orphans=[ident(o, ns) for o in orphans], results=results)
        self.observe(app)

    def observe(self, app):
        """The health of the live objects, as Argo CD's checks judge it."""
        kube, ns = app["kube"], app.get("namespace", "default")
        resources, worst = [], []
        for o in app.get("objects", []):
            group, _, version = o["apiVersion"].rpartition("/")
            r = {"group": group, "version": version, "kind": o["kind"], "name": o["metadata"]["name"],
                 "namespace": o["metadata"].get("namespace") or ns, "status": app["sync"]}
            if ident(o, ns) in app.get("orphans", []):
                r["requiresPruning"] = True
            try:
                live = kube.get(o, ns)
            except KubeError as e:
                live, r["health"] = None, {"status": "Unknown", "message": str(e)}
            if live is None and "health" not in r:
                r["health"] = {"status": "Missing"}
            elif live is not None:
                h = health.check(live)
                if h:
                    r["health"] = {"status": h[0], "message": h[1]} if h[1] else {"status": h[0]}
            if "health" in r:
                worst.append(r["health"])
            resources.append(r)
        bad = max(worst, key=lambda h: health.ORDER.index(h["status"]), default={"status": "Healthy"})
        app["health"] = bad["status"] if app.get("objects") else app.get("health", "Missing")
        app["health_message"] = bad.get("message") if bad["status"] != "Healthy" else None
        app["resources"] = resources

    def application(self, app):
        source = {"repoURL": app.get("repo_url", "https://github.com/acme/deploy"), "path": app["path"], "targetRevision": app["branch"]}
        dest = {"server": "https://kubernetes.default.svc", "namespace": app.get("namespace", "default")}
        status = {
            "sync": {"status": app.get("sync", "OutOfSync"), "comparedTo": {"source": source, "destination": dest}},
            "health": {"status": app.get("health", "Missing")},
            "reconciledAt": now(),
            "sourceType": "Kustomize",
        }
        if app.get("revision"):
            status["sync"]["revision"] = app["revision"]
            status["operationState"] = {
                "operation": {"sync": {"revision": app["revision"]}, "initiatedBy": {"automated": True}},
                "phase": app["phase"],
                "message": app["message"],
                "startedAt": app["started"],
                "finishedAt": app["started"],
                "syncResult": {"revision": app["revision"], "source": source},
            }
            if app.get("kube_url"):
                status["operationState"]["syncResult"]["resources"] = app.get("results", [])
                status["resources"] = app.get("resources", [])
                if app.get("health_message"):
                    status["health"]["message"] = app["health_message"]
            elif app["health"] == "Degraded":
                status["health"]["message"] = "Deployment has timed out progressing."
        return {
            "metadata": {"name": app["name"], "namespace": "argocd"},
            "spec": {"source": source, "destination": dest, "project": "default", "syncPolicy": {"automated": {"prune": app.get("prune", True), "selfHeal": True}}},
            "status": status,
        }

    def handle(self, method, raw_path, headers):
        split = urllib.parse.urlsplit(raw_path)
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        rec = {"method": method, "path": split.path, "query": query, "status": None, "violations": []}
        op, params = self.spec.match(method, split.path)
        if op is None:
            rec["violations"].append(f"operation not in the Argo CD subset: {method} {split.path}")
            return self.done(rec, 404, {"error": "Not Found", "code": 5, "message": "Not Found"})
        known = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "query"}
        for k, v in query.items():
            if k not in known:
                rec["violations"].append(f"{op['operationId']}: unknown query parameter {k!r}")
            elif known[k].get("type") == "string" and k == "refresh" and v not in ("normal", "hard"):
                rec["violations"].append(f"{op['operationId']}: refresh={v!r} (Argo CD takes normal or hard)")
        if not re.match(r"^Bearer \S+$", headers.get("Authorization") or ""):
            return self.done(rec, 401, {"error": "no session information", "code": 16, "message": "no session information"})
        app = self.apps.get(params["name"])
        if app is None:
            return self.done(rec, 404, {"error": f'applications.argoproj.io "{params["name"]}" not found', "code": 5, "message": f'applications.argoproj.io "{params["name"]}" not found'})
        # automated sync: every reconciliation (a GET, refreshed or not) follows the branch
        self.sync(app)
        body = self.application(app)
        rec["revision"] = app.get("revision")
        rec["health"] = app.get("health")
        rec["time"] = time.time()
        for m in self.spec.validate("v1alpha1Application", body):
            rec["violations"].append(f"{op['operationId']}: fake's 200 response: {m}")
        return self.done(rec, 200, body)

    def done(self, rec, status, body):
        rec["status"] = status
        with self.lock:
            self.requests.append(rec)
            self.violations.extend(rec["violations"])
        for v in rec["violations"]:
            print(f"fake-argocd VIOLATION {v}", file=sys.stderr, flush=True)
        return status, body


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, status, body):
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def any(self):
        fake = self.server.fake
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        path = urllib.parse.urlsplit(self.path).path
        with fake.lock:
            if path.startswith("/_fake/"):
                body = json.loads(raw) if raw else {}
                if path == "/_fake/app":
                    fake.apps[body["name"]] = dict(body)
                    return self.send(200, {"ok": True})
                if path == "/_fake/degraded":
                    fake.degraded.append(body["image_contains"])
                    return self.send(200, {"ok": True})
                if path == "/_fake/push-before-sync":
                    fake.apps[body["name"]].setdefault("pushes", []).append(body)
                    return self.send(200, {"ok": True})
                if path == "/_fake/frozen":
                    fake.apps[body["name"]]["frozen"] = True
                    return self.send(200, {"ok": True})
                if path == "/_fake/requests":
                    return self.send(200, fake.requests)
                if path == "/_fake/violations":
                    return self.send(200, fake.violations)
                return self.send(404, {"message": "unknown control endpoint"})
            try:
                status, body = fake.handle(self.command, self.path, self.headers)
            except Exception as e:  # a bug in the fake: loud, and a violation
                fake.violations.append(f"fake_internal_error: {type(e).__name__}: {e}")
                status, body = 500, {"error": str(e), "code": 13, "message": str(e)}
        self.send(status, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = any


def main():
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--spec", default=SPEC)
    a = ap.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    server.fake = Fake(Spec(a.spec))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    print(f"LISTENING http://127.0.0.1:{server.server_address[1]}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
