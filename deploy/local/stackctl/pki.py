"""The secure profile's private CA and secrets, made once per stack dir with openssl and
cached there: a CA (PEM, what clients trust), one certificate for the brokers (PKCS#12
keystore; CN=broker is also their principal on the mutual-TLS controller listener), one for
Redis, and random passwords for every principal (credentials.json, mode 0600).

Certificates name only IP 127.0.0.1: a client that dials any other name (even `localhost`)
must fail the hostname check, which is what the hostname-mismatch test relies on.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from .paths import StackError, say, stack_dir

USERS = ("admin", "worker", "operator", "listing")
DAYS = "30"


def pki_dir() -> Path:
    d = stack_dir() / "pki"
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    return d


def _openssl(*args: str, env: dict[str, str] | None = None) -> None:
    exe = shutil.which("openssl")
    if not exe:
        raise StackError("openssl not found on PATH (the secure profile makes its CA with it)")
    r = subprocess.run([exe, *args], capture_output=True, text=True, cwd=pki_dir(), env={**os.environ, **(env or {})})
    if r.returncode != 0:
        raise StackError(f"openssl {args[0]} failed:\n{r.stderr[-2000:]}")


def make_ca(d: Path, cn: str = "imagegate-local-ca") -> Path:
    """A self-signed CA in d (ca.key, ca.pem); also used by tests to make an *unknown* CA."""
    if not (d / "ca.pem").exists():
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "ca.key"),
                 "-out", str(d / "ca.pem"), "-days", DAYS, "-subj", f"/CN={cn}",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return d / "ca.pem"


def issue(d: Path, name: str, san: str = "IP:127.0.0.1") -> tuple[Path, Path]:
    """A key and a CA-signed certificate for `name` (CN=name, the given subjectAltName)."""
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    if not cert.exists():
        ext = d / f"{name}.ext"
        ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(d / f"{name}.csr"),
                 "-subj", f"/CN={name}")
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
                 "-CAcreateserial", "-out", str(cert), "-days", DAYS, "-extfile", str(ext))
    return key, cert


def credentials() -> dict[str, str]:
    """Passwords of every principal plus the keystore's, generated on first use."""
    f = stack_dir() / "credentials.json"
    if f.exists():
        return json.loads(f.read_text())
    creds = {u: secrets.token_urlsafe(18) for u in (*USERS, "keystore")}
    f.touch(mode=0o600)
    f.write_text(json.dumps(creds, indent=2) + "\n")
    return creds


def ensure_pki() -> dict[str, Path]:
    """Paths of ca.pem, the brokers' PKCS#12 keystore and Redis' certificate and key."""
    d = pki_dir()
    ca = make_ca(d)
    issue(d, "broker")
    rkey, rcert = issue(d, "redis")
    p12 = d / "broker.p12"
    if not p12.exists():
        _openssl("pkcs12", "-export", "-in", str(d / "broker.pem"), "-inkey", str(d / "broker.key"),
                 "-certfile", str(ca), "-name", "broker", "-out", str(p12),
                 "-passout", "env:IMAGEGATE_KEYSTORE_PASSWORD",  # not in argv, where `ps` would show it
                 env={"IMAGEGATE_KEYSTORE_PASSWORD": credentials()["keystore"]})
        say(f"pki: CA and certificates made in {d}")
    return {"ca": ca, "broker_p12": p12, "redis_cert": rcert, "redis_key": rkey}
