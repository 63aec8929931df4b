"""Op base classes and the registry of canonical ops.

Every canonical op is one class holding forward, interval and (for CROWN) the linear
backward step or the relaxation lines, in one place. Tensors carry a leading batch axis:
``(B, *shape)`` where ``shape`` is the value's full ONNX shape.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch

from verifier.ir.graph import Node

Box = tuple[torch.Tensor, torch.Tensor]  # (lower, upper), each (B, *shape)

REGISTRY: dict[str, type["Op"]] = {}


def register(name: str) -> Callable[[type["Op"]], type["Op"]]:
    """Class decorator: make an op available under its canonical name."""

    def wrap(cls: type["Op"]) -> type["Op"]:
        cls.op_name = name
        REGISTRY[name] = cls
        return cls

    return wrap


class Op(ABC):
    """A canonical op bound to one node's attributes and parameters (no analysis state)."""

    op_name = "?"

    def __init__(self, node: Node, dtype: torch.dtype, device: torch.device):
        self.node = node
        self.attrs = dict(node.attrs)
        self.p = {k: _convert(v, dtype, device) for k, v in node.params.items()}
        self.out_rank = len(node.out_shape) + 1

    @abstractmethod
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """The op on concrete tensors ``(B, *in_shape_i)`` → ``(B, *out_shape)``."""

    @abstractmethod
    def interval(self, *boxes: Box) -> Box:
        """Elementwise bounds on the output given boxes on the inputs (sound, may be loose)."""

    def align(self, x: torch.Tensor) -> torch.Tensor:
        """Insert singleton axes after the batch axis so ``x`` has the output's rank."""
        missing = self.out_rank - x.dim()
        if missing <= 0:
            return x
        return x.reshape(x.shape[0], *([1] * missing), *x.shape[1:])


def _convert(t: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if t.is_floating_point():
        return t.to(device=device, dtype=dtype)
    return t.to(device=device)


class Affine(Op):
    """An op affine in all its inputs jointly: ``f(x) = L(x) + f(0)``.

    Subclasses give ``forward`` and, if ``L`` has negative coefficients, ``abs_linear``
    (``|L|`` applied to non-negative radii). CROWN's backward step is the transpose of ``L``
    (a vector-Jacobian product unless a subclass writes it directly).
    """

    def linear(self, *xs: torch.Tensor) -> torch.Tensor:
        """``L(x)``: the forward pass without constant terms."""
        return self.forward(*xs) - self.offset(xs[0].dtype, xs[0].device, [x.shape[1:] for x in xs])

    def abs_linear(self, *rs: torch.Tensor) -> torch.Tensor:
        """``|L|(r)``; the default suits ops whose coefficients are all non-negative."""
        return self.linear(*rs)

    def offset(self, dtype: torch.dtype, device: torch.device, shapes: list) -> torch.Tensor:
        """``f(0)`` with a batch axis of 1, shape ``(1, *out_shape)``."""
        zeros = [torch.zeros(1, *s, dtype=dtype, device=device) for s in shapes]
        return self.forward(*zeros)

    def interval(self, *boxes: Box) -> Box:
        centers = [(lo + hi) / 2 for lo, hi in boxes]
        radii = [(hi - lo) / 2 for lo, hi in boxes]
        c = self.forward(*centers)
        r = self.abs_linear(*radii)
        return c - r, c + r

    def backward(self, A: torch.Tensor, in_shapes: list) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Transpose step of CROWN for ``A`` of shape ``(B, R, *out_shape)``.

        Returns one ``(B, R, *in_shape_i)`` coefficient tensor per input and the constant
        ``<A, f(0)>`` of shape ``(B, R)``.
        """
        B, R = A.shape[:2]
        flat = A.reshape(B * R, *A.shape[2:])
        zeros = [torch.zeros(B * R, *s, dtype=A.dtype, device=A.device) for s in in_shapes]
        _, vjp = torch.func.vjp(lambda *xs: self.linear(*xs), *zeros)
        grads = vjp(flat)
        outs = [g.reshape(B, R, *s) for g, s in zip(grads, in_shapes)]
        return outs, self.bias_term(A, in_shapes)

    def bias_term(self, A: torch.Tensor, in_shapes: list) -> torch.Tensor:
        """``<A, f(0)>`` summed over the output axes, shape ``(B, R)``."""
        off = self.offset(A.dtype, A.device, in_shapes)
        if not torch.any(off != 0):
            return A.new_zeros(A.shape[:2])
        return (A * off.unsqueeze(1)).flatten(2).sum(-1)


class Activation(Op):
    """An elementwise function with relaxation lines ``lw·x + lb <= f(x) <= uw·x + ub``."""

    @abstractmethod
    def fn(self, x: torch.Tensor) -> torch.Tensor:
        """The elementwise function."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def interval(self, box: Box) -> Box:
        lo, hi = box
        return self.fn(lo), self.fn(hi)

    @abstractmethod
    def relax(self, lo: torch.Tensor, hi: torch.Tensor, alpha: torch.Tensor | None = None):
        """Lines bounding ``f`` on ``[lo, hi]`` elementwise: ``(lw, lb, uw, ub)``, each like ``lo``.

        ``alpha`` (same shape, values in [0, 1]) selects among valid lower/upper lines where the
        op has a free choice; ``None`` takes the default choice.
        """

    def alpha_shape_ok(self) -> bool:
        """Whether ``relax`` uses ``alpha`` (optimisable by α-CROWN)."""
        return False

    # True when every neuron whose default lines (``alpha=None``) are all zero has all-zero
    # lines for every ``alpha`` too (ReLU: the inactive neurons), so the live neurons found
    # once on the default lines serve every α-CROWN step.
    dead_for_every_alpha = False
    # True when ``relax`` always returns a zero lower intercept ``lb`` (piecewise-linear
    # activations through the origin).
    zero_lower_intercept = False

    def live_mask(self, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor | None:
        """Where the default lines on ``[lo, hi]`` may be nonzero (bool, like ``lo``), read off
        the bounds before the lines are made; ``None`` when the op cannot tell that way."""
        return None
