"""`imagegate score PATH...`: the worker's decode -> model -> policy path, offline.

ML engineers tune thresholds with this, so it must give exactly the worker's scores:
it calls the same `consumer.decode.decode`, the same predictor and the same
`Policy.judge` on the same merged signals, only without Kafka or Redis.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from consumer.decode import DecodeError, DecodeLimits, decode
from consumer.policy import Policy
from consumer.work import merge_signals


@dataclass
class ScoreRow:
    path: str
    score: float
    decision: str
    reasons: list[dict[str, Any]] = field(default_factory=list)
    signals: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def score_files(paths: Iterable[Path], predictor, policy: Policy, *, profile: str | None = None, role: str = "main",
                limits: DecodeLimits | None = None, batch_size: int = 32, progress: bool = False) -> list[ScoreRow]:
    limits = limits or DecodeLimits()
    paths = list(paths)
    rows: dict[int, ScoreRow] = {}
    decoded: list[tuple[int, Any]] = []
    bar = tqdm(total=len(paths), disable=not progress, unit="img", file=sys.stderr)
    for chunk in _batches(list(enumerate(paths)), batch_size):
        decoded.clear()
        for idx, path in chunk:
            try:
                decoded.append((idx, decode(path.read_bytes(), predictor.preprocess, predictor.input_size, limits,
                                              full_resolution=predictor.needs_full_resolution)))
            except DecodeError as e:
                v = policy.reject(profile, e.code, str(e), role=role)
                rows[idx] = ScoreRow(str(path), v.score, v.decision.value, [r.model_dump(mode="json") for r in v.reasons], error=str(e))
        if decoded:
            outputs = predictor.predict(np.stack([d.tensor for _, d in decoded]))
            for i, (idx, d) in enumerate(decoded):
                signals = merge_signals(d.signals, outputs, i)
                v = policy.judge(signals, profile, role)
                rows[idx] = ScoreRow(str(paths[idx]), v.score, v.decision.value, [r.model_dump(mode="json") for r in v.reasons],
                                     {k: round(x, 6) for k, x in signals.items()})
        bar.update(len(chunk))
    bar.close()
    return [rows[i] for i in range(len(paths))]


def print_table(rows: list[ScoreRow], out=sys.stdout) -> None:
    width = max([len("image")] + [len(Path(r.path).name) for r in rows])
    print(f"{'image':<{width}}  {'score':>5}  {'decision':<8}  reasons", file=out)
    for r in rows:
        reasons = "; ".join(x["message"] for x in r.reasons) or "-"
        print(f"{Path(r.path).name:<{width}}  {r.score:5.1f}  {r.decision:<8}  {reasons}", file=out)


def print_jsonl(rows: list[ScoreRow], out=sys.stdout) -> None:
    for r in rows:
        print(json.dumps(r.__dict__), file=out)
