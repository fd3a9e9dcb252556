"""Cost of the measured signals per image: ``python bench/signals_bench.py``.

`consumer.signals.measure` runs on every decoded image in the fetch/decode threads; it must
stay a small share of decode time. Prints milliseconds per call (best of 5 runs of 50), for
decoded images of typical sizes. Figures, never pass/fail.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumer.signals import measure  # noqa: E402
from tests.images import photo  # noqa: E402

for w, h in [(384, 384), (512, 512), (1024, 768), (2048, 1536)]:
    img = photo(w, h)
    t = min(timeit.repeat(lambda: measure(img, img.size), number=50, repeat=5)) / 50
    print(f"measure() on a decoded {w}x{h} image: {t * 1000:.2f} ms")
