"""What both branch-and-bound searches share: the outcome of a search on one case, and the
probe that looks for counterexamples in the open domains of a bounded batch.

The probe evaluates cheap candidates per open domain (the input-region vertex minimising the
linear bound, the centre, a few uniform samples), runs a short PGD from the best of them in
the most promising domains, and has onnxruntime confirm any candidate that looks unsafe.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from verifier.config import AttackConfig
from verifier.engines.attack import pgd
from verifier.engines.confirm import confirm
from verifier.result import Counterexample


@dataclass
class SplitOutcome:
    """What a branch-and-bound run on one case found."""

    proven: bool = False
    counterexample: Counterexample | None = None
    reason: str = ""
    open_domains: int = 0
    best_bound: float = float("-inf")
    domains_bounded: int = 0
    case_index: int = 0
    leaves: list = field(default_factory=list)
    notes: list = field(default_factory=list)


PROBE_ATTACK = AttackConfig(steps=10, step_fraction=0.5)
PGD_BOXES = 16  # most promising open boxes searched by a short PGD run per batch
PROBE_SAMPLES = 8  # uniform samples evaluated in every open box


def _probe_rng(like: torch.Tensor) -> torch.Generator:
    """A generator seeded from the boxes themselves: probes are reproducible run to run."""
    return torch.Generator().manual_seed(int(like.shape[0] * 7919 + float(like.sum()) * 1e6) % (2**31))


def probe_open_domains(graph, unsafe, lo, hi, a, score, case, case_index, runner, margin,
                       hint_out: dict | None = None):
    """Evaluate each open box's centre, the vertex minimising the linear bound and a few uniform
    samples, then run a short PGD inside the most promising boxes from their best point so far
    (each box searched from where it came closest). ``lo``/``hi``: the domains' input boxes
    ``(D, n_inputs)``; ``a``: the input coefficients of each domain's worst row ``(D, n_inputs)``;
    ``score``: the domains' bounds ``(D,)`` (open when ``<= margin``). Returns a counterexample
    confirmed by onnxruntime, or None. ``hint_out['hint']`` gets the smallest margin evaluated
    per box ``(D,)`` (+inf for closed boxes)."""
    open_ = score <= margin
    if not bool(open_.any()):
        return None
    lo, hi, a = lo[open_], hi[open_], a[open_]
    vertex = torch.where(a > 0, lo, hi)
    u = torch.rand(PROBE_SAMPLES * lo.shape[0], lo.shape[1], generator=_probe_rng(lo), dtype=lo.dtype)
    uniform = lo.repeat(PROBE_SAMPLES, 1) + u.to(lo.device) * (hi - lo).repeat(PROBE_SAMPLES, 1)
    cand = torch.cat([vertex, (lo + hi) / 2, uniform])
    with torch.no_grad():
        m = unsafe.margins(graph.forward_flat(cand))
    n_open = vertex.shape[0]
    concrete, which = m.reshape(PROBE_SAMPLES + 2, n_open).min(dim=0)  # best evaluated margin per box
    start = cand.reshape(PROBE_SAMPLES + 2, n_open, -1)[which, torch.arange(n_open, device=which.device)]
    top = torch.argsort(concrete)[:PGD_BOXES]
    x, mp = pgd(graph, unsafe, case.region, start[top], lo[top], hi[top], PROBE_ATTACK, time.monotonic() + 1.0)
    if hint_out is not None:
        best = concrete.clone()
        best[top] = torch.minimum(best[top], mp.to(best.dtype))
        hint_out["hint"] = torch.full_like(score, torch.inf).masked_scatter(open_, best.to(score.dtype))
    cand, m = torch.cat([cand, x]), torch.cat([m, mp])
    bad = torch.nonzero(m <= 1e-6).flatten()[:8]
    if bad.numel() == 0:
        return None
    return confirm(runner, case, case_index, cand[bad].double().cpu().numpy(), graph.input_shape)
