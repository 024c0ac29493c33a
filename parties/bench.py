"""``scripts/bench SUITE``: run one benchmark suite; one JSON object per line on stdout.

Each suite lives in ``parties/benchmarks/SUITE.py`` and defines ``async def run() -> None``,
measuring its peer in the same run (DESIGN.md, Benchmarks). Benchmarks are not tests.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import parties.benchmarks as suites_pkg
from parties import aio


def available() -> list[str]:
    """Names of the benchmark suites."""
    return sorted(m.name for m in pkgutil.iter_modules(suites_pkg.__path__) if m.name != "common")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/bench``."""
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    ap.add_argument("suite", choices=available())
    args = ap.parse_args(argv)
    module = importlib.import_module(f"parties.benchmarks.{args.suite}")
    aio.run(module.run())  # the event loop of party processes (raw peers measured here use it too)
    return 0


if __name__ == "__main__":
    sys.exit(main())
