"""Optional API keys: `IMAGEGATE_API_KEYS_FILE` holds SHA-256 hex digests, one per line.

Only digests are stored, so the file (a Kubernetes secret, a config map) never holds a key
that works. A request's `Authorization: Bearer <key>` is hashed and compared with every
digest by `hmac.compare_digest` (no early exit on the first byte that differs, no early
exit on the first digest that matches). The file is read again when its modification time
changes, so a rotated secret takes effect without a restart; a file that becomes unreadable
keeps the keys last read (and says so in the log) rather than locking every caller out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import threading
from pathlib import Path

log = logging.getLogger("imagegate.api.keys")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class KeysFileError(ValueError):
    """The keys file cannot be used; the message names the file and line, never a key."""


def read_digests(path: Path) -> tuple[bytes, ...]:
    try:
        text = path.read_text()
    except OSError as e:
        raise KeysFileError(f"API keys file {path}: cannot read: {e.strerror}") from None
    digests = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip().lower()
        if not line or line.startswith("#"):
            continue
        if not _DIGEST.match(line):
            raise KeysFileError(f"API keys file {path} line {n}: not a SHA-256 hex digest (64 hex characters); "
                                "store `sha256sum` of each key, never the key")
        digests.append(bytes.fromhex(line))
    if not digests:
        raise KeysFileError(f"API keys file {path} has no digests: every request would be refused")
    return tuple(digests)


def digest_of(key: str) -> str:
    """What goes into the keys file for `key` (the same as `printf %s KEY | sha256sum`)."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._mtime = os.stat(path).st_mtime_ns if path.exists() else None
        self._digests = read_digests(path)  # refuse to start on a bad file

    def allows(self, authorization: str | None) -> bool:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return False
        presented = hashlib.sha256(key.strip().encode()).digest()
        ok = False
        for d in self._current():
            ok |= hmac.compare_digest(presented, d)
        return ok

    def _current(self) -> tuple[bytes, ...]:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            return self._digests
        if mtime != self._mtime:
            with self._lock:
                try:
                    self._digests = read_digests(self.path)
                    log.info("API keys file re-read", extra={"keys": len(self._digests)})
                except KeysFileError as e:
                    log.error("API keys file changed and cannot be used; keeping the keys read before",
                              extra={"error": str(e)})
                self._mtime = mtime
        return self._digests
