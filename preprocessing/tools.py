"""Where the ffmpeg and ffprobe programs are.

``make setup`` uses a system ffmpeg when both programs are on the PATH, and otherwise links a
static build from PyPI into the venv's ``bin`` (README.md, "Setup"). A script started as
``.venv/bin/python script.py`` may not have that folder on its PATH, so the venv's ``bin`` beside
the running interpreter is looked at first, then the PATH.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from t2v2t.errors import ExpectedError

TOOLS = ("ffmpeg", "ffprobe")


class ToolNotFound(ExpectedError, FileNotFoundError):
    """ffmpeg or ffprobe is missing; the message says how to get it (one ``error:`` line)."""


def find_tool(name: str) -> str:
    """Absolute path of ``ffmpeg`` or ``ffprobe``: the venv's bin first, then the PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise ToolNotFound(
        f"{name} not found in {beside.parent} or on the PATH; run `make setup` "
        f"(it links a static ffmpeg/ffprobe into .venv/bin) or install ffmpeg"
    )
