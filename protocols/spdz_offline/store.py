"""Persisting unused material so that a restarted node keeps it, consumed exactly once.

:func:`save` drains every pool of a provider into one file: the material (value and MAC
shares, mask values) and, bound to it, the party names, this party's id, the provider's store
id (coin-tossed by all parties at creation), this party's MAC key share and the epoch (the
number of saves of this store so far, the same at every party). The
file is encrypted and authenticated with AES-256-GCM under a key the node supplies (its storage
key; the header is the associated data, so nothing in it can be changed either) and written
atomically (temporary file, ``fsync``, ``os.replace``).

:func:`try_load` first reads and verifies the file and checks with every party, in one round,
that they all hold the same store id, epoch and counts (every party must :func:`save` at the
same point of the program and load the file of that save); otherwise nothing is consumed and
no party loads. Then it *claims* the file: it renames it to a private name (atomic; a second
claim finds nothing) and deletes it, so a file is loaded at most once and its material can be
handed out only once; a second round confirms every party claimed its own. After a crash
between the claim and the use the material is lost, never reused.

What this does not protect against: a node operator who copies the file before it is claimed
and restores it later (restoring a backup) would replay material; the epoch check catches it
only if the other parties do not restore theirs too. Such a replay reuses triples (a privacy
loss for the job that replays) but does not let anyone forge MACs. Keep the storage key out of
backups, or delete stores when restoring.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mpc.errors import ConfigError, ProtocolViolation
from mpc.ring128 import Z128
from mpc.session import Session
from protocols.spdz.shares import AuthShare

from protocols.spdz_offline.pool import Column
from protocols.spdz_offline.provider import DealerFreePreprocessing

__all__ = ["save", "load", "try_load", "KEY_BYTES"]

KEY_BYTES = 32
_MAGIC = b"mpc-spdz-offline-store/v1\x00"
_NONCE = 12


def _check_key(key: bytes) -> AESGCM:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        raise ConfigError(f"the storage key must be {KEY_BYTES} bytes")
    return AESGCM(bytes(key))


def _encode(provider: DealerFreePreprocessing) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    arrays: dict[str, np.ndarray] = {}
    layout: dict[str, list[list[str | None]]] = {}
    for key, pool in sorted(provider.pools().items()):
        batches = []
        for b, batch in enumerate(pool.drain()):
            cols: list[str | None] = []
            for c, col in enumerate(batch):
                name = f"{len(arrays)}"
                if col is None:
                    cols.append(None)
                elif isinstance(col, AuthShare):
                    arrays[name + "l"] = np.asarray(col.data.lo)
                    arrays[name + "h"] = np.asarray(col.data.hi)
                    cols.append("s" + name)
                else:
                    arrays[name + "v"] = np.asarray(col)
                    cols.append("v" + name)
            batches.append(cols)
        if batches:
            layout[key] = batches
    return layout, arrays


def save(provider: DealerFreePreprocessing, path: str | os.PathLike[str], key: bytes) -> dict[str, int]:
    """Move every unused element of ``provider`` into an encrypted file (the provider is left empty).

    Args:
        provider: this party's provider.
        path: the file to write (replaced atomically if it exists).
        key: the node's 32-byte storage key.

    Returns:
        The counts saved per resource key.
    """
    aead = _check_key(key)
    counts = {k: p.size for k, p in sorted(provider.pools().items()) if p.size}
    layout, arrays = _encode(provider)
    provider.saves += 1
    header = {
        "parties": list(provider.parties),
        "party_id": provider.party_id,
        "store_id": provider.store_id.hex(),
        "epoch": provider.saves,
        "key_share": int(provider.mac_key_share()),
        "tau": provider.tau,
        "batch": provider.batch,
        "counts": counts,
        "layout": layout,
    }
    head = json.dumps(header, sort_keys=True).encode()
    body = io.BytesIO()
    np.savez(body, **arrays)  # type: ignore[arg-type]
    nonce = os.urandom(_NONCE)
    sealed = aead.encrypt(nonce, body.getvalue(), _MAGIC + head)
    blob = _MAGIC + len(head).to_bytes(8, "little") + head + nonce + sealed
    target = Path(path)
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return counts


def _claim(path: Path, expected: bytes) -> bool:
    """Take the file for good (atomic rename, then delete); whether it was the file we read."""
    claimed = path.with_name(path.name + f".claimed-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        os.replace(path, claimed)  # atomic: only one claimant gets the file
    except FileNotFoundError:
        return False
    try:
        return claimed.read_bytes() == expected
    finally:
        claimed.unlink(missing_ok=True)


def _decode(session: Session, blob: bytes, aead: AESGCM) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 8:
        raise ConfigError("not a preprocessing store")
    pos = len(_MAGIC)
    size = int.from_bytes(blob[pos : pos + 8], "little")
    head = blob[pos + 8 : pos + 8 + size]
    nonce = blob[pos + 8 + size : pos + 8 + size + _NONCE]
    try:
        body = aead.decrypt(nonce, blob[pos + 8 + size + _NONCE :], _MAGIC + head)
    except InvalidTag:
        raise ConfigError("the preprocessing store does not authenticate (wrong key or tampered)") from None
    header = json.loads(head)
    if header["parties"] != list(session.parties) or header["party_id"] != session.party_id:
        raise ConfigError("the preprocessing store belongs to another party set or party")
    with np.load(io.BytesIO(body), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return header, arrays


async def _agree(session: Session, name: str, mine: bytes) -> bool:
    """One round: whether every party sent the same non-empty token as ours."""
    got = await session.exchange(name, {"d": mine})
    same = bool(mine)
    for peer, msg in got.items():
        if not isinstance(msg, dict) or not isinstance(msg.get("d"), bytes):
            raise ProtocolViolation(f"party {peer} sent a malformed store message")
        same = same and msg["d"] == mine
    return same


async def try_load(session: Session, path: str | os.PathLike[str], key: bytes) -> DealerFreePreprocessing | None:
    """Reload the store saved at ``path`` if every party has the matching one; else ``None``.

    Every party calls it (SPMD) with the file of the same save. Steps: read and verify the file
    locally (nothing consumed yet); compare store id, epoch and counts with every party (1
    round; on any difference or missing file every party returns ``None`` and the files stay);
    claim the file (atomic rename, then delete: from here on it can never be loaded again) and
    confirm that every party claimed its own (1 round; if one could not, e.g. a concurrent
    load took it, everyone raises and the claimed material is discarded). The provider keeps
    the saved MAC key share and store id; its OT pairs are set up again if it produces more.

    Raises:
        ConfigError: the storage key has the wrong length, or some party could not claim its
            file after all agreed (the material is then discarded everywhere).
    """
    aead = _check_key(key)
    target = Path(path)
    sub = session.child("spdz-offline-load")
    token = b""
    blob = b""
    header: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    try:
        blob = target.read_bytes()
        header, arrays = _decode(session, blob, aead)
        token = hashlib.sha256(
            json.dumps([header["store_id"], header["epoch"], header["counts"]], sort_keys=True).encode()
        ).digest()
    except (OSError, ConfigError, ValueError, KeyError):
        token = b""  # missing, unreadable, tampered or foreign: this party has no store
    if not await _agree(sub, "store", token):
        return None
    claimed = _claim(target, blob)
    if not await _agree(sub, "claimed", b"ok" if claimed else b"lost"):
        raise ConfigError("a party could not claim its preprocessing store; the stores are discarded")
    provider = DealerFreePreprocessing(
        session.child("spdz-offline"),
        np.asarray(np.uint64(header["key_share"])),
        bytes.fromhex(header["store_id"]),
        tau=int(header["tau"]),
        batch=int(header["batch"]),
    )
    provider.saves = int(header["epoch"])
    for pool_key, batches in header["layout"].items():
        for cols in batches:
            batch: list[Column] = []
            for col in cols:
                if col is None:
                    batch.append(None)
                elif col[0] == "s":
                    batch.append(AuthShare(Z128(arrays[col[1:] + "l"], arrays[col[1:] + "h"])))
                else:
                    batch.append(arrays[col[1:] + "v"])
            provider.restore(pool_key, tuple(batch))
    return provider


async def load(session: Session, path: str | os.PathLike[str], key: bytes) -> DealerFreePreprocessing:
    """:func:`try_load`, raising when there is nothing to load.

    Raises:
        ConfigError: some party has no matching store (missing, already consumed, wrong key,
            tampered, another party set, or another save than the others').
    """
    provider = await try_load(session, path, key)
    if provider is None:
        raise ConfigError("no matching persisted preprocessing at every party (missing, consumed or different)")
    return provider
