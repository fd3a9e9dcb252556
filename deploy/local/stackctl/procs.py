"""Service processes: spawn in their own process group, find them again by pid file
(trusting a pid only when /proc says it is still our service), stop them within a bound."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from .paths import HOST, StackError, is_kafka, pid_file, ports, say, stop_timeout, svc_dir


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    st = _proc_state(pid)
    return st is not None and st not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ours(name: str, pid: int) -> bool:
    """Guard against pid reuse: the pid must be our service for *this* stack dir."""
    cmd = _cmdline(pid)
    if is_kafka(name):
        return "kafka.Kafka" in cmd and str(svc_dir(name) / "server.properties") in cmd
    port = ports()["redis"]
    # redis rewrites its title to "redis-server 127.0.0.1:PORT" (the secure one: "... tls:PORT",
    # see redis.py); argv form has "--port PORT"
    return "redis-server" in cmd and (f":{port}" in cmd or f"--port {port}" in cmd)


def running_pid(name: str) -> int | None:
    f = pid_file(name)
    try:
        pid = int(f.read_text().strip())
    except (OSError, ValueError):
        return None
    if alive(pid) and _ours(name, pid):
        return pid
    return None


def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def spawn(name: str, argv: list[str], out: Path) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "ab") as fh:
        fh.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} stack start {name}: {' '.join(argv)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop signals the whole group
            cwd=str(svc_dir(name)),
            close_fds=True,
        )
    pid_file(name).write_text(f"{proc.pid}\n")
    return proc.pid


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            return True
    return False


def _wait_gone(pid: int, bound: float, step: float) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline and (alive(pid) or _group_alive(pid)):
        time.sleep(step)


def kill_and_reap(pid: int, bound: float = 10.0) -> None:
    _signal_group(pid, signal.SIGKILL)
    _wait_gone(pid, bound, 0.05)


def stop_service(name: str, hard: bool = False) -> None:
    pid = running_pid(name)
    if pid is None:
        pid_file(name).unlink(missing_ok=True)
        say(f"{name}: not running")
        return
    t0 = time.monotonic()
    if not hard:
        _signal_group(pid, signal.SIGTERM)
        _wait_gone(pid, stop_timeout(name), 0.1)
    if alive(pid) or _group_alive(pid):
        if not hard:
            say(f"{name}: pid {pid} ignored SIGTERM for {stop_timeout(name):.0f}s, sending SIGKILL")
        kill_and_reap(pid)
        if alive(pid):
            raise StackError(f"{name}: pid {pid} survived SIGKILL")
    pid_file(name).unlink(missing_ok=True)
    say(f"{name}: stopped pid {pid}{' (SIGKILL)' if hard else ''} in {time.monotonic() - t0:.1f}s")
