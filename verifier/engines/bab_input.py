"""Input-split branch and bound for low-dimensional inputs.

Sub-boxes are bounded as one batch by CROWN (each child starting from its parent's
intermediate bounds, which stay valid on a sub-box), split by strong branching (the halves
along every input dimension are bounded and the split whose weaker half scores best is kept)
or by the largest ``|coefficient| × width`` of the linear bound, and probed with cheap
candidates (the vertex minimising the linear bound, the centre) that onnxruntime must confirm.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from verifier.bounds.crown import alpha_spec_bounds, intermediate_bounds, nonlinear_inputs, spec_bounds
from verifier.bounds.forward import forward_bounds
from verifier.bounds.linear import Region, Trace
from verifier.config import VerifyConfig
from verifier.engines.bab_common import SplitOutcome, probe_open_domains
from verifier.engines.bab_milp import MILP_MAX_UNSTABLE, MilpHandoff, solve_box
from verifier.engines.bab_sampling import LateSampling, sample_open_boxes
from verifier.engines.confirm import UnsafeSet
from verifier.engines.memory import in_halves
from verifier.engines.row_combination import combined_bounds
from verifier.engines.rows import RowSpec
from verifier.ir.graph import Graph
from verifier.result import Leaf
from verifier.spec.property import Case


@dataclass
class _Domains:
    """A batch of sub-boxes ``(D, n)`` with their scores, split dimensions and intermediate
    bounds (value name → (lo, hi) ``(D, *shape)``)."""

    lower: torch.Tensor
    upper: torch.Tensor
    score: torch.Tensor
    split_dim: torch.Tensor
    inter: dict
    path: torch.Tensor                  # (D, P) int64: dims halved from the root, -1 padded
    hint: torch.Tensor                  # (D,) smallest unsafe margin evaluated in the box (+inf: none)
    lambdas: torch.Tensor | None = None  # (D, R) row weights whose combination gives the score (0: unused)
    alphas: dict | None = None          # α slopes (D, R, *shape) of domains bounded by α-CROWN
    alpha_used: torch.Tensor | None = None  # (D,) which domains' scores come from those slopes

    def __len__(self) -> int:
        return self.lower.shape[0]

    def select(self, idx: torch.Tensor) -> "_Domains":
        alphas = None if self.alphas is None else {k: v[idx] for k, v in self.alphas.items()}
        used = None if self.alpha_used is None else self.alpha_used[idx]
        lams = None if self.lambdas is None else self.lambdas[idx]
        return _Domains(self.lower[idx], self.upper[idx], self.score[idx], self.split_dim[idx],
                        {n: (lo[idx], hi[idx]) for n, (lo, hi) in self.inter.items()}, self.path[idx],
                        self.hint[idx], lams, alphas, used)

    def extend(self, other: "_Domains") -> "_Domains":
        cat = torch.cat
        return _Domains(cat([self.lower, other.lower]), cat([self.upper, other.upper]),
                        cat([self.score, other.score]), cat([self.split_dim, other.split_dim]),
                        {n: (cat([lo, other.inter[n][0]]), cat([hi, other.inter[n][1]]))
                         for n, (lo, hi) in self.inter.items()}, _cat_paths(self.path, other.path),
                        cat([self.hint, other.hint]))


@dataclass
class _Search:
    """The fixed parts of one case's search."""

    graph: Graph
    rows: RowSpec
    unsafe: UnsafeSet
    case: Case
    case_index: int
    runner: object
    config: VerifyConfig
    out: SplitOutcome
    deadline: float = float("inf")
    combined: bool = False          # some disjunct has several rows (bound their combinations too)


