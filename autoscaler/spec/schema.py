"""The CRD's OpenAPI v3 schema, generated from the pydantic document model.

Kubernetes wants a *structural* schema: every node typed, no `$ref`, no `anyOf` at the type
level, `nullable` instead of `null` branches, `x-kubernetes-int-or-string` for int-or-string
fields. Generating it here keeps the CRD in `manifests/` and the validator in one source;
a test checks that the committed CRD equals this output.
"""

from __future__ import annotations

from typing import Any

from autoscaler.spec.model import DocumentModel

_DROP = {"title", "default", "discriminator", "additionalProperties"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key == "$defs":
            continue
        if key == "properties":
            out[key] = {name: _resolve(v, defs) for name, v in value.items()}
        else:
            out[key] = _resolve(value, defs)
    return _structural(out)


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    # JSON Schema 2020 numeric exclusive bounds -> OpenAPI v3.0 boolean form (Kubernetes).
    for excl, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(excl), (int, float)) and not isinstance(node.get(excl), bool):
            node[bound] = node[excl]
            node[excl] = True
    branches = node.get("anyOf")
    if branches is None:
        if node.get("const") is not None and "type" not in node:
            node["type"] = "string"
        if "const" in node:
            node["enum"] = [node.pop("const")]
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    non_null = [b for b in branches if b.get("type") != "null"]
    nullable = len(non_null) != len(branches)
    types = {b.get("type") for b in non_null}
    if len(non_null) == 1:
        merged = {**non_null[0], **rest}
    elif types <= {"integer", "string"}:
        merged = {**rest, "x-kubernetes-int-or-string": True}
        for b in non_null:  # keep bounds of the integer branch, enum of the string branch as doc
            for k in ("minimum", "maximum"):
                if k in b:
                    merged[k] = b[k]
        merged.pop("type", None)
    else:
        raise ValueError(f"cannot express union {branches!r} as a structural schema")
    if nullable:
        merged["nullable"] = True
    return merged


def openapi_schema() -> dict[str, Any]:
    """openAPIV3Schema for `servingautoscalers.autoscaling.tfserving.dev` v1alpha1."""
    raw = DocumentModel.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema: dict[str, Any] = _resolve(raw, defs)
    props = schema["properties"]
    # metadata is validated by the API server itself; status is ours to write (free-form).
    props["metadata"] = {"type": "object"}
    props["status"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema["required"] = [r for r in schema.get("required", []) if r != "metadata"]
    schema.pop("additionalProperties", None)
    return schema
