"""The checked-in OpenAPI document and the app agree (responses are validated in every other test here)."""

from __future__ import annotations

import json

import pytest
from starlette.routing import Route

from tests.api.openapi_check import document
from tests.harness import REPO, json_refs


def test_the_embedded_image_scored_schema_is_the_contracts():
    on_disk = json.loads((REPO / "deploy" / "schemas" / "image_scored.v1.schema.json").read_text())
    assert document()["components"]["schemas"]["ImageScored"] == on_disk


def test_every_ref_resolves():
    doc = document()

    found = [r for r in json_refs(doc) if r.startswith("#/components/")]
    assert found
    for ref in found:
        target = doc
        for part in ref.removeprefix("#/").split("/"):
            assert part in target, ref
            target = target[part]


@pytest.fixture(scope="module")
def app(plumbing_model):
    """The real app around a real (not started) service: only its routing table is read."""
    import model
    from consumer.config import load_settings
    from consumer.policy import Policy
    from scoring_api.app import create_app
    from scoring_api.config import ApiSettings
    from scoring_api.service import ScoringService

    s = load_settings(model_path=plumbing_model, device="cpu")
    service = ScoringService(s, ApiSettings(), model.load(plumbing_model, "cpu"), Policy.from_file(s.policy_file), None)
    yield create_app(service)
    service.stop()


def test_every_route_is_documented_and_every_documented_route_exists(app):
    served = {(r.path, m.lower()) for r in app.routes if isinstance(r, Route) for m in (r.methods or ()) if m != "HEAD"}
    documented = {(path, method) for path, ops in document()["paths"].items() for method in ops}
    assert served == documented


def test_every_error_code_the_app_sends_is_in_the_document():
    import re

    src = "\n".join(p.read_text() for p in (REPO / "scoring_api").glob("*.py"))
    sent = set(re.findall(r'error\(\d{3}, "([a-z_]+)"', src)) | set(re.findall(r'BadRequest\(\d{3}, "([a-z_]+)"', src))
    sent |= {"too_large", "not_found", "method_not_allowed"}  # ReasonCode.TOO_LARGE.value, the HTTPException map
    enum = set(document()["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    assert sent and sent <= enum, sent - enum
