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

import dataclasses
import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from verifier.bounds.crown import nonlinear_inputs
from verifier.engines.lipschitz import (INTERMEDIATE_METHODS, JacobianBounds, float32_inside, lipschitz_constants,
                                        row_lower_bounds)
from verifier.engines.onnx_runner import OnnxRunner
from verifier.errors import InputError, UnsupportedError
from verifier.ir.graph import Graph
from verifier.result import Certificate, Counterexample, Result, Status
from verifier.spec.property import InputRegion


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


# ---- objectives -----------------------------------------------------------------------------
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


# ---- results -------------------------------------------------------------------------------
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


# ---- the search ----------------------------------------------------------------------------
class _Context:
    """What both searches share: the float64 graph, Jacobian bounder, root box, settings."""

    def __init__(self, graph: Graph, lower: torch.Tensor, upper: torch.Tensor, cfg: ReachConfig,
                 deadline: float):
        if cfg.intermediate not in INTERMEDIATE_METHODS:
            raise InputError(f"unknown intermediate bound method '{cfg.intermediate}' "
                             f"({', '.join(INTERMEDIATE_METHODS)})")
        try:
            device = torch.device(cfg.device)
        except RuntimeError:
            raise InputError(f"unknown device '{cfg.device}' (cpu, cuda, cuda:N)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device '{cfg.device}' requested but CUDA is not available")
        self.graph = graph.to(device=device, dtype=torch.float64)
        self.jacobian = JacobianBounds(self.graph)
        self.cfg, self.deadline = cfg, deadline
        self.lower, self.upper = lower.to(device), upper.to(device)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.tracked = [name for name in nonlinear_inputs(self.graph) if name != self.graph.input_name]


