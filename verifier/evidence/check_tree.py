"""Coverage of a case's region by input-split leaf boxes, and their re-bounding along the
bisection tree they came from (:func:`box_tree`), for :mod:`verifier.evidence.check`.

The region is cut level by level into pieces at leaf faces no leaf straddles (:func:`choose_cuts`,
or the recorded bisection path); every level is bounded as one batch, each piece's intermediate
bounds starting from the intersection of its parents'. A piece inside a leaf is scored with the
sound scores of :mod:`verifier.evidence.check_leaves` (``_scores``); a piece with no leaf face
strictly inside and no leaf around it is an uncovered point.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from verifier.evidence.check_bounds import Box, InputSet, SoundBounds
from verifier.evidence.check_leaves import CaseRows, _chunk, _scores, case_inputs


@dataclass
class TreeResult:
    """Outcome of :func:`box_tree`: coverage, the pieces whose score is at or below the margin,
    the weakest piece score and the number of pieces bounded."""

    covered: bool
    detail: str
    failed_pieces: int
    min_score: float
    pieces: int


@dataclass
class _Piece:
    lower: np.ndarray
    upper: np.ndarray
    idx: np.ndarray                 # leaves that may meet it
    parents: list[int]              # rows of the previous level that contain it
    depth: int = 0                  # bisections from the region


def box_tree(sb: SoundBounds, case, lows, highs, margin: float, alphas: dict | None = None,
             has_alpha: np.ndarray | None = None, decided: np.ndarray | None = None,
             paths: np.ndarray | None = None, lambdas: np.ndarray | None = None) -> TreeResult:
    """Cover the case's region with the closed leaf boxes ``lows``/``highs`` ``(L, n)`` and bound
    every leaf, level by level as batches.

    Pieces are cut at leaf faces that no leaf straddles (a dimension's midpoint first: the
    bisection that produced the leaves), so every leaf of a bisection tree turns up as a piece;
    where several such cuts exist all are followed (pieces are shared by their box), so the
    tree the leaves came from is among the paths. A piece with no leaf face strictly inside and
    no leaf around it has an uncovered point. Each piece's intermediate bounds start from the
    intersection of all its parents' (valid: they contain it); a leaf's score is the best of
    several sound bounds (see :func:`_scores`). ``alphas`` ``(L, R, *shape)`` are the leaves'
    recorded slopes; ``has_alpha`` ``(L,)`` marks the leaves that recorded them (default: all);
    ``decided`` ``(L,)`` marks leaves checked elsewhere (by an exact solver): they count for
    coverage only. ``paths`` ``(L, P)`` are the recorded bisections (dimension halved at each
    depth, -1 padded): where the leaves in a piece agree on the next one, that is the only cut
    followed, so each piece's bounds are built exactly as the search built them. ``lambdas``
    ``(L, R)``: row weights of leaves closed by a combination of their rows (zeros: none)."""
    rows, L = CaseRows.of(case), len(lows)
    failed, worst, pieces, cap = 0, math.inf, 0, 64 * L + 1024
    level, prev = [_Piece(case.region.lower, case.region.upper, np.arange(L), [])], None
    while level:
        pieces += len(level)
        if pieces > cap:
            return TreeResult(False, f"gave up after {cap} pieces (not a bisection tree?)", failed, worst, pieces)
        plan = []
        for pc in level:
            pc.idx = pc.idx[_overlaps(pc.lower, pc.upper, lows[pc.idx], highs[pc.idx])]
            around = pc.idx[np.all(lows[pc.idx] <= pc.lower, axis=1) & np.all(highs[pc.idx] >= pc.upper, axis=1)]
            cuts = [] if around.size else (_recorded_cut(pc, paths) or
                                           choose_cuts(pc.lower, pc.upper, lows[pc.idx], highs[pc.idx]))
            if not around.size and not cuts:
                return TreeResult(False, f"region piece {_fmt_box(pc.lower, pc.upper)} is not covered", failed,
                                  worst, pieces)
            plan.append((int(around[0]) if around.size else -1, cuts))
        inputs = case_inputs(sb, case, np.stack([pc.lower for pc in level]), np.stack([pc.upper for pc in level]))
        prev = _batched_intermediate(sb, inputs, None if prev is None else _meet(prev, [pc.parents for pc in level]))
        done = [k for k, (leaf, _) in enumerate(plan) if leaf >= 0]
        if done:
            leaf = [plan[k][0] for k in done]
            keep = [i for i, j in enumerate(leaf) if decided is None or not decided[j]]
            sc = torch.full((len(done),), math.inf, dtype=torch.float64)
            if keep:
                sc[torch.as_tensor(keep)] = _done_scores(sb, rows, inputs, prev, [done[i] for i in keep],
                                                         [leaf[i] for i in keep], lows, highs, alphas, has_alpha,
                                                         margin, lambdas)
            worst, failed = min(worst, float(sc.min())), failed + int((~(sc > margin)).sum())
        level = _next_level(level, plan, budget=cap // 2 - pieces)
    return TreeResult(True, f"{L} boxes cover the region ({pieces} pieces bounded)", failed, worst, pieces)


def _next_level(level: list[_Piece], plan: list, budget: int) -> list[_Piece]:
    """Children of the pieces not yet inside a leaf, one entry per distinct box."""
    out: dict[bytes, _Piece] = {}
    for k, (leaf, cuts) in enumerate(plan):
        if leaf >= 0:
            continue
        for j, v in cuts if len(out) < budget else cuts[:1]:
            pc = level[k]
            left_hi, right_lo = pc.upper.copy(), pc.lower.copy()
            left_hi[j], right_lo[j] = v, v
            for lo, hi in ((pc.lower, left_hi), (right_lo, pc.upper)):
                key = lo.tobytes() + hi.tobytes()
                if key in out:
                    out[key].parents.append(k)
                else:
                    out[key] = _Piece(lo, hi, pc.idx, [k], pc.depth + 1)
    return list(out.values())


def _recorded_cut(pc: _Piece, paths: np.ndarray | None) -> list[tuple[int, float]]:
    """The midpoint cut the leaves inside the piece recorded at its depth, if they all agree."""
    if paths is None or pc.depth >= paths.shape[1] or not pc.idx.size:
        return []
    dims = np.unique(paths[pc.idx, pc.depth])
    if dims.size != 1 or dims[0] < 0:
        return []
    j = int(dims[0])
    return [(j, float((pc.lower[j] + pc.upper[j]) / 2))]


def _meet(prev: dict[str, Box], parents: list[list[int]]) -> dict[str, Box]:
    """Per piece, the intersection of its parents' bounds: parent lists padded by repetition."""
    width = max(len(p) for p in parents)
    idx = torch.as_tensor([p + [p[0]] * (width - len(p)) for p in parents])  # (B, width)
    return {k: (lo[idx].amax(dim=1), hi[idx].amin(dim=1)) for k, (lo, hi) in prev.items()}


