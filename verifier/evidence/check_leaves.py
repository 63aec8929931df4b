"""Leaves of an ``unsat`` proof, checked in batches: coverage of each case's region and sound
re-bounding of every piece with :class:`~verifier.evidence.check_bounds.SoundBounds`.

Three leaf kinds: a whole-region leaf (interval or CROWN bound, optional α slopes), input-split
boxes (their union must cover the region; re-bounded along the bisection tree they came from,
each piece's intermediate bounds starting from its parent's) and ReLU-split leaves (the split
decisions must form a complete binary tree; bounded with the root's intermediate bounds,
split neurons clamped, α slopes and β multipliers). A score is the sound lower bound of
``min over disjuncts, max over its rows, of C y - d``; a leaf holds when its score exceeds the
proof margin.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from verifier.evidence.check_bounds import (ELEMENT_BUDGET, Box, InputSet, SoundBounds, clamp_splits,
                                            expand_bounds, round_down)


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

    def scores(self, lb: torch.Tensor) -> torch.Tensor:
        """``min`` over disjuncts of ``max`` over its rows of the sound ``C y - d``: ``(B, R)`` → ``(B,)``."""
        vals = torch.nan_to_num(round_down(lb - self.d), nan=-math.inf)
        parts = torch.split(vals, list(self.sizes), dim=1)
        per = [p.amax(dim=1) if p.shape[1] else torch.full(vals.shape[:1], -math.inf, dtype=vals.dtype)
               for p in parts]
        return torch.stack(per, dim=1).amin(dim=1)


def case_inputs(sb: SoundBounds, case, lower=None, upper=None) -> InputSet:
    """Input boxes ``(B, *input_full_shape)`` (the case's region when ``lower``/``upper`` are
    None) with the region's L2 ball, if any."""
    r = case.region
    lo = torch.as_tensor(r.lower if lower is None else lower, dtype=torch.float64)
    hi = torch.as_tensor(r.upper if upper is None else upper, dtype=torch.float64)
    lo, hi = lo.reshape(-1, *sb.g.input_full_shape), hi.reshape(-1, *sb.g.input_full_shape)
    center = None if r.l2_center is None else torch.as_tensor(r.l2_center).reshape(1, -1).expand(lo.shape[0], -1)
    return InputSet(lo, hi, center, r.l2_radius)


