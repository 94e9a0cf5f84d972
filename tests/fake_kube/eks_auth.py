"""EKS bearer tokens checked the way aws-iam-authenticator's server checks them,
for the fake Kubernetes API server (tests only).

A token is `k8s-aws-v1.` + the unpadded base64url of an STS GetCallerIdentity URL
presigned with SigV4 (`aws eks get-token`). The real authenticator GETs that URL
from STS, which verifies the signature; moto's STS does not answer presigned GETs
(it routes them to S3 and checks no signature), so here the signature is verified
locally: the test hands the fake the access key pair it gave mlcd, and the URL is
signed again with botocore (the same code awscli's `eks get-token` uses) at the
URL's own X-Amz-Date, for the expected cluster, and must match byte for byte.
Also checked as the authenticator does: the host is an STS endpoint, Action and
Version, X-Amz-Expires=60 at most, the signed headers are host;x-k8s-aws-id, and
X-Amz-Date is within 15 minutes of now.
"""

import base64
import datetime
import threading
import urllib.parse
from unittest import mock

PREFIX = "k8s-aws-v1."
MAX_AGE = datetime.timedelta(minutes=15)
_lock = threading.Lock()


def presign(cfg, when):
    """The URL botocore presigns for cfg's cluster at `when` (a naive UTC datetime)."""
    import botocore.session

    s = botocore.session.get_session()
    s.set_credentials(cfg["access_key_id"], cfg["secret_access_key"], cfg.get("session_token"))
    c = s.create_client("sts", region_name=cfg["region"], endpoint_url=cfg["sts_endpoint"])
    c.meta.events.register("before-sign.sts.GetCallerIdentity",
                           lambda request, **kw: request.headers.__setitem__("x-k8s-aws-id", cfg["cluster"]))

    class Fixed(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return when

        @classmethod
        def now(cls, tz=None):
            return when.replace(tzinfo=tz) if tz else when

    with _lock, mock.patch("botocore.auth.datetime.datetime", Fixed):
        return c.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET")


def check(cfg, authorization, now=None):
    """None when `authorization` (the header's value) carries a valid token for
    cfg's cluster, else why not (the fake answers 401 with it)."""
    if not authorization or not authorization.startswith("Bearer "):
        return "no bearer token"
    token = authorization[len("Bearer "):].strip()
    if not token.startswith(PREFIX):
        return f"not an EKS token (no {PREFIX} prefix)"
    b = token[len(PREFIX):]
    if "=" in b:
        return "the token's base64 is padded (aws eks get-token strips the padding)"
    try:
        url = base64.urlsafe_b64decode(b + "=" * (-len(b) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return "the token is not base64url"
    u = urllib.parse.urlsplit(url)
    q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
    expected_host = urllib.parse.urlsplit(cfg["sts_endpoint"]).netloc
    if u.netloc != expected_host:
        return f"the URL's host is {u.netloc}, not the STS endpoint {expected_host}"
    if q.get("Action") != "GetCallerIdentity" or q.get("Version") != "2011-06-15":
        return "the URL is not STS GetCallerIdentity 2011-06-15"
    if q.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        return "not signed with AWS4-HMAC-SHA256"
    if q.get("X-Amz-SignedHeaders") != "host;x-k8s-aws-id":
        return f"signed headers are {q.get('X-Amz-SignedHeaders')!r}, not host;x-k8s-aws-id"
    try:
        expires = int(q.get("X-Amz-Expires", ""))
    except ValueError:
        return "no X-Amz-Expires"
    if not 0 < expires <= 60:
        return f"X-Amz-Expires is {expires}, not at most 60"
    try:
        when = datetime.datetime.strptime(q.get("X-Amz-Date", ""), "%Y%m%dT%H%M%SZ")
    except ValueError:
        return "no X-Amz-Date"
    now = now or datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    if now - when > MAX_AGE or when - now > datetime.timedelta(minutes=5):
        return f"the token was signed at {when}Z, more than 15 minutes from now ({now:%Y-%m-%dT%H:%M:%S}Z): expired"
    if url != presign(cfg, when):
        return "the signature does not match (wrong credentials, cluster or region)"
    return None
