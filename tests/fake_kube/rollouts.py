"""A scripted Argo Rollouts controller (v1.9.1's canary behaviour) for the fake API
server: Rollouts (argoproj.io/v1alpha1), validated against the pinned CRD like every
other object, their status written through the status subresource (so validated
against the CRD's status schema too).

What it plays, per Rollout, each tick:
  - the pod template's hash (`currentPodHash`) names a version; its first
    container runs for real on the Docker engine at DOCKER_HOST exactly as a KServe
    revision does (kserve.py's run_revision: `--network host`, PORT moved to a free
    port, ready once the readinessProbe path answers 200; failed when it cannot
    start, exits, or never answers within `ready_seconds`);
  - the first version, or a template equal to `stableRS` again (a rollback or a
    revert), goes straight to it as Argo Rollouts does: no steps, Healthy once its
    container is ready (Degraded if it never is);
  - a new template walks `spec.strategy.canary.steps` in order: `setWeight` waits for
    the canary's container to be ready (status.canary.weights); `pause` with a
    `duration` is phase Paused with a `PausedStep` pause condition until it is over;
    `pause: {}` stays Paused until someone clears `status.pauseConditions` (what
    `kubectl argo rollouts promote` patches) or sets `spec.paused: false`; after the
    last step the canary becomes stable (`stableRS` = `currentPodHash`), Healthy,
    and the old stable container is stopped;
  - a canary container that fails aborts the update: `status.abort`, phase Degraded,
    the message naming the revision and the container's failure, traffic back on
    the stable version (weights canary 0);
  - `spec.paused: true` alone is a manual pause (phase Paused, no steps taken).
Not played: analysis, experiments, traffic routers, blue-green, replica counts
beyond one pod per version.

Control: POST /_fake/rollouts {"name": rollout, "ready_seconds": N} sets how long
the next versions may take to become ready; GET /_fake/rollouts shows, per
Rollout, each version's hash, image, container state and port.
"""

import copy
import datetime
import hashlib
import json
import logging
import threading
import time

from kserve import Revision

log = logging.getLogger("fake-kube")


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_hash(template):
    """A stable short hash of a pod template, like the controller's pod-template-hash."""
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def seconds(duration):
    """A pause duration (int seconds or a string like `30s`, `2m`, `1h`) in seconds."""
    if isinstance(duration, int):
        return duration
    text = str(duration).strip()
    unit = {"s": 1, "m": 60, "h": 3600}.get(text[-1:])
    return int(text[:-1]) * unit if unit else int(text)


class State:
    """What the controller remembers of one Rollout (object uid)."""

    def __init__(self, uid):
        self.uid = uid
        self.versions = {}  # pod hash -> Revision (its container)
        self.pause_started = None  # time of the current step's pause
        self.promoted = False  # the indefinite pause of the current step was cleared


