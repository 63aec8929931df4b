"""Objectives of the reachability search and their parser.

An :class:`Objective` is ``o(y) = kind_r (C[r] · y + d[r])`` over the flat outputs ``y``,
``kind`` ``min`` or ``max`` over the rows ``r`` (one row: a linear form). :func:`parse_objective`
reads a linear form (``"Y_0"``, ``"Y_1 - Y_0"``, ``"2*Y_3 + Y_1 - 0.5"``), ``max(...)``/``min(...)``
of linear forms or of all outputs (``"max(Y)"``), or a coefficient vector ``c`` (``o = c·y``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from verifier.errors import InputError


@dataclass(frozen=True)
class Objective:
    """``o(y) = kind_r (C[r] · y + d[r])`` with kind ``min`` or ``max``; one row is linear."""

    kind: str
    C: torch.Tensor  # (R, n_outputs) float64
    d: torch.Tensor  # (R,)
    text: str

    def negated(self) -> "Objective":
        return Objective("max" if self.kind == "min" else "min", -self.C, -self.d, f"-({self.text})")

    def rows(self, y: torch.Tensor) -> torch.Tensor:
        """Row values ``(..., R)`` for outputs ``(..., n_outputs)``."""
        return y @ self.C.to(y).T + self.d.to(y)

    def reduce(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.amin(-1) if self.kind == "min" else rows.amax(-1)

    def value(self, y: torch.Tensor) -> torch.Tensor:
        """``o(y)`` ``(...)`` for outputs ``(..., n_outputs)``."""
        return self.reduce(self.rows(y))


_NUM = r"(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
_TERM = re.compile(r"\s*([-+])\s*(?:" + _NUM + r"\s*(\*)?\s*)?(?:Y_(\d+))?(?:\s*\*\s*" + _NUM + r")?\s*")
_CALL = re.compile(r"\s*(max|min)\s*\((.*)\)\s*", re.S)


def parse_objective(spec, n_outputs: int) -> Objective:
    """An :class:`Objective` from a string (see the module doc) or a vector ``(n_outputs,)``."""
    if not isinstance(spec, str):
        c = np.asarray(spec, dtype=np.float64).reshape(-1)
        if c.shape != (n_outputs,) or not np.all(np.isfinite(c)):
            raise InputError(f"objective vector must hold {n_outputs} finite numbers, got shape {list(c.shape)}")
        return Objective("min", torch.as_tensor(c)[None], torch.zeros(1, dtype=torch.float64), "c·y")
    call = _CALL.fullmatch(spec)
    parts = call.group(2).split(",") if call else [spec]
    if call and [p.strip() for p in parts] == ["Y"]:
        C, d = np.eye(n_outputs), np.zeros(n_outputs)
    else:
        rows = [_linear(p, spec, n_outputs) for p in parts]
        C, d = np.stack([r[0] for r in rows]), np.array([r[1] for r in rows])
    return Objective(call.group(1) if call else "min", torch.as_tensor(C), torch.as_tensor(d), spec.strip())


def _linear(text: str, spec: str, n: int) -> tuple[np.ndarray, float]:
    """Coefficients ``(n,)`` and constant of a linear form like ``2*Y_3 - Y_1 + 0.5``."""
    coeffs, const = np.zeros(n), 0.0
    body = text.strip()
    if not body:
        raise InputError(f"objective '{spec}': empty expression (e.g. 'Y_0', 'Y_1 - Y_0', 'max(Y)')")
    skip = int(body[0] not in "+-")  # the sign added in front is not the user's
    body, pos = ("+" * skip) + body, 0
    while pos < len(body):
        m = _TERM.match(body, pos)
        num, star, var, factor = m.groups()[1:] if m else (None,) * 4
        if m is None or (num is None and var is None) or (star and var is None) or (factor and var is None):
            raise InputError(f"objective '{spec}': cannot read '{body[pos + skip * (pos == 0):].strip()[:16]}' (expected terms "
                             "like 2*Y_3, Y_0 or a number, joined by + and -)")
        value = (-1.0 if m.group(1) == "-" else 1.0) * float(num or 1.0) * float(factor or 1.0)
        if not math.isfinite(value):
            raise InputError(f"objective '{spec}': a coefficient is not finite")
        if var is None:
            const += value
        elif int(var) >= n:
            raise InputError(f"objective '{spec}': output Y_{var} out of range (the model has {n} outputs)")
        else:
            coeffs[int(var)] += value
        pos = m.end()
    return coeffs, const
