"""``gunicorn.conf.py`` and the ``Procfile``: the web process's shape and shutdown budget."""

from __future__ import annotations

import multiprocessing
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load(monkeypatch, **env: str) -> dict:
    for name in ("WEB_CONCURRENCY", "PORT", "HOST", "TRUSTED_PROXY_COUNT", "FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_defaults(monkeypatch):
    config = load(monkeypatch)
    assert config["workers"] == 2 * multiprocessing.cpu_count() + 1
    assert config["bind"] == "127.0.0.1:8000"  # loopback: only the proxy reaches it
    # Below systemd's TimeoutStopSec=35, so in-flight requests finish before any SIGKILL.
    assert config["graceful_timeout"] == 25 < 35
    assert config["timeout"] == 30
    assert config["keepalive"] > 0
    assert config["worker_tmp_dir"] == "/dev/shm"
    assert config["preload_app"] is False


def test_port_and_concurrency_come_from_the_environment(monkeypatch):
    config = load(monkeypatch, PORT="9123", WEB_CONCURRENCY="3")
    assert config["bind"] == "127.0.0.1:9123"
    assert config["workers"] == 3


def test_forwarded_headers_are_trusted_only_behind_a_configured_proxy(monkeypatch):
    assert load(monkeypatch)["forwarded_allow_ips"] == ""
    behind = load(monkeypatch, TRUSTED_PROXY_COUNT="1", FORWARDED_ALLOW_IPS="10.0.0.5, 10.1.0.0/16")
    assert behind["forwarded_allow_ips"] == "10.0.0.5,10.1.0.0/16"


def test_binds_every_interface_only_when_told(monkeypatch):
    assert load(monkeypatch, HOST="0.0.0.0")["bind"] == "0.0.0.0:8000"


def test_gunicorn_accepts_the_configuration(monkeypatch):
    from gunicorn.config import Config

    config = Config()
    for name, value in load(monkeypatch, TRUSTED_PROXY_COUNT="0").items():
        if name in config.settings:
            config.set(name, value)
    assert config.forwarded_allow_ips == []
    assert config.logconfig_dict["loggers"]["gunicorn.access"]["handlers"] == ["console"]


def test_procfile_names_the_three_processes():
    lines = (ROOT / "Procfile").read_text().splitlines()
    assert lines == [
        "web: gunicorn gateway.wsgi",
        "worker: python manage.py qcluster",
        "bot: python manage.py runbot",
    ]
