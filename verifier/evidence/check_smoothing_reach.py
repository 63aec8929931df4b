"""Checks of smoothing and reachability reports for :mod:`verifier.evidence.check`.

Smoothing: the Clopper–Pearson bound and the radius recomputed from the recorded counts (single
input) or from ``pA_lower`` (data-set rows); the sampling itself is not repeated. Reachability:
the witnesses lie in the region's box and, re-run with onnxruntime, give objective values within
the claimed range.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from verifier.evidence.check import CheckOutcome, ort_run, ort_session
from verifier.evidence.report import as_float


def check_smoothing(report: dict, out: CheckOutcome) -> None:
    """Recompute the Clopper–Pearson bound and the radius from the counts (single input) and
    the radius from ``pA_lower`` (data-set rows). The sampling itself is not repeated."""
    from scipy.stats import beta, norm

    sec = report["smoothing"]
    one = sec.get("single")
    if one:
        pred, counts = int(one["prediction"]), [int(c) for c in one["counts"]]
        n, alpha, sigma = int(one["n"]), float(one["alpha"]), float(one["sigma"])
        if pred < 0:
            out.add("abstention claims nothing", float(one["radius"]) == 0.0, one.get("reason", ""))
        else:
            k = counts[pred]
            pa = float(beta.ppf(alpha, k, n - k + 1)) if k > 0 else 0.0
            sel = one.get("selection_counts")
            out.add("counts add up to n", sum(counts) == n, f"{sum(counts)} of {n}")
            out.add("prediction is the top selection count", sel is None or int(np.argmax(sel)) == pred)
            out.add("pA lower bound recomputed (Clopper-Pearson)", abs(pa - float(one["pA_lower"])) <= 1e-9
                    and pa >= 0.5, f"{pa:.9g} (recorded {one['pA_lower']})")
            radius = sigma * float(norm.ppf(pa)) if pa >= 0.5 else 0.0
            out.add("radius = sigma * inverse normal CDF(pA)", float(one["radius"]) <= radius * (1 + 1e-9) + 1e-12,
                    f"{radius:.9g} (recorded {one['radius']})")
    rows = (sec.get("dataset") or {}).get("rows") or []
    if rows:
        bad = [r["index"] for r in rows if not _row_consistent(r, norm)]
        out.add("data-set rows: radius and correctness consistent", not bad, f"{len(rows)} rows; bad: {bad[:5]}")
    if not one and not rows:
        out.add("smoothing report has results", False)


def _row_consistent(r: dict, norm) -> bool:
    pred, pa, sigma, radius = int(r["prediction"]), float(r["pA_lower"]), float(r["sigma"]), float(r["radius"])
    expected = sigma * float(norm.ppf(pa)) if pred >= 0 and pa >= 0.5 else 0.0
    return radius <= expected * (1 + 1e-9) + 1e-12 and (r["correct"] == "1") == (pred == int(r["label"]))


def check_reach(report: dict, arrays, model_path: Path, out: CheckOutcome) -> None:
    """Witnesses inside the box, re-run with onnxruntime; the objective (when recorded as rows)
    at each witness must lie within the claimed range."""
    sec = report["reach"]
    if not out.add("reach report has its region", arrays is not None and "reach.lower" in arrays):
        return
    lo, hi = arrays["reach.lower"], arrays["reach.upper"]
    sess, shape = ort_session(model_path)
    for end in ("min", "max"):
        e = sec[end]
        lower, upper = as_float(e["lower"]), as_float(e["upper"])
        out.add(f"{end}: lower <= upper", lower <= upper, f"[{lower:.6g}, {upper:.6g}]")
        if e.get("witness") is None:
            continue
        w = np.array([as_float(v) for v in e["witness"]])
        out.add(f"{end} witness is a float32 point of the box", w.shape == lo.shape and bool(
            np.all(w.astype(np.float32) == w) and np.all(w >= lo) and np.all(w <= hi)))
        if "reach.C" in arrays:
            y = ort_run(sess, shape, w[None])[0]
            vals = arrays["reach.C"] @ y + arrays["reach.d"]
            o = float(vals.min() if sec.get("objective_kind") == "min" else vals.max())
            tol = 1e-4 * (1 + abs(o))
            inside = (o >= lower - tol) if end == "min" else (o <= upper + tol)
            out.add(f"{end} witness value (onnxruntime) consistent with the range", inside,
                    f"o(witness) = {o:.6g}, recorded {e.get('witness_value')}")
