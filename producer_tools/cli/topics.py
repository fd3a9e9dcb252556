"""`imagegate topics`: create the input, output, DLQ (and backfill) topics if missing."""

from __future__ import annotations

import json

from producer_tools import exit_codes
from producer_tools.cli import options


def register(sub) -> None:
    p = sub.add_parser("topics", help="create topics if missing (replicated on multi-broker clusters)")
    p.add_argument("--partitions", type=int, help="default IMAGEGATE_TOPIC_PARTITIONS")
    p.add_argument("--replication-factor", type=int, metavar="N",
                   help="default IMAGEGATE_TOPIC_REPLICATION_FACTOR, else min(3, number of brokers)")
    p.add_argument("--force", action="store_true", help="allow replication factor 1 on a multi-broker cluster")
    options.add_timeout(p, 30.0, "per Kafka request, seconds")
    options.add_json(p, "one JSON object: created and existing topics, the replication chosen")
    p.set_defaults(func=run)


def run(args) -> int:
    from producer_tools.kafka_clients import create_topics

    if args.partitions is not None and args.partitions < 1:
        raise exit_codes.UsageError(f"--partitions must be >= 1 (got {args.partitions})")
    s = options.settings()
    r = create_topics(s, args.partitions, args.replication_factor, args.force, args.timeout)
    plan = r.plan
    if args.json:
        print(json.dumps({"created": r.created,
                          "existing": {t: {"partitions": p, "replication_factor": rf} for t, (p, rf) in r.existing.items()},
                          "partitions": plan.partitions, "replication_factor": plan.replication_factor,
                          "min_insync_replicas": plan.min_insync_replicas, "brokers": plan.brokers}))
        return exit_codes.OK
    isr = f", min.insync.replicas {plan.min_insync_replicas}" if plan.min_insync_replicas else ""
    print(f"created: {', '.join(r.created) or 'none (all exist)'}"
          + (f" ({plan.partitions} partitions, replication factor {plan.replication_factor}{isr}; "
             f"{plan.brokers} broker(s))" if r.created else ""))
    for t, (p, rf) in r.existing.items():
        low = " (lower than planned)" if rf < plan.replication_factor else ""
        print(f"exists: {t} ({p} partitions, replication factor {rf}{low})")
    return exit_codes.OK
