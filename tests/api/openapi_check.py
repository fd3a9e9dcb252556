"""Validate real responses against scoring_api/openapi.yaml (JSON Schema 2020-12 via jsonschema)."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from scoring_api.app import OPENAPI

DOC_URI = "urn:imagegate:openapi"


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI.read_text())


@lru_cache(maxsize=1)
def _registry() -> Registry:
    """The document as one resource, and each component schema with an `$id` (ImageScored) as its own.

    JSON Schema 2020-12 (OpenAPI 3.1's dialect) makes an `$id` a new base URI, so ImageScored's
    `#/$defs/...` refer to its own `$defs`; `referencing` only sees that inside keywords it knows,
    not under `components`, so refs to such a component go to its `$id` (the same schema).
    """
    doc = copy.deepcopy(document())
    by_id = _ids()

    def retarget(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("$ref") in by_id:
                node["$ref"] = by_id[node["$ref"]]
            for v in node.values():
                retarget(v)
        elif isinstance(node, list):
            for v in node:
                retarget(v)

    retarget(doc)
    registry = Registry().with_resource(DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012))
    for s in doc["components"]["schemas"].values():
        if "$id" in s:
            registry = registry.with_resource(s["$id"], Resource.from_contents(s, default_specification=DRAFT202012))
    return registry


def _deref(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def validate_response(path: str, method: str, status: int, headers: dict[str, str], body: bytes) -> None:
    """Raise AssertionError / jsonschema.ValidationError unless the document describes this response."""
    op = document()["paths"][path][method.lower()]
    responses = op["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, which the document does not list"
    spec = _deref(responses[str(status)])
    for name, h in spec.get("headers", {}).items():
        if h.get("required"):
            assert name.lower() in headers, f"{method} {path} {status}: header {name} missing"
    ctype = headers.get("content-type", "").split(";")[0].strip()
    assert ctype in spec["content"], f"{method} {path} {status}: content type {ctype!r} not documented"
    schema = spec["content"][ctype]["schema"]
    if ctype == "application/json":
        validator = jsonschema.Draft202012Validator({"$ref": _uri_of(schema)}, registry=_registry())
        validator.validate(json.loads(body))
    else:
        assert schema == {"type": "string"} and body, f"{method} {path} {status}: expected a non-empty text body"


def _ids() -> dict[str, str]:
    return {f"#/components/schemas/{n}": s["$id"] for n, s in document()["components"]["schemas"].items() if "$id" in s}


def _uri_of(schema: dict[str, Any]) -> str:
    """Where the registry has this schema: a component's `$id`, or a pointer into the document."""
    if set(schema) == {"$ref"}:
        return _ids().get(schema["$ref"], DOC_URI + schema["$ref"])
    found = _find(document(), schema, "")
    assert found is not None
    return f"{DOC_URI}#{found}"


def _find(node: Any, target: Any, at: str) -> str | None:
    if node is target:
        return at
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)  # type: ignore[assignment]
    else:
        return None
    for k, v in items:
        hit = _find(v, target, f"{at}/{str(k).replace('~', '~0').replace('/', '~1')}")
        if hit is not None:
            return hit
    return None
