"""redis-server on loopback, no persistence, ready when it answers PING."""

from __future__ import annotations

import shutil
import socket
import time

from .paths import (HOST, SECURE, START_TIMEOUT, StackError, address, log_file, pid_file, ports, profile, say,
                    stack_dir, svc_dir, tail)
from .procs import alive, kill_and_reap, port_open, running_pid, spawn


def _redis_ping(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis() -> None:
    pid = running_pid("redis")
    if pid is not None:
        say(f"redis: already running at {address('redis')} (pid {pid})")
        return
    exe = shutil.which("redis-server")
    if not exe:
        raise StackError("redis-server not installed; run `deploy/local/stack install`")
    port = ports()["redis"]
    if port_open(port, 0.2):
        raise StackError(f"redis: port {port} is already in use by another process; "
                         f"stop it or remove {stack_dir() / 'ports.json'} to pick new ports")
    d = svc_dir("redis")
    log = log_file("redis")
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [exe, "--bind", HOST, "--port", str(port)]
    ping = _redis_ping
    if profile() is SECURE:
        from .redis_secure import argv_tls, ping_tls

        argv, ping = argv_tls(exe), ping_tls
    argv += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes", "--dir", str(d),
             "--logfile", "", "--loglevel", "notice"]
    t0 = time.monotonic()
    pid = spawn("redis", argv, log)
    deadline = t0 + min(START_TIMEOUT, 30)
    while time.monotonic() < deadline:
        if not alive(pid):
            pid_file("redis").unlink(missing_ok=True)
            raise StackError(f"redis: process {pid} exited during startup.\n--- {log}\n{tail(log)}")
        if ping(port):
            say(f"redis: ready at {address('redis')} (pid {pid}) in {time.monotonic() - t0:.1f}s")
            return
        time.sleep(0.05)
    kill_and_reap(pid)
    pid_file("redis").unlink(missing_ok=True)
    raise StackError(f"redis: no PING answer after {deadline - t0:.0f}s; killed pid {pid}.\n--- {log}\n{tail(log)}")
