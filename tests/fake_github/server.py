#!/usr/bin/env python3
"""Fake GitHub REST API for mlcd's tests: every request is validated against GitHub's
official OpenAPI description (the subset in fixtures/github/openapi-subset.json, cut
from npm @octokit/openapi by scripts/github-fixtures), and answered like GitHub.

Usage:
    python3 tests/fake_github/server.py [--spec fixtures/github/openapi-subset.json]
                                        [--host 127.0.0.1] [--port 0]

Once listening it prints exactly one line on stdout, `LISTENING http://127.0.0.1:PORT`,
and flushes; everything else goes to stderr. SIGTERM or SIGINT stops it cleanly.

For each request to a GitHub path it:
  * matches method + path against the subset's path templates (unknown -> 404 + violation);
  * requires `Authorization: Bearer ...` / `token ...` (else 401 Bad credentials) and a
    User-Agent header (GitHub answers 403 without one);
  * validates path parameters, query parameters and the JSON body against the operation
    (OpenAPI 3.0 semantics, openapi_schema_validator.OAS30WriteValidator; `nullable`
    also admits null where the schema has an `enum`) -> 422 "Invalid request." + violation;
  * answers from in-memory state (check runs + annotations, deployments + statuses,
    issue comments, repositories, pull requests; contents, refs and merges in a real
    bare git repository, see gitrepo.py), building each body from the operation's documented
    example and validating it against the documented response schema (a mismatch is
    recorded as a violation too).

Control endpoints (not GitHub operations, never validated nor recorded):
    GET  /_fake/requests     recorded requests (see README.md for the shape)
    GET  /_fake/violations   every violation so far
    GET  /_fake/state        stored check runs (with annotations), deployments (with
                             statuses), issue comments
    GET  /_fake/health       {"ok": true}
    POST /_fake/reset        forget requests, violations, state, denials; restart ids
    GET  /_fake/git          {"owner/repo": "/path/to/bare.git"} for the git-backed repos
    POST /_fake/git/init     {"repo": "o/r", "dir": "/seed/dir", "branch": "main"}: a
                             bare repository seeded with the directory's files (one commit)
    POST /_fake/git/race     {"repo": "o/r", "path": "p", "content": "text"}: the next
                             contents update first sees this commit from another writer
    POST /_fake/pulls        {"repository": "o/r", "number": 7, "head_sha": SHA, "commits": [SHA...],
                              "state": "open", "merge_commit_sha": SHA}: a pull request
                             that commits/{sha}/pulls finds
    POST /_fake/deny         {"path_prefix": "/repos/o/r/check-runs", "status": 403,
                              "message": "Resource not accessible by integration",
                              "method": "POST" (optional), "times": 1 (optional)}
                             or {"clear": true}
"""

import argparse
import base64
import copy
import datetime
import hashlib
import http.server
import itertools
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gitrepo  # noqa: E402

if __name__ == "__main__":
    # A SIGTERM that arrives while still starting (imports take ~0.5 s) also exits cleanly.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

from jsonschema import FormatChecker  # noqa: E402
from jsonschema import _keywords as js_keywords
from jsonschema.validators import extend
from openapi_schema_validator import (
    OAS30ReadValidator,
    OAS30WriteValidator,
    OAS31Validator,
    oas30_format_checker,
    oas31_format_checker,
)

try:
    from rfc3339_validator import validate_rfc3339
except ImportError:  # pragma: no cover
    validate_rfc3339 = None

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SPEC = os.path.normpath(os.path.join(HERE, "..", "..", "fixtures", "github", "openapi-subset.json"))
DOCS = "https://docs.github.com/rest"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SHA_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
AUTH_RE = re.compile(r"^(?:bearer|token)\s+\S+", re.IGNORECASE)
UA_FORBIDDEN = (
    "Request forbidden by administrative rules. Please make sure your request has a "
    "User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). "
    "Check https://developer.github.com for other possible causes.\n"
)
COMMENT_BODY_MAX = 65536

log = logging.getLogger("fake-github")

# ---------------------------------------------------------------------------
# Validators: OpenAPI 3.0 (nullable, readOnly/writeOnly) or 3.1, with date-time checked.


def _nullable_enum(validator, enums, instance, schema):
    # GitHub writes `{"type": "string", "nullable": true, "enum": [...]}` for values such
    # as a check run's `conclusion` that are null until set, and its own examples carry
    # null there. Read `nullable` as admitting null, as GitHub and its SDKs do.
    if instance is None and schema.get("nullable") is True:
        return
    yield from js_keywords.enum(validator, enums, instance, schema)


def _format_checker(base):
    fc = FormatChecker(formats=())
    fc.checkers = dict(base.checkers)
    if validate_rfc3339 is not None:
        fc.checks("date-time")(lambda v: not isinstance(v, str) or bool(validate_rfc3339(v)))
    return fc


OAS30Request = extend(OAS30WriteValidator, {"enum": _nullable_enum})
OAS30Response = extend(OAS30ReadValidator, {"enum": _nullable_enum})


def now_ts():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def norm_ts(value):
    """GitHub stores timestamps and answers them in UTC, second precision, with Z."""
    try:
        dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(kind, ident):
    return base64.b64encode(f"0{len(kind)}:{kind}{ident}".encode()).decode()


def fake_sha(*parts):
    return hashlib.sha1("\0".join(str(p) for p in parts).encode()).hexdigest()


def schema_path_str(err):
    return "/".join(str(p) for p in err.relative_schema_path)


def instance_path_str(err):
    return "/" + "/".join(str(p) for p in err.absolute_path) if err.absolute_path else ""


def github_error_line(err):
    """One line in the style of GitHub's own 422 messages."""
    if err.validator == "required":
        m = re.match(r"^'(.*)' is a required property$", err.message)
        name = m.group(1) if m else err.message
        where = "/".join(str(p) for p in list(err.relative_schema_path)[:-1])
        return f'"{name}" wasn\'t supplied.' + (f" (in '{where}')" if where else "")
    where = "/".join(str(p) for p in list(err.relative_schema_path)[:-1])
    return f"For '{where}', {err.message}." if where else f"{err.message}."


# ---------------------------------------------------------------------------
# The OpenAPI subset


class Operation:
    def __init__(self, spec, method, template, item, op):
        self.spec = spec
        self.method = method.upper()
        self.template = template
        self.operation_id = op["operationId"]
        self.docs_url = (op.get("externalDocs") or {}).get("url", DOCS)
        params = {}
        for p in item.get("parameters", []) + op.get("parameters", []):
            params[(p["name"], p["in"])] = p
        self.params = list(params.values())
        rb = op.get("requestBody")
        self.body_required = bool(rb and rb.get("required"))
        self.body_schema = None
        if rb:
            content = rb.get("content", {})
            media = content.get("application/json") or next(iter(content.values()), {})
            self.body_schema = media.get("schema")
        self.responses = {}
        for code, resp in op.get("responses", {}).items():
            media = (resp.get("content") or {}).get("application/json")
            self.responses[code] = {
                "schema": media.get("schema") if media else None,
                "examples": {k: v.get("value") for k, v in ((media or {}).get("examples") or {}).items()},
                "example": (media or {}).get("example"),
                "headers": resp.get("headers") or {},
            }
        names = re.findall(r"{([^}]+)}", template)
        rx = ""
        for part in re.split(r"({[^}]+})", template):
            if part.startswith("{") and part.endswith("}"):
                # a file path (the contents API's last parameter) spans several segments
                # and so does a git ref (`heads/mlcd/production/churn`)
                many = part in ("{path}", "{ref}") and template.endswith(part)
                rx += f"(?P<{part[1:-1]}>{'.+' if many else '[^/]+'})"
            else:
                rx += re.escape(part)
        self.regex = re.compile("^" + rx + "$")
        self.literal_score = (len([s for s in template.split("/") if s and not s.startswith("{")]), -len(names))

    def example(self, code, name=None):
        r = self.responses.get(str(code))
        if not r:
            return None
        if name and name in r["examples"]:
            return copy.deepcopy(r["examples"][name])
        if r["examples"]:
            return copy.deepcopy(next(iter(r["examples"].values())))
        return copy.deepcopy(r["example"])

    def response_schema(self, code):
        r = self.responses.get(str(code))
        return r["schema"] if r else None


