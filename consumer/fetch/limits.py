"""The bounds every fetch runs under (from the worker's settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FetchLimits:
    allowed_schemes: tuple[str, ...] = ("https", "http")
    allow_networks: tuple[str, ...] = ()
    file_root: Path | None = None
    timeout_s: float = 10.0
    connect_timeout_s: float = 3.0
    max_bytes: int = 25 << 20
    max_redirects: int = 3
    retries: int = 3
    backoff_ms: float = 200.0
    user_agent: str = "imagegate"
    pool_max_idle: int = 32  # idle HTTPS connections kept for reuse in all; 0: a new connection every time
    pool_idle_s: float = 20.0  # dropped after this long unused (origins close idle connections too)
    ca_certs: str | None = None  # a CA bundle instead of the system's; certificates are always verified
