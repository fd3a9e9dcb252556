"""`imagegate`: the operator's command line, one module per command group (see main.py)."""

from producer_tools.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
