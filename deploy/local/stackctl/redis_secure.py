"""The secure profile's Redis: TLS only (no plaintext port), the stack's CA-signed certificate,
ACL users from an aclfile (mode 0600, so no password shows in `ps`): `default` off, `admin`
all, `worker` read/write/scripts on imagegate:* keys, `operator` and `listing` read-only."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from .paths import HOST, ports, svc_dir
from .pki import credentials, ensure_pki

KEYS = "~imagegate:*"


def aclfile() -> Path:
    c = credentials()
    f = svc_dir("redis") / "users.acl"
    f.touch(mode=0o600)
    f.write_text("\n".join([
        "user default off",
        f"user admin on >{c['admin']} ~* &* +@all",
        f"user worker on >{c['worker']} {KEYS} -@all +@read +@write +@scripting +@connection +@transaction",
        f"user operator on >{c['operator']} {KEYS} -@all +@read +@connection",
        f"user listing on >{c['listing']} {KEYS} -@all +@read +@connection",
    ]) + "\n")
    return f


def argv_tls(exe: str) -> list[str]:
    pki = ensure_pki()
    return [exe, "--bind", HOST, "--port", "0", "--tls-port", str(ports()["redis"]),
            "--tls-cert-file", str(pki["redis_cert"]), "--tls-key-file", str(pki["redis_key"]),
            "--tls-ca-cert-file", str(pki["ca"]), "--tls-auth-clients", "no", "--aclfile", str(aclfile()),
            "--proc-title-template", "{title} {listen-addr} tls:{tls-port}"]


def ping_tls(port: int, timeout: float = 1.0) -> bool:
    """AUTH as admin + PING over TLS, verifying the server against the stack's CA."""
    ctx = ssl.create_default_context(cafile=str(ensure_pki()["ca"]))
    pw = credentials()["admin"].encode()
    auth = b"*3\r\n$4\r\nAUTH\r\n$5\r\nadmin\r\n$%d\r\n%s\r\n" % (len(pw), pw)
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=HOST) as s:
            s.sendall(auth + b"*1\r\n$4\r\nPING\r\n")
            buf = b""
            while buf.count(b"\r\n") < 2:
                chunk = s.recv(64)
                if not chunk:
                    return False
                buf += chunk
            return buf == b"+OK\r\n+PONG\r\n"
    except (OSError, ssl.SSLError):
        return False


def url(user: str) -> str:
    """What a client of `user` uses: rediss://, the password, and the CA to verify the server with."""
    return f"rediss://{user}:{credentials()[user]}@{HOST}:{ports()['redis']}/0?ssl_ca_certs={ensure_pki()['ca']}"
