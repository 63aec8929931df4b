"""Leaves of an ``unsat`` proof, checked in batches: coverage of each case's region and sound
re-bounding of every piece with :class:`~verifier.evidence.check_bounds.SoundBounds`.

Three leaf kinds: a whole-region leaf (interval or CROWN bound, optional α slopes), input-split
boxes (their union must cover the region; re-bounded along the bisection tree they came from,
each piece's intermediate bounds starting from its parent's) and ReLU-split leaves (the split
decisions must form a complete binary tree; bounded with the root's intermediate bounds,
split neurons clamped and, for method ``...+refresh``, recomputed under the splits, α slopes
and β multipliers). A score is the sound lower bound of
``min over disjuncts, max over its rows, of C y - d``; a leaf holds when its score exceeds the
proof margin.

This module holds the scoring (:class:`CaseRows`, region and split scores, the best-of-several
``_scores`` with its slope search) and the split-tree coverage (:func:`splits_cover`). The box
cover and its bisection-tree walk (``box_tree``, ``choose_cuts``, ``TreeResult``) live in
:mod:`verifier.evidence.check_tree`, which imports this module; they are re-exported here lazily.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from verifier.evidence.check_bounds import ELEMENT_BUDGET, Box, InputSet, SoundBounds, round_down
from verifier.evidence.check_primitives import U

_TREE_NAMES = frozenset({"box_tree", "choose_cuts", "TreeResult"})


def __getattr__(name: str):
    """Lazy re-exports of :mod:`verifier.evidence.check_tree` (imported on first use: it imports
    this module, so a top-level import here would be circular)."""
    if name in _TREE_NAMES:
        from verifier.evidence import check_tree

        return getattr(check_tree, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class CaseRows:
    """A case's unsafe rows stacked: ``C`` ``(R, n_outputs)``, ``d`` ``(R,)``, rows per disjunct."""

    C: torch.Tensor
    d: torch.Tensor
    sizes: tuple[int, ...]

    @staticmethod
    def of(case) -> "CaseRows":
        Cs = [torch.as_tensor(c.C, dtype=torch.float64) for c in case.unsafe]
        ds = [torch.as_tensor(c.d, dtype=torch.float64) for c in case.unsafe]
        return CaseRows(torch.cat(Cs), torch.cat(ds), tuple(c.shape[0] for c in Cs))

    def batch(self, B: int) -> torch.Tensor:
        return self.C.unsqueeze(0).expand(B, -1, -1)

    def scores(self, lb: torch.Tensor, combined: torch.Tensor | None = None) -> torch.Tensor:
        """``min`` over disjuncts of ``max`` over its rows of the sound ``C y - d``: ``(B, R)`` → ``(B,)``;
        ``combined`` ``(B, K)``: sound scores of row combinations, one more candidate per disjunct."""
        vals = torch.nan_to_num(round_down(lb - self.d), nan=-math.inf)
        parts = torch.split(vals, list(self.sizes), dim=1)
        per = [p.amax(dim=1) if p.shape[1] else torch.full(vals.shape[:1], -math.inf, dtype=vals.dtype)
               for p in parts]
        out = torch.stack(per, dim=1)
        if combined is not None:
            out = torch.maximum(out, combined)
        return out.amin(dim=1)

    def mixing(self, lam: torch.Tensor) -> torch.Tensor:
        """Row weights ``(B, R)`` as one combination per disjunct ``(B, K, R)``, each scaled to sum
        to 1 (the recorded scale must not stretch a bound past the proof margin)."""
        groups = torch.repeat_interleave(torch.arange(len(self.sizes)), torch.as_tensor(self.sizes))
        member = (groups.unsqueeze(0) == torch.arange(len(self.sizes)).unsqueeze(1)).to(lam.dtype)  # (K, R)
        M = lam.unsqueeze(1) * member.unsqueeze(0)
        total = M.sum(-1, keepdim=True)
        return torch.where(total > 0, M / torch.where(total > 0, total, torch.ones_like(total)), M)

    def combined_scores(self, comb: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        """Sound ``Σ_r M_kr (C y - d)_r`` lower bounds ``(B, K)`` from the combined ``C y`` bounds;
        -inf for disjuncts without weights."""
        md = torch.einsum("bkr,r->bk", M, self.d)
        md_terms = torch.einsum("bkr,r->bk", M, self.d.abs())  # a sum's rounding scales with its terms
        R = M.shape[-1]
        val = round_down(comb - md - (R + 2) * 2 * U * (comb.abs() + md_terms))
        return torch.where(M.sum(-1) > 0, torch.nan_to_num(val, nan=-math.inf), torch.full_like(val, -math.inf))


def case_inputs(sb: SoundBounds, case, lower=None, upper=None) -> InputSet:
    """Input boxes ``(B, *input_full_shape)`` (the case's region when ``lower``/``upper`` are
    None) with the region's L2 ball, if any."""
    r = case.region
    lo = torch.as_tensor(r.lower if lower is None else lower, dtype=torch.float64)
    hi = torch.as_tensor(r.upper if upper is None else upper, dtype=torch.float64)
    lo, hi = lo.reshape(-1, *sb.g.input_full_shape), hi.reshape(-1, *sb.g.input_full_shape)
    center = None if r.l2_center is None else torch.as_tensor(r.l2_center).reshape(1, -1).expand(lo.shape[0], -1)
    return InputSet(lo, hi, center, r.l2_radius)


def clamp_splits(bounds: dict[str, Box], signs: dict[str, torch.Tensor]) -> dict[str, Box]:
    """Pre-activation bounds clamped by split decisions: ``signs[name]`` ``(B, *shape)`` int8,
    ``+1`` active (``lo = max(lo, 0)``), ``-1`` inactive (``hi = min(hi, 0)``), 0 free."""
    out = dict(bounds)
    for name, s in signs.items():
        lo, hi = bounds[name]
        out[name] = (torch.where(s > 0, lo.clamp(min=0), lo), torch.where(s < 0, hi.clamp(max=0), hi))
    return out


def expand_bounds(bounds: dict[str, Box], D: int) -> dict[str, Box]:
    """Bounds of a batch of one repeated for ``D`` domains."""
    return {k: (lo.expand(D, *lo.shape[1:]), hi.expand(D, *hi.shape[1:])) for k, (lo, hi) in bounds.items()}


def _chunk(sb: SoundBounds, rows: int, tighten: bool) -> int:
    width = max([int(np.prod(n.out_shape)) for n in sb.g.nodes] + [sb.g.n_inputs])
    return max(1, ELEMENT_BUDGET // 4 // (width * max(rows, width if tighten else 1)))


def region_scores(sb: SoundBounds, case, alphas: dict, margin: float = math.inf,
                  layers: dict | None = None) -> torch.Tensor:
    """Scores of whole-region leaves (one per entry of the α batch, or one) → ``(D,)``;
    ``layers``: the case's recorded intermediate-layer slopes (see ``SoundBounds.intermediate``)."""
    rows = CaseRows.of(case)
    alphas = {k: torch.as_tensor(v) for k, v in alphas.items()}
    D = next(iter(alphas.values())).shape[0] if alphas else 1
    one = case_inputs(sb, case)
    bounds = expand_bounds(sb.intermediate(one, layers=layers), D)
    inputs = InputSet(one.lower.expand(D, *one.lower.shape[1:]), one.upper.expand(D, *one.upper.shape[1:]),
                      None if one.center is None else one.center.expand(D, -1), one.radius)
    return _scores(sb, rows, inputs, bounds, alphas, margin=margin)


def split_scores(sb: SoundBounds, case, root: dict[str, Box], signs: dict, alphas: dict, betas: dict,
                 margin: float = math.inf, refresh: bool = False) -> torch.Tensor:
    """Scores of ReLU-split leaves: the root's intermediate bounds, split neurons clamped (with
    ``refresh``, then recomputed by CROWN under the splits, as the verifier did), α slopes
    and β·s added at the pre-activation values (β clipped to >= 0). ``signs[pre]`` ``(D, n)``
    int8, ``alphas``/``betas`` ``(D, R, *shape)`` numpy arrays → ``(D,)``."""
    rows = CaseRows.of(case)
    D = next(iter(signs.values())).shape[0]
    step, out = _chunk(sb, rows.C.shape[0], refresh), []
    one = case_inputs(sb, case)
    for s in range(0, D, step):
        sl = slice(s, min(D, s + step))
        n = sl.stop - sl.start
        sg = {k: torch.as_tensor(v[sl]).reshape(n, *sb.g.shape_of(k)) for k, v in signs.items()}
        bounds = clamp_splits(expand_bounds(root, n), sg)
        extra = {k: torch.as_tensor(v[sl]).clamp(min=0) * (-sg[k]).to(torch.float64).unsqueeze(1)
                 for k, v in betas.items() if k in sg}
        inputs = InputSet(one.lower.expand(n, *one.lower.shape[1:]), one.upper.expand(n, *one.upper.shape[1:]),
                          None if one.center is None else one.center.expand(n, -1), one.radius)
        if refresh:
            bounds = sb.intermediate(inputs, fixed=bounds)
        a = {k: torch.as_tensor(v[sl]) for k, v in alphas.items()}
        scores = _scores(sb, rows, inputs, bounds, a, extra or None, margin)
        out.append(torch.where(_empty(bounds, n), torch.inf, scores))
    return torch.cat(out)


def _empty(bounds: dict[str, Box], n: int) -> torch.Tensor:
    """Leaves ``(n,)`` whose sound bounds are empty at some value (``lo > hi``): no input takes
    their split signs, so they hold vacuously."""
    empty = torch.zeros(n, dtype=torch.bool)
    for lo, hi in bounds.values():
        if lo.shape[0] == n:
            empty |= (lo > hi).reshape(n, -1).any(dim=1)
    return empty


def _scores(sb: SoundBounds, rows: CaseRows, inputs: InputSet, bounds, alphas: dict | None = None,
            extra: dict | None = None, margin: float = math.inf, lambdas: torch.Tensor | None = None
            ) -> torch.Tensor:
    """The best of several sound scores ``(B,)``: CROWN with the recorded slopes (if any), with
    the default slopes and with all slopes 0 and 1 (CROWN is not monotone in its intermediate
    bounds, so no single choice always reproduces the bound the verifier found), without split
    multipliers the interval bound; and, for leaves that recorded no multipliers at all, a
    short search over the slopes for entries still at or below ``margin`` (recorded multipliers
    are checked as given, not repaired). Every candidate is a sound bound, so the search only
    decides how hard the checker tries, never what it accepts. ``lambdas`` ``(B, R)``: recorded
    row weights; each disjunct may then also be closed by that combination of its rows' bounds."""
    C = rows.batch(inputs.lower.shape[0])
    combined = None
    if lambdas is not None and bool((lambdas > 0).any()):
        M = rows.mixing(lambdas)
        combined = rows.combined_scores(sb.combined_rows_lower(C, M, bounds, inputs, alphas or None), M)
    best = rows.scores(sb.rows_lower(C, bounds, inputs, alphas or None, extra), combined)
    for fill in (None, 0.0, 1.0):
        if alphas or fill is not None:
            best = torch.maximum(best, rows.scores(sb.rows_lower(C, bounds, inputs, _fill(sb, C, fill), extra)))
    if extra is None:
        best = torch.maximum(best, rows.scores(sb.interval_rows_lower(C, bounds)))
    weak = torch.nonzero(~(best > margin)).flatten()
    if weak.numel() and math.isfinite(margin) and not alphas and extra is None:
        best[weak] = torch.maximum(best[weak], _search(sb, rows, inputs, bounds, extra, weak, margin))
    return best


def _fill(sb: SoundBounds, C: torch.Tensor, fill: float | None) -> dict | None:
    if fill is None:
        return None
    return {n.name: torch.full((C.shape[0], C.shape[1], *n.out_shape), fill, dtype=torch.float64)
            for n in sb.g.nodes if n.op in ("Relu", "LeakyRelu")}


def _search(sb: SoundBounds, rows: CaseRows, inputs: InputSet, bounds, extra, sel, margin: float,
            steps: int = 30) -> torch.Tensor:
    """Best scores of the entries ``sel`` over up to ``steps`` projected signed-gradient steps on
    the ReLU slopes (each row its own slopes) from the default choice, ending once all clear
    ``margin``."""
    n = sel.numel()
    sub = InputSet(inputs.lower[sel], inputs.upper[sel], None if inputs.center is None else inputs.center[sel],
                   inputs.radius)
    b = {k: (lo[sel], hi[sel]) for k, (lo, hi) in bounds.items()}
    ex = None if extra is None else {k: v[sel] for k, v in extra.items()}
    C = rows.batch(n)
    alphas = {}
    for node in sb.g.nodes:
        if node.op in ("Relu", "LeakyRelu"):
            lo, hi = b[node.inputs[0]]
            alphas[node.name] = (hi >= -lo).to(torch.float64).unsqueeze(1).expand(n, C.shape[1], *lo.shape[1:]).clone()
    best = torch.full((n,), -math.inf, dtype=torch.float64)
    if not alphas:
        return best
    for t in range(steps):
        for a in alphas.values():
            a.requires_grad_(True)
        with torch.enable_grad():
            lb = sb.rows_lower(C, b, sub, alphas, ex)
            grads = torch.autograd.grad(torch.nan_to_num(lb, nan=0.0, neginf=0.0).sum(), list(alphas.values()),
                                        allow_unused=True)
        best = torch.maximum(best, rows.scores(lb.detach()))
        if bool((best > margin).all()):
            return best
        step = 0.25 * (1 - t / steps) + 0.01
        alphas = {k: (a.detach() + step * torch.sign(g if g is not None else torch.zeros_like(a))).clamp(0.0, 1.0)
                  for (k, a), g in zip(alphas.items(), grads)}
    with torch.no_grad():
        return torch.maximum(best, rows.scores(sb.rows_lower(C, b, sub, alphas, ex)))


def splits_cover(leaves: list[dict]) -> tuple[bool, str]:
    """Whether split assignments ``{neuron: ±1}`` cover every sign pattern: a leaf with no
    split covers; otherwise some neuron must be split in every leaf and both halves covered."""
    stack = [leaves]
    while stack:
        group = stack.pop()
        if not group:
            return False, "a branch of the split tree has no leaf (a missing sibling)"
        if any(len(s) == 0 for s in group):
            continue
        common = set(group[0]).intersection(*group[1:])
        if not common:
            return False, "no neuron is split in every leaf of a subtree (not a complete split tree)"
        key = min(common)
        stack.append([{k: v for k, v in s.items() if k != key} for s in group if s[key] > 0])
        stack.append([{k: v for k, v in s.items() if k != key} for s in group if s[key] < 0])
    return True, f"{len(leaves)} leaves form a complete split tree"
