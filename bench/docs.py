"""Write measured figures into the docs: one section of a Markdown file, replaced in place.

Drills and benchmarks own one ``## Heading`` each; other engineers own the rest of the file,
so only the text from that heading to the next ``## `` heading is ever rewritten.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def replace_section(path: Path, heading: str, body: str, *, title: str | None = None) -> None:
    """Put ``## heading`` + ``body`` into ``path``, replacing that section if present."""
    marker = f"## {heading}"
    section = f"{marker}\n\n{body.strip()}\n"
    text = path.read_text() if path.exists() else (f"# {title}\n\n" if title else "")
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == marker), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section if text.strip() else section
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        tail = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    atomic_write(path, text)


def atomic_write(path: Path, text: str) -> None:
    """Readers (and a concurrent drill) never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def cpu_model() -> str:
    """The processor's name, for the line that says where figures were measured."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
