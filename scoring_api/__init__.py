"""The scoring API: one image in, its `image_scored` verdict out, in one HTTP round trip.

`python -m scoring_api` (the `imagegate api` subcommand) serves `POST /v1/score` plus the
worker's `/healthz`, `/readyz` and `/metrics`. A request runs the worker's own chain of
steps (consumer/steps: fetch, content-hash cache, single-flight, decode, the micro-batched
inference thread that owns the model, policy) and answers exactly the JSON the worker puts
on the `image_scored` topic; `scoring_api/openapi.yaml` is the contract.

Why Starlette on uvicorn: the service has four routes and its request and response bodies
are the pydantic models of consumer/events.py, so it needs an ASGI toolkit, not a framework
with its own validation layer. Starlette is small, typed and well kept (the base FastAPI is
built on); uvicorn is the reference ASGI server. Plain uvicorn (h11, asyncio) is enough: the
work is on the inference thread, not in HTTP parsing, so no `uvicorn[standard]` extras.
`python-multipart` parses browser uploads (multipart/form-data).

Modules: `config` (IMAGEGATE_API_* knobs), `keys` (optional API keys), `chain` (the worker's
steps ending in a reply), `service` (admission and the threads), `app` (HTTP), `metrics`,
`cli` (`python -m scoring_api`).
"""
