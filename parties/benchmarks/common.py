"""Shared pieces of the benchmark suites: the JSON line format and peer environments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["emit", "peer_python", "PROJECT_ROOT", "MPYC_REQUIREMENTS"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MPYC_REQUIREMENTS = ["mpyc==0.11", "gmpy2", "numpy"]
"""One requirement list for the MPyC peer venv (suites sharing it must not reinstall it)."""


def emit(suite: str, metric: str, value: float, unit: str, params: dict[str, Any], peer: str | None, peer_value: float | None) -> None:
    """Print one result line in the format of DESIGN.md (ratio = ours / peer)."""
    ratio = value / peer_value if peer_value else None
    print(
        json.dumps(
            {
                "suite": suite,
                "metric": metric,
                "value": round(value, 6),
                "unit": unit,
                "params": params,
                "peer": peer,
                "peer_value": None if peer_value is None else round(peer_value, 6),
                "ratio": None if ratio is None else round(ratio, 4),
            }
        ),
        flush=True,
    )


def peer_python(name: str, requirements: list[str], *, extra_args: list[str] | None = None) -> Path:
    """The python of ``.venv-peers/NAME``, created and filled with ``requirements`` if needed.

    Peers live in their own virtual environments because their pins conflict with ours and
    with each other. Progress goes to stderr so stdout stays JSON lines.
    """
    venv = PROJECT_ROOT / ".venv-peers" / name
    py = venv / "bin" / "python"
    stamp = venv / ".installed"
    want = "\n".join(requirements + (extra_args or []))
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdout=sys.stderr)
    if not stamp.exists() or stamp.read_text() != want:
        print(f"bench: installing peer {name} into {venv}", file=sys.stderr)
        subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *(extra_args or []), *requirements],
            check=True,
            stdout=sys.stderr,
        )
        stamp.write_text(want)
    return py
