"""SageMaker hosting for the scripted fake (server.py): models, endpoint configurations,
endpoints with their transitional states, and the runtime's InvokeEndpoint.

Endpoints are scripted by state machine, as the live service behaves:
  CreateEndpoint -> Creating; UpdateEndpoint / UpdateEndpointWeightsAndCapacities ->
  Updating; DeleteEndpoint -> Deleting. Each state lasts `describes` DescribeEndpoint
  calls (default 2, settable per server or per endpoint), then Creating/Updating become
  InService (the new configuration or weights applied) and Deleting removes it.
  An update while the endpoint is not InService -> 400 ValidationException "Cannot update
  in-progress endpoint ..." (what SageMaker answers).
Control (through server.py): put an endpoint into Updating "by someone else", Failed with
  a FailureReason, or RollingBack (-> InService on the old configuration, simulating an
  alarm rollback), for `describes` calls or until told otherwise.
InvokeEndpoint answers 200 `{"predictions": [...]}` (one per item of `instances`, else
  one), or, when the variant's model has MODEL_FAIL_SMOKE=true in its Environment, 424
  ModelError with OriginalStatusCode 500, as the runtime wraps a container's error.
With containers on (server.py --run-containers, DOCKER_HOST set), InvokeEndpoint is
  proxied to a real container of the variant's model (PrimaryContainer Image, Environment,
  `serve`) on the test bed's engine, through the fake Vertex AI's runner
  (tests/fake_vertex/serving.py: host network, the port through SAGEMAKER_BIND_TO_PORT).
  Deviations: the container starts at the variant's first InvokeEndpoint (not at
  CreateEndpoint) and ModelDataUrl is not downloaded, so the image must hold its model;
  a container error status comes back as SageMaker does it (424 ModelError).
"""

import copy
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fake_vertex"))
from serving import Runner  # noqa: E402  (one container runner for the fakes)

ACCOUNT = "123456789012"
DEFAULT_DESCRIBES = 2


class AwsFault(Exception):
    def __init__(self, status, code, message, member="message", extra=None):
        super().__init__(message)
        self.status, self.code, self.message, self.member = status, code, message, member
        self.extra = extra or {}


def arn(region, kind, name):
    return f"arn:aws:sagemaker:{region}:{ACCOUNT}:{kind}/{name.lower()}"


def invalid(message):
    return AwsFault(400, "ValidationException", message, member="Message")


