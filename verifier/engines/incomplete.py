"""Incomplete verification of one case: interval → CROWN → α-CROWN, each only if needed; and
α-CROWN on intermediate bounds optimised layer by layer (:func:`bound_case_layers`), which the
pipeline runs after its second attack."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from verifier.bounds.crown import DeadlineReached, alpha_spec_bounds, interval_spec_bounds, intermediate_bounds, spec_bounds
from verifier.bounds.linear import Region
from verifier.config import BoundsConfig
from verifier.engines.memory import free_memory, is_out_of_memory
from verifier.ir.graph import Graph
from verifier.spec.property import Case

METHODS = ("ibp", "crown", "alpha-crown")


@dataclass
class CaseBounds:
    """Lower bounds of each unsafe row ``C_k y - d_k`` and which disjuncts they exclude."""

    method: str
    row_lower: list[np.ndarray]   # per disjunct: (m_k,) lower bounds of C_k y - d_k
    excluded: list[bool]          # per disjunct: some row's lower bound > margin
    multipliers: dict | None = None  # α-CROWN slopes that give these bounds
    note: str = ""                # why escalation stopped early (e.g. out of memory in the next stage)
    layers: dict | None = None    # value name → LayerSlopes of the optimised intermediate bounds used
    root: dict | None = None      # those intermediate bounds (torch, batch of one), for branch and bound

    @property
    def proven(self) -> bool:
        return all(self.excluded)

    def worst(self) -> float:
        """The best lower bound of the weakest disjunct (> 0 everywhere means proven)."""
        return float(min(r.max() if r.size else -np.inf for r in self.row_lower))


def case_region(graph: Graph, case: Case) -> Region:
    """The case's input region as a batch of one, in the graph's dtype and device."""
    kw = dict(dtype=graph.dtype, device=graph.device)
    shape = (1, *graph.input_full_shape)
    lower = torch.as_tensor(case.region.lower, **kw).reshape(shape)
    upper = torch.as_tensor(case.region.upper, **kw).reshape(shape)
    if case.region.l2_center is None:
        return Region(lower, upper)
    return Region(lower, upper, torch.as_tensor(case.region.l2_center, **kw).reshape(1, -1),
                  torch.as_tensor([case.region.l2_radius], **kw))


def stacked_rows(case: Case, graph: Graph) -> tuple[torch.Tensor, np.ndarray, list[int]]:
    """All unsafe rows of a case: ``C`` ``(1, R, n_out)``, ``d`` ``(R,)`` and rows per disjunct."""
    Cs = [conj.C for conj in case.unsafe]
    sizes = [c.shape[0] for c in Cs]
    C = np.concatenate(Cs) if sum(sizes) else np.zeros((0, graph.n_outputs))
    d = np.concatenate([conj.d for conj in case.unsafe]) if sum(sizes) else np.zeros(0)
    return torch.as_tensor(C, dtype=graph.dtype, device=graph.device).unsqueeze(0), d, sizes


def bound_case(graph: Graph, case: Case, method: str, config: BoundsConfig, margin: float,
               deadline: float) -> list[CaseBounds]:
    """Run the methods up to ``method`` in order, stopping once the case is proven.

    Returns the bounds of each stage that ran (the last one is the tightest).
    """
    region = case_region(graph, case)
    C, d, sizes = stacked_rows(case, graph)
    if min(sizes, default=0) == 0:  # a disjunct without output rows: every input of the region is unsafe
        return [_judge("ibp", torch.zeros(1, C.shape[1], dtype=graph.dtype), d, sizes, margin)]
    stages = METHODS[: METHODS.index(method) + 1]
    out: list[CaseBounds] = []
    best = None
    with torch.no_grad():
        bounds = intermediate_bounds(graph, region, config, use_crown=False)
        best = interval_spec_bounds(graph, C, bounds)
    out.append(_judge("ibp", best, d, sizes, margin))
    for stage in stages[1:]:
        if out[-1].proven or time.monotonic() >= deadline:
            break
        try:
            bounds, best, done = _stage(graph, stage, region, C, d, sizes, bounds, best, config, margin,
                                        deadline, out)
        except Exception as e:  # out of memory: keep what the cheaper stages found, say why
            if not is_out_of_memory(e):
                raise
            free_memory()
            out[-1].note = f"out of memory in {stage}; kept the {out[-1].method} bounds"
            break
        if done:
            break
    return out


def wants_layer_stage(graph: Graph, config: BoundsConfig) -> bool:
    """Whether :func:`bound_case_layers` runs for cases α-CROWN left open: α-CROWN is the
    method, the stage has steps and the input is large enough that ReLU-split branch and bound
    (which starts from the layer bounds) comes next."""
    return (config.method == "alpha-crown" and config.layer_alpha_iterations > 0
            and graph.n_inputs >= config.layer_alpha_min_inputs)


def bound_case_layers(graph: Graph, case: Case, config: BoundsConfig, margin: float,
                      deadline: float) -> CaseBounds | None:
    """α-CROWN again, on intermediate bounds whose neurons got their own optimised slopes
    (:func:`~verifier.bounds.crown_layers.layer_optimised_bounds`, at most
    ``config.layer_alpha_share`` of the time left). The result carries the slopes and bounds
    (``layers``, ``root``); ``None`` when nothing was optimised. Out of memory: ``None``
    as well, with the memory freed (the plain α-CROWN bounds stand)."""
    from verifier.bounds.crown_layers import layer_optimised_bounds

    now = time.monotonic()
    if now >= deadline:
        return None
    region = case_region(graph, case)
    C, d, sizes = stacked_rows(case, graph)
    try:
        bounds, slopes = layer_optimised_bounds(graph, region, config,
                                                now + config.layer_alpha_share * (deadline - now))
        if not slopes:
            return None
        done = lambda lb: _judge("alpha-crown", lb, d, sizes, margin).proven  # noqa: E731
        params: dict = {}
        best = alpha_spec_bounds(graph, C, bounds, region, config, deadline, done=done, params_out=params)
    except Exception as e:
        if not is_out_of_memory(e):
            raise
        free_memory()
        return None
    judged = _judge("alpha-crown-layers", best, d, sizes, margin)
    judged.multipliers = {"alpha": {k: v[0].double().cpu().numpy() for k, v in params.items()}}
    judged.layers, judged.root = slopes, bounds
    return judged


def _stage(graph, stage, region, C, d, sizes, bounds, best, config, margin, deadline, out):
    """Run one CROWN or α-CROWN stage, appending its judgement to ``out``; returns the new
    intermediate bounds, the best row bounds and whether to stop (deadline inside CROWN)."""
    if stage == "crown":
        try:
            with torch.no_grad():
                lines: dict = {}
                bounds = intermediate_bounds(graph, region, config, deadline=deadline, lines=lines)
                best = torch.maximum(best, spec_bounds(graph, C, bounds, region, lines=lines))
        except DeadlineReached:
            return bounds, best, True
        out.append(_judge(stage, best, d, sizes, margin))
        return bounds, best, False
    done = lambda lb: _judge(stage, lb, d, sizes, margin).proven  # noqa: E731
    params: dict = {}
    best = alpha_spec_bounds(graph, C, bounds, region, config, deadline, done=done, params_out=params)
    judged = _judge(stage, best, d, sizes, margin)
    judged.multipliers = {"alpha": {k: v[0].double().cpu().numpy() for k, v in params.items()}}
    out.append(judged)
    return bounds, best, False


def _judge(method: str, lower: torch.Tensor, d: np.ndarray, sizes: list[int], margin: float) -> CaseBounds:
    rows = lower[0].detach().double().cpu().numpy() - d
    parts, start = [], 0
    for m in sizes:
        parts.append(rows[start:start + m])
        start += m
    excluded = [bool(p.size and p.max() > margin) for p in parts]
    return CaseBounds(method, parts, excluded)
