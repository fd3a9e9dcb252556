"""`imagegate completion bash|zsh`: shell completion generated from the parser itself (shtab),
so it never lists a command or option the CLI does not have."""

from __future__ import annotations

import argparse

from producer_tools import exit_codes

SHELLS = ("bash", "zsh")


def register(sub) -> None:
    p = sub.add_parser("completion", help="print the shell completion script (bash or zsh)")
    p.add_argument("shell", choices=SHELLS)
    # The root parser arrives through the defaults main() sets: importing main here would be a cycle.
    p.set_defaults(func=run)


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    import shtab

    return shtab.complete(parser, shell=shell)


def run(args) -> int:
    print(script(args.root_parser, args.shell))
    return exit_codes.OK
