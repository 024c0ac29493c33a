"""Local datasets a node exposes to jobs, by name, with declared column types.

Nothing else on disk is reachable from a job: a job names a dataset and columns, the node
checks them against the declaration (and the policy's allowed columns) and hands the job only
those columns, read with their declared types.

``node.toml``::

    [datasets.patients]
    path = "patients.csv"            # CSV with a header row, or Parquet (.parquet / format)
    format = "csv"                   # "csv" (default from the suffix) or "parquet"
    id_column = "patient_id"         # the identifier column, for PSI and record alignment
    allowed_columns = ["age", "stay", "patient_id"]   # what jobs may read (default: all)
    [datasets.patients.columns]      # every column a job may name, with its type
    patient_id = "string"
    age = "float"                    # "float", "int" or "string"
    stay = "float"

Types: ``float`` -> float64 (finite values only), ``int`` -> int64, ``string`` -> Python str
(UTF-8). A missing or malformed value is a :class:`~mpc.errors.ConfigError` naming the line.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mpc.errors import ConfigError

__all__ = ["ColumnType", "DatasetConfig", "parse_dataset", "read_columns", "MAX_ROWS"]

ColumnType = str
COLUMN_TYPES = ("float", "int", "string")
FORMATS = ("csv", "parquet")
MAX_ROWS = 50_000_000
MAX_STRING_CHARS = 4096


@dataclass(frozen=True)
class DatasetConfig:
    """A declared local dataset.

    Attributes:
        name: the name jobs use.
        path: absolute path of the file.
        format: ``"csv"`` or ``"parquet"``.
        columns: declared columns and their types.
        id_column: the identifier column (optional).
        allowed_columns: the columns jobs may read.
    """

    name: str
    path: Path
    format: str = "csv"
    columns: Mapping[str, ColumnType] = field(default_factory=dict)
    id_column: str | None = None
    allowed_columns: tuple[str, ...] = ()

    def check_columns(self, columns: list[str]) -> None:
        """Raise ConfigError unless every column is declared and allowed."""
        for c in columns:
            if c not in self.columns:
                raise ConfigError(f"dataset {self.name!r} has no declared column {c!r}")
            if c not in self.allowed_columns:
                raise ConfigError(f"column {c!r} of dataset {self.name!r} is not allowed for jobs")


def parse_dataset(name: str, table: Any, base: Path) -> DatasetConfig:
    """Validate one ``[datasets.NAME]`` table (paths relative to ``base``).

    Raises:
        ConfigError: on any missing, unknown or invalid key.
    """
    where = f"[datasets.{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = set(table) - {"path", "format", "columns", "id_column", "allowed_columns"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    path_text = table.get("path")
    if not isinstance(path_text, str) or not path_text:
        raise ConfigError(f"{where}.path: expected a non-empty string")
    path = (base / path_text).resolve()
    fmt = table.get("format", "parquet" if path.suffix.lower() == ".parquet" else "csv")
    if fmt not in FORMATS:
        raise ConfigError(f"{where}.format: expected one of {', '.join(FORMATS)}")
    columns = table.get("columns", {})
    if not isinstance(columns, dict) or not columns:
        raise ConfigError(f"{where}.columns: declare every column jobs may use, with its type")
    for col, typ in columns.items():
        if typ not in COLUMN_TYPES:
            raise ConfigError(f"{where}.columns.{col}: type must be one of {', '.join(COLUMN_TYPES)}")
    id_column = table.get("id_column")
    if id_column is not None and id_column not in columns:
        raise ConfigError(f"{where}.id_column: {id_column!r} is not a declared column")
    allowed = table.get("allowed_columns", list(columns))
    if not isinstance(allowed, list) or not all(isinstance(c, str) and c in columns for c in allowed):
        raise ConfigError(f"{where}.allowed_columns: expected a list of declared columns")
    return DatasetConfig(name, path, fmt, dict(columns), id_column, tuple(allowed))


def read_columns(dataset: DatasetConfig, columns: list[str]) -> dict[str, np.ndarray | list[str]]:
    """Read the named columns with their declared types.

    Returns:
        Column name -> float64 or int64 array, or a list of str for ``string`` columns.

    Raises:
        ConfigError: a column is not declared or allowed, the file is unreadable, a value is
            missing or does not parse as its type, or the file has too many rows.
    """
    dataset.check_columns(columns)
    raw = _read_csv(dataset, columns) if dataset.format == "csv" else _read_parquet(dataset, columns)
    return {c: _convert(dataset, c, raw[c]) for c in columns}


def _read_csv(dataset: DatasetConfig, columns: list[str]) -> dict[str, list[str]]:
    try:
        with open(dataset.path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise ConfigError(f"dataset {dataset.name!r}: file is empty")
            missing = [c for c in columns if c not in header]
            if missing:
                raise ConfigError(f"dataset {dataset.name!r}: file lacks column(s) {', '.join(missing)}")
            idx = [header.index(c) for c in columns]
            out: dict[str, list[str]] = {c: [] for c in columns}
            for lineno, row in enumerate(reader, start=2):  # a loop over rows: csv is row-wise
                if lineno - 1 > MAX_ROWS:
                    raise ConfigError(f"dataset {dataset.name!r} has more than {MAX_ROWS} rows")
                if len(row) != len(header):
                    raise ConfigError(f"dataset {dataset.name!r} line {lineno}: expected {len(header)} fields")
                for c, i in zip(columns, idx):
                    out[c].append(row[i])
            return out
    except OSError as exc:
        raise ConfigError(f"dataset {dataset.name!r}: cannot read {dataset.path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"dataset {dataset.name!r}: file is not UTF-8") from None


def _read_parquet(dataset: DatasetConfig, columns: list[str]) -> dict[str, list[Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise ConfigError("reading Parquet needs pyarrow") from None
    try:
        table = pq.read_table(dataset.path, columns=columns)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"dataset {dataset.name!r}: cannot read {dataset.path}: {exc}") from None
    if table.num_rows > MAX_ROWS:
        raise ConfigError(f"dataset {dataset.name!r} has more than {MAX_ROWS} rows")
    return {c: table.column(c).to_pylist() for c in columns}


def _convert(dataset: DatasetConfig, column: str, values: list[Any]) -> np.ndarray | list[str]:
    typ = dataset.columns[column]
    where = f"dataset {dataset.name!r} column {column!r}"
    if any(v is None or v == "" for v in values):
        raise ConfigError(f"{where}: missing value")
    if typ == "string":
        out = [str(v) for v in values]
        if any(len(v) > MAX_STRING_CHARS for v in out):
            raise ConfigError(f"{where}: value longer than {MAX_STRING_CHARS} characters")
        return out
    try:
        if typ == "int":
            return np.array([int(v) for v in values], dtype=np.int64)
        arr = np.array([float(v) for v in values], dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise ConfigError(f"{where}: a value is not of type {typ}") from None
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{where}: non-finite value")
    return arr
