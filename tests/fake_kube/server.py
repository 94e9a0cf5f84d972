#!/usr/bin/env python3
"""A fake Kubernetes API server for mlcd's tests: enough of the API for kubectl 1.32
and kube-rs, with every object it receives validated, and a scripted controller
that plays Kubeflow Trainer v2 (TrainJob), the Training Operator v1 (PyTorchJob),
JobSet/kubelet (pods, logs, exit codes, termination messages), and KServe
(InferenceService revisions, traffic, conditions, URLs proxied to real containers
on the Docker engine at DOCKER_HOST: see kserve.py next to this file).

Usage:
    python3 tests/fake_kube/server.py [--fixtures DIR] [--k8s-version 1.32]
                                      [--host 127.0.0.1] [--port 0] [--quiet]
                                      [--run-containers]

--run-containers (needs DOCKER_HOST): the jobs' pods are not scripted but run as
real containers on that Docker engine by kubelet.py (volumes, env from Secrets and
ConfigMaps, init containers and native sidecars in order, termination messages,
per-container logs; read its docstring); the TrainJob/PyTorchJob conditions then
come from those pods' phases, with the same reasons and messages as the script.

Once listening it prints one line on stdout, `LISTENING http://127.0.0.1:PORT`.

Served (plain HTTP; kubeconfig `server: http://127.0.0.1:PORT`):
  GET  /version, /api, /apis (legacy APIVersions / APIGroupList), /api/v1,
       /apis/<g>/<v> (APIResourceList, with status and log subresources),
       /openapi/v3 and /openapi/v3/<api|apis/g/v> (PATCH operations list the
       `fieldValidation` parameter; schemas carry x-kubernetes-group-version-kind)
  core v1: namespaces, configmaps, secrets (stringData folded into data), pods
       (+status, +log), events, persistentvolumeclaims; bodies in JSON, YAML
       (apply), or protobuf for Secret/ConfigMap/Namespace (what `kubectl create
       secret|configmap|namespace` sends; protobuf.py)
  CRDs loaded from fixtures/kubernetes/crds (TrainJob, ClusterTrainingRuntime,
       PyTorchJob, InferenceService, Rollout): their served versions, scope, status
       subresource and schema.
  GET (get; list, typed `<Kind>List`, with labelSelector and fieldSelector;
       watch=true: chunked JSON events from resourceVersion), POST (create),
  PUT (replace; a stale metadata.resourceVersion is 409 Conflict), DELETE (and the
       objects they own, through ownerReferences), PATCH: server-side apply
       (application/apply-patch+yaml, fieldManager required, recorded in
       managedFields; a field the same manager applied before and now leaves out
       is removed), merge patch and strategic merge patch (applied as a merge
       patch); `/status` writes change only the status.
Validation of every written object (the result of the write, as a real server does):
  CRD objects against the CRD's openAPIV3Schema (structural: unknown fields,
  types, required, enum, lengths, patterns, item counts, list-map keys, int-or-string,
  preserve-unknown-fields; the CEL rules `self == oldSelf` (immutable) and the
  TrainJob name rules; other CEL rules are not evaluated and are counted in
  /_fake/health); core objects with `kubernetes-validate` (strict) for the version
  given; metadata names as DNS subdomains, label keys and values. A refused write is
  422 Invalid with a Status like the real one, and is recorded as a violation.
Controller (ticks every 50 ms): a TrainJob/PyTorchJob gets a Created condition,
  pods made from its templates (a TrainJob's from the ClusterTrainingRuntime merged
  with the job's trainer and runtimePatches — containers and initContainers patched
  by name), those pods are validated as Pods too
  (and every volumeMount must name a volume); the pods run, write log lines and end:
  the script comes from POST /_fake/script for the job's name, else from the
  job's hyperparameters ConfigMap (`sleep` seconds, `fail`, `oom`); default 0.5 s,
  success. A PyTorchJob container whose terminationMessagePath is
  /opt/ml/output/failure gets the failure reason as its termination message (what
  the kubelet reads from that file). Suspending a job deletes its pods and sets
  Suspended; activeDeadlineSeconds fails it with DeadlineExceeded; `stuck` leaves
  its pods Pending with a FailedScheduling Warning Event from the scheduler.

Argo Rollouts: see rollouts.py (canary steps, pauses, promote, abort; versions run as
  real containers like KServe revisions).
KServe: see kserve.py (revisions, traffic split, tag URLs under /proxy/, Standard
  mode); its status writes are validated against the CRD like any other write.

Control endpoints (not validated, not recorded):
  GET  /_fake/violations   [{seq, method, path, kind, object, errors}]
  POST /_fake/violations/clear
  GET  /_fake/requests     [{seq, method, path, query, content_type, time}]
  GET  /_fake/runs         {"ns/job": {"phase", "ended": epoch seconds of the terminal condition}}
  GET  /_fake/health       {"ok": true, "crds": [...], "cel_not_evaluated": N}
  POST /_fake/script       {"name": job, "outcome": "complete|fail|oom|stuck",
                            "message": "...", "logs": ["..."], "seconds": 1.0}
  POST /_fake/deny         {"namespace": "x", "status": 403}: every request in it is refused
  POST /_fake/namespace    {"name": "x"}: creates a namespace
  POST /_fake/eks          {"cluster", "region", "sts_endpoint", "access_key_id", "secret_access_key",
                            "session_token"}: from then on every API request must carry an EKS token
                            for that cluster, signed with that key pair (eks_auth.py), else 401
  POST /_fake/kserve       {"name": isvc, "broken": true, "message": "...", "ready_seconds": N, "start_delay": S}
  GET  /_fake/kserve       {"ns/name": {"rolled", "previous", "revisions": [{name, state, message, port, container}]}}
  POST /_fake/rollouts     {"name": rollout, "ready_seconds": N}
  GET  /_fake/rollouts     {"ns/name": {hash: {name, state, message, port, container, image}}}
  GET  /_fake/kubelet      (--run-containers) {"pods": {"ns/pod": {phase, containers, volumes}}, "claims"}
  POST /_fake/kubelet      {"namespace", "claim"} → {"path"}: a PVC's host directory, to put data on it
"""

import argparse
import base64
import copy
import datetime
import glob
import http.server
import json
import logging
import os
import random
import re
import signal
import string
import sys
import threading
import time
import urllib.parse
import uuid

import yaml

import eks_auth
import protobuf
from kserve import KServe
from kubelet import Kubelet
from rollouts import Rollouts

YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

try:
    import kubernetes_validate
except ImportError:  # pragma: no cover
    kubernetes_validate = None

log = logging.getLogger("fake-kube")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAILURE_FILE = "/opt/ml/output/failure"

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Resource:
    def __init__(self, group, version, plural, kind, namespaced, subresources=(), schema=None, singular=None, short=()):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced = namespaced
        self.subresources = set(subresources)
        self.schema = schema  # CRD openAPIV3Schema, or None for core objects
        self.singular = singular or kind.lower()
        self.short = list(short)

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def gv_path(self):
        return f"apis/{self.group}/{self.version}" if self.group else "api/v1"


