"""Settings and result types of the reachability search (:mod:`verifier.engines.reach`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from verifier.errors import InputError


@dataclass(frozen=True)
class ReachConfig:
    """Settings of the reachability search."""

    batch: int = 64               # boxes split per step (children bounded at once: 2×batch)
    step_seconds: float = 0.5     # the batch shrinks when a step takes longer than this
    pgd_starts: int = 32          # random starts of the gradient search on the whole region
    pgd_steps: int = 20
    local_steps: int = 3          # signed-gradient steps inside each child box
    intermediate: str = "crown"   # bounds of the activation inputs: "crown" or "ibp"
    max_boxes: int = 500_000      # open boxes cap; beyond it the search stops unconverged
    check_margin: float = 1e-6    # reach_check proves o <= t only with this much room
    device: str = "cpu"
    seed: int = 0


def reach_config(**settings) -> ReachConfig:
    """A :class:`ReachConfig` with ``settings`` replacing defaults; unknown names are refused."""
    names = {f.name for f in dataclasses.fields(ReachConfig)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise InputError(f"unknown reach setting(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    return ReachConfig(**settings)


@dataclass
class Extremum:
    """One end of the range: ``lower <= extremum <= upper``, attained value at ``witness``.

    ``witness`` has the model's input shape (float32, inside the region); ``witness_value``
    is onnxruntime's ``o`` on it (None without an ONNX file). ``history``: (seconds, lower,
    upper) after each step.
    """

    lower: float
    upper: float
    witness: np.ndarray | None
    witness_value: float | None
    converged: bool
    history: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def gap(self) -> float:
        return self.upper - self.lower


@dataclass
class ReachResult:
    """Guaranteed range of ``objective`` over the region; ``lipschitz``: the ℓ∞-box Lipschitz
    constant of ``o`` on the whole region (sound bound); ``tolerance``: absolute tolerance used."""

    min: Extremum
    max: Extremum
    lipschitz: float
    objective: str
    tolerance: float
    relative: bool
    time: float
    boxes: int
