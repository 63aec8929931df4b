"""CROWN and α-CROWN drivers: intermediate bounds for every nonlinear input, then the
property rows ``C · y`` bounded in one backward pass (all rows at once)."""
from __future__ import annotations

import math
import time
from typing import Callable

import torch

from verifier.bounds.interval import interval_bounds
from verifier.bounds.adam import Adam
from verifier.bounds.linear import Lines, Region, Trace, backward_bound
from verifier.config import BoundsConfig
from verifier.ir.graph import Graph
from verifier.ops.activations import LeakyRelu, Relu
from verifier.ops.base import Activation, Affine, Box
from verifier.ops.linear import Linear, Scale
from verifier.ops.shape import Pad, Reshape, Select, Transpose

_PIECEWISE = (Relu, LeakyRelu)


def nonlinear_inputs(graph: Graph) -> dict[str, bool]:
    """Values feeding an activation or another nonlinear op → whether all such consumers are
    ReLU-like (then only unstable neurons need tightening)."""
    out: dict[str, bool] = {}
    for node in graph.nodes:
        op = graph.ops[node.name]
        if isinstance(op, Affine):
            continue
        for name in node.inputs:
            out[name] = out.get(name, True) and isinstance(op, _PIECEWISE)
    return out


_BOX_PRESERVING = (Reshape, Transpose, Select, Scale, Pad)


def _exact_interval_values(graph: Graph) -> set[str]:
    """Values whose interval bounds over an input box are already exact per neuron: one affine
    op applied to a set that is itself a box (the input, or a box moved by reshapes, selections,
    padding or elementwise scaling). CROWN cannot tighten them."""
    boxes, exact = {graph.input_name}, set()
    for node in graph.nodes:
        op = graph.ops[node.name]
        if not isinstance(op, Affine) or len(node.inputs) != 1 or node.inputs[0] not in boxes:
            continue
        exact.add(node.name)
        same_size = math.prod(node.out_shape) == math.prod(graph.shape_of(node.inputs[0]))
        if isinstance(op, _BOX_PRESERVING) and (same_size or isinstance(op, Pad)):
            boxes.add(node.name)
    return exact


class DeadlineReached(Exception):
    """Raised by :func:`intermediate_bounds` when its deadline passes between layers."""


def intermediate_bounds(graph: Graph, region: Region, config: BoundsConfig, use_crown: bool = True,
                        fixed: dict[str, Box] | None = None, deadline: float | None = None,
                        lines: dict[str, Lines] | None = None) -> dict[str, Box]:
    """Bounds of every value: interval bounds, tightened by CROWN at nonlinear inputs.

    ``lines`` (optional, filled here) caches the activations' default relaxation lines on the
    returned bounds; pass it on to :func:`spec_bounds` over the same bounds to reuse them.

    ``deadline`` (monotonic seconds) raises :class:`DeadlineReached` between layers once passed.
    ``fixed`` holds known valid bounds to intersect in before tightening (e.g. a parent
    domain's bounds, or split constraints); shapes ``(B, *shape)``. Neurons they already make
    stable need no CROWN pass.
    """
    needs = nonlinear_inputs(graph) if use_crown else {}
    exact = _exact_interval_values(graph) if region.l2_center is None else set()
    bounds: dict[str, Box] = {graph.input_name: (region.lower, region.upper)}
    lines = {} if lines is None else lines
    for node in graph.nodes:
        lo, hi = graph.ops[node.name].interval(*[bounds[i] for i in node.inputs])
        if fixed and node.name in fixed:
            lo, hi = torch.maximum(lo, fixed[node.name][0]), torch.minimum(hi, fixed[node.name][1])
        if node.name in needs and isinstance(graph.ops[node.name], Affine) and node.name not in exact:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineReached(f"time limit reached while bounding '{node.name}'")
            lo, hi = _tighten(graph, node.name, lo, hi, bounds, region, needs[node.name], config, lines)
        bounds[node.name] = (lo, hi)
    return bounds