def _overlaps(plo, phi, L, H) -> np.ndarray:
    """Leaves meeting the piece's (relative) interior: ``(L,)`` bool. Leaves touching it only on
    its boundary cover no interior point, and the interior's cover closes to the piece's."""
    open_ = phi > plo
    inside = np.where(open_, (L < phi) & (H > plo), (L <= plo) & (H >= phi))
    return np.all(inside, axis=1)


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


def _done_scores(sb, rows: CaseRows, inputs: InputSet, bounds, done: list, leaf: list, lows, highs,
                 alphas, has_alpha, margin: float, lambdas=None) -> torch.Tensor:
    """:func:`_leaf_piece_scores` for the pieces with recorded slopes and those without, apart."""
    if alphas is None or has_alpha is None or bool(np.all(has_alpha[leaf])):
        return _leaf_piece_scores(sb, rows, inputs, bounds, done, leaf, lows, highs, alphas, margin, lambdas)
    with_a = np.asarray(has_alpha[leaf], dtype=bool)
    out = torch.empty(len(done), dtype=torch.float64)
    for mask, a in ((with_a, alphas), (~with_a, None)):
        pick = np.nonzero(mask)[0]
        if pick.size:
            out[torch.as_tensor(pick)] = _leaf_piece_scores(
                sb, rows, inputs, bounds, [done[i] for i in pick], [leaf[i] for i in pick], lows, highs, a, margin,
                lambdas)
    return out


def _leaf_piece_scores(sb, rows: CaseRows, inputs: InputSet, bounds, done: list, leaf: list, lows, highs,
                       alphas, margin: float, lambdas=None) -> torch.Tensor:
    """Scores of the pieces ``done`` (rows of this level), piece ``k`` lying in leaf ``leaf[k]``;
    where a piece is smaller than its leaf, the leaf box bounded on its own counts too."""
    sel = torch.as_tensor(done)
    sub = InputSet(inputs.lower[sel], inputs.upper[sel], None if inputs.center is None else inputs.center[sel],
                   inputs.radius)
    b = {k: (lo[sel], hi[sel]) for k, (lo, hi) in bounds.items()}
    a = {k: torch.as_tensor(v[leaf]) for k, v in (alphas or {}).items()}
    lam = None if lambdas is None else torch.as_tensor(lambdas[leaf], dtype=torch.float64)
    score = _scores(sb, rows, sub, b, a, margin=margin, lambdas=lam)
    full = (-1, *sb.g.input_full_shape)
    smaller = not (torch.equal(sub.lower.reshape(len(done), -1), torch.as_tensor(lows[leaf]))
                and torch.equal(sub.upper.reshape(len(done), -1), torch.as_tensor(highs[leaf])))
    if smaller:
        whole = InputSet(torch.as_tensor(lows[leaf]).reshape(full), torch.as_tensor(highs[leaf]).reshape(full),
                         sub.center, sub.radius)
        score = torch.maximum(score, _scores(sb, rows, whole, sb.intermediate(whole), a, margin=margin,
                                             lambdas=lam))
    return score


def choose_cuts(plo, phi, L, H) -> list[tuple[int, float]]:
    """Where to cut a piece: every dimension's midpoint that is a face of a leaf meeting the
    piece and that no such leaf straddles; else one straddled face (the midpoint if it is a
    face, else the face nearest the middle of the dimension with the most faces); else none."""
    clean, mids, best = [], [], None
    for j in np.argsort(-(phi - plo), kind="stable"):
        faces = np.concatenate([L[:, j], H[:, j]])
        faces = faces[(faces > plo[j]) & (faces < phi[j])]
        if faces.size == 0:
            continue
        mid = (plo[j] + phi[j]) / 2
        if np.any(faces == mid):
            (mids if np.any((L[:, j] < mid) & (H[:, j] > mid)) else clean).append((int(j), float(mid)))
        elif best is None or faces.size > best[2]:
            best = (int(j), float(faces[np.argmin(np.abs(faces - mid))]), faces.size)
    return clean or mids[:1] or ([] if best is None else [best[:2]])


def _fmt_box(lo, hi) -> str:
    if lo.size > 6:
        return f"(in {lo.size} dims, widths up to {float((hi - lo).max()):.3g})"
    return "[" + ", ".join(f"[{a:.6g}, {b:.6g}]" for a, b in zip(lo, hi)) + "]"
