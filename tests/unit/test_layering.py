"""Which of our packages may import which, and no import cycles between our modules.

Why: the worker image ships ``consumer``, ``model``, ``scoring_api`` and ``producer_tools`` only; training and
evaluation (``training``: datasets, scipy, scikit-learn, OpenCV, hours of CPU) must never be
pulled in by them, not even by an import inside a function that only one code path reaches.
So the sources are read (``ast``), not imported: every ``import`` counts, at module level or
inside a function, under ``if TYPE_CHECKING:`` too (a type-only import still couples the two
modules' designs). Cycles are found on the module graph built from the same imports.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("consumer", "model", "producer_tools", "scoring_api", "training")
# What each package may import of ours (itself always). Nobody imports training: it sits on top.
ALLOWED: dict[str, frozenset[str]] = {
    "model": frozenset(),  # inference only: numpy / torch / ONNX Runtime / OpenVINO, nothing of ours
    "consumer": frozenset({"model"}),
    "scoring_api": frozenset({"consumer", "model"}),  # the worker's chain behind HTTP
    "producer_tools": frozenset({"consumer", "model", "scoring_api"}),  # `imagegate api` starts it
    "training": frozenset({"model", "consumer"}),
}
# Top-level folders of ours that no package may import (they are not installed).
NEVER = frozenset({"tests", "bench", "deploy", "docs"})
# Module cycles that exist on purpose for now; each is an exact set of modules.
# Cycles tolerated for now (each with the change that removes it). Empty: the health<->metrics
# and export<->quantize circles are gone; a new entry needs a reason.
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module of ours, dotted (a package means its __init__)
    line: int
    lazy: bool  # inside a function or method
    attr: str | None = None  # `from target import attr` where attr is not a module


def module_files(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages (a package's name -> __init__.py)."""
    out: dict[str, Path] = {}
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = f.relative_to(root).with_suffix("").parts
            if any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def imports_in(module: str, path: Path) -> list[tuple[str, str | None, int, bool]]:
    """(module, name or None, line, lazy) per imported name: ``import X`` -> (X, None), ``from X import a``
    -> (X, a); relative modules made absolute; lazy: inside a function, method or lambda."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, str | None, int, bool]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, None, child.lineno, lazy) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = _package_of(module, path)
                    for _ in range(child.level - 1):
                        base = base.rpartition(".")[0]
                    base = f"{base}.{child.module}" if child.module else base
                else:
                    base = child.module or ""
                found.extend((base, None if a.name == "*" else a.name, child.lineno, lazy) for a in child.names)
            visit(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def our_imports(files: dict[str, Path] | None = None) -> list[Import]:
    """Every import of one of our top-level folders, as the modules it runs: ``from X import a``
    runs X and, when ``X.a`` is a module, ``X.a`` too (``attr``: the name taken from X otherwise)."""
    files = module_files() if files is None else files
    ours = set(PACKAGES) | NEVER
    out: set[Import] = set()
    for mod, path in files.items():
        for base, name, line, lazy in imports_in(mod, path):
            if base.split(".")[0] not in ours:
                continue
            sub = f"{base}.{name}" if name else None
            if sub in files:
                out.add(Import(mod, sub, line, lazy))
                out.add(Import(mod, base, line, lazy))
            else:
                out.add(Import(mod, base, line, lazy, name))
    return sorted(out, key=lambda i: (i.source, i.line, i.target, i.attr or ""))


def bound_names(path: Path) -> set[str]:
    """Names a module binds at its top level (also under if/try): what ``from it import x`` can take."""
    names: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for st in body:
            if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(st.name)
            elif isinstance(st, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in st.names)
            elif isinstance(st, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                for t in st.targets if isinstance(st, ast.Assign) else [st.target]:
                    names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
            elif isinstance(st, (ast.If, ast.Try, ast.With)):
                for part in (st.body, getattr(st, "orelse", []), getattr(st, "finalbody", []),
                             *[h.body for h in getattr(st, "handlers", [])]):
                    visit(part)

    visit(ast.parse(path.read_text(), str(path)).body)
    return names


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[frozenset[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(frozenset(comp))
    return out


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:k]) for k in range(1, len(parts) + 1)}


def module_graph(imports: list[Import]) -> dict[str, set[str]]:
    """Module -> modules it imports. Leaves out a module's own packages: Python initialises a
    package before any module in it, so importing it from inside is never part of a cycle."""
    g: dict[str, set[str]] = {}
    for i in imports:
        if i.target not in _ancestors(i.source):
            g.setdefault(i.source, set()).add(i.target)
    return g


def _where(i: Import) -> str:
    return f"{module_files()[i.source].relative_to(ROOT)}:{i.line} imports {i.target}{' (in a function)' if i.lazy else ''}"


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return our_imports()


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_the_packages_below_it(package: str, imports: list[Import]) -> None:
    assert (ROOT / package / "__init__.py").is_file()
    bad = sorted({_where(i) for i in imports
                  if i.source.split(".")[0] == package
                  and i.target.split(".")[0] not in ALLOWED[package] | {package}})
    assert not bad, f"{package} may import only {sorted(ALLOWED[package])} of ours:\n" + "\n".join(bad)


def test_every_import_of_ours_names_a_module_that_exists(imports: list[Import]) -> None:
    """A lazy import of a moved module fails only on the code path that runs it; this fails now."""
    files = module_files()
    bad = sorted({_where(i) for i in imports if i.target.split(".")[0] in PACKAGES and i.target not in files})
    assert not bad, "imports of modules that do not exist:\n" + "\n".join(bad)
    bound = {m: bound_names(p) for m, p in files.items()}
    bad = [f"{_where(i)}: it has no {i.attr!r}" for i in imports if i.attr and i.attr not in bound[i.target]]
    assert not bad, "imports of names a module does not define:\n" + "\n".join(bad)


def test_no_import_cycles_between_modules(imports: list[Import]) -> None:
    found = set(cycles(module_graph(imports)))
    new = [sorted(c) for c in found - KNOWN_CYCLES]
    assert not new, f"import cycles (lazy imports included): {new}"
    gone = [sorted(c) for c in KNOWN_CYCLES - found]
    assert not gone, f"these known cycles are gone: remove them from KNOWN_CYCLES: {gone}"


def test_the_checker_sees_lazy_relative_and_type_only_imports(tmp_path: Path) -> None:
    """The checks above are only as good as the parser: a hidden import must not slip through."""
    pkg = tmp_path / "model"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from consumer.health import Health\n"
        "def f():\n    import training.train\n    from . import b\n    return b\n")
    (pkg / "b.py").write_text("from .sub import c\nclass K:\n    def m(self):\n        from .a import f\n")
    (pkg / "sub" / "c.py").write_text("from .. import b\nfrom ..a import f as g\nfrom ..a import gone\n")
    files = module_files(tmp_path, ("model",))
    found = our_imports(files)
    assert module_graph(found) == {
        "model": {"model.a"},
        "model.a": {"consumer.health", "training.train", "model.b"},
        "model.b": {"model.sub", "model.sub.c", "model.a"},
        "model.sub.c": {"model.b", "model.a"},
    }
    assert {(i.source, i.target) for i in found if i.lazy} == {
        ("model.a", "training.train"), ("model.a", "model"), ("model.a", "model.b"), ("model.b", "model.a")}
    assert set(cycles(module_graph(found))) == {frozenset({"model.a", "model.b", "model.sub.c"})}
    assert [(i.target, i.attr) for i in found if i.target in files and i.attr
            and i.attr not in bound_names(files[i.target])] == [
        ("model.a", "gone")]
