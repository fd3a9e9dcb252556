"""Local dev/test stack for imagegate: a real Kafka broker (KRaft, single node,
official jars from Maven Central) and a real Redis, run as plain processes.

Invoked through the `deploy/local/stack` wrapper; see deploy/local/README.md.
Standard library only (confluent_kafka is used for the Kafka readiness check
when it is importable, i.e. when run with the project venv).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
POM = HERE / "kafka" / "pom.xml"
LOG4J2_XML = HERE / "kafka" / "log4j2.xml"

SERVICES = ("kafka", "redis")
HOST = "127.0.0.1"
START_TIMEOUT = float(os.environ.get("IMAGEGATE_STACK_START_TIMEOUT", "120"))
STOP_TIMEOUT = {"kafka": 30.0, "redis": 10.0}
KAFKA_HEAP = os.environ.get("IMAGEGATE_KAFKA_HEAP", "-Xms128m -Xmx512m")


class StackError(Exception):
    pass


def say(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- paths / state


def stack_dir() -> Path:
    d = Path(os.environ.get("IMAGEGATE_STACK_DIR") or (REPO / ".stack")).expanduser().resolve()
    d.mkdir(parents=True, exist_ok=True)
    return d


def svc_dir(name: str) -> Path:
    d = stack_dir() / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def pid_file(name: str) -> Path:
    return svc_dir(name) / f"{name}.pid"


def log_file(name: str) -> Path:
    return svc_dir(name) / "logs" / ("server.log" if name == "kafka" else "redis.log")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imagegate"


def kafka_libs() -> Path:
    sha = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    return cache_root() / f"kafka-{sha}" / "libs"


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
    for key in ("kafka", "kafka_controller", "redis"):
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


# --------------------------------------------------------------------------- processes


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
    if name == "kafka":
        return "kafka.Kafka" in cmd and str(svc_dir("kafka") / "server.properties") in cmd
    port = ports()["redis"]
    # redis rewrites its title to "redis-server 127.0.0.1:PORT"; argv form has "--port PORT"
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


def tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(lines[-n:])


def _spawn(name: str, argv: list[str], out: Path) -> int:
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


def _kill_and_reap(pid: int, bound: float = 10.0) -> None:
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline and (alive(pid) or _group_alive(pid)):
        time.sleep(0.05)


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


def stop_service(name: str, hard: bool = False) -> None:
    pid = running_pid(name)
    if pid is None:
        pid_file(name).unlink(missing_ok=True)
        say(f"{name}: not running")
        return
    t0 = time.monotonic()
    if not hard:
        _signal_group(pid, signal.SIGTERM)
        deadline = t0 + STOP_TIMEOUT[name]
        while time.monotonic() < deadline and (alive(pid) or _group_alive(pid)):
            time.sleep(0.1)
    if alive(pid) or _group_alive(pid):
        if not hard:
            say(f"{name}: pid {pid} ignored SIGTERM for {STOP_TIMEOUT[name]:.0f}s, sending SIGKILL")
        _signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (alive(pid) or _group_alive(pid)):
            time.sleep(0.05)
        if alive(pid):
            raise StackError(f"{name}: pid {pid} survived SIGKILL")
    pid_file(name).unlink(missing_ok=True)
    say(f"{name}: stopped pid {pid}{' (SIGKILL)' if hard else ''} in {time.monotonic() - t0:.1f}s")


# --------------------------------------------------------------------------- install


def ensure_jars(verbose: bool = True) -> Path:
    libs = kafka_libs()
    done = libs.parent / ".complete"
    if done.exists():
        if verbose:
            say(f"kafka jars: cached at {libs}")
        return libs
    with locked(libs.parent.parent / f".{libs.parent.name}.lock"):
        if done.exists():
            return libs
        mvn = shutil.which("mvn")
        if not mvn:
            raise StackError("mvn not found on PATH (need Maven 3.x and Java 17+)")
        if not shutil.which("java"):
            raise StackError("java not found on PATH (need Java 17+)")
        libs.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="libs.", dir=libs.parent))
        say(f"kafka jars: fetching with Maven into {libs} (from {POM.relative_to(REPO)})")
        t0 = time.monotonic()
        cmd = [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
               f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
        r = subprocess.run(cmd, cwd=str(POM.parent), capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StackError(f"maven failed ({' '.join(cmd)}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
        if libs.exists():
            shutil.rmtree(libs)
        tmp.rename(libs)
        shutil.copy2(POM, libs.parent / "pom.xml")
        done.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
        n = len(list(libs.glob("*.jar")))
        say(f"kafka jars: {n} jars copied in {time.monotonic() - t0:.1f}s")
    return libs


def ensure_debian_package(command: str, package: str, what: str) -> bool:
    """Make `command` available, apt-installing Debian's `package` when it is missing.

    Returns True when it installed the package. apt-get update runs only if the first try fails.
    """
    if shutil.which(command):
        say(f"{command}: present ({shutil.which(command)})")
        return False
    if not shutil.which("apt-get"):
        raise StackError(f"{command} is missing and apt-get is not available; install {what} yourself")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = ["sudo", "-n"] if os.geteuid() != 0 else []
    apt = sudo + ["apt-get", "install", "-y", "--no-install-recommends", package]
    say(f"{command}: missing, running " + " ".join(apt))
    if subprocess.run(apt, env=env).returncode != 0:
        say(f"{command}: install failed, running apt-get update and retrying")
        subprocess.run(sudo + ["apt-get", "update"], env=env, check=False)
        subprocess.run(apt, env=env)
    if not shutil.which(command):
        raise StackError(f"could not install {package} ({command}) with apt-get")
    say(f"{command}: installed")
    return True


def ensure_redis() -> None:
    ensure_debian_package("redis-server", "redis-server", "Redis 7")


def ensure_prometheus() -> None:
    """promtool + prometheus (Debian's `prometheus` package) for tests/observability."""
    if ensure_debian_package("promtool", "prometheus", "Prometheus 2.x") and shutil.which("systemctl"):
        # The package starts a system prometheus on :9090; the tests run their own.
        sudo = ["sudo", "-n"] if os.geteuid() != 0 else []
        subprocess.run(sudo + ["systemctl", "disable", "--now", "prometheus"], capture_output=True, check=False)


def ensure_chromium() -> None:
    """Debian's chromium for tests/browser (Playwright drives it via executable_path; no browser download)."""
    ensure_debian_package("chromium", "chromium", "Chromium")


def ensure_bwrap() -> None:
    """Debian's bubblewrap for tests/deploy/test_pod_runtime.py (the pod's read-only, uid 10001 runtime, emulated)."""
    ensure_debian_package("bwrap", "bubblewrap", "bubblewrap")


def cmd_install(args) -> int:
    t0 = time.monotonic()
    ensure_jars()
    ensure_redis()
    ensure_prometheus()
    ensure_chromium()
    ensure_bwrap()
    say(f"install done in {time.monotonic() - t0:.1f}s")
    return 0


# --------------------------------------------------------------------------- kafka


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").exists():
        return str(Path(home, "bin", "java"))
    j = shutil.which("java")
    if not j:
        raise StackError("java not found (need Java 17+)")
    return j


def _kafka_properties() -> str:
    p = ports()
    data = svc_dir("kafka") / "data"
    return f"""# generated by deploy/local/stack -- rewritten on every start
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{p['kafka_controller']}
listeners=PLAINTEXT://{HOST}:{p['kafka']},CONTROLLER://{HOST}:{p['kafka_controller']}
advertised.listeners=PLAINTEXT://{HOST}:{p['kafka']}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a kill -9 the restarted broker cannot re-register until its old session expires
# (default 9 s); shorter session => `stop --hard` + `start` is ready in ~5 s instead of ~13 s.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4500
auto.create.topics.enable=false
delete.topic.enable=true
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.retention.hours=24
"""


def _java_base(libs: Path) -> list[str]:
    logs = svc_dir("kafka") / "logs"
    return [
        _java(), *KAFKA_HEAP.split(), "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={logs}", f"-Dlog4j2.configurationFile={LOG4J2_XML}",
        "-cp", f"{libs}/*",
    ]


def _kafka_format(libs: Path, props: Path) -> None:
    d = svc_dir("kafka")
    if (d / "data" / "meta.properties").exists():
        return
    cid_file = d / "cluster.id"
    if not cid_file.exists():
        java = [_java(), "-Xmx128m", "-XX:TieredStopAtLevel=1", "-cp", f"{libs}/*"]
        r = subprocess.run(java + ["kafka.tools.StorageTool", "random-uuid"],
                           capture_output=True, text=True)
        cid = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else ""
        if not cid:
            raise StackError(f"kafka-storage random-uuid failed:\n{r.stdout}\n{r.stderr}")
        cid_file.write_text(cid + "\n")
    cid = cid_file.read_text().strip()
    java = [_java(), "-Xmx256m", "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={LOG4J2_XML}", f"-Dkafka.logs.dir={d / 'logs'}",
            "-cp", f"{libs}/*"]
    r = subprocess.run(java + ["kafka.tools.StorageTool", "format", "-t", cid, "-c", str(props)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise StackError(f"kafka-storage format failed:\n{r.stdout}\n{r.stderr}")
    say(f"kafka: formatted {d / 'data'} (cluster id {cid})")


def _raw_metadata_brokers(port: int, timeout: float) -> int:
    """Send a Metadata v4 request (all topics) over a raw socket and return the number of
    brokers in the answer. Used when confluent_kafka is not importable (no venv).
    v4 is the oldest Metadata version Kafka 4.x still accepts (KIP-896)."""
    import struct

    client = b"imagegate-stack"
    header = struct.pack(">hhih", 3, 4, 7, len(client)) + client  # api_key, version, corr id, client id
    body = struct.pack(">ib", -1, 0)  # topics=null (all), allow_auto_topic_creation=false
    req = header + body
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(req)) + req)
        buf = b""
        while len(buf) < 16:
            chunk = s.recv(4096)
            if not chunk:
                raise OSError("connection closed")
            buf += chunk
    _size, corr, _throttle, nbrokers = struct.unpack(">iiii", buf[:16])
    if corr != 7:
        raise OSError(f"unexpected correlation id {corr}")
    return nbrokers


def _kafka_metadata_ok(timeout: float) -> tuple[bool, str]:
    try:
        from confluent_kafka.admin import AdminClient  # type: ignore
    except Exception:
        try:
            return _raw_metadata_brokers(ports()["kafka"], timeout) > 0, "metadata (raw socket)"
        except (OSError, ValueError) as e:
            return False, f"metadata (raw socket: {e})"
    try:
        admin = AdminClient({"bootstrap.servers": address("kafka"), "log_level": 0,
                             "logger": _NullLogger()})
        md = admin.list_topics(timeout=timeout)
        return (len(md.brokers) > 0), "metadata"
    except Exception as e:  # KafkaException on timeout
        return False, f"metadata ({e})"


class _NullLogger:
    def log(self, *a, **k):
        pass

    def __getattr__(self, _):
        return lambda *a, **k: None


def start_kafka() -> None:
    pid = running_pid("kafka")
    if pid is not None:
        say(f"kafka: already running at {address('kafka')} (pid {pid})")
        return
    libs = ensure_jars(verbose=False)
    d = svc_dir("kafka")
    p = ports()
    for key in ("kafka", "kafka_controller"):
        if port_open(p[key], 0.2):
            raise StackError(f"kafka: port {p[key]} ({key}) is already in use by another process; "
                             f"stop it or remove {stack_dir() / 'ports.json'} to pick new ports")
    props = d / "server.properties"
    props.write_text(_kafka_properties())
    _kafka_format(libs, props)
    log = log_file("kafka")
    log.parent.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    t0 = time.monotonic()
    pid = _spawn("kafka", _java_base(libs) + ["kafka.Kafka", str(props)], d / "logs" / "stdout.log")
    deadline = t0 + START_TIMEOUT
    started = False
    how = ""
    while time.monotonic() < deadline:
        if not alive(pid):
            pid_file("kafka").unlink(missing_ok=True)
            raise StackError(f"kafka: process {pid} exited during startup.\n--- {d / 'logs' / 'stdout.log'}\n"
                             f"{tail(d / 'logs' / 'stdout.log')}\n--- {log}\n{tail(log)}")
        if not started and log.exists():
            with open(log, "rb") as fh:
                fh.seek(offset)
                started = b"Kafka Server started" in fh.read()
        if started:
            ok, how = _kafka_metadata_ok(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            if ok:
                say(f"kafka: ready at {address('kafka')} (pid {pid}, {how}) in {time.monotonic() - t0:.1f}s")
                return
        time.sleep(0.25)
    _kill_and_reap(pid)
    pid_file("kafka").unlink(missing_ok=True)
    raise StackError(f"kafka: not ready after {START_TIMEOUT:.0f}s (log line seen: {started}; "
                     f"last check: {how or 'n/a'}); killed pid {pid}.\n--- {log}\n{tail(log)}\n"
                     f"--- {d / 'logs' / 'stdout.log'}\n{tail(d / 'logs' / 'stdout.log', 15)}")


# --------------------------------------------------------------------------- redis


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
    argv = [exe, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--protected-mode", "yes", "--dir", str(d),
            "--logfile", "", "--loglevel", "notice"]
    t0 = time.monotonic()
    pid = _spawn("redis", argv, log)
    deadline = t0 + min(START_TIMEOUT, 30)
    while time.monotonic() < deadline:
        if not alive(pid):
            pid_file("redis").unlink(missing_ok=True)
            raise StackError(f"redis: process {pid} exited during startup.\n--- {log}\n{tail(log)}")
        if _redis_ping(port):
            say(f"redis: ready at {address('redis')} (pid {pid}) in {time.monotonic() - t0:.1f}s")
            return
        time.sleep(0.05)
    _kill_and_reap(pid)
    pid_file("redis").unlink(missing_ok=True)
    raise StackError(f"redis: no PING answer after {deadline - t0:.0f}s; killed pid {pid}.\n--- {log}\n{tail(log)}")


# --------------------------------------------------------------------------- commands


def _targets(args) -> list[str]:
    return [args.service] if getattr(args, "service", None) else list(SERVICES)


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="deploy/local/stack", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="fetch Kafka jars (cached) and ensure redis-server, promtool, chromium and bwrap "
                   "are installed")
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
    args = ap.parse_args(argv)
    if args.cmd == "kill":
        args.cmd, args.hard = "stop", True
    fn = {"install": cmd_install, "start": cmd_start, "stop": cmd_stop, "status": cmd_status,
          "env": cmd_env, "logs": cmd_logs, "clean": cmd_clean}[args.cmd]
    try:
        return fn(args)
    except StackError as e:
        print(f"[stack] ERROR: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