class _Search:
    """Branch and bound for the minimum of one objective over sub-boxes of the root box.

    Open boxes live in ``self.open``: ``lo``/``hi`` ``(M, n)``, bound ``lb`` ``(M,)``, split
    coordinate ``dim`` ``(M,)`` and, for each nonlinear input value, its bounds on the box
    ``(M, 2, *shape)`` (children start from their parent's, which stay valid on a sub-box).
    """

    def __init__(self, ctx: _Context, objective: Objective, started: float):
        self.ctx, self.obj, self.started = ctx, objective, started
        self.batch = min(8, ctx.cfg.batch)
        self.best_value, self.best_x = math.inf, None
        self.floor = math.inf
        self.bounded = 0
        self.open, root_lip = self._bound(ctx.lower[None], ctx.upper[None], None)
        self.lipschitz = float(root_lip[0])
        n_starts = ctx.cfg.pgd_starts + 1
        self._offer(*self._descend(ctx.lower.expand(n_starts, -1), ctx.upper.expand(n_starts, -1),
                                   ctx.cfg.pgd_steps, random=True))
        self.history = [(time.monotonic() - started, self.lower, self.best_value)]

    @property
    def n_open(self) -> int:
        return self.open["lb"].numel()

    @property
    def lower(self) -> float:
        open_min = float(self.open["lb"].min()) if self.n_open else math.inf
        return min(open_min, self.floor, self.best_value)

    @property
    def gap(self) -> float:
        return self.best_value - self.lower

    def finished(self, tol: float) -> bool:
        return self.n_open == 0 or self.gap <= tol or self.n_open > self.ctx.cfg.max_boxes

    def _bound(self, lo: torch.Tensor, hi: torch.Tensor, known: dict | None):
        """The state of boxes ``(B, n)`` (see the class doc) and their Lipschitz constants
        ``(B,)``; the anchors evaluated on the way are offered as incumbents."""
        B = lo.shape[0]
        C = self.obj.C.to(lo)[None].expand(B, -1, -1)
        with torch.no_grad():
            lb_rows, G, anchor, rows, ok, bounds = row_lower_bounds(
                self.ctx.graph, self.ctx.jacobian, C, self.obj.d.to(lo), lo, hi, self.ctx.cfg.intermediate, known)
            h, lip = lipschitz_constants(G)
        self.bounded += B
        self._offer(anchor.reshape(-1, lo.shape[1]), self.obj.reduce(rows).reshape(-1), ok.reshape(-1))
        width = (hi - lo)[:, None]
        influence = torch.where(width > 0, torch.nan_to_num(h * width, nan=math.inf), -1.0).amax(1)
        state = {"lo": lo, "hi": hi, "lb": self.obj.reduce(lb_rows), "dim": influence.argmax(-1)}
        state.update({name: torch.stack(bounds[name], 1) for name in self.ctx.tracked})
        return state, lip.amax(-1)

    def _descend(self, lo: torch.Tensor, hi: torch.Tensor, steps: int, random: bool = False):
        """Signed-gradient descent on ``o`` inside each box ``(B, n)`` from its centre (or
        uniform random starts, the first at the centre); returns float32 points, values, ok."""
        x = (lo + hi) / 2
        if random and x.shape[0] > 1:
            u = torch.rand(x.shape[0] - 1, x.shape[1], generator=self.ctx.generator, dtype=x.dtype)
            x = torch.cat([x[:1], lo[1:] + u.to(x.device) * (hi[1:] - lo[1:])])
        half = (hi - lo) / 2
        best_x = x.clone()
        best_v = torch.full(x.shape[:1], math.inf, dtype=x.dtype, device=x.device)
        for s in range(steps + 1):
            x = x.detach().requires_grad_(True)
            v = self.obj.value(self.ctx.graph.forward_flat(x))
            better = v.detach() < best_v
            best_x[better], best_v[better] = x.detach()[better], v.detach()[better]
            if s == steps or time.monotonic() >= self.ctx.deadline:
                break
            (grad,) = torch.autograd.grad(v.sum(), x)
            size = half * (0.25 * (1 + math.cos(math.pi * s / steps)) + 0.01)
            x = torch.minimum(torch.maximum(x.detach() - size * torch.sign(grad), lo), hi)
        points, ok = float32_inside(best_x, lo, hi)
        with torch.no_grad():
            return points, self.obj.value(self.ctx.graph.forward_flat(points)), ok

    def _offer(self, x: torch.Tensor, v: torch.Tensor, ok: torch.Tensor) -> None:
        v = torch.where(ok, v, torch.full_like(v, math.inf))
        i = int(torch.argmin(v))
        if float(v[i]) < self.best_value:
            self.best_value, self.best_x = float(v[i]), x[i].detach().clone()

    def step(self, retire_at: Callable[[], float]) -> None:
        """Split the ``batch`` boxes with the lowest bounds and bound their children."""
        t0 = time.monotonic()
        idx = torch.topk(self.open["lb"], min(self.batch, self.n_open), largest=False).indices
        keep = torch.ones(self.n_open, dtype=torch.bool, device=idx.device)
        keep[idx] = False
        parents, self.open = _take(self.open, idx), _take(self.open, keep)
        lo_c, hi_c, atomic = _bisect(parents["lo"], parents["hi"], parents["dim"])
        if bool(atomic.any()):  # boxes too thin to split: their bound is final
            self.floor = min(self.floor, float(parents["lb"][atomic].min()))
        if lo_c.shape[0]:
            parents = _join(*[_take(parents, ~atomic)] * 2)
            if self.ctx.cfg.local_steps:
                self._offer(*self._descend(lo_c, hi_c, self.ctx.cfg.local_steps))
            known = {name: (parents[name][:, 0], parents[name][:, 1]) for name in self.ctx.tracked}
            children, _ = self._bound(lo_c, hi_c, known)
            children["lb"] = torch.maximum(children["lb"], parents["lb"])  # a child's min >= its parent's
            self.open = _join(self.open, children)
        self._retire(retire_at())
        self.history.append((time.monotonic() - self.started, self.lower, self.best_value))
        took = time.monotonic() - t0
        if took > self.ctx.cfg.step_seconds and self.batch > 1:
            self.batch //= 2
        elif took < self.ctx.cfg.step_seconds / 4:
            self.batch = min(2 * self.batch, self.ctx.cfg.batch)

    def _retire(self, level: float) -> None:
        """Close the boxes whose bound reaches ``level``; their smallest bound is kept."""
        done = self.open["lb"] >= level
        if bool(done.any()):
            self.floor = min(self.floor, float(self.open["lb"][done].min()))
            self.open = _take(self.open, ~done)


def _take(state: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v[index] for k, v in state.items()}


def _join(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([a[k], b[k]]) for k in a}


def _bisect(lo: torch.Tensor, hi: torch.Tensor, dim: torch.Tensor):
    """Halves of boxes ``(K, n)`` along ``dim`` ``(K,)``: children ``(2K', n)`` twice (all left
    halves, then all right halves) and the mask ``(K,)`` of boxes too thin to split."""
    rows = torch.arange(lo.shape[0], device=lo.device)
    mid = (lo[rows, dim] + hi[rows, dim]) / 2
    atomic = (mid <= lo[rows, dim]) | (mid >= hi[rows, dim])
    lo, hi, dim, mid = lo[~atomic], hi[~atomic], dim[~atomic], mid[~atomic]
    rows = torch.arange(lo.shape[0], device=lo.device)
    lo_right, hi_left = lo.clone(), hi.clone()
    lo_right[rows, dim], hi_left[rows, dim] = mid, mid
    return torch.cat([lo, lo_right]), torch.cat([hi_left, hi]), atomic


# ---- drivers -------------------------------------------------------------------------------
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
    ctx = _Context(graph, *_root_box(graph, lower, upper), cfg, deadline)
    low, high = _Search(ctx, obj, started), _Search(ctx, obj.negated(), started)

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


def _extremum(search: _Search, obj: Objective, runner: OnnxRunner | None, graph: Graph, tol: float,
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
    ctx = _Context(graph, *_root_box(graph, *region), cfg, deadline)
    runner = OnnxRunner(graph) if graph.onnx_path else None
    search, goal, tried = _Search(ctx, obj.negated(), started), -float(threshold) + cfg.check_margin, None
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
