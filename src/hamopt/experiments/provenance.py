"""What a run manifest records about the software it ran on."""

from __future__ import annotations

import contextlib
import platform
import sys

import torch

__all__ = ["versions"]


def versions() -> dict[str, str]:
    """Python, torch, platform, the lab's libraries and hamopt, as version strings."""
    out = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    for mod in ("numpy", "pyarrow", "duckdb", "pydantic", "scipy"):
        with contextlib.suppress(Exception):  # optional
            out[mod] = __import__(mod).__version__
    try:
        from importlib.metadata import version

        out["hamopt"] = version("hamopt")
    except Exception:  # pragma: no cover
        out["hamopt"] = "unknown"
    return out
