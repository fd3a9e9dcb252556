"""`imagegate dlq list | replay`: inspect the dead-letter topic, or republish its events."""

from __future__ import annotations

import json
import sys
from collections import Counter

from producer_tools import exit_codes
from producer_tools.cli import options


def register(sub) -> None:
    p = sub.add_parser("dlq", help="list or replay dead-lettered events")
    p.add_argument("action", choices=["list", "replay"])
    p.add_argument("--stage", action="append", help="only this stage (repeatable): validate, consume, fetch_decode, inference")
    p.add_argument("--error", help="only records whose error contains this text (case-insensitive)")
    p.add_argument("--since", help="only records that failed after this: RFC 3339 time or 30m, 6h, 2d")
    options.add_json(p, "list: JSON lines and a JSON summary")
    p.add_argument("--summary", action="store_true", help="list: only the summary by stage and error")
    p.add_argument("--dry-run", action="store_true", help="replay: show what would be replayed; send and commit nothing")
    p.add_argument("--to", help="replay: target topic (default: the input or backfill topic the record came from)")
    p.add_argument("--ack-unmatched", action="store_true",
                   help="replay: records the filters leave out count as handled (committed past), e.g. to drop junk")
    p.add_argument("--group", default="imagegate-dlq-replay", help="consumer group that remembers what was replayed")
    options.add_timeout(p, 30.0, "give up after this many seconds without progress")
    p.add_argument("--flush-timeout", type=float, default=60.0, help="replay: wait this long for broker acknowledgements")
    p.set_defaults(func=run)


def _dlq_filter(args):
    from producer_tools.dlq import DlqFilter, parse_since

    return DlqFilter(frozenset(args.stage or ()), args.error, parse_since(args.since) if args.since else None)


def run(args) -> int:
    from producer_tools import kafka_clients
    from producer_tools.dlq import DlqReader, error_kind, replay, replay_target
    from producer_tools.progress import bar

    s = options.settings()
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
