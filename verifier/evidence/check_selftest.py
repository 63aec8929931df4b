"""Random probes of the op implementations the independent checker relies on.

:func:`op_self_test` checks, on a float64 graph, that every affine op's ``backward`` is the
transpose of its ``linear`` map, that its ``abs_linear`` dominates it and that its bias term is
right, and that max-pooling lines hold at sampled points.
:meth:`verifier.evidence.check_bounds.SoundBounds.self_test` runs it before any bound is trusted.
"""
from __future__ import annotations

import torch

from verifier.evidence.check_primitives import rowdot
from verifier.ir.graph import Graph, Node
from verifier.ops.base import Affine
from verifier.ops.nonlinear import maxpool_crown_step, maxpool_has_crown_step


def op_self_test(graph: Graph, seed: int = 0) -> list[str]:
    """Names of affine nodes of the float64 ``graph`` whose ``backward`` is not the transpose of
    their ``linear`` map, whose ``abs_linear`` does not dominate it, or whose bias term is wrong,
    and of max-pooling nodes whose lines fail at sampled points (random probes)."""
    gen = torch.Generator().manual_seed(seed)
    failed = [node.name for node in graph.nodes
              if isinstance(graph.ops[node.name], Affine) and not _affine_probe(graph, node, gen)]
    for node in graph.nodes:
        if node.op == "MaxPool" and maxpool_has_crown_step(graph.ops[node.name]) and \
                not _maxpool_probe(graph, node, gen):
            failed.append(node.name)
    return failed


def _affine_probe(graph: Graph, node: Node, gen: torch.Generator) -> bool:
    """Random inputs ``(1, *shape)`` and coefficients ``(1, 2, *out_shape)``: ``backward`` is the
    transpose of ``linear`` (with the right bias) and ``abs_linear`` dominates ``|linear|``."""
    op = graph.ops[node.name]
    shapes = [graph.shape_of(i) for i in node.inputs]
    hs = [torch.randn(1, *s, generator=gen, dtype=torch.float64) for s in shapes]
    A = torch.randn(1, 2, *node.out_shape, generator=gen, dtype=torch.float64)
    A_ins, bias = op.backward(A, shapes)
    lhs = rowdot(A, op.linear(*hs))
    rhs = sum(rowdot(a, h) for a, h in zip(A_ins, hs))
    scale = rowdot(A.abs(), op.abs_linear(*[h.abs() for h in hs])) + 1.0
    off = op.offset(torch.float64, torch.device("cpu"), shapes)
    ok = bool(((lhs - rhs).abs() <= 1e-9 * scale).all())
    ok &= bool(((bias - rowdot(A, off)).abs() <= 1e-9 * (rowdot(A.abs(), off.abs()) + 1.0)).all())
    signed = [h.abs() * torch.sign(torch.randn(h.shape, generator=gen, dtype=torch.float64)) for h in hs]
    dom = op.abs_linear(*[h.abs() for h in hs]) * (1 + 1e-9) + 1e-12 - op.linear(*signed).abs()
    return ok and bool((dom >= 0).all())


def _maxpool_probe(graph: Graph, node: Node, gen: torch.Generator) -> bool:
    """Sampled points ``(32, *shape)`` of a random box stay above the pooling lines:
    ``A·y >= A_in·x + c``."""
    op, shape = graph.ops[node.name], graph.shape_of(node.inputs[0])
    lo = torch.randn(1, *shape, generator=gen, dtype=torch.float64)
    hi = lo + torch.rand(1, *shape, generator=gen, dtype=torch.float64) * torch.rand(1, generator=gen).item()
    A = torch.randn(1, 2, *node.out_shape, generator=gen, dtype=torch.float64)
    A_in, c = maxpool_crown_step(op, A, lo, hi)
    x = lo + torch.rand(32, *shape, generator=gen, dtype=torch.float64) * (hi - lo)
    lhs = torch.einsum("rn,bn->br", A[0].flatten(1), op.forward(x).flatten(1))
    rhs = torch.einsum("rn,bn->br", A_in[0].flatten(1), x.flatten(1)) + c
    return bool((lhs >= rhs - 1e-9 * (1 + lhs.abs())).all())
