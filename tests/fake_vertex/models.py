"""The fake Vertex AI's model registry (models.upload / get / list / listVersions /
mergeVersionAliases / patch) and endpoints (create / get / list / patch /
deployModel / undeployModel / predict / rawPredict) with Vertex's traffic-split
rules; installed onto server.Fake by `install`. See server.py's docstring."""

import json
import random
import re

from server import ApiError, now_rfc3339

META = "type.googleapis.com/google.cloud.aiplatform.v1."


def models_call(self, verb, params, query, body):
    parent = self.parent(params[0], params[1])
    if verb == "upload":
        m = dict(body["model"])
        parent_model = body.get("parentModel")
        if parent_model:
            mid = parent_model.rsplit("/", 1)[-1]
            if mid not in self.models:
                raise ApiError(404, f"Model {parent_model} is not found.")
        else:
            mid = body.get("modelId") or self.new_id()
            if mid in self.models:
                raise ApiError(409, f"Model {mid} already exists.")
            self.models[mid] = {"versions": []}
        entry = self.models[mid]
        vid = str(len(entry["versions"]) + 1)
        aliases = list(m.get("versionAliases", []))
        if not entry["versions"]:
            aliases = ["default"] + [a for a in aliases if a != "default"]
        for v in entry["versions"]:
            v["versionAliases"] = [a for a in v["versionAliases"] if a not in aliases]
        name = f"{parent}/models/{mid}"
        m.update({"name": name, "versionId": vid, "versionAliases": aliases,
                  "createTime": now_rfc3339(), "updateTime": now_rfc3339(),
                  "versionCreateTime": now_rfc3339(), "versionUpdateTime": now_rfc3339(),
                  # output only, filled by the service for a custom container (gcloud reads it)
                  "supportedDeploymentResourcesTypes": ["DEDICATED_RESOURCES"]})
        op = self.operation(name, "models.upload", {"@type": META + "UploadModelResponse", "model": name,
                                                     "modelVersionId": vid}, META + "UploadModelOperationMetadata")
        op["on_done"] = lambda: entry["versions"].append(m)
        return self.op_view(op)
    if verb == "list":
        flt = query.get("filter", [""])[0]
        want = dict(re.findall(r'labels\.([a-z0-9_-]+)\s*=\s*"?([^"\s]*)"?', flt))
        out = [default_version(e) for e in self.models.values() if e["versions"]
               and default_version(e)["name"].startswith(parent + "/")
               and all(default_version(e).get("labels", {}).get(k) == v for k, v in want.items())]
        return {"models": out} if out else {}
    ref = params[2]
    mid, _, at = ref.partition("@")
    entry = self.models.get(mid)
    if entry is None or not entry["versions"]:
        raise ApiError(404, f"Model {parent}/models/{mid} is not found.")
    if verb == "listVersions":
        flt = query.get("filter", [""])[0]
        want = dict(re.findall(r'labels\.([a-z0-9_-]+)\s*=\s*"?([^"\s]*)"?', flt))
        vs = [v for v in entry["versions"] if all(v.get("labels", {}).get(k) == x for k, x in want.items())]
        return {"models": vs} if vs else {}
    v = find_version(entry, at)
    if v is None:
        raise ApiError(404, f"Model version {ref} is not found.")
    if verb == "get":
        return v
    if verb == "mergeVersionAliases":
        for a in body.get("versionAliases", []):
            if a.startswith("-"):
                v["versionAliases"] = [x for x in v["versionAliases"] if x != a[1:]]
            else:
                if not re.match(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$", a):
                    raise ApiError(400, f"Invalid alias {a}")
                for other in entry["versions"]:
                    other["versionAliases"] = [x for x in other["versionAliases"] if x != a]
                v["versionAliases"].append(a)
        return v
    if verb == "patch":
        mask = query.get("updateMask", [""])[0]
        for field in filter(None, mask.split(",")):
            key = re.sub(r"_([a-z])", lambda x: x.group(1).upper(), field)
            if key in body:
                v[key] = body[key]
        return v
    raise ApiError(501, f"models.{verb} is not implemented by the fake", "UNIMPLEMENTED")


def default_version(entry):
    for v in entry["versions"]:
        if "default" in v["versionAliases"]:
            return v
    return entry["versions"][-1]


def find_version(entry, at):
    if not at:
        return default_version(entry)
    for v in entry["versions"]:
        if v["versionId"] == at or at in v["versionAliases"]:
            return v
    return None


def check_split(split, ids, allow_new):
    for k, pct in split.items():
        if k == "0" and not allow_new:
            raise ApiError(400, 'trafficSplit key "0" (the model being deployed) is only valid in deployModel')
        if k != "0" and k not in ids:
            raise ApiError(400, f"trafficSplit refers to {k}, which is not a DeployedModel of this Endpoint")
        if pct < 0:
            raise ApiError(400, "trafficSplit percentages must not be negative")
    if split and sum(split.values()) != 100:
        raise ApiError(400, f"trafficSplit must sum to 100, not {sum(split.values())}")


def endpoint_view(ep):
    out = {k: v for k, v in ep.items() if not k.startswith("_")}
    out["trafficSplit"] = {k: v for k, v in ep["trafficSplit"].items() if v}
    if not out["trafficSplit"]:
        out.pop("trafficSplit")
    if not out.get("deployedModels"):
        out.pop("deployedModels", None)
    return out


def endpoints_call(self, verb, params, query, body):
    parent = self.parent(params[0], params[1])
    if verb == "create":
        eid = query.get("endpointId", [None])[0] or self.new_id()
        name = f"{parent}/endpoints/{eid}"
        if eid in self.endpoints:
            raise ApiError(409, f"Endpoint {name} already exists.")
        ep = dict(body)
        ep.update({"name": name, "createTime": now_rfc3339(), "updateTime": now_rfc3339(),
                   "trafficSplit": {}, "deployedModels": [], "etag": "1"})
        op = self.operation(name, "endpoints.create", dict(endpoint_view(ep), **{"@type": META + "Endpoint"}),
                            META + "CreateEndpointOperationMetadata")
        op["on_done"] = lambda: self.endpoints.__setitem__(eid, ep)
        return self.op_view(op)
    if verb == "list":
        eps = [endpoint_view(e) for e in self.endpoints.values() if e["name"].startswith(parent + "/")]
        return {"endpoints": eps} if eps else {}
    ep = self.endpoints.get(params[2])
    if ep is None:
        raise ApiError(404, f"Endpoint {parent}/endpoints/{params[2]} is not found.")
    if verb == "get":
        return endpoint_view(ep)
    ids = {d["id"] for d in ep["deployedModels"]}
    if ep.get("_busy"):
        raise ApiError(400, "The Endpoint has an operation in progress; wait for it to finish.", "FAILED_PRECONDITION")
    if verb == "deployModel":
        dm = dict(body["deployedModel"])
        model = dm["model"]
        mid, _, at = model.rsplit("/", 1)[-1].partition("@")
        entry = self.models.get(mid)
        if entry is None or not entry["versions"] or find_version(entry, at) is None:
            raise ApiError(404, f"Model {model} is not found.")
        split = body.get("trafficSplit")
        if split:
            check_split(split, ids, True)
        did = dm.get("id") or self.new_id()
        dm.update({"id": did, "createTime": now_rfc3339(),
                   "modelVersionId": find_version(entry, at)["versionId"]})

        def done():
            ep["deployedModels"].append(dm)
            if split:
                ep["trafficSplit"] = {(did if k == "0" else k): v for k, v in split.items()}
            elif not ids:
                ep["trafficSplit"] = {did: 100}
            ep["_busy"] = False
            ep["updateTime"] = now_rfc3339()
        ep["_busy"] = True
        op = self.operation(ep["name"], "endpoints.deployModel",
                            {"@type": META + "DeployModelResponse", "deployedModel": dm},
                            META + "DeployModelOperationMetadata")
        op["on_done"] = done
        op["on_error"] = lambda: ep.__setitem__("_busy", False)
        if op["error"]:
            ep["_busy"] = False
        elif self.runner.enabled():
            op["gate"] = {"state": "starting"}
            self.runner.start(did, find_version(entry, at), op["gate"])
        return self.op_view(op)
    if verb == "undeployModel":
        did = body["deployedModelId"]
        if did not in ids:
            raise ApiError(404, f"DeployedModel {did} is not deployed to {ep['name']}.")
        split = body.get("trafficSplit")
        if split:
            if did in split and split[did]:
                raise ApiError(400, "the new trafficSplit still sends traffic to the model being undeployed")
            check_split({k: v for k, v in split.items() if k != did}, ids - {did}, False)
        elif ep["trafficSplit"].get(did) and len(ids) > 1:
            raise ApiError(400, f"DeployedModel {did} still takes {ep['trafficSplit'][did]}% of the traffic: "
                                "move it first or give a trafficSplit", "FAILED_PRECONDITION")

        def done():
            self.runner.stop(did)
            ep["deployedModels"] = [d for d in ep["deployedModels"] if d["id"] != did]
            ep["trafficSplit"] = dict(split) if split else {k: v for k, v in ep["trafficSplit"].items() if k != did}
            ep["_busy"] = False
        ep["_busy"] = True
        op = self.operation(ep["name"], "endpoints.undeployModel", {"@type": META + "UndeployModelResponse"},
                            META + "UndeployModelOperationMetadata")
        op["on_done"] = done
        return self.op_view(op)
    if verb == "delete":
        if ep["deployedModels"]:
            raise ApiError(400, f"Endpoint {ep['name']} has deployed models; undeploy them first.",
                           "FAILED_PRECONDITION")
        op = self.operation(ep["name"], "endpoints.delete", {"@type": "type.googleapis.com/google.protobuf.Empty"},
                            META + "DeleteOperationMetadata")
        op["on_done"] = lambda: self.endpoints.pop(params[2], None)
        return self.op_view(op)
    if verb == "patch":
        mask = query.get("updateMask", [""])[0]
        fields = [f for f in mask.split(",") if f]
        if not fields:
            raise ApiError(400, "updateMask is required")
        for field in fields:
            key = re.sub(r"_([a-z])", lambda x: x.group(1).upper(), field)
            if key == "trafficSplit":
                check_split(body.get("trafficSplit", {}), ids, False)
                ep["trafficSplit"] = dict(body.get("trafficSplit", {}))
            elif key in ("displayName", "description", "labels"):
                ep[key] = body.get(key)
            else:
                raise ApiError(400, f"updateMask field {field} cannot be updated")
        ep["updateTime"] = now_rfc3339()
        return endpoint_view(ep)
    if verb in ("predict", "rawPredict"):
        if not ep["deployedModels"]:
            raise ApiError(400, f"Endpoint {ep['name']} has no deployed model.", "FAILED_PRECONDITION")
        split = {k: v for k, v in ep["trafficSplit"].items() if v > 0}
        if split:  # as Vertex does: each request to a deployed model drawn by the split
            did = random.choices(list(split), weights=list(split.values()))[0]
        else:
            did = ep["deployedModels"][0]["id"]
        if verb == "rawPredict" and did in self.runner.containers:
            got = self.runner.predict(did, body, self.raw_content_type)
            if got is not None:
                return RawAnswer(*got, did)
        scripted = self.serving.get(did, {})
        if scripted.get("status", 200) != 200:
            raise ApiError(scripted["status"], scripted.get("message", "model error"), "INTERNAL")
        preds = scripted.get("predictions", [0.0])
        if verb == "predict":
            return {"predictions": preds, "deployedModelId": did}
        return RawAnswer(200, "application/json", json.dumps({"predictions": preds}).encode(), did)
    raise ApiError(501, f"endpoints.{verb} is not implemented by the fake", "UNIMPLEMENTED")


class RawAnswer:
    """rawPredict's answer: the container's status, content type and bytes, sent as
    they are (google.api.HttpBody is the raw HTTP body over REST)."""

    def __init__(self, status, content_type, body, deployed_model_id):
        self.status, self.content_type, self.body, self.deployed_model_id = status, content_type, body, deployed_model_id


def install(cls):
    cls.models_call = models_call
    cls.endpoints_call = endpoints_call

