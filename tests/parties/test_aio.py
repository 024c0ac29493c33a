"""Party process preparation (parties.aio): one BLAS thread and glibc's allocator kept warm.

Each check runs in a fresh interpreter: both settings are process-wide.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from parties import aio

_PROBE = r"""
import json, resource
import numpy as np
from threadpoolctl import threadpool_info
from parties import aio

def faults_of_second_allocation():
    def fill():
        a = np.empty(8_000_000, np.uint64)  # 64 MB
        a[:] = 1
        del a
    fill()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fill()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults_of_second_allocation()
aio.prepare_process()
tuned = faults_of_second_allocation()
blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
print(json.dumps({"default": default, "tuned": tuned, "blas": blas}))
"""


def _probe() -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_freed_large_arrays_are_reused_without_faulting_pages_in_again() -> None:
    got = _probe()
    assert got["blas"] and all(n == 1 for n in got["blas"])  # type: ignore[union-attr]
    if platform.libc_ver()[0] != "glibc":  # the settings are glibc's; elsewhere nothing changes
        assert aio.tune_allocator() is False
        return
    # By default glibc maps a 64 MB block afresh every time: hundreds of page faults (2 MiB
    # huge pages or 4 KiB pages); tuned, the second block reuses the first one's pages.
    assert got["default"] >= 32
    assert got["tuned"] < got["default"] / 4  # type: ignore[operator]


def test_tune_allocator_does_nothing_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert aio.tune_allocator() is False
