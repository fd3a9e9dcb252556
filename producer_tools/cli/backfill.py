"""`imagegate backfill`: re-publish image_uploaded for existing images after a model or policy change."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

from producer_tools import exit_codes
from producer_tools.cli import options


def register(sub) -> None:
    p = sub.add_parser("backfill", help="re-publish image_uploaded for existing images (after a model/policy change)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-file", metavar="PATH",
                     help="JSONL or CSV with image_id,url[,listing_id,seller_id,role,policy] ('-': stdin)")
    src.add_argument("--from-redis", action="store_true",
                     help="results in Redis whose model or policy version is not the running one")
    p.add_argument("--model", help="weights file whose version is the running one (default: IMAGEGATE_MODEL_PATH or shipped)")
    p.add_argument("--model-version", help="running model version (instead of reading --model)")
    p.add_argument("--policy-version", help="running policy version (default: the version in IMAGEGATE_POLICY_FILE)")
    options.add_topic(p, "IMAGEGATE_TOPIC_BACKFILL, else the input topic")
    p.add_argument("--rate", type=float, help="events per second (default: as fast as the broker takes them)")
    p.add_argument("--limit", type=int, help="plan at most this many images (a canary)")
    p.add_argument("--checkpoint", default="imagegate-backfill.checkpoint.json",
                   help="progress file; re-running the same command resumes from it (plan kept next to it)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and plan afresh")
    options.add_json_always(p)
    p.set_defaults(func=run)


class _Spool:
    """A private folder for stdin's copy: the plan is built from it, then it is removed."""

    def __enter__(self) -> Path:
        self._dir = tempfile.TemporaryDirectory(prefix="imagegate-backfill-")
        return Path(self._dir.name)

    def __exit__(self, *exc) -> None:
        self._dir.cleanup()


def _running_versions(args, s) -> tuple[str, str]:
    """The versions a worker started with these settings runs: what `imagegate score` would load."""
    mv, pv = args.model_version, args.policy_version
    if mv is None:
        import model

        try:
            mv = model.load(args.model or s.model_path, "cpu").version
        except model.ModelLoadError as e:
            raise exit_codes.UsageError(f"{e} (or pass --model-version)") from None
    if pv is None:
        from consumer.policy import Policy

        pv = Policy.from_file(s.policy_file, s.default_policy).version
    return mv, pv


def run(args) -> int:
    with _Spool() as spool:
        return _run(args, spool)


def _run(args, spool) -> int:
    import redis

    from producer_tools import backfill, kafka_clients
    from producer_tools.progress import bar

    s = options.settings()
    topic = args.topic or s.topic_backfill or s.topic_in
    shown = 0

    def on_skip(skip) -> None:
        nonlocal shown
        if skip.reason in ("invalid", "unreadable") and shown < 20:
            shown += 1
            print(f"skipped ({skip.reason}): {skip.detail}", file=sys.stderr)

    if args.from_file == options.STDIN:  # kept for the run; identified by content, so a resume needs the same input
        data = sys.stdin.buffer.read()
        path = spool / "stdin"
        path.write_bytes(data)
        source = f"stdin:sha256={hashlib.sha256(data).hexdigest()}"
        entries = lambda: backfill.from_file(path)  # noqa: E731
    elif args.from_file:
        path = Path(args.from_file)
        source = f"file:{path.resolve()}"
        entries = lambda: backfill.from_file(path)  # noqa: E731
    else:
        mv, pv = _running_versions(args, s)
        source = f"redis:model={mv},policy={pv}"
        print(f"selecting imagegate:image:* results not scored by model {mv} + policy {pv}", file=sys.stderr)
        entries = lambda: backfill.from_redis(redis.Redis.from_url(s.redis_url), mv, pv)  # noqa: E731
    prod = kafka_clients.producer(s)
    md = prod.list_topics(topic, timeout=30).topics.get(topic)
    if md is None or md.error is not None:
        raise exit_codes.UsageError(f"topic {topic} does not exist: create it first (`imagegate topics` creates "
                                    "IMAGEGATE_TOPIC_BACKFILL) or check --topic")
    cp_path = Path(args.checkpoint)
    try:
        cp, resumed = backfill.start_or_resume(cp_path, source, topic, args.restart,
                                               lambda plan: backfill.write_plan(entries(), plan, args.limit, on_skip))
    except (OSError, redis.RedisError) as e:  # nothing was published
        print(f"imagegate backfill: cannot read the source or write {cp_path}: {e}", file=sys.stderr)
        return exit_codes.PARTIAL
    if resumed and cp.done >= cp.total:
        print(f"backfill {cp.run_id}: already complete ({cp.total} items to {cp.topic}); nothing to do "
              f"(--restart selects afresh)", file=sys.stderr)
        return exit_codes.OK
    if resumed:
        print(f"resuming backfill {cp.run_id} at item {cp.done} of {cp.total}", file=sys.stderr)
    progress = bar(cp.total, "backfill", "img")
    progress.update(cp.done)
    rep = backfill.publish_plan(prod, cp, cp_path, args.rate, on_progress=progress.update)
    progress.close()
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(rep.skipped.items())) or "none"
    print(f"backfill {rep.run_id}: published {rep.published} to {rep.topic} in {rep.seconds:.1f}s "
          f"({rep.rate:.0f}/s); {cp.done} of {rep.total} done" + (f" (resumed at {rep.resumed_at})" if resumed else "")
          + f"; skipped: {skipped}; failed: {rep.failed}", file=sys.stderr)
    if rep.skipped.get("no source_url"):
        print(f"{rep.skipped['no source_url']} results in Redis have no source_url (written by an older worker): "
              "re-publish those with --from-file", file=sys.stderr)
    if rep.failed:
        print(f"not delivered: {rep.first_error}; re-run the same command to resume at item {cp.done}", file=sys.stderr)
    print(json.dumps({"run_id": rep.run_id, "topic": rep.topic, "total": rep.total, "done": cp.done,
                      "resumed_at": rep.resumed_at if resumed else None, "published": rep.published, "failed": rep.failed,
                      "skipped": rep.skipped, "seconds": round(rep.seconds, 3), "events_per_s": round(rep.rate, 1)}))
    bad_input = rep.skipped.get("invalid", 0) + rep.skipped.get("unreadable", 0)
    return exit_codes.PARTIAL if rep.failed or bad_input else exit_codes.OK
