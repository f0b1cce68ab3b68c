"""The project's reverse proxy, ``deploy/caddy/Caddyfile``, run by Debian's Caddy for a drill.

The drill's only changes are what the file leaves to its environment: the site address (a free
loopback port), a self-signed certificate made here, the upstream gunicorns, and ports and
admin endpoint that cannot collide with another Caddy on the machine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.drills.stack import Process
from tests.processes import ROOT, free_port, wait_for_port

CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"
HOST = "127.0.0.1"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost (its own CA for the clients)."""
    cert, key = directory / "proxy-cert.pem", directory / "proxy-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=gateway drill",
            "-addext",
            f"subjectAltName=IP:{HOST},DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],  # fmt: skip
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


class CaddyProxy:
    """``caddy run`` on the project's Caddyfile in front of ``upstreams`` (gunicorn ports)."""

    def __init__(self, upstreams: list[int], directory: Path) -> None:
        caddy = shutil.which("caddy")
        if caddy is None:
            raise AssertionError("Caddy is not installed: run `make proxy-deps`")
        self.cert, key = self_signed_certificate(directory)
        self.port = free_port()
        self.url = f"https://{HOST}:{self.port}"
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(directory),
            "XDG_DATA_HOME": str(directory / "caddy-data"),
            "XDG_CONFIG_HOME": str(directory / "caddy-config"),
            "GATEWAY_DOMAIN": f"{HOST}:{self.port}",
            "GATEWAY_TLS": f"{self.cert} {key}",
            "GATEWAY_UPSTREAMS": " ".join(f"127.0.0.1:{port}" for port in upstreams),
            "GATEWAY_HTTP_PORT": str(free_port()),
            "GATEWAY_HTTPS_PORT": str(self.port),
            "GATEWAY_PROXY_ADMIN": "off",
        }
        argv = [caddy, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"]
        self.process = Process("proxy", argv, env, directory / "proxy.log")
        try:
            wait_for_port(self.port, timeout=30)
        except TimeoutError:
            self.process.stop()
            raise AssertionError(f"Caddy did not start:\n{self.process.tail()}") from None

    def close(self) -> None:
        self.process.stop()
