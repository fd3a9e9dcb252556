"""Local dev/test stack for imagegate: a real Kafka broker (KRaft, single node,
official jars from Maven Central) and a real Redis, run as plain processes.

Invoked through the `deploy/local/stack` wrapper; see deploy/local/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys

from .install import install_all
from .kafka import start_kafka
from .paths import HOST, SERVICES, StackError, address, locked, log_file, ports, say, stack_dir, svc_dir, tail
from .procs import port_open, running_pid, stop_service
from .redis import start_redis


def _targets(args) -> list[str]:
    return [args.service] if getattr(args, "service", None) else list(SERVICES)


def cmd_install(args) -> int:
    install_all()
    return 0


def cmd_start(args) -> int:
    for name in _targets(args):
        with locked(svc_dir(name) / ".lock"):
            (start_kafka if name == "kafka" else start_redis)()
    return 0


def cmd_stop(args) -> int:
    for name in reversed(_targets(args)):
        with locked(svc_dir(name) / ".lock"):
            stop_service(name, hard=args.hard)
    return 0


def cmd_status(args) -> int:
    all_ok = True
    for name in SERVICES:
        pid = running_pid(name)
        addr = address(name)
        if pid is None:
            all_ok = False
            print(f"{name}: stopped  {addr}  log={log_file(name)}")
        else:
            up = port_open(ports()[name])
            all_ok = all_ok and up
            print(f"{name}: {'running' if up else 'starting/unresponsive'}  {addr}  pid={pid}  log={log_file(name)}")
    print(f"stack dir: {stack_dir()}")
    return 0 if all_ok else 1


def cmd_env(args) -> int:
    p = ports()
    print(f"IMAGEGATE_KAFKA_BOOTSTRAP={HOST}:{p['kafka']}")
    print(f"IMAGEGATE_REDIS_URL=redis://{HOST}:{p['redis']}/0")
    return 0


def cmd_logs(args) -> int:
    for name in _targets(args):
        print(f"--- {name}: {log_file(name)}")
        print(tail(log_file(name), args.lines))
    return 0


def cmd_clean(args) -> int:
    """Stop everything hard and delete all state (ports, data, logs) of this stack dir."""
    for name in SERVICES:
        with locked(svc_dir(name) / ".lock"):
            stop_service(name, hard=True)
    d = stack_dir()
    shutil.rmtree(d)
    say(f"removed {d}")
    return 0


COMMANDS = {"install": cmd_install, "start": cmd_start, "stop": cmd_stop, "status": cmd_status,
            "env": cmd_env, "logs": cmd_logs, "clean": cmd_clean}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="deploy/local/stack", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="fetch Kafka jars (cached) and ensure redis-server and promtool are installed")
    for name, h in (("start", "start services (default: both); no-op if running"),
                    ("stop", "stop services (default: both): SIGTERM, then SIGKILL after a bound")):
        sp = sub.add_parser(name, help=h)
        sp.add_argument("service", nargs="?", choices=SERVICES)
        if name == "stop":
            sp.add_argument("--hard", action="store_true", help="SIGKILL immediately (kill -9 semantics)")
    sp = sub.add_parser("kill", help="same as `stop --hard`")
    sp.add_argument("service", nargs="?", choices=SERVICES)
    sub.add_parser("status", help="show services; exit 0 only if both are running")
    sub.add_parser("env", help="print IMAGEGATE_KAFKA_BOOTSTRAP=... and IMAGEGATE_REDIS_URL=... lines")
    sp = sub.add_parser("logs", help="print the tail of the service logs")
    sp.add_argument("service", nargs="?", choices=SERVICES)
    sp.add_argument("-n", "--lines", type=int, default=40)
    sub.add_parser("clean", help="kill services and delete this stack dir (ports, data, logs)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.cmd == "kill":
        args.cmd, args.hard = "stop", True
    try:
        return COMMANDS[args.cmd](args)
    except StackError as e:
        print(f"[stack] ERROR: {e}", file=sys.stderr, flush=True)
        return 2
