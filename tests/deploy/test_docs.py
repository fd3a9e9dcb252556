"""The documents match the code: links resolve, nothing points at the absent DESIGN.md, the
architecture's import rules hold, and the listing-services guide covers the fields it explains."""

from __future__ import annotations

import ast
import re
import typing

import pytest

from tests.deploy.tools import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
ARCHITECTURE = REPO / "docs" / "architecture.md"
LISTING = REPO / "docs" / "listing-services.md"
OURS = {"model", "consumer", "producer_tools", "training", "bench", "tests", "deploy"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc):
    text = doc.read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_nothing_points_at_design_md(doc):
    assert not (REPO / "DESIGN.md").exists()
    assert "DESIGN.md" not in doc.read_text()


def allowed_imports() -> dict[str, set[str]]:
    """package -> the packages of ours it may import, from the table in docs/architecture.md."""
    rules = {}
    for row in re.findall(r"^\| `(\w+)/` \|[^|]*\| ([^|]*) \|$", ARCHITECTURE.read_text(), re.M):
        package, allowed = row
        if "anything" in allowed or "scripts" in allowed:
            continue
        rules[package] = set(re.findall(r"`(\w+)`", allowed))
    return rules


def imported_packages(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & OURS


def test_packages_import_only_what_the_architecture_allows():
    rules = allowed_imports()
    assert rules.keys() >= {"model", "consumer", "producer_tools", "training"}, rules
    assert rules["model"] == set() and rules["consumer"] == {"model"}
    violations = []
    for package, allowed in rules.items():
        for path in sorted((REPO / package).rglob("*.py")) if (REPO / package).is_dir() else []:
            bad = imported_packages(path) - allowed - {package}
            if bad:
                violations.append(f"{path.relative_to(REPO)} imports {sorted(bad)}")
    assert violations == []


def test_listing_guide_explains_every_trigger_and_the_fields_it_names():
    from consumer.events import ImageScored

    text = LISTING.read_text()
    triggers = typing.get_args(ImageScored.model_fields["trigger"].annotation)
    assert triggers and all(f"`{t}`" in text for t in triggers)
    for field in ("event_id", "source_event_id", "content_verified", "content_sha256", "cached", "model", "policy",
                  "decision", "reasons"):
        assert field in ImageScored.model_fields, field
        assert f"`{field}`" in text, field
