"""`imagegate-worker` / `python -m consumer`: configure, load the model, run until SIGTERM."""

from __future__ import annotations

import importlib.metadata
import logging
import signal
import sys

from consumer import logs, metrics
from consumer.config import ConfigError, Settings, load_settings
from consumer.health import Health
from consumer.policy import Policy

log = logging.getLogger("imagegate")


def load_predictor(settings: Settings):
    """The model is imported lazily so `--help` and config errors stay fast."""
    import model
    from model import runtimes

    runtimes.set_threads(settings.inference_threads)
    return model.load(settings.model_path, settings.device, runtime=settings.runtime)


USAGE = """usage: imagegate-worker [--help | --version]

Runs the worker until SIGTERM. Configured by IMAGEGATE_* environment variables (see README: Configuration)."""


def version() -> str:
    """The installed distribution's version: the same source as `imagegate --version`."""
    try:
        return importlib.metadata.version("imagegate")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def load_candidate(settings: Settings, predictor, policy: Policy):
    """The shadow's candidate (consumer/shadow.py), or None when no shadow is configured.

    A candidate model is its own instance; a candidate policy alone judges the default model's
    outputs. Either is checked against the model it will judge, like the default, at start."""
    if not settings.shadow_enabled:
        return None
    import model
    from consumer.shadow import Candidate

    shadow_model = model.load(settings.shadow_model_path, settings.device, runtime=settings.runtime) \
        if settings.shadow_model_path is not None else None
    shadow_policy = Policy.from_file(settings.shadow_policy_file, settings.default_policy) \
        if settings.shadow_policy_file is not None else policy
    shadow_policy.check_model(tuple((shadow_model or predictor).heads))
    log.info("shadow configured", extra={
        "model": None if shadow_model is None else {"name": shadow_model.name, "version": shadow_model.version},
        "policy_version": shadow_policy.version, "sample": settings.shadow_sample, "topic": settings.shadow_topic})
    return Candidate(shadow_model, shadow_policy)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if args and args[0] == "--version":
        print(f"imagegate-worker {version()}")
        return 0
    if args:  # anything else would start a worker the caller did not ask for
        print(f"imagegate-worker: unknown argument {args[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    logs.setup(settings.log_level, secrets=logs.secret_values(settings.kafka, [settings.redis_url]), events=settings.log_events)
    health = Health(settings.stall_after_s, settings.in_flight_max_age_s)
    server = metrics.serve(health, settings.metrics_host, settings.metrics_port)
    log.info("ops endpoint listening", extra={"port": server.server_port})
    try:
        policy = Policy.from_file(settings.policy_file, settings.default_policy)
        predictor = load_predictor(settings)
        candidate = load_candidate(settings, predictor, policy)
        from consumer.worker import Worker  # imports torch-heavy modules after config is known good

        worker = Worker(settings, predictor, policy, health, candidate)
    except (ValueError, OSError, RuntimeError) as e:
        log.error("cannot start", extra={"error": str(e)})
        return 2
    log.info("model loaded", extra={"model": predictor.name, "version": predictor.version, "device": str(predictor.device)})

    def on_signal(signum, _frame):
        log.info("signal received, stopping", extra={"signal": signal.Signals(signum).name})
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rc = worker.run()
    server.shutdown()
    if rc:
        log.critical("worker stopped after a fatal error", extra={"error": health.fatal})
    return rc
