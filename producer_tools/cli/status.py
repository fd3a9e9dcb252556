"""`imagegate status`: consumer group, lag per partition, DLQ by stage, worker versions."""

from __future__ import annotations

import json

from producer_tools import exit_codes
from producer_tools.cli import options


def register(sub) -> None:
    p = sub.add_parser("status", help="consumer group members, lag per partition, DLQ by stage, worker versions")
    p.add_argument("--group", help="consumer group (default IMAGEGATE_GROUP_ID)")
    p.add_argument("--metrics", nargs="+", metavar="URL", help="workers' metrics endpoints (host:port or URL)")
    options.add_json(p, "one JSON object instead of tables")
    p.add_argument("--dlq-scan", type=int, default=10_000, help="newest DLQ records read for the by-stage count")
    p.add_argument("--no-dlq", action="store_true", help="skip the DLQ")
    options.add_timeout(p, 15.0, "per Kafka request, seconds")
    p.set_defaults(func=run)


def run(args) -> int:
    from producer_tools.status import collect, render

    s = options.settings()
    st = collect(s, args.group or s.group_id, args.metrics or [], dlq_scan=-1 if args.no_dlq else args.dlq_scan,
                 timeout_s=args.timeout)
    print(json.dumps(st.as_json(), indent=2) if args.json else render(st))
    return exit_codes.PARTIAL if st.errors else exit_codes.OK
