"""A late, wide sampling search inside input-split branch and bound.

Some counterexamples sit in slivers of the input region that a few restarts of gradient
descent miss (e.g. against a face of the box) but dense uniform sampling hits. Once a search has
used :data:`SAMPLE_AFTER` of its time without an answer, the open boxes (the only places an
unsafe input can still be) are sampled for up to :data:`SAMPLE_SHARE` of the time, each box in
proportion to its volume, in rounds; each round's lowest-margin points are refined by small
signed-gradient steps (over the whole region of the case: any unsafe input there will do) and
re-run by onnxruntime before they count. A search that closes early never pays for it.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from verifier.engines.attack import pgd
from verifier.engines.confirm import confirm
from verifier.result import Counterexample

SAMPLE_AFTER = 0.25   # share of the search's time after which the sampling runs (once)
SAMPLE_SHARE = 0.10   # share of the search's time it may use
CHUNK = 65536         # points per forward batch


@dataclass
class LateSampling:
    """When the sampling runs, and whether it has."""

    due: float
    until: float
    done: bool = False

    @staticmethod
    def plan(started: float, deadline: float) -> "LateSampling":
        span = max(0.0, deadline - started)
        return LateSampling(started + SAMPLE_AFTER * span, SAMPLE_SHARE * span)

    def turn(self, now: float) -> bool:
        return not self.done and now >= self.due


def sample_open_boxes(s, lower: torch.Tensor, upper: torch.Tensor, seconds: float,
                      seed: int) -> tuple[Counterexample | None, int]:
    """Sample the boxes ``lower``/``upper`` ``(D, n)`` of search ``s`` for ``seconds`` (at least one
    round); returns a counterexample confirmed by onnxruntime (or None) and the points drawn.

    Rounds of :data:`ROUND_CHUNKS` chunks, each ending with short gradient steps from its best
    points (:data:`POLISH`) and onnxruntime on the best of those: one long draw would keep only
    the best few points of millions, and a near miss needs small steps, not another draw."""
    stop = min(s.deadline, time.monotonic() + seconds)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    width = (upper - lower).clamp(min=0)
    log_volume = torch.log(width.clamp(min=1e-300)).sum(1)
    weights = torch.softmax(log_volume - log_volume.max(), 0).cpu()
    drawn = 0
    while drawn == 0 or time.monotonic() < stop:
        best_x, count = _draw_round(s, lower, width, weights, gen)
        drawn += count
        found = _polish_and_confirm(s, best_x)
        if found is not None:
            return found, drawn
    return None, drawn


ROUND_CHUNKS = 4
POLISH = dict(step_fraction=0.005, steps=100)   # measured on ACAS 1_9 / property 7: 0.25 (the
                                                # attack's own steps) never lands in its sliver


def _draw_round(s, lower, width, weights, gen) -> tuple[torch.Tensor, int]:
    """The ``restarts`` lowest-margin points of ``ROUND_CHUNKS`` chunks drawn by box volume, and
    the points drawn (chunks are smaller for properties with thousands of disjuncts)."""
    g, keep = s.graph, max(1, s.config.attack.restarts)
    n = s.unsafe.chunk_for(CHUNK)
    best_x, best_m = lower[:0], torch.zeros(0, dtype=lower.dtype, device=lower.device)
    with torch.no_grad():
        for _ in range(ROUND_CHUNKS):
            idx = torch.multinomial(weights, n, replacement=True, generator=gen).to(lower.device)
            u = torch.rand(n, lower.shape[1], generator=gen, dtype=torch.float64).to(lower)
            x = lower[idx] + u * width[idx]
            m = s.unsafe.margins(g.forward_flat(x))
            best_x, best_m = torch.cat([best_x, x]), torch.cat([best_m, m])
            order = torch.argsort(best_m)[:keep]
            best_x, best_m = best_x[order], best_m[order]
    return best_x, ROUND_CHUNKS * n


def _polish_and_confirm(s, best_x: torch.Tensor) -> Counterexample | None:
    """Small signed-gradient steps from ``best_x`` over the case's whole region (any unsafe input
    there will do), then onnxruntime on the best points before and after."""
    g, cfg = s.graph, dataclasses.replace(s.config.attack, **POLISH)
    region = s.case.region
    lo = torch.as_tensor(region.lower, dtype=g.dtype, device=g.device)
    hi = torch.as_tensor(region.upper, dtype=g.dtype, device=g.device)
    with torch.no_grad():
        m0 = s.unsafe.margins(g.forward_flat(best_x))
    x, m = pgd(g, s.unsafe, region, best_x, lo, hi, cfg, s.deadline)
    x, m = torch.cat([best_x, x]), torch.cat([m0, m])
    top = x[torch.argsort(m)[: s.config.attack.confirm_top]]
    return confirm(s.runner, s.case, s.case_index, top.double().cpu().numpy(), g.input_shape)
