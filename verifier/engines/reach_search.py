"""The branch and bound behind :mod:`verifier.engines.reach`: one search for the minimum of an
objective over sub-boxes of a root box.

Each box gets a lower bound of ``o``: per row the larger of the CROWN bound and the mean-value
bound from a sound interval Jacobian (:mod:`verifier.engines.lipschitz`) anchored at the box's
minimising corner, then min/max over rows. The best value evaluated so far (box anchors and a
few signed-gradient steps, all at float32 inputs inside the region) is the upper bound. The
boxes with the lowest bounds are split along the coordinate with the largest ``h_i·width_i``
and their children bounded as one batch; boxes whose bound reaches the retiring level close.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch

from verifier.bounds.crown import nonlinear_inputs
from verifier.engines.lipschitz import (INTERMEDIATE_METHODS, JacobianBounds, float32_inside, lipschitz_constants,
                                        row_lower_bounds)
from verifier.engines.reach_objective import Objective
from verifier.engines.reach_types import ReachConfig
from verifier.errors import InputError
from verifier.ir.graph import Graph


class SearchContext:
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


class BoxSearch:
    """Branch and bound for the minimum of one objective over sub-boxes of the root box.

    Open boxes live in ``self.open``: ``lo``/``hi`` ``(M, n)``, bound ``lb`` ``(M,)``, split
    coordinate ``dim`` ``(M,)`` and, for each nonlinear input value, its bounds on the box
    ``(M, 2, *shape)`` (children start from their parent's, which stay valid on a sub-box).
    """

    def __init__(self, ctx: SearchContext, objective: Objective, started: float):
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
