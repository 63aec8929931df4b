"""Sound local Lipschitz bounds: interval Jacobians of linear output rows over input boxes.

For rows ``C`` (objective ``C_r · y``) and a batch of input boxes, :class:`JacobianBounds`
walks the graph backward carrying an interval ``[G_lo, G_hi]`` of the coefficients of every
value (shape ``(B, R, *shape)``): affine ops map the centre with their exact transpose and the
radius with the transpose of ``|L|`` (weight ops rebuilt with absolute parameters, any other
affine op through a vector-Jacobian product of its own ``abs_linear``); elementwise
activations multiply by an interval of their derivative over the pre-activation box (interval
product). The result encloses the (Clarke generalised) gradient of ``C_r · y`` at every point
of the box, so by Lebourg's mean value theorem, for any anchor ``a`` and any ``x`` in the box,

    C_r·y(x) >= C_r·y(a) + sum_i min([G_lo_i, G_hi_i] · [lo_i - a_i, hi_i - a_i])

(:func:`mean_value_lower`). ``h = max(|G_lo|, |G_hi|)`` bounds each partial derivative, and
``sum_i h_i`` is a Lipschitz constant of the row over the box for the ℓ∞ input norm; with the
centre as anchor the bound above is ``C_r·y(c) - sum_i h_i·r_i``, and with the anchor moved to
the minimising end of every coordinate whose gradient has one sign it is never worse.
No sampling is involved anywhere: every number is a guaranteed bound.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from verifier.bounds.crown import intermediate_bounds, spec_bounds
from verifier.bounds.linear import Region
from verifier.config import BoundsConfig
from verifier.errors import UnsupportedError
from verifier.ir.graph import Graph
from verifier.ops import make_op
from verifier.ops.activations import Clip, Exp, LeakyRelu, Relu, _Periodic, _SShaped
from verifier.ops.base import Activation, Affine, Box, Op

Interval = tuple[torch.Tensor, torch.Tensor]

INTERMEDIATE_METHODS = ("crown", "ibp")
_WEIGHT_OPS = ("Linear", "Conv", "ConvTranspose", "Scale")  # |L| is the op with |parameters|
SUPPORTED_ACTIVATIONS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Exp", "Sin", "Cos", "Clip")


class JacobianBounds:
    """Interval Jacobians of output rows over boxes for one graph.

    Holds, for every affine op with parameters, a copy whose parameters are made absolute
    (its backward step then applies ``|L|^T``). No analysis state is kept between calls.
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self.abs_ops: dict[str, Op] = {}
        for node in graph.nodes:
            op = graph.ops[node.name]
            if isinstance(op, Affine) and node.op in _WEIGHT_OPS:
                params = {k: (v.abs() if v.is_floating_point() else v) for k, v in node.params.items()}
                self.abs_ops[node.name] = make_op(dataclasses.replace(node, params=params),
                                                  graph.dtype, graph.device)
            elif not isinstance(op, (Affine, Activation)) or (
                    isinstance(op, Activation) and op.op_name not in SUPPORTED_ACTIVATIONS):
                raise UnsupportedError(
                    f"no derivative rule for op '{node.op}' (node '{node.source or node.name}'); "
                    f"Lipschitz bounds support affine ops and {', '.join(SUPPORTED_ACTIVATIONS)}",
                    path=graph.onnx_path)

    def __call__(self, C: torch.Tensor, bounds: dict[str, Box]) -> Interval:
        """Gradient interval of ``C_r · y`` w.r.t. the flat input: ``(B, R, n_inputs)`` twice.

        ``C``: ``(B, R, n_outputs)``; ``bounds``: value name → box ``(B, *shape)`` holding at
        least the input of every activation (e.g. from ``intermediate_bounds``).
        """
        g = self.graph
        B, R = C.shape[:2]
        A0 = C.reshape(B, R, *g.output_full_shape)
        pending: dict[str, Interval] = {g.output_name: (A0, A0)}
        for node in g.ancestors_in_reverse(g.output_name):
            coef = pending.pop(node.name, None)
            if coef is None:
                continue
            op = g.ops[node.name]
            if isinstance(op, Affine):
                shapes = [g.shape_of(i) for i in node.inputs]
                for name, part in zip(node.inputs, self._affine_step(node.name, op, coef, shapes)):
                    _accumulate(pending, name, part)
            else:
                lo, hi = bounds[node.inputs[0]]
                d_lo, d_hi = derivative_interval(op, lo, hi)
                _accumulate(pending, node.inputs[0],
                            interval_product(coef, (d_lo.unsqueeze(1), d_hi.unsqueeze(1))))
        zero = C.new_zeros(B, R, g.n_inputs)
        G = pending.get(g.input_name)
        if G is None:  # the output does not depend on the input
            return zero, zero.clone()
        return G[0].reshape(B, R, -1), G[1].reshape(B, R, -1)

    def _affine_step(self, name: str, op: Affine, coef: Interval, shapes: list) -> list[Interval]:
        lo, hi = coef
        if lo is hi:  # exact coefficients
            outs, _ = op.backward(lo, shapes)
            return [(o, o) for o in outs]
        centre, radius = (lo + hi) / 2, (hi - lo) / 2
        c_in, _ = op.backward(centre, shapes)
        if name in self.abs_ops:
            r_in, _ = self.abs_ops[name].backward(radius, shapes)
        elif type(op).abs_linear is Affine.abs_linear:  # no negative coefficients: |L| = L
            r_in, _ = op.backward(radius, shapes)
        else:
            r_in = _abs_transpose(op, radius, shapes)
        return [(c - r, c + r) for c, r in zip(c_in, r_in)]


