"""`imagegate shadow report`: how the shadow candidate's verdicts compare with the default's.

Reads the shadow topic (`IMAGEGATE_SHADOW_TOPIC`, consumer/shadow.py) from its start to its
end offsets now. Every shadow record carries the candidate verdict and, in its `shadow`
field, the default verdict for the same event, so nothing else is read. Re-deliveries are
counted once (the last record per source event). Prints the decision confusion table, the
per-reason agreement and examples of disagreements, and how many images each process judged
(`via`: the worker, or the scoring API, whose records' source event is the request); `--json` for scripts.

The CLI wires it as `imagegate shadow report` through `register`; it also runs alone as
`python -m producer_tools.shadow_report`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from consumer.agreement import DECISIONS, REASON_OUTCOMES, Agreement
from producer_tools import exit_codes

PROG = "imagegate shadow report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic", help="shadow topic (default: IMAGEGATE_SHADOW_TOPIC)")
    p.add_argument("--examples", type=int, default=10, metavar="N", help="disagreements to show (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to read the topic to its end (default 60)")


def register(subparsers: Any) -> None:
    """`imagegate shadow report ...` on the CLI's subparsers."""
    shadow = subparsers.add_parser("shadow", help="shadow models: compare a candidate with the default")
    sub = shadow.add_subparsers(dest="shadow_command", required=True)
    p = sub.add_parser("report", help="confusion table and per-reason agreement from the shadow topic",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from consumer.config import ConfigError, load_settings

    try:
        s = load_settings()
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return exit_codes.USAGE
    topic = args.topic or s.shadow_topic
    if not topic:
        print("no shadow topic: pass --topic or set IMAGEGATE_SHADOW_TOPIC", file=sys.stderr)
        return exit_codes.USAGE
    if args.examples < 0:
        print("--examples must be >= 0", file=sys.stderr)
        return exit_codes.USAGE
    try:
        values, complete = read_topic(s, topic, args.timeout)
    except LookupError as e:
        print(str(e), file=sys.stderr)
        return exit_codes.USAGE
    report = build_report(values, args.examples)
    report["topic"] = topic
    report["complete"] = complete
    print(json.dumps(report, indent=2) if args.json else render(report))
    return exit_codes.OK if complete else exit_codes.PARTIAL


def read_topic(s: Any, topic: str, timeout_s: float) -> tuple[list[bytes], bool]:
    """Every value in the topic up to its end offsets at the start; False if not all was read in time."""
    from confluent_kafka import TopicPartition

    from producer_tools.kafka_clients import reader

    c = reader(s)
    try:
        meta = c.list_topics(topic, timeout=min(30.0, timeout_s)).topics.get(topic)
        if meta is None or meta.error is not None:
            raise LookupError(f"topic {topic!r} does not exist")
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=min(30.0, timeout_s))
                for p in sorted(meta.partitions)}
        todo = {p for p, (low, high) in ends.items() if high > low}
        c.assign([TopicPartition(topic, p, ends[p][0]) for p in todo])
        out: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error() or m.partition() not in todo:
                    continue
                if m.value() is not None:
                    out.append(m.value())
                if m.offset() >= ends[m.partition()][1] - 1:
                    todo.discard(m.partition())
        return out, not todo
    finally:
        c.close()


