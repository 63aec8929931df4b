"""Forward linear bounds for low-dimensional inputs.

Every value ``v`` gets lines in the input ``x``: ``Wl·x + bl <= v <= Wu·x + bu`` with
coefficients ``W`` of shape ``(B, *shape, n)`` (``n`` inputs) and offsets ``b`` ``(B, *shape)``.
Affine ops map the centre and radius of the two lines exactly (``M⁺L + M⁻U = M·c - |M|·r``),
activations compose their relaxation lines, any other op falls back to its interval. The
cost per op is that of applying it to ``n + 1`` tensors, which makes this the cheap way to
get intermediate bounds when inputs are few (sub-boxes in input-split branch and bound).
"""
from __future__ import annotations

import torch

from verifier.bounds.linear import Region
from verifier.ir.graph import Graph
from verifier.ops.base import Activation, Affine, Box

Lines = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # Wl, bl, Wu, bu


def forward_bounds(graph: Graph, region: Region) -> dict[str, Box]:
    """Bounds of every value over the boxes of ``region`` (``(B, *input_full_shape)``)."""
    lower, upper = region.lower, region.upper
    B, n = lower.shape[0], graph.n_inputs
    eye = torch.eye(n, dtype=lower.dtype, device=lower.device).reshape(1, *graph.input_full_shape, n)
    W = eye.expand(B, *eye.shape[1:])
    zero = torch.zeros_like(lower)
    lines: dict[str, Lines] = {graph.input_name: (W, zero, W, zero)}
    bounds: dict[str, Box] = {graph.input_name: (lower, upper)}
    xc = ((lower + upper) / 2).reshape(B, n)
    xr = ((upper - lower) / 2).reshape(B, n)
    for node in graph.nodes:
        op = graph.ops[node.name]
        ibp = op.interval(*[bounds[i] for i in node.inputs])
        if isinstance(op, Affine):
            ln = _affine(op, [lines[i] for i in node.inputs], [bounds[i] for i in node.inputs], n)
        elif isinstance(op, Activation):
            ln = _activation(op, lines[node.inputs[0]], bounds[node.inputs[0]])
        else:
            ln = _constant(ibp, n)
        lo, hi = _concretize(ln, xc, xr)
        lo, hi = torch.maximum(lo, ibp[0]), torch.minimum(hi, ibp[1])
        lines[node.name], bounds[node.name] = ln, (lo, hi)
    return bounds


def _concretize(ln: Lines, xc: torch.Tensor, xr: torch.Tensor) -> Box:
    Wl, bl, Wu, bu = ln
    shape = bl.shape
    B, n = xc.shape
    Wl, Wu = Wl.reshape(B, -1, n), Wu.reshape(B, -1, n)
    lo = torch.bmm(Wl, xc.unsqueeze(-1)).squeeze(-1) - torch.bmm(Wl.abs(), xr.unsqueeze(-1)).squeeze(-1)
    hi = torch.bmm(Wu, xc.unsqueeze(-1)).squeeze(-1) + torch.bmm(Wu.abs(), xr.unsqueeze(-1)).squeeze(-1)
    return lo.reshape(shape) + bl, hi.reshape(shape) + bu


def _to_batch(W: torch.Tensor) -> torch.Tensor:
    """``(B, *s, n)`` → ``(B·n, *s)`` so ops can apply to coefficient columns."""
    B, n = W.shape[0], W.shape[-1]
    return W.movedim(-1, 1).reshape(B * n, *W.shape[1:-1])


def _from_batch(Y: torch.Tensor, B: int, n: int) -> torch.Tensor:
    return Y.reshape(B, n, *Y.shape[1:]).movedim(1, -1)


def _affine(op: Affine, ins: list[Lines], boxes: list[Box], n: int) -> Lines:
    B = ins[0][1].shape[0]
    cW = [_to_batch((Wl + Wu) / 2) for Wl, _bl, Wu, _bu in ins]
    rW = [_to_batch((Wu - Wl) / 2) for Wl, _bl, Wu, _bu in ins]
    cb = [(bl + bu) / 2 for _Wl, bl, _Wu, bu in ins]
    rb = [(bu - bl) / 2 for _Wl, bl, _Wu, bu in ins]
    mW, aW = _from_batch(op.linear(*cW), B, n), _from_batch(op.abs_linear(*rW), B, n)
    mb, ab = op.forward(*cb), op.abs_linear(*rb)
    return mW - aW, mb - ab, mW + aW, mb + ab


def _activation(op: Activation, ln: Lines, box: Box) -> Lines:
    lw, lb, uw, ub = op.relax(box[0], box[1])
    Wl, bl, Wu, bu = ln
    lw_p, lw_n = lw.clamp(min=0), lw.clamp(max=0)
    uw_p, uw_n = uw.clamp(min=0), uw.clamp(max=0)
    e = (...,) + (None,)
    new_Wl = lw_p[e] * Wl + lw_n[e] * Wu
    new_Wu = uw_p[e] * Wu + uw_n[e] * Wl
    return new_Wl, lw_p * bl + lw_n * bu + lb, new_Wu, uw_p * bu + uw_n * bl + ub


def _constant(box: Box, n: int) -> Lines:
    lo, hi = box
    W = torch.zeros(*lo.shape, n, dtype=lo.dtype, device=lo.device)
    return W, lo, W, hi
