"""`imagegate tail` and `imagegate get`: read what the worker produced (Kafka events, the Redis result)."""

from __future__ import annotations

import json
import sys
import time

from producer_tools import exit_codes
from producer_tools.cli import options


def register(sub) -> None:
    p = sub.add_parser("tail", help="print events from a topic")
    options.add_topic(p)
    p.add_argument("--count", type=int, help="stop after this many events")
    options.add_timeout(p, None, "stop after this many seconds")
    p.add_argument("--from-beginning", action="store_true")
    options.add_json_always(p)
    p.set_defaults(func=run_tail)

    p = sub.add_parser("get", help="latest result for an image id from Redis")
    p.add_argument("image_id")
    options.add_json_always(p)
    p.set_defaults(func=run_get)


def run_tail(args) -> int:
    from producer_tools.kafka_clients import decode_value, raise_if_denied, reader

    s = options.settings()
    topic = args.topic or s.topic_out
    c = reader(s, from_beginning=args.from_beginning)
    c.subscribe([topic])
    seen, deadline = 0, time.monotonic() + args.timeout if args.timeout else None
    try:
        while (args.count is None or seen < args.count) and (deadline is None or time.monotonic() < deadline):
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise_if_denied(msg.error())  # not authorized: say so, never "no events"
                continue
            seen += 1
            headers = {k: v.decode("utf-8", "replace") for k, v in (msg.headers() or [])}
            print(json.dumps({"partition": msg.partition(), "offset": msg.offset(), "headers": headers,
                              "value": decode_value(msg.value())}), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        c.close()
    return exit_codes.OK


def run_get(args) -> int:
    import redis

    from consumer.cache import image_key

    s = options.settings()
    client = redis.Redis.from_url(s.redis_url, socket_connect_timeout=5, socket_timeout=5)
    raw = client.get(image_key(args.image_id))
    if raw is None:
        print(f"no result for image {args.image_id}", file=sys.stderr)
        return exit_codes.PARTIAL
    print(json.dumps(json.loads(raw), indent=2))
    return exit_codes.OK
