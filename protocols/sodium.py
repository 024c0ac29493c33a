"""libsodium's ristretto255 group through ``rbcl``, imported once per process, leaving no file behind.

``rbcl`` ships libsodium as bytes, writes them to a temporary ``.so`` (mode 0600) at import and
loads it, but never deletes the file: every process that imports it would leave a 2.8 MB copy in
the temporary directory. Once the library is loaded the file is no longer needed (Linux keeps the
mapping), so this module removes it. Import ristretto255 functions from here, not from ``rbcl``.
"""

from __future__ import annotations

import contextlib
import os

import rbcl

__all__ = ["rbcl"]

with contextlib.suppress(OSError, AttributeError, TypeError):
    os.unlink(rbcl._sodium._name)  # the loaded CDLL's file
