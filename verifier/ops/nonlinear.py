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
