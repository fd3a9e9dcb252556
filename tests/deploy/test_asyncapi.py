"""deploy/asyncapi.yaml is a valid AsyncAPI 3.0 document (the spec's own JSON Schema, fetched by
`make setup` from the @asyncapi/specs package), every $ref in it resolves, its payloads are the
published JSON Schemas, and its topics, key, consumer group, headers and DLQ stages are the
worker's own (read from the code and the chart at test time)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.deploy.tools import CACHE, CHART, REPO
from tests.harness import json_refs

ASYNCAPI = REPO / "deploy" / "asyncapi.yaml"
SPEC_SCHEMA = CACHE / "asyncapi" / "specs-6.11.1" / "3.0.0-without-$id.json"


@pytest.fixture(scope="module")
def doc() -> dict:
    return yaml.safe_load(ASYNCAPI.read_text())


def resolve(doc: dict, ref: str, base: Path = ASYNCAPI.parent):
    """A $ref of this document: '#/json/pointer' inside it, or a relative file (JSON)."""
    target, _, pointer = ref.partition("#")
    node = json.loads((base / target).read_text()) if target else doc
    for part in filter(None, pointer.split("/")):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_valid_against_the_asyncapi_3_schema(doc):
    assert SPEC_SCHEMA.is_file(), f"{SPEC_SCHEMA} missing: run `make setup` (deploy/tools/install)"
    spec = json.loads(SPEC_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(spec)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []
    assert doc["asyncapi"] == "3.0.0"


def test_the_schema_check_rejects_a_broken_document(doc):
    spec = json.loads(SPEC_SCHEMA.read_text())
    broken = json.loads(json.dumps(doc))
    broken["operations"]["sendScored"]["action"] = "publish"  # AsyncAPI 2 wording: invalid in 3.0
    assert not jsonschema.Draft7Validator(spec).is_valid(broken)


def test_every_ref_resolves(doc):
    found = list(json_refs(doc))
    assert len(found) >= 9
    for ref in found:
        resolve(doc, ref)  # KeyError / FileNotFoundError name the broken one


def test_payloads_are_the_published_schemas(doc):
    from consumer.events import json_schemas

    generated = json_schemas()
    for message, file in (("imageUploaded", "image_uploaded.v1.schema.json"),
                          ("imageScored", "image_scored.v1.schema.json")):
        payload = doc["components"]["messages"][message]["payload"]
        assert payload["schemaFormat"].startswith("application/schema+json")
        ref = payload["schema"]["$ref"]
        assert Path(ref).name == file
        assert resolve(doc, ref) == generated[file] == json.loads((REPO / "deploy" / "schemas" / file).read_text())
        declared = resolve(doc, ref)["$schema"]
        assert payload["schemaFormat"].endswith("draft-" + re.search(r"/(\d{4}-\d{2})/", declared).group(1))


def test_channels_are_the_worker_topics_and_the_charts(doc):
    from consumer.config import Settings

    defaults = {name: f.default for name, f in Settings.model_fields.items()}
    chart = yaml.safe_load((CHART / "values.yaml").read_text())["settings"]
    topics = {"in": defaults["topic_in"], "out": defaults["topic_out"], "dlq": defaults["topic_dlq"]}
    assert topics == {"in": chart["topic_in"], "out": chart["topic_out"], "dlq": chart["topic_dlq"]}
    channels = doc["channels"]
    assert set(channels) == set(topics.values())
    for key, ch in channels.items():
        assert ch["address"] == key == ch["bindings"]["kafka"]["topic"]
    ops = doc["operations"]
    direction = {resolve(doc, op["channel"]["$ref"])["address"]: op["action"] for op in ops.values()}
    assert direction == {topics["in"]: "receive", topics["out"]: "send", topics["dlq"]: "send"}
    receive = next(op for op in ops.values() if op["action"] == "receive")
    assert receive["bindings"]["kafka"]["groupId"]["enum"] == [defaults["group_id"]] == [chart["group_id"]]
    for op in ops.values():  # an operation's messages belong to its channel
        channel = resolve(doc, op["channel"]["$ref"])
        for m in op["messages"]:
            assert resolve(doc, m["$ref"]) in channel["messages"].values()


def scored_record():
    """The record the worker's sink really produces for one scored upload (consumer/records.py)."""
    from consumer import records
    from consumer.events import ImageScored
    from consumer.ordering import Outcome
    from consumer.work import Source, WorkItem

    body = ImageScored(
        event_id="x", source_event_id="e", image_id="img-7", score=55.5, decision="demote", reasons=[],
        signals={"quality": 55.5}, model={"name": "m", "version": "1"}, policy={"name": "default", "version": "1"},
        cached=False, scored_at="2026-11-29T00:00:00Z",
    )
    item = WorkItem(Source("in", 0, 3, 1, b"upload-key", b"{}"))
    return records.scored(Outcome(item, body), "out", "src")


def test_every_message_is_keyed_by_image_id(doc):
    # the key the worker really writes: the image id, whatever key the upload carried
    assert scored_record().key == b"img-7"
    for m in doc["components"]["messages"].values():
        assert m["bindings"]["kafka"]["key"]["type"] == "string"
        assert "image_id" in m["bindings"]["kafka"]["key"]["description"]


def test_scored_headers_are_the_ones_the_worker_writes(doc):
    from consumer import events

    headers = doc["components"]["messages"]["imageScored"]["headers"]
    written = {k for k, _ in events.cloudevent_headers("id", "type", "src", events.now_utc())} | {"traceparent"}
    assert set(headers["properties"]) == written
    ce_type = headers["properties"]["ce_type"]["const"]
    assert dict(scored_record().headers)["ce_type"] == ce_type.encode()
    specversion = dict(events.cloudevent_headers("i", "t", "s", events.now_utc()))["ce_specversion"].decode()
    assert headers["properties"]["ce_specversion"]["const"] == specversion


def test_dead_letter_headers_and_stages_are_the_workers(doc):
    from consumer import events, metrics

    headers = doc["components"]["messages"]["deadLetter"]["headers"]
    constants = {v for k, v in vars(events).items() if k.startswith("DLQ_HEADER_")}
    assert set(headers["properties"]) == constants
    always = {events.DLQ_HEADER_ERROR, events.DLQ_HEADER_STAGE, events.DLQ_HEADER_TOPIC, events.DLQ_HEADER_PARTITION,
              events.DLQ_HEADER_OFFSET, events.DLQ_HEADER_FAILED_AT, events.DLQ_HEADER_ATTEMPTS}
    assert set(headers["required"]) == always
    assert headers["properties"][events.DLQ_HEADER_STAGE]["enum"] == list(metrics.DLQ_STAGES)


def test_info_version_is_the_project_version(doc):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert doc["info"]["version"] == version