CORE = [
    Resource("", "v1", "namespaces", "Namespace", False, ["status"], short=["ns"]),
    Resource("", "v1", "configmaps", "ConfigMap", True, short=["cm"]),
    Resource("", "v1", "pods", "Pod", True, ["status", "log"], short=["po"]),
    Resource("", "v1", "events", "Event", True, short=["ev"]),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ["status"], short=["pvc"]),
    Resource("", "v1", "secrets", "Secret", True),
]


def load_crds(directory):
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            crd = yaml.load(f, Loader=YAML_LOADER)
        spec = crd["spec"]
        for v in spec["versions"]:
            if not v.get("served", True):
                continue
            subs = ["status"] if "status" in (v.get("subresources") or {}) else []
            out.append(Resource(
                spec["group"], v["name"], spec["names"]["plural"], spec["names"]["kind"],
                spec["scope"] == "Namespaced", subs, v["schema"]["openAPIV3Schema"],
                spec["names"].get("singular"), spec["names"].get("shortNames") or [],
            ))
    return out


# ------------------------------------------------------------------ validation

class Invalid(Exception):
    def __init__(self, errors, code=422):
        super().__init__("; ".join(errors))
        self.errors = errors
        self.code = code


def json_type(value):
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), "null")


def check_schema(schema, value, path, errs, old, counters):
    """A structural-schema check of `value` (JSON) against a CRD schema node."""
    if value is None:
        return
    for rule in schema.get("x-kubernetes-validations") or []:
        r = rule.get("rule", "")
        if r == "self == oldSelf":
            if old is not None and old != value:
                errs.append(f"{path}: Invalid value: {rule.get('message', 'field is immutable')}")
        else:
            counters["cel"] = counters.get("cel", 0) + 1
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            errs.append(f"{path}: Invalid value: {json.dumps(value)}: {path} in body must be of type integer-or-string")
        return
    t = schema.get("type")
    if t == "object":
        if not isinstance(value, dict):
            errs.append(f"{path}: Invalid value: \"{json_type(value)}\": {path} in body must be of type object: {json.dumps(value)[:60]}")
            return
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields")
        for k, v in value.items():
            sub_old = old.get(k) if isinstance(old, dict) else None
            if props is not None and k in props:
                check_schema(props[k], v, f"{path}.{k}", errs, sub_old, counters)
            elif isinstance(addl, dict):
                check_schema(addl, v, f"{path}.{k}", errs, sub_old, counters)
            elif preserve or addl is True:
                pass
            else:
                errs.append(f"{path}.{k}: field not declared in schema")
        for r in schema.get("required") or []:
            if r not in value:
                errs.append(f"{path}.{r}: Required value")
        for bound, cmp in (("maxProperties", lambda n, b: n > b), ("minProperties", lambda n, b: n < b)):
            if bound in schema and cmp(len(value), schema[bound]):
                errs.append(f"{path}: Invalid value: {bound} {schema[bound]}")
    elif t == "array":
        if not isinstance(value, list):
            errs.append(f"{path}: Invalid value: \"{json_type(value)}\": {path} in body must be of type array")
            return
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append(f"{path}: Too many: {len(value)}: must have at most {schema['maxItems']} items")
        if "minItems" in schema and len(value) < schema["minItems"]:
            errs.append(f"{path}: Invalid value: must have at least {schema['minItems']} items")
        keys = schema.get("x-kubernetes-list-map-keys")
        if schema.get("x-kubernetes-list-type") == "map" and keys:
            seen = set()
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    k = tuple(json.dumps(item.get(x)) for x in keys)
                    if k in seen:
                        errs.append(f"{path}[{i}]: Duplicate value: {dict(zip(keys, k))}")
                    seen.add(k)
        items = schema.get("items") or {}
        for i, item in enumerate(value):
            check_schema(items, item, f"{path}[{i}]", errs, None, counters)
    elif t == "string":
        if not isinstance(value, str):
            errs.append(f"{path}: Invalid value: \"{json_type(value)}\": {path} in body must be of type string: {json.dumps(value)}")
            return
        if "enum" in schema and value not in schema["enum"]:
            errs.append(f"{path}: Unsupported value: {json.dumps(value)}: supported values: {', '.join(json.dumps(e) for e in schema['enum'])}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errs.append(f"{path}: Too long: may not be more than {schema['maxLength']} bytes")
        if "minLength" in schema and len(value) < schema["minLength"]:
            errs.append(f"{path}: Invalid value: {json.dumps(value)}: {path} in body should be at least {schema['minLength']} chars long")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append(f"{path}: Invalid value: {json.dumps(value)}: {path} in body should match '{schema['pattern']}'")
    elif t == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            errs.append(f"{path}: Invalid value: \"{json_type(value)}\": {path} in body must be of type integer: {json.dumps(value)}")
            return
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{path}: Invalid value: {value}: {path} in body should be greater than or equal to {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{path}: Invalid value: {value}: {path} in body should be less than or equal to {schema['maximum']}")
    elif t == "number":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errs.append(f"{path}: Invalid value: {path} in body must be of type number")
    elif t == "boolean":
        if not isinstance(value, bool):
            errs.append(f"{path}: Invalid value: \"{json_type(value)}\": {path} in body must be of type boolean: {json.dumps(value)}")


def check_metadata(res, obj, errs):
    md = obj.get("metadata")
    if not isinstance(md, dict):
        errs.append("metadata: Required value")
        return
    name = md.get("name", "")
    if not name:
        errs.append("metadata.name: Required value: name or generateName is required")
    elif len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        errs.append(f"metadata.name: Invalid value: {json.dumps(name)}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'")
    for field in ("labels", "annotations"):
        m = md.get(field) or {}
        if not isinstance(m, dict):
            errs.append(f"metadata.{field}: Invalid value: must be a map of strings")
            continue
        for k, v in m.items():
            prefix, _, n = k.rpartition("/")
            if (prefix and not DNS_SUBDOMAIN.match(prefix)) or len(n) > 63 or not QUALIFIED_NAME.match(n):
                errs.append(f"metadata.{field}: Invalid value: {json.dumps(k)}: name part must consist of alphanumeric characters, '-', '_' or '.'")
            if not isinstance(v, str):
                errs.append(f"metadata.{field}.{k}: Invalid value: must be a string")
            elif field == "labels" and (len(v) > 63 or not LABEL_VALUE.match(v)):
                errs.append(f"metadata.labels: Invalid value: {json.dumps(v)}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")


# ------------------------------------------------------------------ selectors

def parse_selector(text):
    reqs = []
    if not text:
        return reqs
    for part in re.findall(r"[^,()]+(?:\([^)]*\))?", text):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^(\S+)\s+(in|notin)\s+\((.*)\)$", part)
        if m:
            reqs.append((m.group(1), m.group(2), [x.strip() for x in m.group(3).split(",")]))
        elif "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append((k.strip(), "!=", v.strip()))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append((k.strip(), "=", v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append((k.strip(), "=", v.strip()))
        elif part.startswith("!"):
            reqs.append((part[1:], "!exists", None))
        else:
            reqs.append((part, "exists", None))
    return reqs


def matches(reqs, values):
    for k, op, v in reqs:
        have = values.get(k)
        if op == "=" and have != v:
            return False
        if op == "!=" and have == v:
            return False
        if op == "exists" and k not in values:
            return False
        if op == "!exists" and k in values:
            return False
        if op == "in" and have not in v:
            return False
        if op == "notin" and have in v:
            return False
    return True


def field_values(obj):
    """The fields a fieldSelector may name (metadata; an Event's involvedObject)."""
    v = {"metadata.name": obj["metadata"]["name"], "metadata.namespace": obj["metadata"].get("namespace", "")}
    for k, x in (obj.get("involvedObject") or {}).items():
        v[f"involvedObject.{k}"] = x
    if "type" in obj and obj.get("kind") == "Event":
        v["type"], v["reason"] = obj.get("type"), obj.get("reason")
    return v


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def prune_unapplied(before, now, merged):
    """Removes from `merged` the map fields `before` (an earlier apply) set and
    `now` (this apply) leaves out; lists are atomic (replaced whole)."""
    if not (isinstance(before, dict) and isinstance(now, dict) and isinstance(merged, dict)):
        return
    for k, v in before.items():
        if k not in now:
            merged.pop(k, None)
        else:
            prune_unapplied(v, now[k], merged.get(k))


def status(code, reason, message, details=None):
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": message, "reason": reason, "code": code}
    if details:
        s["details"] = details
    return s


def s_msg(script):
    return script.get("message") or "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."


class HttpError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.body = status(code, reason, message, details)
        self.code = code


# ------------------------------------------------------------------ the fake

class Fake:
    def __init__(self, crds, k8s_version, runtimes):
        self.lock = threading.Condition()
        self.k8s_version = k8s_version
        self.resources = CORE + crds
        self.by_path = {}
        for r in self.resources:
            self.by_path[(r.group, r.version, r.plural)] = r
        self.objects = {}  # (group, plural, ns, name) -> obj
        self.rv = 100
        self.events = []  # (rv, type, key, obj)
        self.violations = []
        self.requests = []
        self.scripts = {}
        self.runs = {}  # job key -> controller state
        self.logs = {}  # (ns, pod) -> [lines]
        self.denied = {}
        self.eks = None
        self.counters = {}
        self.seq = 0
        self.applied = {}  # (key, field manager, subresource) -> (uid, last applied body)
        self.kserve = KServe(self)
        self.rollouts = Rollouts(self)
        self.kubelet = None  # kubelet.Kubelet with --run-containers: pods run as real containers
        with self.lock:
            for ns in ("default", "kube-system", "ml"):
                self.put_namespace(ns)
            for rt in runtimes:
                r = self.resource_of(rt)
                self.write(r, None, rt, create=True, manager="fixture")

    # --- storage

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def resource_of(self, obj):
        api_version = obj.get("apiVersion", "")
        g, _, v = api_version.rpartition("/")
        for r in self.resources:
            if r.group == g and r.version == v and r.kind == obj.get("kind"):
                return r
        raise HttpError(404, "NotFound", f"no matches for kind \"{obj.get('kind')}\" in version \"{api_version}\"")

    def key(self, r, ns, name):
        return (r.group, r.plural, ns if r.namespaced else "", name)

    def put_namespace(self, name):
        obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}}
        self.store(self.by_path[("", "v1", "namespaces")], obj, "ADDED")

    def store(self, r, obj, event_type):
        md = obj.setdefault("metadata", {})
        md.setdefault("uid", str(uuid.uuid4()))
        md.setdefault("creationTimestamp", now())
        md["resourceVersion"] = self.next_rv()
        key = self.key(r, md.get("namespace", ""), md["name"])
        self.objects[key] = obj
        self.events.append((int(md["resourceVersion"]), event_type, key, copy.deepcopy(obj)))
        self.lock.notify_all()
        return obj

    def remove(self, key):
        obj = self.objects.pop(key, None)
        if obj is None:
            return None
        if key[:2] == ("", "pods") and self.kubelet:
            self.kubelet.forget(key[2], key[3])
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = self.next_rv()
        self.events.append((int(obj["metadata"]["resourceVersion"]), "DELETED", key, obj))
        # Garbage collection: what this object owns goes with it.
        uid = obj["metadata"].get("uid")
        for k, o in list(self.objects.items()):
            if any(ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences") or []):
                self.remove(k)
        self.lock.notify_all()
        return obj

    # --- validation

    def validate(self, r, obj, old):
        errs = []
        check_metadata(r, obj, errs)
        if r.schema is not None:
            body = {k: v for k, v in obj.items() if k != "metadata"}
            # metadata is checked above; the schema itself is only read (no copy:
            # the InferenceService schema alone is 2 MB).
            schema = dict(r.schema)
            schema["properties"] = {k: v for k, v in (r.schema.get("properties") or {}).items() if k != "metadata"}
            old_body = {k: v for k, v in (old or {}).items() if k != "metadata"} if old else None
            check_schema(schema, body, "", errs, old_body, self.counters)
            errs = [re.sub(r"(^|\s)\.(\w)", r"\1\2", e) for e in errs]
            for rule in r.schema.get("x-kubernetes-validations") or []:
                name = obj.get("metadata", {}).get("name", "")
                if "matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')" in rule.get("rule", "") and not re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", name):
                    errs.append(f"<nil>: Invalid value: \"object\": {rule.get('message')}")
                if "size(self.metadata.name) <= 63" in rule.get("rule", "") and len(name) > 63:
                    errs.append(f"<nil>: Invalid value: \"object\": {rule.get('message')}")
        elif kubernetes_validate is not None:
            clean = copy.deepcopy(obj)
            try:
                kubernetes_validate.validate(clean, self.k8s_version, strict=True)
            except kubernetes_validate.ValidationError as e:
                where = ".".join(str(p) for p in getattr(e, "path", [])) or "<root>"
                errs.append(f"{where}: {e.message}")
            except Exception as e:  # noqa: BLE001  a schema the package lacks
                errs.append(f"<schema>: {type(e).__name__}: {e}")
        if r.kind == "Pod":
            vols = {v.get("name") for v in (obj.get("spec", {}).get("volumes") or [])}
            for c in (obj.get("spec", {}).get("containers") or []) + (obj.get("spec", {}).get("initContainers") or []):
                for m in c.get("volumeMounts") or []:
                    if m.get("name") not in vols:
                        errs.append(f"spec.containers[{c.get('name')}].volumeMounts.name: Not found: {json.dumps(m.get('name'))}")
        return errs

    def refuse(self, r, obj, errs, method, path):
        name = obj.get("metadata", {}).get("name", "")
        group = f".{r.group}" if r.group else ""
        self.violations.append({"seq": self.seq, "method": method, "path": path, "kind": r.kind,
                                "object": name, "errors": errs})
        log.warning("violation %s %s: %s", method, path, errs)
        causes = [{"reason": "FieldValueInvalid", "message": e.split(": ", 1)[-1], "field": e.split(":")[0]} for e in errs]
        raise HttpError(422, "Invalid", f"{r.kind}{group} \"{name}\" is invalid: " + ", ".join(errs),
                        {"name": name, "group": r.group, "kind": r.kind, "causes": causes})

    # --- writes

    def write(self, r, ns, obj, create=False, manager=None, method="POST", path="", old=None, subresource=None):
        """Validates and stores `obj` (the full result of a write)."""
        md = obj.setdefault("metadata", {})
        if r.namespaced:
            md["namespace"] = ns or md.get("namespace") or "default"
        else:
            md.pop("namespace", None)
        obj["apiVersion"], obj["kind"] = r.api_version, r.kind
        if r.kind == "Secret" and "stringData" in obj:
            # The API server folds the write-only stringData into data.
            data = obj.setdefault("data", {})
            for k, v in (obj.pop("stringData") or {}).items():
                data[k] = base64.b64encode(str(v).encode()).decode()
        if old is not None:
            for f in ("uid", "creationTimestamp", "generation"):
                if f in old["metadata"]:
                    md[f] = old["metadata"][f]
            if "status" in r.subresources and subresource != "status" and "status" in old:
                obj["status"] = old["status"]
            elif "status" in r.subresources and subresource != "status":
                obj.pop("status", None)
            if subresource == "status":
                keep = copy.deepcopy(old)
                keep["status"] = obj.get("status")
                keep["metadata"] = md
                obj = keep
        errs = self.validate(r, obj, old)
        if errs:
            self.refuse(r, obj, errs, method, path)
        if manager:
            mf = [m for m in md.get("managedFields") or [] if m.get("manager") != manager]
            mf.append({"manager": manager, "operation": "Apply" if method == "PATCH-APPLY" else "Update",
                       "apiVersion": r.api_version, "time": now(), "fieldsType": "FieldsV1", "fieldsV1": {}})
            md["managedFields"] = mf
        spec_changed = old is None or old.get("spec") != obj.get("spec")
        md["generation"] = (old["metadata"].get("generation", 1) + (1 if spec_changed else 0)) if old else 1
        return self.store(r, obj, "ADDED" if old is None else "MODIFIED")

    # --- controller

    def hyperparameters(self, ns, pod_spec):
        for v in pod_spec.get("volumes") or []:
            cm = (v.get("configMap") or {}).get("name")
            if cm:
                o = self.objects.get(("", "configmaps", ns, cm))
                if o and "hyperparameters.json" in (o.get("data") or {}):
                    try:
                        return json.loads(o["data"]["hyperparameters.json"])
                    except ValueError:
                        return {}
        return {}

    def script_for(self, ns, name, pod_spec):
        s = dict(self.scripts.get(name) or {})
        hp = self.hyperparameters(ns, pod_spec)
        if "outcome" not in s:
            if str(hp.get("fail", "")).lower() == "true":
                s["outcome"] = "fail"
                s.setdefault("message", "fail requested by hyperparameter")
            elif str(hp.get("oom", "")).lower() == "true":
                s["outcome"] = "oom"
            elif str(hp.get("stuck", "")).lower() == "true":
                s["outcome"] = "stuck"
            else:
                s["outcome"] = "complete"
        s.setdefault("seconds", float(hp.get("sleep", 0.5) or 0.5))
        if "logs" not in s:
            epochs = int(hp.get("epochs", 3) or 3)
            lines = [f"note: hyperparameters {json.dumps(hp, sort_keys=True)}"]
            for e in range(1, min(epochs, 5) + 1):
                lines.append(f"epoch={e} loss={0.7 / e:.4f}")
            if s["outcome"] == "fail":
                lines.append(f"training failed: {s.get('message', 'fail requested by hyperparameter')}")
            elif s["outcome"] == "complete":
                lines.append("accuracy=0.9100")
            s["logs"] = lines
        return s

    def job_pods_templates(self, r, job):
        """[(pod name, labels, pod spec)] for a job."""
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        out = []
        suffix = lambda: "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(5))  # noqa: E731
        if r.kind == "TrainJob":
            spec = job["spec"]
            rt = self.objects.get(("trainer.kubeflow.org", "clustertrainingruntimes", "", spec["runtimeRef"]["name"]))
            if rt is None:
                return None
            trainer = spec.get("trainer") or {}
            patches = {}
            for p in spec.get("runtimePatches") or []:
                for rj in (((p.get("trainingRuntimeSpec") or {}).get("template") or {}).get("spec") or {}).get("replicatedJobs") or []:
                    patches[rj["name"]] = rj
            for rj in rt["spec"]["template"]["spec"]["replicatedJobs"]:
                tpl = copy.deepcopy(rj["template"]["spec"]["template"])
                labels = dict((rj["template"].get("metadata") or {}).get("labels") or {})
                labels.update((tpl.get("metadata") or {}).get("labels") or {})
                pod_spec = tpl.get("spec") or {}
                patch = patches.get(rj["name"])
                if patch:
                    ptpl = patch["template"]["spec"]["template"]
                    labels.update((ptpl.get("metadata") or {}).get("labels") or {})
                    pspec = copy.deepcopy(ptpl.get("spec") or {})
                    # containers and initContainers are list-maps keyed by name: a
                    # patch adds env and volumeMounts to the runtime's containers.
                    pconts = {c["name"]: c for c in pspec.pop("containers", []) + pspec.pop("initContainers", [])}
                    pod_spec = merge_patch(pod_spec, {k: v for k, v in pspec.items() if k != "volumes"})
                    pod_spec["volumes"] = (pod_spec.get("volumes") or []) + (pspec.get("volumes") or [])
                    for c in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
                        pc = pconts.get(c["name"])
                        if pc:
                            c["volumeMounts"] = (c.get("volumeMounts") or []) + (pc.get("volumeMounts") or [])
                            c["env"] = (c.get("env") or []) + (pc.get("env") or [])
                is_trainer = labels.get("trainer.kubeflow.org/trainjob-ancestor-step") == "trainer"
                nodes = trainer.get("numNodes") or rt["spec"].get("mlPolicy", {}).get("numNodes", 1) if is_trainer else 1
                if is_trainer:
                    for c in pod_spec.get("containers", []):
                        if c["name"] == "node":
                            for f in ("image", "command", "args"):
                                if f in trainer:
                                    c[f] = trainer[f]
                            if "resourcesPerNode" in trainer:
                                c["resources"] = trainer["resourcesPerNode"]
                            c["env"] = (c.get("env") or []) + (trainer.get("env") or [])
                for i in range(nodes):
                    lab = dict(labels)
                    lab.update({"jobset.sigs.k8s.io/jobset-name": name,
                                "jobset.sigs.k8s.io/replicatedjob-name": rj["name"],
                                "batch.kubernetes.io/job-completion-index": str(i)})
                    for k in [k for k, v in lab.items() if not v]:
                        lab.pop(k)
                    out.append((f"{name}-{rj['name']}-0-{i}-{suffix()}", lab, copy.deepcopy(pod_spec)))
        else:
            for rtype, spec in job["spec"]["pytorchReplicaSpecs"].items():
                tpl = spec.get("template") or {}
                for i in range(int(spec.get("replicas", 1))):
                    lab = dict((tpl.get("metadata") or {}).get("labels") or {})
                    lab.update({"training.kubeflow.org/job-name": name,
                                "training.kubeflow.org/replica-type": rtype.lower(),
                                "training.kubeflow.org/replica-index": str(i)})
                    out.append((f"{name}-{rtype.lower()}-{i}", lab, copy.deepcopy(tpl.get("spec") or {})))
        return out

    def set_status(self, r, key, status_patch):
        job = copy.deepcopy(self.objects[key])
        st = job.setdefault("status", {})
        conds = {c["type"]: c for c in st.get("conditions") or []}
        for c in status_patch.pop("conditions", []):
            c.setdefault("lastTransitionTime", now())
            if r.kind == "PyTorchJob":
                c.setdefault("lastUpdateTime", now())
            conds[c["type"]] = c
        st["conditions"] = list(conds.values())
        st.update(status_patch)
        try:
            self.write(r, key[2], job, method="CONTROLLER", path="status", old=self.objects[key], subresource="status")
        except HttpError as e:
            log.error("controller status refused: %s", e.body["message"])

    def make_pod(self, ns, name, labels, pod_spec, owner):
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns, "labels": labels,
                            "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                                 "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}]},
               "spec": pod_spec, "status": {"phase": "Pending"}}
        r = self.by_path[("", "v1", "pods")]
        try:
            self.write(r, ns, pod, method="CONTROLLER", path=f"pods/{name}")
            return True
        except HttpError:
            return False  # recorded as a violation

    def pod_status(self, ns, pod_name, phase, state, message=None):
        key = ("", "pods", ns, pod_name)
        pod = self.objects.get(key)
        if pod is None:
            return
        pod = copy.deepcopy(pod)
        statuses = []
        for c in pod["spec"].get("containers") or []:
            st = {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": state == "running",
                  "restartCount": 0, "started": state == "running"}
            if state == "running":
                st["state"] = {"running": {"startedAt": now()}}
            elif state == "waiting":
                st["state"] = {"waiting": {"reason": "ContainerCreating"}}
            else:
                code, reason = state
                term = {"exitCode": code, "reason": reason, "startedAt": now(), "finishedAt": now()}
                if message and c.get("terminationMessagePath") == FAILURE_FILE:
                    term["message"] = message
                st["state"] = {"terminated": term}
            statuses.append(st)
        pod["status"] = {"phase": phase, "containerStatuses": statuses, "startTime": now()}
        self.write(self.by_path[("", "v1", "pods")], ns, pod, method="CONTROLLER", path="pods/status",
                   old=self.objects[key], subresource="status")

    def tick(self):
        with self.lock:
            for r in [x for x in self.resources if x.kind in ("TrainJob", "PyTorchJob")]:
                for key in [k for k in self.objects if k[0] == r.group and k[1] == r.plural]:
                    try:
                        self.step(r, key)
                    except HttpError as e:
                        log.error("controller: %s", e.body["message"])
            self.kserve.tick()
            self.rollouts.tick()

    def step(self, r, key):
        job = self.objects[key]
        ns, name = key[2], key[3]
        run = self.runs.setdefault(key, {"phase": "new", "since": time.time(), "created": time.time(), "pods": []})
        suspended = job["spec"].get("suspend") if r.kind == "TrainJob" else (job["spec"].get("runPolicy") or {}).get("suspend")
        t = time.time() - run["since"]
        if run["phase"] in ("done", "suspended"):
            return
        if suspended:
            for p in run["pods"]:
                self.remove(("", "pods", ns, p))
            run["phase"] = "suspended"
            reason = "Suspended" if r.kind == "TrainJob" else "PyTorchJobSuspended"
            conds = [{"type": "Suspended", "status": "True", "reason": reason, "message": f"{r.kind} {name} is suspended."}]
            patch = {"conditions": conds}
            if r.kind == "TrainJob":
                patch["jobsStatus"] = [{"name": "node", "active": 0, "ready": 0, "succeeded": 0, "failed": 0, "suspended": 1}]
            else:
                conds.append({"type": "Running", "status": "False", "reason": reason, "message": "suspended"})
            self.set_status(r, key, patch)
            return
        deadline = job["spec"].get("activeDeadlineSeconds") if r.kind == "TrainJob" else (job["spec"].get("runPolicy") or {}).get("activeDeadlineSeconds")
        if run["phase"] == "new":
            templates = self.job_pods_templates(r, job)
            if templates is None:
                return
            pod_spec = templates[0][2] if templates else {}
            run["script"] = self.script_for(ns, name, pod_spec)
            created = "JobsCreationSucceeded" if r.kind == "TrainJob" else "PyTorchJobCreated"
            self.set_status(r, key, {"conditions": [{"type": "Created", "status": "True", "reason": created,
                                                       "message": f"{r.kind} {name} is created."}]})
            for pod_name, labels, spec in templates:
                if self.make_pod(ns, pod_name, labels, spec, job):
                    run["pods"].append(pod_name)
                    self.logs[(ns, pod_name)] = []
            run["phase"] = "pending"
            run["since"] = time.time()
            if self.kubelet:
                for p in run["pods"]:
                    self.kubelet.start(ns, p)
                return
            if run["script"]["outcome"] == "stuck" and run["pods"]:
                # The scheduler cannot place the pod: it stays Pending, with an Event.
                pod = run["pods"][0]
                ev = {"apiVersion": "v1", "kind": "Event",
                      "metadata": {"name": f"{pod}.{uuid.uuid4().hex[:12]}", "namespace": ns},
                      "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": ns,
                                         "uid": self.objects[("", "pods", ns, pod)]["metadata"]["uid"]},
                      "reason": "FailedScheduling", "type": "Warning", "count": 1,
                      "message": s_msg(run["script"]),
                      "firstTimestamp": now(), "lastTimestamp": now(), "source": {"component": "default-scheduler"}}
                self.write(self.by_path[("", "v1", "events")], ns, ev, method="CONTROLLER", path="events")
                run["phase"] = "stuck"
            return
        if self.kubelet:
            return self.step_from_pods(r, key, run, deadline)
        if run["phase"] == "stuck":
            return
        if run["phase"] == "pending" and t > 0.1:
            for p in run["pods"]:
                self.pod_status(ns, p, "Running", "running")
            lead = run["pods"][0] if run["pods"] else None
            if lead:
                self.logs[(ns, lead)] = list(run["script"]["logs"])
            for p in run["pods"][1:]:
                self.logs[(ns, p)] = ["worker ready"]
            self.set_status(r, key, self.running_patch(r, ns, name, len(run["pods"])))
            run["phase"], run["since"] = "running", time.time()
            return
        if run["phase"] == "running":
            s = run["script"]
            if deadline and t > deadline:
                return self.deadline_exceeded(r, key, run)
            if t < s["seconds"]:
                return
            outcome = s["outcome"]
            code, reason = {"complete": (0, "Completed"), "fail": (1, "Error"), "oom": (137, "OOMKilled")}[outcome]
            message = s.get("message") if outcome == "fail" else None
            for p in run["pods"]:
                self.pod_status(ns, p, "Succeeded" if code == 0 else "Failed", (code, reason), message)
            run["phase"] = "done"
            run["ended"] = time.time()
            self.set_status(r, key, self.finished_patch(r, ns, name, len(run["pods"]), code == 0))

    def step_from_pods(self, r, key, run, deadline):
        """--run-containers: the job's conditions from its pods, which kubelet.py runs for real."""
        ns, name = key[2], key[3]
        if deadline and time.time() - run["created"] > deadline:
            return self.deadline_exceeded(r, key, run)
        if not run["pods"]:
            return  # no pod could be made (a violation): the job stays Created
        phases = [((self.objects.get(("", "pods", ns, p)) or {}).get("status") or {}).get("phase", "Gone")
                  for p in run["pods"]]
        n = len(phases)
        if run["phase"] == "pending" and "Running" in phases:
            self.set_status(r, key, self.running_patch(r, ns, name, n))
            run["phase"], run["since"] = "running", time.time()
        if all(ph in ("Succeeded", "Failed", "Gone") for ph in phases):
            run["phase"], run["ended"] = "done", time.time()
            self.set_status(r, key, self.finished_patch(r, ns, name, n, all(ph == "Succeeded" for ph in phases)))

    def deadline_exceeded(self, r, key, run):
        for p in run["pods"]:
            self.remove(("", "pods", key[2], p))
        run["phase"] = "done"
        self.set_status(r, key, {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                                   "message": f"{r.kind} {key[3]} has exceeded its activeDeadlineSeconds."}]})

    @staticmethod
    def running_patch(r, ns, name, n):
        """The job's status once its pods run (the same for the scripted and the real pods)."""
        if r.kind == "TrainJob":
            return {"jobsStatus": [{"name": "node", "active": n, "ready": n, "succeeded": 0, "failed": 0, "suspended": 0}]}
        return {"conditions": [{"type": "Running", "status": "True", "reason": "PyTorchJobRunning",
                                "message": f"PyTorchJob {ns}/{name} is running."}],
                "replicaStatuses": {"Master": {"active": 1}}, "startTime": now()}

    @staticmethod
    def finished_patch(r, ns, name, n, ok):
        """The job's terminal status (the same for the scripted and the real pods)."""
        if r.kind == "TrainJob":
            js = [{"name": "node", "active": 0, "ready": 0, "succeeded": n if ok else 0,
                   "failed": 0 if ok else n, "suspended": 0}]
            cond = ({"type": "Complete", "status": "True", "reason": "JobsCompleted", "message": "TrainJob completed"}
                    if ok else
                    {"type": "Failed", "status": "True", "reason": "JobsFailed",
                     "message": f"jobset failed: job {name}-node-0 failed"})
            return {"jobsStatus": js, "conditions": [cond]}
        conds = [{"type": "Running", "status": "False", "reason": "PyTorchJobRunning", "message": "done"}]
        if ok:
            conds.append({"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded",
                          "message": f"PyTorchJob {ns}/{name} successfully completed."})
        else:
            conds.append({"type": "Failed", "status": "True", "reason": "PyTorchJobFailed",
                          "message": f"PyTorchJob {ns}/{name} is failed because 1 Master replica(s) failed."})
        return {"conditions": conds, "replicaStatuses": {"Master": {"succeeded" if ok else "failed": 1}},
                "completionTime": now()}


