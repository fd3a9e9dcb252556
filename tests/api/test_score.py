"""POST /v1/score over real HTTP against `python -m scoring_api` (plumbing model): uploads, URLs,
whose problem each failure is, limits on the body and on decode memory, and the ops routes.

Redis is configured but down here (a closed port): scoring must not care (cache is optional)."""

from __future__ import annotations

import hashlib
import json

import jsonschema
import pytest
from PIL import Image

from consumer.config import DEFAULT_POLICY_FILE
from consumer.policy import Policy
from tests.api.conftest import multipart
from tests.harness import REPO, free_port
from tests.images import encode, photo

SCORED_SCHEMA = json.loads((REPO / "deploy" / "schemas" / "image_scored.v1.schema.json").read_text())
MAX_BODY = 200_000


@pytest.fixture(scope="module")
def api(start_api):
    return start_api(IMAGEGATE_API_CACHE="true", IMAGEGATE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                     IMAGEGATE_API_MAX_BODY_BYTES=str(MAX_BODY), IMAGEGATE_DECODE_MEMORY_MB="16")


@pytest.fixture(scope="module")
def jpeg():
    return encode(photo(320, 240, seed=11), quality=92)


def test_raw_body_gets_the_verdict_imagegate_score_gives(api, jpeg, plumbing_model, tmp_path):
    r = api.score(jpeg)
    assert r.status == 200, r
    body = r.json()
    jsonschema.validate(body, SCORED_SCHEMA)  # exactly an image_scored event
    assert body["content_sha256"] == hashlib.sha256(jpeg).hexdigest() and body["content_verified"] is True
    assert body["model"]["name"] == "random-plumbing-only" and body["cached"] is False
    assert body["policy"]["version"] == Policy.from_file(DEFAULT_POLICY_FILE).version
    assert {"decode_ms", "queue_ms", "inference_ms", "total_ms"} <= set(body["timings"])

    # The same decode -> model -> policy as the worker's offline twin, `imagegate score`.
    import model
    from producer_tools.score import score_files

    path = tmp_path / "p.jpg"
    path.write_bytes(jpeg)
    [row] = score_files([path], model.load(plumbing_model, "cpu"), Policy.from_file(DEFAULT_POLICY_FILE))
    assert body["decision"] == row.decision
    assert body["score"] == pytest.approx(row.score, abs=0.01)
    assert body["signals"].keys() == row.signals.keys()
    for k, v in row.signals.items():
        assert body["signals"][k] == pytest.approx(v, abs=1e-4), k


def test_multipart_upload_scores_the_same_bytes_with_its_fields(api, jpeg):
    raw = api.score(jpeg).json()
    data, ctype = multipart({"role": "gallery", "image_id": "listing-7-photo-2"}, jpeg)
    r = api.score(data, ctype)
    assert r.status == 200, r
    body = r.json()
    jsonschema.validate(body, SCORED_SCHEMA)
    assert body["content_sha256"] == raw["content_sha256"]
    assert body["signals"] == raw["signals"]
    assert body["role"] == "gallery" and body["image_id"] == "listing-7-photo-2"


def test_query_fields_pick_profile_and_role(api, jpeg):
    body = api.score(jpeg, query="policy=default&role=gallery&seller_id=s-1").json()
    assert body["policy"]["name"] == "default" and body["role"] == "gallery" and body["seller_id"] == "s-1"


def test_url_is_fetched_through_the_fetcher(api, origin, images):
    r = api.score_url(f"{origin.url}/img/s0-sharp.jpg", image_id="img-1", listing_id="l-1")
    assert r.status == 200, r
    body = r.json()
    jsonschema.validate(body, SCORED_SCHEMA)
    assert body["content_sha256"] == hashlib.sha256((images / "s0-sharp.jpg").read_bytes()).hexdigest()
    assert body["image_id"] == "img-1" and body["listing_id"] == "l-1"
    assert "fetch_ms" in body["timings"]
    assert origin.hits["/img/s0-sharp.jpg"] == 1


@pytest.mark.parametrize("url,why", [("http://10.20.30.40/p.jpg", "not public"),
                                     ("http://169.254.169.254/latest/meta-data", "metadata"),
                                     ("http://user@127.0.0.1/p.jpg", "userinfo")])
def test_ssrf_refusal_is_the_sellers_fetch_failed(api, url, why):
    r = api.score_url(url)
    assert r.status == 422, r
    body = r.json()
    jsonschema.validate(body, SCORED_SCHEMA)
    assert body["decision"] == "reject" and body["content_sha256"] is None
    assert [x["code"] for x in body["reasons"]] == ["fetch_failed"] and why in body["reasons"][0]["message"]


