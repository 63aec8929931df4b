"""Backward linear bound propagation (CROWN) over the graph DAG.

A backward pass starts at one value ``v`` with coefficients ``A0`` of shape ``(B, R, *shape_v)``
(R rows, e.g. property rows ``C`` or unit vectors of neurons) and returns a lower bound of
``A0 · v`` over the input region for each of the ``B`` regions: every affine op applies its
exact transpose, every activation its relaxation lines (lower line where the coefficient is
positive, upper line where negative), and any other op is cut off with its interval bounds.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from verifier.ir.graph import Graph
from verifier.ops.base import Activation, Affine, Box
from verifier.ops.nonlinear import MaxPool, maxpool_crown_step, maxpool_has_crown_step


@dataclass(frozen=True)
class Region:
    """A batch of input regions: boxes ``(B, *input_full_shape)``, optional L2 balls."""

    lower: torch.Tensor
    upper: torch.Tensor
    l2_center: torch.Tensor | None = None  # (B, n_inputs)
    l2_radius: torch.Tensor | None = None  # (B,)


def concretize(A: torch.Tensor, region: Region) -> torch.Tensor:
    """Minimum of ``A · x`` over each region: ``A`` ``(B, R, *in)`` → ``(B, R)``."""
    B, R = A.shape[:2]
    A = A.reshape(B, R, -1)
    lo, hi = region.lower.reshape(B, -1), region.upper.reshape(B, -1)
    center, radius = (lo + hi) / 2, (hi - lo) / 2
    box = torch.einsum("brn,bn->br", A, center) - torch.einsum("brn,bn->br", A.abs(), radius)
    if region.l2_center is None:
        return box
    ball = torch.einsum("brn,bn->br", A, region.l2_center) - A.norm(dim=2) * region.l2_radius[:, None]
    return torch.maximum(box, ball)


@dataclass
class Trace:
    """Optional outputs of a backward pass: the input coefficients ``A_x`` ``(B, R, *in)`` and
    the coefficients reaching each activation's output (``at_activation[name]``)."""

    A_x: torch.Tensor | None = None
    input_min: torch.Tensor | None = None  # (B, R): the minimum of A_x·x over the region, inside the bound
    at_activation: dict[str, torch.Tensor] | None = None


def backward_bound(graph: Graph, start: str, A0: torch.Tensor, bounds: dict[str, Box], region: Region,
                   alphas: dict[str, torch.Tensor] | None = None,
                   extra: dict[str, torch.Tensor] | None = None, trace: Trace | None = None) -> torch.Tensor:
    """Lower bound of ``A0 · value(start)`` over ``region``: ``(B, R)``.

    ``bounds`` must hold bounds of the inputs of every activation and of every other
    nonlinear op upstream of ``start``. ``alphas`` maps activation names to slope parameters
    ``(B, R, *shape)`` (α-CROWN); missing ones take the default relaxation. ``extra`` adds
    coefficients ``(B, R, *shape)`` at named values (β-CROWN's split multipliers). ``trace``,
    when given, receives the input coefficients and those at each activation.
    """
    pending: dict[str, torch.Tensor] = {start: A0}
    const = A0.new_zeros(A0.shape[:2])
    order = graph.ancestors_in_reverse(start)
    for node in order:
        A = pending.pop(node.name, None)
        if extra and node.name in extra:
            A = extra[node.name] if A is None else A + extra[node.name]
        if A is None:
            continue
        op = graph.ops[node.name]
        if isinstance(op, Affine):
            shapes = [graph.shape_of(i) for i in node.inputs]
            A_ins, bias = op.backward(A, shapes)
            const = const + bias
            for name, A_in in zip(node.inputs, A_ins):
                _accumulate(pending, name, A_in)
        elif isinstance(op, Activation):
            lo, hi = bounds[node.inputs[0]]
            if trace is not None and trace.at_activation is not None:
                trace.at_activation[node.name] = A
            alpha = alphas.get(node.name) if alphas else None
            A_in, c = _activation_step(op, A, lo, hi, alpha)
            const = const + c
            _accumulate(pending, node.inputs[0], A_in)
        elif isinstance(op, MaxPool) and maxpool_has_crown_step(op):
            lo, hi = bounds[node.inputs[0]]
            A_in, c = maxpool_crown_step(op, A, lo, hi)
            const = const + c
            _accumulate(pending, node.inputs[0], A_in)
        else:
            const = const + _cut(A, bounds[node.name])
    A_x = pending.pop(graph.input_name, None)
    if A_x is not None:
        input_min = concretize(A_x, region)
        const = const + input_min
        if trace is not None:
            trace.input_min = input_min
    if trace is not None:
        trace.A_x = A_x
    for name, A in pending.items():  # values reached without a path to the input: constants
        const = const + _cut(A, bounds[name])
    return const


def _accumulate(pending: dict[str, torch.Tensor], name: str, A: torch.Tensor) -> None:
    pending[name] = A if name not in pending else pending[name] + A


def _activation_step(op: Activation, A, lo, hi, alpha):
    """One CROWN step through an activation: returns the input coefficients and constant.

    Uses ``A⁺·lw + A⁻·uw = A·lw + A⁻·(uw - lw)`` (fewer passes over ``A``).
    """
    lo, hi = lo.unsqueeze(1), hi.unsqueeze(1)
    lw, lb, uw, ub = op.relax(lo, hi, alpha)
    A_neg = A.clamp(max=0)
    A_in = A * lw + A_neg * (uw - lw)
    c = _dot(A_neg, ub - lb) + _dot(A, lb)
    return A_in, c


def _dot(A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``sum over neurons of A * v`` for ``A`` ``(B, R, *s)`` and ``v`` broadcastable: ``(B, R)``."""
    B, R = A.shape[:2]
    if v.shape[1] == 1:  # one line per neuron shared by all rows: a batched mat-vec
        v = v.expand(B, 1, *A.shape[2:]).reshape(B, -1, 1)
        return torch.bmm(A.reshape(B, R, -1), v).squeeze(-1)
    return (A * v).flatten(2).sum(-1)


def _cut(A: torch.Tensor, box: Box) -> torch.Tensor:
    """Minimum of ``A · v`` given only ``v``'s interval box: ``(B, R)``."""
    lo, hi = box
    A_pos, A_neg = A.clamp(min=0), A.clamp(max=0)
    lo, hi = lo.unsqueeze(1), hi.unsqueeze(1)
    terms = torch.nan_to_num(A_pos * lo, nan=0.0) + torch.nan_to_num(A_neg * hi, nan=0.0)
    return terms.flatten(2).sum(-1)
