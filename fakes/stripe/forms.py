"""Stripe's request encoding: form bodies with bracketed nested keys.

stripe-python sends ``line_items[0][price]=price_x&expand[0]=customer&metadata[k]=v`` (always
indexed arrays); curl users and older clients send ``expand[]=customer``. Both decode to plain
nested dicts and lists here. An empty value is meaningful to Stripe (``metadata[k]=`` deletes a
key, ``metadata=`` clears it), so blank values are kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from .errors import invalid

_KEY_RE = re.compile(r"([^\[\]]+)|\[([^\[\]]*)\]")


def split_key(key: str) -> list[str]:
    """``"a[b][0][]"`` → ``["a", "b", "0", ""]`` (``""`` means "append")."""
    parts: list[str] = []
    for match in _KEY_RE.finditer(key):
        bare, bracketed = match.groups()
        parts.append(bare if bare is not None else bracketed)
    return parts or [key]


def parse_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = split_key(key)
        node = root
        for part in parts[:-1]:
            if part == "":
                part = str(len(node))  # ``a[]`` appends: give it the next free index
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        last = parts[-1]
        if last == "":
            last = str(len(node))
        node[last] = value
    return _listify(root)


def _listify(value: Any) -> Any:
    """Turn dicts keyed ``"0", "1", …`` into lists, ordered by index."""
    if not isinstance(value, dict):
        return value
    converted = {k: _listify(v) for k, v in value.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def parse_query(query_string: str) -> dict[str, Any]:
    return parse_form(parse_qsl(query_string, keep_blank_values=True))


# -- typed readers ----------------------------------------------------------------------------
# Values arrive as strings; these read them the way Stripe validates them, naming the param
# in the error so a client sees exactly what it got wrong.


def get_str(params: Mapping[str, Any], name: str, default: str | None = None) -> str | None:
    value = params.get(name, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {value!r}", param=name)
    return value


def get_int(params: Mapping[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid integer: {value}", param=name) from None


def get_bool(params: Mapping[str, Any], name: str, default: bool | None = None) -> bool | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise invalid(f"Invalid boolean: {value}", param=name)


def get_list(params: Mapping[str, Any], name: str) -> list[Any]:
    value = params.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [value]  # ``expand=customer`` (no brackets) is accepted by Stripe too
    raise invalid(f"Invalid array: {name}", param=name)


def get_dict(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name)
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid(f"Invalid hash: {name}", param=name)
    return value


def apply_metadata(
    current: dict[str, str], update: Any, *, param: str = "metadata"
) -> dict[str, str]:
    """Stripe's metadata merge: keys are merged, ``""`` deletes a key, ``metadata=`` clears."""
    if update is None:
        return current
    if update == "":
        return {}
    if not isinstance(update, dict):
        raise invalid("Invalid hash", param=param)
    merged = dict(current)
    for key, value in update.items():
        if value == "" or value is None:
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return merged