class Hosting:
    def __init__(self):
        self.reset()

    runner = None  # a serving.Runner when containers are on

    def run_containers(self):
        """Proxies InvokeEndpoint to real containers from now on."""
        self.runner = Runner()

    def reset(self):
        if self.runner is not None:
            self.runner.shutdown()
        self.models = {}
        self.configs = {}
        self.endpoints = {}
        self.describes = DEFAULT_DESCRIBES

    # --- models and configurations -------------------------------------------

    def create_model(self, body, region):
        name = body["ModelName"]
        if name in self.models:
            raise invalid(f'Cannot create already existing model "{arn(region, "model", name)}".')
        self.models[name] = {"request": copy.deepcopy(body), "created": time.time(), "region": region}
        return {"ModelArn": arn(region, "model", name)}

    def model(self, name, region):
        m = self.models.get(name)
        if m is None:
            raise invalid(f'Could not find model "{arn(region, "model", name)}".')
        return m

    def describe_model(self, body, region):
        m = self.model(body["ModelName"], region)
        req = m["request"]
        out = {
            "ModelName": req["ModelName"],
            "ModelArn": arn(region, "model", req["ModelName"]),
            "CreationTime": m["created"],
        }
        for k in ("PrimaryContainer", "Containers", "ExecutionRoleArn"):
            if k in req:
                out[k] = req[k]
        return out

    def delete_model(self, body, region):
        self.model(body["ModelName"], region)
        del self.models[body["ModelName"]]
        return {}

    def create_config(self, body, region):
        name = body["EndpointConfigName"]
        if name in self.configs:
            raise invalid(f'Cannot create already existing endpoint configuration "{arn(region, "endpoint-config", name)}".')
        for v in body.get("ProductionVariants", []) + body.get("ShadowProductionVariants", []):
            self.model(v["ModelName"], region)
        self.configs[name] = {"request": copy.deepcopy(body), "created": time.time()}
        return {"EndpointConfigArn": arn(region, "endpoint-config", name)}

    def config(self, name, region):
        c = self.configs.get(name)
        if c is None:
            raise invalid(f'Could not find endpoint configuration "{arn(region, "endpoint-config", name)}".')
        return c

    def describe_config(self, body, region):
        c = self.config(body["EndpointConfigName"], region)
        out = dict(copy.deepcopy(c["request"]))
        out.pop("Tags", None)
        out["EndpointConfigArn"] = arn(region, "endpoint-config", out["EndpointConfigName"])
        out["CreationTime"] = c["created"]
        return out

    def delete_config(self, body, region):
        self.config(body["EndpointConfigName"], region)
        del self.configs[body["EndpointConfigName"]]
        return {}

    def list_configs(self, body, region):
        part = body.get("NameContains", "")
        names = sorted(n for n in self.configs if part in n)
        return {
            "EndpointConfigs": [
                {
                    "EndpointConfigName": n,
                    "EndpointConfigArn": arn(region, "endpoint-config", n),
                    "CreationTime": self.configs[n]["created"],
                }
                for n in names
            ]
        }

    # --- endpoints -------------------------------------------------------------

    def variants_of(self, config_name):
        """(production, shadow) variants of a configuration as an endpoint runs them."""
        req = self.configs[config_name]["request"]

        def run(v):
            return {
                "name": v["VariantName"],
                "model": v["ModelName"],
                "weight": float(v.get("InitialVariantWeight", 1.0)),
                "count": v.get("InitialInstanceCount", 1),
            }

        return [run(v) for v in req["ProductionVariants"]], [run(v) for v in req.get("ShadowProductionVariants", [])]

    def endpoint(self, name, region):
        e = self.endpoints.get(name)
        if e is None:
            raise invalid(f'Could not find endpoint "{arn(region, "endpoint", name)}".')
        return e

    def create_endpoint(self, body, region):
        name = body["EndpointName"]
        if name in self.endpoints:
            raise invalid(f'Cannot create already existing endpoint "{arn(region, "endpoint", name)}".')
        self.config(body["EndpointConfigName"], region)
        self.endpoints[name] = {
            "name": name,
            "region": region,
            "config": None,
            "pending": body["EndpointConfigName"],
            "production": [],
            "shadow": [],
            "status": "Creating",
            "left": self.describes,
            "failure": None,
            "created": time.time(),
            "deployment": None,
            "tags": list(body.get("Tags", [])),
        }
        return {"EndpointArn": arn(region, "endpoint", name)}

    def tags_of(self, resource_arn):
        """The tags of the endpoint `resource_arn` names, or None."""
        for e in self.endpoints.values():
            if arn(e["region"], "endpoint", e["name"]) == resource_arn:
                return e["tags"]
        return None

    def refuse_unless_in_service(self, e, region):
        if e["status"] != "InService":
            raise invalid(
                f'Cannot update in-progress endpoint "{arn(region, "endpoint", e["name"])}".'
                if e["status"] in ("Creating", "Updating", "RollingBack", "Deleting", "SystemUpdating")
                else f'Cannot update endpoint "{arn(region, "endpoint", e["name"])}" in status {e["status"]}.'
            )

    def update_endpoint(self, body, region):
        e = self.endpoint(body["EndpointName"], region)
        self.config(body["EndpointConfigName"], region)
        self.refuse_unless_in_service(e, region)
        e.update(status="Updating", pending=body["EndpointConfigName"], left=self.describes, failure=None)
        e["deployment"] = copy.deepcopy(body.get("DeploymentConfig"))
        e["weights"] = None
        return {"EndpointArn": arn(region, "endpoint", e["name"])}

    def update_weights(self, body, region):
        e = self.endpoint(body["EndpointName"], region)
        self.refuse_unless_in_service(e, region)
        seen = set()
        names = {v["name"] for v in e["production"]}
        for d in body["DesiredWeightsAndCapacities"]:
            if d["VariantName"] in seen:
                raise invalid(f'The variant name "{d["VariantName"]}" was non-unique within the request.')
            if d["VariantName"] not in names:
                raise invalid(f'The variant name(s) "{d["VariantName"]}" is/are not present within endpoint configuration "{e["config"]}".')
            seen.add(d["VariantName"])
        e.update(status="Updating", pending=None, left=self.describes, weights=copy.deepcopy(body["DesiredWeightsAndCapacities"]))
        return {"EndpointArn": arn(region, "endpoint", e["name"])}

    def delete_endpoint(self, body, region):
        e = self.endpoint(body["EndpointName"], region)
        e.update(status="Deleting", left=self.describes)
        return {}

    def step(self, e):
        """One DescribeEndpoint: a transitional state moves on when its time is up."""
        if e["status"] not in ("Creating", "Updating", "RollingBack", "Deleting") or e["left"] is None:
            return
        e["left"] -= 1
        if e["left"] > 0:
            return
        if e["status"] == "Deleting":
            del self.endpoints[e["name"]]
            return
        if e["status"] == "RollingBack":
            e.update(status="InService", pending=None, weights=None)
            return
        if e.get("pending"):
            e["config"] = e["pending"]
            e["production"], e["shadow"] = self.variants_of(e["config"])
        for d in e.get("weights") or []:
            for v in e["production"]:
                if v["name"] == d["VariantName"]:
                    if "DesiredWeight" in d:
                        v["weight"] = float(d["DesiredWeight"])
                    if "DesiredInstanceCount" in d:
                        v["count"] = d["DesiredInstanceCount"]
        e.update(status="InService", pending=None, weights=None)

    def describe_endpoint(self, body, region):
        e = self.endpoint(body["EndpointName"], region)
        self.step(e)
        if body["EndpointName"] not in self.endpoints:
            raise invalid(f'Could not find endpoint "{arn(region, "endpoint", body["EndpointName"])}".')
        out = {
            "EndpointName": e["name"],
            "EndpointArn": arn(region, "endpoint", e["name"]),
            "EndpointConfigName": e["config"] or e["pending"],
            "EndpointStatus": e["status"],
            "CreationTime": e["created"],
            "LastModifiedTime": time.time(),
        }
        if e["failure"]:
            out["FailureReason"] = e["failure"]

        def summary(v):
            image = self.models.get(v["model"], {}).get("request", {}).get("PrimaryContainer", {}).get("Image", "")
            return {
                "VariantName": v["name"],
                "DeployedImages": [{"SpecifiedImage": image, "ResolvedImage": image, "ResolutionTime": e["created"]}],
                "CurrentWeight": v["weight"],
                "DesiredWeight": v["weight"],
                "CurrentInstanceCount": v["count"],
                "DesiredInstanceCount": v["count"],
            }

        if e["production"]:
            out["ProductionVariants"] = [summary(v) for v in e["production"]]
        if e["shadow"]:
            out["ShadowProductionVariants"] = [summary(v) for v in e["shadow"]]
        return out

    def control(self, spec):
        """POST /_fake/endpoint {name, status, failure_reason, describes}: script a state;
        {name, tags: [...]} replaces its tags (an endpoint made by hand, or by an older mlcd)."""
        if "default_describes" in spec:
            self.describes = max(1, int(spec["default_describes"]))
            if "name" not in spec:
                return {"default_describes": self.describes}
        e = self.endpoints.get(spec.get("name"))
        if e is None:
            raise ValueError(f"no endpoint {spec.get('name')!r}")
        if "tags" in spec and "status" not in spec:
            e["tags"] = list(spec["tags"])
            return self.view()[e["name"]]
        status = spec.get("status")
        if status not in ("InService", "Updating", "RollingBack", "Failed", "UpdateRollbackFailed", "OutOfService"):
            raise ValueError(f"status {status!r} cannot be scripted")
        describes = spec.get("describes")
        e.update(status=status, left=None if describes is None else max(1, int(describes)))
        e["failure"] = spec.get("failure_reason") or e["failure"]
        if status == "Updating":
            e.update(pending=None, weights=None)
        return self.view()[e["name"]]

    def view(self):
        return {
            n: {
                "status": e["status"],
                "config": e["config"],
                "production": e["production"],
                "shadow": e["shadow"],
                "failure": e["failure"],
                "deployment": e["deployment"],
            }
            for n, e in self.endpoints.items()
        }

    # --- runtime -----------------------------------------------------------------

    def invoke(self, name, variant, body, region, content_type=None):
        """(status, headers, json body) of InvokeEndpoint."""
        e = self.endpoints.get(name)
        if e is None or e["status"] in ("Creating", "Deleting", "Failed", "OutOfService") and not e["production"]:
            raise AwsFault(400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} not found.")
        runs = e["production"] + e["shadow"]
        if variant is None:
            live = [v for v in e["production"] if v["weight"] > 0] or e["production"]
            chosen = live[0]
        else:
            chosen = next((v for v in runs if v["name"] == variant), None)
            if chosen is None:
                raise AwsFault(400, "ValidationError", f"Variant {variant} not found for endpoint {name}.")
        env = self.models.get(chosen["model"], {}).get("request", {}).get("PrimaryContainer", {}).get("Environment", {})
        headers = {"x-Amzn-Invoked-Production-Variant": chosen["name"]}
        if str(env.get("MODEL_FAIL_SMOKE", "")).lower() == "true":
            original = json.dumps({"error": "smoke failure requested by MODEL_FAIL_SMOKE"})
            raise AwsFault(
                424,
                "ModelError",
                f"Received server error (500) from primary with message \"{original}\". See "
                f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:"
                f"group=/aws/sagemaker/Endpoints/{name} in account {ACCOUNT} for more information.",
                member="Message",
                extra={
                    "OriginalStatusCode": 500,
                    "OriginalMessage": original,
                    "LogStreamArn": f"arn:aws:logs:{region}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{name}",
                },
            )
        if self.runner is not None:
            return self.proxy(name, chosen, body, content_type or "application/json", region, headers)
        try:
            doc = json.loads(body or b"null")
        except ValueError:
            doc = None
        n = len(doc["instances"]) if isinstance(doc, dict) and isinstance(doc.get("instances"), list) else 1
        return 200, headers, {"predictions": [0.5] * n, "variant": chosen["name"]}

    def proxy(self, name, chosen, body, content_type, region, headers):
        """(status, headers, raw bytes) of the variant's real container; started on
        first use and kept per model until reset / shutdown."""
        model = chosen["model"]
        if model not in self.runner.containers:
            pc = self.models.get(model, {}).get("request", {}).get("PrimaryContainer", {})
            spec = {"containerSpec": {
                "imageUri": pc.get("Image", ""),
                "args": ["serve"],
                "env": [{"name": k, "value": v} for k, v in sorted((pc.get("Environment") or {}).items())],
                "healthRoute": "/ping",
                "predictRoute": "/invocations",
            }}
            gate = {"state": "starting"}
            self.runner.start(model, spec, gate)
            deadline = time.time() + self.runner.ready_seconds + 5
            while gate["state"] == "starting" and time.time() < deadline:
                time.sleep(0.1)
            if gate["state"] != "ready":
                raise AwsFault(424, "ModelError", f"Received server error (500) from primary: {gate.get('message', 'the container did not start')}", member="Message")
        status, ctype, raw = self.runner.predict(model, body, content_type)
        if status != 200:
            original = raw.decode("utf-8", "replace")[:1000]
            raise AwsFault(
                424, "ModelError",
                f"Received client error ({status}) from primary with message \"{original}\".",
                member="Message",
                extra={"OriginalStatusCode": status, "OriginalMessage": original,
                       "LogStreamArn": f"arn:aws:logs:{region}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{name}"},
            )
        return 200, dict(headers, **{"Content-Type": ctype}), raw
