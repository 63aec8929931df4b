"""Safety evidence as a versioned JSON report plus a NumPy sidecar (schema ``verifier.evidence/1``).

The JSON says what was asked (model and property files with their SHA-256, or an embedded
property), in which environment and with which settings, what the answer was and why; bulk
arrays (leaf boxes, split lists, α/β multipliers, embedded properties) go to ``NAME.npz`` next
to ``NAME.json``, whose SHA-256 the JSON records. ``SCHEMA.md`` in this folder documents
every field. ``verifier check`` re-derives the claim from these files; ``verifier report``
renders them for a reviewer.
"""
from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from verifier.errors import InputError

SCHEMA = "verifier.evidence/1"
Arrays = dict[str, np.ndarray]


# ---- small helpers --------------------------------------------------------------------------
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


def environment(device: str = "cpu") -> dict[str, Any]:
    """Tool, interpreter, library versions and machine: what can change a result."""
    import onnxruntime
    import torch

    import verifier

    return {"tool": "verifier", "version": verifier.__version__, "python": sys.version.split()[0],
            "platform": platform.platform(), "machine": platform.machine(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "torch_threads": torch.get_num_threads(), "device": str(device)}


# ---- the question ---------------------------------------------------------------------------
def property_summary(prop) -> dict[str, Any]:
    """Counts of cases, disjuncts and rows, and the input box of each case (all ranges when the
    input has at most 32 entries, else statistics of the widths)."""
    cases = []
    for case in prop.cases:
        lo, hi = case.region.lower, case.region.upper
        width = hi - lo
        entry = {"disjuncts": len(case.unsafe), "rows": [int(c.C.shape[0]) for c in case.unsafe],
                 "input_min": float(lo.min()), "input_max": float(hi.max()),
                 "width_min": float(width.min()), "width_max": float(width.max()),
                 "width_mean": float(width.mean()), "fixed_inputs": int((width == 0).sum()),
                 "l2_radius": case.region.l2_radius}
        if lo.size <= 32:
            entry["ranges"] = [[float(a), float(b)] for a, b in zip(lo, hi)]
        cases.append(entry)
    return {"n_inputs": prop.n_inputs, "n_outputs": prop.n_outputs, "n_cases": len(prop.cases),
            "cases": cases, "meta": jsonable(prop.meta)}


def embed_property(prop, arrays: Arrays) -> dict[str, Any]:
    """Store a property that has no file (a robustness query, say) in the sidecar."""
    layout = []
    for i, case in enumerate(prop.cases):
        r = case.region
        arrays[f"property.{i}.lower"], arrays[f"property.{i}.upper"] = r.lower, r.upper
        if r.l2_center is not None:
            arrays[f"property.{i}.l2_center"] = r.l2_center
        for k, conj in enumerate(case.unsafe):
            arrays[f"property.{i}.{k}.C"], arrays[f"property.{i}.{k}.d"] = conj.C, conj.d
        layout.append({"disjuncts": len(case.unsafe), "l2_radius": r.l2_radius})
    return {"kind": "embedded", "source": prop.source, "cases": layout,
            "n_inputs": prop.n_inputs, "n_outputs": prop.n_outputs}


def property_entry(prop, property_path, arrays: Arrays) -> dict[str, Any]:
    """The property: its file (path, SHA-256) or, without one, embedded in the sidecar."""
    entry = {"kind": "vnnlib", **file_entry(property_path)} if property_path else embed_property(prop, arrays)
    entry["summary"] = property_summary(prop)
    return entry


# ---- the answer -----------------------------------------------------------------------------
def counterexample_section(cex) -> dict[str, Any]:
    """The confirmed counterexample: float32 input (shape and flat values), onnxruntime output."""
    x = np.asarray(cex.x, dtype=np.float32)
    return {"kind": "counterexample", "case": int(cex.case_index), "disjunct": int(cex.disjunct_index),
            "margin": jsonable(cex.margin), "confirmed_by": cex.confirmed_by,
            "input_shape": list(x.shape), "x": jsonable(x.reshape(-1).astype(np.float64)),
            "y": jsonable(np.asarray(cex.y, dtype=np.float64).reshape(-1))}


def _leaf_kind(leaf) -> str:
    if leaf.splits:
        return "split" if leaf.lower is None else "mixed"
    return "box" if leaf.lower is not None else "region"


def _signature(leaf) -> tuple:
    mult = leaf.multipliers or {}
    shapes = tuple((kind, name, tuple(np.shape(v))) for kind in ("alpha", "beta")
                   for name, v in sorted((mult.get(kind) or {}).items()))
    return leaf.case, leaf.method, _leaf_kind(leaf), shapes


def proof_section(leaves: list, arrays: Arrays) -> dict[str, Any]:
    """Leaves grouped by (case, method, kind, multiplier shapes); each group's arrays stacked in
    the sidecar under the prefix ``g<i>.``."""
    groups: dict[tuple, list] = {}
    for leaf in leaves:
        groups.setdefault(_signature(leaf), []).append(leaf)
    out = []
    for gi, (sig, members) in enumerate(groups.items()):
        case, method, kind, _ = sig
        p = f"g{gi}."
        bounds = np.array([float(lf.bound) for lf in members], dtype=np.float64)
        arrays[p + "bound"] = bounds
        entry = {"case": int(case), "method": method, "kind": kind, "count": len(members), "prefix": p,
                 "bound_min": jsonable(bounds.min()), "bound_max": jsonable(bounds.max())}
        if kind in ("box", "mixed"):
            arrays[p + "lower"] = np.stack([np.asarray(lf.lower, np.float64).reshape(-1) for lf in members])
            arrays[p + "upper"] = np.stack([np.asarray(lf.upper, np.float64).reshape(-1) for lf in members])
            if all(lf.path for lf in members):
                depth = max(len(lf.path) for lf in members)
                arrays[p + "path"] = np.array([list(lf.path) + [-1] * (depth - len(lf.path)) for lf in members],
                                              dtype=np.int64)
                entry["path"] = True
        if kind in ("split", "mixed"):
            entry["split_nodes"] = _store_splits(members, arrays, p)
        for mk in ("alpha", "beta"):
            names = sorted(((members[0].multipliers or {}).get(mk) or {}).keys())
            entry[mk] = names
            for j, name in enumerate(names):
                arrays[f"{p}{mk}.{j}"] = np.stack([np.asarray(lf.multipliers[mk][name], np.float64)
                                                   for lf in members])
        out.append(entry)
    worst = min((float(lf.bound) for lf in leaves), default=math.inf)
    return {"kind": "proof", "n_leaves": len(leaves), "worst_leaf_bound": jsonable(worst), "groups": out}


def _store_splits(members: list, arrays: Arrays, p: str) -> list[str]:
    """Split lists as padded ``(L, S)`` arrays: node index (-1 pads), flat index, sign."""
    names = sorted({s[0] for lf in members for s in lf.splits})
    pos = {n: i for i, n in enumerate(names)}
    width = max(len(lf.splits) for lf in members)
    node = np.full((len(members), width), -1, dtype=np.int32)
    index = np.zeros((len(members), width), dtype=np.int64)
    sign = np.zeros((len(members), width), dtype=np.int8)
    for r, lf in enumerate(members):
        for c, (name, idx, s) in enumerate(lf.splits):
            node[r, c], index[r, c], sign[r, c] = pos[name], int(idx), int(s)
    arrays[p + "split_node"], arrays[p + "split_index"], arrays[p + "split_sign"] = node, index, sign
    return names


def _header(kind: str, model_path, graph, config, started, finished, device: str) -> dict[str, Any]:
    model = file_entry(model_path)
    if graph is not None:
        model["summary"] = jsonable(graph.summary())
    return {"schema": SCHEMA, "kind": kind, "environment": environment(device), "model": model,
            "settings": jsonable(config) if config is not None else {},
            "started": iso_time(started), "finished": iso_time(finished)}


def build_report(result, model_path, prop, config, graph=None, property_path=None,
                 started: float | None = None, finished: float | None = None) -> tuple[dict, Arrays]:
    """The report of a :func:`verifier.verify` run and its sidecar arrays.

    ``started``/``finished``: epoch seconds. ``property_path`` None embeds ``prop``.
    """
    arrays: Arrays = {}
    device = getattr(config, "device", "cpu")
    report = _header("verify", model_path, graph, config, started, finished, device)
    report["property"] = property_entry(prop, property_path, arrays)
    report.update(verdict=result.verdict, status=result.status.value, reason=result.reason,
                  stats=jsonable(result.stats), trail=jsonable(result.trail), bounds=jsonable(result.bounds))
    if result.counterexample is not None:
        report["evidence"] = counterexample_section(result.counterexample)
        ci = result.counterexample.case_index
        if 0 <= ci < len(prop.cases):  # the region around the witness, for the human report
            region = prop.cases[ci].region
            arrays["cex.region_lower"], arrays["cex.region_upper"] = region.lower, region.upper
    elif result.certificate is not None and "leaves" in result.certificate.data:
        report["evidence"] = {"certificate": result.certificate.kind, "method": result.certificate.method,
                              **proof_section(result.certificate.data["leaves"], arrays)}
    else:
        report["evidence"] = {"kind": "none"}
    return report, arrays


def build_report_smoothing(model_path, result=None, rows: list[dict] | None = None, settings=None,
                           graph=None, started: float | None = None, finished: float | None = None,
                           device: str = "cpu") -> tuple[dict, Arrays]:
    """A randomized-smoothing report: one :class:`SmoothingResult` (``result``) or the rows of a
    data-set run (``rows``, as written by ``verifier certify --data``); probabilistic, about g."""
    report = _header("smoothing", model_path, graph, settings, started, finished, device)
    section: dict[str, Any] = {"guarantee": "probabilistic", "classifier": "smoothed classifier g, not f"}
    if result is not None:
        data = dict(result.certificate.data)
        section["single"] = {
            "prediction": int(result.prediction), "radius": float(result.radius),
            "pA_lower": float(result.pA_lower), "counts": jsonable(result.counts),
            "selection_counts": jsonable(result.selection_counts), "sigma": data.get("sigma"),
            "n0": data.get("n0"), "n": data.get("n"), "alpha": data.get("alpha"), "seed": data.get("seed"),
            "certificate": result.certificate.kind, "statement": data.get("statement", ""),
            "reason": result.reason, "stats": jsonable(result.stats)}
    if rows is not None:
        section["dataset"] = {"rows": jsonable([dict(r) for r in rows])}
    report["smoothing"] = section
    report.update(verdict="probabilistic", status="certified" if result is not None and result.prediction >= 0
                  else "see rows", reason="randomized smoothing (Cohen et al.)", trail=[])
    return report, {}


def build_report_reach(model_path, reach: dict, graph=None, config=None, started: float | None = None,
                       finished: float | None = None, device: str = "cpu") -> tuple[dict, Arrays]:
    """A reachability report from plain values: ``reach`` holds ``objective``, ``tolerance``,
    ``relative``, ``lower``/``upper`` (the input box, flat), ``lipschitz``, ``time``, ``boxes`` and
    ``min``/``max``, each with ``lower``, ``upper``, ``witness`` (flat), ``witness_value``,
    ``converged`` and ``history`` ((seconds, lower, upper) rows); optionally the objective as
    rows ``objective_C`` ``(R, n_outputs)``, ``objective_d`` ``(R,)`` and ``objective_kind``
    (``min``/``max`` over rows), which lets ``verifier check`` re-evaluate the witnesses."""
    arrays: Arrays = {"reach.lower": np.asarray(reach["lower"], np.float64).reshape(-1),
                      "reach.upper": np.asarray(reach["upper"], np.float64).reshape(-1)}
    if reach.get("objective_C") is not None:
        arrays["reach.C"] = np.atleast_2d(np.asarray(reach["objective_C"], np.float64))
        arrays["reach.d"] = np.asarray(reach["objective_d"], np.float64).reshape(-1)
    report = _header("reach", model_path, graph, config, started, finished, device)
    section = {k: jsonable(reach.get(k)) for k in ("objective", "objective_kind", "tolerance", "relative",
                                                   "lipschitz", "time", "boxes")}
    for end in ("min", "max"):
        e = dict(reach[end])
        w = e.get("witness")
        e["witness"] = None if w is None else jsonable(np.asarray(w, np.float32).reshape(-1).astype(np.float64))
        section[end] = jsonable(e)
    report["reach"] = section
    report.update(verdict="range", status="converged" if section["min"].get("converged") and
                  section["max"].get("converged") else "bounds", reason="guaranteed output range",
                  stats={"time": section["time"]}, trail=[])
    return report, arrays


# ---- files ----------------------------------------------------------------------------------
def sidecar_path(json_path: str | os.PathLike) -> Path:
    """``NAME.npz`` next to ``NAME.json`` (``NAME.EXT.npz`` for other suffixes)."""
    p = Path(json_path)
    return p.with_suffix(".npz") if p.suffix == ".json" else p.with_name(p.name + ".npz")


def write_report(path: str | os.PathLike, report: dict, arrays: Arrays) -> Path:
    """Write the sidecar (when there are arrays) and then the JSON, each atomically."""
    from verifier.resultfile import write_atomic

    path = Path(path)
    report = dict(report)
    if arrays:
        side = sidecar_path(path)
        side.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{side.name}.", suffix=".npz", dir=side.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, side)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        report["sidecar"] = {"path": side.name, "sha256": sha256_file(side), "arrays": len(arrays)}
    write_atomic(path, dumps(jsonable(report)) + "\n")
    return path


def dumps(obj: Any, indent: str = "") -> str:
    """JSON text, one key per line, lists of numbers or strings kept on one line."""
    inner = indent + " "
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(obj, list) and obj and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(inner + dumps(v, inner) for v in obj) + "\n" + indent + "]"
    return json.dumps(obj, allow_nan=False)


def write_verify_report(path, result, model_path, property_path, config, graph, prop,
                        started: float, finished: float) -> Path:
    """Build and write the report of one verification run (see :func:`build_report`)."""
    report, arrays = build_report(result, model_path, prop, config, graph, property_path, started, finished)
    return write_report(path, report, arrays)


def report_name(onnx: str, vnnlib: str) -> str:
    """File name of a bench row's report: ``<onnx stem>__<vnnlib stem>.json`` (path separators
    and other unsafe characters become ``_``)."""
    import re

    def stem(p: str) -> str:
        name = str(Path(p).with_suffix("")) if p.endswith((".onnx", ".vnnlib")) else p
        return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "x"

    return f"{stem(onnx)}__{stem(vnnlib)}.json"


def write_bench_report(folder, bench_dir, onnx: str, vnnlib: str, result, config, graph, prop,
                       started: float) -> str:
    """Write one bench row's report into ``folder``; returns ``""`` or a note for the row's
    reason when the report could not be written (the verdict stands either way)."""
    import time

    from verifier.errors import VerifierError

    path = Path(folder) / report_name(onnx, vnnlib)
    try:
        write_verify_report(path, result, Path(bench_dir) / onnx, Path(bench_dir) / vnnlib, config, graph, prop,
                            started, time.time())
    except (OSError, VerifierError) as e:
        return f" (report not written: {getattr(e, 'strerror', None) or e})"
    return ""


def load_report(path: str | os.PathLike) -> dict:
    """The JSON of a report; :class:`InputError` when it is not a report of this schema."""
    try:
        report = json.loads(Path(path).read_text())
    except OSError as e:
        raise InputError(f"cannot read report: {e.strerror or type(e).__name__}", path=str(path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"report is not JSON ({e})", path=str(path)) from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        found = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise InputError(f"not a {SCHEMA} report (schema: {found!r})", path=str(path))
    return report


def load_sidecar(report_path: str | os.PathLike, report: dict) -> Arrays | None:
    """The sidecar's arrays (no hash check here), or None when the report has none."""
    side = report.get("sidecar")
    if not side:
        return None
    p = Path(report_path).parent / side["path"]
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"cannot read the sidecar ({type(e).__name__}: {e})", path=str(p)) from None
