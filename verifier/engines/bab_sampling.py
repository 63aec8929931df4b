"""A late, wide sampling search inside input-split branch and bound.

Some counterexamples sit in slivers of the input region that a few restarts of gradient
descent miss (e.g. against a face of the box) but dense uniform sampling hits. Once a search has
used :data:`SAMPLE_AFTER` of its time without an answer, the open boxes (the only places an
unsafe input can still be) are sampled for up to :data:`SAMPLE_SHARE` of the time, each box in
proportion to its volume; the lowest-margin points are then refined by the attack's signed
gradient steps (over the whole region of the case: any unsafe input there will do) and re-run
by onnxruntime before they count. A search that closes early never pays for it.
"""
from __future__ import annotations

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
    chunk); returns a counterexample confirmed by onnxruntime (or None) and the points drawn."""
    g, cfg = s.graph, s.config.attack
    stop = min(s.deadline, time.monotonic() + seconds)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    width = (upper - lower).clamp(min=0)
    log_volume = torch.log(width.clamp(min=1e-300)).sum(1)
    weights = torch.softmax(log_volume - log_volume.max(), 0).cpu()
    keep = max(1, cfg.restarts)
    best_x = lower[:0]
    best_m = torch.zeros(0, dtype=lower.dtype, device=lower.device)
    drawn = 0
    with torch.no_grad():
        while drawn == 0 or time.monotonic() < stop:
            idx = torch.multinomial(weights, CHUNK, replacement=True, generator=gen).to(lower.device)
            u = torch.rand(CHUNK, lower.shape[1], generator=gen, dtype=torch.float64).to(lower)
            x = lower[idx] + u * width[idx]
            m = s.unsafe.margins(g.forward_flat(x))
            best_x, best_m = torch.cat([best_x, x]), torch.cat([best_m, m])
            order = torch.argsort(best_m)[:keep]
            best_x, best_m = best_x[order], best_m[order]
            drawn += CHUNK
    region = s.case.region
    lo = torch.as_tensor(region.lower, dtype=g.dtype, device=g.device)
    hi = torch.as_tensor(region.upper, dtype=g.dtype, device=g.device)
    x, m = pgd(g, s.unsafe, region, best_x, lo, hi, cfg, s.deadline)
    x, m = torch.cat([best_x, x]), torch.cat([best_m, m])
    top = x[torch.argsort(m)[: cfg.confirm_top]]
    return confirm(s.runner, s.case, s.case_index, top.double().cpu().numpy(), g.input_shape), drawn
