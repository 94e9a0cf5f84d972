"""The fake API server's kubelet (server.py --run-containers): the pods its
TrainJob/PyTorchJob controller creates run as REAL containers on the Docker engine
at DOCKER_HOST, the way a kubelet runs them, so that a test sees what a cluster's
node would do with mlcd's pod templates.

Per pod (one thread each):
  - volumes become host directories under the fake's temp root: `emptyDir` (fresh
    per pod), `configMap` and `secret` (one file per key, or the `items` asked for;
    a missing non-optional object keeps the pod Pending, ContainerCreating, with a
    FailedMount Event), `persistentVolumeClaim` (one directory per namespace/claim,
    kept for the fake's life; the claim object must exist). volumeMounts are bind
    mounts (`readOnly` → `:ro`, `subPath` → that entry, a directory created if
    missing). Other volume types keep the pod Pending, saying so.
  - env as the kubelet builds it: `envFrom` (configMapRef/secretRef, prefix,
    optional), then `env` (`value` with `$(VAR)` expansion, `secretKeyRef`,
    `configMapKeyRef`, `fieldRef`); a missing non-optional object or key leaves the
    container Waiting with reason CreateContainerConfigError and the kubelet's
    message (retried every second, as the kubelet does). Pods of an Indexed Job
    (label batch.kubernetes.io/job-completion-index) get JOB_COMPLETION_INDEX in
    every container; every container gets HOSTNAME = the pod's name.
  - resources.limits: memory → `--memory` (swap off), cpu → `--cpus`, so a
    container over its memory limit is OOM-killed by the engine (exit 137, reason
    OOMKilled); cpu capped at the host's count; requests and extended resources
    (nvidia.com/gpu) are not enforced.
  - order (KEP-753 native sidecars): initContainers in order, a regular one must
    exit 0 before the next starts (non-zero → the pod Failed, main containers never
    started); one with `restartPolicy: Always` is a sidecar: once it runs, the next
    starts. Then the main containers. When every main container has exited, the
    sidecars get SIGTERM in REVERSE order (`docker stop -t
    terminationGracePeriodSeconds`, default 30). Phase: Succeeded if every main
    container exited 0, else Failed; sidecars' exit codes do not count.
    Containers are never restarted (restartPolicy Never/OnFailure are both run once).
  - status: containerStatuses and initContainerStatuses (waiting with a reason,
    running, terminated with exitCode, reason Completed | Error | OOMKilled |
    StartError, startedAt/finishedAt, containerID, and `message` = the content of
    the container's terminationMessagePath, a host file bind-mounted there as the
    kubelet does (default /dev/termination-log; at most 4096 bytes);
    `terminationMessagePolicy: FallbackToLogsOnError` → the log's last 80 lines /
    2048 bytes when the file is empty and the exit non-zero), conditions
    PodScheduled, Initialized, ContainersReady, Ready. Every status write goes
    through the server's validated write path.
  - images are never pulled: an image the engine does not have leaves the container
    Waiting (ErrImageNeverPull with imagePullPolicy Never, else ErrImagePull),
    retried every 2 s.
  - logs: the container's real output (`docker logs`), for init containers and
    sidecars too, with tailLines, timestamps and sinceSeconds.
Containers run with `--network host` (no bridge on the test bed) and `--pull
never`, named `fake-kube-<ns>-<pod>-<container>-<uid>` and labelled
`dev.mlcd.fake-kube.kubelet=<this fake's tag>`. A deleted pod (a deleted or
suspended job, activeDeadlineSeconds) has its containers removed (`docker rm -f`)
and its directories deleted; at shutdown every container this fake started and its
temp root go too.

Control (server.py): GET /_fake/kubelet → {"pods": {"ns/pod": {"phase",
"containers": {name: docker container}, "volumes": {name: host dir}}}, "claims":
{"ns/claim": host dir}}; POST /_fake/kubelet {"namespace", "claim"} → {"path"}: the
claim's host directory (created), for a test to put data on a volume.
"""

import base64
import datetime
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

log = logging.getLogger("fake-kube")

