"""Guaranteed output ranges by branch and bound over input boxes (DeepGO made sound).

Usage::

    from verifier.engines.reach import reach_range, reach_check
    r = reach_range(graph, lower, upper, "Y_1 - Y_0", tolerance=1e-3, timeout=60)
    # r.min.lower <= min o <= r.min.upper = o(r.min.witness)
    # r.max.lower = o(r.max.witness) <= max o <= r.max.upper
    res = reach_check(graph, (lower, upper), "Y_0", threshold=3.99, timeout=60)  # a Result

Objectives: a linear form of the flat outputs (``"Y_0"``, ``"Y_1 - Y_0"``, ``"2*Y_3 + Y_1 - 0.5"``),
``max(...)``/``min(...)`` of linear forms or of all outputs (``"max(Y)"``), or a coefficient
vector ``c`` (``o = c·y``). The maximum of ``o`` is found as the minimum of ``-o``.

Each box gets a lower bound of ``o``: per row the larger of the CROWN bound and the
mean-value bound from a sound interval Jacobian (:mod:`verifier.engines.lipschitz`) anchored
at the box's minimising corner, then min/max over rows. The best value evaluated so far (box
anchors and a few signed-gradient steps, all at float32 inputs inside the region) is the
upper bound. The K boxes with the lowest bounds are split along the coordinate with the
largest ``h_i·width_i`` and their children bounded as one batch; boxes whose bound is within
the tolerance of the best value retire. The search stops when ``best - lower <= tolerance``
or at the deadline (anytime: the bounds hold whenever it stops).

Tolerance: absolute, or relative (``relative=True``): ``tolerance × w`` with ``w`` the width
observed so far (best maximum found − best minimum found). ``w`` never exceeds the true width,
so a converged relative run is at least as precise as asked.

Semantics: bounds hold for the network in real arithmetic (evaluated in float64); witnesses
are float32 inputs inside the region, re-run with onnxruntime (``witness_value``).
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch

from verifier.engines.onnx_runner import OnnxRunner
from verifier.engines.reach_objective import Objective, parse_objective
from verifier.engines.reach_search import BoxSearch, SearchContext
from verifier.engines.reach_types import Extremum, ReachConfig, ReachResult
from verifier.engines.reach_types import reach_config  # noqa: F401  (re-exported: verifier.api imports it here)
from verifier.errors import InputError, UnsupportedError
from verifier.ir.graph import Graph
from verifier.result import Certificate, Counterexample, Result, Status
from verifier.spec.property import InputRegion


def reach_range(graph: Graph, lower, upper, objective, tolerance: float = 1e-3, timeout: float = 60.0,
                relative: bool = False, config: ReachConfig | None = None,
                progress: Callable[[str], None] | None = None) -> ReachResult:
    """Guaranteed range ``[min, max]`` of ``objective`` over the box ``[lower, upper]``.

    ``lower``/``upper``: ``n_inputs`` numbers (flat or in the model's input shape). Each end
    is searched until its gap is within the tolerance (see the module doc) or the deadline;
    the two ends share the time, the one with the larger gap going first.
    """
    started = time.monotonic()
    deadline = started + float(timeout)
    cfg = config or ReachConfig()
    obj = parse_objective(objective, graph.n_outputs)
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise InputError(f"tolerance must be a finite number >= 0, got {tolerance}")
    ctx = SearchContext(graph, *_root_box(graph, lower, upper), cfg, deadline)
    low, high = BoxSearch(ctx, obj, started), BoxSearch(ctx, obj.negated(), started)

    def tol() -> float:
        if not relative:
            return tolerance
        width = -high.best_value - low.best_value
        scale = max(abs(low.best_value), abs(high.best_value), 1.0)
        return tolerance * max(width, 1e-9 * scale)

    say = _throttled(progress)
    while time.monotonic() < deadline:
        live = [s for s in (low, high) if not s.finished(tol())]
        if not live:
            break
        search = max(live, key=lambda s: s.gap)
        search.step(lambda: search.best_value - tol())
        say(f"min in [{low.lower:.6g}, {low.best_value:.6g}]  max in [{-high.best_value:.6g}, "
            f"{-high.lower:.6g}]  open boxes {low.n_open + high.n_open}")
    runner = OnnxRunner(graph) if graph.onnx_path else None
    t = tol()
    return ReachResult(_extremum(low, obj, runner, graph, t, False), _extremum(high, obj, runner, graph, t, True),
                       max(low.lipschitz, high.lipschitz), obj.text, t, relative,
                       time.monotonic() - started, low.bounded + high.bounded)


def _extremum(search: BoxSearch, obj: Objective, runner: OnnxRunner | None, graph: Graph, tol: float,
              negate: bool) -> Extremum:
    """One end of the range in the user's sign, with the witness re-run by onnxruntime (no
    witness, and an infinite inner end, when the region holds no float32 point)."""
    witness, value = None, None
    if search.best_x is not None:
        witness = search.best_x.double().cpu().numpy().astype(np.float32)
        if runner is not None:
            value = float(obj.value(torch.as_tensor(runner.run(witness[None])))[0])
        witness = witness.reshape(graph.input_shape)
    lo, up = search.lower, search.best_value
    history = [(t, -u, -l) for t, l, u in search.history] if negate else list(search.history)
    return Extremum(-up if negate else lo, -lo if negate else up, witness, value, search.gap <= tol, history)


def reach_check(graph: Graph, region, objective, threshold: float, timeout: float = 60.0,
                config: ReachConfig | None = None, progress: Callable[[str], None] | None = None) -> Result:
    """Does ``o <= threshold`` hold on the whole region (an InputRegion box or ``(lower, upper)``)?

    ``verified``: the proven upper bound of ``o`` is at most ``threshold - check_margin``;
    ``falsified``: onnxruntime's ``o`` on a float32 input of the region exceeds ``threshold``;
    else ``unknown`` (or ``timeout``) with the bounds reached.
    """
    started = time.monotonic()
    deadline = started + float(timeout)
    cfg = config or ReachConfig()
    obj = parse_objective(objective, graph.n_outputs)
    if isinstance(region, InputRegion):
        if region.l2_center is not None:
            raise UnsupportedError("reach works on boxes; this region has an L2 ball")
        region = (region.lower, region.upper)
    ctx = SearchContext(graph, *_root_box(graph, *region), cfg, deadline)
    runner = OnnxRunner(graph) if graph.onnx_path else None
    search, goal, tried = BoxSearch(ctx, obj.negated(), started), -float(threshold) + cfg.check_margin, None
    say = _throttled(progress)
    while True:
        bounds = {"max_lower": -search.best_value, "max_upper": -search.lower, "threshold": float(threshold)}
        stats = {"time": time.monotonic() - started, "boxes": search.bounded, "lipschitz": search.lipschitz}
        if search.lower >= goal:
            cert = Certificate("sound", "lipschitz branch and bound", {**bounds, "margin": cfg.check_margin})
            return Result(Status.VERIFIED, "upper bound of the objective below the threshold",
                          certificate=cert, bounds=bounds, stats=stats)
        if search.best_value < -threshold and search.best_x is not tried and runner is not None:
            tried = search.best_x
            cex = _confirm(runner, graph, obj, tried, float(threshold))
            if cex is not None:
                return Result(Status.FALSIFIED, "objective above the threshold (onnxruntime)",
                              counterexample=cex, bounds=bounds, stats=stats)
        if time.monotonic() >= deadline:
            return Result(Status.TIMEOUT, "time limit reached", bounds=bounds, stats=stats)
        if search.finished(-math.inf):
            return Result(Status.UNKNOWN, "search exhausted without proof or confirmed witness",
                          bounds=bounds, stats=stats)
        search.step(lambda: goal)
        say(f"max in [{bounds['max_lower']:.6g}, {bounds['max_upper']:.6g}], threshold {threshold:g}")


def _confirm(runner: OnnxRunner, graph: Graph, obj: Objective, x: torch.Tensor, threshold: float):
    x32 = x.double().cpu().numpy().astype(np.float32)
    y = runner.run(x32[None])[0]
    value = float(obj.value(torch.as_tensor(y)))
    if value <= threshold:
        return None
    return Counterexample(x=x32.reshape(graph.input_shape), y=y, case_index=0, disjunct_index=0,
                          margin=threshold - value)


def _root_box(graph: Graph, lower, upper) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat float64 bounds ``(n_inputs,)`` after checking sizes, finiteness and order."""
    lo = np.asarray(lower, dtype=np.float64).reshape(-1)
    hi = np.asarray(upper, dtype=np.float64).reshape(-1)
    if lo.size != graph.n_inputs or hi.size != graph.n_inputs:
        raise InputError(f"region bounds have {lo.size} and {hi.size} values; the model has "
                         f"{graph.n_inputs} inputs (shape {list(graph.input_shape)})")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise InputError("region bounds must be finite")
    if np.any(lo > hi):
        raise InputError(f"region lower bound exceeds upper bound at input {int(np.argmax(lo > hi))}")
    return torch.as_tensor(lo), torch.as_tensor(hi)


def _throttled(progress: Callable[[str], None] | None, every: float = 2.0) -> Callable[[str], None]:
    """``progress``, called at most once per ``every`` seconds."""
    last = [time.monotonic()]

    def say(message: str) -> None:
        if progress is not None and time.monotonic() - last[0] >= every:
            last[0] = time.monotonic()
            progress(message)

    return say
