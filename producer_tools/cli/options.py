"""Options several commands share, defined once so they are spelled, defaulted and explained alike.

Conventions every command follows: `--json` where the output is structured (records, tables,
summaries) for scripts; `-` wherever a path is read as input, meaning stdin (one item per line
for lists of paths or URLs, the file's content otherwise), so commands compose in pipes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from consumer.config import ConfigError, Settings, load_settings
from producer_tools.exit_codes import UsageError

STDIN = "-"
STDIN_HELP = "'-' reads them from stdin, one per line"


def settings() -> Settings:
    """The worker's own settings; an invalid configuration ends the command with exit code 2."""
    try:
        return load_settings()
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        sys.exit(2)


def add_json(p: argparse.ArgumentParser, what: str = "JSON instead of text") -> None:
    p.add_argument("--json", action="store_true", help=what)


def add_json_always(p: argparse.ArgumentParser) -> None:
    """Commands whose output is JSON already accept --json too, so scripts can pass it everywhere."""
    p.add_argument("--json", action="store_true", help="accepted for uniformity: this command always prints JSON")


def add_topic(p: argparse.ArgumentParser, default: str = "the output topic") -> None:
    p.add_argument("--topic", help=f"default: {default}")


def add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", help="policy profile")


def add_role(p: argparse.ArgumentParser) -> None:
    p.add_argument("--role", choices=["main", "gallery"], default="main")


def add_timeout(p: argparse.ArgumentParser, default: float | None, what: str) -> None:
    p.add_argument("--timeout", type=float, default=default, help=what)


def expand_stdin(values: list[str]) -> list[str]:
    """`-` among list arguments stands for the non-blank lines of stdin (e.g. `find ... | imagegate score -`)."""
    out: list[str] = []
    for v in values:
        if v == STDIN:
            out.extend(line.strip() for line in sys.stdin if line.strip())
        else:
            out.append(v)
    return out


def read_input(path: str) -> tuple[str, str]:
    """(name, text) of an input file or of stdin (`-`); a missing file is a usage error, not a traceback."""
    if path == STDIN:
        return "<stdin>", sys.stdin.read()
    try:
        return path, Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder, not a file") from None
