"""Local dev/test stack for imagegate: a real Kafka broker (KRaft, single node,
official jars from Maven Central) and a real Redis, run as plain processes.

Invoked through the `deploy/local/stack` wrapper; see deploy/local/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

from .install import install_all
from .kafka import start_kafka
from .paths import (BROKERS, HOST, PLAIN, SECURE, StackError, address, is_kafka, locked, log_file, ports, profile, say,
                    stack_dir, svc_dir, tail, use_profile)
from .procs import port_open, running_pid, stop_service
from .redis import start_redis


CHOICES = ("kafka", "redis", *BROKERS)


def _targets(args) -> list[str]:
    """The named service (in the secure profile `kafka` means all three brokers), or all."""
    services = profile().services
    name = getattr(args, "service", None)
    if not name:
        return list(services)
    if profile() is SECURE and name == "kafka":
        return list(BROKERS)
    if name not in services:
        raise StackError(f"no service {name!r} in the {profile().name} profile (services: {', '.join(services)})")
    return [name]


def cmd_install(args) -> int:
    install_all(services_only=args.services_only)
    return 0


def cmd_start(args) -> int:
    names = _targets(args)
    if profile() is SECURE:
        from .kafka_secure import start_brokers

        brokers = [n for n in names if is_kafka(n)]
        with locked(stack_dir() / ".lock"):
            if brokers:
                start_brokers(brokers)
            if "redis" in names:
                start_redis()
        return 0
    for name in names:
        with locked(svc_dir(name) / ".lock"):
            (start_kafka if name == "kafka" else start_redis)()
    return 0


def cmd_stop(args) -> int:
    names = list(reversed(_targets(args)))
    if profile() is SECURE:
        # all brokers at once: stopped one by one, the last ones lose their controller quorum and
        # hang in controlled shutdown until the SIGKILL bound
        with locked(stack_dir() / ".lock"), ThreadPoolExecutor(len(names)) as pool:
            for f in [pool.submit(stop_service, n, args.hard) for n in names]:
                f.result()
        return 0
    for name in names:
        with locked(svc_dir(name) / ".lock"):
            stop_service(name, hard=args.hard)
    return 0


def cmd_status(args) -> int:
    all_ok = True
    for name in profile().services:
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
    if profile() is SECURE:
        from .kafka_secure import client_config
        from .redis_secure import url

        conf = client_config(args.user)
        print(f"IMAGEGATE_KAFKA_BOOTSTRAP={conf.pop('bootstrap.servers')}")
        for k, v in conf.items():
            print(f"IMAGEGATE_KAFKA__{k}={v}")
        print(f"IMAGEGATE_REDIS_URL={url(args.user)}")
        return 0
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
    if profile() is not SECURE and (stack_dir() / SECURE.subdir).exists():
        use_profile(SECURE)  # the secure profile lives inside this dir: stop its processes before deleting it
        for name in SECURE.services:
            stop_service(name, hard=True)
        use_profile(PLAIN)
    for name in profile().services:
        with locked(svc_dir(name) / ".lock"):
            stop_service(name, hard=True)
    d = stack_dir()
    shutil.rmtree(d)
    say(f"removed {d}")
    return 0


COMMANDS = {"install": cmd_install, "start": cmd_start, "stop": cmd_stop, "status": cmd_status,
            "env": cmd_env, "logs": cmd_logs, "clean": cmd_clean}


def _service_arg(sp) -> None:
    sp.add_argument("service", nargs="?", choices=CHOICES, metavar="{kafka,redis,kafka-1,kafka-2,kafka-3}")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="deploy/local/stack", description=__doc__.split("\n\n")[0])
    secure = argparse.ArgumentParser(add_help=False)
    secure.add_argument("--secure", action="store_true",
                        help="the secure profile (stack dir's secure/): 3 SASL_SSL brokers with ACLs, Redis TLS + ACL")
    sub = ap.add_subparsers(dest="cmd", required=True)
    inst = sub.add_parser("install", help="fetch Kafka jars (cached) and ensure redis-server, promtool, chromium and "
                          "bwrap are installed")
    inst.add_argument("--services-only", action="store_true",
                      help="only what the stack runs (Kafka jars, redis-server): what `make demo` needs")
    for name, h in (("start", "start services (default: both); no-op if running"),
                    ("stop", "stop services (default: both): SIGTERM, then SIGKILL after a bound")):
        sp = sub.add_parser(name, help=h, parents=[secure])
        _service_arg(sp)
        if name == "stop":
            sp.add_argument("--hard", action="store_true", help="SIGKILL immediately (kill -9 semantics)")
    _service_arg(sub.add_parser("kill", help="same as `stop --hard`", parents=[secure]))
    sub.add_parser("status", help="show services; exit 0 only if both are running", parents=[secure])
    sp = sub.add_parser("env", help="print IMAGEGATE_KAFKA_BOOTSTRAP=... and IMAGEGATE_REDIS_URL=... lines",
                        parents=[secure])
    sp.add_argument("--user", default="worker", choices=("worker", "operator", "listing", "admin"),
                    help="--secure: whose credentials to print (default: worker)")
    sp = sub.add_parser("logs", help="print the tail of the service logs", parents=[secure])
    _service_arg(sp)
    sp.add_argument("-n", "--lines", type=int, default=40)
    sub.add_parser("clean", help="kill services and delete this stack dir (ports, data, logs)", parents=[secure])
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.cmd == "kill":
        args.cmd, args.hard = "stop", True
    if getattr(args, "secure", False):
        use_profile(SECURE)
    try:
        return COMMANDS[args.cmd](args)
    except StackError as e:
        print(f"[stack] ERROR: {e}", file=sys.stderr, flush=True)
        return 2
