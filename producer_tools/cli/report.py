"""`imagegate report`: an HTML review page of the latest image_scored events."""

from __future__ import annotations

import sys
from pathlib import Path

from producer_tools import exit_codes
from producer_tools.cli import options


def register(sub) -> None:
    p = sub.add_parser("report", help="HTML review page of the latest image_scored events")
    options.add_topic(p)
    p.add_argument("--last", type=int, default=200, help="this many most recent events")
    p.add_argument("--out", required=True, metavar="OUT.html")
    p.add_argument("--images", metavar="DIR", help="thumbnails from this folder (image_id = file stem, as `publish DIR` names them)")
    p.set_defaults(func=run)


def run(args) -> int:
    from producer_tools.last_records import last_records
    from producer_tools.report import card_from_scored, render

    s = options.settings()
    topic = args.topic or s.topic_out
    try:
        records = last_records(s, topic, args.last)
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return exit_codes.PARTIAL
    cards = [card_from_scored(r.value) for r in records if isinstance(r.value, dict) and "decision" in r.value]
    if args.images:  # image_scored carries no URL; `imagegate publish DIR` names images by file stem
        from producer_tools.publish import expand_files
        from producer_tools.report import thumbnail_uri

        try:
            files = {f.stem: f for f in expand_files([args.images])}
        except FileNotFoundError as e:
            raise exit_codes.UsageError(str(e)) from None
        for c in cards:
            if c.title in files:
                c.thumb = thumbnail_uri(files[c.title].read_bytes())
    Path(args.out).write_text(render(cards, f"imagegate: last {len(cards)} results on {topic}", s.kafka_bootstrap))
    print(f"wrote {args.out} ({len(cards)} results)", file=sys.stderr)
    return exit_codes.OK
