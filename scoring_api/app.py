"""HTTP: `POST /v1/score`, `/healthz`, `/readyz`, `/metrics`, `/openapi.yaml` (the contract).

One scoring request, in order: API key (401) -> declared size (413) -> a concurrency slot
(429 + Retry-After, never a queue) -> the body, counted as it arrives (413; 408 when it does
not arrive by the deadline) -> the request's fields, validated by the contract's own
`ImageUploaded` model (400) -> the chain (service.py) -> the answer, or 504 at the deadline.

Whose problem is it, as in the worker (consumer/retry.py):
- a verdict: 200 with the `image_scored` event (accept, demote or a policy reject);
- the seller's file or URL (not an image, corrupt, too large for the pixel or decode-memory
  budget, 404 at the origin, refused by the SSRF policy): 422 with the same `image_scored`
  event the worker would emit (decision `reject`, the reason code sellers see);
- the request itself (bad fields, body over the limit, wrong media type): 4xx with an error
  object whose code is the seller-facing reason code where one fits (`too_large`);
- ours (origin 5xx or unreachable: 502; origin or our deadline: 504; decode memory busy or
  the model failing every image: 503 + Retry-After; a bug: 500): never a seller-facing reject.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from consumer.events import ImageUploaded, ReasonCode, describe_validation_error
from scoring_api.chain import API_SOURCE, ApiItem, Scored, ScoringFailed
from scoring_api.keys import ApiKeys
from scoring_api.metrics import FAILED, RequestMetrics
from scoring_api.service import ScoringService

OPENAPI = Path(__file__).with_name("openapi.yaml")
# An upload has no URL; the contract's model wants one. Reserved TLD: never fetched (uploads skip the fetch step).
UPLOAD_URL = "https://upload.invalid/request-body"
FIELDS = ("policy", "role", "image_id", "listing_id", "seller_id")
# consumer/fetch.py's words for a transfer that ran out of time (whole-transfer deadline, DNS bound).
_ORIGIN_TIMEOUT = ("took longer than", "did not answer in time")


class BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def create_app(service: ScoringService, keys: ApiKeys | None = None) -> Starlette:
    retry_after = {"Retry-After": str(service.api.retry_after_s)}

    async def score(request: Request) -> Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + service.api.deadline_s
        consumed_at = time.monotonic()
        if keys is not None and not keys.allows(request.headers.get("authorization")):
            return error(401, "unauthorized", "a valid API key is needed: Authorization: Bearer <key>",
                         {"WWW-Authenticate": 'Bearer realm="imagegate"'})
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > service.max_body_bytes:
            return _too_large(service.max_body_bytes)
        slot = service.admit()
        if slot is None:
            return error(429, "overloaded", f"all {service.api.concurrency} scoring slots are busy; retry later",
                         retry_after)
        try:  # until the work is submitted, this handler owns the slot: every way out gives it back
            try:
                async with asyncio.timeout_at(deadline):
                    body = await _read_body(request, service.max_body_bytes)
            except TimeoutError:
                slot.release()
                return error(408, "request_timeout", f"the request body did not arrive within {service.api.deadline_s:g}s")
            item = await _parse(request, body, consumed_at)
            del body  # the item holds the bytes now; the chain drops them after decode
        except BadRequest as e:
            slot.release()
            return error(e.status, e.code, str(e))
        except ClientDisconnect:
            slot.release()
            return error(400, "client_disconnected", "the client went away before sending the whole body")
        except BaseException:
            slot.release()
            raise
        reply = asyncio.wrap_future(service.submit(item, slot))
        done, _ = await asyncio.wait({reply}, timeout=max(0.0, deadline - loop.time()))
        if not done:
            reply.add_done_callback(_retrieve)  # finishes later (bounded); its result is cached
            FAILED.labels("deadline_exceeded").inc()
            return error(504, "deadline_exceeded", f"no answer within {service.api.deadline_s:g}s; the result may be "
                                                   "cached for a retry", retry_after)
        try:
            result: Scored = reply.result()
        except ScoringFailed as e:
            return _failure(e, retry_after)
        task = BackgroundTask(service.store, result.new_content) if result.new_content is not None else None
        return Response(result.event.model_dump_json(), 422 if result.seller_problem else 200,
                        media_type="application/json", background=task)

    async def healthz(request: Request) -> Response:
        ok, detail = service.health.live()
        return JSONResponse({"ok": ok, **detail}, 200 if ok else 503)

    async def readyz(request: Request) -> Response:
        ok, detail = service.ready()
        return JSONResponse({"ok": ok, **detail}, 200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return FileResponse(OPENAPI, media_type="application/yaml")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return error(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    async def internal_error(request: Request, exc: Exception) -> Response:
        FAILED.labels("internal").inc()
        return error(500, "internal", "internal error (logged)")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.start()
        beat = asyncio.create_task(_heartbeat(service))
        try:
            yield
        finally:
            beat.cancel()
            service.stop()

    app = Starlette(routes=[
        Route("/v1/score", score, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.yaml", openapi, methods=["GET"]),
    ], exception_handlers={HTTPException: http_error, 500: internal_error}, lifespan=lifespan)
    app.add_middleware(RequestMetrics)
    return app


async def _heartbeat(service: ScoringService) -> None:
    """The event loop's own beat: `/healthz` fails when the loop stops turning (as the worker's poll loop)."""
    while True:
        service.health.beat()
        await asyncio.sleep(1.0)


def _retrieve(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()  # an answer nobody waits for any more: retrieved so asyncio does not warn


def _too_large(limit: int) -> JSONResponse:
    return error(413, ReasonCode.TOO_LARGE.value, f"the request body is over the {limit}-byte limit")


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise BadRequest(413, ReasonCode.TOO_LARGE.value, f"the request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def _parse(request: Request, body: bytes, consumed_at: float) -> ApiItem:
    """The request -> a work item: bytes to score (upload) or a URL to fetch, plus the event's fields."""
    unknown = sorted(set(request.query_params) - set(FIELDS))
    if unknown:
        raise BadRequest(400, "bad_request", f"unknown query parameter(s) {unknown}; known: {list(FIELDS)}")
    fields: dict[str, Any] = dict(request.query_params)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: bytes | None = None
    if ctype == "application/json":
        doc = _json_object(body)
        extra = sorted(set(doc) - {"url", *FIELDS})
        if extra:
            raise BadRequest(400, "bad_request", f"unknown field(s) {extra}; known: {['url', *FIELDS]}")
        if "url" not in doc:
            raise BadRequest(400, "bad_request", "a JSON body needs `url` (send an image as the raw body or as "
                                                 "multipart field `image` instead)")
        fields.update(doc)
    elif ctype == "multipart/form-data":
        data, form_fields = await _multipart(request, body)
        fields.update(form_fields)
    elif ctype.startswith("image/") or ctype == "application/octet-stream":
        data = body
    else:
        raise BadRequest(415, "unsupported_media_type", f"content type {ctype or 'none'!r}: send image/*, "
                         "application/octet-stream, multipart/form-data (field `image`) or application/json ({\"url\": ...})")
    event_id = str(uuid.uuid4())
    fields.setdefault("image_id", event_id)
    fields.setdefault("url", UPLOAD_URL)
    try:
        event = ImageUploaded.model_validate({**fields, "event_id": event_id, "trigger": "upload"})
    except ValidationError as e:
        raise BadRequest(400, "bad_request", describe_validation_error(e).replace("image_uploaded", "request")) from None
    item = ApiItem(API_SOURCE, consumed_at=consumed_at, event=event)
    if data is not None:
        if not data:
            raise BadRequest(400, "bad_request", "the request has no image bytes")
        item.data = data  # hashed on a chain thread (service.py), not on the event loop
    return item


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise BadRequest(400, "bad_request", f"the body is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise BadRequest(400, "bad_request", "the JSON body must be an object")
    return doc


async def _multipart(request: Request, body: bytes) -> tuple[bytes, dict[str, str]]:
    async def once() -> AsyncIterator[bytes]:
        yield body

    parser = MultiPartParser(request.headers, once(), max_files=1, max_fields=len(FIELDS))
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise BadRequest(400, "bad_request", f"multipart body: {e.message}") from None
    try:
        image = form.get("image")
        if not isinstance(image, UploadFile):
            raise BadRequest(400, "bad_request", "multipart body needs a file field named `image`")
        data = await image.read()
        extra = sorted(set(form.keys()) - {"image", *FIELDS})
        if extra:
            raise BadRequest(400, "bad_request", f"unknown form field(s) {extra}; known: {['image', *FIELDS]}")
        return data, {k: v for k, v in form.items() if isinstance(v, str)}
    finally:
        await form.close()


def _failure(e: ScoringFailed, retry_after: dict[str, str]) -> JSONResponse:
    if e.stage == "fetch" and e.transient:
        if any(s in str(e.cause) for s in _ORIGIN_TIMEOUT):
            FAILED.labels("origin_timeout").inc()
            return error(504, "origin_timeout", str(e.cause), retry_after)
        FAILED.labels("origin_unavailable").inc()
        return error(502, "origin_unavailable", str(e.cause), retry_after)
    if e.stage == "decode" and e.transient:
        FAILED.labels("busy").inc()
        return error(503, "busy", "decode memory is busy; retry later", retry_after)
    if e.stage in ("inference", "single_flight"):
        FAILED.labels("model_failed").inc()
        return error(503 if e.transient else 500, "model_failed", "the model could not score this image (logged)",
                     retry_after if e.transient else None)
    FAILED.labels("internal").inc()
    return error(500, "internal", "internal error (logged)")
