"""Where a stack lives: its directory, per-service files, stored ports and the lock that
serialises concurrent `stack` invocations on one directory."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # deploy/local
REPO = HERE.parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = float(os.environ.get("IMAGEGATE_STACK_START_TIMEOUT", "120"))
BROKERS = ("kafka-1", "kafka-2", "kafka-3")


class Profile:
    """What one stack dir runs: the plain profile (one broker, open Redis: `make demo`, the tests)
    or the secure one (three SASL_SSL brokers with ACLs, Redis with TLS and ACL users), which
    lives in the `secure/` subdir so both can exist side by side."""

    def __init__(self, name: str, services: tuple[str, ...], port_keys: tuple[str, ...], subdir: str):
        self.name, self.services, self.port_keys, self.subdir = name, services, port_keys, subdir


PLAIN = Profile("plain", ("kafka", "redis"), ("kafka", "kafka_controller", "redis"), "")
SECURE = Profile("secure", (*BROKERS, "redis"),
                 tuple(k for b in BROKERS for k in (b, f"{b}_controller")) + ("redis",), "secure")
_active = [PLAIN]


def use_profile(p: Profile) -> None:
    _active[0] = p


def profile() -> Profile:
    return _active[0]


def is_kafka(name: str) -> bool:
    return name.startswith("kafka")


def stop_timeout(name: str) -> float:
    return 30.0 if is_kafka(name) else 10.0


class StackError(Exception):
    pass


def say(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def stack_dir() -> Path:
    d = Path(os.environ.get("IMAGEGATE_STACK_DIR") or (REPO / ".stack")).expanduser().resolve()
    if profile().subdir:
        d = d / profile().subdir
    d.mkdir(parents=True, exist_ok=True)
    return d


def svc_dir(name: str) -> Path:
    d = stack_dir() / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def pid_file(name: str) -> Path:
    return svc_dir(name) / f"{name}.pid"


def log_file(name: str) -> Path:
    return svc_dir(name) / "logs" / ("server.log" if is_kafka(name) else "redis.log")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imagegate"


class locked:
    """Exclusive flock on a file (serialises concurrent stack invocations)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port


def ports() -> dict[str, int]:
    """Ports are picked once per stack dir and then reused forever (so a service can be
    restarted mid-test and clients reconnect to the same address)."""
    f = stack_dir() / "ports.json"
    data = json.loads(f.read_text()) if f.exists() else {}
    changed = False
    for key in profile().port_keys:
        if not isinstance(data.get(key), int):
            data[key] = _free_port(set(v for v in data.values() if isinstance(v, int)))
            changed = True
    if changed:
        tmp = f.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(f)
    return data


def address(name: str) -> str:
    return f"{HOST}:{ports()[name]}"


def tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(lines[-n:])
