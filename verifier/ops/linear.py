"""Affine ops with weights: Linear (Gemm/MatMul), Conv, ConvTranspose, Scale, Add, Reduce."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from verifier.ops.base import Affine, register


@register("Linear")
class Linear(Affine):
    """``y = x @ W + b`` on the last axis; params ``W`` ``(k, m)``, optional ``b`` ``(m,)``."""

    def __init__(self, node, dtype, device):
        super().__init__(node, dtype, device)
        self.W_rows = self.p["W"].T.contiguous()  # (m, k): the backward product, row gathers cheap
        self.W_abs = self.p["W"].abs()  # (k, m): interval radii

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _matmul_last(self.align(x), self.p["W"])
        return y + self.p["b"] if "b" in self.p else y

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return _matmul_last(self.align(x), self.p["W"])

    def abs_linear(self, r: torch.Tensor) -> torch.Tensor:
        return _matmul_last(self.align(r), self.W_abs)

    def backward(self, A, in_shapes, cols: torch.Tensor | None = None):
        """Transpose step; with ``cols`` (int64 ``(m',)``), ``A`` ``(B, R, ..., m')`` holds only
        those output neurons (the others have coefficient zero) and the product skips the rest."""
        W_rows, b = self.W_rows, self.p.get("b")
        if cols is not None:
            W_rows = W_rows.index_select(0, cols)
            b = None if b is None else b.expand(*self.node.out_shape).index_select(-1, cols)
        A_in = _sum_to(_matmul_last(A, W_rows), in_shapes[0])
        if b is None:
            return [A_in], A.new_zeros(A.shape[:2])
        return [A_in], (A.flatten(2) @ b.expand(*A.shape[2:]).reshape(-1, 1)).squeeze(-1)

    def unit_rows_backward(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The backward step of unit rows on output neurons ``idx`` ``(B, r)`` (flat indices):
        a gather of weight rows, ``(B, r, k)``, and of the bias, ``(B, r)`` (``None`` without
        one). The same as :meth:`backward` on one-hot rows, without the product."""
        B, r = idx.shape
        flat = idx.reshape(-1)
        rows = self.W_rows.index_select(0, flat).reshape(B, r, -1)
        if "b" not in self.p:
            return rows, None
        return rows, self.p["b"].expand(*self.node.out_shape).reshape(-1).index_select(0, flat).reshape(B, r)


def _matmul_last(x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``x @ W`` on the last axis as one 2-D product (batched products of single rows are
    far slower on multi-threaded CPUs)."""
    return (x.reshape(-1, x.shape[-1]) @ W).reshape(*x.shape[:-1], W.shape[-1])


def _sum_to(A: torch.Tensor, shape: tuple) -> torch.Tensor:
    """Sum ``A`` ``(B, R, *s)`` over broadcast axes so it has shape ``(B, R, *shape)``."""
    target = (A.shape[0], A.shape[1], *shape)
    if tuple(A.shape) == target:
        return A
    extra = A.dim() - len(target)
    if extra > 0:
        A = A.sum(dim=tuple(range(2, 2 + extra)))
    dims = tuple(i for i in range(2, A.dim()) if target[i] == 1 and A.shape[i] != 1)
    if dims:
        A = A.sum(dim=dims, keepdim=True)
    return A.reshape(target)


def _conv_fn(n_spatial: int, transpose: bool = False):
    table = {1: (F.conv1d, F.conv_transpose1d), 2: (F.conv2d, F.conv_transpose2d),
             3: (F.conv3d, F.conv_transpose3d)}
    return table[n_spatial][1 if transpose else 0]


class _ConvBase(Affine):
    """Shared helpers: torch convolutions on ``(B, *leading, C, *spatial)`` tensors."""

    transpose = False

    def _run(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        n_sp = weight.dim() - 2
        lead = x.shape[: x.dim() - n_sp - 1]
        y = _conv_fn(n_sp, self.transpose)(x.reshape(-1, *x.shape[-n_sp - 1:]), weight, bias,
                                           **self.attrs)
        return y.reshape(*lead, *y.shape[1:])

    def forward(self, x):
        return self._run(x, self.p["W"], self.p.get("b"))

    def linear(self, x):
        return self._run(x, self.p["W"], None)

    def abs_linear(self, r):
        return self._run(r, self.p["W"].abs(), None)

    def bias_term(self, A, in_shapes):
        if "b" not in self.p:
            return A.new_zeros(A.shape[:2])
        n_sp = self.p["W"].dim() - 2
        per_channel = A.sum(dim=tuple(range(A.dim() - n_sp, A.dim())))  # (B, R, 1, C)
        return (per_channel.flatten(2) @ self.p["b"].repeat(per_channel.flatten(2).shape[-1]
                                                             // self.p["b"].numel())).reshape(A.shape[:2])


@register("Conv")
class Conv(_ConvBase):
    """N-d convolution; attrs are torch's ``stride``, ``padding``, ``dilation``, ``groups``
    (padding symmetric: asymmetric ONNX pads are lowered to a Pad node first)."""

    def backward(self, A, in_shapes):
        n_sp = self.p["W"].dim() - 2
        shape = in_shapes[0]
        flat = A.reshape(-1, *A.shape[-n_sp - 1:])
        out_pad = _output_padding(shape[-n_sp:], flat.shape[-n_sp:], self.attrs, self.p["W"].shape[2:])
        A_in = _conv_fn(n_sp, True)(flat, self.p["W"], None, stride=self.attrs["stride"],
                                    padding=self.attrs["padding"], output_padding=out_pad,
                                    groups=self.attrs["groups"], dilation=self.attrs["dilation"])
        return [A_in.reshape(A.shape[0], A.shape[1], *shape)], self.bias_term(A, in_shapes)


def _output_padding(in_sp, out_sp, attrs, kernel) -> tuple[int, ...]:
    """Extra size a transposed convolution needs to map back exactly onto ``in_sp``."""
    pads = []
    for i, (n_in, n_out) in enumerate(zip(in_sp, out_sp)):
        s, p, d, k = attrs["stride"][i], attrs["padding"][i], attrs["dilation"][i], kernel[i]
        pads.append(int(n_in - ((n_out - 1) * s - 2 * p + d * (k - 1) + 1)))
    return tuple(pads)


@register("ConvTranspose")
class ConvTranspose(_ConvBase):
    """N-d transposed convolution; attrs as torch's ``conv_transpose``."""

    transpose = True


@register("Scale")
class Scale(Affine):
    """``y = x * a + b`` with constant ``a``, ``b`` broadcast (BatchNorm, Sub/Div by constants...)."""

    def forward(self, x):
        y = self.align(x)
        if "a" in self.p:
            y = y * self.p["a"]
        if "b" in self.p:
            y = y + self.p["b"]
        return y.expand(x.shape[0], *self.node.out_shape)

    def linear(self, x):
        y = self.align(x)
        y = y * self.p["a"] if "a" in self.p else y
        return y.expand(x.shape[0], *self.node.out_shape)

    def abs_linear(self, r):
        y = self.align(r)
        y = y * self.p["a"].abs() if "a" in self.p else y
        return y.expand(r.shape[0], *self.node.out_shape)

    def backward(self, A, in_shapes):
        A_in = A * self.p["a"] if "a" in self.p else A
        bias = A.new_zeros(A.shape[:2])
        if "b" in self.p:
            bias = (A * self.p["b"]).flatten(2).sum(-1)
        return [_sum_to(A_in, in_shapes[0])], bias


@register("Add")
class Add(Affine):
    """``y = x1 + x2`` for two variable tensors (broadcasting as ONNX does)."""

    def forward(self, x1, x2):
        return self.align(x1) + self.align(x2)

    def linear(self, x1, x2):
        return self.forward(x1, x2)

    def backward(self, A, in_shapes):
        return [_sum_to(A, s) for s in in_shapes], A.new_zeros(A.shape[:2])


@register("Reduce")
class Reduce(Affine):
    """Sum or mean over ``axes`` (internal axes, batch excluded); attrs ``axes``, ``keepdims``, ``mean``."""

    def forward(self, x):
        axes = tuple(self.attrs["axes"])
        if not axes:
            return x.reshape(x.shape[0], *self.node.out_shape)
        fn = torch.mean if self.attrs["mean"] else torch.sum
        return fn(x, dim=axes, keepdim=True).reshape(x.shape[0], *self.node.out_shape)

    def linear(self, x):
        return self.forward(x)
