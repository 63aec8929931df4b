"""Non-elementwise or multi-input nonlinear ops: Mul, Div (two variables), Softmax, MaxPool.

Linear bound propagation treats these through their interval bounds unless a relaxation is
given here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from verifier.ops.base import Box, Op, register


@register("Mul")
class Mul(Op):
    """``x1 * x2`` for two variable tensors."""

    def forward(self, x1, x2):
        return self.align(x1) * self.align(x2)

    def interval(self, b1: Box, b2: Box) -> Box:
        (l1, u1), (l2, u2) = [(self.align(lo), self.align(hi)) for lo, hi in (b1, b2)]
        prods = torch.stack(torch.broadcast_tensors(l1 * l2, l1 * u2, u1 * l2, u1 * u2))
        return prods.amin(0), prods.amax(0)


@register("Div")
class Div(Op):
    """``x1 / x2`` for two variable tensors; unbounded where the divisor's box contains 0."""

    def forward(self, x1, x2):
        return self.align(x1) / self.align(x2)

    def interval(self, b1: Box, b2: Box) -> Box:
        l2, u2 = self.align(b2[0]), self.align(b2[1])
        safe = (l2 > 0) | (u2 < 0)
        one = torch.ones_like(l2)
        inv_lo = torch.where(safe, 1 / torch.where(safe, u2, one), torch.full_like(l2, -torch.inf))
        inv_hi = torch.where(safe, 1 / torch.where(safe, l2, one), torch.full_like(l2, torch.inf))
        lo, hi = Mul.interval(self, b1, (inv_lo, inv_hi))
        return torch.nan_to_num(lo, nan=-torch.inf), torch.nan_to_num(hi, nan=torch.inf)


@register("Softmax")
class Softmax(Op):
    """Softmax along internal ``axis``."""

    def forward(self, x):
        return torch.softmax(x, dim=self.attrs["axis"])

    def interval(self, box: Box) -> Box:
        lo, hi = box
        axis = self.attrs["axis"]
        shift = hi.amax(dim=axis, keepdim=True)
        el, eu = torch.exp(lo - shift), torch.exp(hi - shift)
        sum_l, sum_u = el.sum(axis, keepdim=True), eu.sum(axis, keepdim=True)
        low = el / (el + (sum_u - eu)).clamp_min(1e-300)
        high = eu / (eu + (sum_l - el)).clamp_min(1e-300)
        return low.clamp(0, 1), high.clamp(0, 1)


@register("MaxPool")
class MaxPool(Op):
    """Max pooling; attrs ``kernel``, ``stride``, ``dilation`` (tuples) and ``pads`` in
    ``F.pad`` order (ceil-mode overflow included), padding with ``-inf``."""

    def forward(self, x):
        k = self.attrs["kernel"]
        n_sp = len(k)
        lead = x.shape[: x.dim() - n_sp - 1]
        x = x.reshape(-1, *x.shape[-n_sp - 1:])
        if any(self.attrs["pads"]):
            x = F.pad(x, self.attrs["pads"], value=-torch.inf)
        fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n_sp]
        y = fn(x, k, stride=self.attrs["stride"], dilation=self.attrs["dilation"])
        return y.reshape(*lead, *y.shape[1:])

    def interval(self, box: Box) -> Box:
        return self.forward(box[0]), self.forward(box[1])


def _windows(op: MaxPool, t: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    """2-D pooling windows of ``t`` ``(B, *lead, C, H, W)`` (padded with -inf):
    ``(B·L, C, K, n_windows)`` and the padded spatial size."""
    k, stride, dil = op.attrs["kernel"], op.attrs["stride"], op.attrs["dilation"]
    C, H, W = t.shape[-3:]
    x = t.reshape(-1, C, H, W)
    if any(op.attrs["pads"]):
        x = F.pad(x, op.attrs["pads"], value=-torch.inf)
    cols = F.unfold(x, k, dilation=dil, stride=stride)  # (N, C*K, n_windows)
    return cols.reshape(x.shape[0], C, k[0] * k[1], -1), tuple(x.shape[-2:])


def maxpool_crown_step(op: MaxPool, A: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    """CROWN step through 2-D max pooling for ``A`` ``(B, R, *out_shape)`` given the input box
    ``(B, *in_shape)``: returns ``(A_in (B, R, *in_shape), constant (B, R))``.

    Per window the lower line is ``y >= x_j`` with ``j`` the largest lower bound; when ``l_j``
    is at least every other element's upper bound, ``y = x_j`` exactly; otherwise the upper line
    is the constant ``max_i u_i``.
    """
    B, R = A.shape[:2]
    lw, pad_shape = _windows(op, lo)
    uw, _ = _windows(op, hi)
    j = lw.argmax(dim=2, keepdim=True)  # (N, C, 1, n)
    others = uw.scatter(2, j, -torch.inf).amax(dim=2)
    l_max = lw.gather(2, j).squeeze(2)
    decided = l_max >= others  # (N, C, n)
    u_max = uw.amax(dim=2)
    N, C, K, n = lw.shape
    A_w = A.reshape(B, R, N // B, C, n)
    A_neg = A_w.clamp(max=0)
    to_j = torch.where(decided.reshape(B, 1, N // B, C, n), A_w, A_w.clamp(min=0))
    const = (torch.where(decided.reshape(B, 1, N // B, C, n), torch.zeros_like(A_neg), A_neg)
             * u_max.reshape(B, 1, N // B, C, n)).flatten(2).sum(-1)
    cols = torch.zeros(B * R * (N // B), C, K, n, dtype=A.dtype, device=A.device)
    jj = j.reshape(B, 1, N // B, C, 1, n).expand(B, R, N // B, C, 1, n).reshape(-1, C, 1, n)
    cols.scatter_(2, jj, to_j.reshape(-1, C, 1, n))
    folded = F.fold(cols.reshape(cols.shape[0], C * K, n), pad_shape, op.attrs["kernel"],
                    dilation=op.attrs["dilation"], stride=op.attrs["stride"])
    pads = op.attrs["pads"]
    if any(pads):
        folded = F.pad(folded, [-p for p in pads])
    return folded.reshape(B, R, *lo.shape[1:]), const


def maxpool_has_crown_step(op: MaxPool) -> bool:
    """Whether the pooling is 2-D (the case :func:`maxpool_crown_step` handles)."""
    return len(op.attrs["kernel"]) == 2
