"""Shape ops: Reshape, Transpose, Select (Slice/Gather/Split), Concat, Pad.

All are linear with 0/1 coefficients, so ``|L| = L`` and the default backward applies.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from verifier.ops.base import Affine, register


@register("Reshape")
class Reshape(Affine):
    """Reshape each sample to ``out_shape`` (row-major, as ONNX Reshape/Flatten/Squeeze)."""

    def forward(self, x):
        return x.reshape(x.shape[0], *self.node.out_shape)

    def linear(self, x):
        return self.forward(x)

    def backward(self, A, in_shapes):
        return [A.reshape(A.shape[0], A.shape[1], *in_shapes[0])], A.new_zeros(A.shape[:2])


@register("Transpose")
class Transpose(Affine):
    """Permute sample axes; attr ``perm`` over internal axes (0 = batch stays first)."""

    def forward(self, x):
        return x.permute(*self.attrs["perm"])

    def linear(self, x):
        return self.forward(x)

    def backward(self, A, in_shapes):
        perm = self.attrs["perm"]
        inverse = [0] * len(perm)
        for i, p in enumerate(perm):
            inverse[p] = i
        full = [0, 1] + [i + 1 for i in inverse[1:]]
        return [A.permute(*full)], A.new_zeros(A.shape[:2])


@register("Select")
class Select(Affine):
    """Pick indices along one internal ``axis``; param ``index`` (1-D int64).

    Covers Slice (any step, negative too), Split and Gather with constant indices.
    """

    def forward(self, x):
        return torch.index_select(x, self.attrs["axis"], self.p["index"])

    def linear(self, x):
        return self.forward(x)

    def backward(self, A, in_shapes):
        axis = self.attrs["axis"] + 1
        shape = (A.shape[0], A.shape[1], *in_shapes[0])
        out = A.new_zeros(shape)
        out.index_add_(axis, self.p["index"], A)
        return [out], A.new_zeros(A.shape[:2])


@register("Concat")
class Concat(Affine):
    """Concatenate inputs along internal ``axis``."""

    def forward(self, *xs):
        return torch.cat([self.align(x) for x in xs], dim=self.attrs["axis"])

    def linear(self, *xs):
        return self.forward(*xs)

    def backward(self, A, in_shapes):
        axis = self.attrs["axis"]
        sizes = [s[axis - 1] for s in in_shapes]
        parts = torch.split(A, sizes, dim=axis + 1)
        return [p.reshape(A.shape[0], A.shape[1], *s) for p, s in zip(parts, in_shapes)], \
            A.new_zeros(A.shape[:2])


@register("Pad")
class Pad(Affine):
    """Constant padding; attr ``pads`` in ``torch.nn.functional.pad`` order, ``value``."""

    def forward(self, x):
        return F.pad(x, self.attrs["pads"], value=self.attrs["value"])

    def linear(self, x):
        return F.pad(x, self.attrs["pads"], value=0.0)

    def backward(self, A, in_shapes):
        pads = [-p for p in self.attrs["pads"]]
        A_in = F.pad(A, pads)
        off = self.offset(A.dtype, A.device, in_shapes)
        bias = (A * off.unsqueeze(1)).flatten(2).sum(-1) if self.attrs["value"] != 0 else A.new_zeros(A.shape[:2])
        return [A_in.reshape(A.shape[0], A.shape[1], *in_shapes[0])], bias
