"""Shared pieces of the benchmark suites: the JSON line format and peer environments."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

__all__ = ["emit", "peer_python", "run_mpyc", "run_crypten", "PROJECT_ROOT", "MPYC_REQUIREMENTS"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MPYC_REQUIREMENTS = ["mpyc==0.11", "gmpy2", "numpy", "uvloop"]
"""One requirement list for the MPyC peer venv (suites sharing it must not reinstall it).

MPyC uses ``gmpy2`` and ``uvloop`` when present (its ``--no-uvloop`` option turns the latter
off); ours runs on uvloop too (:mod:`parties.aio`), so both get the same event loop."""


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


def run_mpyc(
    program: str, args: list[str], *, timeout: float, label: str, files: Mapping[str, str] | None = None
) -> str | None:
    """Run an MPyC program as three local party processes in the MPyC peer venv.

    Args:
        program: the program's source (written to ``prog.py`` in a temporary directory).
        args: its own arguments (MPyC's ``-M3 -I<i> -B <port> --no-log`` are appended).
        timeout: seconds each party may take.
        label: the suite's name, for error messages.
        files: extra files (name -> text) written beside the program; the parties run there.

    Returns:
        Party 0's standard output, or ``None`` (with the reason on stderr) if MPyC cannot be
        installed or a party fails.
    """
    from parties.local import free_ports

    try:
        py = peer_python("mpyc", MPYC_REQUIREMENTS)
    except subprocess.CalledProcessError as exc:
        print(f"bench {label}: cannot install MPyC: {exc}", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory(prefix=f"mpyc-{label}-") as tmp:
        for name, text in {"prog.py": program, **(files or {})}.items():
            (Path(tmp) / name).write_text(text)
        (port,) = free_ports(1)
        procs = [
            subprocess.Popen(
                [str(py), "prog.py", *args, "-M3", f"-I{i}", "-B", str(port), "--no-log"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=tmp,
                text=True,
            )
            for i in range(3)
        ]
        outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            print(f"bench {label}: MPyC failed: {err[-800:]}", file=sys.stderr)
            return None
    return outs[0][0]


def crypten_python() -> Path:
    """CrypTen's venv, installed as PEERS.md says (torch CPU first, crypten without deps).

    Raises:
        subprocess.CalledProcessError: an installation step failed.
    """
    venv = peer_python("crypten", ["torch==2.13.0"])
    stamp = venv.parent.parent / ".crypten-installed"
    if not stamp.exists():
        steps = [["crypten==0.4.1", "--no-deps"], ["numpy", "omegaconf", "pyyaml", "onnx", "scikit-learn"]]
        for step in steps:
            subprocess.run([str(venv), "-m", "pip", "install", "--quiet", *step], check=True, stdout=sys.stderr)
        stamp.write_text("ok")
    return venv


def run_crypten(
    program: str, args: list[str], *, timeout: float, label: str, files: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """Run a CrypTen program (its two parties are processes it starts itself) in the peer venv.

    Args:
        program: the program's source (written to ``prog.py`` in a temporary directory).
        args: its arguments.
        timeout: seconds it may take.
        label: the suite's name, for error messages.
        files: extra files (name -> text) written beside the program; it runs there.

    Returns:
        The last JSON object line it printed, or ``None`` (with the reason on stderr) if CrypTen
        cannot be installed, the program fails or prints none.
    """
    try:
        py = crypten_python()
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"bench {label}: cannot install CrypTen: {exc}", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory(prefix=f"crypten-{label}-") as tmp:
        for name, text in {"prog.py": program, **(files or {})}.items():
            (Path(tmp) / name).write_text(text)
        proc = subprocess.run([str(py), "prog.py", *args], capture_output=True, timeout=timeout, cwd=tmp)
    if proc.returncode != 0:
        print(f"bench {label}: CrypTen failed: {proc.stderr.decode(errors='replace')[-800:]}", file=sys.stderr)
        return None
    lines = [ln for ln in proc.stdout.decode().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else None
