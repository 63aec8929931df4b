"""Bounds of a conjunction of rows through a convex combination of their linear bounds.

A disjunct ``C y <= d`` (rows ``r_i(x) = (C f(x) - d)_i``) is excluded on a box when some row
is positive everywhere there. Bounding each row alone cannot exclude a box where different
rows hold in different parts of it. But every ``λ`` in the simplex gives
``max_i r_i(x) >= Σ_i λ_i r_i(x) >= Σ_i λ_i L_i(x)``, where ``L_i(x) = a_i·x + c_i`` are the
rows' linear lower bounds from one CROWN pass, so ``min_x Σ_i λ_i L_i(x) > 0`` excludes the
whole box. The best ``λ`` solves a small concave maximisation (projected supergradient ascent
here); any ``λ`` is sound, so the search only decides how tight the result is.
"""
from __future__ import annotations

import torch

STEPS = 40


def combined_bounds(A: torch.Tensor, row_lower: torch.Tensor, input_min: torch.Tensor, lower: torch.Tensor,
                    upper: torch.Tensor, group: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best combined bound per disjunct and the weights giving it.

    ``A`` ``(B, R, n)``: the rows' input coefficients; ``row_lower`` ``(B, R)``: their lower
    bounds (``d`` already subtracted), of which ``input_min`` ``(B, R)`` is the part ``min_x A·x``
    over the region (see :class:`verifier.bounds.linear.Trace`); ``lower``/``upper`` ``(B, n)``:
    the boxes the combination is minimised over (the region's box); ``group`` ``(R,)``: each
    row's disjunct. Returns ``(B, K)`` bounds (-inf for disjuncts with fewer than two rows) and
    ``λ`` ``(B, R)`` (zero outside the combined disjuncts)."""
    B, R = row_lower.shape
    best = torch.full((B, K), -torch.inf, dtype=row_lower.dtype, device=row_lower.device)
    lam_out = torch.zeros_like(row_lower)
    offset = row_lower - input_min  # c_i: L_i(x) = a_i·x + c_i
    for k in range(K):
        rows = torch.nonzero(group == k).flatten()
        if rows.numel() < 2:
            continue
        value, lam = _ascent(A[:, rows], offset[:, rows], lower, upper)
        best[:, k] = value
        lam_out[:, rows] = lam
    return best, lam_out


def _ascent(A: torch.Tensor, c: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor):
    """Maximise ``g(λ) = λ·c + min_x (λA)·x`` over the simplex: best value ``(B,)`` and its λ ``(B, r)``."""
    B, r = c.shape
    lam = torch.full_like(c, 1.0 / r)
    best = torch.full((B,), -torch.inf, dtype=c.dtype, device=c.device)
    best_lam = lam.clone()
    for t in range(STEPS):
        w = (lam.unsqueeze(-1) * A).sum(1)                        # (B, n)
        x = torch.where(w > 0, lower, upper)                     # the minimiser of (λA)·x
        value = (lam * c).sum(1) + (w * x).sum(1)
        better = value > best
        best = torch.where(better, value, best)
        best_lam = torch.where(better.unsqueeze(1), lam, best_lam)
        grad = c + (A * x.unsqueeze(1)).sum(-1)                  # supergradient (B, r)
        step = 0.5 / (t + 1) / (grad.abs().amax(1, keepdim=True) + 1e-12)
        lam = project_simplex(lam + step * grad)
    return best, best_lam


def project_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of ``v`` ``(B, r)`` onto the probability simplex."""
    u, _ = torch.sort(v, dim=1, descending=True)
    css = u.cumsum(1) - 1
    k = torch.arange(1, v.shape[1] + 1, device=v.device, dtype=v.dtype)
    rho = ((u - css / k) > 0).to(v.dtype).cumsum(1).argmax(1, keepdim=True)
    theta = css.gather(1, rho) / (rho + 1).to(v.dtype)
    return (v - theta).clamp(min=0)