class Spec:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.doc = json.load(f)
        self.path = path
        self.version = self.doc.get("openapi", "3.0.0")
        if self.version.startswith("3.0"):
            self.request_cls, self.response_cls = OAS30Request, OAS30Response
            self.format_checker = _format_checker(oas30_format_checker)
            self.validator_name = "openapi_schema_validator.OAS30WriteValidator/OAS30ReadValidator (+nullable enum)"
        else:
            self.request_cls = self.response_cls = OAS31Validator
            self.format_checker = _format_checker(oas31_format_checker)
            self.validator_name = "openapi_schema_validator.OAS31Validator"
        self.ops = {}
        for template, item in self.doc.get("paths", {}).items():
            for method in HTTP_METHODS:
                op = item.get(method)
                if isinstance(op, dict) and "operationId" in op:
                    self.ops[op["operationId"]] = Operation(self, method, template, item, op)
        self.routes = sorted(self.ops.values(), key=lambda o: o.literal_score, reverse=True)
        self.source = self.doc.get("x-source", {})

    def match(self, method, path):
        for op in self.routes:
            if op.method != method:
                continue
            m = op.regex.match(path)
            if m:
                return op, {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
        return None, None

    def errors(self, schema, instance, response=False):
        cls = self.response_cls if response else self.request_cls
        v = cls(schema, format_checker=self.format_checker)
        return sorted(v.iter_errors(instance), key=lambda e: (list(map(str, e.absolute_path)), e.validator))


# ---------------------------------------------------------------------------
# Building response bodies from the documented examples


def fill_required(schema, value, path, gaps):
    """Add required properties an example lacks, with a type-correct neutral value."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict) and (schema.get("type") == "object" or "properties" in schema):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                ps = props.get(name, {})
                value[name] = neutral(ps)
                gaps.append(f"{path}/{name}")
        for name, sub in props.items():
            if name in value and value[name] is not None:
                value[name] = fill_required(sub, value[name], f"{path}/{name}", gaps)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [fill_required(schema["items"], x, f"{path}/{i}", gaps) for i, x in enumerate(value)]
    return value


def neutral(schema):
    if schema.get("nullable"):
        return None
    t = schema.get("type")
    if t == "string":
        return ""
    if t in ("integer", "number"):
        return 0
    if t == "boolean":
        return False
    if t == "array":
        return []
    if t == "object":
        return fill_required(schema, {}, "", [])
    return None


def rewrite(obj, pairs):
    if isinstance(obj, str):
        for old, new in pairs:
            obj = obj.replace(old, new)
        return obj
    if isinstance(obj, list):
        return [rewrite(x, pairs) for x in obj]
    if isinstance(obj, dict):
        return {k: rewrite(v, pairs) for k, v in obj.items()}
    return obj


def example_repo(example):
    """owner/repo of an example, from its `url` (or `repository_url`)."""
    for key in ("url", "repository_url"):
        m = re.search(r"api\.github\.com/repos/([^/]+)/([^/{]+)", str(example.get(key, "")))
        if m:
            return m.group(1), m.group(2)
    return None


class Templates:
    """The documented examples, completed once at start-up so every required field exists."""

    def __init__(self, spec):
        self.gaps = []

        def take(op_id, code, name=None, drop=()):
            op = spec.ops[op_id]
            ex = op.example(code, name)
            if isinstance(ex, list):
                ex = ex[0]
            for key in drop:
                ex.pop(key, None)
            schema = op.response_schema(code)
            if schema and schema.get("type") == "array":
                schema = schema.get("items")
            return fill_required(schema, ex, f"{op_id} {code}", self.gaps)

        self.check_run = take("checks/get", 200)
        self.annotation = take("checks/list-annotations", 200)
        self.deployment = take("repos/create-deployment", 201, "simple-example")
        self.status = take("repos/create-deployment-status", 201)
        self.comment = take("issues/create-comment", 201)
        self.commit_comment = take("repos/create-commit-comment", 201)
        self.pull = take("repos/list-pull-requests-associated-with-commit", 200)
        # a plain repository: the example also shows a fork's parent/source/template
        self.repo = take("repos/get", 200, drop=("parent", "source", "template_repository", "organization"))
        self.root = take("meta/root", 200)
        self.pull_full = take("pulls/create", 201)
        self.pull_simple = take("pulls/list", 200)
        self.git_ref = take("git/get-ref", 200)
        user = copy.deepcopy(self.comment["user"])
        bot = "github-actions%5Bbot%5D"
        user = rewrite(user, [("/users/octocat", f"/users/{bot}")])
        user.update(
            login="github-actions[bot]",
            id=41898282,
            node_id="MDM6Qm90NDE4OTgyODI=",
            avatar_url="https://avatars.githubusercontent.com/in/15368?v=4",
            html_url="https://github.com/apps/github-actions",
            type="Bot",
            site_admin=False,
        )
        self.bot = user  # who GitHub names as author for requests made with a GITHUB_TOKEN
        app = copy.deepcopy(self.check_run["app"])
        app.update(
            id=15368,
            slug="github-actions",
            node_id="MDM6QXBwMTUzNjg=",
            name="GitHub Actions",
            description="Automate your workflow from idea to production",
            external_url="https://help.github.com/en/actions",
            html_url="https://github.com/apps/github-actions",
            created_at="2018-07-30T09:30:17Z",
            updated_at="2019-12-10T19:04:12Z",
        )
        self.app = app


# ---------------------------------------------------------------------------
# State


class GHError(Exception):
    def __init__(self, status, message, errors=None, violation=None, docs=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.violation = violation  # (kind, location, message) or None
        self.docs = docs


class Reply:
    def __init__(self, status, body, headers=None):
        self.status = status
        self.body = body
        self.headers = headers or {}


class Fake:
    def __init__(self, spec):
        self.spec = spec
        self.tpl = Templates(spec)
        self.lock = threading.RLock()
        self.git = gitrepo.Repos()
        self.reset()

    def reset(self):
        with self.lock:
            self.requests = []
            self.violations = []
            self.denials = []
            self.check_runs = {}  # id -> {"repo": "o/r", "run": {...}, "annotations": [...]}
            self.deployments = {}  # id -> {"repo": "o/r", "deployment": {...}, "statuses": [...]}
            self.comments = {}  # id -> {"repo": "o/r", "issue_number": n, "comment": {...}}
            self.commit_comments = {}  # id -> {"repo": "o/r", "comment": {...}}
            self.pulls = []  # {"repository", "number", "head_sha", "commits", "state", "merge_commit_sha"}
            self.suites = {}
            self.dispatches = []  # {"repository", "event_type", "client_payload"}
            self.seq = itertools.count(1)
            self.ids = {
                "check_run": itertools.count(1001),
                "check_suite": itertools.count(5001),
                "deployment": itertools.count(2001),
                "status": itertools.count(3001),
                "comment": itertools.count(4001),
                "commit_comment": itertools.count(6001),
            }
            self.used = 0

    # -- control -----------------------------------------------------------

    def state(self):
        with self.lock:
            runs = []
            for rec in self.check_runs.values():
                run = copy.deepcopy(rec["run"])
                run["repository"] = rec["repo"]
                run["annotations"] = copy.deepcopy(rec["annotations"])
                runs.append(run)
            deps = []
            for rec in self.deployments.values():
                dep = copy.deepcopy(rec["deployment"])
                dep["repository"] = rec["repo"]
                dep["statuses"] = copy.deepcopy(rec["statuses"])
                deps.append(dep)
            comments = []
            for rec in self.comments.values():
                c = copy.deepcopy(rec["comment"])
                c["repository"] = rec["repo"]
                c["issue_number"] = rec["issue_number"]
                comments.append(c)
            commit_comments = []
            for rec in self.commit_comments.values():
                c = copy.deepcopy(rec["comment"])
                c["repository"] = rec["repo"]
                commit_comments.append(c)
            return {
                "check_runs": runs,
                "deployments": deps,
                "comments": comments,
                "dispatches": copy.deepcopy(self.dispatches),
                "commit_comments": commit_comments,
                "pulls": copy.deepcopy(self.pulls),
            }

    def add_pull(self, body):
        """Seeds a pull request that `commits/{sha}/pulls` finds (by head, merge or listed commit)."""
        with self.lock:
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            repo, number, head = body.get("repository"), body.get("number"), body.get("head_sha")
            if not isinstance(repo, str) or "/" not in repo:
                raise ValueError("repository (owner/repo) is required")
            if not isinstance(number, int) or number < 1:
                raise ValueError("number (a positive integer) is required")
            if not isinstance(head, str) or not SHA_RE.match(head):
                raise ValueError("head_sha (a full commit SHA) is required")
            state = body.get("state", "open")
            if state not in ("open", "closed"):
                raise ValueError("state is open or closed")
            pr = {
                "repository": repo,
                "number": number,
                "head_sha": head,
                "commits": [c for c in body.get("commits", []) if isinstance(c, str)],
                "state": state,
                "merge_commit_sha": body.get("merge_commit_sha"),
            }
            self.pulls = [p for p in self.pulls if (p["repository"], p["number"]) != (repo, number)]
            self.pulls.append(pr)
            return pr

    def deny(self, body):
        with self.lock:
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            if body.get("clear"):
                self.denials = []
                return self.denials
            prefix = body.get("path_prefix")
            if not isinstance(prefix, str) or not prefix.startswith("/"):
                raise ValueError("path_prefix (a string starting with /) is required")
            rule = {
                "path_prefix": prefix,
                "status": int(body.get("status", 403)),
                "message": str(body.get("message", "Resource not accessible by integration")),
                "method": body["method"].upper() if body.get("method") else None,
                "times": int(body["times"]) if body.get("times") is not None else None,
            }
            self.denials.append(rule)
            return self.denials

    def take_denial(self, method, path):
        with self.lock:
            for rule in self.denials:
                if path.startswith(rule["path_prefix"]) and rule["method"] in (None, method):
                    if rule["times"] is not None:
                        rule["times"] -= 1
                        if rule["times"] <= 0:
                            self.denials.remove(rule)
                    return rule
        return None

    # -- request processing --------------------------------------------------

    def handle(self, method, raw_path, headers, raw_body, base):
        split = urllib.parse.urlsplit(raw_path)
        path = split.path
        pairs = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        query = {}
        for k, v in pairs:
            query[k] = v
        auth = headers.get("Authorization") or ""
        rec = {
            "seq": None,
            "method": method,
            "path": path,
            "query": query,
            "operation_id": None,
            "body": None,
            "has_auth": bool(auth.strip()),
            "headers": {
                k.lower(): headers[k]
                for k in ("User-Agent", "Accept", "Content-Type", "X-GitHub-Api-Version")
                if headers.get(k) is not None
            },
            "status": None,
            "violations": [],
        }
        json_error = None
        if raw_body:
            try:
                rec["body"] = json.loads(raw_body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                rec["body"] = raw_body.decode("utf-8", "replace")
                json_error = str(e)

        def violate(kind, location, message, schema_path=None, instance_path=None):
            rec["violations"].append(
                {
                    "kind": kind,
                    "operation_id": rec["operation_id"],
                    "method": method,
                    "path": path,
                    "location": location,
                    "schema_path": schema_path,
                    "instance_path": instance_path,
                    "message": message,
                }
            )

        try:
            reply = self._process(method, path, pairs, query, headers, rec, json_error, base, violate)
        except Exception as e:  # a bug in the fake: say so loudly, answer 500
            log.exception("internal error")
            violate("fake_internal_error", "server", f"{type(e).__name__}: {e}")
            reply = Reply(500, {"message": "Server Error", "documentation_url": DOCS, "status": "500"})

        with self.lock:
            rec["seq"] = next(self.seq)
            rec["status"] = reply.status
            self.used += 1
            for v in rec["violations"]:
                v["seq"] = rec["seq"]
                self.violations.append(v)
            self.requests.append(rec)
        summary = f"{method} {raw_path} -> {reply.status} {rec['operation_id'] or '-'}"
        if rec["violations"]:
            log.warning("%s  VIOLATIONS: %s", summary, "; ".join(v["message"] for v in rec["violations"]))
        else:
            log.info("%s", summary)
        return reply, rec

    def _process(self, method, path, pairs, query, headers, rec, json_error, base, violate):
        op, path_params = self.spec.match(method, path)
        if op is None:
            violate("unknown_operation", "path", f"operation not in the OpenAPI subset: {method} {path}")
            return Reply(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})
        rec["operation_id"] = op.operation_id

        # --- validate everything first, so every breach is recorded ---
        auth = headers.get("Authorization") or ""
        auth_ok = bool(AUTH_RE.match(auth.strip()))
        if not auth_ok:
            violate("auth", "header", "missing or malformed Authorization header (want 'Bearer <token>' or 'token <token>')")
        ua_ok = bool((headers.get("User-Agent") or "").strip())
        if not ua_ok:
            violate("header", "header", "missing User-Agent header (GitHub answers 403)")

        bad_path = []
        coerced_path = {}
        query_errors = []
        coerced_query = {}
        for p in op.params:
            where, name, schema = p["in"], p["name"], p.get("schema", {})
            if where == "path":
                raw = path_params.get(name)
                val = coerce(raw, schema)
                for err in self.spec.errors(schema, val):
                    msg = f"{op.operation_id}: path parameter '{name}' = {raw!r}: {err.message}"
                    violate("request", "path", msg, f"parameters/{name}/schema/{schema_path_str(err)}", f"/{name}")
                    bad_path.append(msg)
                coerced_path[name] = val
            elif where == "query":
                if name not in query:
                    if p.get("required"):
                        msg = f"{op.operation_id}: required query parameter '{name}' missing"
                        violate("request", "query", msg, f"parameters/{name}/required", f"/{name}")
                        query_errors.append(f'"{name}" wasn\'t supplied.')
                    continue
                val = coerce(query[name], schema, [v for k, v in pairs if k == name])
                for err in self.spec.errors(schema, val):
                    msg = f"{op.operation_id}: query parameter '{name}' = {query[name]!r}: {err.message}"
                    violate("request", "query", msg, f"parameters/{name}/schema/{schema_path_str(err)}", f"/{name}")
                    query_errors.append(f"For '{name}', {err.message}.")
                coerced_query[name] = val
            elif where == "header" and p.get("required") and headers.get(name) is None:
                violate("request", "header", f"{op.operation_id}: required header '{name}' missing")
        known = {p["name"] for p in op.params if p["in"] == "query"}
        for name in query:
            if name not in known:
                # GitHub ignores unknown query parameters; the description does not have them.
                violate("request", "query", f"{op.operation_id}: unknown query parameter '{name}' (not in the operation's parameters)", None, f"/{name}")

        body = rec["body"]
        body_errors = []
        if json_error:
            violate("request", "body", f"{op.operation_id}: body is not JSON: {json_error}")
        elif op.body_schema is not None:
            if body is None and op.body_required:
                violate("request", "body", f"{op.operation_id}: request body is required", "requestBody/required", "")
                body_errors.append("A JSON request body is required.")
            elif body is not None:
                for err in self.spec.errors(op.body_schema, body):
                    sp = schema_path_str(err)
                    violate(
                        "request",
                        "body",
                        f"{op.operation_id}: body{instance_path_str(err) or ''}: {err.message} (schema path {sp})",
                        sp,
                        instance_path_str(err),
                    )
                    body_errors.append(github_error_line(err))
        elif body is not None and method in ("POST", "PATCH", "PUT"):
            violate("request", "body", f"{op.operation_id}: the operation takes no request body")

        # --- then answer in GitHub's order of checks ---
        if not auth_ok:
            return Reply(401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"})
        if not ua_ok:
            return Reply(403, UA_FORBIDDEN, {"Content-Type": "text/plain; charset=utf-8"})
        if bad_path:
            return Reply(404, {"message": "Not Found", "documentation_url": op.docs_url, "status": "404"})
        rule = self.take_denial(method, path)
        if rule:
            return Reply(rule["status"], {"message": rule["message"], "documentation_url": op.docs_url, "status": str(rule["status"])})
        if json_error:
            return Reply(400, {"message": "Problems parsing JSON", "documentation_url": op.docs_url, "status": "400"})
        if body_errors or query_errors:
            details = "\n".join(query_errors + body_errors)
            return Reply(422, {"message": "Invalid request.\n\n" + details, "documentation_url": op.docs_url, "status": "422"})

        ctx = Ctx(self, op, coerced_path, coerced_query, body if body is not None else {}, base, path, violate)
        try:
            with self.lock:
                reply = HANDLERS[op.operation_id](ctx)
        except GHError as e:
            if e.violation:
                violate(e.violation[0], e.violation[1], f"{op.operation_id}: {e.violation[2]}")
            payload = {"message": e.message}
            if e.errors is not None:
                payload["errors"] = e.errors
            payload["documentation_url"] = e.docs or op.docs_url
            payload["status"] = str(e.status)
            reply = Reply(e.status, payload)

        # --- keep the fake honest: its own answer must match the documented schema ---
        schema = op.response_schema(reply.status)
        if schema is not None and not isinstance(reply.body, str):
            for err in self.spec.errors(schema, reply.body, response=True):
                if reply.status >= 400 and err.validator == "oneOf" and "is valid under each of" in err.message:
                    # GitHub documents some error bodies as oneOf two schemas that
                    # both admit a plain {message, documentation_url, status} (the
                    # contents API's 409: "Repository rule violation" and "Basic
                    # Error"), so the body GitHub sends satisfies both: not a breach.
                    continue
                violate(
                    "response",
                    "response",
                    f"{op.operation_id}: fake's {reply.status} response{instance_path_str(err)}: {err.message}",
                    schema_path_str(err),
                    instance_path_str(err),
                )
        elif str(reply.status) not in op.responses and reply.status < 400:
            violate("response", "response", f"{op.operation_id}: status {reply.status} is not documented")
        return reply


def coerce(raw, schema, values=None):
    """A path/query string as the JSON value its schema describes (if it parses)."""
    if raw is None:
        return None
    t = schema.get("type")
    try:
        if t == "integer" and re.fullmatch(r"-?\d+", raw):
            return int(raw)
        if t == "number":
            return float(raw) if re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", raw) else raw
        if t == "boolean" and raw in ("true", "false"):
            return raw == "true"
        if t == "array":
            items = schema.get("items", {})
            vals = values if values and len(values) > 1 else raw.split(",")
            return [coerce(v, items) for v in vals]
    except (TypeError, ValueError):
        return raw
    return raw


# ---------------------------------------------------------------------------
# Operation handlers


class Ctx:
    def __init__(self, fake, op, path_params, query, body, base, path, violate):
        self.fake = fake
        self.tpl = fake.tpl
        self.op = op
        self.p = path_params
        self.q = query
        self.body = body
        self.base = base
        self.path = path
        self.violate = violate
        self.owner = path_params.get("owner")
        self.repo = path_params.get("repo")
        self.full = f"{self.owner}/{self.repo}"
        self.api_repo = f"{base}/repos/{self.owner}/{self.repo}"
        self.html_repo = f"https://github.com/{self.owner}/{self.repo}"

    def from_template(self, template):
        pairs = []
        ex = example_repo(template)
        if ex:
            pairs += [
                (f"https://api.github.com/repos/{ex[0]}/{ex[1]}", self.api_repo),
                (f"https://github.com/{ex[0]}/{ex[1]}", self.html_repo),
            ]
        pairs.append(("https://api.github.com", self.base))
        return rewrite(copy.deepcopy(template), pairs)

    def not_found(self):
        return GHError(404, "Not Found")

    def page(self, items):
        """GitHub pagination: per_page (default 30, max 100), page, and a Link header."""
        per_page = self.q.get("per_page", 30)
        per_page = 30 if not isinstance(per_page, int) or per_page < 1 else min(per_page, 100)
        page = self.q.get("page", 1)
        page = 1 if not isinstance(page, int) or page < 1 else page
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if last > 1:
            def url(n):
                q = dict(self.q)
                q["page"] = n
                return f"{self.base}{self.path}?{urllib.parse.urlencode(q)}"

            links = []
            if page > 1:
                links.append(f'<{url(page - 1)}>; rel="prev"')
            if page < last:
                links.append(f'<{url(page + 1)}>; rel="next"')
                links.append(f'<{url(last)}>; rel="last"')
            if page > 1:
                links.append(f'<{url(1)}>; rel="first"')
            headers["Link"] = ", ".join(links)
        return copy.deepcopy(chunk), headers


def _run_record(ctx):
    rec = ctx.fake.check_runs.get(ctx.p["check_run_id"])
    if rec is None or rec["repo"] != ctx.full:
        raise ctx.not_found()
    return rec


def _check_semantics(ctx, body, run=None):
    status = body.get("status")
    conclusion = body.get("conclusion")
    if conclusion is not None:
        status = "completed"  # "Providing conclusion will automatically set the status parameter to completed."
    final_status = status or (run["status"] if run else "queued")
    if final_status == "completed" and conclusion is None and (run is None or run.get("conclusion") is None):
        raise GHError(
            422,
            "Invalid request.\n\n`conclusion` must be supplied when `status` is `completed` (or `completed_at` is set).",
            violation=("semantic", "body", "`conclusion` is required when status is completed"),
        )
    if body.get("completed_at") is not None and conclusion is None and (run is None or run.get("conclusion") is None):
        raise GHError(
            422,
            "Invalid request.\n\n`conclusion` must be supplied when `completed_at` is set.",
            violation=("semantic", "body", "`conclusion` is required when completed_at is set"),
        )
    for i, a in enumerate(((body.get("output") or {}).get("annotations")) or []):
        if ("start_column" in a or "end_column" in a) and a.get("start_line") != a.get("end_line"):
            # Documented: "Annotations only support start_column and end_column on the same line."
            ctx.violate(
                "semantic",
                "body",
                f"{ctx.op.operation_id}: output/annotations/{i}: start_column/end_column given but start_line != end_line",
                "output/annotations/items/start_column",
                f"/output/annotations/{i}",
            )
    return status


def _apply_output(ctx, rec, output):
    if not output:
        return
    out = rec["run"]["output"]
    for key in ("title", "summary", "text"):
        if key in output:
            out[key] = output[key]
    for a in output.get("annotations") or []:
        item = ctx.from_template(ctx.tpl.annotation)
        item.update(
            path=a["path"],
            start_line=a["start_line"],
            end_line=a["end_line"],
            start_column=a.get("start_column"),
            end_column=a.get("end_column"),
            annotation_level=a["annotation_level"],
            title=a.get("title"),
            message=a["message"],
            raw_details=a.get("raw_details"),
            blob_href=f"{ctx.html_repo}/blob/{rec['run']['head_sha']}/{a['path']}",
        )
        rec["annotations"].append(item)
    out["annotations_count"] = len(rec["annotations"])


def checks_create(ctx):
    b = ctx.body
    if not SHA_RE.match(b["head_sha"]):
        raise GHError(422, f"No commit found for SHA: {b['head_sha']}", violation=("semantic", "body", f"head_sha {b['head_sha']!r} is not a full commit SHA"))
    status = _check_semantics(ctx, b) or "queued"
    now = now_ts()
    ident = next(ctx.fake.ids["check_run"])
    suite_key = (ctx.full, b["head_sha"])
    if suite_key not in ctx.fake.suites:
        ctx.fake.suites[suite_key] = next(ctx.fake.ids["check_suite"])
    run = ctx.from_template(ctx.tpl.check_run)
    url = f"{ctx.api_repo}/check-runs/{ident}"
    html = f"{ctx.html_repo}/runs/{ident}"
    run.update(
        id=ident,
        node_id=node_id("CheckRun", ident),
        head_sha=b["head_sha"],
        name=b["name"],
        external_id=b.get("external_id", ""),
        url=url,
        html_url=html,
        details_url=b.get("details_url", html),
        status=status,
        conclusion=b.get("conclusion"),
        started_at=norm_ts(b["started_at"]) if b.get("started_at") else now,
        completed_at=(norm_ts(b["completed_at"]) if b.get("completed_at") else now) if status == "completed" else None,
        output={"title": None, "summary": None, "text": None, "annotations_count": 0, "annotations_url": f"{url}/annotations"},
        check_suite={"id": ctx.fake.suites[suite_key]},
        app=copy.deepcopy(ctx.tpl.app),
        pull_requests=[],
    )
    rec = {"repo": ctx.full, "run": run, "annotations": []}
    _apply_output(ctx, rec, b.get("output"))
    ctx.fake.check_runs[ident] = rec
    return Reply(201, copy.deepcopy(run), {"Location": url})


def checks_update(ctx):
    rec = _run_record(ctx)
    run = rec["run"]
    b = ctx.body
    status = _check_semantics(ctx, b, run)
    for key in ("name", "details_url", "external_id"):
        if key in b:
            run[key] = b[key]
    if b.get("started_at"):
        run["started_at"] = norm_ts(b["started_at"])
    if status:
        run["status"] = status
    if b.get("conclusion") is not None:
        run["conclusion"] = b["conclusion"]
    if run["status"] == "completed":
        if b.get("completed_at"):
            run["completed_at"] = norm_ts(b["completed_at"])
        elif run.get("completed_at") is None:
            run["completed_at"] = now_ts()
    else:
        run["conclusion"] = None
        run["completed_at"] = None
    _apply_output(ctx, rec, b.get("output"))
    return Reply(200, copy.deepcopy(run))


def checks_get(ctx):
    return Reply(200, copy.deepcopy(_run_record(ctx)["run"]))


def checks_list_annotations(ctx):
    items, headers = ctx.page(_run_record(ctx)["annotations"])
    return Reply(200, items, headers)


def _latest_state(dep_rec):
    return dep_rec["statuses"][-1]["state"] if dep_rec["statuses"] else None


def repos_create_deployment(ctx):
    b = ctx.body
    ref = b["ref"]
    sha = ref if SHA_RE.match(ref) else fake_sha(ctx.full, ref)
    if "required_contexts" not in b:
        # GitHub verifies every status context of the commit (check runs included) unless
        # required_contexts is given; the pending check of the running job makes it fail.
        contexts = []
        for rec in ctx.fake.check_runs.values():
            run = rec["run"]
            if rec["repo"] == ctx.full and run["head_sha"] == sha:
                if run["status"] != "completed":
                    state = "pending"
                elif run["conclusion"] in ("success", "neutral"):
                    state = "success"
                else:
                    state = run["conclusion"]
                contexts.append({"context": run["name"], "state": state})
        if any(c["state"] != "success" for c in contexts):
            raise GHError(
                409,
                f"Conflict: Commit status checks failed for {ref}.",
                errors=[{"contexts": contexts, "resource": "Deployment", "field": "required_contexts", "code": "invalid"}],
            )
    now = now_ts()
    ident = next(ctx.fake.ids["deployment"])
    env = b.get("environment", "production")
    url = f"{ctx.api_repo}/deployments/{ident}"
    dep = ctx.from_template(ctx.tpl.deployment)
    dep.update(
        url=url,
        id=ident,
        node_id=node_id("Deployment", ident),
        sha=sha,
        ref=ref,
        task=b.get("task", "deploy"),
        payload=b.get("payload", {}),
        original_environment=env,
        environment=env,
        description=b.get("description", ""),
        creator=copy.deepcopy(ctx.tpl.bot),
        created_at=now,
        updated_at=now,
        statuses_url=f"{url}/statuses",
        repository_url=ctx.api_repo,
        transient_environment=b.get("transient_environment", False),
        production_environment=b.get("production_environment", env == "production"),
        performed_via_github_app=copy.deepcopy(ctx.tpl.app),
    )
    ctx.fake.deployments[ident] = {"repo": ctx.full, "deployment": dep, "statuses": []}
    return Reply(201, copy.deepcopy(dep), {"Location": url})


def repos_list_deployments(ctx):
    deps = [r["deployment"] for r in ctx.fake.deployments.values() if r["repo"] == ctx.full]
    for key in ("sha", "ref", "task", "environment"):
        val = ctx.q.get(key)
        if val is not None and val != "none":
            deps = [d for d in deps if d.get(key) == val]
    deps.sort(key=lambda d: d["id"], reverse=True)
    items, headers = ctx.page(deps)
    return Reply(200, items, headers)


def _dep_record(ctx):
    rec = ctx.fake.deployments.get(ctx.p["deployment_id"])
    if rec is None or rec["repo"] != ctx.full:
        raise ctx.not_found()
    return rec


def _new_status(ctx, dep_rec, state, description="", environment=None, target_url="", log_url="", environment_url=""):
    dep = dep_rec["deployment"]
    ident = next(ctx.fake.ids["status"])
    now = now_ts()
    st = ctx.from_template(ctx.tpl.status)
    st.update(
        url=f"{dep['url']}/statuses/{ident}",
        id=ident,
        node_id=node_id("DeploymentStatus", ident),
        state=state,
        creator=copy.deepcopy(ctx.tpl.bot),
        description=description,
        environment=environment or dep["environment"],
        target_url=target_url,
        created_at=now,
        updated_at=now,
        deployment_url=dep["url"],
        repository_url=dep["repository_url"],
        environment_url=environment_url,
        log_url=log_url,
        performed_via_github_app=copy.deepcopy(ctx.tpl.app),
    )
    dep_rec["statuses"].append(st)
    dep["updated_at"] = now
    return st


def repos_create_deployment_status(ctx):
    rec = _dep_record(ctx)
    b = ctx.body
    dep = rec["deployment"]
    log_url = b.get("log_url", b.get("target_url", ""))
    target_url = b.get("target_url", log_url)  # setting log_url sets target_url too
    env = b.get("environment") or dep["environment"]
    if env != dep["environment"]:
        dep["environment"] = env
    st = _new_status(
        ctx,
        rec,
        b["state"],
        description=b.get("description", ""),
        environment=env,
        target_url=target_url,
        log_url=log_url,
        environment_url=b.get("environment_url", ""),
    )
    if b["state"] == "success" and b.get("auto_inactive", True):
        # "Adds a new inactive status to all prior non-transient, non-production environment
        # deployments with the same repository and environment name ... that had a success state."
        for other in ctx.fake.deployments.values():
            od = other["deployment"]
            if (
                other is not rec
                and other["repo"] == ctx.full
                and od["id"] < dep["id"]
                and od["environment"] == env
                and not od.get("transient_environment")
                and not od.get("production_environment")
                and _latest_state(other) == "success"
            ):
                _new_status(ctx, other, "inactive", environment=env)
    return Reply(201, copy.deepcopy(st), {"Location": st["url"]})


def repos_list_deployment_statuses(ctx):
    rec = _dep_record(ctx)
    items, headers = ctx.page(list(reversed(rec["statuses"])))
    return Reply(200, items, headers)


def _check_comment_body(ctx, body):
    if len(body) > COMMENT_BODY_MAX:
        raise GHError(
            422,
            "Validation Failed",
            errors=[
                {
                    "resource": "IssueComment",
                    "code": "custom",
                    "field": "body",
                    "message": f"body is too long (maximum is {COMMENT_BODY_MAX} characters)",
                }
            ],
            violation=("semantic", "body", f"comment body has {len(body)} characters (GitHub's maximum is {COMMENT_BODY_MAX})"),
        )


def issues_create_comment(ctx):
    _check_comment_body(ctx, ctx.body["body"])
    n = ctx.p["issue_number"]
    ident = next(ctx.fake.ids["comment"])
    now = now_ts()
    c = ctx.from_template(ctx.tpl.comment)
    url = f"{ctx.api_repo}/issues/comments/{ident}"
    c.update(
        id=ident,
        node_id=node_id("IssueComment", ident),
        url=url,
        html_url=f"{ctx.html_repo}/issues/{n}#issuecomment-{ident}",
        body=ctx.body["body"],
        user=copy.deepcopy(ctx.tpl.bot),
        created_at=now,
        updated_at=now,
        issue_url=f"{ctx.api_repo}/issues/{n}",
        author_association="NONE",
    )
    if "reactions" in c:
        c["reactions"] = {k: (0 if isinstance(v, int) else v) for k, v in c["reactions"].items()}
        c["reactions"]["url"] = f"{url}/reactions"
    ctx.fake.comments[ident] = {"repo": ctx.full, "issue_number": n, "comment": c}
    return Reply(201, copy.deepcopy(c), {"Location": url})


def issues_update_comment(ctx):
    rec = ctx.fake.comments.get(ctx.p["comment_id"])
    if rec is None or rec["repo"] != ctx.full:
        raise ctx.not_found()
    _check_comment_body(ctx, ctx.body["body"])
    rec["comment"]["body"] = ctx.body["body"]
    rec["comment"]["updated_at"] = now_ts()
    return Reply(200, copy.deepcopy(rec["comment"]))


def issues_list_comments(ctx):
    n = ctx.p["issue_number"]
    items = [r["comment"] for r in ctx.fake.comments.values() if r["repo"] == ctx.full and r["issue_number"] == n]
    since = ctx.q.get("since")
    if since:
        since = norm_ts(since)
        items = [c for c in items if c["updated_at"] >= since]
    items.sort(key=lambda c: c["id"])
    page, headers = ctx.page(items)
    return Reply(200, page, headers)


def repos_list_pulls_for_commit(ctx):
    sha = ctx.p["commit_sha"]
    items = []
    for pr in ctx.fake.pulls:
        if pr["repository"] != ctx.full:
            continue
        if sha not in (pr["head_sha"], pr["merge_commit_sha"]) and sha not in pr["commits"]:
            continue
        p = ctx.from_template(ctx.tpl.pull)
        n = pr["number"]
        ident = int(fake_sha("pull", ctx.full, n)[:8], 16)
        p.update(
            id=ident,
            node_id=node_id("PullRequest", ident),
            number=n,
            state=pr["state"],
            url=f"{ctx.api_repo}/pulls/{n}",
            html_url=f"{ctx.html_repo}/pull/{n}",
            issue_url=f"{ctx.api_repo}/issues/{n}",
            comments_url=f"{ctx.api_repo}/issues/{n}/comments",
            merge_commit_sha=pr["merge_commit_sha"],
            requested_teams=[],
        )
        p["head"]["sha"] = pr["head_sha"]
        items.append(p)
    page, headers = ctx.page(items)
    return Reply(200, page, headers)


def repos_create_commit_comment(ctx):
    _check_comment_body(ctx, ctx.body["body"])
    sha = ctx.p["commit_sha"]
    if not SHA_RE.match(sha):
        raise GHError(422, "Validation Failed", errors=[{"resource": "CommitComment", "code": "invalid", "field": "commit_id"}])
    ident = next(ctx.fake.ids["commit_comment"])
    now = now_ts()
    c = ctx.from_template(ctx.tpl.commit_comment)
    url = f"{ctx.api_repo}/comments/{ident}"
    c.update(
        id=ident,
        node_id=node_id("CommitComment", ident),
        url=url,
        html_url=f"{ctx.html_repo}/commit/{sha}#commitcomment-{ident}",
        body=ctx.body["body"],
        commit_id=sha,
        path=ctx.body.get("path"),
        position=ctx.body.get("position"),
        line=ctx.body.get("line"),
        user=copy.deepcopy(ctx.tpl.bot),
        created_at=now,
        updated_at=now,
        author_association="NONE",
    )
    if "reactions" in c:
        c["reactions"] = {k: (0 if isinstance(v, int) else v) for k, v in c["reactions"].items()}
        c["reactions"]["url"] = f"{url}/reactions"
    ctx.fake.commit_comments[ident] = {"repo": ctx.full, "comment": c}
    return Reply(201, copy.deepcopy(c), {"Location": url})


def repos_update_commit_comment(ctx):
    rec = ctx.fake.commit_comments.get(ctx.p["comment_id"])
    if rec is None or rec["repo"] != ctx.full:
        raise ctx.not_found()
    _check_comment_body(ctx, ctx.body["body"])
    rec["comment"]["body"] = ctx.body["body"]
    rec["comment"]["updated_at"] = now_ts()
    return Reply(200, copy.deepcopy(rec["comment"]))


def repos_list_comments_for_commit(ctx):
    sha = ctx.p["commit_sha"]
    items = [r["comment"] for r in ctx.fake.commit_comments.values() if r["repo"] == ctx.full and r["comment"]["commit_id"] == sha]
    items.sort(key=lambda c: c["id"])
    page, headers = ctx.page(items)
    return Reply(200, page, headers)


def repos_get(ctx):
    r = ctx.from_template(ctx.tpl.repo)
    ex = example_repo(ctx.tpl.repo) or ("octocat", "Hello-World")
    r = rewrite(
        r,
        [
            (f"{ex[0]}/{ex[1]}", ctx.full),  # git_url, ssh_url, svn_url, mirror_url ...
            (f"/users/{ex[0]}", f"/users/{ctx.owner}"),
            (f"https://github.com/{ex[0]}", f"https://github.com/{ctx.owner}"),
        ],
    )
    ident = int(fake_sha("repo", ctx.full)[:7], 16)
    r.update(id=ident, node_id=node_id("Repository", ident), name=ctx.repo, full_name=ctx.full, default_branch="main")
    r["owner"]["login"] = ctx.owner
    return Reply(200, r)


def repos_create_dispatch_event(ctx):
    payload = ctx.body.get("client_payload")
    if payload is not None:
        # Documented: "The total size of the JSON payload must be less than 64KB."
        size = len(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
        if size >= 64 * 1024:
            raise GHError(
                422,
                "Invalid request.\n\nclient_payload is too large.",
                violation=("semantic", "body", f"client_payload is {size} bytes: GitHub takes less than 64KB"),
            )
    ctx.fake.dispatches.append(
        {"repository": ctx.full, "event_type": ctx.body["event_type"], "client_payload": payload or {}}
    )
    return Reply(204, "")


def meta_root(ctx):
    return Reply(200, ctx.from_template(ctx.tpl.root))


# -- contents, backed by a real git repository (gitrepo.py) -----------------


def _contents_entry(ctx, path, blob, size, ref):
    api = f"{ctx.api_repo}/contents/{urllib.parse.quote(path)}"
    html = f"{ctx.html_repo}/blob/{ref}/{path}"
    git_url = f"{ctx.api_repo}/git/blobs/{blob}"
    return {
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "sha": blob,
        "size": size,
        "url": f"{api}?ref={ref}",
        "html_url": html,
        "git_url": git_url,
        "download_url": f"https://raw.githubusercontent.com/{ctx.full}/{ref}/{path}",
        "type": "file",
        "_links": {"self": f"{api}?ref={ref}", "git": git_url, "html": html},
    }


def _repo_or_404(ctx):
    if ctx.fake.git.gitdir(ctx.full) is None:
        raise ctx.not_found()


def repos_get_content(ctx):
    _repo_or_404(ctx)
    ref = ctx.q.get("ref") or "main"
    found = ctx.fake.git.read(ctx.full, ref, ctx.p["path"])
    if found is None:
        raise ctx.not_found()
    if found[0] == "tree":
        # mlcd reads files only; a directory listing is not served by this fake
        raise GHError(404, "Not Found", violation=("semantic", "path", f"{ctx.p['path']} is a directory"))
    blob, data = found
    entry = _contents_entry(ctx, ctx.p["path"], blob, len(data), ref)
    entry.update(encoding="base64", content=gitrepo.b64(data))
    return Reply(200, entry)


def repos_create_or_update_file_contents(ctx):
    _repo_or_404(ctx)
    branch = ctx.body.get("branch") or "main"
    path = ctx.p["path"]
    repos = ctx.fake.git
    if repos.head(ctx.full, branch) is None:
        raise GHError(404, f"Branch {branch} not found")
    repos.run_races(ctx.full, branch)
    try:
        data = base64.b64decode(ctx.body["content"], validate=True)
    except (ValueError, TypeError):
        raise GHError(422, "content is not valid Base64", violation=("semantic", "body", "content is not Base64"))
    current = repos.read(ctx.full, branch, path)
    given = ctx.body.get("sha")
    if current is not None and current[0] == "tree":
        raise GHError(422, f"{path} is a directory")
    if current is not None and given is None:
        raise GHError(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
    if current is not None and given != current[0]:
        raise GHError(409, f"{path} does not match {given}")
    if current is None and given is not None:
        raise GHError(409, f"{path} does not match {given}")
    try:
        commit, tree, blob, parent = repos.write(ctx.full, branch, path, data, ctx.body["message"])
    except gitrepo.GitError as e:  # the branch moved between our read and update-ref
        raise GHError(409, f"reference update failed: {e}")
    who = {"date": now_ts(), "name": gitrepo.BOT[0], "email": gitrepo.BOT[1]}
    commit_obj = {
        "sha": commit,
        "node_id": node_id("Commit", commit),
        "url": f"{ctx.api_repo}/git/commits/{commit}",
        "html_url": f"{ctx.html_repo}/commit/{commit}",
        "author": who,
        "committer": dict(who),
        "message": ctx.body["message"],
        "tree": {"url": f"{ctx.api_repo}/git/trees/{tree}", "sha": tree},
        "parents": [
            {"url": f"{ctx.api_repo}/git/commits/{parent}", "html_url": f"{ctx.html_repo}/commit/{parent}", "sha": parent}
        ]
        if parent
        else [],
        "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None, "verified_at": None},
    }
    body = {"content": _contents_entry(ctx, path, blob, len(data), branch), "commit": commit_obj}
    return Reply(201 if current is None else 200, body)


def repos_compare_commits(ctx):
    """base...head from the real repository: status, ahead_by/behind_by, the
    commits head has beyond base (up to per_page, each built on the documented
    example), and the documented example's other fields."""
    _repo_or_404(ctx)
    gd = ctx.fake.git.gitdir(ctx.full)
    base, head = ctx.p["base"], ctx.p["head"]
    try:
        base_sha = gitrepo.git(gd, "rev-parse", "--verify", f"{base}^{{commit}}").decode().strip()
        head_sha = gitrepo.git(gd, "rev-parse", "--verify", f"{head}^{{commit}}").decode().strip()
    except gitrepo.GitError:
        raise ctx.not_found()
    merge_base = gitrepo.git(gd, "merge-base", base_sha, head_sha).decode().strip()
    ahead = gitrepo.git(gd, "rev-list", f"{base_sha}..{head_sha}").decode().split()
    behind = int(gitrepo.git(gd, "rev-list", "--count", f"{head_sha}..{base_sha}").decode())
    status = "identical" if not ahead and not behind else "ahead" if not behind else "behind" if not ahead else "diverged"
    body = ctx.from_template(ctx.op.example(200))
    ex_sha = body["base_commit"]["sha"]

    def commit_like(template, sha):
        c = rewrite(copy.deepcopy(template), [(template["sha"], sha)])
        c["sha"] = sha
        return c

    per_page = ctx.q.get("per_page", 250) if isinstance(ctx.q.get("per_page", 250), int) else 250
    template = body["commits"][0] if body["commits"] else body["base_commit"]
    body.update(
        url=f"{ctx.api_repo}/compare/{base}...{head}",
        html_url=f"{ctx.html_repo}/compare/{base}...{head}",
        permalink_url=f"{ctx.html_repo}/compare/{ctx.owner}:{base_sha[:7]}...{ctx.owner}:{head_sha[:7]}",
        diff_url=f"{ctx.html_repo}/compare/{base}...{head}.diff",
        patch_url=f"{ctx.html_repo}/compare/{base}...{head}.patch",
        base_commit=commit_like(body["base_commit"], base_sha),
        merge_base_commit=commit_like(body["merge_base_commit"], merge_base),
        status=status,
        ahead_by=len(ahead),
        behind_by=behind,
        total_commits=len(ahead),
        commits=[commit_like(template, c) for c in reversed(ahead)][:per_page],
        files=[],
    )
    del ex_sha
    return Reply(200, body)


# -- refs and pull requests on the real repository (GitOps pull-request mode) --


def _ref_body(ctx, ref, sha):
    body = ctx.from_template(ctx.tpl.git_ref)
    body.update(
        ref=ref,
        node_id=node_id("Ref", f"{ctx.full}:{ref}"),
        url=f"{ctx.api_repo}/git/{ref}",
        object={"type": "commit", "sha": sha, "url": f"{ctx.api_repo}/git/commits/{sha}"},
    )
    return body


def _branch_ref(ctx, ref):
    """refs/heads/<branch> for the `ref` path parameter (`heads/<branch>`)."""
    if not ref.startswith("heads/"):
        raise GHError(422, f"Reference does not exist", violation=("semantic", "path", f"mlcd's refs are branches (heads/…), not {ref}"))
    return "refs/" + ref


def git_get_ref(ctx):
    _repo_or_404(ctx)
    ref = _branch_ref(ctx, ctx.p["ref"])
    sha = ctx.fake.git.resolve(ctx.full, ref)
    if sha is None:
        raise ctx.not_found()
    return Reply(200, _ref_body(ctx, ref, sha))


def git_create_ref(ctx):
    _repo_or_404(ctx)
    ref, sha = ctx.body["ref"], ctx.body["sha"]
    if not ref.startswith("refs/") or ref.count("/") < 2:
        raise GHError(422, "Reference name must start with 'refs/' and have at least two slashes.")
    if ctx.fake.git.resolve(ctx.full, sha) != sha:
        raise GHError(422, "Object does not exist")
    try:
        ctx.fake.git.set_ref(ctx.full, ref, sha, "")
    except gitrepo.GitError:
        raise GHError(422, "Reference already exists")
    return Reply(201, _ref_body(ctx, ref, sha), {"Location": f"{ctx.api_repo}/git/{ref}"})


def git_update_ref(ctx):
    _repo_or_404(ctx)
    ref = _branch_ref(ctx, ctx.p["ref"])
    repos = ctx.fake.git
    old = repos.resolve(ctx.full, ref)
    if old is None:
        raise GHError(422, "Reference does not exist")
    sha = ctx.body["sha"]
    if repos.resolve(ctx.full, sha) != sha:
        raise GHError(422, "Object does not exist")
    if not ctx.body.get("force") and not repos.is_ancestor(ctx.full, old, sha):
        raise GHError(422, "Update is not a fast forward")
    try:
        repos.set_ref(ctx.full, ref, sha, old)
    except gitrepo.GitError as e:
        raise GHError(409, f"reference update failed: {e}")
    return Reply(200, _ref_body(ctx, ref, sha))


def git_delete_ref(ctx):
    _repo_or_404(ctx)
    ref = _branch_ref(ctx, ctx.p["ref"])
    if ctx.fake.git.resolve(ctx.full, ref) is None:
        raise GHError(422, "Reference does not exist")
    ctx.fake.git.delete_ref(ctx.full, ref)
    return Reply(204, "")


def _pull_body(ctx, pr, template):
    """A pull request as GitHub shows it, built on the documented example."""
    p = ctx.from_template(template)
    n = pr["number"]
    ident = int(fake_sha("pull", ctx.full, n)[:8], 16)
    repos = ctx.fake.git
    head_sha = repos.resolve(ctx.full, f"refs/heads/{pr['head_ref']}") or pr["head_sha"]
    base_sha = repos.resolve(ctx.full, f"refs/heads/{pr['base_ref']}")
    p.update(
        id=ident,
        node_id=node_id("PullRequest", ident),
        number=n,
        state=pr["state"],
        title=pr["title"],
        body=pr["body"],
        url=f"{ctx.api_repo}/pulls/{n}",
        html_url=f"{ctx.html_repo}/pull/{n}",
        diff_url=f"{ctx.html_repo}/pull/{n}.diff",
        patch_url=f"{ctx.html_repo}/pull/{n}.patch",
        issue_url=f"{ctx.api_repo}/issues/{n}",
        comments_url=f"{ctx.api_repo}/issues/{n}/comments",
        commits_url=f"{ctx.api_repo}/pulls/{n}/commits",
        review_comments_url=f"{ctx.api_repo}/pulls/{n}/comments",
        statuses_url=f"{ctx.api_repo}/statuses/{head_sha}",
        merge_commit_sha=pr["merge_commit_sha"],
        merged_at=pr.get("merged_at"),
        closed_at=pr.get("merged_at"),
        requested_teams=[],
        requested_reviewers=[],
        assignees=[],
        labels=[],
        milestone=None,
        draft=False,
        user=copy.deepcopy(ctx.tpl.bot),
    )
    for key, ref, sha in (("head", pr["head_ref"], head_sha), ("base", pr["base_ref"], base_sha)):
        p[key].update(ref=ref, sha=sha, label=f"{ctx.owner}:{ref}", user=copy.deepcopy(ctx.tpl.bot))
    if "merged" in p:
        p["merged"] = pr["state"] == "closed" and pr["merge_commit_sha"] is not None
    if "mergeable" in p:
        p["mergeable"] = pr["state"] == "open"
    if "merged_by" in p:
        p["merged_by"] = copy.deepcopy(ctx.tpl.bot) if p.get("merged") else None
    return p


def _pulls_of(ctx):
    return [pr for pr in ctx.fake.pulls if pr["repository"] == ctx.full and "head_ref" in pr]


def _pull_or_404(ctx):
    for pr in _pulls_of(ctx):
        if pr["number"] == ctx.p["pull_number"]:
            return pr
    raise ctx.not_found()


def pulls_list(ctx):
    _repo_or_404(ctx)
    state = ctx.q.get("state", "open")
    head, base = ctx.q.get("head"), ctx.q.get("base")
    items = []
    for pr in _pulls_of(ctx):
        if state != "all" and pr["state"] != state:
            continue
        if head is not None:
            owner, _, ref = head.partition(":")
            if not ref or owner != ctx.owner or ref != pr["head_ref"]:
                continue
        if base is not None and base != pr["base_ref"]:
            continue
        items.append(_pull_body(ctx, pr, ctx.tpl.pull_simple))
    items.sort(key=lambda p: -p["number"])
    page, headers = ctx.page(items)
    return Reply(200, page, headers)


def pulls_create(ctx):
    _repo_or_404(ctx)
    repos = ctx.fake.git
    head, base = ctx.body["head"], ctx.body["base"]
    if ":" in head:
        owner, _, head = head.partition(":")
        if owner != ctx.owner:
            raise GHError(422, "Validation Failed", [{"resource": "PullRequest", "field": "head", "code": "invalid"}])
    head_sha = repos.resolve(ctx.full, f"refs/heads/{head}")
    base_sha = repos.resolve(ctx.full, f"refs/heads/{base}")
    if head_sha is None or base_sha is None:
        field = "head" if head_sha is None else "base"
        raise GHError(422, "Validation Failed", [{"resource": "PullRequest", "field": field, "code": "invalid"}])
    for pr in _pulls_of(ctx):
        if pr["state"] == "open" and pr["head_ref"] == head and pr["base_ref"] == base:
            raise GHError(422, "Validation Failed", [{"resource": "PullRequest", "code": "custom", "message": f"A pull request already exists for {ctx.owner}:{head}."}])
    if repos.is_ancestor(ctx.full, head_sha, base_sha):
        raise GHError(422, "Validation Failed", [{"resource": "PullRequest", "code": "custom", "message": f"No commits between {base} and {head}"}])
    if not ctx.body.get("title"):
        raise GHError(422, "Validation Failed", [{"resource": "PullRequest", "field": "title", "code": "missing_field"}])
    number = 1 + max([p["number"] for p in ctx.fake.pulls if p["repository"] == ctx.full] or [0])
    pr = {
        "repository": ctx.full,
        "number": number,
        "head_sha": head_sha,
        "commits": [],
        "state": "open",
        "merge_commit_sha": None,
        "head_ref": head,
        "base_ref": base,
        "title": ctx.body["title"],
        "body": ctx.body.get("body"),
    }
    ctx.fake.pulls.append(pr)
    return Reply(201, _pull_body(ctx, pr, ctx.tpl.pull_full), {"Location": f"{ctx.api_repo}/pulls/{number}"})


def pulls_update(ctx):
    _repo_or_404(ctx)
    pr = _pull_or_404(ctx)
    for key in ("title", "body"):
        if key in ctx.body:
            pr[key] = ctx.body[key]
    if ctx.body.get("state") in ("open", "closed") and pr["merge_commit_sha"] is None:
        pr["state"] = ctx.body["state"]
    if "base" in ctx.body:
        pr["base_ref"] = ctx.body["base"]
    return Reply(200, _pull_body(ctx, pr, ctx.tpl.pull_full))


def pulls_merge(ctx):
    """GitHub's default merge: a merge commit of the head branch into the base."""
    _repo_or_404(ctx)
    pr = _pull_or_404(ctx)
    body = ctx.body or {}
    if pr["state"] != "open":
        raise GHError(405, "Pull Request is not mergeable")
    if body.get("merge_method", "merge") != "merge":
        raise GHError(405, "this fake merges with merge commits only", violation=("semantic", "body", "merge_method other than merge"))
    repos = ctx.fake.git
    head_sha = repos.resolve(ctx.full, f"refs/heads/{pr['head_ref']}")
    if body.get("sha") and body["sha"] != head_sha:
        raise GHError(409, "Head branch was modified. Review and try the merge again.")
    title = body.get("commit_title") or f"Merge pull request #{pr['number']} from {ctx.owner}/{pr['head_ref']}"
    message = f"{title}\n\n{body.get('commit_message') or pr['title']}\n"
    sha = repos.merge(ctx.full, pr["base_ref"], head_sha, message)
    if sha is None:
        raise GHError(405, "Pull Request is not mergeable")
    pr.update(state="closed", merge_commit_sha=sha, head_sha=head_sha, merged_at=now_ts())
    return Reply(200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"})


HANDLERS = {
    "checks/create": checks_create,
    "checks/update": checks_update,
    "checks/get": checks_get,
    "checks/list-annotations": checks_list_annotations,
    "repos/create-deployment": repos_create_deployment,
    "repos/list-deployments": repos_list_deployments,
    "repos/create-deployment-status": repos_create_deployment_status,
    "repos/list-deployment-statuses": repos_list_deployment_statuses,
    "issues/create-comment": issues_create_comment,
    "issues/update-comment": issues_update_comment,
    "issues/list-comments": issues_list_comments,
    "repos/list-pull-requests-associated-with-commit": repos_list_pulls_for_commit,
    "repos/list-comments-for-commit": repos_list_comments_for_commit,
    "repos/create-commit-comment": repos_create_commit_comment,
    "repos/update-commit-comment": repos_update_commit_comment,
    "repos/get": repos_get,
    "repos/create-dispatch-event": repos_create_dispatch_event,
    "meta/root": meta_root,
    "repos/get-content": repos_get_content,
    "repos/create-or-update-file-contents": repos_create_or_update_file_contents,
    "repos/compare-commits": repos_compare_commits,
    "git/get-ref": git_get_ref,
    "git/create-ref": git_create_ref,
    "git/update-ref": git_update_ref,
    "git/delete-ref": git_delete_ref,
    "pulls/list": pulls_list,
    "pulls/create": pulls_create,
    "pulls/update": pulls_update,
    "pulls/merge": pulls_merge,
}


# ---------------------------------------------------------------------------
# HTTP


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"
    sys_version = ""

    def log_message(self, fmt, *args):  # the fake logs each request itself
        pass

    def version_string(self):
        return self.server_version

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status, body, headers=None):
        if status == 204:
            self.send_response(status)
            for k, v in (headers or {}).items():
                if k != "Content-Type":
                    self.send_header(k, v)
            self.end_headers()
            return
        if isinstance(body, str):
            data = body.encode("utf-8")
            ctype = "text/plain; charset=utf-8"
        else:
            data = (json.dumps(body, indent=2) + "\n").encode("utf-8")
            ctype = "application/json; charset=utf-8"
        headers = dict(headers or {})
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", ctype))
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _base(self):
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        return f"http://{host}"

    def _any(self):
        fake = self.server.fake
        try:
            raw = self._read_body()
        except (ValueError, OSError):
            self._send(400, {"message": "Problems parsing JSON", "documentation_url": DOCS})
            return
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/_fake/"):
            self._control(fake, path, raw)
            return
        reply, rec = fake.handle(self.command, self.path, self.headers, raw, self._base())
        reset = int(datetime.datetime.now(datetime.timezone.utc).timestamp()) + 3600
        headers = {
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Api-Version-Selected": self.headers.get("X-GitHub-Api-Version") or "2022-11-28",
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": str(max(0, 5000 - fake.used)),
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Used": str(min(5000, fake.used)),
            "X-RateLimit-Resource": "core",
            "X-GitHub-Request-Id": "FAKE:%08X" % rec["seq"],
        }
        headers.update(reply.headers)
        self._send(reply.status, reply.body, headers)

    def _control(self, fake, path, raw):
        method = self.command
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError as e:
            self._send(400, {"message": f"control body is not JSON: {e}"})
            return
        with fake.lock:
            if method == "GET" and path == "/_fake/requests":
                self._send(200, copy.deepcopy(fake.requests))
            elif method == "GET" and path == "/_fake/violations":
                self._send(200, copy.deepcopy(fake.violations))
            elif method == "GET" and path == "/_fake/state":
                self._send(200, fake.state())
            elif method == "GET" and path == "/_fake/health":
                self._send(200, {"ok": True, "spec": fake.spec.source})
            elif method == "POST" and path == "/_fake/reset":
                fake.reset()
                log.info("reset")
                self._send(200, {"ok": True})
            elif method == "GET" and path == "/_fake/git":
                self._send(200, dict(fake.git.repos))
            elif method == "POST" and path == "/_fake/git/init":
                try:
                    out = fake.git.init(body["repo"], body["dir"], body.get("branch", "main"))
                except (KeyError, gitrepo.GitError, subprocess.CalledProcessError) as e:
                    self._send(400, {"message": f"git init: {e}"})
                    return
                self._send(200, out)
            elif method == "POST" and path == "/_fake/git/race":
                fake.git.race(body["repo"], body)
                self._send(200, {"ok": True})
            elif method == "POST" and path == "/_fake/pulls":
                try:
                    pr = fake.add_pull(body)
                except (ValueError, TypeError) as e:
                    self._send(400, {"message": str(e)})
                    return
                self._send(200, {"ok": True, "pull": pr})
            elif method == "POST" and path == "/_fake/deny":
                try:
                    denials = fake.deny(body)
                except (ValueError, TypeError) as e:
                    self._send(400, {"message": str(e)})
                    return
                log.info("denials now: %s", denials)
                self._send(200, {"ok": True, "denials": copy.deepcopy(denials)})
            else:
                self._send(404, {"message": f"unknown control endpoint {method} {path}"})

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake GitHub REST API validated against GitHub's OpenAPI description.")
    ap.add_argument("--spec", default=DEFAULT_SPEC, help="OpenAPI subset (default: %(default)s)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--quiet", action="store_true", help="log only violations and errors")
    args = ap.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING if args.quiet else logging.INFO,
        format="fake-github %(levelname)s %(message)s",
    )

    spec = Spec(args.spec)
    fake = Fake(spec)
    src = spec.source
    log.info(
        "spec %s: OpenAPI %s, %s@%s, %d operations, validator %s",
        args.spec, spec.version, src.get("package", "?"), src.get("version", "?"), len(spec.ops), spec.validator_name,
    )
    if fake.tpl.gaps:
        log.info("fields the documented examples lack (filled with neutral values): %s", ", ".join(fake.tpl.gaps))

    server = Server((args.host, args.port), Handler)
    server.fake = fake
    host, port = server.server_address[:2]
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    print(f"LISTENING http://{host}:{port}", flush=True)
    while not stop.wait(0.5):
        pass
    log.info("stopping")
    server.shutdown()
    server.server_close()
    fake.git.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