def test_origin_404_is_the_sellers_and_origin_5xx_is_ours(api, origin):
    r = api.score_url(f"{origin.url}/status/404")
    assert r.status == 422 and r.json()["reasons"][0]["code"] == "fetch_failed", r
    r = api.score_url(f"{origin.url}/status/503")
    assert r.status == 502, r  # ours: never a seller-facing reject
    assert r.json()["error"]["code"] == "origin_unavailable" and int(r.headers["retry-after"]) >= 1


def test_origin_that_does_not_deliver_in_time_is_504(start_api, origin):
    slow = start_api(IMAGEGATE_FETCH_TIMEOUT_S="0.5")
    r = slow.score_url(f"{origin.url}/slow/s0-sharp.jpg")  # trickles 256 B every 0.2 s: far past 0.5 s
    assert r.status == 504 and r.json()["error"]["code"] == "origin_timeout", r


def test_corrupt_image_is_unreadable(api, jpeg):
    r = api.score(jpeg[: len(jpeg) // 2])
    assert r.status == 422, r
    body = r.json()
    assert body["decision"] == "reject" and body["reasons"][0]["code"] == "unreadable"
    assert body["content_sha256"] == hashlib.sha256(jpeg[: len(jpeg) // 2]).hexdigest()


def test_not_an_image_is_unsupported_format(api):
    r = api.score(b"<html>hello</html>")
    assert r.status == 422 and r.json()["reasons"][0]["code"] == "unsupported_format", r


def test_decode_memory_budget_is_too_large(api):
    png = encode(Image.new("RGB", (1800, 1800), (250, 250, 250)), "PNG")  # 13 kB; 19 MB to decode, budget 16 MB
    r = api.score(png, "image/png")
    assert r.status == 422, r
    reason = r.json()["reasons"][0]
    assert reason["code"] == "too_large" and "MB to decode" in reason["message"]


def test_body_over_the_limit_is_413_declared_or_streamed(api):
    big = b"\xff" * (MAX_BODY + 1)
    r = api.score(big)  # Content-Length says so: refused before reading
    assert r.status == 413 and r.json()["error"]["code"] == "too_large", r
    r = api.score(iter([big[:100_000], big[100_000:]]))  # chunked, no Content-Length: counted as it arrives
    assert r.status == 413 and r.json()["error"]["code"] == "too_large", r
    assert api.score(b"\xff" * MAX_BODY).status == 422  # at the limit: read, then found not to be an image
    api.wait_metric("imagegate_api_in_flight_requests", 0)


@pytest.mark.parametrize("query,ctype,body,status,needle", [
    ("polcy=default", "image/jpeg", b"x", 400, "unknown query parameter"),
    ("role=owner", "image/jpeg", b"x", 400, "role"),
    ("", "text/plain", b"x", 415, "content type"),
    ("", "application/json", b'{"policy": "default"}', 400, "needs `url`"),
    ("", "application/json", b'["http://x/y.jpg"]', 400, "object"),
    ("", "application/json", b'{"url": "http://x/y.jpg", "colour": 1}', 400, "unknown field"),
    ("", "application/json", b'{"url": "gopher://x/y"}', 400, "scheme"),
    ("", "image/jpeg", b"", 400, "no image bytes"),
])
def test_bad_requests_are_4xx_with_a_message(api, query, ctype, body, status, needle):
    r = api.score(body, ctype, query)
    assert r.status == status, r
    assert needle in r.json()["error"]["message"]
    api.wait_metric("imagegate_api_in_flight_requests", 0)  # the slot taken for reading the body was given back


def test_multipart_without_an_image_field_is_400(api, jpeg):
    data, ctype = multipart({}, jpeg)
    data = data.replace(b'name="image"', b'name="photo"')
    r = api.score(data, ctype)
    assert r.status == 400 and "`image`" in r.json()["error"]["message"], r


def test_redis_down_is_not_an_error(api, jpeg):
    assert api.score(jpeg).status == 200
    assert api.metric("imagegate_redis_up") == 0
    assert api.metric("imagegate_cache_requests_total", {"op": "get", "result": "error"}) >= 1


def test_ops_routes(api):
    assert api.request("GET", "/healthz").json()["ok"] is True
    ready = api.request("GET", "/readyz").json()
    assert ready["ok"] is True and ready["model"]["name"] == "random-plumbing-only"
    from scoring_api.app import OPENAPI

    assert api.request("GET", "/openapi.yaml").body == OPENAPI.read_bytes()
    assert api.metric("imagegate_api_request_duration_seconds_count", {"route": "/v1/score", "status": "200"}) >= 1
    assert api.metric("imagegate_batch_size_count") >= 1  # the worker's series, from the same inference step
    r = api.request("GET", "/v1/score", check=False)  # not an operation of the document
    assert r.status == 405 and r.json()["error"]["code"] == "method_not_allowed"