def _chunk(sb: SoundBounds, rows: int, tighten: bool) -> int:
    width = max([int(np.prod(n.out_shape)) for n in sb.g.nodes] + [sb.g.n_inputs])
    return max(1, ELEMENT_BUDGET // 4 // (width * max(rows, width if tighten else 1)))


def region_scores(sb: SoundBounds, case, alphas: dict) -> torch.Tensor:
    """Scores of whole-region leaves (one per entry of the α batch, or one): the larger of the
    interval and the CROWN bound (with the leaves' α slopes) → ``(D,)``."""
    rows = CaseRows.of(case)
    D = next(iter(alphas.values())).shape[0] if alphas else 1
    one = case_inputs(sb, case)
    bounds = expand_bounds(sb.intermediate(one), D)
    inputs = InputSet(one.lower.expand(D, *one.lower.shape[1:]), one.upper.expand(D, *one.upper.shape[1:]),
                      None if one.center is None else one.center.expand(D, -1), one.radius)
    C = rows.batch(D)
    lb = torch.maximum(sb.rows_lower(C, bounds, inputs, alphas or None), sb.interval_rows_lower(C, bounds))
    return rows.scores(lb)


def split_scores(sb: SoundBounds, case, root: dict[str, Box], signs: dict, alphas: dict, betas: dict) -> torch.Tensor:
    """Scores of ReLU-split leaves: the root's intermediate bounds, split neurons clamped, α slopes
    and β·s added at the pre-activation values (β clipped to >= 0). ``signs[pre]`` ``(D, n)``
    int8, ``alphas``/``betas`` ``(D, R, *shape)`` numpy arrays → ``(D,)``."""
    rows = CaseRows.of(case)
    D = next(iter(signs.values())).shape[0]
    step, out = _chunk(sb, rows.C.shape[0], False), []
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
        a = {k: torch.as_tensor(v[sl]) for k, v in alphas.items()}
        out.append(rows.scores(sb.rows_lower(rows.batch(n), bounds, inputs, a or None, extra or None)))
    return torch.cat(out)


@dataclass
class TreeResult:
    """Outcome of :func:`box_tree`: coverage, per-leaf verdicts, the weakest piece score."""

    covered: bool
    detail: str
    leaf_ok: np.ndarray
    min_score: float
    pieces: int


def box_tree(sb: SoundBounds, case, lows, highs, margin: float, alphas: dict | None = None) -> TreeResult:
    """Cover the case's region with the closed leaf boxes ``lows``/``highs`` ``(L, n)`` and bound
    every piece, level by level as batches.

    The region is cut at leaf faces (a face at a dimension's midpoint that no leaf straddles
    first: the bisection that produced the leaves) until every piece lies in a leaf; a piece
    with no leaf face strictly inside and no leaf around it has an uncovered point. Each
    piece's intermediate bounds start from its parent's (valid: the parent contains it), and a
    piece inside leaf ``i`` is bounded with that leaf's α slopes, if any."""
    rows, L = CaseRows.of(case), len(lows)
    leaf_ok, worst, pieces, cap = np.ones(L, dtype=bool), math.inf, 0, 64 * L + 1024
    level, prev = [(case.region.lower, case.region.upper, np.arange(L), 0)], None
    while level:
        pieces += len(level)
        if pieces > cap:
            return TreeResult(False, f"gave up after {cap} pieces (not a bisection tree?)", leaf_ok, worst, pieces)
        plan = []
        for plo, phi, idx, _ in level:
            idx = idx[np.all(lows[idx] <= phi, axis=1) & np.all(highs[idx] >= plo, axis=1)]
            around = idx[np.all(lows[idx] <= plo, axis=1) & np.all(highs[idx] >= phi, axis=1)]
            cut = None if around.size else choose_cut(plo, phi, lows[idx], highs[idx])
            if not around.size and cut is None:
                return TreeResult(False, f"region piece {_fmt_box(plo, phi)} is not covered", leaf_ok, worst, pieces)
            plan.append((int(around[0]) if around.size else -1, cut, idx))
        inputs = case_inputs(sb, case, np.stack([p[0] for p in level]), np.stack([p[1] for p in level]))
        parents = torch.as_tensor([p[3] for p in level])
        fixed = None if prev is None else {k: (a[parents], b[parents]) for k, (a, b) in prev.items()}
        prev = _batched_intermediate(sb, inputs, fixed)
        done = [k for k, p in enumerate(plan) if p[0] >= 0]
        if done:
            sc = _leaf_piece_scores(sb, rows, inputs, prev, done, [plan[k][0] for k in done], alphas)
            worst = min(worst, float(sc.min()))
            np.logical_and.at(leaf_ok, [plan[k][0] for k in done], sc.numpy() > margin)
        level = [child for k, (lf, cut, idx) in enumerate(plan) if lf < 0
                 for child in _halves(level[k][0], level[k][1], cut, idx, k)]
    return TreeResult(True, f"{L} boxes cover the region ({pieces} pieces bounded)", leaf_ok, worst, pieces)


def _halves(plo, phi, cut, idx, parent: int) -> list:
    j, v = cut
    left_hi, right_lo = phi.copy(), plo.copy()
    left_hi[j], right_lo[j] = v, v
    return [(plo, left_hi, idx, parent), (right_lo, phi, idx, parent)]


def _batched_intermediate(sb: SoundBounds, inputs: InputSet, fixed) -> dict[str, Box]:
    B = inputs.lower.shape[0]
    step, parts = _chunk(sb, 1, True), []
    for s in range(0, B, step):
        sl = slice(s, min(B, s + step))
        sub = InputSet(inputs.lower[sl], inputs.upper[sl], None if inputs.center is None else inputs.center[sl],
                       inputs.radius)
        parts.append(sb.intermediate(sub, fixed=None if fixed is None else
                                     {k: (a[sl], b[sl]) for k, (a, b) in fixed.items()}))
    return {k: (torch.cat([p[k][0] for p in parts]), torch.cat([p[k][1] for p in parts])) for k in parts[0]}


def _leaf_piece_scores(sb, rows: CaseRows, inputs: InputSet, bounds, done: list, leaf: list, alphas) -> torch.Tensor:
    sel = torch.as_tensor(done)
    sub = InputSet(inputs.lower[sel], inputs.upper[sel], None if inputs.center is None else inputs.center[sel],
                   inputs.radius)
    b = {k: (lo[sel], hi[sel]) for k, (lo, hi) in bounds.items()}
    a = {k: torch.as_tensor(v[leaf]) for k, v in (alphas or {}).items()}
    C = rows.batch(len(done))
    return rows.scores(torch.maximum(sb.rows_lower(C, b, sub, a or None), sb.interval_rows_lower(C, b)))


def choose_cut(plo, phi, L, H) -> tuple[int, float] | None:
    """Where to cut a piece: a dimension's midpoint that is a leaf face and that no leaf
    straddles, else any midpoint face, else the face nearest the middle (most faces first)."""
    mids, best = [], None
    for j in np.argsort(-(phi - plo), kind="stable"):
        faces = np.concatenate([L[:, j], H[:, j]])
        faces = faces[(faces > plo[j]) & (faces < phi[j])]
        if faces.size == 0:
            continue
        mid = (plo[j] + phi[j]) / 2
        if np.any(faces == mid):
            if not np.any((L[:, j] < mid) & (H[:, j] > mid)):
                return int(j), float(mid)
            mids.append((int(j), float(mid)))
        elif best is None or faces.size > best[2]:
            best = (int(j), float(faces[np.argmin(np.abs(faces - mid))]), faces.size)
    return mids[0] if mids else (None if best is None else best[:2])


def _fmt_box(lo, hi) -> str:
    if lo.size > 6:
        return f"(in {lo.size} dims, widths up to {float((hi - lo).max()):.3g})"
    return "[" + ", ".join(f"[{a:.6g}, {b:.6g}]" for a, b in zip(lo, hi)) + "]"


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
