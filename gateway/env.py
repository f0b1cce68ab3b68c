"""Strict environment parsing.

Every setting is read through :class:`Settings`, which wraps django-environ so that:

* an empty string means "unset" (so ``FOO=`` in an env file falls back to the default),
* a malformed value (``DEBUG=yes please``) stops start-up with a message naming the variable,
* secrets may come from ``NAME_FILE`` (a path whose content is the value),
* a secret that the current ``DJANGO_ENV`` requires and that is missing stops start-up.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


class Settings:
    def __init__(self, environ_map: dict[str, str] | None = None) -> None:
        self.environ = os.environ if environ_map is None else environ_map
        self._env = environ.Env()
        # django-environ reads os.environ through this attribute.
        self._env.ENVIRON = self.environ

    def raw(self, name: str) -> str | None:
        """The variable's value, or its ``_FILE`` content; None when unset or empty."""
        value = self.environ.get(name, "")
        if value.strip() == "":
            path = self.environ.get(f"{name}_FILE", "").strip()
            if not path:
                return None
            try:
                value = Path(path).read_text().strip()
            except OSError as exc:
                raise ImproperlyConfigured(
                    f"{name}_FILE points at {path!r}, which cannot be read: {exc.strerror}"
                ) from exc
            if not value:
                raise ImproperlyConfigured(f"{name}_FILE points at an empty file ({path!r})")
        return value.strip()

    def str(self, name: str, default: str = "") -> str:
        value = self.raw(name)
        return default if value is None else value

    def secret(self, name: str, *, required: bool, default: str = "") -> str:
        value = self.raw(name)
        if value is None:
            if required:
                raise ImproperlyConfigured(
                    f"{name} is required in this environment (set {name} or {name}_FILE)"
                )
            return default
        return value

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in TRUE:
            return True
        if lowered in FALSE:
            return False
        raise ImproperlyConfigured(
            f"{name} must be a boolean (one of {sorted(TRUE | FALSE)}), got {value!r}"
        )

    def int(self, name: str, default: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None

    def float(self, name: str, default: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return float(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None

    def list(self, name: str, default: list[str] | None = None) -> list[str]:
        value = self.raw(name)
        if value is None:
            return list(default or [])
        return [item.strip() for item in value.split(",") if item.strip()]

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value not in choices:
            raise ImproperlyConfigured(f"{name} must be one of {list(choices)}, got {value!r}")
        return value

    def db(self, name: str, default: str) -> dict[str, Any]:
        value = self.raw(name) or default
        try:
            return environ.Env.db_url_config(value)
        except Exception as exc:  # django-environ raises several types for bad URLs
            raise ImproperlyConfigured(f"{name} is not a valid database URL: {exc}") from None


def parse_networks(
    name: str, values: list[str]
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Addresses or CIDR networks (``10.0.0.0/8``) from a list setting; a typo stops start-up."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must list IP addresses or networks, got {value!r}"
            ) from None
    return tuple(networks)


def is_loopback_url(url: str) -> bool:
    """True when ``url`` points at this machine (the sandbox's fakes), not a real service."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
