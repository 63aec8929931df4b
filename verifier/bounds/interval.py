"""Interval bound propagation (IBP) through every op of the graph."""
from __future__ import annotations

import torch

from verifier.ir.graph import Graph
from verifier.ops.base import Box


def interval_bounds(graph: Graph, lower: torch.Tensor, upper: torch.Tensor,
                    known: dict[str, Box] | None = None) -> dict[str, Box]:
    """Bounds of every value for inputs in the boxes ``[lower, upper]``.

    ``lower``/``upper``: ``(B, *graph.input_full_shape)``. ``known`` holds tighter bounds of
    some values (from CROWN, say) that are intersected in as the walk goes. Returns value name
    → ``(lo, hi)``, each ``(B, *shape)``.
    """
    bounds: dict[str, Box] = {graph.input_name: (lower, upper)}
    for node in graph.nodes:
        boxes = [bounds[name] for name in node.inputs]
        lo, hi = graph.ops[node.name].interval(*boxes)
        if known and node.name in known:
            klo, khi = known[node.name]
            lo, hi = torch.maximum(lo, klo), torch.minimum(hi, khi)
        bounds[node.name] = (lo, hi)
    return bounds