LABEL = "dev.mlcd.fake-kube"
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
MAX_MESSAGE = 4096
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
POLL = 0.25


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def docker_time(text):
    """Docker's RFC 3339 (nanoseconds) → the API's seconds; None when unset."""
    if not text or text.startswith("0001-"):
        return None
    return text[:19] + "Z"


def expand(text, env):
    """Kubernetes' $(VAR) expansion: known names replaced, `$$` → `$`, the rest kept."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("$(", i):
            j = text.find(")", i)
            if j > 0 and text[i + 2:j] in env:
                out.append(env[text[i + 2:j]])
                i = j + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


QUANTITY = re.compile(r"^([0-9.]+(?:[eE][-+]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
SUFFIX = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity(text):
    """A Kubernetes resource quantity ("512Mi", "500m", "2") as a number."""
    m = QUANTITY.match(str(text))
    if not m:
        raise ValueError(f"not a quantity: {text!r}")
    return float(m.group(1)) * SUFFIX[m.group(2)]


def limits(spec):
    """docker run flags for the container's resources.limits, as the kubelet sets the cgroup."""
    lim = (spec.get("resources") or {}).get("limits") or {}
    out = []
    if "memory" in lim:
        mem = str(int(quantity(lim["memory"])))
        out += ["--memory", mem, "--memory-swap", mem]
    if "cpu" in lim:
        # Docker refuses more CPUs than the host has (an instance type may ask for 8).
        out += ["--cpus", f"{min(quantity(lim['cpu']), os.cpu_count() or 1):g}"]
    return out


def docker(*args, timeout=120):
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


