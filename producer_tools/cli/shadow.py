"""`imagegate shadow report`: the default model/policy against the shadow candidate.

The parser and the report live together in producer_tools/shadow_report.py (it also runs alone as
`python -m producer_tools.shadow_report`); this module only puts it on the CLI.
"""

from producer_tools.shadow_report import register

__all__ = ["register"]
