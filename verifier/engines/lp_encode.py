"""A graph encoded as a linear system over an input region, and the public face of the LP code.

:func:`encode_region` builds the :class:`~verifier.engines.lp_system.System` of a graph over an
input box (optionally intersected with an L2 ball): CROWN intermediate bounds, optional LP
tightening of unstable ReLU inputs, then the LP relaxation or the MILP
(:mod:`verifier.engines.lp_ops`); :class:`RegionEncoding` holds the result. The system types
live in :mod:`verifier.engines.lp_system` and the solvers (:class:`LinearModel`,
:class:`HighsLP`, :func:`dual_bound`, solver checks) in :mod:`verifier.engines.lp_solvers`;
both are re-exported here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from verifier.engines.lp_ops import Encoding, add_l2_outer, encode_graph, numpy_bounds
from verifier.engines.lp_solvers import dual_bound, lp_solver, supports_cone
from verifier.engines.lp_solvers import (HighsLP, LinearModel, Solution, check_solver,  # noqa: F401  (re-exported)
                                         time_options)
from verifier.engines.lp_system import System, SystemBuilder  # noqa: F401  (System re-exported)
from verifier.ir.graph import Graph, Node


@dataclass
class RegionEncoding:
    """The encoding of a graph over one input region, with what built it.

    ``graph``: the float64 CPU copy that was encoded; ``region``: the batch-of-one
    :class:`Region`; ``crown``: its CROWN bounds (torch, ``(1, *shape)`` per value); ``cone``
    / ``ball``: ``(x_idx, center, radius)`` of an L2 ball given to the solver as a cone /
    used by :func:`dual_bound` (None without a ball).
    """

    graph: Graph
    enc: Encoding
    region: object
    crown: dict
    cone: tuple | None
    ball: tuple | None

    @property
    def x(self) -> np.ndarray:
        return self.enc.variables(self.graph.input_name)

    @property
    def y(self) -> np.ndarray:
        return self.enc.variables(self.graph.output_name)


def encode_region(graph: Graph, lower: np.ndarray, upper: np.ndarray, l2: tuple | None, exact: bool,
                  solver: str, deadline: float, tighten_until: float | None = None,
                  bounds: dict | None = None) -> RegionEncoding:
    """Encode ``graph`` over the box ``lower <= x <= upper`` (flat ``(n_inputs,)``) intersected
    with the ball ``l2 = (center, radius)`` if given: CROWN intermediate bounds (float64), then
    the LP relaxation or the MILP. With ``tighten_until`` (a ``time.monotonic()`` deadline),
    the bounds of every unstable ReLU input are first sharpened by two LPs each, layer by
    layer, until that time."""
    from verifier.bounds.crown import intermediate_bounds
    from verifier.bounds.linear import Region
    from verifier.config import BoundsConfig
    from verifier.engines.lp_ops import check_encodable

    check_encodable(graph)
    g = graph.to(device="cpu", dtype=torch.float64)
    shape = (1, *g.input_full_shape)
    lo_t = torch.as_tensor(np.asarray(lower, np.float64)).reshape(shape)
    hi_t = torch.as_tensor(np.asarray(upper, np.float64)).reshape(shape)
    if l2 is None:
        region = Region(lo_t, hi_t)
    else:
        region = Region(lo_t, hi_t, torch.as_tensor(np.asarray(l2[0], np.float64)).reshape(1, -1),
                        torch.as_tensor([float(l2[1])], dtype=torch.float64))
    with torch.no_grad():
        crown = bounds if bounds is not None else intermediate_bounds(g, region, BoundsConfig())
    bounds = numpy_bounds(crown)
    bounds[g.input_name] = (lo_t.reshape(-1).numpy().copy(), hi_t.reshape(-1).numpy().copy())
    ball = None if l2 is None else (None, np.asarray(l2[0], np.float64).reshape(-1), float(l2[1]))
    before = None if tighten_until is None else _lp_tightener(solver, min(deadline, tighten_until), ball)
    enc = encode_graph(g, bounds, exact, SystemBuilder(), before)
    x = enc.variables(g.input_name)
    cone = None
    if ball is not None:
        ball = (x, ball[1], ball[2])
        if supports_cone(solver, exact):
            cone = ball
        else:
            add_l2_outer(enc.rows, x, ball[1], ball[2])
    return RegionEncoding(g, enc, region, crown, cone, ball)


def _lp_tightener(solver: str, deadline: float, ball):
    """A ``before`` hook: LP lower and upper bounds (weak-duality safe) of every unstable input
    neuron of a ReLU/LeakyReLU, intersected into the encoding's bounds."""
    from verifier.ops.activations import LeakyRelu, Relu

    def before(enc: Encoding, node: Node) -> None:
        if node.op not in (Relu.op_name, LeakyRelu.op_name) or time.monotonic() >= deadline:
            return
        name = node.inputs[0]
        lo, hi = enc.bounds[name]
        todo = np.flatnonzero((lo < 0) & (hi > 0))
        if todo.size == 0:
            return
        system = enc.rows.build()
        model = lp_solver(system, solver)
        x_ball = None if ball is None else (enc.variables(next(iter(enc.expr))), ball[1], ball[2])
        new_lo, new_hi = lo.copy(), hi.copy()
        idx = enc.variables(name)
        for j in todo:
            for sign in (1.0, -1.0):
                if time.monotonic() >= deadline:
                    break
                cost = np.zeros(system.n)
                cost[idx[j]] = sign
                bound = dual_bound(system, cost, model.solve(cost, deadline), x_ball)
                if sign > 0:
                    new_lo[j] = max(new_lo[j], bound)
                else:
                    new_hi[j] = min(new_hi[j], -bound)
        enc.tighten(name, new_lo, new_hi)

    return before
