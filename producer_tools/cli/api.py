"""`imagegate api`: the scoring API. Its parser and start-up live in scoring_api/cli.py (it also runs
as `python -m scoring_api`); this module only puts it on the CLI."""

from scoring_api.cli import register

__all__ = ["register"]
