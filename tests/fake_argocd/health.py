"""Health of Kubernetes objects as Argo CD's health checks judge them, for the fake
Argo CD (server.py). Each check reads only the object's own status, as Argo CD's
do (its built-in Go checks for Deployment, its Lua resource customizations for
serving.kserve.io/InferenceService and argoproj.io/Rollout), and returns
(status, message) or None for kinds Argo CD has no health check for.

Statuses and their order (the application's health is its worst resource's),
as Argo CD's health.IsWorse ranks them: Healthy < Suspended < Progressing <
Missing < Degraded < Unknown.
"""

ORDER = ["Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown"]


def worst(statuses):
    """The worst of some statuses (Healthy when there are none)."""
    return max(statuses, key=ORDER.index, default="Healthy")


def _generation_observed(obj):
    st = obj.get("status") or {}
    gen = (obj.get("metadata") or {}).get("generation")
    # A Rollout's status.observedGeneration is a string (its CRD says so).
    return gen is None or int(st.get("observedGeneration") or 0) >= gen


def inference_service(obj):
    """KServe InferenceService: Ready=True → Healthy; Ready=False (RevisionFailed
    and the like) or a model transition that failed → Degraded; else Progressing."""
    st = obj.get("status") or {}
    model = (st.get("modelStatus") or {}).get("transitionStatus")
    if model not in (None, "UpToDate", "InProgress"):
        return "Degraded", f"transitionStatus: {model}"
    conds = {c.get("type"): c for c in st.get("conditions") or []}
    ready = conds.get("Ready")
    if ready is None:
        return "Progressing", "Waiting for InferenceService to report status..."
    why = " | ".join(x for x in (ready.get("reason"), ready.get("message")) if x)
    if ready.get("status") == "False":
        return "Degraded", f"Ready: False | {why}" if why else "Ready: False"
    if ready.get("status") == "True" and model != "InProgress":
        return "Healthy", "InferenceService is healthy."
    return "Progressing", f"Ready: {ready.get('status')} | {why}" if why else "Progressing"


def deployment(obj):
    """apps/v1 Deployment, as Argo CD's getAppsv1DeploymentHealth."""
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    if spec.get("paused"):
        return "Suspended", "Deployment is paused"
    if not _generation_observed(obj):
        return "Progressing", "Waiting for rollout to finish: observed deployment generation less than desired generation"
    for c in st.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return "Degraded", f'Deployment "{obj["metadata"]["name"]}" exceeded its progress deadline'
    replicas = spec.get("replicas", 1)
    updated = st.get("updatedReplicas", 0)
    if updated < replicas:
        return "Progressing", f"Waiting for rollout to finish: {updated} out of {replicas} new replicas have been updated..."
    if st.get("replicas", 0) > updated:
        return "Progressing", f"Waiting for rollout to finish: {st.get('replicas', 0) - updated} old replicas are pending termination..."
    if st.get("availableReplicas", 0) < updated:
        return "Progressing", f"Waiting for rollout to finish: {st.get('availableReplicas', 0)} of {updated} updated replicas are available..."
    return "Healthy", ""


def rollout(obj):
    """argoproj.io Rollout: its own status.phase (Argo CD's Lua check)."""
    st = obj.get("status") or {}
    if not _generation_observed(obj):
        return "Progressing", "Waiting for rollout spec update to be observed"
    if st.get("abort"):
        return "Degraded", st.get("message") or "Rollout aborted"
    phase = st.get("phase")
    if phase in ("Healthy", "Degraded", "Progressing"):
        return phase, st.get("message") or ""
    if phase == "Paused":
        return "Suspended", st.get("message") or "Rollout is paused"
    return "Progressing", "Waiting for rollout to report status"


CHECKS = {
    ("serving.kserve.io", "InferenceService"): inference_service,
    ("apps", "Deployment"): deployment,
    ("argoproj.io", "Rollout"): rollout,
}


def check(obj):
    """(status, message) of `obj`, or None when Argo CD has no check for its kind."""
    group = obj.get("apiVersion", "").rpartition("/")[0]
    fn = CHECKS.get((group, obj.get("kind")))
    return fn(obj) if fn else None
