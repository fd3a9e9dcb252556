"""`imagegate score PATH...`: the worker's decode -> model -> policy, offline."""

from __future__ import annotations

import sys
from pathlib import Path

from producer_tools import exit_codes
from producer_tools.cli import options


def register(sub) -> None:
    p = sub.add_parser("score", help="score image files offline with the worker's own path")
    p.add_argument("paths", nargs="+", help=f"files, folders or globs ({options.STDIN_HELP})")
    options.add_json(p, "JSON lines, one per image (path, score, decision, reasons, signals, error)")
    p.add_argument("--format", choices=["table", "jsonl"], default="table",
                   help="deprecated: `--format jsonl` is --json")
    options.add_profile(p)
    options.add_role(p)
    p.add_argument("--model", help="weights file (default: shipped weights)")
    p.add_argument("--device")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--report", metavar="OUT.html", help="also write the HTML review page")
    p.set_defaults(func=run)


def run(args) -> int:
    import model
    from consumer.decode import DecodeLimits
    from consumer.policy import Policy
    from producer_tools.publish import expand_files
    from producer_tools.score import print_jsonl, print_table, score_files

    s = options.settings()
    paths = []
    for t in options.expand_stdin(args.paths):
        matches = sorted(Path().glob(t)) if any(ch in t for ch in "*?[") else [Path(t)]
        try:
            paths.extend(expand_files(matches))
        except FileNotFoundError as e:
            raise exit_codes.UsageError(str(e)) from None
    if not paths:
        print("no images found", file=sys.stderr)
        return exit_codes.PARTIAL
    policy = Policy.from_file(s.policy_file, s.default_policy)
    if args.policy is not None and args.policy not in policy.spec.profiles:
        # the worker falls back to the default profile for an unknown name; an operator's typo should not
        raise exit_codes.UsageError(f"unknown policy profile {args.policy!r} in {s.policy_file} "
                                    f"(has {', '.join(policy.spec.profiles)})")
    try:
        predictor = model.load(args.model or s.model_path, args.device or s.device)
    except model.ModelLoadError as e:
        raise exit_codes.UsageError(str(e)) from None
    try:
        policy.check_model(predictor.heads)
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return exit_codes.USAGE
    rows = score_files(paths, predictor, policy, profile=args.policy, role=args.role,
                       limits=DecodeLimits(s.max_pixels, tuple(s.allowed_formats)), batch_size=args.batch_size,
                       progress=len(paths) > 20 and sys.stderr.isatty())
    (print_jsonl if args.json or args.format == "jsonl" else print_table)(rows)
    if args.report:
        from producer_tools.report import Card, render, thumbnail_uri

        cards = [Card(r.path, Path(r.path).name, r.score, r.decision, r.reasons, r.signals,
                      thumbnail_uri(Path(r.path).read_bytes()) if Path(r.path).is_file() else None,
                      policy.profile_name(args.policy, args.role)) for r in rows]
        Path(args.report).write_text(render(cards, f"imagegate score: {len(cards)} images",
                                            f"policy {policy.version}, role {args.role}"))
        print(f"wrote {args.report}", file=sys.stderr)
    return exit_codes.OK
