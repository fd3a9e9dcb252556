"""`imagegate`: the operator's command line.

  imagegate topics                       create the input/output/DLQ topics if missing
  imagegate publish URL|FILE|DIR...      publish image_uploaded events
  imagegate serve DIR                    serve local images over HTTP for `publish --via http`
  imagegate tail [--topic T]             print events from a topic (image_scored by default)
  imagegate get IMAGE_ID                 latest result for an image, from Redis
  imagegate dlq list | replay            inspect the dead-letter topic, or republish its events
  imagegate loadgen URL --count N        publish N events for one image (throughput tests)
  imagegate score PATH... [--report F]   the worker's decode -> model -> policy, offline
  imagegate report --last N --out F      HTML review page of the latest image_scored events
  imagegate policy check FILE | diff     validate a policy file; replay one over stored results

Kafka/Redis addresses and topic names come from the same IMAGEGATE_* settings as the worker.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from consumer.config import ConfigError, load_settings


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
    from producer_tools.publish import expand_files, make_event, publish, sha256_file, url_for

    s = _settings()
    events = []
    for target in args.targets:
        if "://" in target:
            events.append(make_event(target, policy=args.policy, role=args.role, listing_id=args.listing_id))
            continue
        for f in expand_files([target]):
            root = Path(args.root or (target if Path(target).is_dir() else Path(target).parent))
            url = url_for(f, args.via, root, args.base_url)
            sha = sha256_file(f) if args.with_sha else None
            events.append(make_event(url, image_id=f.stem, policy=args.policy, role=args.role,
                                     listing_id=args.listing_id, content_sha256=sha))
    n = publish(kafka_clients.producer(s), s.topic_in, events)
    for ev in events:
        print(json.dumps({"event_id": ev.event_id, "image_id": ev.image_id, "url": ev.url}))
    print(f"published {n} events to {s.topic_in}", file=sys.stderr)
    return 0


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


def cmd_dlq(args) -> int:
    from producer_tools.kafka_clients import producer, reader

    s = _settings()
    c = reader(s, group_id=args.group if args.action == "replay" else None)
    c.subscribe([s.topic_dlq])
    p = producer(s) if args.action == "replay" else None
    n, idle_until = 0, time.monotonic() + args.timeout
    while time.monotonic() < idle_until:
        msg = c.poll(0.5)
        if msg is None or msg.error():
            continue
        idle_until = time.monotonic() + args.timeout
        headers = dict(msg.headers() or [])
        if args.action == "list":
            print(json.dumps({"offset": msg.offset(), "error": headers.get("imagegate_error", b"").decode("utf-8", "replace"),
                              "stage": headers.get("imagegate_error_stage", b"").decode(),
                              "value": (msg.value() or b"")[:500].decode("utf-8", "replace")}))
        else:
            clean = [(k, v) for k, v in (msg.headers() or []) if not k.startswith("imagegate_")]
            p.produce(s.topic_in, msg.value(), msg.key(), headers=clean)
            p.poll(0)
        n += 1
    if p is not None:
        p.flush(30)
        if n:
            c.commit(asynchronous=False)  # the group remembers what was replayed
    c.close()
    print(f"{'replayed' if args.action == 'replay' else 'listed'} {n} DLQ records", file=sys.stderr)
    return 0


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
    p.add_argument("--group", default="imagegate-dlq-replay", help="consumer group that remembers what was replayed")
    p.add_argument("--timeout", type=float, default=3.0, help="stop after this many idle seconds")
    p.set_defaults(func=cmd_dlq)

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
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