class Waiting(Exception):
    """A container (or the whole pod, for volumes) cannot start yet: its reason and message."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason, self.message = reason, message


class Container:
    def __init__(self, spec, kind):
        self.spec, self.kind = spec, kind  # kind: init | sidecar | main
        self.name = spec["name"]
        self.docker = None  # the Docker container's name, once created
        self.id = ""
        self.image_id = ""
        self.state = {"waiting": {"reason": "PodInitializing"}}
        self.termination_file = None

    @property
    def running(self):
        return "running" in self.state

    @property
    def terminated(self):
        return "terminated" in self.state


class Pod:
    def __init__(self, ns, name, obj, root):
        self.ns, self.name = ns, name
        self.uid = obj["metadata"]["uid"]
        self.labels = dict(obj["metadata"].get("labels") or {})
        self.spec = obj["spec"]
        self.dir = os.path.join(root, "pods", f"{ns}_{name}_{self.uid[:8]}")
        self.volumes = {}  # name -> host path
        self.deleted = False
        self.phase = "Pending"
        self.started = None
        self.conditions = {}
        self.failed_mounts = set()
        self.containers = [Container(c, "sidecar" if c.get("restartPolicy") == "Always" else "init")
                           for c in self.spec.get("initContainers") or []]
        self.containers += [Container(c, "main") for c in self.spec.get("containers") or []]

    def container(self, name):
        return next((c for c in self.containers if c.name == name), None)


class Kubelet:
    def __init__(self, fake):
        self.fake = fake
        self.root = tempfile.mkdtemp(prefix="fake-kube-kubelet-")
        self.tag = uuid.uuid4().hex[:12]
        self.pods = {}  # (ns, name) -> Pod
        self.claims = {}  # (ns, claim) -> host dir

    # --- called by the server (under fake.lock)

    def start(self, ns, name):
        """Runs the stored pod `ns/name` on the engine (in a thread of its own)."""
        obj = self.fake.objects.get(("", "pods", ns, name))
        if obj is None:
            return
        pod = self.pods[(ns, name)] = Pod(ns, name, obj, self.root)
        threading.Thread(target=self.run, args=(pod,), daemon=True).start()

    def forget(self, ns, name):
        """The pod object was deleted: its containers and directories go."""
        pod = self.pods.pop((ns, name), None)
        if pod is not None:
            pod.deleted = True
            threading.Thread(target=self.cleanup, args=(pod,), daemon=True).start()

    def control(self, method, body):
        if method == "POST":
            return {"path": self.claim_dir(body.get("namespace") or "default", body["claim"])}
        return {"pods": {f"{ns}/{name}": {"phase": p.phase,
                                          "containers": {c.name: c.docker for c in p.containers},
                                          "volumes": dict(p.volumes)}
                         for (ns, name), p in self.pods.items()},
                "claims": {f"{ns}/{c}": d for (ns, c), d in self.claims.items()}}

    def shutdown(self):
        """Removes every container this fake started, and its temp root (on exit)."""
        with self.fake.lock:
            for pod in self.pods.values():
                pod.deleted = True
            self.pods.clear()
        ids = docker("ps", "-aq", "--filter", f"label={LABEL}.kubelet={self.tag}").stdout.split()
        if ids:
            docker("rm", "-f", *ids)
        shutil.rmtree(self.root, ignore_errors=True)

    # --- logs (an HTTP handler thread, NOT under the lock)

    def logs(self, ns, name, container, query):
        """(HTTP status, text) for GET pods/<name>/log."""
        with self.fake.lock:
            pod = self.pods.get((ns, name))
            if pod is None:
                return None
            c = pod.container(container or (self.main(pod)[0].name if self.main(pod) else ""))
            if c is None:
                return 400, f"container {container} is not valid for pod {name}"
            if c.docker is None or "waiting" in c.state:
                reason = (c.state.get("waiting") or {}).get("reason", "ContainerCreating")
                return 400, f"container \"{c.name}\" in pod \"{name}\" is waiting to start: {reason}"
            target = c.docker
        args = ["docker", "logs"]
        if query.get("timestamps") in ("true", "1"):
            args.append("--timestamps")
        if query.get("tailLines"):
            args += ["--tail", str(int(query["tailLines"]))]
        if query.get("sinceSeconds"):
            args += ["--since", f"{int(query['sinceSeconds'])}s"]
        p = subprocess.run(args + [target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        return 200, p.stdout.decode(errors="replace")

    @staticmethod
    def main(pod):
        return [c for c in pod.containers if c.kind == "main"]

    # --- one pod's life (its own thread)

    def run(self, pod):
        try:
            self.live(pod)
        except Exception as e:  # noqa: BLE001  the kubelet must not die with a pod
            log.exception("kubelet: pod %s/%s: %s", pod.ns, pod.name, e)

    def live(self, pod):
        pod.started = now()
        self.publish(pod)
        while not self.mount_volumes(pod):
            if self.sleep(pod, 1):
                return
        for c in [c for c in pod.containers if c.kind != "main"]:
            if not self.start_container(pod, c):
                return
            if c.kind == "sidecar":
                continue
            if not self.wait_exited(pod, [c]):
                return
            if c.state["terminated"]["exitCode"] != 0:
                for m in self.main(pod):
                    m.state = {"waiting": {"reason": "PodInitializing"}}
                self.stop_sidecars(pod)
                pod.phase = "Failed"
                self.publish(pod)
                return
        for c in self.main(pod):
            c.state = {"waiting": {"reason": "ContainerCreating"}}
        for c in self.main(pod):
            if not self.start_container(pod, c):
                return
        if not self.wait_exited(pod, self.main(pod)):
            return
        self.stop_sidecars(pod)
        pod.phase = "Succeeded" if all(c.state["terminated"]["exitCode"] == 0 for c in self.main(pod)) else "Failed"
        self.publish(pod)

    def sleep(self, pod, seconds):
        """Waits; True when the pod was deleted meanwhile."""
        end = time.time() + seconds
        while time.time() < end:
            if pod.deleted:
                return True
            time.sleep(min(POLL, max(0.0, end - time.time())))
        return pod.deleted

    # --- volumes

    def claim_dir(self, ns, claim):
        d = self.claims.get((ns, claim))
        if d is None:
            d = self.claims[(ns, claim)] = os.path.join(self.root, "claims", ns, claim)
            os.makedirs(d, exist_ok=True)
        return d

    def mount_volumes(self, pod):
        """Makes the pod's volumes; False (pod stays Pending, an Event says why) if one cannot be."""
        with self.fake.lock:
            for v in pod.spec.get("volumes") or []:
                if v["name"] in pod.volumes:
                    continue
                try:
                    pod.volumes[v["name"]] = self.volume(pod, v)
                except Waiting as w:
                    for c in pod.containers:
                        c.state = {"waiting": {"reason": "ContainerCreating"}}
                    self.publish(pod)
                    if v["name"] not in pod.failed_mounts:
                        pod.failed_mounts.add(v["name"])
                        self.event(pod, "FailedMount", f"MountVolume.SetUp failed for volume \"{v['name']}\" : {w.message}")
                    return False
        return True

    def volume(self, pod, v):
        path = os.path.join(pod.dir, "volumes", v["name"])
        if "emptyDir" in v:
            os.makedirs(path, exist_ok=True)
            return path
        if "configMap" in v or "secret" in v:
            src = v.get("configMap") or v.get("secret")
            is_secret = "secret" in v
            name = src.get("secretName") if is_secret else src.get("name")
            obj = self.fake.objects.get(("", "secrets" if is_secret else "configmaps", pod.ns, name))
            if obj is None and not src.get("optional"):
                raise Waiting("ContainerCreating", f"{'secret' if is_secret else 'configmap'} \"{name}\" not found")
            files = self.data_of(obj, is_secret) if obj else {}
            os.makedirs(path, exist_ok=True)
            items = src.get("items")
            if items:
                for it in items:
                    if it["key"] not in files:
                        if src.get("optional"):
                            continue
                        kind = "Secret" if is_secret else "ConfigMap"
                        raise Waiting("ContainerCreating", f"configmap references non-existent config key: {it['key']}"
                                      if kind == "ConfigMap" else f"references non-existent secret key: {it['key']}")
                    self.write_file(os.path.join(path, it["path"]), files[it["key"]])
            else:
                for k, data in files.items():
                    self.write_file(os.path.join(path, k), data)
            return path
        if "persistentVolumeClaim" in v:
            claim = v["persistentVolumeClaim"]["claimName"]
            if ("", "persistentvolumeclaims", pod.ns, claim) not in self.fake.objects:
                raise Waiting("ContainerCreating", f"persistentvolumeclaim \"{claim}\" not found")
            return self.claim_dir(pod.ns, claim)
        kind = next((k for k in v if k != "name"), "?")
        raise Waiting("ContainerCreating", f"the fake kubelet does not mount {kind} volumes "
                      "(emptyDir, configMap, secret and persistentVolumeClaim only)")

    @staticmethod
    def data_of(obj, is_secret):
        """key → bytes of a ConfigMap's data/binaryData or a Secret's data."""
        out = {}
        if is_secret:
            for k, v in (obj.get("data") or {}).items():
                out[k] = base64.b64decode(v)
        else:
            for k, v in (obj.get("data") or {}).items():
                out[k] = v.encode()
            for k, v in (obj.get("binaryData") or {}).items():
                out[k] = base64.b64decode(v)
        return out

    @staticmethod
    def write_file(path, data):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    # --- env

    def env_of(self, pod, spec):
        """The container's environment, in order; Waiting(CreateContainerConfigError) when a reference is missing."""
        env = {}

        def lookup(kind, name, optional):
            obj = self.fake.objects.get(("", "secrets" if kind == "Secret" else "configmaps", pod.ns, name))
            if obj is None and not optional:
                raise Waiting("CreateContainerConfigError", f"{kind.lower()} \"{name}\" not found")
            return self.data_of(obj, kind == "Secret") if obj else None

        for src in spec.get("envFrom") or []:
            ref, kind = (src["secretRef"], "Secret") if "secretRef" in src else (src.get("configMapRef") or {}, "ConfigMap")
            data = lookup(kind, ref.get("name"), ref.get("optional"))
            for k, v in (data or {}).items():
                env[src.get("prefix", "") + k] = v.decode(errors="replace")
        for e in spec.get("env") or []:
            vf = e.get("valueFrom")
            if not vf:
                env[e["name"]] = expand(e.get("value", ""), env)
                continue
            if "secretKeyRef" in vf or "configMapKeyRef" in vf:
                ref, kind = (vf["secretKeyRef"], "Secret") if "secretKeyRef" in vf else (vf["configMapKeyRef"], "ConfigMap")
                data = lookup(kind, ref.get("name"), ref.get("optional"))
                if data is None:
                    continue
                if ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    raise Waiting("CreateContainerConfigError", f"couldn't find key {ref['key']} in {kind} {pod.ns}/{ref.get('name')}")
                env[e["name"]] = data[ref["key"]].decode(errors="replace")
            elif "fieldRef" in vf:
                env[e["name"]] = self.field(pod, vf["fieldRef"]["fieldPath"])
            else:
                raise Waiting("CreateContainerConfigError",
                              f"env {e['name']}: the fake kubelet resolves value, secretKeyRef, configMapKeyRef and fieldRef only")
        if INDEX_LABEL in pod.labels:
            env.setdefault("JOB_COMPLETION_INDEX", pod.labels[INDEX_LABEL])
        env.setdefault("HOSTNAME", pod.name)
        return env

    def field(self, pod, path):
        obj = self.fake.objects.get(("", "pods", pod.ns, pod.name)) or {}
        md = obj.get("metadata") or {}
        simple = {"metadata.name": pod.name, "metadata.namespace": pod.ns, "metadata.uid": pod.uid,
                  "spec.nodeName": "fake-node", "spec.serviceAccountName": pod.spec.get("serviceAccountName", "default"),
                  "status.hostIP": "127.0.0.1", "status.podIP": "127.0.0.1", "status.podIPs": "127.0.0.1"}
        if path in simple:
            return simple[path]
        m = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
        if m:
            return (md.get(m.group(1)) or {}).get(m.group(2), "")
        raise Waiting("CreateContainerConfigError", f"unsupported fieldRef {path!r} in the fake kubelet")

    # --- containers

    def start_container(self, pod, c):
        """Creates and starts `c` (retrying while it must wait); False if the pod went away."""
        spec = c.spec
        while True:
            with self.fake.lock:
                if pod.deleted:
                    return False
                try:
                    env = self.env_of(pod, spec)
                except Waiting as w:
                    env = None
                    self.set_waiting(pod, c, w)
            if env is None:
                if self.sleep(pod, 1):
                    return False
                continue
            image = spec.get("image", "")
            found = docker("image", "inspect", "--format", "{{.Id}}", image)
            if found.returncode != 0:
                if spec.get("imagePullPolicy") == "Never":
                    w = Waiting("ErrImageNeverPull", f"Container image \"{image}\" is not present with pull policy of Never")
                else:
                    w = Waiting("ErrImagePull", f"the fake kubelet never pulls: image \"{image}\" is not on the Docker engine "
                                "at DOCKER_HOST (build or load it there first)")
                with self.fake.lock:
                    self.set_waiting(pod, c, w)
                if self.sleep(pod, 2):
                    return False
                continue
            c.image_id = found.stdout.strip()
            break
        c.docker = f"fake-kube-{pod.ns}-{pod.name}-{c.name}-{pod.uid[:6]}"[:200]
        c.termination_file = os.path.join(pod.dir, "termination", c.name)
        os.makedirs(os.path.dirname(c.termination_file), exist_ok=True)
        with open(c.termination_file, "w", encoding="utf-8"):
            pass
        os.chmod(c.termination_file, 0o666)
        cmd = ["create", "--pull", "never", "--network", "host", "--name", c.docker,
               "--label", f"{LABEL}=1", "--label", f"{LABEL}.kubelet={self.tag}",
               "--label", f"{LABEL}.pod={pod.ns}/{pod.name}",
               "-v", f"{c.termination_file}:{spec.get('terminationMessagePath') or DEFAULT_TERMINATION_PATH}"]
        for k, v in env.items():
            cmd += ["-e", f"{k}={v}"]
        try:
            cmd += self.mounts(pod, spec)
        except Waiting as w:
            with self.fake.lock:
                self.set_waiting(pod, c, w)
            return False
        if spec.get("workingDir"):
            cmd += ["-w", spec["workingDir"]]
        cmd += limits(spec)
        sc = spec.get("securityContext") or {}
        if "runAsUser" in sc:
            cmd += ["--user", f"{sc['runAsUser']}" + (f":{sc['runAsGroup']}" if "runAsGroup" in sc else "")]
        args = [expand(a, env) for a in spec.get("args") or []]
        if spec.get("command"):
            command = [expand(a, env) for a in spec["command"]]
            cmd += ["--entrypoint", command[0]]
            args = command[1:] + args
        cmd += [spec["image"], *args]
        created = docker(*cmd)
        with self.fake.lock:
            if pod.deleted:
                threading.Thread(target=docker, args=("rm", "-f", c.docker), daemon=True).start()
                return False
        if created.returncode != 0:
            return self.start_error(pod, c, created.stderr)
        c.id = created.stdout.strip()
        started = docker("start", c.docker)
        if started.returncode != 0:
            return self.start_error(pod, c, started.stderr)
        with self.fake.lock:
            c.state = {"running": {"startedAt": now()}}
            if c.kind == "main" and all(m.running for m in self.main(pod)):
                pod.phase = "Running"
            self.publish(pod)
        return True

    def start_error(self, pod, c, stderr):
        """The runtime could not start the container: terminated, exit 128, StartError (then the pod fails)."""
        detail = (stderr.strip().splitlines() or ["docker could not start the container"])[-1]
        with self.fake.lock:
            c.state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": detail,
                                      "startedAt": now(), "finishedAt": now()}}
            if c.kind == "init":
                for m in self.main(pod):
                    m.state = {"waiting": {"reason": "PodInitializing"}}
            self.publish(pod)
        if c.kind == "sidecar":
            return True
        if c.kind == "init":
            self.stop_sidecars(pod)
            with self.fake.lock:
                pod.phase = "Failed"
                self.publish(pod)
            return False
        return True

    def mounts(self, pod, spec):
        out = []
        for m in spec.get("volumeMounts") or []:
            host = pod.volumes.get(m["name"])
            if host is None:
                raise Waiting("CreateContainerConfigError", f"volume {m['name']!r} is not mounted")
            if m.get("subPath"):
                host = os.path.join(host, m["subPath"])
                if not os.path.exists(host):
                    os.makedirs(host, exist_ok=True)
            out += ["-v", f"{host}:{m['mountPath']}" + (":ro" if m.get("readOnly") else "")]
        return out

    def wait_exited(self, pod, containers):
        """Polls the engine until every one of `containers` has exited (publishing each exit); False if the pod went away."""
        while True:
            if pod.deleted:
                return False
            live = [c for c in containers if not c.terminated and c.docker]
            if not live:
                return True
            p = docker("inspect", "--format", "{{json .State}}", *[c.docker for c in live], timeout=60)
            states = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
            changed = False
            for c, st in zip(live, states):
                if st.get("Status") in ("exited", "dead"):
                    self.record_exit(pod, c, st)
                    changed = True
            if changed:
                with self.fake.lock:
                    if pod.deleted:
                        return False
                    self.publish(pod)
            elif self.sleep(pod, POLL):
                return False

    def record_exit(self, pod, c, st):
        code = int(st.get("ExitCode", 0))
        reason = "OOMKilled" if st.get("OOMKilled") else ("Completed" if code == 0 else "Error")
        term = {"exitCode": code, "reason": reason, "containerID": f"docker://{c.id}",
                "startedAt": docker_time(st.get("StartedAt")) or now(),
                "finishedAt": docker_time(st.get("FinishedAt")) or now()}
        try:
            with open(c.termination_file, "rb") as f:
                message = f.read(MAX_MESSAGE).decode(errors="replace")
        except OSError:
            message = ""
        if not message and code != 0 and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            p = subprocess.run(["docker", "logs", "--tail", str(FALLBACK_LINES), c.docker],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
            message = p.stdout[-FALLBACK_BYTES:].decode(errors="replace")
        if message:
            term["message"] = message
        c.state = {"terminated": term}

    def stop_sidecars(self, pod):
        """SIGTERM to the running sidecars in reverse order, each given the pod's grace period."""
        grace = int(pod.spec.get("terminationGracePeriodSeconds", 30))
        for c in reversed([c for c in pod.containers if c.kind == "sidecar"]):
            if pod.deleted or not c.running:
                continue
            docker("stop", "-t", str(grace), c.docker, timeout=grace + 60)
            st = docker("inspect", "--format", "{{json .State}}", c.docker)
            if st.returncode == 0:
                self.record_exit(pod, c, json.loads(st.stdout))
            with self.fake.lock:
                if not pod.deleted:
                    self.publish(pod)

    def cleanup(self, pod):
        with self.fake.lock:
            names = [c.docker for c in pod.containers if c.docker]
        if names:
            docker("rm", "-f", *names)
        shutil.rmtree(pod.dir, ignore_errors=True)

    # --- status (under fake.lock)

    def set_waiting(self, pod, c, w):
        want = {"waiting": {"reason": w.reason, "message": w.message}}
        if c.state != want:
            c.state = want
            self.publish(pod)

    def publish(self, pod):
        """Writes the pod's status through the server's validated write path."""
        key = ("", "pods", pod.ns, pod.name)
        with self.fake.lock:
            old = self.fake.objects.get(key)
            if old is None or pod.deleted:
                return
            inits = [c for c in pod.containers if c.kind != "main"]
            mains = self.main(pod)
            initialized = all(c.terminated and c.state["terminated"]["exitCode"] == 0 if c.kind == "init" else
                              (c.running or c.terminated) for c in inits)
            ready = pod.phase == "Running" and all(c.running for c in mains + [s for s in inits if s.kind == "sidecar"])
            done = pod.phase in ("Succeeded", "Failed")
            conds = [("PodScheduled", True, None), ("Initialized", initialized, None if initialized else "ContainersNotInitialized"),
                     ("ContainersReady", ready, None if ready else ("PodCompleted" if done else "ContainersNotReady")),
                     ("Ready", ready, None if ready else ("PodCompleted" if done else "ContainersNotReady"))]
            out = []
            for t, ok, reason in conds:
                status = "True" if ok else "False"
                prev = pod.conditions.get(t)
                if prev is None or prev["status"] != status:
                    prev = pod.conditions[t] = {"type": t, "status": status, "lastTransitionTime": now()}
                    if reason:
                        prev["reason"] = reason
                out.append(dict(prev))
            st = {"phase": pod.phase, "conditions": out, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                  "startTime": pod.started or now(), "qosClass": "BestEffort",
                  "containerStatuses": [self.container_status(c) for c in mains]}
            if inits:
                st["initContainerStatuses"] = [self.container_status(c) for c in inits]
            pod_obj = json.loads(json.dumps(old))
            pod_obj["status"] = st
            try:
                self.fake.write(self.fake.by_path[("", "v1", "pods")], pod.ns, pod_obj, method="KUBELET",
                                path=f"pods/{pod.name}/status", old=old, subresource="status")
            except Exception as e:  # noqa: BLE001  recorded as a violation by the write path
                log.error("kubelet: status of pod %s/%s refused: %s", pod.ns, pod.name, e)

    @staticmethod
    def container_status(c):
        st = {"name": c.name, "image": c.spec.get("image", ""), "imageID": c.image_id,
              "ready": c.running, "restartCount": 0, "started": c.running, "state": c.state}
        if c.id:
            st["containerID"] = f"docker://{c.id}"
        return st

    def event(self, pod, reason, message):
        f = self.fake
        ev = {"apiVersion": "v1", "kind": "Event",
              "metadata": {"name": f"{pod.name}.{uuid.uuid4().hex[:12]}", "namespace": pod.ns},
              "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod.name, "namespace": pod.ns, "uid": pod.uid},
              "reason": reason, "type": "Warning", "count": 1, "message": message,
              "firstTimestamp": now(), "lastTimestamp": now(), "source": {"component": "kubelet", "host": "fake-node"}}
        try:
            f.write(f.by_path[("", "v1", "events")], pod.ns, ev, method="KUBELET", path="events")
        except Exception as e:  # noqa: BLE001
            log.error("kubelet: event refused: %s", e)
