"""Canonical ops. Importing this package fills :data:`REGISTRY` (name → op class)."""
from __future__ import annotations

import torch

from verifier.ops import activations, linear, nonlinear, shape  # noqa: F401  (registration)
from verifier.ops.base import REGISTRY, Activation, Affine, Box, Op, register

__all__ = ["REGISTRY", "Activation", "Affine", "Box", "Op", "register", "make_op"]


def make_op(node, dtype: torch.dtype, device: torch.device) -> Op:
    """The op object for ``node`` with parameters on ``device`` in ``dtype``."""
    return REGISTRY[node.op](node, dtype, device)
