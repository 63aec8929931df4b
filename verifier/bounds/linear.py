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
from verifier.ops.linear import Linear
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
    box = _matvec(A, center) - _matvec(A.abs(), radius)
    if region.l2_center is None:
        return box
    ball = _matvec(A, region.l2_center) - A.norm(dim=2) * region.l2_radius[:, None]
    return torch.maximum(box, ball)


def _matvec(A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``A`` ``(B, R, n)`` times ``v`` ``(B, n)`` → ``(B, R)`` (one batched product)."""
    return torch.bmm(A, v.unsqueeze(-1)).squeeze(-1)


@dataclass
class Trace:
    """Optional outputs of a backward pass: the input coefficients ``A_x`` ``(B, R, *in)`` and
    the coefficients reaching each activation's output (``at_activation[name]``)."""

    A_x: torch.Tensor | None = None
    input_min: torch.Tensor | None = None  # (B, R): the minimum of A_x·x over the region, inside the bound
    at_activation: dict[str, torch.Tensor] | None = None


def backward_bound(graph: Graph, start: str, A0: torch.Tensor, bounds: dict[str, Box], region: Region,
                   alphas: dict[str, torch.Tensor] | None = None,
                   extra: dict[str, torch.Tensor] | None = None, trace: Trace | None = None,
                   lines: dict[str, Lines] | None = None,
                   extra_cols: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Lower bound of ``A0 · value(start)`` over ``region``: ``(B, R)``.

    ``bounds`` must hold bounds of the inputs of every activation and of every other
    nonlinear op upstream of ``start``. ``alphas`` maps activation names to slope parameters
    ``(B, R, *shape)`` (α-CROWN); missing ones take the default relaxation. ``extra`` adds
    coefficients ``(B, R, *shape)`` at named values (β-CROWN's split multipliers). ``trace``,
    when given, receives the input coefficients and those at each activation.

    ``lines`` caches the default relaxation of each activation between passes over the same
    ``bounds`` (filled as needed). ``extra_cols[name]`` (int64 ``(m',)``): ``extra[name]`` holds
    only these indices of the value's last axis, the others being zero.

    Coefficients behind neurons whose lines are all zero (inactive ReLUs) are kept compact:
    only the live indices of the last axis travel to the affine op below when it can use them
    (:class:`~verifier.ops.linear.Linear`), which skips the rest of its product.
    """
    pending: dict[str, torch.Tensor] = {start: A0}
    cols: dict[str, torch.Tensor] = {}
    const = A0.new_zeros(A0.shape[:2])
    for node in graph.ancestors_in_reverse(start):
        compact = _takes_columns(graph, node.name)
        A = _pop(graph, pending, cols, node.name, keep_compact=compact)
        if extra and node.name in extra:
            A, live = _add(A, cols.pop(node.name, None), extra[node.name], (extra_cols or {}).get(node.name))
            if live is not None and compact:
                cols[node.name] = live
            else:
                A = _dense(graph, node.name, A, live)
        if A is None:
            continue
        op = graph.ops[node.name]
        if isinstance(op, Affine):
            shapes = [graph.shape_of(i) for i in node.inputs]
            live = cols.pop(node.name, None)
            A_ins, bias = op.backward(A, shapes) if live is None else op.backward(A, shapes, cols=live)
            const = const + bias
            for name, A_in in zip(node.inputs, A_ins):
                _accumulate(graph, pending, cols, name, A_in, None)
        elif isinstance(op, Activation):
            if trace is not None and trace.at_activation is not None:
                trace.at_activation[node.name] = A
            alpha = alphas.get(node.name) if alphas else None
            step = _lines(op, bounds[node.inputs[0]], alpha, lines, node.name)
            A_in, c = step.apply(A)
            const = const + c
            _accumulate(graph, pending, cols, node.inputs[0], A_in, step.live)
        elif isinstance(op, MaxPool) and maxpool_has_crown_step(op):
            lo, hi = bounds[node.inputs[0]]
            A_in, c = maxpool_crown_step(op, A, lo, hi)
            const = const + c
            _accumulate(graph, pending, cols, node.inputs[0], A_in, None)
        else:
            const = const + _cut(A, bounds[node.name])
    return const + _close(graph, pending, cols, bounds, region, trace)


def _close(graph: Graph, pending, cols, bounds, region: Region, trace: Trace | None) -> torch.Tensor:
    """The end of a backward pass: the minimum over the region of what reached the input, plus
    the interval minimum of what reached values with no path to it: ``(B, R)``."""
    const = 0.0
    A_x = _pop(graph, pending, cols, graph.input_name, keep_compact=False)
    if A_x is not None:
        input_min = concretize(A_x, region)
        const = const + input_min
        if trace is not None:
            trace.input_min = input_min
    if trace is not None:
        trace.A_x = A_x
    for name in list(pending):  # values reached without a path to the input: constants
        const = const + _cut(_pop(graph, pending, cols, name, keep_compact=False), bounds[name])
    return const


def _takes_columns(graph: Graph, name: str) -> bool:
    """Whether the op of value ``name`` accepts compact coefficients (``backward(..., cols=)``)."""
    return name in graph.ops and isinstance(graph.ops[name], Linear)


def _pop(graph: Graph, pending, cols, name: str, keep_compact: bool) -> torch.Tensor | None:
    """The pending coefficients of ``name``, expanded to its full shape unless ``keep_compact``
    (then their live indices stay in ``cols``)."""
    A = pending.pop(name, None)
    if keep_compact or name not in cols:
        return A
    return _dense(graph, name, A, cols.pop(name))


def _dense(graph: Graph, name: str, A: torch.Tensor | None, live: torch.Tensor | None) -> torch.Tensor | None:
    """``A`` ``(B, R, ..., m')`` on indices ``live`` of the last axis → ``(B, R, *shape(name))``."""
    if A is None or live is None:
        return A
    full = A.new_zeros(*A.shape[:-1], graph.shape_of(name)[-1])
    return full.index_copy(-1, live, A)


def _add(A: torch.Tensor | None, live: torch.Tensor | None, E: torch.Tensor, e_live: torch.Tensor | None):
    """``A + E`` for coefficients compact on ``live`` / ``e_live`` (``None``: full last axis):
    returns the sum and its live indices (the union; ``None`` when either was full)."""
    if A is None:
        return E, e_live
    if live is None or e_live is None:
        n = (A if live is None else E).shape[-1]
        return _widen(A, live, n) + _widen(E, e_live, n), None
    union = torch.unique(torch.cat([live, e_live]))
    return _place(A, live, union) + _place(E, e_live, union), union


def _widen(A: torch.Tensor, live: torch.Tensor | None, n: int | None) -> torch.Tensor:
    """``A`` on its full last axis of length ``n`` (unchanged when ``live`` is ``None``)."""
    if live is None:
        return A
    return A.new_zeros(*A.shape[:-1], n).index_copy(-1, live, A)


def _place(A: torch.Tensor, live: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
    """``A`` compact on ``live`` re-laid on the sorted superset ``union``."""
    return A.new_zeros(*A.shape[:-1], union.numel()).index_copy(-1, torch.searchsorted(union, live), A)


def _accumulate(graph: Graph, pending, cols, name: str, A: torch.Tensor, live: torch.Tensor | None) -> None:
    """Add ``A`` (compact on ``live`` when given) to the pending coefficients of ``name``."""
    if name not in pending:
        pending[name] = A
        if live is not None:
            cols[name] = live
        return
    old = pending.pop(name)
    pending[name] = _dense(graph, name, old, cols.pop(name, None)) + _dense(graph, name, A, live)


def _lines(op: Activation, box: Box, alpha, cache: dict[str, "Lines"] | None, name: str) -> "Lines":
    """The relaxation of ``op`` on ``box`` for one backward step, from ``cache`` when the
    default relaxation (no ``alpha``) was prepared before."""
    if cache is None:
        return Lines.of(op, box, alpha)
    if name not in cache:
        cache[name] = Lines.of(op, box, None)
    if alpha is None:
        return cache[name]
    live = cache[name].live if op.dead_for_every_alpha else None
    return Lines.of(op, box, alpha, live)


@dataclass(frozen=True)
class Lines:
    """Relaxation lines ``lw·x + lb <= f(x) <= uw·x + ub`` of one activation, ready for the
    backward step: ``lw``, ``gap_w = uw - lw``, ``lb`` (``None`` when all zero), ``gap_b = ub -
    lb``, each ``(B, 1 or R, *shape)``, restricted to the indices ``live`` of the last axis when
    the others have all four coefficients zero (``live`` ``None``: nothing restricted)."""

    lw: torch.Tensor
    gap_w: torch.Tensor
    lb: torch.Tensor | None
    gap_b: torch.Tensor
    live: torch.Tensor | None

    @staticmethod
    def of(op: Activation, box: Box, alpha: torch.Tensor | None, live: torch.Tensor | None = None) -> "Lines":
        """The lines of ``op`` on ``box`` (each ``(B, *shape)``). The live neurons are searched
        only for the default relaxation (made once per bounds and cached): with ``alpha``
        (``(B, R, *shape)``, new each optimisation step) the search would cost more than it
        saves, and only a known ``live`` set (valid for every ``alpha``) restricts them."""
        lo, hi = box[0].unsqueeze(1), box[1].unsqueeze(1)
        if alpha is not None:
            if live is not None:
                lo, hi, alpha = (t.index_select(-1, live) for t in (lo, hi, alpha))
            lw, lb, uw, ub = op.relax(lo, hi, alpha)
            return Lines(lw, uw - lw, lb, ub - lb, live)
        mask = op.live_mask(lo, hi)
        if mask is not None:  # the live neurons read off the bounds: lines made for those only
            live = _live_indices((mask,))
            if live is not None:
                lo, hi = lo.index_select(-1, live), hi.index_select(-1, live)
            lw, lb, uw, ub = op.relax(lo, hi, None)
            lb = None if op.zero_lower_intercept else lb
            return Lines(lw, uw - lw, lb, ub if lb is None else ub - lb, live)
        lw, lb, uw, ub = op.relax(lo, hi, alpha)
        gap_w, gap_b = uw - lw, ub - lb
        lw, lb, gap_w, gap_b = torch.broadcast_tensors(lw, lb, gap_w, gap_b)
        live = _live_indices((lw, gap_w, lb, gap_b))
        if live is not None:
            lw, gap_w, lb, gap_b = (t.index_select(-1, live) for t in (lw, gap_w, lb, gap_b))
        return Lines(lw, gap_w, lb if bool(torch.any(lb != 0)) else None, gap_b, live)

    def apply(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One CROWN step for the coefficients ``A`` ``(B, R, *shape)`` at the output: the input
        coefficients (compact on ``live``) and the constant ``(B, R)``.

        Uses ``A⁺·lw + A⁻·uw = A·lw + A⁻·(uw - lw)`` (fewer passes over ``A``)."""
        if self.live is not None:
            A = A.index_select(-1, self.live)
        A_neg = A.clamp(max=0)
        A_in = torch.addcmul(A * self.lw, A_neg, self.gap_w)
        c = _dot(A_neg, self.gap_b)
        return A_in, c if self.lb is None else c + _dot(A, self.lb)


# Restrict a backward step to the live neurons when at most this fraction of them is live.
LIVE_FRACTION = 0.75


def _live_indices(coefficients: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
    """Indices of the last axis where some coefficient is nonzero in some region, row or leading
    position; ``None`` when they are too many for a restricted step to pay."""
    n = coefficients[0].shape[-1]
    if n < 8:
        return None
    nonzero = torch.zeros(n, dtype=torch.bool, device=coefficients[0].device)
    for t in coefficients:
        nonzero |= t.reshape(-1, n).ne(0).any(0)
    live = nonzero.nonzero().squeeze(1)
    return live if live.numel() <= LIVE_FRACTION * n else None


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
