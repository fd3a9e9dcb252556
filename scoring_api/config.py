"""The API's own knobs (`IMAGEGATE_API_*`); everything it shares with the worker (model,
batching, fetch, decode, policy, Redis) stays in consumer/config.Settings, so one set of
`IMAGEGATE_*` variables configures both the same way.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMAGEGATE_API_", extra="ignore", validate_default=True)

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    concurrency: int = Field(
        32, ge=1, le=4096, description="scoring requests admitted at once (body read, fetch, decode, model); "
        "one more is answered 429 with Retry-After. Bounds memory: up to concurrency x max_body_bytes of bodies")
    deadline_s: float = Field(30.0, gt=0, description="per-request deadline; past it the answer is 504")
    max_body_bytes: int | None = Field(
        None, ge=1, description="largest request body; None = IMAGEGATE_FETCH_MAX_BYTES, the limit a URL fetch has")
    retry_after_s: int = Field(1, ge=1, description="Retry-After of a 429 (and of a 503 for our transient trouble)")
    keys_file: Path | None = Field(
        None, description="file of API keys as sha256 hex digests, one per line (e.g. a mounted Kubernetes secret); "
        "unset: no key needed")
    cache: bool = Field(True, description="look up and store results in Redis (IMAGEGATE_REDIS_URL) by content hash")
    max_connections: int = Field(1024, ge=1, description="uvicorn's limit_concurrency: above it, connections get 503")