def _tighten(graph, name, lo, hi, bounds, region, relu_only: bool, config: BoundsConfig, lines):
    """CROWN bounds of value ``name`` on the neurons that matter, intersected with ``lo, hi``.

    Each region bounds only its own neurons of interest (unstable ones when all consumers are
    ReLU-like): rows are gathered per region and padded to the largest count in the batch.
    Lower and upper bounds share one backward pass (measured: bounding one side first and the
    other only where still unstable costs more in per-pass overhead than it saves).
    """
    B = lo.shape[0]
    flat_lo, flat_hi = lo.reshape(B, -1).clone(), hi.reshape(B, -1).clone()
    wanted = (flat_lo < 0) & (flat_hi > 0) if relu_only else torch.ones_like(flat_lo, dtype=torch.bool)
    _tighten_rows(graph, name, wanted, (1.0, -1.0), flat_lo, flat_hi, lo, bounds, region, config, lines)
    return flat_lo.reshape(lo.shape), flat_hi.reshape(hi.shape)


def _tighten_rows(graph, name, wanted, signs, flat_lo, flat_hi, like, bounds, region, config, lines) -> None:
    """Intersect ``flat_lo``/``flat_hi`` ``(B, n)`` in place with the CROWN bounds of the
    ``wanted`` ``(B, n)`` neurons: lower bounds for sign ``+1``, upper bounds for ``-1``."""
    B, n = flat_lo.shape
    order = _wanted_first(wanted)   # (B, n) or, for one region, (1, r): the wanted indices only
    counts = wanted.sum(1)
    r_max = int(counts.max()) if B else 0
    if r_max == 0:
        return
    per_row = B * max(n, graph.n_inputs) * len(signs)
    chunk = max(1, config.max_batch_elements // max(per_row, 1))
    for start in range(0, r_max, chunk):
        idx = order[:, start:min(r_max, start + chunk)]  # (B, r)
        valid = torch.arange(start, start + idx.shape[1], device=idx.device).unsqueeze(0) < counts.unsqueeze(1)
        found = _bound_rows(graph, name, idx, valid, n, like, bounds, region, lines, signs)
        for sign, bound in zip(signs, found):
            target = flat_lo if sign > 0 else flat_hi
            cur = target.gather(1, idx)
            better = torch.maximum(cur, bound) if sign > 0 else torch.minimum(cur, bound)
            target.scatter_(1, idx, torch.where(valid, better, cur))


def _wanted_first(wanted: torch.Tensor) -> torch.Tensor:
    """Per region, the indices of its ``wanted`` ``(B, n)`` neurons in increasing order, then the
    others; for one region just the wanted ones (no sort needed)."""
    if wanted.shape[0] == 1:
        return wanted[0].nonzero().reshape(1, -1)
    return torch.argsort(wanted.to(torch.int8), dim=1, descending=True, stable=True)


def _bound_rows(graph, name, idx, valid, n, like, bounds, region, lines, signs) -> list[torch.Tensor]:
    """CROWN bounds of neurons ``idx`` ``(B, r)`` of value ``name``, one ``(B, r)`` tensor per
    sign: lower bounds for ``+1``, upper bounds for ``-1``.

    When a ``Linear`` on a flat vector computes the value, the first backward step of the unit
    rows is a gather of its weight rows (no product); otherwise the unit rows start the pass.
    """
    B, r = idx.shape
    first = _unit_rows_through_linear(graph, name, idx, valid, signs)
    if first is not None:
        A_in, const, below = first
        found = backward_bound(graph, below, A_in, bounds, region, lines=lines) + const
    else:
        unit = torch.zeros(B, r, n, dtype=like.dtype, device=like.device)
        unit.scatter_(2, idx.unsqueeze(-1), valid.unsqueeze(-1).to(like.dtype))
        A0 = torch.cat([unit if s == 1 else unit * s for s in signs], dim=1).reshape(B, len(signs) * r, *like.shape[1:])
        found = backward_bound(graph, name, A0, bounds, region, lines=lines)
    return [found[:, k * r:(k + 1) * r] * s for k, s in enumerate(signs)]


def _unit_rows_through_linear(graph, name, idx, valid, signs):
    """The unit rows of neurons ``idx`` ``(B, r)`` (zero where not ``valid``) after the backward
    step of the ``Linear`` computing ``name``: its weight rows ``(B, len(signs)·r, *in_shape)``
    times each sign, the bias terms ``(B, len(signs)·r)`` and the value they reached; ``None``
    unless that op is a ``Linear`` mapping a flat input to a flat output."""
    op = graph.ops.get(name)
    if not isinstance(op, Linear):
        return None
    node = graph.node_by_name[name]
    m, k = op.W_rows.shape
    in_shape = graph.shape_of(node.inputs[0])
    if math.prod(graph.shape_of(name)) != m or math.prod(in_shape) != k:
        return None
    B, r = idx.shape
    rows, bias = op.unit_rows_backward(idx)
    if not bool(valid.all()):
        rows = rows * valid.unsqueeze(-1)
        bias = None if bias is None else bias * valid
    A_in = torch.cat([rows if s == 1 else rows * s for s in signs], dim=1).reshape(B, len(signs) * r, *in_shape)
    const = 0.0 if bias is None else torch.cat([bias if s == 1 else bias * s for s in signs], dim=1)
    return A_in, const, node.inputs[0]


def spec_bounds(graph: Graph, C: torch.Tensor, bounds: dict[str, Box], region: Region,
                alphas: dict[str, torch.Tensor] | None = None, extra: dict[str, torch.Tensor] | None = None,
                trace: Trace | None = None, lines: dict[str, Lines] | None = None,
                extra_cols: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Lower bounds of ``C · y`` (``C``: ``(B, R, n_outputs)``) → ``(B, R)``; see
    :func:`~verifier.bounds.linear.backward_bound` for ``alphas``, ``extra``, ``trace`` and
    ``lines`` (relaxations cached by :func:`intermediate_bounds` over the same ``bounds``)."""
    B, R = C.shape[:2]
    A0 = C.reshape(B, R, *graph.output_full_shape)
    return backward_bound(graph, graph.output_name, A0, bounds, region, alphas, extra, trace, lines,
                          extra_cols=extra_cols)


def interval_spec_bounds(graph: Graph, C: torch.Tensor, bounds: dict[str, Box]) -> torch.Tensor:
    """Lower bounds of ``C · y`` from the output's interval box alone: ``(B, R)``."""
    lo, hi = bounds[graph.output_name]
    B = lo.shape[0]
    lo, hi = lo.reshape(B, 1, -1), hi.reshape(B, 1, -1)
    return (C.clamp(min=0) * lo + C.clamp(max=0) * hi).sum(-1)


def alpha_spec_bounds(graph: Graph, C: torch.Tensor, bounds: dict[str, Box], region: Region,
                      config: BoundsConfig, deadline: float, start: torch.Tensor | None = None,
                      done: Callable[[torch.Tensor], bool] | None = None,
                      params_out: dict | None = None) -> torch.Tensor:
    """α-CROWN: optimise the activation slopes for each row of ``C`` by Adam (projected to
    [0, 1]) and return the best lower bound per row: ``(B, R)``.

    Rows are independent, so the best slopes are kept per row and a last pass with them
    produces the returned bound; ``params_out`` (if given) receives those slopes by activation
    name (``(B, R, *shape)``), which reproduce the bound exactly. ``done(best)`` may end the
    optimisation early (e.g. once the property is proven). ``start`` is a known lower bound.
    """
    alphas = _initial_alphas(graph, C, bounds)
    with torch.no_grad():
        best = spec_bounds(graph, C, bounds, region, alphas)
    if start is not None and params_out is None:
        best = torch.maximum(best, start.detach())
    if alphas:
        best = optimise_rows(graph, C, bounds, region, alphas, {}, {}, config.alpha_lr,
                             config.alpha_iterations, deadline, done, best)
    if params_out is not None:
        params_out.update({k: v.detach() for k, v in alphas.items()})
    return best


def optimise_rows(graph, C, bounds, region, alphas, betas, signs, lr: float, iterations: int,
                  deadline: float, done, best: torch.Tensor) -> torch.Tensor:
    """Adam on slopes α ∈ [0, 1] and split multipliers β >= 0 (``extra = β·sign`` at the named
    values); ``alphas``/``betas`` end holding, per row, the values of the best bound seen, and the
    returned ``(B, R)`` bound is recomputed with them."""
    lines: dict[str, Lines] = {}  # default relaxations on the fixed bounds, shared by every step
    support = {k: _support(sg) for k, sg in signs.items() if k in betas}

    def bound() -> torch.Tensor:
        return spec_bounds(graph, C, bounds, region, alphas, _split_terms(betas, signs, support), lines=lines,
                           extra_cols=support)

    adam_keep_best(bound, alphas, betas, lr, iterations, deadline, done, best)
    with torch.no_grad():
        return bound()


def adam_keep_best(bound: Callable[[], torch.Tensor], alphas: dict, betas: dict, lr: float, iterations: int,
                   deadline: float, done, best: torch.Tensor) -> torch.Tensor:
    """Adam steps maximising every row of ``bound()`` ``(B, R)`` over slopes α ∈ [0, 1] (``alphas``)
    and multipliers β >= 0 (``betas``, half the rate), until ``iterations``, ``deadline`` or
    ``done(best)``; the parameters end holding, per row, the values of the best bound seen, which
    is returned (at least ``best``)."""
    keep_a = {k: v.detach().clone() for k, v in alphas.items()}
    keep_b = {k: v.detach().clone() for k, v in betas.items()}
    groups = [(list(alphas.values()), lr)]
    if betas:
        groups.append((list(betas.values()), lr / 2))
    opt = Adam(groups)
    for _ in range(iterations):
        if time.monotonic() >= deadline or (done is not None and done(best)):
            break
        lb = bound()
        if not lb.requires_grad:
            break
        improved = lb.detach() > best
        best = torch.maximum(best, lb.detach())
        _snapshot(keep_a, alphas, improved)
        _snapshot(keep_b, betas, improved)
        opt.zero_grad()
        (-lb.sum()).backward()
        opt.step()
        with torch.no_grad():
            for a in alphas.values():
                a.clamp_(0.0, 1.0)
            for b in betas.values():
                b.clamp_(min=0.0)
    with torch.no_grad():
        for store, kept in ((alphas, keep_a), (betas, keep_b)):
            for k in store:
                store[k].copy_(kept[k])
    return best


def _support(sign: torch.Tensor) -> torch.Tensor:
    """Indices of the last axis where the split signs ``(B, 1, *shape)`` are nonzero somewhere:
    the only neurons a split multiplier reaches (structurally, whatever β's value)."""
    return sign.reshape(-1, sign.shape[-1]).ne(0).any(0).nonzero().squeeze(1)


def _split_terms(betas, signs, support) -> dict[str, torch.Tensor]:
    """β-CROWN's coefficients ``β·sign`` at each split value, compact on ``support``."""
    return {k: (b * signs[k]).index_select(-1, support[k]) for k, b in betas.items()}


def _snapshot(kept: dict, current: dict, improved: torch.Tensor) -> None:
    """Copy the parameters of rows whose bound improved (``improved``: ``(B, R)``)."""
    for k, v in current.items():
        mask = improved.reshape(*improved.shape, *([1] * (v.dim() - 2)))
        kept[k] = torch.where(mask, v.detach(), kept[k])


def _initial_alphas(graph: Graph, C: torch.Tensor, bounds: dict[str, Box],
                    names: set[str] | None = None) -> dict[str, torch.Tensor]:
    """One slope parameter per (region, row, neuron) of every optimisable activation (of those
    in ``names`` when given)."""
    alphas = {}
    B, R = C.shape[:2]
    for node in graph.nodes:
        op = graph.ops[node.name]
        if not isinstance(op, Activation) or not op.alpha_shape_ok() or (names is not None and node.name not in names):
            continue
        lo, hi = bounds[node.inputs[0]]
        if isinstance(op, _PIECEWISE):
            init = (hi >= -lo).to(lo.dtype)
        else:
            init = torch.full_like(lo, 0.5)
        alphas[node.name] = init.unsqueeze(1).expand(B, R, *lo.shape[1:]).clone().requires_grad_(True)
    return alphas
