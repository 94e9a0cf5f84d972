"""The fake Argo CD's view of a Kubernetes API server (the fake one of
tests/fake_kube): what Argo CD's application controller does with a synced
revision — server-side apply of every object under the field manager
`argocd-controller` (with `fieldValidation=Strict`, so the server's CRD/OpenAPI
validation refuses what a real cluster would), pruning (deleting) the objects
the repository dropped, and reading the live objects back for their health. Resource paths come from the server's discovery documents, as
a real client finds them.
"""

import json
import urllib.error
import urllib.request

MANAGER = "argocd-controller"


class KubeError(Exception):
    pass


class Kube:
    def __init__(self, url):
        self.url = url.rstrip("/")
        self.plurals = {}

    def _call(self, method, path, body=None, ctype="application/json"):
        req = urllib.request.Request(self.url + path, method=method, data=body)
        if body is not None:
            req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.load(e)
            except ValueError:
                return e.code, {"message": str(e)}

    def path(self, obj, default_ns):
        api = obj.get("apiVersion", "")
        kind = obj.get("kind", "")
        if (api, kind) not in self.plurals:
            base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
            status, doc = self._call("GET", base)
            if status != 200:
                raise KubeError(f"the server could not find the requested resource: {api} (HTTP {status})")
            for r in doc.get("resources", []):
                if "/" not in r["name"]:
                    self.plurals[(api, r["kind"])] = (base, r["name"], r.get("namespaced", True))
        if (api, kind) not in self.plurals:
            raise KubeError(f'resource mapping not found for name: "{obj.get("metadata", {}).get("name")}" '
                            f'namespace: "" from "": no matches for kind "{kind}" in version "{api}"')
        base, plural, namespaced = self.plurals[(api, kind)]
        name = obj["metadata"]["name"]
        if namespaced:
            ns = obj["metadata"].get("namespace") or default_ns
            return f"{base}/namespaces/{ns}/{plural}/{name}"
        return f"{base}/{plural}/{name}"

    def apply(self, obj, default_ns):
        """Server-side apply of `obj`; raises KubeError with the server's message."""
        path = self.path(obj, default_ns)
        q = f"?fieldManager={MANAGER}&fieldValidation=Strict&force=true"
        status, body = self._call("PATCH", path + q, json.dumps(obj).encode(), "application/apply-patch+yaml")
        if status >= 300:
            raise KubeError(f"error when applying {obj['kind']}/{obj['metadata']['name']}: "
                            f"{body.get('message', body)}")
        return body

    def delete(self, obj, default_ns):
        """Deletes the live object (gone already is fine); raises KubeError otherwise."""
        status, body = self._call("DELETE", self.path(obj, default_ns))
        if status >= 300 and status != 404:
            raise KubeError(f"error when deleting {obj['kind']}/{obj['metadata']['name']}: {body.get('message', body)}")

    def get(self, obj, default_ns):
        """The live object, or None when it does not exist."""
        status, body = self._call("GET", self.path(obj, default_ns))
        if status == 404:
            return None
        if status >= 300:
            raise KubeError(f"reading {obj['kind']}/{obj['metadata']['name']}: {body.get('message', body)}")
        return body
