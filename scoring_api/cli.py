"""`python -m scoring_api` / `imagegate api`: configure, load the model, serve until SIGTERM.

Configured like the worker by `IMAGEGATE_*` (model, device, batching, fetch, decode, policy,
Redis, a shadow candidate `IMAGEGATE_SHADOW_*` with `IMAGEGATE_KAFKA_*` for its topic) plus
`IMAGEGATE_API_*` (scoring_api/config.py); `--host`/`--port` override the latter.
uvicorn stops on SIGTERM: it stops accepting, lets open requests finish (up to the deadline
plus 5 s), then the inference thread stops.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from pydantic import ValidationError

from consumer import logs
from consumer.config import ConfigError, load_settings

log = logging.getLogger("imagegate.api")

DESCRIPTION = "Serve the scoring API: POST /v1/score answers an image's image_scored verdict in one round trip."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="listen address (IMAGEGATE_API_HOST, default 0.0.0.0)")
    p.add_argument("--port", type=int, help="listen port (IMAGEGATE_API_PORT, default 8080)")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `api` to a CLI's subcommands (`imagegate api`); dispatch to `run(args)`."""
    p = subparsers.add_parser("api", help="serve the scoring API (POST /v1/score)", description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from scoring_api.config import ApiSettings
    from scoring_api.keys import ApiKeys, KeysFileError

    try:
        settings = load_settings()
        overrides = {k: v for k in ("host", "port") if (v := getattr(args, k, None)) is not None}
        api = ApiSettings(**overrides)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    except ValidationError as e:
        print("invalid scoring API configuration (IMAGEGATE_API_*):\n" + str(e), file=sys.stderr)
        return 2
    logs.setup(settings.log_level, secrets=logs.secret_values(settings.kafka, [settings.redis_url]),
               events=settings.log_events)
    try:
        keys = ApiKeys(api.keys_file) if api.keys_file is not None else None
    except KeysFileError as e:
        log.error("cannot start", extra={"error": str(e)})
        return 2
    try:
        service = _build_service(settings, api)
    except (ValueError, OSError, RuntimeError) as e:
        log.error("cannot start", extra={"error": str(e)})
        return 2

    import uvicorn

    from scoring_api.app import create_app

    config = uvicorn.Config(create_app(service, keys), host=api.host, port=api.port, log_config=None,
                            access_log=False, lifespan="on", limit_concurrency=api.max_connections,
                            timeout_graceful_shutdown=int(api.deadline_s) + 5)
    log.info("scoring API starting", extra={"host": api.host, "port": api.port, "concurrency": api.concurrency,
                                            "auth": "bearer" if keys is not None else "none", "cache": service.cache is not None,
                                            "model": service.model_ref.version})
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


def _build_service(settings: Any, api: Any) -> Any:
    """The model is imported here, after the configuration is known good (fast `--help` and config errors)."""
    from consumer import metrics
    from consumer.app import load_candidate, load_predictor
    from consumer.cache import ResultCache
    from consumer.policy import Policy
    from scoring_api.service import ScoringService

    policy = Policy.from_file(settings.policy_file, settings.default_policy)
    predictor = load_predictor(settings)
    policy.check_model(tuple(predictor.heads))
    metrics.MODEL_INFO.info({"model_name": predictor.name, "model_version": predictor.version,
                             "policy_version": policy.version, "device": str(predictor.device)})
    cache = ResultCache(settings.redis_url, settings.cache_ttl_s, settings.redis_timeout_s, settings.redis_retry_after_s,
                        predictor.version, policy.version) if api.cache else None
    candidate = load_candidate(settings, predictor, policy)  # None unless IMAGEGATE_SHADOW_* names one
    return ScoringService(settings, api, predictor, policy, cache, candidate)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scoring_api", description=DESCRIPTION)
    add_arguments(p)
    return run(p.parse_args(argv))
