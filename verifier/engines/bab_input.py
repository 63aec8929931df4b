"""Input-split branch and bound for low-dimensional inputs.

Sub-boxes are bounded as one batch (CROWN, α-CROWN on small batches), split along the input
with the largest ``|coefficient| × width`` in the linear bound of the weakest disjunct, and
probed with cheap candidates (the vertex minimising the linear bound, the centre) whose
violations onnxruntime must confirm.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch

from verifier.bounds.forward import forward_bounds
from verifier.bounds.crown import alpha_spec_bounds, intermediate_bounds, spec_bounds
from verifier.bounds.linear import Region, Trace
from verifier.config import VerifyConfig
from verifier.engines.confirm import UnsafeSet, confirm
from verifier.engines.rows import RowSpec
from verifier.ir.graph import Graph
from verifier.result import Counterexample, Leaf
from verifier.spec.property import Case


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


@dataclass
class _Store:
    """Open domains: boxes ``(D, n)``, their weakest score and chosen split dimension."""

    lower: torch.Tensor
    upper: torch.Tensor
    score: torch.Tensor
    split_dim: torch.Tensor

    def __len__(self) -> int:
        return self.lower.shape[0]

    def pop(self, k: int):
        order = torch.argsort(self.score)
        take, keep = order[:k], order[k:]
        out = (self.lower[take], self.upper[take], self.split_dim[take])
        self.lower, self.upper = self.lower[keep], self.upper[keep]
        self.score, self.split_dim = self.score[keep], self.split_dim[keep]
        return out

    def push(self, lower, upper, score, split_dim) -> None:
        self.lower = torch.cat([self.lower, lower])
        self.upper = torch.cat([self.upper, upper])
        self.score = torch.cat([self.score, score])
        self.split_dim = torch.cat([self.split_dim, split_dim])


def input_split(graph: Graph, case: Case, case_index: int, runner, config: VerifyConfig,
                deadline: float, progress) -> SplitOutcome:
    """Branch and bound over sub-boxes of the case's region until proven, falsified or out of time."""
    rows = RowSpec.of(case, graph.n_outputs, graph.dtype, graph.device)
    unsafe = UnsafeSet(case, graph.n_outputs, graph.dtype, graph.device)
    kw = dict(dtype=graph.dtype, device=graph.device)
    lo = torch.as_tensor(case.region.lower, **kw).unsqueeze(0)
    hi = torch.as_tensor(case.region.upper, **kw).unsqueeze(0)
    out = SplitOutcome(case_index=case_index)
    score, dims, cex = _bound_and_probe(graph, rows, unsafe, lo, hi, case, case_index, runner, config, out)
    if cex is not None:
        out.counterexample = cex
        return out
    store = _Store(lo[:0], hi[:0], score[:0], dims[:0])
    _file(store, lo, hi, score, dims, config.proof_margin, out)
    last_report = time.monotonic()
    while len(store) and time.monotonic() < deadline:
        if len(store) > config.bab.max_domains:
            out.reason = f"domain store reached its cap of {config.bab.max_domains} sub-domains"
            break
        plo, phi, pdim = store.pop(max(1, config.bab.batch // (2 * _width(graph, config))))
        if _width(graph, config) > 1:
            clo, chi, score, dims, cex = _strong_split(graph, rows, unsafe, plo, phi, case, case_index,
                                                       runner, config, out)
        else:
            clo, chi = _split(plo, phi, pdim)
            score, dims, cex = _bound_and_probe(graph, rows, unsafe, clo, chi, case, case_index, runner,
                                                config, out)
        if cex is not None:
            out.counterexample = cex
            return out
        _file(store, clo, chi, score, dims, config.proof_margin, out)
        if time.monotonic() - last_report > 2.0:
            last_report = time.monotonic()
            progress(f"input split: {len(store)} open, {out.domains_bounded} bounded, "
                     f"worst bound {float(store.score.min()) if len(store) else 0.0:.4g}")
    out.open_domains = len(store)
    out.proven = len(store) == 0 and not out.reason
    out.best_bound = float(store.score.min()) if len(store) else 0.0
    if not out.proven and not out.reason:
        out.reason = f"time limit with {len(store)} open sub-domains (worst bound {out.best_bound:.4g})"
    return out


def _width(graph: Graph, config: VerifyConfig) -> int:
    """How many split dimensions are tried per domain (all of them for strong branching)."""
    return graph.n_inputs if config.bab.input_branching == "strong" else 1


def _strong_split(graph, rows, unsafe, lo, hi, case, case_index, runner, config, out):
    """Bound the two halves along every input dimension; keep, per domain, the split whose
    weaker half scores best. Returns the kept children (already bounded)."""
    D, n = lo.shape
    dims = torch.arange(n, device=lo.device).repeat(D)
    clo, chi = _split(lo.repeat_interleave(n, 0), hi.repeat_interleave(n, 0), dims)
    score, cdims, cex = _bound_and_probe(graph, rows, unsafe, clo, chi, case, case_index, runner, config, out)
    if cex is not None:
        return clo, chi, score, cdims, cex
    half = D * n
    worse = torch.minimum(score[:half], score[half:]).reshape(D, n)
    best = worse.argmax(dim=1) + torch.arange(D, device=lo.device) * n
    keep = torch.cat([best, best + half])
    return clo[keep], chi[keep], score[keep], cdims[keep], None


def _split(lower, upper, dims):
    """Halve each box along its chosen dimension: ``(D, n)`` → ``(2D, n)``."""
    idx = torch.arange(lower.shape[0], device=lower.device)
    mid = (lower[idx, dims] + upper[idx, dims]) / 2
    left_hi, right_lo = upper.clone(), lower.clone()
    left_hi[idx, dims] = mid
    right_lo[idx, dims] = mid
    return torch.cat([lower, right_lo]), torch.cat([left_hi, upper])


def _file(store: _Store, lo, hi, score, dims, margin: float, out: SplitOutcome) -> None:
    closed = score > margin
    if bool(closed.any()):
        for l, h, b in zip(lo[closed].double().cpu().numpy(), hi[closed].double().cpu().numpy(),
                           score[closed].double().cpu().tolist()):
            out.leaves.append(Leaf(out.case_index, "bab-input/crown", b, l, h))
    keep = ~closed
    store.push(lo[keep], hi[keep], score[keep], dims[keep])


def _bound_and_probe(graph, rows: RowSpec, unsafe, lo, hi, case, case_index, runner, config, out):
    """Bound a batch of boxes; returns (weakest score, split dimension, counterexample or None)."""
    B = lo.shape[0]
    full = (B, *graph.input_full_shape)
    region = Region(lo.reshape(full), hi.reshape(full))
    trace = Trace()
    with torch.no_grad():
        if config.bab.intermediate == "forward":
            bounds = forward_bounds(graph, region)
        else:
            bounds = intermediate_bounds(graph, region, config.bounds)
        lb = spec_bounds(graph, rows.batch_C(B), bounds, region, trace=trace)
    score = rows.worst(lb)
    if config.bab.input_alpha_iterations and bool((score <= config.proof_margin).any()):
        cfg = dataclasses.replace(config.bounds, alpha_iterations=config.bab.input_alpha_iterations)
        lb = alpha_spec_bounds(graph, rows.batch_C(B), bounds, region, cfg, time.monotonic() + 5.0,
                               start=lb, done=lambda b: bool((rows.worst(b) > config.proof_margin).all()))
        score = rows.worst(lb)
    out.domains_bounded += B
    A = trace.A_x.reshape(B, lb.shape[1], -1)
    worst = rows.worst_row(lb)
    a = A[torch.arange(B), worst]
    dims = (a.abs() * (hi - lo)).argmax(dim=1)
    cex = _probe(graph, unsafe, lo, hi, a, score, case, case_index, runner, config.proof_margin)
    return score, dims, cex


def _probe(graph, unsafe, lo, hi, a, score, case, case_index, runner, margin):
    """Evaluate each open box's centre and the vertex minimising the linear bound."""
    open_ = score <= margin
    if not bool(open_.any()):
        return None
    lo, hi, a = lo[open_], hi[open_], a[open_]
    vertex = torch.where(a > 0, lo, hi)
    cand = torch.cat([vertex, (lo + hi) / 2])
    with torch.no_grad():
        m = unsafe.margins(graph.forward_flat(cand))
    bad = torch.nonzero(m <= 1e-6).flatten()[:8]
    if bad.numel() == 0:
        return None
    return confirm(runner, case, case_index, cand[bad].double().cpu().numpy(), graph.input_shape)
