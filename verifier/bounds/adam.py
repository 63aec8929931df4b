"""A minimal Adam for bound optimisation (α, β): a few tensor ops per step, no optimiser
machinery to import or to dispatch through."""
from __future__ import annotations

import torch


class Adam:
    """Adam over parameter groups ``[(tensors, lr), ...]``; call :meth:`step` after ``backward``."""

    def __init__(self, groups: list[tuple[list[torch.Tensor], float]], betas=(0.9, 0.999), eps: float = 1e-8):
        self.groups = [(list(params), lr) for params, lr in groups]
        self.b1, self.b2, self.eps = betas[0], betas[1], eps
        self.m = {id(p): torch.zeros_like(p) for ps, _ in self.groups for p in ps}
        self.v = {id(p): torch.zeros_like(p) for ps, _ in self.groups for p in ps}
        self.t = 0

    def zero_grad(self) -> None:
        for params, _ in self.groups:
            for p in params:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for params, lr in self.groups:
            for p in params:
                if p.grad is None:
                    continue
                m, v = self.m[id(p)], self.v[id(p)]
                m.mul_(self.b1).add_(p.grad, alpha=1 - self.b1)
                v.mul_(self.b2).addcmul_(p.grad, p.grad, value=1 - self.b2)
                p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-lr / c1)
