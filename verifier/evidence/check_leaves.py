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

from verifier.evidence.check_bounds import ELEMENT_BUDGET, Box, InputSet, SoundBounds, round_down
from verifier.evidence.check_primitives import U


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
        """Row weights ``(B, R)`` as one combination per disjunct: ``(B, K, R)``."""
        groups = torch.repeat_interleave(torch.arange(len(self.sizes)), torch.as_tensor(self.sizes))
        member = (groups.unsqueeze(0) == torch.arange(len(self.sizes)).unsqueeze(1)).to(lam.dtype)  # (K, R)
        return lam.unsqueeze(1) * member.unsqueeze(0)

    def combined_scores(self, comb: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        """Sound ``Σ_r M_kr (C y - d)_r`` lower bounds ``(B, K)`` from the combined ``C y`` bounds;
        -inf for disjuncts without weights."""
        md = torch.einsum("bkr,r->bk", M, self.d)
        val = round_down(comb - md - 2 * U * (comb.abs() + md.abs()))
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


def region_scores(sb: SoundBounds, case, alphas: dict, margin: float = math.inf) -> torch.Tensor:
    """Scores of whole-region leaves (one per entry of the α batch, or one) → ``(D,)``."""
    rows = CaseRows.of(case)
    alphas = {k: torch.as_tensor(v) for k, v in alphas.items()}
    D = next(iter(alphas.values())).shape[0] if alphas else 1
    one = case_inputs(sb, case)
    bounds = expand_bounds(sb.intermediate(one), D)
    inputs = InputSet(one.lower.expand(D, *one.lower.shape[1:]), one.upper.expand(D, *one.upper.shape[1:]),
                      None if one.center is None else one.center.expand(D, -1), one.radius)
    return _scores(sb, rows, inputs, bounds, alphas, margin=margin)


def split_scores(sb: SoundBounds, case, root: dict[str, Box], signs: dict, alphas: dict, betas: dict,
                 margin: float = math.inf) -> torch.Tensor:
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
        out.append(_scores(sb, rows, inputs, bounds, a, extra or None, margin))
    return torch.cat(out)


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
