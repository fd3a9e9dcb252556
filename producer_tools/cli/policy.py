"""`imagegate policy check FILE | diff`: validate a policy file; replay one over stored results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from producer_tools import exit_codes
from producer_tools.cli import options

_STDIN_FILE = "/dev/stdin"  # the policy loader reads paths; a policy piped in is read through this one


def register(sub) -> None:
    p = sub.add_parser("policy", help="check a policy file, or replay one over stored results")
    psub = p.add_subparsers(dest="action", required=True)
    q = psub.add_parser("check", help="validate a policy file")
    q.add_argument("paths", nargs=1, metavar="FILE", help="the policy file ('-': stdin)")
    q.set_defaults(func=run)
    q = psub.add_parser("diff", help="re-judge stored results under a candidate policy file")
    q.add_argument("--policy-file", required=True, help="the candidate policy file ('-': stdin)")
    q.add_argument("--profile", help="judge everything under this profile (default: each result's own)")
    options.add_topic(q, "the output topic; read stored results from it")
    q.add_argument("--last", type=int, help="this many most recent results from the topic")
    q.add_argument("--examples", type=int, default=3, help="examples per decision change")
    q.add_argument("--report", metavar="OUT.html", help="HTML page of the images that change decision")
    options.add_json(q, "one JSON object: transitions, reason changes, examples")
    q.add_argument("paths", nargs="*", metavar="FILE",
                   help="JSON-lines files (image_scored bodies, tail or score output; '-': stdin)")
    q.set_defaults(func=run)


def run(args) -> int:
    from consumer.policy import Policy
    from producer_tools import policy_cmd

    paths = args.paths
    for p in ([args.policy_file] if args.action == "diff" else []) + paths:
        if p != options.STDIN and not Path(p).is_file():
            raise exit_codes.UsageError(f"no such file: {p}")
    if args.action == "check":
        try:
            print(policy_cmd.check(Path(_STDIN_FILE if paths[0] == options.STDIN else paths[0])))
        except ValueError as e:
            print(str(e), file=sys.stderr)
            return exit_codes.PARTIAL
        return exit_codes.OK
    if paths.count(options.STDIN) > 1 or (options.STDIN in paths and args.policy_file == options.STDIN):
        raise exit_codes.UsageError("stdin ('-') can be read only once")
    if bool(paths) == bool(args.last):
        print("policy diff: give either --last N [--topic T] or JSON-lines files", file=sys.stderr)
        return exit_codes.USAGE
    try:
        new = Policy.from_file(Path(_STDIN_FILE if args.policy_file == options.STDIN else args.policy_file))
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return exit_codes.PARTIAL
    if args.profile and args.profile not in new.spec.profiles:
        print(f"profile {args.profile!r} is not in {args.policy_file} (has {', '.join(new.spec.profiles)})", file=sys.stderr)
        return exit_codes.USAGE
    if paths:
        try:
            stored = policy_cmd.read_jsonl(Path(p) for p in paths)
        except (OSError, ValueError) as e:
            print(str(e), file=sys.stderr)
            return exit_codes.PARTIAL
    else:
        from producer_tools.last_records import last_records

        s = options.settings()
        topic = args.topic or s.topic_out
        try:
            stored = [x for x in (policy_cmd.stored_from(r.value, f"{topic}/{r.partition}@{r.offset}")
                                  for r in last_records(s, topic, args.last)) if x]
        except ValueError as e:
            print(str(e), file=sys.stderr)
            return exit_codes.PARTIAL
    d = policy_cmd.diff(stored, new, args.profile)
    if args.json:
        print(json.dumps(policy_cmd.diff_json(d, new, args.examples)))
    else:
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
    return exit_codes.OK
