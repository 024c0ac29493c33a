"""Record alignment from an earlier private join: a later job reads its rows in the join's order.

A ``psi-join`` job leaves at every party the rows of its dataset that matched, in one order
common to all parties (:func:`protocols.psi.psi_join`). A later job among the same parties may
name that job (``params.align_with = "<job id>"``, e.g. vertical ``train-logreg``): each node then
hands the job the rows of its own input at the joined positions, in the join's order, so row
``k`` is the same patient everywhere — without any party learning more than the join already
told it (its own matching rows).

Checks, each a :class:`~mpc.errors.ConfigError` that fails the job at the party that meets it:
the named result exists at this node and is a ``psi-join``; it was run by the same set of
parties; this party joined on the same dataset the job reads; and the dataset still holds the
joined identifiers at the joined rows (a file edited since the join would silently misalign
records, so it is refused).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mpc.errors import ConfigError
from parties.datasets import DatasetConfig, read_columns
from parties.manifest import Manifest

__all__ = ["ALIGN_PARAM", "check_align_param", "aligned_rows", "select_rows"]

ALIGN_PARAM = "align_with"
"""The manifest parameter naming the ``psi-join`` job whose alignment a job uses."""

_HEX = frozenset("0123456789abcdef")


def check_align_param(value: Any) -> str:
    """The job id of ``params.align_with``.

    Raises:
        ConfigError: not a job id (lowercase hex).
    """
    if not isinstance(value, str) or not 0 < len(value) <= 64 or not set(value) <= _HEX:
        raise ConfigError(f"{ALIGN_PARAM} must name a psi-join job by its id (lowercase hex)")
    return value


def aligned_rows(results_dir: Path, manifest: Manifest, party: str, dataset: DatasetConfig) -> np.ndarray:
    """This party's dataset rows in the order of the ``psi-join`` the manifest aligns with.

    Args:
        results_dir: this node's results directory (where the join's output was written).
        manifest: the job that asks for the alignment (``params.align_with``).
        party: this party's name.
        dataset: the dataset this party's input reads.

    Returns:
        The row indices (int64), in the join's common order.

    Raises:
        ConfigError: see the module docstring.
    """
    job_id = check_align_param(manifest.params.get(ALIGN_PARAM))
    try:
        doc = json.loads((results_dir / f"{job_id}.json").read_text())
        join, result = doc["manifest"], doc["outputs"]["result"]
        rows = np.asarray(result["rows"], dtype=np.int64)
        identifiers = [str(v) for v in result["identifiers"]]
        spec = join["inputs"][party]
        kind, parties, joined_dataset, id_column = join["kind"], set(join["parties"]), spec["dataset"], spec["columns"][0]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        raise ConfigError(f"{ALIGN_PARAM}: no psi-join result of job {job_id} at {party}") from None
    if kind != "psi-join":
        raise ConfigError(f"{ALIGN_PARAM}: job {job_id} is a {kind!r} job, not a psi-join")
    if parties != set(manifest.parties):
        raise ConfigError(f"{ALIGN_PARAM}: job {job_id} was run by other parties ({', '.join(sorted(parties))})")
    if joined_dataset != dataset.name:
        raise ConfigError(f"{ALIGN_PARAM}: {party} joined dataset {joined_dataset!r}, this job reads {dataset.name!r}")
    if rows.ndim != 1 or len(identifiers) != rows.size:
        raise ConfigError(f"{ALIGN_PARAM}: the result of job {job_id} is malformed")
    column = read_columns(dataset, [id_column])[id_column]
    if rows.size and (rows.min() < 0 or rows.max() >= len(column)):
        raise ConfigError(f"{ALIGN_PARAM}: dataset {dataset.name!r} changed since job {job_id} (fewer rows)")
    if any(str(column[i]) != ident for i, ident in zip(rows.tolist(), identifiers)):
        raise ConfigError(f"{ALIGN_PARAM}: dataset {dataset.name!r} changed since job {job_id} (other identifiers)")
    return rows


def select_rows(data: Mapping[str, np.ndarray | list[str]], rows: np.ndarray) -> dict[str, np.ndarray | list[str]]:
    """Every column of ``data`` at ``rows`` (in that order)."""
    out: dict[str, np.ndarray | list[str]] = {}
    for name, column in data.items():
        if isinstance(column, np.ndarray):
            out[name] = column[rows]
        else:
            out[name] = [column[i] for i in rows.tolist()]  # a list of str: one lookup per row
    return out