def build_report(values: list[bytes], n_examples: int = 10) -> dict[str, Any]:
    """Aggregate shadow records (raw values) into the report; pure, so tests feed it records directly."""
    latest: dict[str, dict[str, Any]] = {}
    invalid = 0
    for raw in values:
        try:
            body = json.loads(raw)
            body["shadow"]["default"]["decision"]  # noqa: B018 (a record without it is not a shadow record)
            key = str(body["source_event_id"])
        except (ValueError, KeyError, TypeError):
            invalid += 1
            continue
        latest[key] = body
    agreement = Agreement()
    examples: list[tuple[int, dict[str, Any]]] = []
    pairs: dict[tuple, int] = {}
    via: dict[str, int] = {}
    for body in latest.values():
        d = body["shadow"]["default"]
        v = str(body["shadow"].get("via") or "worker")  # records from before `via` came from the worker
        via[v] = via.get(v, 0) + 1
        d_codes = list(d.get("reasons") or [])
        c_codes = [r["code"] for r in body.get("reasons") or []]
        agreement.add(d["decision"], body["decision"], d_codes, c_codes)
        pair = (_ref(d.get("model")), _ref(d.get("policy")), _ref(body.get("model")), _ref(body.get("policy")))
        pairs[pair] = pairs.get(pair, 0) + 1
        if d["decision"] != body["decision"] or set(d_codes) != set(c_codes):
            rank = 0 if d["decision"] != body["decision"] else 1  # decision changes first
            examples.append((rank, {
                "image_id": body.get("image_id"), "url": body["shadow"].get("url"),
                "source_event_id": body["source_event_id"],
                "default": {"decision": d["decision"], "score": d.get("score"), "reasons": sorted(d_codes)},
                "candidate": {"decision": body["decision"], "score": body.get("score"), "reasons": sorted(c_codes)},
            }))
    examples.sort(key=lambda e: (e[0], str(e[1]["image_id"])))
    total = agreement.total
    return {
        "records": len(values), "invalid": invalid, "duplicates": len(values) - invalid - len(latest),
        "total": total, "agreed": agreement.agreed,
        "agreement": round(agreement.agreed / total, 4) if total else None,
        "decisions": agreement.table(), "reasons": agreement.per_reason(),
        "disagreements": len(examples), "examples": [e for _, e in examples[:n_examples]],
        "via": dict(sorted(via.items())),
        "versions": [{"default_model": p[0], "default_policy": p[1], "candidate_model": p[2], "candidate_policy": p[3],
                      "images": n} for p, n in sorted(pairs.items(), key=lambda kv: -kv[1])],
    }


def _ref(ref: Any) -> str | None:
    return f"{ref.get('name')}@{ref.get('version')}" if isinstance(ref, dict) else None


def render(r: dict[str, Any]) -> str:
    lines = [f"shadow topic {r['topic']}: {r['total']} images ({r['records']} records, {r['duplicates']} re-deliveries, "
             f"{r['invalid']} not shadow records){'' if r['complete'] else ' -- NOT read to its end in time'}"]
    if r.get("via"):
        lines.append("  judged by: " + ", ".join(f"{k} {n}" for k, n in r["via"].items()))
    for v in r["versions"]:
        lines.append(f"  default {v['default_model']} / policy {v['default_policy']}  vs  candidate "
                     f"{v['candidate_model']} / policy {v['candidate_policy']}: {v['images']} images")
    if not r["total"]:
        return "\n".join(lines)
    lines += ["", f"decisions (rows: default, columns: candidate); agreement {r['agreed']}/{r['total']} "
                  f"= {100 * r['agreement']:.1f} %"]
    w = max(9, *(len(str(n)) + 2 for row in r["decisions"].values() for n in row.values()))
    lines.append("default \\ candidate".ljust(20) + "".join(c.rjust(w) for c in DECISIONS) + "total".rjust(w))
    for d in DECISIONS:
        row = r["decisions"][d]
        lines.append(d.ljust(20) + "".join(str(row[c]).rjust(w) for c in DECISIONS) + str(sum(row.values())).rjust(w))
    cols = {c: sum(r["decisions"][d][c] for d in DECISIONS) for c in DECISIONS}
    lines.append("total".ljust(20) + "".join(str(cols[c]).rjust(w) for c in DECISIONS) + str(r["total"]).rjust(w))
    lines += ["", "reasons (images with the code in: both verdicts, the default's only, the candidate's only)"]
    if r["reasons"]:
        cw = max(len(c) for c in r["reasons"]) + 2
        lines.append("code".ljust(cw) + "".join(o.rjust(16) for o in REASON_OUTCOMES))
        for code, row in r["reasons"].items():
            lines.append(code.ljust(cw) + "".join(str(row[o]).rjust(16) for o in REASON_OUTCOMES))
    else:
        lines.append("  (no reasons in either verdict)")
    lines += ["", f"disagreements: {r['disagreements']} images (decision or reasons differ); "
                  f"{len(r['examples'])} shown, decision changes first"]
    for e in r["examples"]:
        d, c = e["default"], e["candidate"]
        lines.append(f"  {e['image_id']}  {e['url']}")
        lines.append(f"    default   {d['decision']:<7} {d['score']:>6}  {', '.join(d['reasons']) or '-'}")
        lines.append(f"    candidate {c['decision']:<7} {c['score']:>6}  {', '.join(c['reasons']) or '-'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
