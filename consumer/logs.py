"""One JSON object per line, so log pipelines can index event_id / image_id / stage.

Callers pass ids, stages, outcomes and timings as `extra=`. Two guards keep image bytes
and secrets out of the output even when a caller slips:

* `bytes` values are written as `"<N bytes>"`, never their content;
* values under secret-looking keys (password, secret, token, ...) are written as
  `"[redacted]"`, and every configured secret value (the Kafka SASL/SSL passwords passed as
  `IMAGEGATE_KAFKA__*`, the Redis URL password) is replaced by `[redacted]` anywhere in the
  final line, message and exception text included.

Levels: `IMAGEGATE_LOG_LEVEL` sets the root level. The per-event completion line
(logger `imagegate.events`, INFO) can be switched off on its own with
`IMAGEGATE_LOG_EVENTS=false` when one line per event is too much volume.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}
SECRET_KEY = re.compile(r"passw(or)?d|passphrase|secret|token|credential|authorization|api[_.-]?key|private[_.-]?key"
                        r"|key\.pem|oauthbearer\.config", re.I)
REDACTED = "[redacted]"
EVENTS_LOGGER = "imagegate.events"


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if depth > 5:
        return value
    if isinstance(value, Mapping):
        return {k: (REDACTED if isinstance(k, str) and SECRET_KEY.search(k) else _scrub(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_scrub(v, depth + 1) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        forms: set[str] = set()
        for s in secrets:
            if s and len(s) >= 4:  # shorter "secrets" would redact ordinary text
                forms.add(s)
                forms.add(json.dumps(s)[1:-1])  # as it appears inside a JSON string
        self._secrets = sorted(forms, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STANDARD and not k.startswith("_") and k not in out:
                out[k] = REDACTED if SECRET_KEY.search(k) else _scrub(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        line = json.dumps(out, default=str)
        for s in self._secrets:
            line = line.replace(s, REDACTED)
        return line


def secret_values(kafka_conf: Mapping[str, str], urls: Iterable[str] = ()) -> list[str]:
    """Values that must never be logged: secret-looking librdkafka properties, URL passwords."""
    out = [str(v) for k, v in kafka_conf.items() if SECRET_KEY.search(k) and v]
    for u in urls:
        try:
            pw = urlsplit(u).password
        except ValueError:
            continue
        if pw:
            out.append(pw)
    return out


def setup(level: str = "INFO", secrets: Iterable[str] = (), events: bool = True) -> None:
    """JSON lines on stderr; `events` (IMAGEGATE_LOG_EVENTS) switches the per-event lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    on = events
    # Enabled: inherit the root level (INFO shows them, WARNING hides them). Disabled: off.
    logging.getLogger(EVENTS_LOGGER).setLevel(logging.NOTSET if on else logging.WARNING)