def _abs_transpose(op: Affine, A: torch.Tensor, in_shapes: list) -> list[torch.Tensor]:
    """``|L|^T A`` for ``A`` ``(B, R, *out)`` by a vector-Jacobian product of ``op.abs_linear``."""
    B, R = A.shape[:2]
    zeros = [torch.zeros(B * R, *s, dtype=A.dtype, device=A.device) for s in in_shapes]
    _, vjp = torch.func.vjp(lambda *xs: op.abs_linear(*xs), *zeros)
    return [g.reshape(B, R, *s) for g, s in zip(vjp(A.reshape(B * R, *A.shape[2:])), in_shapes)]


def _accumulate(pending: dict[str, Interval], name: str, part: Interval) -> None:
    if name not in pending:
        pending[name] = part
        return
    lo, hi = pending[name]
    if lo is hi and part[0] is part[1]:
        s = lo + part[0]
        pending[name] = (s, s)
    else:
        pending[name] = (lo + part[0], hi + part[1])


def interval_product(a: Interval, b: Interval) -> Interval:
    """Elementwise ``[a_lo, a_hi] · [b_lo, b_hi]`` (broadcasting).

    ``0 · ∞`` counts as 0: a coefficient or derivative that is exactly 0 on the whole box
    contributes nothing whatever the (finite, pointwise) other factor is.
    """
    prods = torch.stack(torch.broadcast_tensors(a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]))
    prods = torch.nan_to_num(prods, nan=0.0)
    return prods.amin(0), prods.amax(0)


def derivative_interval(op: Op, lo: torch.Tensor, hi: torch.Tensor) -> Interval:
    """Bounds of ``f'`` (generalised derivative at kinks) over ``[lo, hi]``, elementwise."""
    one, zero = torch.ones_like(lo), torch.zeros_like(lo)
    if isinstance(op, (Relu, LeakyRelu)):
        s = float(op.attrs["alpha"]) if isinstance(op, LeakyRelu) else 0.0
        small, big = min(s, 1.0), max(s, 1.0)
        # lo >= 0: f is the identity on the box; hi <= 0: f is s·x on the box
        d_lo = torch.where(lo >= 0, one, torch.where(hi <= 0, one * s, one * small))
        d_hi = torch.where(lo >= 0, one, torch.where(hi <= 0, one * s, one * big))
        return d_lo, d_hi
    if isinstance(op, _SShaped):  # derivative unimodal with its peak at 0
        d1, d2 = op.deriv(lo), op.deriv(hi)
        peak = op.deriv(zero)
        return torch.minimum(d1, d2), torch.where((lo <= 0) & (hi >= 0), peak, torch.maximum(d1, d2))
    if isinstance(op, Exp):
        return torch.exp(lo), torch.exp(hi)
    if isinstance(op, _Periodic):  # d/dx sin(x + p) = sin(x + p + pi/2)
        shift = op.phase + math.pi / 2
        return sine_range(lo + shift, hi + shift)
    if isinstance(op, Clip):
        cmin, cmax = op.attrs["min"], op.attrs["max"]
        inside = (lo >= cmin) & (hi <= cmax)
        flat = (hi <= cmin) | (lo >= cmax)
        return torch.where(inside, one, zero), torch.where(flat, zero, one)
    raise UnsupportedError(f"no derivative rule for op '{op.node.op}' (node '{op.node.name}')")


def sine_range(lo: torch.Tensor, hi: torch.Tensor) -> Interval:
    """Exact range of ``sin`` over ``[lo, hi]``, elementwise."""
    s1, s2 = torch.sin(lo), torch.sin(hi)
    low, high = torch.minimum(s1, s2), torch.maximum(s1, s2)
    has_max = _contains_point(lo, hi, math.pi / 2)
    has_min = _contains_point(lo, hi, -math.pi / 2)
    return torch.where(has_min, -torch.ones_like(lo), low), torch.where(has_max, torch.ones_like(hi), high)


def _contains_point(lo: torch.Tensor, hi: torch.Tensor, point: float) -> torch.Tensor:
    """Whether ``[lo, hi]`` contains ``point + 2k·pi`` for some integer ``k``."""
    two_pi = 2 * math.pi
    k = torch.ceil((lo - point) / two_pi)
    return point + k * two_pi <= hi


