"""Properties: an OR over (input region, unsafe set) cases.

VNN-LIB semantics: a property describes the *counterexample*. It is violated (``sat``) when
some case has an input ``x`` in its region whose output ``y`` lies in its unsafe set, where
the unsafe set is an OR of conjunctions ``C_k · y <= d_k``. It holds (``unsat``) otherwise.

Inputs and outputs are indexed flat, in the row-major order of the ONNX tensors.
Arrays are numpy float64.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class InputRegion:
    """A box ``lower <= x <= upper`` (shape ``(n_inputs,)``), optionally intersected with an
    L2 ball ``||x - l2_center||_2 <= l2_radius``."""

    lower: np.ndarray
    upper: np.ndarray
    l2_center: np.ndarray | None = None
    l2_radius: float | None = None

    @property
    def n_inputs(self) -> int:
        return int(self.lower.shape[0])

    def contains(self, x: np.ndarray, tol: float = 0.0) -> bool:
        """Whether flat ``x`` (shape ``(n_inputs,)``) lies in the region."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        inside = bool(np.all(x >= self.lower - tol) and np.all(x <= self.upper + tol))
        if inside and self.l2_center is not None:
            inside = float(np.linalg.norm(x - self.l2_center)) <= self.l2_radius + tol
        return inside


@dataclass(frozen=True, eq=False)
class Conjunction:
    """The polytope ``C · y <= d``; ``C`` has shape ``(m, n_outputs)``, ``d`` shape ``(m,)``."""

    C: np.ndarray
    d: np.ndarray

    def margin(self, y: np.ndarray) -> float:
        """``max_i (C y - d)_i``: <= 0 exactly when flat ``y`` is in the (unsafe) set."""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if self.C.shape[0] == 0:
            return -np.inf
        return float(np.max(self.C @ y - self.d))


@dataclass(frozen=True, eq=False)
class Case:
    """One input region with the unsafe set ``OR_k (C_k · y <= d_k)`` that goes with it."""

    region: InputRegion
    unsafe: tuple[Conjunction, ...]


@dataclass(frozen=True, eq=False)
class Property:
    """A verification question: is there a case whose region maps into its unsafe set?"""

    cases: tuple[Case, ...]
    n_inputs: int
    n_outputs: int
    source: str = "<property>"
    meta: dict = field(default_factory=dict)

    def violated_by(self, x: np.ndarray, y: np.ndarray) -> tuple[int, int, float] | None:
        """The first (case, disjunct, margin) that flat ``x``, ``y`` fall into exactly, else None."""
        for ci, case in enumerate(self.cases):
            if not case.region.contains(x):
                continue
            for di, conj in enumerate(case.unsafe):
                v = conj.margin(y)
                if v <= 0.0:
                    return ci, di, v
        return None
