"""`imagegate`: the operator's command line.

  imagegate topics                       create the input/output/DLQ topics if missing
  imagegate publish URL|FILE|DIR...      publish image_uploaded events
  imagegate serve DIR                    serve local images over HTTP for `publish --via http`
  imagegate tail [--topic T]             print events from a topic (image_scored by default)
  imagegate get IMAGE_ID                 latest result for an image, from Redis
  imagegate backfill --from-file F | --from-redis   re-score existing images after a model/policy change
  imagegate dlq list | replay            inspect the dead-letter topic, or republish its events
  imagegate status                       consumer group, lag per partition, DLQ by stage, worker versions
  imagegate loadgen URL --count N        publish N events for one image (throughput tests)
  imagegate score PATH... [--report F]   the worker's decode -> model -> policy, offline
  imagegate report --last N --out F      HTML review page of the latest image_scored events
  imagegate policy check FILE | diff     validate a policy file; replay one over stored results

Kafka/Redis addresses and topic names come from the same IMAGEGATE_* settings as the worker.
Exit codes: 0 ok, 1 partial failure (some items failed; the summary says which), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from consumer.config import ConfigError, load_settings
from producer_tools import exit_codes


def _settings():
    try:
        return load_settings()
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        sys.exit(2)


def cmd_topics(args) -> int:
    from producer_tools.kafka_clients import ensure_topics

    s = _settings()
    created = ensure_topics(s, args.partitions)
    print(f"created: {', '.join(created) or 'none (all exist)'}")
    return 0


def cmd_publish(args) -> int:
    from producer_tools import kafka_clients
    from producer_tools.progress import bar
    from producer_tools.publish import expand_files, make_event, publish, sha256_file, url_for

    s = _settings()
    events = []
    for target in args.targets:
        if "://" in target:
            events.append(make_event(target, policy=args.policy, role=args.role, listing_id=args.listing_id))
            continue
        try:
            files = list(expand_files([target]))
        except FileNotFoundError as e:
            raise exit_codes.UsageError(str(e)) from None
        for f in files:
            root = Path(args.root or (target if Path(target).is_dir() else Path(target).parent))
            url = url_for(f, args.via, root, args.base_url)
            sha = sha256_file(f) if args.with_sha else None
            events.append(make_event(url, image_id=f.stem, policy=args.policy, role=args.role,
                                     listing_id=args.listing_id, content_sha256=sha))
    progress = bar(len(events), "publish", "ev")
    try:
        n = publish(kafka_clients.producer(s), s.topic_in, events, on_sent=progress.update)
    except RuntimeError as e:  # some events not acknowledged by the broker
        print(f"imagegate publish: {e}", file=sys.stderr)
        return exit_codes.PARTIAL
    finally:
        progress.close()
    for ev in events:
        print(json.dumps({"event_id": ev.event_id, "image_id": ev.image_id, "url": ev.url}))
    print(f"published {n} events to {s.topic_in}", file=sys.stderr)
    return exit_codes.OK


def cmd_serve(args) -> int:
    from producer_tools import serve

    server = serve.start(Path(args.dir), args.host, args.port)
    print(f"serving {args.dir} at {serve.base_url(server)} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


def cmd_tail(args) -> int:
    from producer_tools.kafka_clients import decode_value, reader

    s = _settings()
    topic = args.topic or s.topic_out
    c = reader(s, from_beginning=args.from_beginning)
    c.subscribe([topic])
    seen, deadline = 0, time.monotonic() + args.timeout if args.timeout else None
    try:
        while (args.count is None or seen < args.count) and (deadline is None or time.monotonic() < deadline):
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            seen += 1
            headers = {k: v.decode("utf-8", "replace") for k, v in (msg.headers() or [])}
            print(json.dumps({"partition": msg.partition(), "offset": msg.offset(), "headers": headers,
                              "value": decode_value(msg.value())}), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        c.close()
    return 0


def cmd_get(args) -> int:
    import redis

    from consumer.cache import image_key

    s = _settings()
    raw = redis.Redis.from_url(s.redis_url).get(image_key(args.image_id))
    if raw is None:
        print(f"no result for image {args.image_id}", file=sys.stderr)
        return 1
    print(json.dumps(json.loads(raw), indent=2))
    return 0


def _dlq_filter(args):
    from producer_tools.dlq import DlqFilter, parse_since

    return DlqFilter(frozenset(args.stage or ()), args.error, parse_since(args.since) if args.since else None)


def cmd_dlq(args) -> int:
    from producer_tools import kafka_clients
    from producer_tools.dlq import DlqReader, error_kind, replay, replay_target
    from producer_tools.progress import bar

    s = _settings()
    filt = _dlq_filter(args)
    replaying = args.action == "replay"
    reader = DlqReader(s, s.topic_dlq, group=args.group if replaying else None, timeout_s=args.timeout).open()
    try:
        if not reader.exists or not reader.pending:
            what = ("does not exist: nothing dead-lettered yet" if not reader.exists else
                    f"is fully replayed by group {args.group}" if replaying and reader.size else "is empty")
            print(f"DLQ {s.topic_dlq} {what}: nothing to {args.action}", file=sys.stderr)
            if not replaying:
                _print_dlq_summary(Counter(), 0, args.json)
            return exit_codes.OK
        progress = bar(reader.pending, f"dlq {args.action}", "rec")
        if not replaying:
            summary: Counter = Counter()
            for r in reader.records():
                progress.update()
                if filt.matches(r):
                    summary[(r.stage, error_kind(r.error))] += 1
                    if not args.summary:
                        print(json.dumps(r.as_json()) if args.json else r.line())
            progress.close()
            _print_dlq_summary(summary, sum(summary.values()), args.json)
            return exit_codes.OK
        inputs = [s.topic_in] + ([s.topic_backfill] if s.topic_backfill else [])
        to = args.to or " / ".join(inputs)
        prod = None if args.dry_run else kafka_clients.producer(s)
        rep = replay(reader, prod, replay_target(args.to, inputs), filt, ack_unmatched=args.ack_unmatched,
                     flush_timeout_s=args.flush_timeout, on_line=lambda line: (progress.clear(), print(line)),
                     on_record=progress.update)
        progress.close()
    finally:
        reader.close()
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {rep.replayed} to {to}, failed {rep.failed}, skipped {rep.skipped_truncated} (truncated), "
          f"{rep.skipped_filtered} (filtered{', acknowledged' if args.ack_unmatched else ''})", file=sys.stderr)
    if args.dry_run:
        print("dry run: nothing was sent and nothing committed", file=sys.stderr)
    elif rep.commit_error:
        print(f"commit failed ({rep.commit_error}): a later replay will send these records again", file=sys.stderr)
    else:
        done = ", ".join(f"{p}:{o}" for p, o in sorted(rep.committed.items())) or "nothing"
        print(f"group {args.group} committed {done}" + (f"; {rep.left} records left for a later replay" if rep.left else ""),
              file=sys.stderr)
    return exit_codes.OK if rep.ok else exit_codes.PARTIAL


def _print_dlq_summary(summary, total: int, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"summary": [{"stage": st, "error": err, "count": n} for (st, err), n in summary.most_common()],
                          "total": total}))
        return
    print(f"\n{total} records" + (":" if total else ""))
    if summary:
        width = max(len("stage"), *(len(st) for st, _ in summary))
        print(f"{'count':>7}  {'stage':<{width}}  error")
        for (st, err), n in summary.most_common():
            print(f"{n:>7}  {st:<{width}}  {err}")


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


def cmd_backfill(args) -> int:
    import redis

    from producer_tools import backfill, kafka_clients
    from producer_tools.progress import bar

    s = _settings()
    topic = args.topic or s.topic_backfill or s.topic_in
    shown = 0

    def on_skip(skip) -> None:
        nonlocal shown
        if skip.reason in ("invalid", "unreadable") and shown < 20:
            shown += 1
            print(f"skipped ({skip.reason}): {skip.detail}", file=sys.stderr)

    if args.from_file:
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


def cmd_status(args) -> int:
    from producer_tools.status import collect, render

    s = _settings()
    st = collect(s, args.group or s.group_id, args.metrics or [], dlq_scan=-1 if args.no_dlq else args.dlq_scan,
                 timeout_s=args.timeout)
    print(json.dumps(st.as_json(), indent=2) if args.json else render(st))
    return exit_codes.PARTIAL if st.errors else exit_codes.OK


def cmd_loadgen(args) -> int:
    from producer_tools import kafka_clients
    from producer_tools.publish import make_event, publish

    s = _settings()
    t0 = time.monotonic()
    n = publish(kafka_clients.producer(s), s.topic_in,
                (make_event(args.url, image_id=f"load-{i}", policy=args.policy) for i in range(args.count)))
    dt = time.monotonic() - t0
    print(f"published {n} events in {dt:.2f}s ({n / dt:.0f}/s)")
    return 0


def cmd_score(args) -> int:
    import model
    from consumer.decode import DecodeLimits
    from consumer.policy import Policy
    from producer_tools.publish import expand_files
    from producer_tools.score import print_jsonl, print_table, score_files

    s = _settings()
    paths = []
    for t in args.paths:
        matches = sorted(Path().glob(t)) if any(ch in t for ch in "*?[") else [Path(t)]
        paths.extend(expand_files(matches))
    if not paths:
        print("no images found", file=sys.stderr)
        return 1
    predictor = model.load(args.model or s.model_path, args.device or s.device)
    policy = Policy.from_file(s.policy_file, s.default_policy)
    try:
        policy.check_model(predictor.heads)
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 2
    rows = score_files(paths, predictor, policy, profile=args.policy, role=args.role,
                       limits=DecodeLimits(s.max_pixels, tuple(s.allowed_formats)), batch_size=args.batch_size,
                       progress=len(paths) > 20 and sys.stderr.isatty())
    (print_jsonl if args.format == "jsonl" else print_table)(rows)
    if args.report:
        from producer_tools.report import Card, render, thumbnail_uri

        cards = [Card(r.path, Path(r.path).name, r.score, r.decision, r.reasons, r.signals,
                      thumbnail_uri(Path(r.path).read_bytes()) if Path(r.path).is_file() else None,
                      policy.profile_name(args.policy, args.role)) for r in rows]
        Path(args.report).write_text(render(cards, f"imagegate score: {len(cards)} images",
                                            f"policy {policy.version}, role {args.role}"))
        print(f"wrote {args.report}", file=sys.stderr)
    return 0


# --- review and policy what-if (issue 13) ------------------------------------------------
def cmd_report(args) -> int:
    from producer_tools.last_records import last_records
    from producer_tools.report import card_from_scored, render

    s = _settings()
    topic = args.topic or s.topic_out
    try:
        records = last_records(s, topic, args.last)
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 1
    cards = [card_from_scored(r.value) for r in records if isinstance(r.value, dict) and "decision" in r.value]
    if args.images:  # image_scored carries no URL; `imagegate publish DIR` names images by file stem
        from producer_tools.publish import expand_files
        from producer_tools.report import thumbnail_uri

        files = {f.stem: f for f in expand_files([args.images])}
        for c in cards:
            if c.title in files:
                c.thumb = thumbnail_uri(files[c.title].read_bytes())
    Path(args.out).write_text(render(cards, f"imagegate: last {len(cards)} results on {topic}", s.kafka_bootstrap))
    print(f"wrote {args.out} ({len(cards)} results)", file=sys.stderr)
    return 0


def cmd_policy(args) -> int:
    from consumer.policy import Policy
    from producer_tools import policy_cmd

    paths = args.paths
    if args.action == "check":
        try:
            print(policy_cmd.check(Path(paths[0])))
        except ValueError as e:
            print(str(e), file=sys.stderr)
            return 1
        return 0
    if bool(paths) == bool(args.last):
        print("policy diff: give either --last N [--topic T] or JSON-lines files", file=sys.stderr)
        return 2
    try:
        new = Policy.from_file(Path(args.policy_file))
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 1
    if args.profile and args.profile not in new.spec.profiles:
        print(f"profile {args.profile!r} is not in {args.policy_file} (has {', '.join(new.spec.profiles)})", file=sys.stderr)
        return 2
    if paths:
        try:
            stored = policy_cmd.read_jsonl(Path(p) for p in paths)
        except (OSError, ValueError) as e:
            print(str(e), file=sys.stderr)
            return 1
    else:
        from producer_tools.last_records import last_records

        s = _settings()
        topic = args.topic or s.topic_out
        try:
            stored = [x for x in (policy_cmd.stored_from(r.value, f"{topic}/{r.partition}@{r.offset}")
                                  for r in last_records(s, topic, args.last)) if x]
        except ValueError as e:
            print(str(e), file=sys.stderr)
            return 1
    d = policy_cmd.diff(stored, new, args.profile)
    policy_cmd.print_diff(d, new, sys.stdout, args.examples)
    if args.report:
        from producer_tools.report import Card, render, thumbnail_uri

        # `score --format jsonl` rows keep their file path: show the picture when it is still there
        cards = [Card(m.stored.key, m.stored.key, m.new.score, m.new_decision,
                      [r.model_dump(mode="json") for r in m.new.reasons], m.stored.signals,
                      thumbnail_uri(Path(m.stored.key).read_bytes()) if Path(m.stored.key).is_file() else None,
                      m.new.policy.name, {"decision": m.stored.decision, "reasons": m.stored.reasons}) for m in d.moves]
        Path(args.report).write_text(render(cards, f"policy diff: {len(cards)} of {d.total} change decision",
                                            f"new policy file {args.policy_file} (version {new.version})"))
        print(f"wrote {args.report}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="imagegate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("topics", help="create topics if missing")
    p.add_argument("--partitions", type=int, help="default IMAGEGATE_TOPIC_PARTITIONS")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("publish", help="publish image_uploaded events")
    p.add_argument("targets", nargs="+", help="URLs, image files or folders")
    p.add_argument("--via", choices=["file", "http"], default="file", help="how the worker reaches local files")
    p.add_argument("--base-url", help="with --via http: the `imagegate serve` address")
    p.add_argument("--root", help="root the URLs are relative to (default: the folder given)")
    p.add_argument("--policy", help="policy profile")
    p.add_argument("--role", choices=["main", "gallery"], default="main")
    p.add_argument("--listing-id")
    p.add_argument("--with-sha", action="store_true", help="include content_sha256 (enables cache hits before fetch)")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("serve", help="serve a folder over HTTP")
    p.add_argument("dir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("tail", help="print events from a topic")
    p.add_argument("--topic", help="default: the output topic")
    p.add_argument("--count", type=int, help="stop after this many events")
    p.add_argument("--timeout", type=float, help="stop after this many seconds")
    p.add_argument("--from-beginning", action="store_true")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("get", help="latest result for an image id from Redis")
    p.add_argument("image_id")
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("dlq", help="list or replay dead-lettered events")
    p.add_argument("action", choices=["list", "replay"])
    p.add_argument("--stage", action="append", help="only this stage (repeatable): validate, consume, fetch_decode, inference")
    p.add_argument("--error", help="only records whose error contains this text (case-insensitive)")
    p.add_argument("--since", help="only records that failed after this: RFC 3339 time or 30m, 6h, 2d")
    p.add_argument("--json", action="store_true", help="list: JSON lines and a JSON summary")
    p.add_argument("--summary", action="store_true", help="list: only the summary by stage and error")
    p.add_argument("--dry-run", action="store_true", help="replay: show what would be replayed; send and commit nothing")
    p.add_argument("--to", help="replay: target topic (default: the input or backfill topic the record came from)")
    p.add_argument("--ack-unmatched", action="store_true",
                   help="replay: records the filters leave out count as handled (committed past), e.g. to drop junk")
    p.add_argument("--group", default="imagegate-dlq-replay", help="consumer group that remembers what was replayed")
    p.add_argument("--timeout", type=float, default=30.0, help="give up after this many seconds without progress")
    p.add_argument("--flush-timeout", type=float, default=60.0, help="replay: wait this long for broker acknowledgements")
    p.set_defaults(func=cmd_dlq)

    p = sub.add_parser("backfill", help="re-publish image_uploaded for existing images (after a model/policy change)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-file", metavar="PATH", help="JSONL or CSV with image_id,url[,listing_id,seller_id,role,policy]")
    src.add_argument("--from-redis", action="store_true",
                     help="results in Redis whose model or policy version is not the running one")
    p.add_argument("--model", help="weights file whose version is the running one (default: IMAGEGATE_MODEL_PATH or shipped)")
    p.add_argument("--model-version", help="running model version (instead of reading --model)")
    p.add_argument("--policy-version", help="running policy version (default: the version in IMAGEGATE_POLICY_FILE)")
    p.add_argument("--topic", help="default IMAGEGATE_TOPIC_BACKFILL, else the input topic")
    p.add_argument("--rate", type=float, help="events per second (default: as fast as the broker takes them)")
    p.add_argument("--limit", type=int, help="plan at most this many images (a canary)")
    p.add_argument("--checkpoint", default="imagegate-backfill.checkpoint.json",
                   help="progress file; re-running the same command resumes from it (plan kept next to it)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and plan afresh")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("status", help="consumer group members, lag per partition, DLQ by stage, worker versions")
    p.add_argument("--group", help="consumer group (default IMAGEGATE_GROUP_ID)")
    p.add_argument("--metrics", nargs="+", metavar="URL", help="workers' metrics endpoints (host:port or URL)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    p.add_argument("--dlq-scan", type=int, default=10_000, help="newest DLQ records read for the by-stage count")
    p.add_argument("--no-dlq", action="store_true", help="skip the DLQ")
    p.add_argument("--timeout", type=float, default=15.0, help="per Kafka request, seconds")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("loadgen", help="publish many events for one image URL")
    p.add_argument("url")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--policy")
    p.set_defaults(func=cmd_loadgen)

    p = sub.add_parser("score", help="score image files offline with the worker's own path")
    p.add_argument("paths", nargs="+", help="files, folders or globs")
    p.add_argument("--format", choices=["table", "jsonl"], default="table")
    p.add_argument("--policy", help="policy profile")
    p.add_argument("--role", choices=["main", "gallery"], default="main")
    p.add_argument("--model", help="weights file (default: shipped weights)")
    p.add_argument("--device")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--report", metavar="OUT.html", help="also write the HTML review page")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("report", help="HTML review page of the latest image_scored events")
    p.add_argument("--topic", help="default: the output topic")
    p.add_argument("--last", type=int, default=200, help="this many most recent events")
    p.add_argument("--out", required=True, metavar="OUT.html")
    p.add_argument("--images", metavar="DIR", help="thumbnails from this folder (image_id = file stem, as `publish DIR` names them)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("policy", help="check a policy file, or replay one over stored results")
    psub = p.add_subparsers(dest="action", required=True)
    q = psub.add_parser("check", help="validate a policy file")
    q.add_argument("paths", nargs=1, metavar="FILE")
    q.set_defaults(func=cmd_policy)
    q = psub.add_parser("diff", help="re-judge stored results under a candidate policy file")
    q.add_argument("--policy-file", required=True, help="the candidate policy file")
    q.add_argument("--profile", help="judge everything under this profile (default: each result's own)")
    q.add_argument("--topic", help="read stored results from this topic (default: the output topic)")
    q.add_argument("--last", type=int, help="this many most recent results from the topic")
    q.add_argument("--examples", type=int, default=3, help="examples per decision change")
    q.add_argument("--report", metavar="OUT.html", help="HTML page of the images that change decision")
    q.add_argument("paths", nargs="*", metavar="FILE", help="JSON-lines files (image_scored bodies, tail or score output)")
    q.set_defaults(func=cmd_policy)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Exit codes (producer_tools/exit_codes.py): 0 ok, 1 partial failure, 2 usage or configuration error."""
    from confluent_kafka import KafkaException

    args = build_parser().parse_args(argv)  # argparse exits 2 on bad arguments
    try:
        return args.func(args)
    except exit_codes.UsageError as e:
        print(f"imagegate {args.cmd}: {e}", file=sys.stderr)
        return exit_codes.USAGE
    except KafkaException as e:
        err = e.args[0] if e.args else e
        print(f"imagegate {args.cmd}: Kafka error: {err}", file=sys.stderr)
        return exit_codes.PARTIAL


if __name__ == "__main__":
    sys.exit(main())