def lipschitz_constants(G: Interval) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-coordinate bounds ``h = max(|G_lo|, |G_hi|)`` ``(B, R, n)`` and the ℓ∞-box
    Lipschitz constants ``||h||_1`` ``(B, R)``."""
    h = torch.maximum(G[0].abs(), G[1].abs())
    return h, h.sum(-1)


def mean_value_lower(value_at_anchor: torch.Tensor, G: Interval, anchor: torch.Tensor,
                     lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Lower bound of a row over each box from its value at an anchor inside the box.

    ``value_at_anchor`` ``(B, R)``; ``G`` ``(B, R, n)`` twice; ``anchor`` ``(B, R, n)`` inside
    the boxes; ``lower``/``upper`` ``(B, n)``. With the anchor at the minimising corner in the
    coordinates where the gradient has one sign, those coordinates cost nothing.
    """
    d_lo = lower.unsqueeze(1) - anchor  # <= 0
    d_hi = upper.unsqueeze(1) - anchor  # >= 0
    low, _ = interval_product(G, (d_lo, d_hi))
    return value_at_anchor + low.sum(-1)


def minimising_anchor(G: Interval, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """The box centre with every coordinate of one-signed gradient moved to the end that
    decreases the row: ``(B, R, n)``."""
    lo, hi = lower.unsqueeze(1), upper.unsqueeze(1)
    centre = ((lo + hi) / 2).expand_as(G[0])
    return torch.where(G[0] >= 0, lo.expand_as(centre), torch.where(G[1] <= 0, hi.expand_as(centre), centre))


# ---- the CROWN side: bounds of every value and of the rows ------------------------------------
def crown_row_bounds(graph: Graph, C: torch.Tensor, region: Region, method: str = "crown",
                     known: dict[str, Box] | None = None) -> tuple[torch.Tensor, dict[str, Box]]:
    """CROWN lower bounds of ``C · y`` ``(B, R)`` over the boxes of ``region`` and the bounds of
    every value (``intermediate_bounds`` with CROWN or, for ``method="ibp"``, interval
    intermediate bounds, intersected with ``known`` bounds, e.g. those of an enclosing box).
    The row bound is the best of the default relaxation and of every lower slope at 0 and at 1
    (three one-row backward passes).
    """
    lines: dict = {}
    bounds = intermediate_bounds(graph, region, BoundsConfig(), use_crown=method == "crown", fixed=known,
                                 lines=lines)
    best = spec_bounds(graph, C, bounds, region, lines=lines)
    for fill in (0.0, 1.0):
        alphas = {n.name: torch.full((*C.shape[:2], *n.out_shape), fill, dtype=C.dtype, device=C.device)
                  for n in graph.nodes
                  if isinstance(graph.ops[n.name], Activation) and graph.ops[n.name].alpha_shape_ok()}
        best = torch.maximum(best, spec_bounds(graph, C, bounds, region, alphas))
    return best, bounds


def row_lower_bounds(graph: Graph, jacobian: JacobianBounds, C: torch.Tensor, d: torch.Tensor,
                     lower: torch.Tensor, upper: torch.Tensor, method: str = "crown",
                     known: dict[str, Box] | None = None):
    """Sound lower bounds of the rows ``C_r · y + d_r`` over boxes ``[lower, upper]`` ``(B, n)``:
    per row the larger of the CROWN bound and the mean-value bound at the row's minimising
    anchor (rounded to float32 inside the box, so that anchors can serve as witnesses).

    ``C``: ``(B, R, n_outputs)``, ``d``: ``(R,)``. Returns ``lower`` ``(B, R)``, the gradient
    interval ``G`` (``(B, R, n)`` twice), the anchors ``(B, R, n)``, all rows at every anchor
    ``(B, R, R)``, ``ok`` ``(B, R)`` (anchor is float32) and the bounds of every value.
    """
    B, R, n = C.shape[0], C.shape[1], lower.shape[1]
    region = Region(lower.reshape(B, *graph.input_full_shape), upper.reshape(B, *graph.input_full_shape))
    crown, bounds = crown_row_bounds(graph, C, region, method, known)
    G = jacobian(C, bounds)
    anchor, ok = float32_inside(minimising_anchor(G, lower, upper), lower[:, None], upper[:, None])
    y = graph.forward_flat(anchor.reshape(B * R, n)).reshape(B, R, -1)
    rows = torch.einsum("bao,ro->bar", y, C[0]) + d  # row r at anchor a: (B, R, R)
    own = torch.diagonal(rows, dim1=1, dim2=2)
    return torch.maximum(crown + d, mean_value_lower(own, G, anchor, lower, upper)), G, anchor, rows, ok, bounds


def float32_inside(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` rounded to float32 values inside ``[lo, hi]`` where possible: ``(points, ok)``,
    points clamped into the box (float64), ``ok`` ``(...,)`` where every entry is float32."""
    x32 = torch.minimum(torch.maximum(x, lo), hi).to(torch.float32)
    inf = torch.tensor(math.inf, dtype=torch.float32, device=x.device)
    x32 = torch.where(x32.double() < lo, torch.nextafter(x32, inf), x32)
    x32 = torch.where(x32.double() > hi, torch.nextafter(x32, -inf), x32)
    x64 = x32.double()
    ok = ((x64 >= lo) & (x64 <= hi)).all(-1)
    return torch.minimum(torch.maximum(x64, lo), hi), ok