def input_split(graph: Graph, case: Case, case_index: int, runner, config: VerifyConfig,
                deadline: float, progress) -> SplitOutcome:
    """Branch and bound over sub-boxes of the case's region until proven, falsified or out of time."""
    out = SplitOutcome(case_index=case_index)
    s = _Search(graph, RowSpec.of(case, graph.n_outputs, graph.dtype, graph.device),
                UnsafeSet(case, graph.n_outputs, graph.dtype, graph.device), case, case_index, runner, config, out,
                deadline, any(c.C.shape[0] > 1 for c in case.unsafe))
    kw = dict(dtype=graph.dtype, device=graph.device)
    lo = torch.as_tensor(case.region.lower, **kw).unsqueeze(0)
    hi = torch.as_tensor(case.region.upper, **kw).unsqueeze(0)
    batch, cex = _bound_and_probe(s, lo, hi, None, torch.zeros(1, 0, dtype=torch.long, device=graph.device))
    store = batch.select(torch.zeros(0, dtype=torch.long, device=graph.device))
    last = time.monotonic()
    handoff = MilpHandoff.plan(graph, config.bab.milp_after, last, deadline)
    sampling = LateSampling.plan(last, deadline)
    rounds = 0
    while cex is None:
        store = _file(s, store, batch)
        if not len(store) or time.monotonic() >= deadline:
            break
        if len(store) > config.bab.max_domains:
            out.reason = f"domain store reached its cap of {config.bab.max_domains} sub-domains"
            break
        if sampling.turn(time.monotonic()):
            sampling.done = True
            cex, drawn = sample_open_boxes(s, store.lower, store.upper, sampling.until, config.seed + 2)
            out.notes.append(f"sampled {drawn} points in the {len(store)} open boxes")
            if cex is not None:
                break
        if handoff.turn(time.monotonic()):
            store, cex = _to_milp(s, store, handoff, deadline)
            batch = store.select(torch.zeros(0, dtype=torch.long, device=graph.device))  # nothing new to file
            continue
        rounds += 1  # odd rounds: weakest bound first (toward a proof); even: most promising for a
        order = torch.argsort(store.score if rounds % 2 else store.hint)  # counterexample first
        width = graph.n_inputs if config.bab.input_branching == "strong" else 1
        k = max(1, config.bab.batch_on(graph.device) // (2 * width))
        parents, store = store.select(order[:k]), store.select(order[k:])
        batch, cex = _split_fitting(s, parents, strong=width > 1)
        if time.monotonic() - last > 2.0:
            last = time.monotonic()
            progress(f"input split: {len(store) + len(batch)} open, {out.domains_bounded} bounded, "
                     f"worst bound {float(store.score.min()) if len(store) else 0.0:.4g}, "
                     f"closest evaluated margin {float(store.hint.min()) if len(store) else 0.0:.4g}")
    out.counterexample = cex
    if handoff.calls:
        out.notes.append(handoff.summary())
    return _finish(out, store)


def _to_milp(s: _Search, store: _Domains, handoff: MilpHandoff, deadline: float):
    """Hand the open box with the fewest unstable ReLU neurons (the MILP's binaries) to the
    MILP, if it has at most :data:`MILP_MAX_UNSTABLE`: settled boxes become leaves, the rest
    stay open. Every hand-off, made or not, pushes the next turn back by the time it took."""
    unstable = _unstable_counts(s.graph, store.inter)
    worst = int(torch.argmin(unstable))
    if int(unstable[worst]) > MILP_MAX_UNSTABLE:
        handoff.record(0.05, False, attempted=False)
        return store, None
    lo, hi = store.lower[worst], store.upper[worst]
    closed, cex = solve_box(s, lo, hi, handoff, deadline)
    if not closed:
        return store, cex
    s.out.leaves.append(Leaf(s.case_index, "bab-input/milp", s.config.proof_margin,
                             lo.double().cpu().numpy(), hi.double().cpu().numpy(), path=_path_of(store.path[worst])))
    keep = torch.arange(len(store), device=store.score.device) != worst
    return store.select(torch.nonzero(keep).flatten()), None


def _finish(out: SplitOutcome, store: _Domains) -> SplitOutcome:
    out.open_domains = len(store)
    out.best_bound = float(store.score.min()) if len(store) else 0.0
    out.proven = out.counterexample is None and len(store) == 0 and not out.reason
    if not out.proven and not out.reason and out.counterexample is None:
        out.reason = f"time limit with {len(store)} open sub-domains (worst bound {out.best_bound:.4g})"
    return out


def _halves(lower, upper, dims):
    """Halve each box along its dimension: ``(D, n)`` → ``(2D, n)`` (all left halves first)."""
    idx = torch.arange(lower.shape[0], device=lower.device)
    mid = (lower[idx, dims] + upper[idx, dims]) / 2
    left_hi, right_lo = upper.clone(), lower.clone()
    left_hi[idx, dims] = mid
    right_lo[idx, dims] = mid
    return torch.cat([lower, right_lo]), torch.cat([left_hi, upper])


def _cat_paths(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Stack two ``(D, P)`` path arrays, padding the shorter with -1."""
    P = max(a.shape[1], b.shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, P - t.shape[1]), value=-1)  # noqa: E731
    return torch.cat([pad(a), pad(b)])


def _child_paths(paths: torch.Tensor, dims: torch.Tensor) -> torch.Tensor:
    """Paths of both halves ``(2D, P + 1)`` (left halves first) of boxes ``(D, P)`` cut along ``dims``."""
    one = torch.cat([paths, dims.unsqueeze(1)], dim=1)
    return torch.cat([one, one])


def _inherit(inter: dict, repeats: int) -> dict:
    return {n: (lo.repeat(repeats, *([1] * (lo.dim() - 1))), hi.repeat(repeats, *([1] * (hi.dim() - 1))))
            for n, (lo, hi) in inter.items()}


def _split_fitting(s: _Search, parents: _Domains, strong: bool):
    """Split and bound ``parents``; on halves of them (recursively) when the batch does not fit
    in memory. Returns the bounded children and a counterexample or None."""
    split = _strong_split if strong else _smear_split
    idx = torch.arange(len(parents), device=parents.lower.device)
    run = lambda sl: split(s, parents.select(idx[sl]))  # noqa: E731
    return in_halves(run, len(parents), _merge_split, "input-split boxes")


def _merge_split(parts):
    """Results of consecutive parts of one split, as one: domains (with their α slopes) joined."""
    batches, cexs = zip(*parts)
    cex = next((c for c in cexs if c is not None), None)
    joined = batches[0]
    for b in batches[1:]:
        joined = _join_bounded(joined, b)
    return joined, cex


def _join_bounded(a: _Domains, b: _Domains) -> _Domains:
    """Two freshly bounded batches as one, keeping the α slopes of either (zeros elsewhere)."""
    out = a.extend(b)
    if a.lambdas is not None and b.lambdas is not None:
        out.lambdas = torch.cat([a.lambdas, b.lambdas])
    if a.alphas is None and b.alphas is None:
        return out
    like = a.alphas if a.alphas is not None else b.alphas
    zeros = lambda d, n: {k: torch.zeros(n, *v.shape[1:], dtype=v.dtype, device=v.device)  # noqa: E731
                          for k, v in like.items()}
    pa = a.alphas if a.alphas is not None else zeros(a, len(a))
    pb = b.alphas if b.alphas is not None else zeros(b, len(b))
    out.alphas = {k: torch.cat([pa[k], pb[k]]) for k in like}
    used = [d.alpha_used if d.alpha_used is not None else torch.zeros(len(d), dtype=torch.bool,
                                                                      device=d.lower.device) for d in (a, b)]
    out.alpha_used = torch.cat(used)
    return out


def _unstable_counts(graph: Graph, inter: dict) -> torch.Tensor:
    """Unstable ReLU-like neurons per domain ``(D,)`` from its intermediate bounds."""
    total = torch.zeros(len(next(iter(inter.values()))[0]) if inter else 0, dtype=torch.long)
    for node in graph.nodes:
        if node.op in ("Relu", "LeakyRelu") and node.inputs[0] in inter:
            lo, hi = inter[node.inputs[0]]
            c = ((lo < 0) & (hi > 0)).flatten(1).sum(1)
            total = total.to(c.device) + c
    return total


def _smear_split(s: _Search, parents: _Domains):
    lo, hi = _halves(parents.lower, parents.upper, parents.split_dim)
    return _bound_and_probe(s, lo, hi, _inherit(parents.inter, 2), _child_paths(parents.path, parents.split_dim))


def _strong_split(s: _Search, parents: _Domains):
    """Bound the halves along every dimension; keep, per parent, the split that leaves the least
    work: the largest sum of the halves' scores, each capped at 0 (those children come back
    already bounded). The weaker half alone is too myopic: when no single cut lifts the worse
    half, it keeps cutting dimensions that are already narrow."""
    D, n = parents.lower.shape
    dims = torch.arange(n, device=parents.lower.device).repeat(D)
    lo, hi = _halves(parents.lower.repeat_interleave(n, 0), parents.upper.repeat_interleave(n, 0), dims)
    inter = {k: (a.repeat_interleave(n, 0), b.repeat_interleave(n, 0)) for k, (a, b) in parents.inter.items()}
    paths = _child_paths(parents.path.repeat_interleave(n, 0), dims)
    batch, cex = _bound_and_probe(s, lo, hi, _inherit(inter, 2), paths)
    if cex is not None:
        return batch, cex
    half = D * n
    deficit = batch.score.clamp(max=0.0)  # closed halves count as 0: no work left there
    gain = (deficit[:half] + deficit[half:]).reshape(D, n)
    best = gain.argmax(dim=1) + torch.arange(D, device=lo.device) * n
    return batch.select(torch.cat([best, best + half])), None


def _file(s: _Search, store: _Domains, batch: _Domains) -> _Domains:
    """Closed domains become leaves; the rest join the store."""
    closed = batch.score > s.config.proof_margin
    for i in torch.nonzero(closed).flatten().tolist():
        lo, hi = batch.lower[i].double().cpu().numpy(), batch.upper[i].double().cpu().numpy()
        b, path = float(batch.score[i]), _path_of(batch.path[i])
        lam = None if batch.lambdas is None else batch.lambdas[i]
        if batch.alpha_used is not None and bool(batch.alpha_used[i]):
            mult = {"alpha": {k: v[i].double().cpu().numpy() for k, v in batch.alphas.items()}}
            s.out.leaves.append(Leaf(s.case_index, "bab-input/alpha-crown", b, lo, hi, multipliers=mult, path=path))
        elif lam is not None and bool((lam > 0).any()):
            mult = {"lambda": {"rows": lam.double().cpu().numpy()}}
            s.out.leaves.append(Leaf(s.case_index, "bab-input/crown-combined", b, lo, hi, multipliers=mult,
                                     path=path))
        else:
            s.out.leaves.append(Leaf(s.case_index, "bab-input/crown", b, lo, hi, path=path))
    return store.extend(batch.select(torch.nonzero(~closed).flatten()))


def _crown_scores(s: _Search, lb: torch.Tensor, trace: Trace, lo: torch.Tensor, hi: torch.Tensor):
    """Scores ``(B,)`` from one CROWN pass's row bounds ``lb`` ``(B, R)``, each disjunct also
    bounded by the best convex combination of its rows, and the weights ``(B, R)`` where that
    combination beats the rows alone (zeros elsewhere)."""
    plain = s.rows.worst(lb)
    lam_all = torch.zeros_like(lb)
    weak = torch.nonzero(plain <= s.config.proof_margin).flatten()  # boxes the rows alone leave open
    if not s.combined or not weak.numel():
        return plain, lam_all
    B, R = lb.shape
    combined, lam = combined_bounds(trace.A_x.reshape(B, R, -1)[weak], (lb - s.rows.d)[weak],
                                    trace.input_min[weak], lo[weak], hi[weak], s.rows.group, s.rows.K)
    score = plain.clone()
    score[weak] = s.rows.worst_combined(lb[weak], combined)
    lam_all[weak] = torch.where((score[weak] > plain[weak]).unsqueeze(1), lam, torch.zeros_like(lam))
    return score, lam_all


def _path_of(row: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(v) for v in row.tolist() if v >= 0)


def _bound_and_probe(s: _Search, lo: torch.Tensor, hi: torch.Tensor, parent_inter: dict | None,
                     path: torch.Tensor):
    """Bound a batch of boxes ``(D, n)`` reached by the bisections ``path`` ``(D, P)``; returns the
    bounded domains and a counterexample or None."""
    g, cfg = s.graph, s.config
    B = lo.shape[0]
    full = (B, *g.input_full_shape)
    region = Region(lo.reshape(full), hi.reshape(full))
    trace, lines = Trace(), {}
    with torch.no_grad():
        if cfg.bab.intermediate == "forward":
            bounds = forward_bounds(g, region)
        else:
            bounds = intermediate_bounds(g, region, cfg.bounds, fixed=parent_inter, lines=lines)
        lb = spec_bounds(g, s.rows.batch_C(B), bounds, region, trace=trace, lines=lines)
    score, lambdas = _crown_scores(s, lb, trace, lo, hi)
    open_ = torch.nonzero(score <= cfg.proof_margin).flatten()
    alphas, used = None, None
    if cfg.bab.input_alpha_iterations and open_.numel():
        a_score, a_params = _alpha_scores(s, bounds, region, open_)
        better = a_score > score[open_]
        score = score.clone()
        score[open_] = torch.where(better, a_score, score[open_])
        used = torch.zeros(B, dtype=torch.bool, device=lo.device)
        used[open_] = better
        alphas = {k: torch.zeros(B, *v.shape[1:], dtype=v.dtype, device=v.device).index_copy(0, open_, v)
                  for k, v in a_params.items()}
    a = trace.A_x.reshape(B, lb.shape[1], -1)[torch.arange(B), s.rows.worst_row(lb)]
    dims = (a.abs() * (hi - lo)).argmax(dim=1)
    inter = {n: bounds[n] for n in nonlinear_inputs(g)}
    hint: dict = {}
    cex = probe_open_domains(g, s.unsafe, lo, hi, a, score, s.case, s.case_index, s.runner, cfg.proof_margin, hint)
    hints = hint.get("hint", torch.full_like(score, torch.inf))
    if used is not None:
        lambdas = torch.where(used.unsqueeze(1), torch.zeros_like(lambdas), lambdas)
    s.out.domains_bounded += B  # counted once bounding and probing finished (a retried half counts once)
    return _Domains(lo, hi, score, dims, inter, path, hints, lambdas, alphas, used), cex


def _alpha_scores(s: _Search, bounds: dict, region: Region, idx: torch.Tensor):
    """α-CROWN scores of the domains ``idx`` of a bounded batch (only those still open) and the
    slopes that give them."""
    cfg = s.config
    sub = {k: (lo[idx], hi[idx]) for k, (lo, hi) in bounds.items()}
    sub_region = Region(region.lower[idx], region.upper[idx])
    acfg = dataclasses.replace(cfg.bounds, alpha_iterations=cfg.bab.input_alpha_iterations)
    params: dict = {}
    lb = alpha_spec_bounds(s.graph, s.rows.batch_C(idx.numel()), sub, sub_region, acfg,
                           min(s.deadline, time.monotonic() + 5.0),
                           done=lambda b: bool((s.rows.worst(b) > cfg.proof_margin).all()), params_out=params)
    return s.rows.worst(lb), params
