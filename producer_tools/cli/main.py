"""Assembles the command modules into one parser and turns failures into exit codes.

Every command module has `register(subparsers)` (its parser, next to its code) and a run
function; this file only orders them and maps the errors any command can meet (a missing
file, an unreachable Kafka or Redis) to one line on stderr and the documented exit code.
"""

from __future__ import annotations

import argparse
import os
import sys

from producer_tools import exit_codes
from producer_tools.cli import (api, backfill, completion, dlq, policy, publish, report, results, score,
                                shadow, status, topics)

# help order: set up, feed, look, repair, review
COMMANDS = (topics, publish, results, backfill, dlq, status, score, report, policy, shadow, api, completion)

DESCRIPTION = """imagegate: the operator's command line.

  imagegate topics                       create the input/output/DLQ topics if missing (replicated)
  imagegate publish URL|FILE|DIR...      publish image_uploaded events
  imagegate serve DIR                    serve local images over HTTP for `publish --via http`
  imagegate tail [--topic T]             print events from a topic (image_scored by default)
  imagegate get IMAGE_ID                 latest result for an image, from Redis
  imagegate backfill --from-file F | --from-redis   re-score existing images after a model/policy change
  imagegate dlq list | replay            inspect the dead-letter topic, or republish its events
  imagegate status                       consumer group, lag per partition, DLQ by stage, worker versions
  imagegate loadgen URL --count N        publish N events for one image (throughput tests)
  imagegate score PATH... [--report F]   the worker's decode -> model -> policy, offline
  imagegate report --last N --out F      HTML review page of the latest image_scored events
  imagegate policy check FILE | diff     validate a policy file; replay one over stored results
  imagegate shadow report                default vs shadow candidate: confusion table, examples
  imagegate api [--port P]               serve the scoring API (POST /v1/score)
  imagegate completion bash|zsh          shell completion script

Kafka/Redis addresses and topic names come from the same IMAGEGATE_* settings as the worker.
`--json` gives structured output; `-` as an input path reads stdin.
Exit codes: 0 ok, 1 partial failure (some items failed, or Kafka/Redis could not be reached),
2 usage or configuration error (bad arguments, a missing file, an unknown profile).
"""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("imagegate")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="imagegate", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"imagegate {version()}")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return ap


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    """Exit codes (producer_tools/exit_codes.py): 0 ok, 1 partial failure, 2 usage or configuration error."""
    import redis
    from confluent_kafka import KafkaError, KafkaException

    parser = build_parser()
    parser.set_defaults(root_parser=parser)
    args = parser.parse_args(argv)  # argparse exits 2 on bad arguments
    from producer_tools.kafka_clients import quiet_librdkafka

    quiet_librdkafka()
    name = f"imagegate {args.cmd}" + (f" {args.action}" if isinstance(getattr(args, "action", None), str) else "")
    try:
        return args.func(args)
    except exit_codes.UsageError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return exit_codes.USAGE
    except FileNotFoundError as e:  # an input named on the command line
        print(f"{name}: no such file: {e.filename or _one_line(e)}", file=sys.stderr)
        return exit_codes.USAGE
    except KafkaException as e:
        err = e.args[0] if e.args else e
        print(f"{name}: Kafka error: {err.str() if isinstance(err, KafkaError) else _one_line(err)}", file=sys.stderr)
        return exit_codes.PARTIAL
    except redis.RedisError as e:  # unreachable, refused, timed out: the source could not be read
        print(f"{name}: Redis error: {_one_line(e)}", file=sys.stderr)
        return exit_codes.PARTIAL
    except BrokenPipeError:  # `imagegate tail | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return exit_codes.OK
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
