"""Verdicts and what backs them: Status, Counterexample, Certificate, Result."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Status(str, enum.Enum):
    """Verification outcome. VNN-LIB words: verified = ``unsat``, falsified = ``sat``."""

    VERIFIED = "verified"
    FALSIFIED = "falsified"
    UNKNOWN = "unknown"
    TIMEOUT = "timeout"
    ERROR = "error"

    @property
    def vnnlib(self) -> str:
        """The word written in a VNN-COMP result file."""
        return {"verified": "unsat", "falsified": "sat"}.get(self.value, self.value)


@dataclass(frozen=True)
class Counterexample:
    """An input that violates the property, confirmed by onnxruntime on the original file.

    ``x`` has the model's per-sample input shape, float32 (the exact values that were run);
    ``y`` is onnxruntime's output on it, flattened.
    """

    x: np.ndarray
    y: np.ndarray
    case_index: int
    disjunct_index: int
    margin: float  # max over rows of (C y - d); <= 0: the unsafe conjunction holds
    confirmed_by: str = "onnxruntime"


@dataclass(frozen=True, eq=False)
class Leaf:
    """One closed piece of an ``unsat`` proof.

    The piece is the case's region intersected with the box ``[lower, upper]`` (flat
    ``(n_inputs,)``; ``None`` = the whole region) and with the neuron splits
    ``(activation node, flat index, +1 active / -1 inactive)``. ``bound`` is the lower bound
    of the weakest unsafe disjunct's best row ``C y - d`` there (> 0 closes it).
    """

    case: int
    method: str
    bound: float
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    splits: tuple[tuple[str, int, int], ...] = ()
    multipliers: dict[str, Any] | None = None  # {"alpha": {node: (R, n)}, "beta": {node: (R, n)}}
    path: tuple[int, ...] = ()  # input dims halved at their midpoints, root first, to reach the box


@dataclass(frozen=True)
class Certificate:
    """What backs a verdict that is not a counterexample.

    kind: ``sound`` (a proof), ``probabilistic`` (holds with the stated confidence) or
    ``estimate`` (no guarantee). ``data`` holds the engine-specific content.
    """

    kind: str
    method: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """The answer of an engine or of :func:`verifier.verify`."""

    status: Status
    reason: str = ""
    counterexample: Counterexample | None = None
    certificate: Certificate | None = None
    bounds: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    trail: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.status is Status.FALSIFIED and self.counterexample is None:
            raise ValueError("a falsified result needs a confirmed counterexample")

    @property
    def verdict(self) -> str:
        """The VNN-COMP word: sat, unsat, unknown, timeout or error."""
        return self.status.vnnlib
