"""Safety evidence as a versioned JSON report plus a NumPy sidecar (schema ``verifier.evidence/1``).

The JSON says what was asked (model and property files with their SHA-256, or an embedded
property), in which environment and with which settings, what the answer was and why; bulk
arrays (leaf boxes, split lists, α/β multipliers, embedded properties) go to ``NAME.npz`` next
to ``NAME.json``, whose SHA-256 the JSON records. ``SCHEMA.md`` in this folder documents
every field. ``verifier check`` re-derives the claim from these files; ``verifier report``
renders them for a reviewer.

This module builds, writes and loads reports; the plain-value helpers (JSON conversion,
hashes, time stamps) live in :mod:`verifier.evidence.report_json` and the question and
evidence sections in :mod:`verifier.evidence.report_sections`, re-exported here.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from verifier.errors import InputError
from verifier.evidence.report_json import dumps, file_entry, iso_time, jsonable, sha256_file
from verifier.evidence.report_json import as_float  # noqa: F401  (re-exported for the checker and the renderer)
from verifier.evidence.report_sections import (Arrays, counterexample_section, layers_section, proof_section,
                                               property_entry)
from verifier.evidence.report_sections import embed_property, property_summary  # noqa: F401  (re-exported)

SCHEMA = "verifier.evidence/1"


def environment(device: str = "cpu") -> dict[str, Any]:
    """Tool, interpreter, library versions and machine: what can change a result."""
    import onnxruntime
    import torch

    import verifier

    return {"tool": "verifier", "version": verifier.__version__, "python": sys.version.split()[0],
            "platform": platform.platform(), "machine": platform.machine(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "torch_threads": torch.get_num_threads(), "device": str(device)}


def _header(kind: str, model_path, graph, config, started, finished, device: str) -> dict[str, Any]:
    """The fields every report starts with: schema, kind, environment, model, settings, times."""
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
                              **proof_section(result.certificate.data["leaves"], arrays),
                              **layers_section(result.certificate.data.get("layers") or {}, arrays)}
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
