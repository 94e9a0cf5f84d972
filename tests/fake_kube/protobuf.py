"""Kubernetes' protobuf encoding, decoded for the few core objects kubectl sends that
way: `kubectl create secret|configmap|namespace` POST `application/vnd.kubernetes.protobuf`
(a real API server accepts it), whereas apply/edit/patch send JSON or YAML.

The envelope: the magic `k8s\\x00`, then a runtime.Unknown {1: typeMeta {1:
apiVersion, 2: kind}, 2: raw, 3: contentEncoding, 4: contentType}; raw is the object
(k8s.io/api/core/v1/generated.proto): Secret {1: metadata, 2: data map<string,bytes>,
3: type, 4: stringData map, 5: immutable}; ConfigMap {1: metadata, 2: data
map<string,string>, 3: binaryData map<string,bytes>, 4: immutable}; Namespace {1:
metadata}. ObjectMeta: 1 name, 2 generateName, 3 namespace, 11 labels, 12 annotations,
14 finalizers (the fields a client may set on create; others are ignored).
`decode` returns the object as the JSON the server would have received, or raises
ValueError naming what it cannot read.
"""

import base64

MAGIC = b"k8s\x00"


def fields(buf):
    """[(field number, wire type, value)] of one message (varints and length-delimited only)."""
    out, i = [], 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = varint(buf, i)
        elif wt == 2:
            n, i = varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wt == 1:
            val, i = buf[i:i + 8], i + 8
        elif wt == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"protobuf wire type {wt} of field {num} is not supported")
        out.append((num, wt, val))
    return out


def varint(buf, i):
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ValueError("protobuf: truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def entry(buf):
    """A map entry: (key, value bytes)."""
    kv = {n: v for n, _, v in fields(buf)}
    return kv.get(1, b"").decode(), kv.get(2, b"")


def metadata(buf):
    md = {}
    for num, _, val in fields(buf):
        if num in (1, 2, 3):
            md[{1: "name", 2: "generateName", 3: "namespace"}[num]] = val.decode()
        elif num in (11, 12):
            k, v = entry(val)
            md.setdefault("labels" if num == 11 else "annotations", {})[k] = v.decode()
        elif num == 14:
            md.setdefault("finalizers", []).append(val.decode())
    return md


def decode(body):
    if not body.startswith(MAGIC):
        raise ValueError("not Kubernetes protobuf (no k8s\\x00 prefix)")
    unknown = {n: v for n, _, v in fields(body[len(MAGIC):])}
    tm = {n: v.decode() for n, _, v in fields(unknown.get(1, b""))}
    api_version, kind = tm.get(1, ""), tm.get(2, "")
    obj = {"apiVersion": api_version, "kind": kind}
    raw = unknown.get(2, b"")
    if (api_version, kind) not in (("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "Namespace")):
        raise ValueError(f"the fake decodes protobuf only for v1 Secret, ConfigMap and Namespace, not {api_version} {kind}")
    for num, wt, val in fields(raw):
        if num == 1:
            obj["metadata"] = metadata(val)
        elif kind == "Secret" and num in (2, 4):
            k, v = entry(val)
            if num == 2:
                obj.setdefault("data", {})[k] = base64.b64encode(v).decode()
            else:
                obj.setdefault("stringData", {})[k] = v.decode()
        elif kind == "Secret" and num == 3:
            obj["type"] = val.decode()
        elif kind == "ConfigMap" and num == 2:
            k, v = entry(val)
            obj.setdefault("data", {})[k] = v.decode()
        elif kind == "ConfigMap" and num == 3:
            k, v = entry(val)
            obj.setdefault("binaryData", {})[k] = base64.b64encode(v).decode()
        elif num in (4, 5) and wt == 0:
            obj["immutable"] = bool(val)
    return obj
