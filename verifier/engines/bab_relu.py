"""ReLU-split branch and bound with β-CROWN split multipliers (high-dimensional inputs).

A domain fixes some unstable ReLU neurons to active (``z >= 0``) or inactive (``z <= 0``).
Its intermediate bounds are the root's, clamped by the splits, then recomputed by CROWN under
those splits (``BabConfig.relu_refresh``); its bound optimises the
relaxation slopes (α) and one Lagrange multiplier per split (β >= 0, adding ``β·s·z`` with
``s = +1`` for inactive and ``-1`` for active, which is ``<= 0`` on the domain) for the
property rows, starting from the α/β its parent ended with (kept in the store while they fit
in ``BabConfig.warm_start_mb``). A domain whose bounds come out empty holds vacuously (no input
takes its split signs). Branching picks, per domain, the unstable neuron whose upper relaxation
costs the bound most (a BaBSR-style score).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from verifier.bounds.crown import DeadlineReached, _initial_alphas, intermediate_bounds, optimise_rows, spec_bounds
from verifier.bounds.linear import Region, Trace
from verifier.config import VerifyConfig
from verifier.engines.bab_common import SplitOutcome, probe_open_domains
from verifier.engines.confirm import UnsafeSet
from verifier.engines.incomplete import case_region
from verifier.engines.memory import in_halves
from verifier.engines.rows import RowSpec
from verifier.ir.graph import Graph
from verifier.ops.activations import LeakyRelu, Relu
from verifier.result import Leaf

NO_CHOICE = -1
ROOT_BOUNDS = "bab-relu/beta-crown"            # leaf method: the root's intermediate bounds, splits clamped
REFRESHED = "bab-relu/beta-crown+refresh"      # ... those recomputed by CROWN under the domain's splits


@dataclass
class _Problem:
    """Everything fixed for one case: rows, root bounds, ReLU layers (activation → pre-activation);
    and the seconds the last refresh of intermediate bounds took."""

    graph: Graph
    rows: RowSpec
    unsafe: UnsafeSet
    region: Region
    root: dict
    relus: dict[str, str]
    case: object
    case_index: int
    runner: object
    refresh_seconds: float = 0.0


class _Store:
    """Open domains: split states per ReLU layer ``(S, *shape)`` int8, scores ``(S,)``, the chosen
    neuron ``(S, 2)`` (layer index, flat index) and, while they fit in ``budget`` bytes, the α/β
    each domain's bound ended with (``warm``: key → ``(S, R, *shape)`` bfloat16; ``None`` once
    dropped), which its children start from."""

    def __init__(self, states, score, choice, budget: int):
        self.states, self.score, self.choice = states, score, choice
        self.warm: dict | None = {}
        self.budget = budget

    def __len__(self) -> int:
        return self.score.shape[0]

    def pop(self, k: int):
        """The ``k`` worst domains: ``(states, choice, score, warm)`` (``warm`` may be ``None``)."""
        order = torch.argsort(self.score)
        take, keep = order[:k], order[k:]
        warm = None if self.warm is None else {n: w[take] for n, w in self.warm.items()}
        out = ({n: s[take] for n, s in self.states.items()}, self.choice[take], self.score[take], warm)
        self.states = {n: s[keep] for n, s in self.states.items()}
        self.score, self.choice = self.score[keep], self.choice[keep]
        if self.warm is not None:
            self.warm = {n: w[keep] for n, w in self.warm.items()}
        return out

    def push(self, states, score, choice, warm: dict | None = None) -> bool:
        """Add domains (``warm``: their α/β, any float dtype). Returns ``False`` when this push
        dropped every stored α/β, because keeping them would pass the budget."""
        old = len(self)
        self.states = {n: torch.cat([s, states[n]]) for n, s in self.states.items()}
        self.score = torch.cat([self.score, score])
        self.choice = torch.cat([self.choice, choice])
        if self.warm is None:
            return True
        per_domain = sum(2 * (w.numel() // max(1, w.shape[0])) for w in (warm or {}).values())
        if warm is None or len(self) * per_domain > self.budget:
            self.warm = None
            return False
        self.warm = _cat_params([self.warm, {n: w.to(torch.bfloat16) for n, w in warm.items()}],
                                [old, score.shape[0]])
        return True


def relu_split(graph: Graph, case, case_index: int, runner, config: VerifyConfig, deadline: float,
               progress, root: dict | None = None) -> SplitOutcome:
    """Branch on ReLU neurons until every domain is closed, a counterexample is confirmed, or
    time runs out. ``root``: the case's intermediate bounds when already computed (e.g. optimised
    layer by layer); plain CROWN bounds otherwise."""
    out = SplitOutcome(case_index=case_index)
    try:
        prob = _setup(graph, case, case_index, runner, config, deadline, root)
    except DeadlineReached:
        out.reason = "time limit reached while bounding the root"
        return _finish(None, out)
    if not prob.relus:
        out.reason = "no ReLU neurons to split"
        return _finish(None, out)
    states = {a: torch.zeros(1, *prob.root[p][0].shape[1:], dtype=torch.int8, device=graph.device)
              for a, p in prob.relus.items()}
    store = _Store({n: s[:0] for n, s in states.items()}, torch.zeros(0, dtype=graph.dtype, device=graph.device),
                   torch.zeros(0, 2, dtype=torch.long, device=graph.device), config.bab.warm_start_mb << 20)
    if config.bab.warm_start_mb <= 0:
        store.warm = None
    last, inherited, warm = time.monotonic(), None, None
    while True:
        score, choice, cex, params = _bound_fitting(prob, states, config, out, deadline, warm)
        if inherited is not None:  # a parent's bound holds on its children (and never closes one:
            score = torch.maximum(score, inherited)  # parents are open); helps when time cut the optimisation
        if cex is not None:
            out.counterexample = cex
            return out
        if not _file(store, states, score, choice, config.proof_margin, out, params):
            progress(f"relu split: the open domains' α/β passed {config.bab.warm_start_mb} MiB; "
                     "domains start from default slopes from now on")
        if not len(store) or len(store) > config.bab.max_domains or time.monotonic() >= deadline:
            break  # every popped domain has been bounded and filed: the store is the open set
        if time.monotonic() - last > 2.0:
            last = time.monotonic()
            progress(f"relu split: {len(store)} open, {out.domains_bounded} bounded, "
                     f"worst bound {float(store.score.min()):.4g}")
        parents, parent_choice, parent_score, parent_warm = store.pop(max(1, config.bab.batch_on(graph.device) // 2))
        states, inherited = _children(prob, parents, parent_choice), torch.cat([parent_score, parent_score])
        warm = None if parent_warm is None else {n: torch.cat([w, w]) for n, w in parent_warm.items()}
    if len(store) > config.bab.max_domains:
        out.reason = f"domain store reached its cap of {config.bab.max_domains} sub-domains"
    return _finish(store, out)


def _finish(store, out: SplitOutcome) -> SplitOutcome:
    n_open = len(store) if store is not None else 1
    out.open_domains = n_open
    out.best_bound = float(store.score.min()) if store is not None and len(store) else 0.0
    out.proven = n_open == 0 and not out.reason
    if not out.proven and not out.reason:
        out.reason = f"time limit with {n_open} open sub-domains (worst bound {out.best_bound:.4g})"
    return out


def _setup(graph: Graph, case, case_index, runner, config: VerifyConfig, deadline: float, root=None) -> _Problem:
    region = case_region(graph, case)
    if root is None:
        with torch.no_grad():
            root = intermediate_bounds(graph, region, config.bounds, deadline=deadline)
    relus = {n.name: n.inputs[0] for n in graph.nodes if isinstance(graph.ops[n.name], (Relu, LeakyRelu))}
    rows = RowSpec.of(case, graph.n_outputs, graph.dtype, graph.device)
    unsafe = UnsafeSet(case, graph.n_outputs, graph.dtype, graph.device)
    return _Problem(graph, rows, unsafe, region, root, relus, case, case_index, runner)


def _file(store: _Store, states, score, choice, margin: float, out: SplitOutcome, params) -> bool:
    """Closed domains count as leaves; open ones with no neuron left to split end the proof; the
    others go to the store with their α/β. ``False`` when the store just dropped its α/β."""
    closed = score > margin
    if bool(closed.any()):
        out.leaves.extend(_leaves(states, closed, score, out.case_index, params))
    stuck = ~closed & (choice[:, 0] == NO_CHOICE)
    if bool(stuck.any()):
        out.reason = "a sub-domain with every unstable neuron split stayed open (needs an exact solver)"
    keep = ~closed & ~stuck
    alphas, betas = params[0], params[1]
    warm = {**{("alpha", n): a.detach()[keep] for n, a in alphas.items()},
            **{("beta", n): b.detach()[keep] for n, b in betas.items()}}
    return store.push({n: s[keep] for n, s in states.items()}, score[keep], choice[keep], warm)


def _leaves(states, closed, score, case_index: int, params) -> list[Leaf]:
    """Closed domains as leaves listing their splits and the α/β that closed them."""
    idx = torch.nonzero(closed).flatten()
    splits: list[list] = [[] for _ in range(idx.numel())]
    for act, s in states.items():
        flat = s[idx].reshape(idx.numel(), -1)
        for d, j in torch.nonzero(flat).tolist():
            splits[d].append((act, int(j), int(flat[d, j])))
    bounds = score[idx].double().cpu().tolist()
    alphas, betas, method = params
    mult = [{"alpha": {k: v[i].detach().double().cpu().numpy().copy() for k, v in alphas.items()},
             "beta": {k: v[i].detach().double().cpu().numpy().copy() for k, v in betas.items()}} for i in idx.tolist()]
    return [Leaf(case_index, method, b, splits=tuple(sp), multipliers=m)
            for b, sp, m in zip(bounds, splits, mult)]


def _domain_bounds(prob: _Problem, states) -> dict:
    """Root bounds for ``D`` domains, pre-activations clamped by the splits."""
    D = next(iter(states.values())).shape[0]
    bounds = {k: (lo.expand(D, *lo.shape[1:]), hi.expand(D, *hi.shape[1:])) for k, (lo, hi) in prob.root.items()}
    for act, pre in prob.relus.items():
        lo, hi = bounds[pre]
        s = states[act]
        bounds[pre] = (torch.where(s > 0, lo.clamp(min=0), lo), torch.where(s < 0, hi.clamp(max=0), hi))
    return bounds


def _bound(prob: _Problem, states, config: VerifyConfig, out: SplitOutcome, deadline: float, warm=None):
    """α/β-optimised bounds of a batch of domains, the optimisation started from ``warm`` (the
    α/β their parents ended with, :class:`_Store`) where given; returns (score, choice,
    counterexample, (alphas, betas, method))."""
    g, D = prob.graph, next(iter(states.values())).shape[0]
    bounds = _domain_bounds(prob, states)
    region = Region(prob.region.lower.expand(D, *prob.region.lower.shape[1:]),
                    prob.region.upper.expand(D, *prob.region.upper.shape[1:]))
    bounds, method = _refreshed(prob, region, bounds, config, deadline)
    C = prob.rows.batch_C(D)
    alphas = _initial_alphas(g, C, bounds)
    betas = {prob.relus[a]: torch.zeros(D, C.shape[1], *s.shape[1:], dtype=g.dtype, device=g.device,
                                        requires_grad=True) for a, s in states.items() if bool((s != 0).any())}
    if warm:
        _warm_started(alphas, betas, warm)
    signs = {prob.relus[a]: -s.to(g.dtype).unsqueeze(1) for a, s in states.items()}
    _optimise(g, C, bounds, region, alphas, betas, signs, config, deadline, prob.rows)
    trace = Trace(at_activation={})
    with torch.no_grad():
        extra = {p: b * signs[p] for p, b in betas.items()}
        best = spec_bounds(g, C, bounds, region, alphas, extra, trace)  # exactly the recorded multipliers
        score = torch.where(_empty(bounds, config.proof_margin), torch.inf, prob.rows.worst(best))
        wr = prob.rows.worst_row(best)
        candidates = _candidates(prob, states, bounds, trace, wr, max(1, config.bab.relu_candidates))
        choice = candidates[:, 0]
        if candidates.shape[1] > 1:
            choice = _smart_choice(prob, candidates, bounds, region, C, alphas, extra)
        a_x = trace.A_x.reshape(D, C.shape[1], -1)[torch.arange(D), wr]
        lo, hi = region.lower.reshape(D, -1), region.upper.reshape(D, -1)
        cex = probe_open_domains(g, prob.unsafe, lo, hi, a_x, score, prob.case, prob.case_index, prob.runner,
                                 config.proof_margin)
    out.domains_bounded += D
    return score, choice, cex, (alphas, betas, method)


def _empty(bounds: dict, margin: float) -> torch.Tensor:
    """Domains ``(D,)`` whose bounds are empty at some value (``lo > hi + margin``): no input
    takes their split signs, so they hold vacuously (β-CROWN's infeasible splits). The evidence
    checker recomputes the bounds soundly and accepts such a leaf only if it finds them empty too."""
    D = next(iter(bounds.values()))[0].shape[0]
    empty = torch.zeros(D, dtype=torch.bool, device=next(iter(bounds.values()))[0].device)
    for lo, hi in bounds.values():
        if lo.shape[0] == D:
            empty |= (lo - hi > margin).reshape(D, -1).any(dim=1)
    return empty


def _refreshed(prob: _Problem, region: Region, bounds: dict, config: VerifyConfig,
               deadline: float) -> tuple[dict, str]:
    """Each domain's intermediate bounds recomputed by CROWN under its splits (``bounds``, the
    root's clamped by the splits, are intersected in at every value), with the leaf method that
    says so. ``bounds`` as given, with their method, when the refresh is off, when the last one
    took more than half the time left, or when the deadline passes meanwhile."""
    start = time.monotonic()
    if not config.bab.relu_refresh or start + 2 * prob.refresh_seconds >= deadline:
        return bounds, ROOT_BOUNDS
    try:
        with torch.no_grad():
            return intermediate_bounds(prob.graph, region, config.bounds, fixed=bounds, deadline=deadline), REFRESHED
    except DeadlineReached:
        return bounds, ROOT_BOUNDS
    finally:
        prob.refresh_seconds = time.monotonic() - start


def _warm_started(alphas: dict, betas: dict, warm: dict) -> None:
    """Set the α ``(D, R, *shape)`` and β to the parents' values in ``warm`` (projected back to
    α ∈ [0, 1], β >= 0), in place; those without a stored value keep their start."""
    with torch.no_grad():
        for kind, params, low, high in (("alpha", alphas, 0.0, 1.0), ("beta", betas, 0.0, None)):
            for name, p in params.items():
                w = warm.get((kind, name))
                if w is not None and w.shape == p.shape:
                    p.copy_(w.to(p.dtype).clamp(min=low, max=high))


def _bound_fitting(prob: _Problem, states, config: VerifyConfig, out: SplitOutcome, deadline: float,
                   warm: dict | None = None):
    """:func:`_bound`, on halves of the batch (recursively) when the whole does not fit in memory."""
    D = next(iter(states.values())).shape[0]
    run = lambda sl: _bound(prob, {k: v[sl] for k, v in states.items()}, config, out, deadline,  # noqa: E731
                            None if warm is None else {k: v[sl] for k, v in warm.items()})
    return in_halves(run, D, _merge_bounded, "ReLU-split domains")


def _merge_bounded(parts):
    """Results of :func:`_bound` on consecutive parts of a batch, as one result."""
    scores, choices, cexs, params = zip(*parts)
    cex = next((c for c in cexs if c is not None), None)
    sizes = [sc.shape[0] for sc in scores]
    # one method per batch: a batch partly bounded past the deadline without the refresh is labelled
    # so; the checker may then fail to re-close its refreshed leaves (a failed check, never unsound)
    method = REFRESHED if all(p[2] == REFRESHED for p in params) else ROOT_BOUNDS
    multipliers = tuple(_cat_params([p[i] for p in params], sizes) for i in (0, 1))
    return torch.cat(scores), torch.cat(choices), cex, (*multipliers, method)


def _cat_params(dicts: list[dict], sizes: list[int]) -> dict:
    """Concatenate per-domain multipliers ``(D_i, R, *shape)``; a part without a key gets zeros
    (a zero β is no multiplier)."""
    out = {}
    for k in {k for d in dicts for k in d}:
        like = next(d[k] for d in dicts if k in d)
        out[k] = torch.cat([d[k].detach() if k in d else torch.zeros(n, *like.shape[1:], dtype=like.dtype,
                                                                       device=like.device)
                            for d, n in zip(dicts, sizes)])
    return out


def _optimise(g, C, bounds, region, alphas, betas, signs, config, deadline, rows) -> torch.Tensor:
    """Best per-row bound over α/β optimisation; ``alphas``/``betas`` end at the values that give it."""
    with torch.no_grad():  # the start may hold warm β: the best so far is that of the start
        best = spec_bounds(g, C, bounds, region, alphas, {p: b * signs[p] for p, b in betas.items()})
    if not alphas and not betas:
        return best
    done = lambda b: bool((rows.worst(b) > config.proof_margin).all())  # noqa: E731
    return optimise_rows(g, C, bounds, region, alphas, betas, signs, config.bounds.alpha_lr,
                         config.bab.relu_iterations, deadline, done, best)


def _candidates(prob: _Problem, states, bounds, trace: Trace, worst_row: torch.Tensor, k: int) -> torch.Tensor:
    """Per domain, the ``k`` unsplit unstable neurons with the largest BaBSR-style score
    ``|A⁻|·(-l·u/(u-l))`` (``A``: the worst row's coefficients at the activation), best first:
    ``(D, k, 2)`` (layer index, flat index); ``NO_CHOICE`` layers where there are fewer."""
    scores = []
    D = worst_row.shape[0]
    for act, pre in prob.relus.items():
        lo, hi = (t.reshape(D, -1) for t in bounds[pre])
        A = trace.at_activation.get(act)
        A = torch.zeros_like(lo) if A is None else A[torch.arange(D), worst_row].reshape(D, -1)
        unstable = (lo < 0) & (hi > 0) & (states[act].reshape(D, -1) == 0)
        gain = (-A).clamp(min=0) * (-lo * hi / (hi - lo).clamp_min(1e-12)) + 1e-6 * (hi - lo)
        scores.append(torch.where(unstable, gain, torch.full_like(gain, -torch.inf)))
    sizes = torch.tensor([s.shape[1] for s in scores], device=worst_row.device)
    top, flat = torch.cat(scores, dim=1).topk(min(k, int(sizes.sum())), dim=1)
    starts = torch.cumsum(sizes, 0) - sizes
    layer = torch.searchsorted(starts, flat, right=True) - 1
    layer = torch.where(top > -torch.inf, layer, torch.full_like(layer, NO_CHOICE))
    return torch.stack([layer, flat - starts[layer.clamp(min=0)]], dim=2)


def _smart_choice(prob: _Problem, candidates: torch.Tensor, bounds, region: Region, C, alphas, extra) -> torch.Tensor:
    """Filtered smart branching: per domain, the candidate ``(D, k, 2)`` whose weaker child scores
    best, each child bounded once with the domain's optimised slopes and multipliers (the split
    neuron clamped to its side): ``(D, 2)``."""
    D, k = candidates.shape[:2]
    g = prob.graph
    twice = lambda t: torch.cat([t, t])  # noqa: E731
    region2 = Region(twice(region.lower), twice(region.upper))
    alphas2 = {n: twice(a) for n, a in alphas.items()}
    extra2 = {n: twice(e) for n, e in extra.items()}
    est = torch.full((D, k), -torch.inf, dtype=g.dtype, device=g.device)
    rows = torch.arange(D, device=g.device)
    for c in range(k):
        layer, index = candidates[:, c, 0], candidates[:, c, 1]
        child = dict(bounds)
        for i, pre in enumerate(prob.relus.values()):
            here = layer == i
            if not bool(here.any()):
                child[pre] = tuple(twice(t) for t in bounds[pre])
                continue
            lo, hi = (t.reshape(D, -1) for t in bounds[pre])
            lo_pos, hi_neg = lo.clone(), hi.clone()
            lo_pos[rows[here], index[here]] = lo[rows[here], index[here]].clamp(min=0)
            hi_neg[rows[here], index[here]] = hi[rows[here], index[here]].clamp(max=0)
            shape = bounds[pre][0].shape
            child[pre] = (torch.cat([lo_pos, lo]).reshape(2 * D, *shape[1:]),
                          torch.cat([hi, hi_neg]).reshape(2 * D, *shape[1:]))
        for name, box in bounds.items():
            if name not in prob.relus.values():
                child[name] = tuple(twice(t) for t in box)
        both = prob.rows.worst(spec_bounds(g, twice(C), child, region2, alphas2, extra2))
        est[:, c] = torch.where(layer != NO_CHOICE, torch.minimum(both[:D], both[D:]), est[:, c])
    return candidates[rows, est.argmax(dim=1)]


def _children(prob: _Problem, parents, choice: torch.Tensor):
    """Two children per parent: the chosen neuron active (+1) and inactive (-1)."""
    D = choice.shape[0]
    rows = torch.arange(D, device=choice.device)
    children = {}
    for i, act in enumerate(prob.relus):
        s = parents[act].reshape(D, -1)
        pos, neg = s.clone(), s.clone()
        here = choice[:, 0] == i
        pos[rows[here], choice[here, 1]] = 1
        neg[rows[here], choice[here, 1]] = -1
        children[act] = torch.cat([pos, neg]).reshape(2 * D, *parents[act].shape[1:])
    return children
