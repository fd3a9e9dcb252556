"""`imagegate publish`, `serve` and `loadgen`: put image_uploaded events on the input topic."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from producer_tools import exit_codes
from producer_tools.cli import options


def register(sub) -> None:
    p = sub.add_parser("publish", help="publish image_uploaded events")
    p.add_argument("targets", nargs="+", help=f"URLs, image files or folders ({options.STDIN_HELP})")
    p.add_argument("--via", choices=["file", "http"], default="file", help="how the worker reaches local files")
    p.add_argument("--base-url", help="with --via http: the `imagegate serve` address")
    p.add_argument("--root", help="root the URLs are relative to (default: the folder given)")
    options.add_profile(p)
    options.add_role(p)
    p.add_argument("--listing-id")
    p.add_argument("--with-sha", action="store_true", help="include content_sha256 (enables cache hits before fetch)")
    options.add_json_always(p)
    p.set_defaults(func=run_publish)

    p = sub.add_parser("serve", help="serve a folder over HTTP")
    p.add_argument("dir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.set_defaults(func=run_serve)

    p = sub.add_parser("loadgen", help="publish many events for one image URL")
    p.add_argument("url")
    p.add_argument("--count", type=int, default=1000)
    options.add_profile(p)
    options.add_json(p, "one JSON object: published, seconds, events_per_s")
    p.set_defaults(func=run_loadgen)


def run_publish(args) -> int:
    from producer_tools import kafka_clients
    from producer_tools.progress import bar
    from producer_tools.publish import expand_files, make_event, publish, sha256_file, url_for

    if args.via == "http" and not args.base_url:
        raise exit_codes.UsageError("--via http needs --base-url (the `imagegate serve` address)")
    s = options.settings()
    events = []
    for target in options.expand_stdin(args.targets):
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


def run_serve(args) -> int:
    from producer_tools import serve

    if not Path(args.dir).is_dir():
        raise exit_codes.UsageError(f"no such folder: {args.dir}")
    server = serve.start(Path(args.dir), args.host, args.port)
    print(f"serving {args.dir} at {serve.base_url(server)} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return exit_codes.OK


def run_loadgen(args) -> int:
    from producer_tools import kafka_clients
    from producer_tools.publish import make_event, publish

    s = options.settings()
    t0 = time.monotonic()
    try:
        n = publish(kafka_clients.producer(s), s.topic_in,
                    (make_event(args.url, image_id=f"load-{i}", policy=args.policy) for i in range(args.count)))
    except RuntimeError as e:  # some events not acknowledged by the broker
        print(f"imagegate loadgen: {e}", file=sys.stderr)
        return exit_codes.PARTIAL
    dt = time.monotonic() - t0
    if args.json:
        print(json.dumps({"published": n, "seconds": round(dt, 3), "events_per_s": round(n / dt, 1)}))
    else:
        print(f"published {n} events in {dt:.2f}s ({n / dt:.0f}/s)")
    return exit_codes.OK
