"""Outward-rounding arithmetic of the independent checker (:mod:`verifier.evidence.check_bounds`).

The unit roundoff ``U``, the floors ``TINY`` and ``SAFETY`` of the error budget, ``γ_k``
(:func:`gamma`), one-ulp outward rounding, the magnitude of a box and the row-wise dot product
that every bound is built from; plus the input-set type and the error for graphs the checker
cannot bound. Tensors are float64 with a leading batch axis ``(B, *shape)``; coefficient
tensors are ``(B, R, *shape)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

U = 2.0 ** -53
TINY = 1e-300
SAFETY = 1.0 + 1e-6           # covers the rounding of the error budget itself

Box = tuple[torch.Tensor, torch.Tensor]


class NotCheckable(ValueError):
    """The graph holds an op this checker cannot bound soundly."""


def gamma(k: int) -> float:
    """``γ_k``: relative error bound of a ``k``-term floating-point sum of products."""
    return k * U / (1.0 - k * U)


@dataclass(frozen=True)
class InputSet:
    """A batch of input boxes ``(B, *input_full_shape)``, optionally ∩ an L2 ball
    (``center`` ``(B, n)``, ``radius`` float)."""

    lower: torch.Tensor
    upper: torch.Tensor
    center: torch.Tensor | None = None
    radius: float | None = None


def round_down(x: torch.Tensor) -> torch.Tensor:
    """One ulp towards -inf (covers one round-to-nearest operation that produced ``x``)."""
    return torch.nextafter(x, torch.full_like(x, -math.inf))


def round_up(x: torch.Tensor) -> torch.Tensor:
    """One ulp towards +inf."""
    return torch.nextafter(x, torch.full_like(x, math.inf))


def magnitude(box: Box) -> torch.Tensor:
    """``max(|lo|, |hi|)`` elementwise."""
    return torch.maximum(box[0].abs(), box[1].abs())


def rowdot(A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``Σ A·v`` over the value axes: ``A`` ``(B, R, *s)``, ``v`` ``(B|1, *s)`` or ``(B, R|1, *s)``
    → ``(B, R)``; ``0·inf`` counts as 0."""
    if v.dim() == A.dim() - 1:
        v = v.unsqueeze(1)
    B, R = A.shape[:2]
    if not bool(torch.isfinite(v).all()):
        prod = A * v
        return torch.where(A == 0, torch.zeros_like(prod), prod).flatten(2).sum(-1)
    if v.shape[1] == 1:  # one vector for all rows: a batched matrix-vector product
        return torch.bmm(A.reshape(B, R, -1), v.expand(B, *v.shape[1:]).reshape(B, -1, 1)).squeeze(-1)
    return (A * v).flatten(2).sum(-1)


def numel(shape) -> int:
    """Number of elements of a tensor of ``shape`` (1 for a scalar)."""
    return int(math.prod(shape)) if shape else 1