# ------------------------------------------------------------------ HTTP

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube/1"

    def log_message(self, fmt, *args):
        log.info("%s " + fmt, self.address_string(), *args)

    @property
    def fake(self):
        return self.server.fake

    def send_json(self, code, body, content_type="application/json"):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_text(self, code, text):
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        raw = self.body()
        try:
            if url.path.startswith("/_fake/"):
                return self.control(method, url.path, raw)
            if url.path.startswith("/proxy/"):
                return self.fake.kserve.proxy(self, method, url.path, url.query, raw)
            with self.fake.lock:
                self.fake.seq += 1
                self.fake.requests.append({"seq": self.fake.seq, "method": method, "path": url.path, "query": query,
                                           "content_type": self.headers.get("Content-Type", ""),
                                           "time": time.time()})
            if self.fake.eks:
                why = eks_auth.check(self.fake.eks, self.headers.get("Authorization"))
                if why:
                    raise HttpError(401, "Unauthorized", f"Unauthorized: {why}")
            self.api(method, url.path, query, raw)
        except HttpError as e:
            self.send_json(e.code, e.body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # --- control

    def control(self, method, path, raw):
        f = self.fake
        with f.lock:
            if path == "/_fake/violations" and method == "GET":
                return self.send_json(200, f.violations)
            if path == "/_fake/violations/clear":
                f.violations.clear()
                return self.send_json(200, {})
            if path == "/_fake/requests":
                return self.send_json(200, f.requests)
            if path == "/_fake/runs":
                return self.send_json(200, {f"{k[2]}/{k[3]}": {"phase": v["phase"], "ended": v.get("ended")}
                                            for k, v in f.runs.items()})
            if path == "/_fake/health":
                return self.send_json(200, {"ok": True, "crds": sorted({r.kind for r in f.resources if r.schema}),
                                            "cel_not_evaluated": f.counters.get("cel", 0),
                                            "kubernetes_validate": kubernetes_validate is not None})
            body = json.loads(raw or b"{}")
            if path == "/_fake/kserve":
                return self.send_json(200, f.kserve.control(method, body))
            if path == "/_fake/rollouts":
                return self.send_json(200, f.rollouts.control(method, body))
            if path == "/_fake/kubelet":
                if f.kubelet is None:
                    raise HttpError(404, "NotFound", "the fake runs no containers: start it with --run-containers")
                return self.send_json(200, f.kubelet.control(method, body))
            if path == "/_fake/script":
                f.scripts[body["name"]] = body
                return self.send_json(200, {})
            if path == "/_fake/deny":
                f.denied[body["namespace"]] = int(body.get("status", 403))
                return self.send_json(200, {})
            if path == "/_fake/eks":
                f.eks = body or None
                return self.send_json(200, {})
            if path == "/_fake/namespace":
                f.put_namespace(body["name"])
                return self.send_json(200, {})
        raise HttpError(404, "NotFound", f"no control endpoint {method} {path}")

    # --- discovery

    def discovery(self, path):
        f = self.fake
        host = self.headers.get("Host", "127.0.0.1")
        if path == "/version":
            major, minor = f.k8s_version.split(".")[:2]
            return {"major": major, "minor": minor, "gitVersion": f"v{f.k8s_version}.0-fake",
                    "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                    "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}
        if path == "/apis":
            groups = {}
            for r in f.resources:
                if r.group:
                    groups.setdefault(r.group, [])
                    if r.version not in groups[r.group]:
                        groups[r.group].append(r.version)
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}} for g, vs in groups.items()]}
        m = re.match(r"^/api/v1/?$|^/apis/([^/]+)/([^/]+)/?$", path)
        if m:
            g, v = (m.group(1) or ""), (m.group(2) or "v1")
            rs = [r for r in f.resources if r.group == g and r.version == v]
            if not rs:
                raise HttpError(404, "NotFound", "the server could not find the requested resource")
            out = []
            for r in rs:
                verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
                out.append({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                            "verbs": verbs, "shortNames": r.short})
                for s in sorted(r.subresources):
                    out.append({"name": f"{r.plural}/{s}", "singularName": "", "namespaced": r.namespaced,
                                "kind": r.kind if s != "log" else "Pod", "verbs": ["get"] if s == "log" else ["get", "patch", "update"]})
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": rs[0].api_version, "resources": out}
        if path == "/openapi/v3":
            gvs = sorted({r.gv_path for r in f.resources})
            return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash=fake{f.rv}"} for gv in gvs}}
        if path.startswith("/openapi/v3/"):
            gv = path[len("/openapi/v3/"):]
            rs = [r for r in f.resources if r.gv_path == gv]
            if not rs:
                raise HttpError(404, "NotFound", "the server could not find the requested resource")
            return self.openapi_doc(rs)
        return None

    def openapi_doc(self, rs):
        paths, schemas = {}, {}
        for r in rs:
            gvk = {"group": r.group, "version": r.version, "kind": r.kind}
            prefix = f"/{r.gv_path}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"/{r.gv_path}/{r.plural}"
            params = [{"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
                      for n in ("dryRun", "fieldManager", "fieldValidation", "force")]
            ok = {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{self.schema_name(r)}"}}}}}
            paths[prefix + "/{name}"] = {
                "get": {"responses": ok, "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk},
                "patch": {"parameters": params, "responses": ok, "x-kubernetes-action": "patch",
                          "x-kubernetes-group-version-kind": gvk},
                "put": {"parameters": params, "responses": ok, "x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk},
                "delete": {"responses": ok, "x-kubernetes-action": "delete", "x-kubernetes-group-version-kind": gvk},
            }
            paths[prefix] = {"post": {"parameters": params, "responses": ok, "x-kubernetes-action": "post",
                                      "x-kubernetes-group-version-kind": gvk}}
            schema = {"type": "object", "x-kubernetes-group-version-kind": [gvk],
                      "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                     "metadata": {"type": "object"}}}
            if r.schema:
                schema = copy.deepcopy(r.schema)
                schema["x-kubernetes-group-version-kind"] = [gvk]
            schemas[self.schema_name(r)] = schema
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes (fake)", "version": self.fake.k8s_version},
                "paths": paths, "components": {"schemas": schemas}}

    @staticmethod
    def schema_name(r):
        g = ".".join(reversed(r.group.split("."))) if r.group else "io.k8s.api.core"
        return f"{g}.{r.version}.{r.kind}"

    # --- the API

    def api(self, method, path, query, raw):
        if method == "GET":
            d = self.discovery(path.rstrip("/") if path != "/" else path)
            if d is not None:
                return self.send_json(200, d)
        f = self.fake
        m = re.match(r"^/api/(v1)/(.*)$", path) or re.match(r"^/apis/([^/]+/[^/]+)/(.*)$", path)
        if not m:
            raise HttpError(404, "NotFound", "the server could not find the requested resource")
        gv, rest = m.group(1), m.group(2).strip("/").split("/")
        g, _, v = gv.rpartition("/")
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else None), (rest[2] if len(rest) > 2 else None)
        r = f.by_path.get((g, v, plural))
        if r is None:
            raise HttpError(404, "NotFound", "the server could not find the requested resource")
        if sub and sub not in r.subresources:
            raise HttpError(404, "NotFound", "the server could not find the requested resource")
        if ns and f.denied.get(ns):
            grp = r.group or "\"\""
            verb = {"GET": "watch" if query.get("watch") in ("1", "true") else ("get" if name else "list"),
                    "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
            raise HttpError(403, "Forbidden",
                            f"{r.plural}{'.' + r.group if r.group else ''} is forbidden: User \"system:serviceaccount:ci:mlcd\" cannot {verb} resource \"{r.plural}\" in API group {grp} in the namespace \"{ns}\"")
        with f.lock:
            if ns and r.namespaced and ("", "namespaces", "", ns) not in f.objects:
                if method != "GET" or name:
                    raise HttpError(404, "NotFound", f"namespaces \"{ns}\" not found")
        if method == "GET" and name is None:
            if query.get("watch") in ("1", "true"):
                return self.watch(r, ns, query)
            return self.list(r, ns, query)
        if method == "GET" and sub == "log":
            return self.pod_log(ns, name, query)
        if method == "GET":
            with f.lock:
                obj = f.objects.get(f.key(r, ns, name))
            if obj is None:
                raise HttpError(404, "NotFound", f"{r.plural}{'.' + r.group if r.group else ''} \"{name}\" not found",
                                {"name": name, "group": r.group, "kind": r.plural})
            return self.send_json(200, obj)
        if method == "DELETE":
            with f.lock:
                obj = f.remove(f.key(r, ns, name))
            if obj is None:
                raise HttpError(404, "NotFound", f"{r.plural}{'.' + r.group if r.group else ''} \"{name}\" not found",
                                {"name": name, "group": r.group, "kind": r.plural})
            return self.send_json(200, obj)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            if ctype == "application/vnd.kubernetes.protobuf":
                body = protobuf.decode(raw)  # kubectl create secret|configmap|namespace
            elif ctype == "application/apply-patch+yaml":
                body = yaml.safe_load(raw.decode() or "{}")
            else:
                body = json.loads(raw or b"{}")
        except (ValueError, yaml.YAMLError) as e:
            raise HttpError(400, "BadRequest", f"the body of the request was in an unknown format: {e}")
        if not isinstance(body, dict):
            raise HttpError(400, "BadRequest", "the body must be an object")
        strict = query.get("fieldValidation", "Strict" if ctype == "application/apply-patch+yaml" else "Warn")
        with f.lock:
            key = f.key(r, ns, name or (body.get("metadata") or {}).get("name", ""))
            old = f.objects.get(key)
            if method == "POST":
                if old is not None:
                    raise HttpError(409, "AlreadyExists", f"{r.plural}{'.' + r.group if r.group else ''} \"{key[3]}\" already exists",
                                    {"name": key[3], "group": r.group, "kind": r.plural})
                obj = f.write(r, ns, body, create=True, manager=query.get("fieldManager"), method="POST", path=path)
                return self.send_json(201, obj)
            if method == "PUT":
                if old is None:
                    raise HttpError(404, "NotFound", f"{r.plural} \"{name}\" not found")
                want = (body.get("metadata") or {}).get("resourceVersion")
                if want and want != old["metadata"]["resourceVersion"]:
                    raise HttpError(409, "Conflict", f"Operation cannot be fulfilled on {r.plural}{'.' + r.group if r.group else ''} \"{name}\": the object has been modified; please apply your changes to the latest version and try again")
                obj = f.write(r, ns, body, manager=query.get("fieldManager"), method="PUT", path=path, old=old, subresource=sub)
                return self.send_json(200, obj)
            # PATCH
            if ctype == "application/apply-patch+yaml":
                if not query.get("fieldManager"):
                    raise HttpError(400, "BadRequest", "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests")
                if body.get("kind") and body.get("kind") != r.kind or body.get("apiVersion") and body.get("apiVersion") != r.api_version:
                    raise HttpError(400, "BadRequest", f"the apply body's kind/apiVersion ({body.get('apiVersion')}, {body.get('kind')}) does not match the URL ({r.api_version}, {r.kind})")
                if strict != "Strict":
                    f.violations.append({"seq": f.seq, "method": "PATCH", "path": path, "kind": r.kind, "object": name,
                                         "errors": [f"server-side apply without fieldValidation=Strict ({strict})"]})
                merged = merge_patch(old or {}, body)
                # Fields this manager applied last time and leaves out now are
                # removed, as server-side apply does (no other manager's
                # ownership is tracked: the fake's managers do not overlap).
                uid = (old or {}).get("metadata", {}).get("uid")
                before = f.applied.get((key, query["fieldManager"], sub or ""))
                if old is not None and before and before[0] == uid:
                    prune_unapplied(before[1], body, merged)
                code = 201 if old is None else 200
                obj = f.write(r, ns, merged, manager=query["fieldManager"], method="PATCH-APPLY", path=path, old=old, subresource=sub)
                f.applied[(key, query["fieldManager"], sub or "")] = (obj["metadata"]["uid"], copy.deepcopy(body))
                return self.send_json(code, obj)
            if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                if old is None:
                    raise HttpError(404, "NotFound", f"{r.plural}{'.' + r.group if r.group else ''} \"{name}\" not found",
                                    {"name": name, "group": r.group, "kind": r.plural})
                merged = merge_patch(old, body)
                obj = f.write(r, ns, merged, manager=query.get("fieldManager"), method="PATCH", path=path, old=old, subresource=sub)
                return self.send_json(200, obj)
            raise HttpError(415, "UnsupportedMediaType", f"the media type {ctype!r} is not supported by this fake")

    def list(self, r, ns, query):
        f = self.fake
        labels = parse_selector(query.get("labelSelector"))
        fields = parse_selector(query.get("fieldSelector"))
        with f.lock:
            items = [o for k, o in sorted(f.objects.items())
                     if k[0] == r.group and k[1] == r.plural and (ns is None or k[2] == ns)
                     and matches(labels, o["metadata"].get("labels") or {})
                     and matches(fields, field_values(o))]
            rv = str(f.rv)
        limit = int(query.get("limit") or 0)
        if limit:
            items = items[:limit]
        return self.send_json(200, {"kind": f"{r.kind}List", "apiVersion": r.api_version,
                                    "metadata": {"resourceVersion": rv}, "items": items})

    def watch(self, r, ns, query):
        f = self.fake
        labels = parse_selector(query.get("labelSelector"))
        fields = parse_selector(query.get("fieldSelector"))
        timeout = min(float(query.get("timeoutSeconds") or 60), 300)
        since = query.get("resourceVersion")

        def wanted(key, obj):
            return (key[0] == r.group and key[1] == r.plural and (ns is None or key[2] == ns)
                    and matches(labels, obj["metadata"].get("labels") or {})
                    and matches(fields, field_values(obj)))

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(ev_type, obj):
            line = json.dumps({"type": ev_type, "object": obj}).encode() + b"\n"
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()

        with f.lock:
            if not since or since == "0":
                for key, obj in sorted(f.objects.items()):
                    if wanted(key, obj):
                        send("ADDED", obj)
                cursor = f.rv
            else:
                cursor = int(since)
        end = time.time() + timeout
        try:
            while time.time() < end:
                with f.lock:
                    pending = [e for e in f.events if e[0] > cursor]
                    if not pending:
                        f.lock.wait(min(0.5, max(0.0, end - time.time())))
                        continue
                for rv, ev_type, key, obj in pending:
                    cursor = max(cursor, rv)
                    if wanted(key, obj):
                        send(ev_type, obj)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def pod_log(self, ns, name, query):
        f = self.fake
        with f.lock:
            pod = f.objects.get(("", "pods", ns, name))
            if pod is None:
                raise HttpError(404, "NotFound", f"pods \"{name}\" not found")
        if f.kubelet:
            got = f.kubelet.logs(ns, name, query.get("container"), query)
            if got is not None:
                if got[0] != 200:
                    raise HttpError(got[0], "BadRequest", got[1])
                return self.send_text(200, got[1])
        with f.lock:
            container = query.get("container") or pod["spec"]["containers"][0]["name"]
            if container not in [c["name"] for c in pod["spec"]["containers"]]:
                raise HttpError(400, "BadRequest", f"container {container} is not valid for pod {name}")
            if pod.get("status", {}).get("phase", "Pending") == "Pending":
                raise HttpError(400, "BadRequest", f"container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating")
            lines = list(f.logs.get((ns, name), []))
        tail = query.get("tailLines")
        if tail:
            lines = lines[-int(tail):] if int(tail) else []
        if query.get("timestamps") in ("true", "1"):
            lines = [f"{now()} {line}" for line in lines]
        return self.send_text(200, "".join(line + "\n" for line in lines))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake Kubernetes API server validating every object (tests only).")
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "fixtures", "kubernetes"))
    ap.add_argument("--k8s-version", default="1.32")
    ap.add_argument("--no-runtimes", action="store_true", help="do not preload the ClusterTrainingRuntimes")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--run-containers", action="store_true",
                    help="run the jobs' pods as real containers on the Docker engine at DOCKER_HOST (kubelet.py)")
    args = ap.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING if args.quiet else logging.INFO,
                        format="fake-kube %(levelname)s %(message)s")
    if kubernetes_validate is None:
        log.error("kubernetes-validate is not installed (pip install kubernetes-validate): core objects cannot be validated")
        return 2
    crds = load_crds(os.path.join(args.fixtures, "crds"))
    runtimes = []
    if not args.no_runtimes:
        for p in sorted(glob.glob(os.path.join(args.fixtures, "runtimes", "*.yaml"))):
            with open(p, encoding="utf-8") as fh:
                runtimes.append(yaml.load(fh, Loader=YAML_LOADER))
    fake = Fake(crds, args.k8s_version, runtimes)
    if args.run_containers:
        if not os.environ.get("DOCKER_HOST"):
            log.error("--run-containers needs a Docker engine: set DOCKER_HOST (the test bed's, from .testbed/env)")
            return 2
        fake.kubelet = Kubelet(fake)
    server = Server((args.host, args.port), Handler)
    server.fake = fake
    host, port = server.server_address[:2]
    fake.kserve.base = f"http://{host}:{port}"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    signal.signal(signal.SIGINT, lambda s, f: stop.set())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()

    def controller():
        while not stop.is_set():
            fake.tick()
            stop.wait(0.05)

    threading.Thread(target=controller, daemon=True).start()
    print(f"LISTENING http://{host}:{port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    fake.kserve.shutdown()
    fake.rollouts.shutdown()
    if fake.kubelet:
        fake.kubelet.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
