"""`file://` reads, confined to one root (for local stacks and tests; off unless a root is set).

The path is resolved (symlinks followed) and must stay inside the root; what was actually
opened is checked again, so a path swapped for a symlink or a FIFO after the check is not
read. Sizes are bounded like downloads.
"""

from __future__ import annotations

import os
import stat as _stat
from pathlib import Path
from urllib.parse import unquote

from consumer.events import ReasonCode
from consumer.fetch.errors import BlockedURL, FetchError


class FileReader:
    def __init__(self, root: Path | None, max_bytes: int):
        self.root = root.resolve() if root else None
        self.max_bytes = max_bytes

    def read(self, url_path: str) -> bytes:
        if self.root is None:
            raise BlockedURL("file:// URLs are not enabled (no file_root configured)")
        rel = unquote(url_path)  # %2e%2e/ becomes ../ here, and is then caught by the root check
        if "\x00" in rel:
            raise BlockedURL("file path contains a NUL byte")
        candidate = Path(rel) if os.path.isabs(rel) else self.root / rel
        try:
            real = candidate.resolve(strict=True)  # follows symlinks: an escape is caught below
        except (OSError, RuntimeError, ValueError):
            raise FetchError(f"file not found: {rel}") from None
        if not self._inside_root(real):
            raise BlockedURL(f"file {rel} is outside the allowed root")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except OSError as e:
            raise FetchError(f"cannot open file {rel}: {e.strerror}") from None
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise FetchError(f"not a regular file: {rel}")
        return self._read_open(fd, real, st.st_size, rel)

    def _read_open(self, fd: int, real: Path, size: int, rel: str) -> bytes:
        with os.fdopen(fd, "rb", buffering=0) as f:
            # Re-check what was actually opened: a path swapped for a symlink or a FIFO after
            # the check above must not be read.
            link = f"/proc/self/fd/{fd}"
            opened = Path(os.readlink(link)) if os.path.islink(link) else real
            if not self._inside_root(opened):
                raise BlockedURL(f"file {rel} is outside the allowed root")
            if size > self.max_bytes:
                raise FetchError(f"image is {size} bytes, limit is {self.max_bytes}", code=ReasonCode.TOO_LARGE)
            data = f.read(self.max_bytes + 1)  # it may have grown since fstat
        if len(data) > self.max_bytes:
            raise FetchError(f"image is over the {self.max_bytes}-byte limit", code=ReasonCode.TOO_LARGE)
        return data

    def _inside_root(self, real: Path) -> bool:
        assert self.root is not None
        return real == self.root or self.root in real.parents
