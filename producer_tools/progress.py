"""Progress bars for commands that work through many items.

On a terminal the operator sees a live bar on stderr; in a pipe, a log file or CI the bar is
off, so captured output holds only results and the end summary.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def bar(total: int | None, desc: str, unit: str = "item") -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not sys.stderr.isatty(),
                dynamic_ncols=True, leave=False)
