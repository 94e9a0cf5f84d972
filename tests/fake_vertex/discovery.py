"""Validation of JSON bodies against Google discovery-document schemas (the pinned
subset in fixtures/google/), as the fake Vertex AI uses it for every request it
receives and every response it sends.

Rules (from the discovery format and Google's JSON mapping of protobuf):
  * unknown members are refused (`additionalProperties` only where the schema has it);
  * `type` string / integer / number / boolean / object / array checked; `format`
    int64 / uint64 / fixed64 must be JSON strings of digits (proto3 JSON mapping),
    int32 / uint32 JSON integers, `google-duration` like "123s" or "1.5s",
    `google-datetime` RFC 3339, `byte` base64;
  * `enum` values checked;
  * in a request body of a create/upload/deploy (`mode="create"`), members whose
    schema says `readOnly` (output only) are refused, and members whose description
    starts with "Required." must be present (the discovery format has no `required`
    list: Google writes it into the description, as the field behaviour annotation).
Each problem is a (path, message) pair.
"""

import base64
import json
import os
import re

DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
INT64 = re.compile(r"^-?\d+$")


class Document:
    """One discovery document: its methods by dotted id and its schemas."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.doc = json.load(f)
        self.schemas = self.doc["schemas"]
        self.methods = {}
        self._collect(self.doc, [])

    def _collect(self, node, path):
        for name, m in node.get("methods", {}).items():
            self.methods[".".join(path + [name])] = m
        for name, r in node.get("resources", {}).items():
            self._collect(r, path + [name])

    def method(self, dotted):
        return self.methods[dotted]

    def validate(self, value, ref, mode="request"):
        """Problems of `value` against schema `ref`; mode: request | create | response."""
        problems = []
        self._check(value, {"$ref": ref}, "", mode, problems, depth=0)
        return problems

    def _check(self, v, schema, path, mode, out, depth):
        if depth > 40:
            return
        if "$ref" in schema:
            schema = self.schemas[schema["$ref"]]
        where = path or "(body)"
        t = schema.get("type")
        fmt = schema.get("format")
        if t == "object":
            if not isinstance(v, dict):
                out.append((where, f"expected an object, got {json.dumps(v)[:60]}"))
                return
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for k, item in v.items():
                p = f"{path}.{k}" if path else k
                if k in props:
                    sub = props[k]
                    if mode == "create" and sub.get("readOnly"):
                        out.append((p, "is output only and cannot be set in a request"))
                        continue
                    self._check(item, sub, p, mode, out, depth + 1)
                elif extra is not None:
                    self._check(item, extra, p, mode, out, depth + 1)
                else:
                    out.append((p, f"unknown field (the schema {schema.get('id', '?')} has no `{k}`)"))
            if mode == "create":
                for k, sub in props.items():
                    d = sub.get("description", "")
                    if d.startswith("Required.") and k not in v:
                        out.append((f"{path}.{k}" if path else k, "is required"))
            return
        if t == "array":
            if not isinstance(v, list):
                out.append((where, "expected an array"))
                return
            for i, item in enumerate(v):
                self._check(item, schema.get("items", {}), f"{path}[{i}]", mode, out, depth + 1)
            return
        if t == "string":
            if not isinstance(v, str):
                kind = "int64 values are JSON strings" if fmt in ("int64", "uint64", "fixed64") else "expected a string"
                out.append((where, f"{kind}, got {json.dumps(v)[:60]}"))
                return
            if fmt in ("int64", "uint64", "fixed64") and not INT64.match(v):
                out.append((where, f"`{v}` is not an integer"))
            elif fmt == "google-duration" and not DURATION.match(v):
                out.append((where, f"`{v}` is not a duration (expected seconds with an `s`, like \"3600s\")"))
            elif fmt == "google-datetime" and not DATETIME.match(v):
                out.append((where, f"`{v}` is not an RFC 3339 timestamp"))
            elif fmt == "byte":
                try:
                    base64.b64decode(v.replace("-", "+").replace("_", "/") + "==", validate=False)
                except Exception:  # pragma: no cover
                    out.append((where, "not base64"))
            enum = schema.get("enum")
            if enum and v not in enum:
                out.append((where, f"`{v}` is not one of {', '.join(enum)}"))
            return
        if t == "integer":
            if isinstance(v, bool) or not isinstance(v, int):
                out.append((where, f"expected an integer, got {json.dumps(v)[:60]}"))
            return
        if t == "number":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                out.append((where, f"expected a number, got {json.dumps(v)[:60]}"))
            return
        if t == "boolean":
            if not isinstance(v, bool):
                out.append((where, "expected true or false"))
            return
        if t == "any" or t is None:
            return


def load_all(folder):
    """The documents by short name (aiplatform, sts, iamcredentials, logging, storage)."""
    return {
        name.split(".")[0]: Document(os.path.join(folder, name))
        for name in ("aiplatform.v1.json", "sts.v1.json", "iamcredentials.v1.json", "logging.v2.json",
                     "storage.v1.json")
    }
