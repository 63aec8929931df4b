"""Local robustness queries built directly as :class:`Property` objects.

The question "does every input within ``epsilon`` of ``center`` keep ``label`` on top?" has
the counterexample set ``OR_{j != label} (y_label - y_j <= 0)``: an output where some other
class reaches the label's score (a tie counts as a violation).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from .property import Case, Conjunction, InputRegion, Property

_NORMS = {"inf": "inf", "linf": "inf", "2": "2", "l2": "2"}


def _norm_name(norm, source: str) -> str:
    """``"inf"`` or ``"2"`` from the accepted spellings (also ``math.inf`` and ``2``)."""
    if isinstance(norm, (int, float)) and not isinstance(norm, bool):
        key = "inf" if norm == math.inf else "2" if norm == 2 else None
    else:
        key = _NORMS.get(str(norm).strip().lower())
    if key is None:
        raise InputError(f"unknown norm {norm!r}; use 'inf' or '2'", path=source)
    return key


def _clip_bound(value, shape: tuple[int, ...], name: str, source: str) -> np.ndarray | None:
    """``lower``/``upper`` broadcast to the flat input shape (None stays None)."""
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)
    if arr.size != 1 and arr.size != shape[0]:
        raise InputError(f"{name} has {arr.size} values, the center has {shape[0]}", path=source)
    arr = np.broadcast_to(arr.reshape(-1), shape).astype(np.float64)
    if np.isnan(arr).any():
        raise InputError(f"{name} contains NaN", path=source)
    return arr


def _check_label(label, n_outputs, source: str) -> tuple[int, int]:
    """Validate the output count and the label index."""
    if isinstance(n_outputs, bool) or not isinstance(n_outputs, (int, np.integer)):
        raise InputError(f"n_outputs must be an integer, got {n_outputs!r}", path=source)
    if n_outputs < 2:
        raise InputError(f"a robustness query needs at least 2 outputs, got {n_outputs}",
                         path=source)
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise InputError(f"label must be an integer, got {label!r}", path=source)
    if not 0 <= label < n_outputs:
        raise InputError(f"label {label} is out of range for {n_outputs} outputs", path=source)
    return int(label), int(n_outputs)


def _box(center: np.ndarray, eps: float, lower, upper, source: str):
    """The box ``center ± eps`` clipped to ``[lower, upper]``; refuse an empty result."""
    lo_clip = _clip_bound(lower, center.shape, "lower", source)
    hi_clip = _clip_bound(upper, center.shape, "upper", source)
    lo, hi = center - eps, center + eps
    if lo_clip is not None:
        lo = np.maximum(lo, lo_clip)
    if hi_clip is not None:
        hi = np.minimum(hi, hi_clip)
    empty = np.flatnonzero(lo > hi)
    if empty.size:
        i = int(empty[0])
        raise InputError(f"the epsilon-ball around the center misses [lower, upper] at input "
                         f"{i} ({lo[i]!r} > {hi[i]!r})", path=source)
    return lo, hi


def robustness_property(center, epsilon: float, label: int, n_outputs: int, norm="inf",
                        lower=None, upper=None, source: str = "robustness query") -> Property:
    """The property "some input near ``center`` does not keep ``label`` strictly on top".

    ``center`` may have any shape; it is flattened row-major. With ``norm="inf"`` the input
    region is the box ``center ± epsilon``; with ``norm="2"`` it is the L2 ball of radius
    ``epsilon`` (kept exactly as ``l2_center``/``l2_radius``) inside that box. Either box is
    clipped to ``[lower, upper]`` (scalars or arrays) when given.
    """
    c = np.array(center, dtype=np.float64).reshape(-1)
    if c.size == 0 or not np.isfinite(c).all():
        raise InputError("the center must be a non-empty array of finite values", path=source)
    eps = float(epsilon)
    if not math.isfinite(eps) or eps < 0:
        raise InputError(f"epsilon must be finite and >= 0, got {epsilon!r}", path=source)
    kind = _norm_name(norm, source)
    label, n_outputs = _check_label(label, n_outputs, source)
    lo, hi = _box(c, eps, lower, upper, source)
    if kind == "2" and float(np.linalg.norm(np.clip(c, lo, hi) - c)) > eps:
        raise InputError("the L2 ball around the center misses [lower, upper]", path=source)
    region = InputRegion(lower=lo, upper=hi, l2_center=c if kind == "2" else None,
                         l2_radius=eps if kind == "2" else None)
    others = [j for j in range(n_outputs) if j != label]
    C = np.zeros((len(others), n_outputs), dtype=np.float64)
    C[:, label] = 1.0
    C[np.arange(len(others)), others] = -1.0
    unsafe = tuple(Conjunction(C=C[k:k + 1].copy(), d=np.zeros(1)) for k in range(len(others)))
    meta = {"kind": "robustness", "epsilon": eps, "norm": kind, "label": label}
    return Property(cases=(Case(region=region, unsafe=unsafe),), n_inputs=int(c.size),
                    n_outputs=n_outputs, source=source, meta=meta)