class Rollouts:
    def __init__(self, fake):
        self.fake = fake
        self.states = {}  # object key -> State
        self.knobs = {}  # rollout name -> {"ready_seconds"}

    # --- the controller (called under fake.lock)

    def tick(self):
        f = self.fake
        r = next((x for x in f.resources if x.kind == "Rollout"), None)
        if r is None:
            return
        keys = [k for k in f.objects if k[0] == r.group and k[1] == r.plural]
        for key in keys:
            try:
                self.step(r, key)
            except Exception as e:  # noqa: BLE001  the controller must not die
                log.exception("rollouts controller: %s", e)
        for key in [k for k in self.states if k not in keys]:
            self.stop_all(self.states.pop(key))

    def version(self, st, ns, name, h, template):
        rev = st.versions.get(h)
        if rev is None:
            containers = ((template or {}).get("spec") or {}).get("containers") or []
            # A Revision as kserve.py runs it: the container under `predictor`.
            rev = st.versions[h] = Revision(f"{name}-{h}", {"predictor": {"containers": containers[:1]}},
                                            len(st.versions) + 1)
            knob = dict(self.knobs.get(name) or {})
            knob.pop("broken", None)  # health comes from the real container only
            threading.Thread(target=self.fake.kserve.run_revision, args=(ns, rev, knob), daemon=True).start()
        return rev

    def step(self, r, key):
        f = self.fake
        obj = f.objects[key]
        ns, name = key[2], key[3]
        md, spec = obj["metadata"], obj.get("spec") or {}
        old = obj.get("status") or {}
        st = self.states.get(key)
        if st is None or st.uid != md["uid"]:
            if st is not None:
                self.stop_all(st)
            st = self.states[key] = State(md["uid"])
        h = pod_hash(spec.get("template"))
        steps = ((spec.get("strategy") or {}).get("canary") or {}).get("steps") or []
        status = {k: v for k, v in old.items() if k in ("stableRS", "currentStepIndex", "abort", "abortedAt",
                                                        "pauseConditions", "controllerPause", "message", "phase")}
        status["observedGeneration"] = str(md.get("generation", 1))
        status["currentPodHash"] = h
        status["selector"] = f"app={name}"
        stable = old.get("stableRS")
        if old.get("currentPodHash") != h:
            # A new template: start over from the first step (no pause, no abort).
            for k in ("abort", "abortedAt", "pauseConditions", "controllerPause", "message"):
                status.pop(k, None)
            status["currentStepIndex"] = 0
            st.pause_started, st.promoted = None, False
        rev = self.version(st, ns, name, h, spec.get("template"))
        direct = stable is None or stable == h
        if rev.state == "failed":
            status.update({"phase": "Degraded", "abort": not direct,
                           "message": f"RolloutAborted: Rollout aborted update to revision {h}: {rev.message}"
                           if not direct else f"ReplicaSet {name}-{h}: {rev.message}"})
            if direct:
                status.pop("abortedAt", None)
            else:
                status.setdefault("abortedAt", now())
            status.pop("pauseConditions", None)
            return self.write(r, key, obj, status, stable, h, 0, st)
        if status.get("abort"):
            return self.write(r, key, obj, status, stable, h, 0, st)
        if direct:
            status["currentStepIndex"] = len(steps)
            if rev.state == "ready":
                status.update({"phase": "Healthy", "stableRS": h})
                status.pop("message", None)
                self.retire(st, h)
            else:
                status.update({"phase": "Progressing", "message": "more replicas need to be updated"})
            return self.write(r, key, obj, status, h, h, 100, st)
        if spec.get("paused"):
            status.update({"phase": "Paused", "message": "manually paused"})
            return self.write(r, key, obj, status, stable, h, self.weight(steps, status), st)
        i = status.get("currentStepIndex", 0)
        while i < len(steps):
            s = steps[i]
            if "setWeight" in s:
                if rev.state != "ready":
                    status.update({"phase": "Progressing", "message": "more replicas need to be updated"})
                    break
                i += 1
                continue
            if "pause" in s:
                dur = (s.get("pause") or {}).get("duration")
                if st.pause_started is None:
                    st.pause_started = time.time()
                    status["pauseConditions"] = [{"reason": "PausedStep", "startTime": now()}]
                    status["controllerPause"] = True
                    status.update({"phase": "Paused", "message": "CanaryPauseStep"})
                    break
                cleared = old.get("currentStepIndex") == i and not old.get("pauseConditions")
                over = dur is not None and time.time() - st.pause_started >= seconds(dur)
                if over or cleared:
                    st.pause_started = None
                    for k in ("pauseConditions", "controllerPause"):
                        status.pop(k, None)
                    i += 1
                    continue
                status.update({"phase": "Paused", "message": "CanaryPauseStep"})
                break
            i += 1  # steps the fake does not play (analysis, experiment, ...) pass
        status["currentStepIndex"] = i
        if i >= len(steps):
            if rev.state == "ready":
                status.update({"phase": "Healthy", "stableRS": h})
                status.pop("message", None)
                self.retire(st, h)
                return self.write(r, key, obj, status, h, h, 100, st)
            status.update({"phase": "Progressing", "message": "more replicas need to be updated"})
        return self.write(r, key, obj, status, stable, h, self.weight(steps, status), st)

    @staticmethod
    def weight(steps, status):
        """The canary's weight: that of the last setWeight step reached."""
        w = 0
        for s in steps[: status.get("currentStepIndex", 0) + 1]:
            if "setWeight" in s:
                w = s["setWeight"]
        return w

    def write(self, r, key, obj, status, stable, h, weight, st):
        ready = 1 if (st.versions.get(h) and st.versions[h].state == "ready") else 0
        stable = status.get("stableRS") or stable
        status["canary"] = {"weights": {"canary": {"weight": weight, "podTemplateHash": h},
                                        "stable": {"weight": 100 - weight, "podTemplateHash": stable or h}}}
        status.update({"replicas": 1 if stable == h else 2, "updatedReplicas": 1,
                       "readyReplicas": ready, "availableReplicas": ready})
        old = obj.get("status") or {}
        if status == old:
            return
        new = copy.deepcopy(obj)
        new["status"] = status
        try:
            self.fake.write(r, key[2], new, method="CONTROLLER", path="rollouts/status", old=obj,
                            subresource="status")
        except Exception as e:  # noqa: BLE001  recorded as a violation by write()
            log.error("rollouts controller status refused: %s", e)

    def retire(self, st, keep):
        """Stops every version's container but `keep` (the new stable one)."""
        for h, rev in list(st.versions.items()):
            if h != keep:
                self.fake.kserve.stop(rev)
                del st.versions[h]

    def stop_all(self, st):
        for rev in st.versions.values():
            self.fake.kserve.stop(rev)

    def shutdown(self):
        """Removes every container this controller started (on exit)."""
        with self.fake.lock:
            names = [rev.container for st in self.states.values() for rev in st.versions.values() if rev.container]
            for st in self.states.values():
                for rev in st.versions.values():
                    rev.state, rev.container = "stopped", None
        for n in names:
            self.fake.kserve.remove(n)

    # --- control (HTTP handler threads, under fake.lock)

    def control(self, method, body):
        if method == "POST":
            self.knobs[body["name"]] = body
            return {}
        return {f"{k[2]}/{k[3]}": {h: {"name": rev.name, "state": rev.state, "message": rev.message,
                                       "port": rev.port, "container": rev.container,
                                       "image": (rev.template["predictor"]["containers"] or [{}])[0].get("image")}
                                   for h, rev in st.versions.items()}
                for k, st in self.states.items()}
