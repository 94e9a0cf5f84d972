"""Tests of the fake GitHub (tests/fake_github/server.py).

Run from the repository root:
    python3 -m unittest discover -s tests/fake_github -v

The server runs as a subprocess on port 0, exactly as mlcd's tests start it.
"""

import base64
import http.client
import json
import os
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SERVER = os.path.join(HERE, "server.py")
SPEC = os.path.join(ROOT, "fixtures", "github", "openapi-subset.json")
TOKEN = "ghs_SECRETtokenVALUE123"
SHA = "3484a3fb816e0859fd6e1cea078d76385ff50625"
OTHER_SHA = "5779607b49aab1200488439f02372c57b4f75444"


def annotation(i):
    return {
        "path": "mlcd.yml",
        "start_line": i + 1,
        "end_line": i + 1,
        "annotation_level": "warning",
        "message": f"problem {i}",
        "title": "config",
    }


class FakeGitHubTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(SPEC, encoding="utf-8") as f:
            cls.spec = json.load(f)
        cls.stderr = tempfile.TemporaryFile()
        cls.proc = subprocess.Popen(
            [sys.executable, SERVER, "--spec", SPEC, "--port", "0"],
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

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()  # SIGTERM
        try:
            rc = cls.proc.wait(timeout=10)
        finally:
            if cls.proc.poll() is None:
                cls.proc.kill()
            cls.proc.stdout.close()
            cls.stderr.close()
        assert rc == 0, f"server exit code on SIGTERM: {rc}"

    def setUp(self):
        status, _, _ = self.call("POST", "/_fake/reset", auth=False)
        self.assertEqual(status, 200)

    # -- helpers ---------------------------------------------------------------

    def call(self, method, path, body=None, auth=True, user_agent="mlcd-tests", raw=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if user_agent:
            headers["User-Agent"] = user_agent
        if auth is True:
            headers["Authorization"] = f"Bearer {TOKEN}"
        elif isinstance(auth, str):
            headers["Authorization"] = auth
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        conn.close()
        try:
            payload = json.loads(text) if text else None
        except json.JSONDecodeError:
            payload = text
        return resp.status, payload, hdrs

    def violations(self):
        return self.call("GET", "/_fake/violations", auth=False)[1]

    def requests(self):
        return self.call("GET", "/_fake/requests", auth=False)[1]

    def state(self):
        return self.call("GET", "/_fake/state", auth=False)[1]

    def create_run(self, **extra):
        body = {"name": "mlcd / build", "head_sha": SHA, "status": "in_progress"}
        body.update(extra)
        status, run, hdrs = self.call("POST", "/repos/o/r/check-runs", body)
        self.assertEqual(status, 201, run)
        return run, hdrs

    def response_schema(self, path, method, code):
        return self.spec["paths"][path][method]["responses"][str(code)]["content"]["application/json"]["schema"]

    # -- tests -------------------------------------------------------------------

    def test_create_check_run(self):
        run, hdrs = self.create_run(external_id="build-1", details_url="https://example.com/log")
        self.assertIsInstance(run["id"], int)
        self.assertEqual(run["status"], "in_progress")
        self.assertIsNone(run["conclusion"])
        self.assertEqual(run["head_sha"], SHA)
        self.assertEqual(run["name"], "mlcd / build")
        self.assertEqual(run["external_id"], "build-1")
        self.assertEqual(run["details_url"], "https://example.com/log")
        self.assertEqual(run["url"], f"{self.url}/repos/o/r/check-runs/{run['id']}")
        self.assertEqual(run["html_url"], f"https://github.com/o/r/runs/{run['id']}")
        self.assertTrue(run["started_at"].endswith("Z"))
        self.assertIsNone(run["completed_at"])
        self.assertEqual(run["output"]["annotations_count"], 0)
        self.assertEqual(run["output"]["annotations_url"], run["url"] + "/annotations")
        self.assertEqual(hdrs["location"], run["url"])
        self.assertEqual(hdrs["content-type"], "application/json; charset=utf-8")
        self.assertIn("x-ratelimit-remaining", hdrs)

        stored = self.state()["check_runs"]
        self.assertEqual(len(stored), 1)
        self.assertEqual(stored[0]["id"], run["id"])
        self.assertEqual(stored[0]["repository"], "o/r")
        self.assertEqual(stored[0]["annotations"], [])

        status, got, _ = self.call("GET", f"/repos/o/r/check-runs/{run['id']}")
        self.assertEqual(status, 200)
        self.assertEqual(got, run)
        self.assertEqual(self.violations(), [])

    def test_requests_are_recorded_without_the_token(self):
        self.create_run()
        self.call("GET", "/repos/o/r/check-runs/1001/annotations?per_page=100")
        reqs = self.requests()
        self.assertEqual(len(reqs), 2)
        first = reqs[0]
        for key in ("method", "path", "query", "operation_id", "body", "has_auth", "violations", "status", "headers", "seq"):
            self.assertIn(key, first)
        self.assertEqual(first["method"], "POST")
        self.assertEqual(first["path"], "/repos/o/r/check-runs")
        self.assertEqual(first["operation_id"], "checks/create")
        self.assertEqual(first["body"]["head_sha"], SHA)
        self.assertTrue(first["has_auth"])
        self.assertEqual(first["status"], 201)
        self.assertEqual(first["violations"], [])
        self.assertEqual(first["headers"]["x-github-api-version"], "2022-11-28")
        self.assertEqual(reqs[1]["query"], {"per_page": "100"})
        self.assertEqual(reqs[1]["operation_id"], "checks/list-annotations")
        self.assertNotIn(TOKEN, json.dumps(reqs))

    def test_sixty_annotations_over_two_updates(self):
        run, _ = self.create_run()
        path = f"/repos/o/r/check-runs/{run['id']}"
        status, upd, _ = self.call(
            "PATCH",
            path,
            {"output": {"title": "mlcd", "summary": "batch 1", "annotations": [annotation(i) for i in range(50)]}},
        )
        self.assertEqual(status, 200, upd)
        self.assertEqual(upd["output"]["annotations_count"], 50)
        self.assertEqual(upd["status"], "in_progress")
        status, upd, _ = self.call(
            "PATCH",
            path,
            {
                "status": "completed",
                "conclusion": "failure",
                "output": {"title": "mlcd", "summary": "2 gates failed", "annotations": [annotation(i) for i in range(50, 60)]},
            },
        )
        self.assertEqual(status, 200, upd)
        self.assertEqual(upd["output"]["annotations_count"], 60)
        self.assertEqual(upd["output"]["summary"], "2 gates failed")
        self.assertEqual(upd["status"], "completed")
        self.assertEqual(upd["conclusion"], "failure")
        self.assertIsNotNone(upd["completed_at"])

        stored = self.state()["check_runs"][0]
        self.assertEqual(len(stored["annotations"]), 60)
        self.assertEqual(stored["output"]["annotations_count"], 60)
        self.assertEqual([a["message"] for a in stored["annotations"]], [f"problem {i}" for i in range(60)])

        status, page1, hdrs = self.call("GET", f"{path}/annotations")  # default per_page 30
        self.assertEqual(status, 200)
        self.assertEqual(len(page1), 30)
        self.assertIn('rel="next"', hdrs["link"])
        self.assertIn('rel="last"', hdrs["link"])
        status, all_, hdrs = self.call("GET", f"{path}/annotations?per_page=100")
        self.assertEqual(len(all_), 60)
        self.assertNotIn("link", hdrs)
        self.assertEqual(all_[59]["blob_href"], f"https://github.com/o/r/blob/{SHA}/mlcd.yml")
        self.assertIsNone(all_[0]["start_column"])
        self.assertEqual(self.violations(), [])

    def test_more_than_fifty_annotations_in_one_request_is_invalid(self):
        run, _ = self.create_run()
        status, body, _ = self.call(
            "PATCH",
            f"/repos/o/r/check-runs/{run['id']}",
            {"output": {"summary": "s", "annotations": [annotation(i) for i in range(51)]}},
        )
        self.assertEqual(status, 422)
        [v] = self.violations()
        self.assertEqual(v["operation_id"], "checks/update")
        self.assertIn("maxItems", v["schema_path"])

    def test_wrong_type_in_body_is_422_and_a_violation(self):
        status, body, _ = self.call("POST", "/repos/o/r/check-runs", {"name": "x", "head_sha": SHA, "status": "bogus"})
        self.assertEqual(status, 422)
        self.assertTrue(body["message"].startswith("Invalid request.\n\n"), body)
        self.assertIn("bogus", body["message"])
        self.assertIn("documentation_url", body)
        [v] = self.violations()
        self.assertEqual(v["kind"], "request")
        self.assertEqual(v["operation_id"], "checks/create")
        self.assertEqual(v["location"], "body")
        self.assertEqual(v["schema_path"], "properties/status/enum")
        self.assertEqual(v["instance_path"], "/status")
        self.assertEqual(self.state()["check_runs"], [])
        [rec] = self.requests()
        self.assertEqual(rec["status"], 422)
        self.assertEqual(rec["violations"], [v])

        status, _, _ = self.call("POST", "/repos/o/r/check-runs", {"name": 7, "head_sha": SHA})
        self.assertEqual(status, 422)
        status, body, _ = self.call("POST", "/repos/o/r/check-runs", {"head_sha": SHA})
        self.assertEqual(status, 422)
        self.assertIn("\"name\" wasn't supplied", body["message"])
        status, body, _ = self.call("POST", "/repos/o/r/check-runs", raw=b"{not json")
        self.assertEqual(status, 400)
        self.assertEqual(body["message"], "Problems parsing JSON")

    def test_nullable_and_null_not_allowed(self):
        # `conclusion: null` is not allowed in a request (not nullable there)
        status, _, _ = self.call("POST", "/repos/o/r/check-runs", {"name": "x", "head_sha": SHA, "conclusion": None})
        self.assertEqual(status, 422)
        # ...while a deployment's description is nullable
        status, body, _ = self.call("POST", "/repos/o/r/deployments", {"ref": "main", "description": None, "required_contexts": []})
        self.assertEqual(status, 201, body)

    def test_missing_auth_is_401(self):
        status, body, _ = self.call("GET", "/repos/o/r", auth=False)
        self.assertEqual(status, 401)
        self.assertEqual(body["message"], "Bad credentials")
        status, _, _ = self.call("GET", "/repos/o/r", auth="Basic abc")
        self.assertEqual(status, 401)
        status, _, _ = self.call("GET", "/repos/o/r", auth="token abc")
        self.assertEqual(status, 200)
        reqs = self.requests()
        self.assertFalse(reqs[0]["has_auth"])
        self.assertEqual(reqs[0]["violations"][0]["kind"], "auth")

    def test_missing_user_agent_is_403(self):
        status, body, _ = self.call("GET", "/repos/o/r", user_agent=None)
        self.assertEqual(status, 403)
        self.assertIn("User-Agent", body)
        self.assertEqual(self.violations()[0]["kind"], "header")

    def test_unknown_operation_is_404_and_a_violation(self):
        status, body, _ = self.call("GET", "/repos/o/r/pulls/1")
        self.assertEqual(status, 404)
        self.assertEqual(body["message"], "Not Found")
        self.assertEqual(body["documentation_url"], "https://docs.github.com/rest")
        status, _, _ = self.call("DELETE", "/repos/o/r/check-runs/1")  # known path, unknown method
        self.assertEqual(status, 404)
        vs = self.violations()
        self.assertEqual(len(vs), 2)
        for v in vs:
            self.assertEqual(v["kind"], "unknown_operation")
            self.assertIn("operation not in the OpenAPI subset", v["message"])
            self.assertIsNone(v["operation_id"])

    def test_bad_path_and_query_parameters(self):
        status, _, _ = self.call("GET", "/repos/o/r/check-runs/abc")
        self.assertEqual(status, 404)
        status, body, _ = self.call("GET", "/repos/o/r/deployments?per_page=lots")
        self.assertEqual(status, 422)
        status, _, _ = self.call("GET", "/repos/o/r/deployments?perpage=5")  # ignored like GitHub, but flagged
        self.assertEqual(status, 200)
        vs = self.violations()
        self.assertEqual([v["location"] for v in vs], ["path", "query", "query"])
        self.assertEqual(vs[0]["schema_path"], "parameters/check_run_id/schema/type")
        # a check run that does not exist is a plain GitHub 404, not a contract violation
        status, body, _ = self.call("GET", "/repos/o/r/check-runs/999999")
        self.assertEqual(status, 404)
        self.assertEqual(len(self.violations()), 3)

    def test_deny_like_a_token_without_permission(self):
        status, body, _ = self.call(
            "POST",
            "/_fake/deny",
            {"path_prefix": "/repos/o/r/check-runs", "status": 403, "message": "Resource not accessible by integration"},
            auth=False,
        )
        self.assertEqual(status, 200, body)
        status, body, _ = self.call("POST", "/repos/o/r/check-runs", {"name": "x", "head_sha": SHA})
        self.assertEqual(status, 403)
        self.assertEqual(body["message"], "Resource not accessible by integration")
        self.assertEqual(body["documentation_url"], self.spec["paths"]["/repos/{owner}/{repo}/check-runs"]["post"]["externalDocs"]["url"])
        # still validated and recorded
        status, _, _ = self.call("POST", "/repos/o/r/check-runs", {"name": "x", "head_sha": SHA, "status": "bogus"})
        self.assertEqual(status, 403)
        reqs = self.requests()
        self.assertEqual([r["operation_id"] for r in reqs], ["checks/create", "checks/create"])
        self.assertEqual(len(reqs[1]["violations"]), 1)
        # other paths are not affected
        status, _, _ = self.call("POST", "/repos/o/r/issues/1/comments", {"body": "hi"})
        self.assertEqual(status, 201)
        # clear
        status, _, _ = self.call("POST", "/_fake/deny", {"clear": True}, auth=False)
        self.assertEqual(status, 200)
        self.create_run()
        # a denial limited to a method and a number of times
        self.call("POST", "/_fake/deny", {"path_prefix": "/repos/o/r/deployments", "method": "POST", "status": 500, "message": "Server Error", "times": 1}, auth=False)
        status, _, _ = self.call("GET", "/repos/o/r/deployments")
        self.assertEqual(status, 200)
        status, _, _ = self.call("POST", "/repos/o/r/deployments", {"ref": "main", "required_contexts": []})
        self.assertEqual(status, 500)
        status, _, _ = self.call("POST", "/repos/o/r/deployments", {"ref": "main", "required_contexts": []})
        self.assertEqual(status, 201)

    def test_responses_validate_against_the_documented_schemas(self):
        run, _ = self.create_run()
        status, done, _ = self.call(
            "PATCH",
            f"/repos/o/r/check-runs/{run['id']}",
            {"conclusion": "success", "output": {"title": "ok", "summary": "all good", "text": "details"}},
        )
        self.assertEqual(status, 200)
        self.assertEqual(done["status"], "completed")
        # checked here independently of the server, with the plain OAS 3.0 validator
        schema = self.response_schema("/repos/{owner}/{repo}/check-runs/{check_run_id}", "get", 200)
        errors = list(OAS30ReadValidator(schema, format_checker=oas30_format_checker).iter_errors(done))
        self.assertEqual(errors, [])

        status, dep, _ = self.call("POST", "/repos/o/r/deployments", {"ref": SHA, "environment": "staging", "payload": {"model": "m"}})
        self.assertEqual(status, 201, dep)
        schema = self.response_schema("/repos/{owner}/{repo}/deployments", "post", 201)
        self.assertEqual(list(OAS30ReadValidator(schema, format_checker=oas30_format_checker).iter_errors(dep)), [])

        status, comment, _ = self.call("POST", "/repos/o/r/issues/3/comments", {"body": "report"})
        schema = self.response_schema("/repos/{owner}/{repo}/issues/{issue_number}/comments", "post", 201)
        self.assertEqual(list(OAS30ReadValidator(schema, format_checker=oas30_format_checker).iter_errors(comment)), [])

        # and the server's own check found nothing, for every operation
        self.call("GET", f"/repos/o/r/check-runs/{run['id']}")
        self.call("GET", f"/repos/o/r/check-runs/{run['id']}/annotations")
        self.call("POST", f"/repos/o/r/deployments/{dep['id']}/statuses", {"state": "in_progress"})
        self.call("GET", f"/repos/o/r/deployments/{dep['id']}/statuses")
        self.call("GET", "/repos/o/r/deployments")
        self.call("PATCH", f"/repos/o/r/issues/comments/{comment['id']}", {"body": "report v2"})
        self.call("GET", "/repos/o/r/issues/3/comments")
        self.call("GET", "/repos/o/r")
        self.call("GET", "/")
        reqs = self.requests()
        self.assertEqual(len({r["operation_id"] for r in reqs}), 13)
        self.assertTrue(all(r["status"] < 300 for r in reqs), [(r["operation_id"], r["status"]) for r in reqs])
        self.assertEqual(self.violations(), [])

    def test_deployments_and_statuses(self):
        status, dep, hdrs = self.call(
            "POST", "/repos/o/r/deployments", {"ref": "main", "environment": "staging", "required_contexts": [], "description": "canary 10%"}
        )
        self.assertEqual(status, 201, dep)
        self.assertEqual(dep["ref"], "main")
        self.assertEqual(len(dep["sha"]), 40)
        self.assertEqual(dep["environment"], "staging")
        self.assertEqual(dep["original_environment"], "staging")
        self.assertEqual(dep["task"], "deploy")
        self.assertEqual(dep["payload"], {})
        self.assertFalse(dep["production_environment"])
        self.assertEqual(dep["statuses_url"], f"{self.url}/repos/o/r/deployments/{dep['id']}/statuses")
        self.assertEqual(dep["creator"]["login"], "github-actions[bot]")
        self.assertEqual(hdrs["location"], dep["url"])

        status, st, hdrs = self.call(
            "POST", f"/repos/o/r/deployments/{dep['id']}/statuses", {"state": "success", "log_url": "https://ci/log", "environment_url": "https://model.example"}
        )
        self.assertEqual(status, 201, st)
        self.assertEqual(st["state"], "success")
        self.assertEqual(st["target_url"], "https://ci/log")
        self.assertEqual(st["environment"], "staging")
        self.assertEqual(st["deployment_url"], dep["url"])
        self.assertEqual(hdrs["location"], st["url"])

        # a newer success in the same (non-production) environment makes the old one inactive
        _, dep2, _ = self.call("POST", "/repos/o/r/deployments", {"ref": "main", "environment": "staging", "required_contexts": []})
        self.call("POST", f"/repos/o/r/deployments/{dep2['id']}/statuses", {"state": "success"})
        _, statuses, _ = self.call("GET", f"/repos/o/r/deployments/{dep['id']}/statuses")
        self.assertEqual([s["state"] for s in statuses], ["inactive", "success"])
        _, listed, _ = self.call("GET", "/repos/o/r/deployments?environment=staging")
        self.assertEqual([d["id"] for d in listed], [dep2["id"], dep["id"]])
        _, listed, _ = self.call("GET", "/repos/o/r/deployments?environment=production")
        self.assertEqual(listed, [])
        status, _, _ = self.call("POST", "/repos/o/r/deployments/424242/statuses", {"state": "success"})
        self.assertEqual(status, 404)
        state = self.state()
        self.assertEqual(len(state["deployments"]), 2)
        self.assertEqual(len(state["deployments"][0]["statuses"]), 2)
        self.assertEqual(self.violations(), [])

    def test_deployment_conflicts_with_pending_checks_unless_required_contexts_given(self):
        self.create_run()  # in_progress on SHA
        status, body, _ = self.call("POST", "/repos/o/r/deployments", {"ref": SHA})
        self.assertEqual(status, 409)
        self.assertEqual(body["message"], f"Conflict: Commit status checks failed for {SHA}.")
        self.assertEqual(body["errors"][0]["contexts"], [{"context": "mlcd / build", "state": "pending"}])
        status, _, _ = self.call("POST", "/repos/o/r/deployments", {"ref": OTHER_SHA})
        self.assertEqual(status, 201)
        status, _, _ = self.call("POST", "/repos/o/r/deployments", {"ref": SHA, "required_contexts": []})
        self.assertEqual(status, 201)

    def test_issue_comments(self):
        status, c, _ = self.call("POST", "/repos/o/r/issues/12/comments", {"body": "<!-- mlcd -->\nfirst"})
        self.assertEqual(status, 201, c)
        self.assertEqual(c["html_url"], f"https://github.com/o/r/issues/12#issuecomment-{c['id']}")
        self.assertEqual(c["issue_url"], f"{self.url}/repos/o/r/issues/12")
        self.assertEqual(c["user"]["login"], "github-actions[bot]")
        status, c2, _ = self.call("PATCH", f"/repos/o/r/issues/comments/{c['id']}", {"body": "<!-- mlcd -->\nsecond"})
        self.assertEqual(status, 200)
        self.assertEqual(c2["body"], "<!-- mlcd -->\nsecond")
        self.call("POST", "/repos/o/r/issues/13/comments", {"body": "elsewhere"})
        _, listed, _ = self.call("GET", "/repos/o/r/issues/12/comments")
        self.assertEqual([x["body"] for x in listed], ["<!-- mlcd -->\nsecond"])
        status, body, _ = self.call("POST", "/repos/o/r/issues/12/comments", {"body": "x" * 65537})
        self.assertEqual(status, 422)
        self.assertEqual(body["message"], "Validation Failed")
        status, _, _ = self.call("PATCH", "/repos/o/r/issues/comments/1", {"body": "nope"})
        self.assertEqual(status, 404)
        self.assertEqual(len(self.state()["comments"]), 2)

    def test_pulls_of_a_commit(self):
        _, none, _ = self.call("GET", f"/repos/o/r/commits/{SHA}/pulls")
        self.assertEqual(none, [])
        status, _, _ = self.call("POST", "/_fake/pulls", {"repository": "o/r", "number": 7, "head_sha": SHA}, auth=False)
        self.assertEqual(status, 200)
        self.call(
            "POST",
            "/_fake/pulls",
            {"repository": "o/r", "number": 8, "head_sha": OTHER_SHA, "state": "closed", "merge_commit_sha": SHA},
            auth=False,
        )
        status, prs, _ = self.call("GET", f"/repos/o/r/commits/{SHA}/pulls")
        self.assertEqual(status, 200)
        self.assertEqual([(p["number"], p["state"]) for p in prs], [(7, "open"), (8, "closed")])
        self.assertEqual(prs[0]["head"]["sha"], SHA)
        self.assertEqual(prs[0]["html_url"], "https://github.com/o/r/pull/7")
        _, other, _ = self.call("GET", f"/repos/other/repo/commits/{SHA}/pulls")
        self.assertEqual(other, [])
        status, _, _ = self.call("POST", "/_fake/pulls", {"repository": "o/r", "number": 9, "head_sha": "main"}, auth=False)
        self.assertEqual(status, 400)
        self.assertEqual(self.violations(), [])

    def test_commit_comments(self):
        status, c, _ = self.call("POST", f"/repos/o/r/commits/{SHA}/comments", {"body": "<!-- m -->\nfirst"})
        self.assertEqual(status, 201, c)
        self.assertEqual(c["commit_id"], SHA)
        self.assertEqual(c["html_url"], f"https://github.com/o/r/commit/{SHA}#commitcomment-{c['id']}")
        status, c2, _ = self.call("PATCH", f"/repos/o/r/comments/{c['id']}", {"body": "<!-- m -->\nsecond"})
        self.assertEqual((status, c2["body"]), (200, "<!-- m -->\nsecond"))
        self.call("POST", f"/repos/o/r/commits/{OTHER_SHA}/comments", {"body": "elsewhere"})
        _, listed, _ = self.call("GET", f"/repos/o/r/commits/{SHA}/comments")
        self.assertEqual([x["body"] for x in listed], ["<!-- m -->\nsecond"])
        status, _, _ = self.call("POST", f"/repos/o/r/commits/{SHA}/comments", {"nobody": 1})
        self.assertEqual(status, 422)
        status, _, _ = self.call("PATCH", "/repos/o/r/comments/1", {"body": "nope"})
        self.assertEqual(status, 404)
        self.assertEqual(len(self.state()["commit_comments"]), 2)
        self.assertEqual([v["location"] for v in self.violations()], ["body"])

    def test_repo_and_root(self):
        status, repo, _ = self.call("GET", "/repos/acme/models")
        self.assertEqual(status, 200)
        self.assertEqual(repo["full_name"], "acme/models")
        self.assertEqual(repo["owner"]["login"], "acme")
        self.assertEqual(repo["url"], f"{self.url}/repos/acme/models")
        self.assertEqual(repo["html_url"], "https://github.com/acme/models")
        self.assertEqual(repo["default_branch"], "main")
        status, root, _ = self.call("GET", "/")
        self.assertEqual(status, 200)
        self.assertTrue(root["current_user_url"].startswith(self.url))

    def test_repository_dispatch(self):
        body = {"event_type": "retrain", "client_payload": {"reason": "drift", "model-id": "churn"}}
        status, answer, _ = self.call("POST", "/repos/acme/models/dispatches", body)
        self.assertEqual((status, answer), (204, None))
        self.assertEqual(
            self.state()["dispatches"],
            [{"repository": "acme/models", "event_type": "retrain", "client_payload": body["client_payload"]}],
        )
        self.assertEqual(self.violations(), [])
        # GitHub's limits: at most 10 top-level keys (the schema), under 64KB (documented).
        eleven = {f"k{i}": i for i in range(11)}
        status, _, _ = self.call("POST", "/repos/acme/models/dispatches", {"event_type": "retrain", "client_payload": eleven})
        self.assertEqual(status, 422)
        big = {"columns": ["x" * 1000] * 70}
        status, _, _ = self.call("POST", "/repos/acme/models/dispatches", {"event_type": "retrain", "client_payload": big})
        self.assertEqual(status, 422)
        self.assertEqual([v["kind"] for v in self.violations()], ["request", "semantic"])

    def test_check_run_semantics(self):
        status, body, _ = self.call("POST", "/repos/o/r/check-runs", {"name": "x", "head_sha": "main"})
        self.assertEqual(status, 422)
        self.assertEqual(body["message"], "No commit found for SHA: main")
        status, _, _ = self.call("POST", "/repos/o/r/check-runs", {"name": "x", "head_sha": SHA, "status": "completed"})
        self.assertEqual(status, 422)
        run, _ = self.create_run(conclusion="success")
        self.assertEqual(run["status"], "completed")
        self.assertIsNotNone(run["completed_at"])
        self.assertEqual([v["kind"] for v in self.violations()], ["semantic", "semantic"])

    def test_reset(self):
        self.create_run()
        self.call("GET", "/nope")
        self.call("POST", "/_fake/deny", {"path_prefix": "/repos"}, auth=False)
        status, body, _ = self.call("POST", "/_fake/reset", auth=False)
        self.assertEqual((status, body), (200, {"ok": True}))
        self.assertEqual(self.requests(), [])
        self.assertEqual(self.violations(), [])
        self.assertEqual(
            self.state(),
            {"check_runs": [], "deployments": [], "comments": [], "dispatches": [], "commit_comments": [], "pulls": []},
        )
        run, _ = self.create_run()  # the denial is gone too, and ids start again
        self.assertEqual(run["id"], 1001)


if __name__ == "__main__":
    unittest.main()


class GitBackedContentsTest(unittest.TestCase):
    """The contents API over a real git repository: what the fake commits, git reads."""

    # the server and helpers of FakeGitHubTest, without its tests
    setUpClass = classmethod(FakeGitHubTest.setUpClass.__func__)
    tearDownClass = classmethod(FakeGitHubTest.tearDownClass.__func__)
    call = FakeGitHubTest.call
    violations = FakeGitHubTest.violations

    def setUp(self):
        FakeGitHubTest.setUp(self)
        self.seed = tempfile.TemporaryDirectory()
        os.makedirs(os.path.join(self.seed.name, "apps"))
        with open(os.path.join(self.seed.name, "apps", "values.yaml"), "w") as f:
            f.write("image:\n  tag: v1  # keep\n")
        status, out, _ = self.call(
            "POST", "/_fake/git/init", {"repo": "acme/deploy", "dir": self.seed.name}, auth=False
        )
        self.assertEqual(status, 200, out)
        self.git_dir = out["git_dir"]

    def tearDown(self):
        self.seed.cleanup()

    def git(self, *args):
        env = dict(os.environ, GIT_DIR=self.git_dir)
        return subprocess.run(["git", *args], env=env, check=True, capture_output=True, text=True).stdout

    def put(self, path, text, sha=None, message="change"):
        body = {"message": message, "content": base64.b64encode(text.encode()).decode(), "branch": "main"}
        if sha:
            body["sha"] = sha
        return self.call("PUT", f"/repos/acme/deploy/contents/{path}", body)

    def test_read_update_and_create_are_real_commits(self):
        status, got, _ = self.call("GET", "/repos/acme/deploy/contents/apps/values.yaml?ref=main")
        self.assertEqual(status, 200, got)
        self.assertEqual(base64.b64decode(got["content"]).decode(), "image:\n  tag: v1  # keep\n")
        self.assertEqual(got["sha"], self.git("rev-parse", "main:apps/values.yaml").strip())
        status, out, _ = self.put("apps/values.yaml", "image:\n  tag: v2  # keep\n", got["sha"], "Deploy v2")
        self.assertEqual(status, 200, out)
        self.assertEqual(out["commit"]["sha"], self.git("rev-parse", "main").strip())
        self.assertEqual(self.git("show", "main:apps/values.yaml"), "image:\n  tag: v2  # keep\n")
        self.assertEqual(self.git("log", "-1", "--format=%s %an", "main").strip(), "Deploy v2 github-actions[bot]")
        status, out, _ = self.put("apps/new/churn.yaml", "kind: X\n")
        self.assertEqual(status, 201, out)
        self.assertEqual(self.git("rev-list", "--count", "main").strip(), "3")
        self.assertEqual(self.git("show", "main:apps/values.yaml"), "image:\n  tag: v2  # keep\n")
        self.assertEqual(self.violations(), [])

    def test_a_stale_or_missing_sha_is_refused_and_nothing_is_committed(self):
        status, got, _ = self.call("GET", "/repos/acme/deploy/contents/apps/values.yaml?ref=main")
        status, out, _ = self.put("apps/values.yaml", "x: 1\n", "0" * 40)
        self.assertEqual(status, 409, out)
        status, out, _ = self.put("apps/values.yaml", "x: 1\n")
        self.assertEqual(status, 422, out)
        self.assertEqual(self.git("rev-list", "--count", "main").strip(), "1")
        status, out, _ = self.call("GET", "/repos/acme/deploy/contents/apps/nope.yaml?ref=main")
        self.assertEqual(status, 404, out)
        self.assertEqual(self.violations(), [])

    def test_a_race_lands_just_before_the_next_update(self):
        status, got, _ = self.call("GET", "/repos/acme/deploy/contents/apps/values.yaml?ref=main")
        self.call("POST", "/_fake/git/race", {"repo": "acme/deploy", "path": "apps/values.yaml", "content": "theirs: 1\n"}, auth=False)
        status, out, _ = self.put("apps/values.yaml", "mine: 1\n", got["sha"])
        self.assertEqual(status, 409, out)
        self.assertEqual(self.git("show", "main:apps/values.yaml"), "theirs: 1\n")
        self.assertEqual(self.git("log", "-1", "--format=%an", "main").strip(), "Teammate")

    def test_a_later_commit_contains_an_earlier_one(self):
        first = self.git("rev-parse", "main").strip()
        status, got, _ = self.call("GET", "/repos/acme/deploy/contents/apps/values.yaml?ref=main")
        self.put("apps/values.yaml", "image:\n  tag: v2\n", got["sha"])
        second = self.git("rev-parse", "main").strip()
        status, out, _ = self.call("GET", f"/repos/acme/deploy/compare/{first}...{second}?per_page=1")
        self.assertEqual(status, 200, out)
        self.assertEqual((out["status"], out["ahead_by"], out["behind_by"]), ("ahead", 1, 0))
        self.assertEqual(out["commits"][0]["sha"], second)
        status, out, _ = self.call("GET", f"/repos/acme/deploy/compare/{second}...{first}")
        self.assertEqual((out["status"], out["behind_by"]), ("behind", 1))
        status, out, _ = self.call("GET", f"/repos/acme/deploy/compare/{first}...{first}")
        self.assertEqual(out["status"], "identical")
        self.assertEqual(self.violations(), [])

    def test_a_branch_a_pull_request_updated_in_place_and_merged(self):
        base = self.git("rev-parse", "main").strip()
        status, out, _ = self.call("GET", "/repos/acme/deploy/git/ref/heads/mlcd/prod/churn")
        self.assertEqual(status, 404, out)
        status, out, _ = self.call("POST", "/repos/acme/deploy/git/refs", {"ref": "refs/heads/mlcd/prod/churn", "sha": base})
        self.assertEqual(status, 201, out)
        self.assertEqual(out["object"]["sha"], base)
        status, out, _ = self.call("POST", "/repos/acme/deploy/git/refs", {"ref": "refs/heads/mlcd/prod/churn", "sha": base})
        self.assertEqual(status, 422, out)
        # no commits between the branches: GitHub refuses the pull request
        status, out, _ = self.call("POST", "/repos/acme/deploy/pulls", {"title": "t", "head": "mlcd/prod/churn", "base": "main"})
        self.assertEqual(status, 422, out)
        status, got, _ = self.call("GET", "/repos/acme/deploy/contents/apps/values.yaml?ref=mlcd/prod/churn")
        body = {"message": "v2", "content": base64.b64encode(b"image:\n  tag: v2\n").decode(), "branch": "mlcd/prod/churn", "sha": got["sha"]}
        status, out, _ = self.call("PUT", "/repos/acme/deploy/contents/apps/values.yaml", body)
        self.assertEqual(status, 200, out)
        self.assertEqual(self.git("rev-parse", "main").strip(), base, "main did not move")
        status, pr, _ = self.call("POST", "/repos/acme/deploy/pulls", {"title": "Deploy v2", "head": "mlcd/prod/churn", "base": "main", "body": "plan"})
        self.assertEqual(status, 201, pr)
        self.assertEqual((pr["number"], pr["state"], pr["head"]["ref"], pr["base"]["sha"]), (1, "open", "mlcd/prod/churn", base))
        status, out, _ = self.call("POST", "/repos/acme/deploy/pulls", {"title": "again", "head": "mlcd/prod/churn", "base": "main"})
        self.assertEqual(status, 422, out)
        status, found, _ = self.call("GET", "/repos/acme/deploy/pulls?state=open&head=acme:mlcd/prod/churn&base=main")
        self.assertEqual([p["number"] for p in found], [1])
        status, found, _ = self.call("GET", "/repos/acme/deploy/pulls?head=acme:mlcd/prod/other")
        self.assertEqual(found, [])
        status, pr, _ = self.call("PATCH", "/repos/acme/deploy/pulls/1", {"title": "Deploy v3", "body": "plan 3"})
        self.assertEqual((status, pr["title"], pr["body"]), (200, "Deploy v3", "plan 3"))
        # a non-fast-forward ref update needs force
        status, out, _ = self.call("PATCH", "/repos/acme/deploy/git/refs/heads/mlcd/prod/churn", {"sha": base})
        self.assertEqual(status, 422, out)
        head = self.git("rev-parse", "mlcd/prod/churn").strip()
        status, out, _ = self.call("PUT", "/repos/acme/deploy/pulls/1/merge", {"sha": head})
        self.assertEqual((status, out.get("merged")), (200, True), out)
        self.assertEqual(self.git("rev-parse", "main^2").strip(), head)
        self.assertEqual(self.git("show", "main:apps/values.yaml"), "image:\n  tag: v2\n")
        status, found, _ = self.call("GET", "/repos/acme/deploy/pulls?state=closed&head=acme:mlcd/prod/churn")
        self.assertEqual((found[0]["state"], found[0]["merge_commit_sha"]), ("closed", out["sha"]))
        status, out, _ = self.call("DELETE", "/repos/acme/deploy/git/refs/heads/mlcd/prod/churn")
        self.assertEqual(status, 204, out)
        self.assertNotIn("mlcd/prod/churn", self.git("branch", "--list"))
        self.assertEqual(self.violations(), [])
