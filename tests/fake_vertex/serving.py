"""Real model containers behind the fake Vertex AI's deployed models: when the fake
runs with DOCKER_HOST set, deployModel starts the Model's serving container
(containerSpec: imageUri, command, args, env, ports, healthRoute, predictRoute) on the
test bed's Docker engine and the operation is done only once the health route answers
200 — or done with the error Vertex gives when the container never gets healthy.
rawPredict is proxied to the container of the deployed model the traffic split picks.

One deviation from Vertex, as in tests/fake_kube/kserve.py: the containers share the
host network (the test bed has no bridge), so the container port is moved to a free
port through AIP_HTTP_PORT and SAGEMAKER_BIND_TO_PORT (Vertex sets AIP_HTTP_PORT to
containerSpec.ports[0] in the container's own network namespace)."""

import http.client
import os
import random
import socket
import string
import subprocess
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Runner:
    def __init__(self):
        self.docker_host = os.environ.get("DOCKER_HOST")
        self.containers = {}  # deployed model id -> {"name", "port", "predict"}
        self.ready_seconds = 120.0

    def enabled(self):
        return bool(self.docker_host)

    def start(self, did, model, gate):
        """Starts the container of `model` for deployed model `did` in a thread; sets
        gate["state"] to "ready" or "failed" (with gate["message"])."""
        threading.Thread(target=self._run, args=(did, model, gate), daemon=True).start()

    def _run(self, did, model, gate):
        c = model.get("containerSpec") or {}
        port = free_port()
        env = {e["name"]: e.get("value", "") for e in c.get("env") or []}
        health = c.get("healthRoute") or "/ping"
        predict = c.get("predictRoute") or "/invocations"
        env.update({"AIP_HTTP_PORT": str(port), "SAGEMAKER_BIND_TO_PORT": str(port),
                    "AIP_HEALTH_ROUTE": health, "AIP_PREDICT_ROUTE": predict,
                    "AIP_DEPLOYED_MODEL_ID": did})
        if model.get("artifactUri"):
            env["AIP_STORAGE_URI"] = model["artifactUri"]
        suffix = "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(5))
        name = f"fake-vertex-{did}-{suffix}"
        cmd = ["docker", "run", "-d", "--pull", "never", "--network", "host", "--name", name,
               "--label", "dev.mlcd.fake-vertex=1"]
        for k, v in sorted(env.items()):
            cmd += ["-e", f"{k}={v}"]
        args = list(c.get("args") or [])
        if c.get("command"):
            cmd += ["--entrypoint", c["command"][0]]
            args = list(c["command"][1:]) + args
        cmd += [c.get("imageUri", ""), *args]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            return self._fail(gate, f"the container did not start: {e}")
        if p.returncode != 0:
            self.remove(name)
            detail = (p.stderr.strip().splitlines() or ["docker run failed"])[-1]
            return self._fail(gate, f"Model server failed to start: {detail}")
        self.containers[did] = {"name": name, "port": port, "predict": predict}
        deadline = time.time() + self.ready_seconds
        checks = 0
        while time.time() < deadline:
            if did not in self.containers:
                return
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", health)
                if conn.getresponse().status == 200:
                    gate["state"] = "ready"
                    return
            except OSError:
                pass
            checks += 1
            if checks % 5 == 0:
                q = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name],
                                   capture_output=True, text=True)
                if q.stdout.strip() != "true":
                    logs = subprocess.run(["docker", "logs", "--tail", "3", name], capture_output=True, text=True)
                    tail = " ".join((logs.stdout + logs.stderr).split())[-300:] or "no output"
                    self.stop(did)
                    return self._fail(gate, f"Model server exited unexpectedly. Model server logs: {tail}")
            time.sleep(0.2)
        self.stop(did)
        self._fail(gate, f"Model server never became ready: {health} did not answer 200 within {self.ready_seconds:g} s")

    @staticmethod
    def _fail(gate, message):
        gate["message"] = message
        gate["state"] = "failed"

    def predict(self, did, body, content_type):
        """(status, content type, body) of the container behind `did`."""
        c = self.containers.get(did)
        if c is None:
            return None
        conn = http.client.HTTPConnection("127.0.0.1", c["port"], timeout=60)
        conn.request("POST", c["predict"], body=body, headers={"Content-Type": content_type})
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type") or "application/json", r.read()

    def stop(self, did):
        c = self.containers.pop(did, None)
        if c:
            threading.Thread(target=self.remove, args=(c["name"],), daemon=True).start()

    @staticmethod
    def remove(name):
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)

    def shutdown(self):
        for did in list(self.containers):
            c = self.containers.pop(did)
            self.remove(c["name"])
