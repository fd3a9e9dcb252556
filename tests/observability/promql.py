"""Small helpers shared by the observability tests: metric names in PromQL, the names the
worker exports, the rule files, promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "imagegate.rules.yml"
RULES_TEST = REPO / "deploy" / "prometheus" / "imagegate.rules.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "imagegate.json"
OPERATIONS = REPO / "docs" / "operations.md"

# PromQL words that look like identifiers but are not metric names.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "inf", "nan", "le", "atan2"}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])")


def metric_names(expr: str) -> set[str]:
    """Metric (and recording-rule) names an expression selects.

    Strings, label matchers {..}, range/subquery brackets [..], grouping clauses and
    function calls are removed first; what is left that looks like an identifier is a name.
    """
    e = _STRING.sub('""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = _GROUPING.sub(" ", e)
    names = set()
    for m in _IDENT.finditer(e):
        word = m.group(1)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue  # function or aggregation call, or a keyword
        if re.fullmatch(r"\d.*", word):
            continue
        names.add(word)
    return names


def base_name(sample_name: str, histograms: set[str], counters: set[str]) -> str | None:
    """Family name for a queried series name, accounting for _bucket/_sum/_count/_total."""
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix) and sample_name[: -len(suffix)] in histograms:
            return sample_name[: -len(suffix)]
    return sample_name


def exported_series_names() -> set[str]:
    """Every sample name the worker process can expose, from the live registry after importing
    the worker (plus the GPU gauges, which register only when the model is on CUDA)."""
    import consumer.worker  # noqa: F401 (registers the worker's metrics)
    from consumer import metrics
    from prometheus_client import REGISTRY

    names: set[str] = set()
    for fam in REGISTRY.collect():
        if fam.type == "histogram":
            names |= {fam.name + s for s in ("_bucket", "_sum", "_count")}
        elif fam.type == "counter":
            names |= {fam.name + "_total", fam.name + "_created"}
        elif fam.type == "info":
            names.add(fam.name + "_info")
        else:
            names.add(fam.name)
        names |= {s.name for s in fam.samples}
    names |= set(metrics.GPU_METRICS)
    return names


def rule_entries(path: Path = RULES) -> list[dict]:
    """`record:`/`alert:` entries with their expr and annotations, read line by line (the
    venv has no YAML parser; the file's layout is plain block style and checked by promtool)."""
    entries: list[dict] = []
    cur: dict | None = None
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"\s*- (record|alert): (\S+)\s*$", line)
        if m:
            cur = {"kind": m.group(1), "name": m.group(2), "expr": "", "annotations": {}}
            entries.append(cur)
        elif cur is not None:
            m = re.match(r"(\s*)expr: (.*)$", line)
            if m:
                if m.group(2).strip() == "|":
                    indent = len(m.group(1))
                    block = []
                    while i + 1 < len(lines) and (not lines[i + 1].strip() or len(lines[i + 1]) - len(lines[i + 1].lstrip()) > indent):
                        i += 1
                        block.append(lines[i].strip())
                    cur["expr"] = "\n".join(block)
                else:
                    cur["expr"] = m.group(2).strip()
            m = re.match(r"\s*(summary|description|runbook_url): (.*)$", line)
            if m:
                cur["annotations"][m.group(1)] = m.group(2).strip().strip('"')
        i += 1
    return entries


def dashboard_targets(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel, rows included."""
    dash = json.loads(path.read_text())
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((p.get("title", ""), t["expr"]))
            walk(p.get("panels", []))

    walk(dash["panels"])
    return out


def concrete(expr: str, job: str = "imagegate", rate_interval: str = "1m") -> str:
    """A dashboard expression with Grafana's variables filled in, ready for Prometheus."""
    return (expr.replace("$__rate_interval", rate_interval).replace('"$job"', f'"{job}"')
            .replace('"$instance"', '".*"'))


def promtool() -> str:
    """promtool from PATH; when missing, `deploy/local/stack install` installs Debian's prometheus."""
    exe = shutil.which("promtool")
    if exe is None:
        subprocess.run([str(REPO / "deploy" / "local" / "stack"), "install"], check=True, timeout=900)
        exe = shutil.which("promtool")
    assert exe, "promtool missing and `deploy/local/stack install` did not provide it"
    return exe
