"""Plain values of the evidence report: JSON conversion (non-finite floats as strings), its
compact writer, ISO time stamps and file hashes (:mod:`verifier.evidence.report`)."""
from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from verifier.errors import InputError


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise InputError(f"cannot read file: {e.strerror or type(e).__name__}", path=str(path)) from None
    return h.hexdigest()


def file_entry(path: str | os.PathLike) -> dict[str, Any]:
    """Path as given, absolute path, size and SHA-256 of a file."""
    p = Path(path)
    return {"path": str(path), "abspath": str(p.resolve()), "bytes": p.stat().st_size,
            "sha256": sha256_file(p)}


def iso_time(epoch: float | None) -> str | None:
    """``epoch`` seconds as an ISO-8601 UTC time stamp."""
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(timespec="milliseconds")


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values; non-finite floats become the strings ``"Infinity"``,
    ``"-Infinity"`` and ``"NaN"`` (standard JSON has no such numbers)."""
    if isinstance(obj, enum.Enum):
        return jsonable(obj.value)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy / torch
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if math.isfinite(v):
            return v
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if obj is None or isinstance(obj, str):
        return obj
    if dataclasses.is_dataclass(obj):
        return jsonable(dataclasses.asdict(obj))
    return str(obj)


def as_float(v: Any) -> float:
    """Inverse of :func:`jsonable` for one number."""
    if isinstance(v, str):
        return {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}.get(v, math.nan)
    return float(v)


def dumps(obj: Any, indent: str = "") -> str:
    """JSON text, one key per line, lists of numbers or strings kept on one line."""
    inner = indent + " "
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(obj, list) and obj and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(inner + dumps(v, inner) for v in obj) + "\n" + indent + "]"
    return json.dumps(obj, allow_nan=False)
